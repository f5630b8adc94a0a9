//! Generation for one trigger: the engine says which objects a policy's generate rules want, this
//! labels them as Kyverno does (so a cluster moving from Kyverno adopts what it generated) and
//! says how to write them. Pure apart from the context provider the engine reads.

use kybern_engine::context::ContextProvider;
use kybern_engine::engine::{Engine, PolicyContext};
use kybern_engine::exceptions::PolicyException;
use kybern_engine::policy::{Policy, RuleBody};
use kybern_engine::request::AdmissionRequest;
use kybern_engine::response::RuleStatus;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Label every generated object carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kyverno");
pub const POLICY_NAME: &str = "generate.kyverno.io/policy-name";
pub const POLICY_NAMESPACE: &str = "generate.kyverno.io/policy-namespace";
pub const RULE_NAME: &str = "generate.kyverno.io/rule-name";
pub const TRIGGER_GROUP: &str = "generate.kyverno.io/trigger-group";
pub const TRIGGER_VERSION: &str = "generate.kyverno.io/trigger-version";
pub const TRIGGER_KIND: &str = "generate.kyverno.io/trigger-kind";
pub const TRIGGER_NAMESPACE: &str = "generate.kyverno.io/trigger-namespace";
pub const TRIGGER_UID: &str = "generate.kyverno.io/trigger-uid";

/// Objects one rule wants, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub rule: String,
    /// `synchronize: true`: kept equal to the rule; otherwise created once and left alone.
    pub synchronize: bool,
    pub objects: Vec<Value>,
}

/// True when the policy has a generate rule.
pub fn has_generate(policy: &Policy) -> bool {
    policy.has_rule_of(|b| matches!(b, RuleBody::Generate(_)))
}

/// A `generate` block with `synchronize: true`.
pub fn is_synchronized(g: &Value) -> bool {
    g.get("synchronize").and_then(Value::as_bool) == Some(true)
}

/// A generate rule with `synchronize: true`.
fn synchronized(body: &RuleBody) -> bool {
    matches!(body, RuleBody::Generate(g) if is_synchronized(g))
}

fn synchronize_of(policy: &Policy, rule: &str) -> bool {
    policy
        .rules
        .iter()
        .any(|r| r.name == rule && synchronized(&r.body))
}

/// Runs `policy`'s generate rules (only `rules` when not empty) on the request; rules that did
/// not apply give nothing, rules that failed give their message.
pub fn run(
    policy: &Policy,
    request: &AdmissionRequest,
    provider: &dyn ContextProvider,
    exceptions: &[PolicyException],
    rules: &[String],
) -> (Vec<Generated>, Vec<String>) {
    let engine = Engine::new(provider);
    let pctx = PolicyContext::new(request);
    let response = engine.generate(policy, &pctx, exceptions, &BTreeMap::new());
    let trigger = request.resource();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in response.rules {
        if !rules.is_empty() && !rules.contains(&r.name) {
            continue;
        }
        match r.status {
            RuleStatus::Pass => {
                let synchronize = synchronize_of(policy, &r.name);
                let objects = r
                    .generated
                    .into_iter()
                    .map(|mut o| {
                        label(&mut o, policy, &r.name, trigger);
                        o
                    })
                    .collect();
                out.push(Generated {
                    rule: r.name,
                    synchronize,
                    objects,
                });
            }
            RuleStatus::Fail | RuleStatus::Error => {
                errors.push(format!("rule {}: {}", r.name, r.message));
            }
            RuleStatus::Warn | RuleStatus::Skip => {}
        }
    }
    (out, errors)
}

/// The rules of `policy` that act on this request (they passed), without building objects twice
/// for the caller that only queues work.
pub fn matching_rules(
    policy: &Policy,
    request: &AdmissionRequest,
    provider: &dyn ContextProvider,
    exceptions: &[PolicyException],
) -> Vec<String> {
    let engine = Engine::new(provider);
    let pctx = PolicyContext::new(request);
    engine
        .generate(policy, &pctx, exceptions, &BTreeMap::new())
        .rules
        .into_iter()
        .filter(|r| r.status == RuleStatus::Pass)
        .map(|r| r.name)
        .collect()
}

/// True when some rule of the named ones keeps its objects in sync.
pub fn any_synchronized(policy: &Policy, rules: &[String]) -> bool {
    rules.iter().any(|r| synchronize_of(policy, r))
}

/// The kinds a generate rule writes, `(apiVersion, kind)`: its own, each `cloneList` kind and
/// each `foreach` entry's (kinds given by a variable are left out: they are not known before a
/// trigger).
pub fn downstream_kinds(g: &Value) -> Vec<(String, String)> {
    let pair = |v: &Value| {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind) = (s("apiVersion"), s("kind"));
        (!api_version.is_empty() && !kind.is_empty() && !kind.contains("{{"))
            .then(|| (api_version.to_string(), kind.to_string()))
    };
    let mut out: Vec<(String, String)> = pair(g).into_iter().collect();
    let clone_list = g
        .pointer("/cloneList/kinds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|k| match k.rsplit_once('/') {
            Some((av, kd)) => (av.to_string(), kd.to_string()),
            None => ("v1".to_string(), k.to_string()),
        });
    out.extend(clone_list);
    let foreach = g
        .get("foreach")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    out.extend(foreach.filter_map(pair));
    out.sort();
    out.dedup();
    out
}

/// The synchronized generate rules whose `match`/`exclude` select the object a DELETE request
/// removes: what they wrote for it goes with it.
pub fn synchronized_rules_selecting(policy: &Policy, request: &AdmissionRequest) -> Vec<String> {
    super::rules_selecting(policy, request, |r| synchronized(&r.body))
}

