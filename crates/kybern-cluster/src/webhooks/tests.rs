use super::*;
use crate::names::{Names, Scheme};
use serde_json::json;

fn res(group: &str, version: &str, kind: &str, plural: &str, subs: &[&str]) -> Resource {
    Resource {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced: kind != "Namespace",
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        preferred: true,
    }
}

fn cluster() -> Vec<Resource> {
    vec![
        res(
            "",
            "v1",
            "Pod",
            "pods",
            &["exec", "status", "ephemeralcontainers"],
        ),
        res("", "v1", "ConfigMap", "configmaps", &[]),
        res("", "v1", "Namespace", "namespaces", &["status"]),
        res(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            &["scale", "status"],
        ),
        res("batch", "v1", "CronJob", "cronjobs", &["status"]),
        res("batch", "v1", "Job", "jobs", &["status"]),
        res(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            &["scale", "status"],
        ),
        res("apps", "v1", "DaemonSet", "daemonsets", &["status"]),
        res(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            &["scale", "status"],
        ),
        res(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            &["scale", "status"],
        ),
    ]
}

fn settings() -> WebhookSettings {
    WebhookSettings {
        names: Names::new(Scheme::Kybern, "kybern", None),
        default_timeout_seconds: 10,
        exclude_namespaces: vec!["kube-system".into()],
        url_base: None,
        namespace_selector: None,
        object_selector: None,
        match_conditions: Vec::new(),
    }
}

fn cpol(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name}, "spec": spec})
}

fn validate_rule(kinds: &[&str]) -> Value {
    json!({"name": "r", "match": {"any": [{"resources": {"kinds": kinds}}]},
        "validate": {"message": "m", "pattern": {"metadata": {"labels": {"app": "?*"}}}}})
}

fn hook<'a>(config: &'a Value, name: &str) -> &'a Value {
    config["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no webhook {name} in {config:#}"))
}

#[test]
fn a_validate_rule_on_configmaps_registers_only_configmaps_with_the_default_operations() {
    let p = cpol("cm", json!({"rules": [validate_rule(&["ConfigMap"])]}));
    let d = desired([&p], &settings(), b"CA", &cluster());
    let w = hook(&d.validating, "validate.kybern.svc-fail");
    assert_eq!(w["clientConfig"]["service"]["path"], "/validate/fail");
    assert_eq!(w["clientConfig"]["caBundle"], "Q0E=");
    assert_eq!(
        w["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
            "operations": ["CREATE", "UPDATE", "DELETE", "CONNECT"], "scope": "*"}])
    );
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["timeoutSeconds"], 10);
    assert_eq!(
        w["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system", "kybern"])
    );
    assert_eq!(d.mutating["webhooks"], json!([]));
    assert!(d.configured.contains("ClusterPolicy.kyverno.io/cm"));
}

#[test]
fn pod_rules_bring_autogen_controllers_and_ephemeral_containers() {
    let p = cpol("pods", json!({"rules": [validate_rule(&["Pod"])]}));
    let d = desired([&p], &settings(), b"CA", &cluster());
    let rules = hook(&d.validating, "validate.kybern.svc-fail")["rules"]
        .as_array()
        .unwrap()
        .clone();
    let resources: Vec<String> = rules
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for want in [
        "pods",
        "pods/ephemeralcontainers",
        "deployments",
        "cronjobs",
        "jobs",
    ] {
        assert!(
            resources.contains(&want.to_string()),
            "{want} missing from {resources:?}"
        );
    }
}

#[test]
fn failure_policy_timeout_operations_and_mutate_go_to_their_own_buckets() {
    let ignore = cpol(
        "ign",
        json!({"failurePolicy": "Ignore", "webhookTimeoutSeconds": 45, "rules": [{
            "name": "r", "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "operations": ["CREATE"]}}]},
            "validate": {"message": "m", "deny": {}}}]}),
    );
    let mutate = cpol(
        "mut",
        json!({"rules": [{"name": "m", "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
            "mutate": {"patchStrategicMerge": {"metadata": {"labels": {"a": "b"}}}}}]}),
    );
    let d = desired([&ignore, &mutate], &settings(), b"CA", &cluster());
    let w = hook(&d.validating, "validate.kybern.svc-ignore");
    assert_eq!(w["failurePolicy"], "Ignore");
    assert_eq!(
        w["timeoutSeconds"], 30,
        "capped at the API server's maximum"
    );
    assert_eq!(w["rules"][0]["operations"], json!(["CREATE"]));
    let m = hook(&d.mutating, "mutate.kybern.svc-fail");
    assert_eq!(m["rules"][0]["operations"], json!(["CREATE", "UPDATE"]));
    assert_eq!(m["reinvocationPolicy"], "IfNeeded");
    assert_eq!(d.validating["webhooks"].as_array().unwrap().len(), 1);
}

