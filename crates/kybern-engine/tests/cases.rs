//! Behaviour cases: every YAML file under `tests/cases/` describes a policy, a request and the
//! wanted rule results; this one harness runs them all. `KYBERN_CASE=<substring>` runs only the
//! cases whose path contains the substring.
//!
//! A case file holds one or more documents of this shape:
//! ```yaml
//! name: what the case shows
//! policy: {...}                 # a ClusterPolicy or Policy
//! exceptions: [...]             # optional PolicyExceptions
//! resource: {...}               # the object (the old object for DELETE)
//! oldResource: {...}            # optional, for UPDATE
//! operation: CREATE             # optional
//! subresource: status           # optional, for subresource requests
//! userInfo: {username: .., groups: [..]}   # optional; without it user criteria are ignored
//! roles: [..]; clusterRoles: [..]          # optional
//! namespaceLabels: {k: v}       # optional
//! variables: {dotted.path: value}          # optional context values
//! expect:                       # every rule result, in order
//!   - rule: name
//!     status: pass|fail|warn|error|skip
//!     message: substring        # optional
//! loadError: substring          # instead of expect: the policy must be rejected with this text
//! ```

use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext};
use kybern_engine::exceptions::PolicyException;
use kybern_engine::policy::compile_policy;
use kybern_engine::request::{AdmissionRequest, Operation, UserInfo};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn case_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            case_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

fn run_case(case: &Value) -> Result<(), String> {
    let policy = match compile_policy(&case["policy"]) {
        Ok(p) => p,
        Err(e) => {
            return match case.get("loadError").and_then(Value::as_str) {
                Some(want) if e.to_string().contains(want) => Ok(()),
                _ => Err(format!("policy did not load: {e}")),
            };
        }
    };
    if let Some(want) = case.get("loadError") {
        return Err(format!("policy loaded but should fail with {want}"));
    }
    let exceptions: Vec<PolicyException> = case
        .get("exceptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| PolicyException::compile(e).unwrap())
                .collect()
        })
        .unwrap_or_default();
    let operation = case
        .get("operation")
        .and_then(Value::as_str)
        .map(|o| Operation::parse(o).unwrap())
        .unwrap_or_default();
    let resource = case["resource"].clone();
    let (object, old_object) = match operation {
        Operation::Delete => (Value::Null, resource),
        _ => (
            resource,
            case.get("oldResource").cloned().unwrap_or(Value::Null),
        ),
    };
    let strings = |k: &str| -> Vec<String> {
        case.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let request = AdmissionRequest {
        operation,
        object: object.into(),
        old_object: old_object.into(),
        user_info: case
            .get("userInfo")
            .map(|u| serde_json::from_value::<UserInfo>(u.clone()).unwrap())
            .unwrap_or_default(),
        roles: strings("roles"),
        cluster_roles: strings("clusterRoles"),
        namespace_labels: case
            .get("namespaceLabels")
            .map(|l| serde_json::from_value(l.clone()).unwrap()),
        variables: case
            .get("variables")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        no_user_info: case.get("userInfo").is_none(),
        subresource: case
            .get("subresource")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ..AdmissionRequest::default()
    };
    let pctx = PolicyContext::new(&request);
    let response =
        Engine::new(&NoProvider).validate(&policy, &pctx, &exceptions, &Default::default());
    let want = case["expect"]
        .as_array()
        .ok_or("a case needs expect or loadError")?;
    let got: Vec<String> = response
        .rules
        .iter()
        .map(|r| format!("{}={} ({})", r.name, r.status.as_str(), r.message))
        .collect();
    if want.len() != response.rules.len() {
        return Err(format!("want {} results, got {got:#?}", want.len()));
    }
    for (w, r) in want.iter().zip(&response.rules) {
        let rule = w["rule"].as_str().unwrap_or_default();
        let status = w["status"].as_str().unwrap_or_default();
        if r.name != rule || r.status.as_str() != status {
            return Err(format!("want {rule}={status}, got {got:#?}"));
        }
        if let Some(m) = w.get("message").and_then(Value::as_str)
            && !r.message.contains(m)
        {
            return Err(format!(
                "want message containing {m:?}, got {:?}",
                r.message
            ));
        }
    }
    Ok(())
}

#[test]
fn behaviour_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let filter = std::env::var("KYBERN_CASE").unwrap_or_default();
    let mut files = Vec::new();
    case_files(&root, &mut files);
    let mut failures = Vec::new();
    let mut count = 0;
    for file in files
        .iter()
        .filter(|f| f.display().to_string().contains(&filter))
    {
        let text = std::fs::read_to_string(file).unwrap();
        let docs = kybern_engine::yaml::parse_all(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (i, case) in docs.iter().enumerate() {
            count += 1;
            let name = case.get("name").and_then(Value::as_str).unwrap_or("?");
            if let Err(e) = run_case(case) {
                failures.push(format!("{} [{i}] {name}: {e}", file.display()));
            }
        }
    }
    println!("{count} behaviour cases run");
    assert!(count > 0 || !filter.is_empty(), "no behaviour cases found");
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
