//! Mutation idempotence over the corpus: for every kyverno-test.yaml under
//! `$KYBERN_CONFORMANCE_DIR` (default `../shared/conformance` beside the repository) whose policies
//! include a ClusterPolicy/Policy mutate rule, `kybern apply -o` mutates the suite's resources,
//! then mutates the result again; the second pass must change nothing.
//!
//! Policies whose rules are non-idempotent by Kyverno's own semantics are left out, and the test
//! prints each one with the reason: a JSON patch that `add`s to an array (`/-` or an index)
//! inserts a new element on every pass, and a patch whose value is built from the field it
//! rewrites (a prefix) rewrites it again.

use kybern_engine::yaml;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("KYBERN_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("../shared/conformance"),
    }
}

fn find_suites(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            find_suites(&p, out);
        } else if p.file_name().is_some_and(|n| n == "kyverno-test.yaml") {
            out.push(p);
        }
    }
}

/// Every YAML document of a file, or of every YAML file under a directory.
fn read_docs(path: &Path) -> Vec<Value> {
    if path.is_dir() {
        let mut files = Vec::new();
        collect_yaml(path, &mut files);
        return files.iter().flat_map(|f| read_docs(f)).collect();
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    yaml::parse_all(&text)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.is_object())
        .collect()
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect_yaml(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(p);
        }
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn is_kyverno_policy(doc: &Value) -> bool {
    matches!(
        doc.get("kind").and_then(Value::as_str),
        Some("ClusterPolicy" | "Policy")
    )
}

fn mutate_rules(policy: &Value) -> Vec<&Value> {
    policy
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("mutate").filter(|m| !m.is_null()))
        .collect()
}

/// Policies whose patch value is computed from the very field it rewrites, so every pass
/// rewrites it again (found by this test, checked by hand).
const VALUE_FROM_ITSELF: &[(&str, &str)] = &[(
    "add-external-secret-prefix",
    "prepends a prefix to the remoteRef key it reads",
)];

/// Why a policy is non-idempotent by Kyverno semantics, if it is.
fn policy_non_idempotent(name: &str, policy: &Value) -> Option<String> {
    if let Some((_, why)) = VALUE_FROM_ITSELF.iter().find(|(n, _)| *n == name) {
        return Some((*why).to_string());
    }
    mutate_rules(policy).into_iter().find_map(non_idempotent)
}

/// Why a mutate block is non-idempotent by Kyverno semantics, if it is.
fn non_idempotent(mutate: &Value) -> Option<String> {
    let mut reasons = Vec::new();
    json_patch_adds(mutate, &mut reasons);
    reasons.into_iter().next()
}

fn json_patch_adds(block: &Value, reasons: &mut Vec<String>) {
    if let Some(ops) = block.get("patchesJson6902") {
        let ops: Vec<Value> = match ops {
            Value::String(s) => yaml::parse_all(s)
                .ok()
                .and_then(|d| d.into_iter().next())
                .and_then(|d| d.as_array().cloned())
                .unwrap_or_default(),
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        for op in ops {
            let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
            let last = path.rsplit('/').next().unwrap_or_default();
            let index = last.strip_prefix('-').unwrap_or(last);
            let inserts = op.get("op").and_then(Value::as_str) == Some("add")
                && (last == "-"
                    || (!index.is_empty() && index.chars().all(|c| c.is_ascii_digit())));
            if inserts {
                reasons.push(format!(
                    "JSON patch add to an array ({path}) inserts on every pass"
                ));
            }
        }
    }
    for nested in block
        .get("foreach")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        json_patch_adds(nested, reasons);
    }
}

/// The last document written for each object (key: apiVersion, kind, namespace, name).
fn final_objects(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    collect_yaml(dir, &mut files);
    for f in files {
        for doc in read_docs(&f) {
            let key = |p: &str| {
                doc.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let k = format!(
                "{}/{}/{}/{}",
                key("/apiVersion"),
                key("/kind"),
                key("/metadata/namespace"),
                key("/metadata/name")
            );
            out.insert(k, doc);
        }
    }
    out
}

fn write_docs(path: &Path, docs: &[&Value]) {
    let text: Vec<String> = docs.iter().map(|d| yaml::to_yaml_string(d)).collect();
    std::fs::write(path, text.join("---\n")).unwrap();
}

/// Runs `kybern apply` writing mutated resources under `out`.
fn apply(policies: &Path, resources: &[PathBuf], extra: &[String], out: &Path) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kybern"));
    cmd.arg("apply").arg(policies);
    for r in resources {
        cmd.arg("-r").arg(r);
    }
    cmd.args(extra).arg("-o").arg(out);
    // Exit codes reflect policy results; only the written resources matter here.
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "kybern panicked: {stderr}");
}