/// The kinds the named generate rule writes (see [`downstream_kinds`]).
pub fn rule_kinds(policy: &Policy, rule: &str) -> Vec<(String, String)> {
    policy
        .rules
        .iter()
        .filter(|r| r.name == rule)
        .filter_map(|r| match &r.body {
            RuleBody::Generate(g) => Some(downstream_kinds(g)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// What deleting `policy` deletes with it: for each generate rule with `synchronize: true` and
/// without `orphanDownstreamOnPolicyDelete: true`, the rule's name and the kinds it writes.
pub fn downstream_on_policy_delete(policy: &Policy) -> Vec<(String, Vec<(String, String)>)> {
    policy
        .rules
        .iter()
        .filter_map(|r| match &r.body {
            RuleBody::Generate(g)
                if is_synchronized(g)
                    && g.get("orphanDownstreamOnPolicyDelete")
                        .and_then(Value::as_bool)
                        != Some(true) =>
            {
                Some((r.name.clone(), downstream_kinds(g)))
            }
            _ => None,
        })
        .collect()
}

/// Kyverno's labels on a generated object: who manages it, which policy and rule, which trigger.
fn label(obj: &mut Value, policy: &Policy, rule: &str, trigger: &Value) {
    label_with(obj, &policy.name, &policy.namespace, rule, trigger);
}

/// Kyverno's labels on a generated object: managed by, the policy and rule, the trigger.
pub fn label_with(
    obj: &mut Value,
    policy_name: &str,
    policy_namespace: &str,
    rule: &str,
    trigger: &Value,
) {
    let api_version = trigger
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let meta = |p: &str| {
        trigger
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let labels = json!({
        MANAGED_BY.0: MANAGED_BY.1,
        POLICY_NAME: policy_name,
        POLICY_NAMESPACE: policy_namespace,
        RULE_NAME: rule,
        TRIGGER_GROUP: group,
        TRIGGER_VERSION: version,
        TRIGGER_KIND: meta("/kind"),
        TRIGGER_NAMESPACE: meta("/metadata/namespace"),
        TRIGGER_UID: meta("/metadata/uid"),
    });
    let Some(o) = obj.as_object_mut() else { return };
    let metadata = o
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(metadata) = metadata else { return };
    let existing = metadata.entry("labels").or_insert_with(|| json!({}));
    if let (Some(existing), Value::Object(add)) = (existing.as_object_mut(), labels) {
        for (k, v) in add {
            existing.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybern_engine::context::NoProvider;
    use kybern_engine::policy::compile_policy;
    use kybern_engine::request::Operation;
    use std::sync::Arc;

    fn policy(sync: bool) -> Policy {
        compile_policy(&json!({
            "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "add-netpol"},
            "spec": {"rules": [{"name": "default-deny",
                "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
                "generate": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "name": "default-deny", "namespace": "{{request.object.metadata.name}}",
                    "synchronize": sync,
                    "data": {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}}}]}
        }))
        .unwrap()
    }

    fn namespace_request() -> AdmissionRequest {
        AdmissionRequest {
            operation: Operation::Create,
            object: Arc::new(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team-a", "uid": "u-1"}})),
            ..AdmissionRequest::default()
        }
    }

    #[test]
    fn a_namespace_gets_its_network_policy_labelled_as_kyverno_labels_it() {
        let p = policy(true);
        let (generated, errors) = run(&p, &namespace_request(), &NoProvider, &[], &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(generated.len(), 1);
        let g = &generated[0];
        assert!(g.synchronize);
        let obj = &g.objects[0];
        assert_eq!(obj["kind"], "NetworkPolicy");
        assert_eq!(obj["metadata"]["namespace"], "team-a");
        let labels = &obj["metadata"]["labels"];
        assert_eq!(labels[MANAGED_BY.0], "kyverno");
        assert_eq!(labels[POLICY_NAME], "add-netpol");
        assert_eq!(labels[TRIGGER_KIND], "Namespace");
        assert_eq!(labels[TRIGGER_UID], "u-1");
        assert_eq!(labels[TRIGGER_VERSION], "v1");
        assert_eq!(
            matching_rules(&p, &namespace_request(), &NoProvider, &[]),
            vec!["default-deny".to_string()]
        );
        assert!(!any_synchronized(&policy(false), &["default-deny".into()]));
    }

    #[test]
    fn only_synchronized_rules_that_do_not_orphan_delete_with_the_policy() {
        assert_eq!(
            downstream_on_policy_delete(&policy(true)),
            vec![(
                "default-deny".to_string(),
                vec![(
                    "networking.k8s.io/v1".to_string(),
                    "NetworkPolicy".to_string()
                )]
            )]
        );
        assert!(downstream_on_policy_delete(&policy(false)).is_empty());
        let orphan = compile_policy(&json!({
            "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
            "spec": {"rules": [{"name": "copy",
                "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
                "generate": {"namespace": "{{request.object.metadata.name}}", "synchronize": true,
                    "orphanDownstreamOnPolicyDelete": true,
                    "cloneList": {"namespace": "default", "kinds": ["v1/Secret", "v1/ConfigMap"]}}}]}
        }))
        .unwrap();
        assert!(downstream_on_policy_delete(&orphan).is_empty());
        let RuleBody::Generate(g) = &orphan.rules[0].body else {
            panic!("a generate rule")
        };
        assert_eq!(
            downstream_kinds(g),
            vec![
                ("v1".to_string(), "ConfigMap".to_string()),
                ("v1".to_string(), "Secret".to_string())
            ]
        );
    }

    #[test]
    fn a_request_no_rule_matches_generates_nothing() {
        let mut req = namespace_request();
        req.object = Arc::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}}),
        );
        let (generated, _) = run(&policy(true), &req, &NoProvider, &[], &[]);
        assert!(generated.is_empty());
    }
}
