//! An oracle over random Pods: the `podSecurity` subrule (restricted, latest), the library's Pod
//! Security policies written as patterns (loaded from the conformance corpus) and an independent
//! predicate written here must agree on pass/fail for the controls they share: privileged
//! containers and privilege escalation (all three), running as non-root (subrule and predicate;
//! the library has no pattern policy for it in the corpus).
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::pod_security::{self, PodSecurity};
use kybern_engine::policy::{Policy, compile_policy};
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::RuleStatus;
use kybern_fuzz::documents;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

/// Pattern policies per control: the privileged one (baseline) and privilege escalation.
static POLICIES: LazyLock<Vec<(&'static str, Policy)>> = LazyLock::new(|| {
    let base = std::env::var_os("KYBERN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/conformance"
            ))
        });
    let files = [
        (
            "privileged",
            "baseline/disallow-privileged-containers/disallow-privileged-containers.yaml",
        ),
        (
            "allowPrivilegeEscalation",
            "restricted/disallow-privilege-escalation/disallow-privilege-escalation.yaml",
        ),
    ];
    let mut out = Vec::new();
    for (check, file) in files {
        let path = base.join("policies/pod-security").join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!(
                "podsecurity oracle: {} not found; pattern policies left out",
                path.display()
            );
            continue;
        };
        for doc in documents(&text) {
            let policy = compile_policy(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((check, policy));
        }
    }
    out
});

static SUBRULE: LazyLock<PodSecurity> = LazyLock::new(|| {
    PodSecurity::from_json(&json!({"level": "restricted", "version": "latest"}))
        .unwrap_or_else(|e| panic!("podSecurity spec: {e}"))
});

/// An optional boolean field: absent, true or false.
fn maybe_bool(u: &mut Unstructured, obj: &mut Map<String, Value>, key: &str) -> Result<()> {
    match u.int_in_range(0..=2u8)? {
        0 => {}
        1 => {
            obj.insert(key.into(), Value::Bool(true));
        }
        _ => {
            obj.insert(key.into(), Value::Bool(false));
        }
    }
    Ok(())
}

fn container(u: &mut Unstructured, name: String) -> Result<Value> {
    let mut c = Map::new();
    c.insert("name".into(), Value::String(name));
    c.insert("image".into(), Value::String("nginx".into()));
    if u.arbitrary::<bool>()? {
        let mut sc = Map::new();
        maybe_bool(u, &mut sc, "privileged")?;
        maybe_bool(u, &mut sc, "allowPrivilegeEscalation")?;
        maybe_bool(u, &mut sc, "runAsNonRoot")?;
        c.insert("securityContext".into(), Value::Object(sc));
    }
    Ok(Value::Object(c))
}

fn pod(u: &mut Unstructured) -> Result<Value> {
    let mut spec = Map::new();
    let mut n = 0;
    for (key, min, max) in [
        ("containers", 1, 3),
        ("initContainers", 0, 2),
        ("ephemeralContainers", 0, 1),
    ] {
        let count = u.int_in_range(min..=max)?;
        if count == 0 && u.arbitrary::<bool>()? {
            continue;
        }
        let mut list = Vec::new();
        for _ in 0..count {
            list.push(container(u, format!("c{n}"))?);
            n += 1;
        }
        spec.insert(key.into(), Value::Array(list));
    }
    if u.arbitrary::<bool>()? {
        let mut sc = Map::new();
        maybe_bool(u, &mut sc, "runAsNonRoot")?;
        spec.insert("securityContext".into(), Value::Object(sc));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": spec,
    }))
}

/// Every container of the Pod, whatever its list.
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
}

/// The independent predicate: true when the Pod violates the control.
fn violates(check: &str, pod: &Value) -> bool {
    let field = |c: &Value, f: &str| c["securityContext"][f].as_bool();
    match check {
        "privileged" => containers(pod).any(|c| field(c, "privileged") == Some(true)),
        "allowPrivilegeEscalation" => {
            containers(pod).any(|c| field(c, "allowPrivilegeEscalation") != Some(false))
        }
        "runAsNonRoot" => {
            let pod_level = pod["spec"]["securityContext"]["runAsNonRoot"].as_bool();
            pod_level == Some(false)
                || containers(pod).any(|c| match field(c, "runAsNonRoot") {
                    Some(v) => !v,
                    None => pod_level != Some(true),
                })
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(pod) = pod(&mut u) else {
        return;
    };
    let failed: Vec<String> = pod_security::evaluate(&SUBRULE, &pod, &[])
        .into_iter()
        .map(|c| c.id)
        .collect();
    for check in ["privileged", "allowPrivilegeEscalation", "runAsNonRoot"] {
        let subrule = failed.iter().any(|id| id == check);
        assert_eq!(
            subrule,
            violates(check, &pod),
            "{check}: podSecurity says {subrule} for {pod}"
        );
    }

    let request = AdmissionRequest {
        operation: Operation::Create,
        object: pod.clone().into(),
        no_user_info: true,
        ..AdmissionRequest::default()
    };
    let provider = NoProvider;
    let engine = Engine::new(&provider);
    let pctx = PolicyContext::new(&request);
    let values = BTreeMap::<String, RuleValues>::new();
    for (check, policy) in POLICIES.iter() {
        let response = engine.validate(policy, &pctx, &[], &values);
        assert!(
            !response.rules.is_empty(),
            "{check}: no rule applied to {pod}"
        );
        for rule in &response.rules {
            let fails = match rule.status {
                RuleStatus::Fail => true,
                RuleStatus::Pass => false,
                ref other => panic!(
                    "{check}: rule {} gave {other:?}: {}",
                    rule.name, rule.message
                ),
            };
            assert_eq!(
                fails,
                violates(check, &pod),
                "{check}: pattern rule {} says {fails} for {pod}",
                rule.name
            );
        }
    }
});
