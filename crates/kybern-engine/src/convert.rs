//! ClusterPolicy/Policy validate rules converted to ValidatingPolicies with CEL (`kybern
//! convert`). Each rule becomes one ValidatingPolicy (a Policy's rules become
//! NamespacedValidatingPolicies); a rule, or a part of one, that cannot be expressed is named with
//! the reason, never dropped.

mod cel_text;
mod check;
mod conditions;
mod pattern;
mod pod_security;
mod selection;
mod validations;

pub use check::{Agreement, Disagreement, compare};

use crate::cel::match_constraints::{builtin_group, resource_for_kind};
use serde_json::{Map, Value, json};

/// The outcome of converting one policy document.
#[derive(Debug, Default)]
pub struct Conversion {
    /// One ValidatingPolicy per converted rule, with the rule's name.
    pub policies: Vec<(String, Value)>,
    /// Rules that were not converted: (rule name, reason).
    pub skipped: Vec<(String, String)>,
    /// Converted rules that were `validate.cel` (their expressions are copied as written).
    pub from_cel: Vec<String>,
}

fn unsupported<T>(what: impl Into<String>) -> Result<T, String> {
    Err(what.into())
}

fn convert_rule(doc: &Value, rule: &Value, enforce_default: bool) -> Result<Value, String> {
    let name = rule.get("name").and_then(Value::as_str).unwrap_or_default();
    for part in ["mutate", "generate", "verifyImages"] {
        if rule.get(part).is_some() {
            return unsupported(format!("{part} rules are not validation"));
        }
    }
    let Some(validate) = rule.get("validate") else {
        return unsupported("the rule has no validate");
    };
    if rule.get("context").is_some_and(|c| !c.is_null()) {
        return unsupported("context is not converted");
    }
    let selection = selection::selection(rule)?;
    let mut match_conditions = selection.conditions;
    if let Some(pre) = rule.get("preconditions").filter(|p| !p.is_null()) {
        let cel = conditions::conditions(pre, conditions::Scope::default())
            .map_err(|e| format!("preconditions: {e}"))?;
        match_conditions.push(json!({"name": "preconditions", "expression": cel}));
    }
    if let Some(list) = rule.get("celPreconditions").and_then(Value::as_array) {
        match_conditions.extend(list.iter().cloned());
    }
    let converted = match validate.get("podSecurity") {
        Some(block) => pod_security::validations(rule, block)?,
        None => validations::validations(validate)?,
    };
    match_conditions.extend(converted.conditions);
    let enforce = match validate.get("failureAction").and_then(Value::as_str) {
        Some(a) => a.eq_ignore_ascii_case("enforce"),
        None => enforce_default,
    };
    let policy_name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespaced = doc.get("kind").and_then(Value::as_str) == Some("Policy");
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(format!("{policy_name}-{name}")));
    if namespaced {
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        metadata.insert("namespace".into(), json!(ns));
    }
    if let Some(a) = doc.pointer("/metadata/annotations") {
        metadata.insert("annotations".into(), a.clone());
    }
    let background = doc
        .pointer("/spec/background")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut spec = Map::new();
    spec.insert(
        "validationActions".into(),
        json!([if enforce { "Deny" } else { "Audit" }]),
    );
    spec.insert(
        "evaluation".into(),
        json!({"background": {"enabled": background}}),
    );
    spec.insert("matchConstraints".into(), selection.constraints);
    if !match_conditions.is_empty() {
        spec.insert("matchConditions".into(), Value::Array(match_conditions));
    }
    if let Some(v) = converted.variables {
        spec.insert("variables".into(), v);
    }
    spec.insert("validations".into(), Value::Array(converted.validations));
    if let Some(a) = converted.audit_annotations {
        spec.insert("auditAnnotations".into(), a);
    }
    // Kyverno's autogen annotation names the controllers the Pod rule extends to.
    if let Some(list) = doc
        .pointer("/metadata/annotations/pod-policies.kyverno.io~1autogen-controllers")
        .and_then(Value::as_str)
    {
        let controllers: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.eq_ignore_ascii_case("none"))
            .map(|k| resource_for_kind(builtin_group(k).unwrap_or_default(), k))
            .collect();
        spec.insert(
            "autogen".into(),
            json!({"podControllers": {"controllers": controllers}}),
        );
    }
    Ok(json!({
        "apiVersion": "policies.kyverno.io/v1beta1",
        "kind": if namespaced { "NamespacedValidatingPolicy" } else { "ValidatingPolicy" },
        "metadata": metadata,
        "spec": spec,
    }))
}

