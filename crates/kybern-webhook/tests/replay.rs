//! Replays the chainsaw admission steps of Kyverno's policy library through the webhook: each
//! policy forced to Enforce, resources whose step expects an error must be denied, the others
//! admitted. ClusterPolicies/Policies whose validate rules kybern evaluates and ValidatingPolicies
//! (forced to `validationActions: [Deny]`) are used.
//! Reads `$KYBERN_CONFORMANCE_DIR` (default `../shared/conformance` from the repository root).

mod common;

use kybern_engine::cel::policy_set::compile_document;
use kybern_engine::policy::{RuleBody, ValidationCheck, compile_policy};
use kybern_engine::yaml::{Limits as YamlLimits, parse_documents};
use kybern_webhook::config::Limits;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("KYBERN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    dir.join("policies").is_dir().then_some(dir)
}

fn read_docs(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let (docs, _) = parse_documents(&text, &YamlLimits::default());
    docs.into_iter()
        .map(|(_, v)| v)
        .filter(Value::is_object)
        .collect()
}

const CLUSTER_SCOPED: [&str; 16] = [
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "APIService",
    "ClusterIssuer",
    "ClusterPolicy",
];

/// Forces every validate rule of the policy to Enforce.
fn force_enforce(mut p: Value) -> Value {
    if let Some(spec) = p.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("validationFailureAction".into(), json!("Enforce"));
        spec.remove("validationFailureActionOverrides");
        if spec.contains_key("failureAction") {
            spec.insert("failureAction".into(), json!("Enforce"));
        }
        if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
            for r in rules {
                if let Some(v) = r.get_mut("validate").and_then(Value::as_object_mut) {
                    v.remove("failureActionOverrides");
                    if v.contains_key("failureAction") {
                        v.insert("failureAction".into(), json!("Enforce"));
                    }
                }
            }
        }
    }
    p
}

/// Forces a ValidatingPolicy to deny what it rejects.
fn force_deny(mut p: Value) -> Value {
    if let Some(spec) = p.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("validationActions".into(), json!(["Deny"]));
    }
    p
}

fn is_validating_policy(kind: &str) -> bool {
    matches!(kind, "ValidatingPolicy" | "NamespacedValidatingPolicy")
}

fn supported(p: &Value) -> bool {
    if is_validating_policy(p["kind"].as_str().unwrap_or_default()) {
        return matches!(compile_document(p), Some(Ok(_)));
    }
    match compile_policy(p) {
        Ok(c) => c.rules.iter().all(|r| match &r.body {
            RuleBody::Validate(v) => !matches!(v.check, ValidationCheck::Unsupported(_)),
            _ => false,
        }),
        Err(_) => false,
    }
}

/// The user chainsaw applies resources as in a kubeadm (kind) cluster.
fn chainsaw_user() -> Value {
    json!({"username": "kubernetes-admin",
        "groups": ["kubeadm:cluster-admins", "system:authenticated"]})
}

/// kubeadm's binding that makes that user a cluster-admin.
fn admin_binding() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubeadm:cluster-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeadm:cluster-admins"}]})
}

struct Case {
    resource: Value,
    expect_deny: bool,
    file: String,
}