enum Outcome {
    NotMutate,
    Checked,
    Excluded(Vec<String>),
    Changed(String),
}

fn check_suite(test_file: &Path, work: &Path) -> Outcome {
    let dir = test_file.parent().unwrap();
    let mut excluded = Vec::new();
    let mut any_mutate = false;
    for (doc_index, test) in read_docs(test_file).iter().enumerate() {
        let mut kept = Vec::new();
        for p in strings(test, "policies") {
            for doc in read_docs(&dir.join(&p)) {
                if !is_kyverno_policy(&doc) || mutate_rules(&doc).is_empty() {
                    continue;
                }
                let name = doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match policy_non_idempotent(&name, &doc) {
                    Some(reason) => excluded.push(format!("{name}: {reason}")),
                    None => kept.push(doc),
                }
            }
        }
        if kept.is_empty() {
            continue;
        }
        any_mutate = true;
        let case = work.join(format!("doc{doc_index}"));
        std::fs::create_dir_all(&case).unwrap();
        let policies = case.join("policies.yaml");
        // Only the mutate policies take part; the others cannot change a resource.
        write_docs(&policies, &kept.iter().collect::<Vec<_>>());
        let resources: Vec<PathBuf> = strings(test, "resources")
            .iter()
            .map(|r| dir.join(r))
            .filter(|p| p.exists())
            .collect();
        if resources.is_empty() {
            continue;
        }
        let mut extra = Vec::new();
        if let Some(values) = test.get("values") {
            let f = case.join("values.yaml");
            write_docs(&f, &[values]);
            extra.extend(["-f".to_string(), f.display().to_string()]);
        } else if let Some(v) = test.get("variables").and_then(Value::as_str) {
            extra.extend(["-f".to_string(), dir.join(v).display().to_string()]);
        }
        if let Some(u) = test.get("userinfo").and_then(Value::as_str) {
            extra.extend(["-u".to_string(), dir.join(u).display().to_string()]);
        }
        let first = case.join("pass1");
        apply(&policies, &resources, &extra, &first);
        let once = final_objects(&first);
        if once.is_empty() {
            continue;
        }
        let mutated = case.join("mutated.yaml");
        write_docs(&mutated, &once.values().collect::<Vec<_>>());
        let second = case.join("pass2");
        apply(&policies, &[mutated], &extra, &second);
        for (key, twice) in final_objects(&second) {
            if once.get(&key) != Some(&twice) {
                let before = once.get(&key).map(yaml::to_yaml_string).unwrap_or_default();
                return Outcome::Changed(format!(
                    "{key} changed on the second pass:\n--- after one pass\n{before}--- after two passes\n{}",
                    yaml::to_yaml_string(&twice)
                ));
            }
        }
    }
    match (any_mutate, excluded.is_empty()) {
        (_, false) => Outcome::Excluded(excluded),
        (true, true) => Outcome::Checked,
        (false, true) => Outcome::NotMutate,
    }
}

#[test]
fn mutations_are_idempotent_over_the_corpus() {
    let corpus = corpus_dir();
    if !corpus.is_dir() {
        let msg = format!(
            "conformance corpus not found at {} (set KYBERN_CONFORMANCE_DIR)",
            corpus.display()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        println!("skipping: {msg}");
        return;
    }
    let mut suites = Vec::new();
    find_suites(&corpus, &mut suites);
    let work = std::env::temp_dir().join(format!("kybern-idempotence-{}", std::process::id()));
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut excluded = Vec::new();
    for (i, suite) in suites.iter().enumerate() {
        let name = suite
            .parent()
            .unwrap()
            .strip_prefix(&corpus)
            .unwrap_or(suite)
            .display()
            .to_string();
        match check_suite(suite, &work.join(i.to_string())) {
            Outcome::NotMutate => {}
            Outcome::Checked => checked += 1,
            Outcome::Excluded(reasons) => {
                checked += 1;
                excluded.extend(reasons.into_iter().map(|r| format!("{name}: {r}")));
            }
            Outcome::Changed(diff) => failures.push(format!("{name}: {diff}")),
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("{checked} mutate suites applied twice");
    println!(
        "{} policies left out as non-idempotent by Kyverno semantics:",
        excluded.len()
    );
    for e in &excluded {
        println!("  {e}");
    }
    assert!(
        checked > 0,
        "no mutate suites found under {}",
        corpus.display()
    );
    assert!(
        failures.is_empty(),
        "{} suites changed on a second pass:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
