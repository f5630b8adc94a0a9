//! Mutate existing (`mutate.targets`): which rules a trigger starts, and the targets they want
//! patched. The engine computes the patched targets (it lists them through the context
//! provider); this says which ones to write. Pure apart from that provider.

use kybern_engine::context::ContextProvider;
use kybern_engine::engine::{Engine, PolicyContext};
use kybern_engine::exceptions::PolicyException;
use kybern_engine::mutation;
use kybern_engine::policy::{Policy, RuleBody};
use kybern_engine::request::AdmissionRequest;
use kybern_engine::response::RuleStatus;
use serde_json::Value;
use std::collections::BTreeMap;

/// True when the policy has a rule with `mutate.targets`.
pub fn has_mutate_existing(policy: &Policy) -> bool {
    policy.has_rule_of(|b| matches!(b, RuleBody::Mutate(m) if mutation::targets(m).is_some()))
}

/// The mutate-existing rules whose `match`/`exclude` select this trigger (preconditions and
/// targets are evaluated when the work runs, against the cluster as it is then).
pub fn matching_rules(policy: &Policy, request: &AdmissionRequest) -> Vec<String> {
    super::rules_selecting(
        policy,
        request,
        |r| matches!(&r.body, RuleBody::Mutate(m) if mutation::targets(m).is_some()),
    )
}

/// Rules that also act on the targets existing when the policy is created or changed:
/// `mutateExistingOnPolicyUpdate` on the rule's `mutate`, or on the policy's `spec` (`spec` is
/// the raw policy's).
pub fn on_policy_update_rules(policy: &Policy, spec: &Value) -> Vec<String> {
    let policy_wide = spec
        .get("mutateExistingOnPolicyUpdate")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    policy
        .rules
        .iter()
        .filter(|r| match &r.body {
            RuleBody::Mutate(m) if mutation::targets(m).is_some() => m
                .get("mutateExistingOnPolicyUpdate")
                .and_then(Value::as_bool)
                .unwrap_or(policy_wide),
            _ => false,
        })
        .map(|r| r.name.clone())
        .collect()
}

/// Runs `rules` of `policy` for the trigger: the targets to write, after the rules' patches,
/// and the messages of rules that failed. A namespaced Policy's targets outside its namespace
/// are refused (the engine already selects only there; this holds even if it did not).
pub fn run(
    policy: &Policy,
    request: &AdmissionRequest,
    provider: &dyn ContextProvider,
    exceptions: &[PolicyException],
    rules: &[String],
) -> (Vec<Value>, Vec<String>) {
    let engine = Engine::new(provider);
    let pctx = PolicyContext::new(request);
    let response = engine.mutate(policy, &pctx, exceptions, &BTreeMap::new());
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for r in response.rules {
        if !rules.contains(&r.name) {
            continue;
        }
        match (r.status, r.patched_target) {
            (RuleStatus::Pass, Some(target)) => {
                let ns = target
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !policy.namespace.is_empty() && ns != policy.namespace {
                    errors.push(format!(
                        "rule {}: a Policy in namespace {} cannot patch in {ns:?}",
                        r.name, policy.namespace
                    ));
                    continue;
                }
                targets.push(target);
            }
            (RuleStatus::Fail | RuleStatus::Error, _) => {
                errors.push(format!("rule {}: {}", r.name, r.message));
            }
            _ => {}
        }
    }
    (targets, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybern_engine::context::{ApiCall, ImageData, Labels, ProviderError};
    use kybern_engine::policy::compile_policy;
    use kybern_engine::request::Operation;
    use serde_json::json;
    use std::sync::Arc;

    struct Secrets(Vec<Value>);

    impl ContextProvider for Secrets {
        fn resource(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
        fn list(&self, _: &str, kind: &str, ns: &str) -> Result<Vec<Value>, ProviderError> {
            Ok(self
                .0
                .iter()
                .filter(|o| {
                    o["kind"] == kind && (ns.is_empty() || o["metadata"]["namespace"] == ns)
                })
                .cloned()
                .collect())
        }
        fn config_map(&self, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
        fn api_call(&self, _: &ApiCall) -> Result<Value, ProviderError> {
            Ok(Value::Null)
        }
        fn namespace_labels(&self, _: &str) -> Result<Option<Labels>, ProviderError> {
            Ok(None)
        }
        fn image_data(&self, _: &str) -> Result<ImageData, ProviderError> {
            Ok(ImageData::default())
        }
        fn global_context(&self, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
    }

    fn policy(kind: &str, namespace: Option<&str>) -> Policy {
        let mut metadata = json!({"name": "refresh"});
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        compile_policy(&json!({
            "apiVersion": "kyverno.io/v1", "kind": kind, "metadata": metadata,
            "spec": {"mutateExistingOnPolicyUpdate": true, "rules": [{"name": "stamp",
                "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "selector": {"matchLabels": {"refresh": "yes"}}}}]},
                "mutate": {"targets": [{"apiVersion": "v1", "kind": "Secret", "namespace": "{{request.object.metadata.namespace}}"}],
                    "patchStrategicMerge": {"metadata": {"labels": {"refreshed-by": "{{request.object.metadata.name}}"}}}}}]}
        }))
        .unwrap()
    }

    fn trigger(labels: Value) -> AdmissionRequest {
        AdmissionRequest {
            operation: Operation::Update,
            object: Arc::new(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm", "namespace": "app", "labels": labels}})),
            ..AdmissionRequest::default()
        }
    }

    #[test]
    fn a_labelled_trigger_patches_the_targets_of_its_namespace() {
        let p = policy("ClusterPolicy", None);
        assert!(has_mutate_existing(&p));
        assert!(matching_rules(&p, &trigger(json!({}))).is_empty());
        let req = trigger(json!({"refresh": "yes"}));
        let rules = matching_rules(&p, &req);
        assert_eq!(rules, vec!["stamp".to_string()]);
        let secrets = Secrets(vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "namespace": "app"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s2", "namespace": "other"}}),
        ]);
        let (targets, errors) = run(&p, &req, &secrets, &[], &rules);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0]["metadata"]["name"], "s1");
        assert_eq!(targets[0]["metadata"]["labels"]["refreshed-by"], "cm");
        assert_eq!(
            on_policy_update_rules(&p, &json!({"mutateExistingOnPolicyUpdate": true})),
            rules
        );
        assert!(on_policy_update_rules(&p, &json!({})).is_empty());
    }

    #[test]
    fn a_namespaced_policy_is_started_only_by_triggers_of_its_namespace() {
        let p = policy("Policy", Some("elsewhere"));
        assert!(matching_rules(&p, &trigger(json!({"refresh": "yes"}))).is_empty());
    }
}