#[test]
fn match_conditions_give_a_fine_grained_webhook_and_admission_false_none() {
    let conditioned = cpol(
        "fine",
        json!({"webhookConfiguration": {"matchConditions": [{"name": "c", "expression": "true"}]},
            "rules": [validate_rule(&["ConfigMap"])]}),
    );
    let off = cpol(
        "off",
        json!({"admission": false, "rules": [validate_rule(&["Namespace"])]}),
    );
    let d = desired([&conditioned, &off], &settings(), b"CA", &cluster());
    let w = hook(&d.validating, "validate.kybern.svc-fail-finegrained-fine");
    assert_eq!(
        w["clientConfig"]["service"]["path"],
        "/validate/fail/finegrained/fine"
    );
    assert_eq!(w["matchConditions"][0]["name"], "c");
    assert_eq!(d.validating["webhooks"].as_array().unwrap().len(), 1);
    assert!(!d.configured.contains("ClusterPolicy.kyverno.io/off"));
}

#[test]
fn unknown_kinds_are_reported_and_subresources_resolved() {
    let p = cpol(
        "x",
        json!({"rules": [validate_rule(&["Widget", "Pod/exec", "apps/v1/Deployment/scale"])]}),
    );
    let d = desired([&p], &settings(), b"CA", &cluster());
    assert_eq!(
        d.unresolved,
        vec![(
            "ClusterPolicy.kyverno.io/x".to_string(),
            "Widget".to_string()
        )]
    );
    let text = d.validating.to_string();
    assert!(text.contains("pods/exec"));
    assert!(text.contains("deployments/scale"));
}

#[test]
fn cel_policies_get_webhooks_whose_path_names_them() {
    let vpol = |name: &str| {
        json!({"apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy", "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"], "operations": ["CREATE", "UPDATE"]}]},
                "validations": [{"expression": "true"}]}})
    };
    let (a, b) = (vpol("a"), vpol("b"));
    let d = desired([&a, &b], &settings(), b"CA", &cluster());
    let w = hook(&d.validating, "vpol.validate.kybern.svc-fail");
    assert_eq!(w["clientConfig"]["service"]["path"], "/vpol/fail/a/b");
    assert_eq!(w["rules"][0]["resources"], json!(["pods"]));

    // An ImageValidatingPolicy validates, and pins digests on creates and updates unless
    // `mutateDigest` is false.
    let ivpol = |name: &str, mutate_digest: bool| {
        json!({"apiVersion": "policies.kyverno.io/v1beta1", "kind": "ImageValidatingPolicy",
            "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"], "operations": ["CREATE", "UPDATE", "DELETE"]}]},
                "validationConfigurations": {"mutateDigest": mutate_digest},
                "attestors": [{"name": "k", "cosign": {"key": {"data": "x"}}}],
                "validations": [{"expression": "true"}]}})
    };
    let (pin, keep) = (ivpol("pin", true), ivpol("keep", false));
    let d = desired([&pin, &keep], &settings(), b"CA", &cluster());
    let w = hook(&d.validating, "ivpol.validate.kybern.svc-fail");
    assert_eq!(
        w["clientConfig"]["service"]["path"],
        "/ivpol/validate/fail/pin/keep"
    );
    let m = hook(&d.mutating, "ivpol.mutate.kybern.svc-fail");
    assert_eq!(
        m["clientConfig"]["service"]["path"],
        "/ivpol/mutate/fail/pin"
    );
    assert_eq!(m["rules"][0]["operations"], json!(["CREATE", "UPDATE"]));
}

