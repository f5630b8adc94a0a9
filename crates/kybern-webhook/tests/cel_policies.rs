//! The CEL policy kinds through the webhook over real TLS sockets: ValidatingPolicy actions,
//! admission policies with bindings, CEL PolicyExceptions, MutatingPolicy patches and the
//! Kyverno paths that select them.

mod common;

use base64::Engine as _;
use common::{review, serve};
use kybern_webhook::config::Limits;
use serde_json::{Value, json};

const NEED_TEAM: &str = r#"
apiVersion: policies.kyverno.io/v1
kind: ValidatingPolicy
metadata:
  name: need-team
spec:
  validationActions: [Deny]
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [pods]
  validations:
    - expression: "has(object.metadata.labels) && 'team' in object.metadata.labels"
      message: every Pod needs a team label
"#;

const WARN_COST: &str = r#"
apiVersion: policies.kyverno.io/v1
kind: ValidatingPolicy
metadata:
  name: warn-cost
spec:
  validationActions: [Warn, Audit]
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE]
        resources: [pods]
  validations:
    - expression: "has(object.metadata.labels) && 'cost' in object.metadata.labels"
      message: a cost label is recommended
"#;

const NO_LATEST: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: no-latest
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE]
        resources: [pods]
  validations:
    - expression: "object.spec.containers.all(c, !c.image.endsWith(':latest'))"
      message: images must not use the latest tag
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: no-latest-binding
spec:
  policyName: no-latest
  validationActions: [Deny]
"#;

const EXEMPT_BATCH: &str = r#"
apiVersion: policies.kyverno.io/v1
kind: PolicyException
metadata:
  name: exempt-batch
  namespace: shop
spec:
  policyRefs:
    - name: need-team
      kind: ValidatingPolicy
  matchConditions:
    - name: batch-pods
      expression: "object.metadata.name.startsWith('batch-')"
"#;

const ADD_OWNER: &str = r#"
apiVersion: policies.kyverno.io/v1
kind: MutatingPolicy
metadata:
  name: add-owner
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE]
        resources: [pods]
  mutations:
    - patchType: ApplyConfiguration
      applyConfiguration:
        expression: >
          Object{metadata: Object.metadata{labels: Object.metadata.labels{owner: "platform"}}}
"#;

const GENERATE_QUOTA: &str = r#"
apiVersion: policies.kyverno.io/v1
kind: GeneratingPolicy
metadata:
  name: quota
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE]
        resources: [namespaces]
  generate:
    - expression: "generator.Apply(object.metadata.name, [])"
"#;

fn pod(name: &str, labels: Value, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]}
    })
}

async fn server() -> common::TestServer {
    serve(
        &[
            ("need-team.yaml", NEED_TEAM),
            ("warn-cost.yaml", WARN_COST),
            ("no-latest.yaml", NO_LATEST),
            ("exempt.yaml", EXEMPT_BATCH),
            ("owner.yaml", ADD_OWNER),
            ("quota.yaml", GENERATE_QUOTA),
        ],
        Limits::default(),
    )
    .await
}

#[tokio::test]
async fn validating_policies_deny_warn_and_admit_by_their_actions() {
    let s = server().await;
    let good = pod("web", json!({"team": "a", "cost": "1"}), "nginx:1.27");
    let r = s
        .send("/validate", &review("CREATE", &good, &Value::Null))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none_or(Value::is_null), "{r}");

    let no_team = pod("web", json!({"cost": "1"}), "nginx:1.27");
    for path in [
        "/validate",
        "/vpol",
        "/vpol/need-team",
        "/vpol/fail/need-team",
    ] {
        let r = s
            .send(path, &review("CREATE", &no_team, &Value::Null))
            .await;
        assert_eq!(r["allowed"], false, "{path}: {r}");
        assert_eq!(
            r["status"]["message"], "Policy need-team failed: every Pod needs a team label",
            "{path}"
        );
    }
    // Paths that do not serve this policy admit.
    for path in ["/validate/fail", "/vpol/warn-cost", "/vpol/ignore", "/gpol"] {
        let r = s
            .send(path, &review("CREATE", &no_team, &Value::Null))
            .await;
        assert_eq!(r["allowed"], true, "{path}: {r}");
    }

    let no_cost = pod("web", json!({"team": "a"}), "nginx:1.27");
    let r = s
        .send("/validate", &review("CREATE", &no_cost, &Value::Null))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        r["warnings"],
        json!(["Policy warn-cost failed: a cost label is recommended"])
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn bound_admission_policies_and_cel_exceptions_apply() {
    let s = server().await;
    let latest = pod("web", json!({"team": "a", "cost": "1"}), "nginx:latest");
    let r = s
        .send("/validate", &review("CREATE", &latest, &Value::Null))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(
        r["status"]["message"],
        "Policy no-latest failed: images must not use the latest tag"
    );
    // The exception exempts batch Pods from need-team only.
    let batch = pod("batch-1", json!({"cost": "1"}), "nginx:1.27");
    let r = s
        .send("/validate", &review("CREATE", &batch, &Value::Null))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    // UPDATE is outside no-latest's operations; need-team still applies.
    let r = s
        .send("/validate", &review("UPDATE", &latest, &latest))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn mutating_policies_return_a_patch_on_mutate_and_mpol() {
    let s = server().await;
    let sent = pod("web", json!({"team": "a"}), "nginx:1.27");
    for path in ["/mutate", "/mpol/add-owner"] {
        let r = s.send(path, &review("CREATE", &sent, &Value::Null)).await;
        assert_eq!(r["allowed"], true, "{path}: {r}");
        assert_eq!(r["patchType"], "JSONPatch", "{path}: {r}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        let mut object = sent.clone();
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(
            object["metadata"]["labels"],
            json!({"team": "a", "owner": "platform"}),
            "{path}"
        );
    }
    // Kyverno's ClusterPolicy mutate path does not run CEL policies.
    let r = s
        .send("/mutate/fail", &review("CREATE", &sent, &Value::Null))
        .await;
    assert!(r.get("patch").is_none_or(Value::is_null), "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn readiness_counts_cel_policies_and_names_what_serve_does_not_run() {
    let s = server().await;
    let body: Value = s
        .client
        .get(format!("{}/health/readiness", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["ready"], true, "{body}");
    // need-team, warn-cost, no-latest, add-owner; the GeneratingPolicy is reported instead.
    assert_eq!(body["policies"], 4, "{body}");
    assert_eq!(body["errors"], json!([]), "{body}");
    let unsupported = body["unsupported"].to_string();
    assert!(
        unsupported.contains("GeneratingPolicy \\\"quota\\\"")
            && unsupported.contains("background controller"),
        "{body}"
    );
    s.running.shutdown().await;
}
