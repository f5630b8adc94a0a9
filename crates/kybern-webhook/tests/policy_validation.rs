//! `/policyvalidate`: policies and exceptions themselves, checked when they are applied, as
//! Kyverno's policy webhook checks them: a broken one is refused with its error and field path.

mod common;

use common::{review, serve};
use kybern_webhook::config::Limits;
use serde_json::{Value, json};

fn cpol(rule: Value) -> Value {
    json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
        "spec": {"rules": [rule]}})
}

#[tokio::test]
async fn a_broken_policy_is_refused_with_its_field_path_and_a_good_one_admitted() {
    let s = serve(&[], Limits::default()).await;
    let good = cpol(
        json!({"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
        "validate": {"message": "m", "pattern": {"metadata": {"name": "?*"}}}}),
    );
    let r = s
        .send("/policyvalidate", &review("CREATE", &good, &Value::Null))
        .await;
    assert_eq!(r["allowed"], true, "{r}");

    let broken = cpol(json!({"name": "r", "match": {
        "any": [{"resources": {"kinds": ["Pod"]}}], "all": [{"resources": {"kinds": ["Pod"]}}]},
        "validate": {"message": "m", "pattern": {}}}));
    let r = s
        .send("/policyvalidate", &review("UPDATE", &broken, &good))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("spec.rules[0].match"), "{message}");

    // Deleting a broken policy is always allowed.
    let r = s
        .send("/policyvalidate", &review("DELETE", &Value::Null, &broken))
        .await;
    assert_eq!(r["allowed"], true, "{r}");

    // A CEL policy that does not compile is refused too; other kinds pass through.
    let vpol = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy",
        "metadata": {"name": "v"}, "spec": {"validations": [{"expression": "object.metadata.name ==="}]}});
    let r = s
        .send("/policyvalidate", &review("CREATE", &vpol, &Value::Null))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let r = s
        .send("/policyvalidate", &review("CREATE", &cm, &Value::Null))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    s.running.shutdown().await;
}