/// Converts the validate rules of a ClusterPolicy or Policy.
pub fn convert_policy(doc: &Value) -> Conversion {
    let mut out = Conversion::default();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let rules = doc
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rule_name = |r: &Value| {
        r.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if !matches!(kind, "ClusterPolicy" | "Policy") {
        for r in &rules {
            out.skipped.push((
                rule_name(r),
                format!("{kind} is not converted (ClusterPolicy and Policy are)"),
            ));
        }
        return out;
    }
    let enforce_default = doc
        .pointer("/spec/validationFailureAction")
        .and_then(Value::as_str)
        .is_some_and(|a| a.eq_ignore_ascii_case("enforce"));
    for r in &rules {
        match convert_rule(doc, r, enforce_default) {
            Ok(p) => {
                if r.pointer("/validate/cel").is_some() {
                    out.from_cel.push(rule_name(r));
                }
                out.policies.push((rule_name(r), p));
            }
            Err(reason) => out.skipped.push((rule_name(r), reason)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rule: Value) -> Value {
        json!({
            "apiVersion": "kyverno.io/v1",
            "kind": "ClusterPolicy",
            "metadata": {"name": "p"},
            "spec": {"validationFailureAction": "Enforce", "rules": [rule]},
        })
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "a"}, "spec": spec})
    }

    #[test]
    fn a_pattern_with_anchors_decides_as_the_original() {
        let doc = policy(json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "no", "pattern": {"spec": {
                "=(hostNetwork)": "false",
                "containers": [{"image": "!*:latest", "X(ports)": "null"}],
            }}},
        }));
        let c = convert_policy(&doc);
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        let (name, vpol) = &c.policies[0];
        assert_eq!(name, "r");
        assert_eq!(vpol["metadata"]["name"], "p-r");
        assert_eq!(vpol["spec"]["validationActions"], json!(["Deny"]));
        assert_eq!(
            vpol["spec"]["matchConstraints"]["resourceRules"][0],
            json!({"apiGroups": [""], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]})
        );
        let resources = vec![
            pod(json!({"containers": [{"name": "c", "image": "nginx:1.27"}]})),
            pod(json!({"containers": [{"name": "c", "image": "nginx:latest"}]})),
            pod(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "nginx:1"}]})),
            pod(
                json!({"hostNetwork": false, "containers": [{"name": "c", "image": "a:1", "ports": []}]}),
            ),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "a"},
                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:latest"}]}}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "a"}}),
        ];
        let a = compare(&doc, &c, &resources, &crate::context::NoProvider);
        assert_eq!(a.disagreements, vec![]);
        assert_eq!(a.compared, 6);
        assert_eq!(a.decided, 5, "the ConfigMap is selected by neither");
    }

    #[test]
    fn what_cannot_be_expressed_is_named() {
        let c = convert_policy(&policy(json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}, "clusterRoles": ["admin"]}]},
            "validate": {"message": "no", "pattern": {"spec": {"hostNetwork": false}}},
        })));
        assert!(c.policies.is_empty());
        assert_eq!(
            c.skipped,
            vec![(
                "r".to_string(),
                "match on subjects or roles is not converted (a ValidatingPolicy cannot read roles)"
                    .to_string()
            )]
        );
        let c = convert_policy(&policy(json!({
            "name": "d",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "no", "deny": {"conditions": {"any": [
                {"key": "{{ images.containers.app.registry }}", "operator": "AnyIn", "value": ["a"]},
            ]}}},
        })));
        assert!(
            c.skipped[0]
                .1
                .contains("the variable `images` is not converted"),
            "{:?}",
            c.skipped
        );
    }

    fn deny_policy(conditions: Value) -> Value {
        policy(json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "exclude": {"any": [{"resources": {"namespaces": ["kube-*"]}}]},
            "preconditions": {"all": [
                {"key": "{{ request.operation || 'BACKGROUND' }}", "operator": "AnyIn", "value": ["CREATE", "UPDATE"]},
            ]},
            "validate": {"message": "{{ request.object.metadata.name }} is denied", "deny": {"conditions": conditions}},
        }))
    }

    fn labelled(name: &str, ns: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": labels},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    }

    #[test]
    fn deny_conditions_keep_kyvernos_type_rules() {
        // Each operator over keys of every JSON type, and a missing key (an error in both).
        let resources = vec![
            labelled("a", "default", json!({"tier": "web", "n": "3", "q": "1Gi"})),
            labelled("b", "default", json!({"tier": "db", "n": "12"})),
            labelled("c", "kube-system", json!({"tier": "web"})),
            labelled("d", "default", json!({"tier": "web-2", "n": "x"})),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e", "namespace": "default"},
                   "spec": {"replicas": 5, "flag": true, "list": ["web", "db"], "containers": []}}),
        ];
        for conditions in [
            json!({"any": [{"key": "{{ request.object.metadata.labels.tier }}", "operator": "Equals", "value": "web*"}]}),
            json!({"any": [{"key": "{{ request.object.metadata.labels.tier || '' }}", "operator": "NotEquals", "value": "web"}]}),
            json!({"all": [{"key": "{{ request.object.metadata.labels.n || '0' }}", "operator": "GreaterThan", "value": 5}]}),
            json!({"all": [{"key": "{{ request.object.metadata.labels.q || '' }}", "operator": "LessThan", "value": "2Gi"}]}),
            json!({"any": [{"key": "{{ request.object.spec.list || `[]` }}", "operator": "AnyNotIn", "value": ["web"]}]}),
            json!({"any": [{"key": "{{ request.object.spec.flag || `false` }}", "operator": "Equals", "value": true}]}),
            json!({"any": [{"key": "{{ request.object.spec.replicas || `0` }}", "operator": "In", "value": ["5", "6"]}]}),
            json!([{"key": "{{ request.object.metadata.labels.tier || '' }}", "operator": "AllNotIn", "value": ["db", "x*"]}]),
        ] {
            let doc = deny_policy(conditions.clone());
            let c = convert_policy(&doc);
            assert!(c.skipped.is_empty(), "{conditions}: {:?}", c.skipped);
            let a = compare(&doc, &c, &resources, &crate::context::NoProvider);
            assert!(a.invalid.is_empty(), "{conditions}: {:?}", a.invalid);
            assert_eq!(a.disagreements, vec![], "{conditions}");
            assert!(a.decided >= 3, "{conditions}: {a:?}");
        }
        let c = convert_policy(&deny_policy(json!({"any": [
            {"key": "{{ request.object.metadata.labels.tier }}", "operator": "Equals", "value": "web"}]})));
        let vpol = &c.policies[0].1;
        assert_eq!(
            vpol["spec"]["validations"][0]["messageExpression"],
            "string(object.metadata.name) + ' is denied'"
        );
        assert_eq!(
            vpol["spec"]["matchConditions"][0],
            json!({"name": "exclude", "expression": "!(request.namespace.matches('^kube-.*$'))"})
        );
    }

    #[test]
    fn foreach_checks_every_element_and_applies_only_with_one() {
        let doc = policy(json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "no", "foreach": [{
                "list": "request.object.spec.[initContainers, containers][]",
                "preconditions": {"all": [{"key": "{{ element.name }}", "operator": "NotEquals", "value": "skip"}]},
                "pattern": {"image": "!*:latest"},
            }]},
        }));
        let c = convert_policy(&doc);
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        let pod = |containers: Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
                   "spec": {"containers": containers}})
        };
        let resources = vec![
            pod(json!([{"name": "a", "image": "x:1"}])),
            pod(json!([{"name": "a", "image": "x:latest"}])),
            pod(json!([{"name": "skip", "image": "x:latest"}])),
            pod(json!([])),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q", "namespace": "a"},
                   "spec": {"initContainers": [{"name": "i", "image": "y:latest"}], "containers": [{"name": "a", "image": "x:1"}]}}),
        ];
        let a = compare(&doc, &c, &resources, &crate::context::NoProvider);
        assert!(a.invalid.is_empty(), "{:?}", a.invalid);
        assert_eq!(a.disagreements, vec![]);
        assert_eq!(
            a.decided, 3,
            "the skipped and the empty list apply to neither: {a:?}"
        );
    }

    #[test]
    fn cel_rules_are_copied_and_params_are_named() {
        let doc = policy(json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "celPreconditions": [{"name": "named", "expression": "object.metadata.name != 'x'"}],
            "validate": {"cel": {
                "variables": [{"name": "n", "expression": "size(object.spec.containers)"}],
                "expressions": [{"expression": "variables.n < 2", "message": "too many"}],
            }},
        }));
        let c = convert_policy(&doc);
        let spec = &c.policies[0].1["spec"];
        assert_eq!(spec["variables"][0]["name"], "n");
        assert_eq!(spec["validations"][0]["message"], "too many");
        assert_eq!(spec["matchConditions"][0]["name"], "named");
        assert_eq!(c.from_cel, vec!["r".to_string()]);
        let with_params = policy(json!({
            "name": "p",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"cel": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                                 "expressions": [{"expression": "true"}]}},
        }));
        assert!(
            convert_policy(&with_params).skipped[0]
                .1
                .contains("paramKind")
        );
    }
}