#[test]
fn the_same_policies_in_any_order_give_the_same_configuration() {
    let p1 = cpol("one", json!({"rules": [validate_rule(&["Pod"])]}));
    let p2 = cpol(
        "two",
        json!({"rules": [validate_rule(&["ConfigMap", "Namespace"])]}),
    );
    let a = desired([&p1, &p2], &settings(), b"CA", &cluster());
    let b = desired([&p2, &p1], &settings(), b"CA", &cluster());
    assert_eq!(a.validating.to_string(), b.validating.to_string());
}

#[test]
fn up_to_date_ignores_what_the_api_server_adds() {
    let p = cpol("cm", json!({"rules": [validate_rule(&["ConfigMap"])]}));
    let d = desired([&p], &settings(), b"CA", &cluster());
    let mut live = d.validating.clone();
    live["metadata"]["resourceVersion"] = json!("7");
    live["webhooks"][0]["rules"][0]["extra"] = json!(1);
    assert!(up_to_date(&live, &d.validating));
    live["webhooks"][0]["clientConfig"]["caBundle"] = json!("other");
    assert!(!up_to_date(&live, &d.validating));
}

#[test]
fn compat_names_follow_kyverno() {
    let mut s = settings();
    s.names = Names::new(Scheme::Kyverno, "kyverno", None);
    let p = cpol("cm", json!({"rules": [validate_rule(&["ConfigMap"])]}));
    let d = desired([&p], &s, b"CA", &cluster());
    assert_eq!(
        d.validating["metadata"]["name"],
        "kyverno-resource-validating-webhook-cfg"
    );
    assert_eq!(
        d.validating["metadata"]["labels"]["webhook.kyverno.io/managed-by"],
        "kyverno"
    );
    hook(&d.validating, "validate.kyverno.svc-fail");
}

#[test]
fn the_config_maps_selectors_and_match_conditions_apply_and_kyberns_namespace_stays_out() {
    let cm = json!({"data": {
        "webhooks": r#"[{"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}, "objectSelector": {"matchLabels": {"checked": "yes"}}}]"#,
        "matchConditions": r#"[{"name": "no-nodes", "expression": "request.resource.resource != 'nodes'"}]"#,
    }});
    let (s, problems) = settings().with_config_map(Some(&cm));
    assert!(problems.is_empty(), "{problems:?}");
    let p = cpol("cm", json!({"rules": [validate_rule(&["ConfigMap"])]}));
    let d = desired([&p], &s, b"CA", &cluster());
    let w = hook(&d.validating, "validate.kybern.svc-fail");
    assert_eq!(w["objectSelector"]["matchLabels"]["checked"], "yes");
    assert_eq!(w["matchConditions"][0]["name"], "no-nodes");
    let text = w["namespaceSelector"].to_string();
    assert!(
        text.contains("kube-system") && text.contains("\"kybern\""),
        "{text}"
    );
    let (_, problems) = settings().with_config_map(Some(&json!({"data": {"webhooks": "{"}})));
    assert_eq!(problems.len(), 1);
}

#[test]
fn policies_themselves_are_sent_to_policyvalidate_from_every_namespace() {
    let d = desired(std::iter::empty(), &settings(), b"CA", &cluster());
    assert_eq!(
        d.policy_validating["metadata"]["name"],
        "kybern-policy-validating-webhook-cfg"
    );
    let w = hook(&d.policy_validating, "validate-policy.kybern.svc");
    assert_eq!(w["clientConfig"]["service"]["path"], "/policyvalidate");
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["namespaceSelector"], json!({}));
    let text = w["rules"].to_string();
    for r in [
        "clusterpolicies",
        "policies",
        "policyexceptions",
        "validatingpolicies",
        "mutatingpolicies",
    ] {
        assert!(text.contains(&format!("\"{r}\"")), "{r} missing: {text}");
    }
    assert!(!text.contains("policyreports"));
}

#[test]
fn generate_rules_register_their_triggers_on_the_validating_webhook() {
    let p = cpol(
        "gen",
        json!({"rules": [{"name": "g", "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
            "generate": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": "{{request.object.metadata.name}}", "data": {}}}]}),
    );
    let d = desired([&p], &settings(), b"CA", &cluster());
    let w = hook(&d.validating, "validate.kybern.svc-fail");
    assert_eq!(w["rules"][0]["resources"], json!(["namespaces"]));
    assert!(d.configured.contains("ClusterPolicy.kyverno.io/gen"));
}