fn key(v: &Value) -> String {
    format!(
        "{}/{}/{}",
        v["kind"].as_str().unwrap_or_default(),
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chainsaw_admission_steps_replay_through_the_webhook() {
    let Some(root) = corpus() else {
        eprintln!("webhook replay: skipped, no conformance corpus (set KYBERN_CONFORMANCE_DIR)");
        return;
    };
    let mut tests: Vec<PathBuf> = Vec::new();
    for group in std::fs::read_dir(root.join("policies")).unwrap().flatten() {
        for p in std::fs::read_dir(group.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let t = p.path().join(".chainsaw-test/chainsaw-test.yaml");
            if t.is_file() {
                tests.push(t);
            }
        }
    }
    tests.sort();
    let certs = common::temp_dir("replay-certs");
    let (mut total, mut passed, mut suites, mut skipped) = (0usize, 0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for test in &tests {
        let dir = test.parent().unwrap();
        let mut policies = Vec::new();
        let mut cluster = Vec::new();
        let mut cases = Vec::new();
        for doc in read_docs(test) {
            for step in doc["spec"]["steps"].as_array().into_iter().flatten() {
                for op in step["try"].as_array().into_iter().flatten() {
                    let Some(apply) = op.get("apply").or_else(|| op.get("create")) else {
                        continue;
                    };
                    let Some(file) = apply["file"].as_str() else {
                        continue;
                    };
                    let expect_deny = apply["expect"].as_array().is_some_and(|e| {
                        e.iter()
                            .any(|x| x["check"]["($error != null)"] == json!(true))
                    });
                    for mut d in read_docs(&dir.join(file)) {
                        let kind = d["kind"].as_str().unwrap_or_default().to_string();
                        if kind == "ClusterPolicy" || kind == "Policy" {
                            policies.push(force_enforce(d));
                            continue;
                        }
                        if is_validating_policy(&kind) {
                            policies.push(force_deny(d));
                            continue;
                        }
                        if !CLUSTER_SCOPED.contains(&kind.as_str())
                            && d["metadata"]["namespace"].is_null()
                            && let Some(m) = d["metadata"].as_object_mut()
                        {
                            m.insert("namespace".into(), json!("default"));
                        }
                        if policies.is_empty() {
                            // Created before any policy existed: context only.
                            cluster.push(d);
                        } else {
                            cases.push(Case {
                                resource: d,
                                expect_deny,
                                file: file.to_string(),
                            });
                        }
                    }
                }
            }
        }
        if policies.is_empty() || cases.is_empty() || !policies.iter().all(supported) {
            skipped += 1;
            continue;
        }
        suites += 1;
        let work = common::temp_dir("replay");
        let pdir = work.join("policies");
        std::fs::create_dir_all(&pdir).unwrap();
        for (i, p) in policies.iter().enumerate() {
            std::fs::write(pdir.join(format!("p{i}.json")), p.to_string()).unwrap();
        }
        let cdir = work.join("cluster");
        std::fs::create_dir_all(&cdir).unwrap();
        let admitted: Vec<&Value> = cases
            .iter()
            .filter(|c| !c.expect_deny)
            .map(|c| &c.resource)
            .collect();
        let mut objects: Vec<Value> = cluster.clone();
        objects.extend(admitted.into_iter().cloned());
        objects.push(admin_binding());
        std::fs::write(
            cdir.join("objects.json"),
            json!({"kind": "List", "items": objects}).to_string(),
        )
        .unwrap();
        let mut cfg = common::config(&pdir, &certs, Limits::default());
        cfg.cluster_resources = Some(cdir);
        let server = common::serve_config(cfg, work).await;
        let mut existing: BTreeMap<String, Value> = BTreeMap::new();
        for d in &cluster {
            existing.insert(key(d), d.clone());
        }
        for c in &cases {
            total += 1;
            let k = key(&c.resource);
            let mut rv = match existing.get(&k) {
                Some(old) => common::review("UPDATE", &c.resource, old),
                None => common::review("CREATE", &c.resource, &Value::Null),
            };
            rv["request"]["userInfo"] = chainsaw_user();
            let r = server.send("/validate", &rv).await;
            let denied = r["allowed"] == json!(false);
            if denied == c.expect_deny {
                passed += 1;
            } else {
                let rel = dir.strip_prefix(root.join("policies")).unwrap_or(dir);
                failures.push(format!(
                    "{}: {} {k}: want {}, got {}{}",
                    rel.display(),
                    c.file,
                    if c.expect_deny { "deny" } else { "admit" },
                    if denied { "deny" } else { "admit" },
                    r["status"]["message"]
                        .as_str()
                        .map(|m| format!(" ({})", m.trim().replace('\n', " ")))
                        .unwrap_or_default()
                ));
            }
            if !denied {
                existing.insert(k, c.resource.clone());
            }
        }
        server.running.shutdown().await;
    }
    for f in &failures {
        eprintln!("webhook replay mismatch: {f}");
    }
    let rate = if total == 0 {
        0.0
    } else {
        100.0 * passed as f64 / total as f64
    };
    eprintln!(
        "webhook replay: {passed} of {total} resources decided as expected ({rate:.1}%) over {suites} chainsaw tests; {skipped} tests skipped (unsupported rules or no admission steps)"
    );
    assert!(total > 0);
    assert!(rate >= 95.0, "webhook replay rate {rate:.1}% is under 95%");
}
