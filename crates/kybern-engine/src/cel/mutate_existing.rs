//! Mutate existing with a MutatingPolicy (`evaluation.mutateExisting.enabled`): which objects
//! already stored are its targets (`targetMatchConstraints` rules or CEL `expression`, else the
//! policy's own `matchConstraints`), and the mutations run on one target, with `object` the
//! target and `request` the trigger's admission request.

use super::match_constraints::{MatchConstraints, kind_for_resource};
use super::mutating_policy::{MutateResult, MutatingPolicy};
use super::{
    CelError, Condition, ConditionsOutcome, Expression, Scope, VariableValues, compile_conditions,
    evaluate_conditions, validate_cel, value,
};
use crate::context::{ContextProvider, ProviderError};
use crate::request::AdmissionRequest;
use serde_json::Value;
use std::sync::Arc;

/// The mutate-existing part of a MutatingPolicy.
#[derive(Debug, Clone, Default)]
pub struct MutateExisting {
    /// `evaluation.mutateExisting.enabled`.
    pub enabled: bool,
    /// Which objects are targets when no expression names them: `targetMatchConstraints`, else
    /// `matchConstraints`, matched in any operation (a stored object is not being created or
    /// updated).
    pub constraints: MatchConstraints,
    /// `targetMatchConstraints.expression`: the targets as a CEL object or list (`items`).
    pub expression: Option<Expression>,
    /// `targetMatchConstraints` names targets of its own (rules or expression): then
    /// `targetMatchConditions` decide on a target instead of `matchConditions`.
    pub explicit: bool,
    pub conditions: Vec<Condition>,
}

/// Object kinds (`apiVersion`, `kind`) a rule list names without wildcards: the kinds to list.
fn listed_kinds(c: &MatchConstraints) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in &c.resource_rules {
        for group in &r.api_groups {
            for version in &r.api_versions {
                for resource in &r.resources {
                    let base = resource.split('/').next().unwrap_or_default();
                    if group == "*" || version == "*" || base == "*" || base.is_empty() {
                        continue;
                    }
                    let api_version = if group.is_empty() {
                        version.clone()
                    } else {
                        format!("{group}/{version}")
                    };
                    let kind = kind_for_resource(group, base);
                    if !out.iter().any(|(a, k)| *a == api_version && *k == kind) {
                        out.push((api_version, kind));
                    }
                }
            }
        }
    }
    out
}

impl MutateExisting {
    pub fn compile(spec: &Value, match_constraints: &MatchConstraints) -> Result<Self, CelError> {
        let enabled = crate::objects::at(spec, &["evaluation", "mutateExisting", "enabled"])
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let target = spec.get("targetMatchConstraints").filter(|v| !v.is_null());
        let expression = match target
            .and_then(|t| t.get("expression"))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        {
            Some(src) => Some(Expression::compile(
                src,
                "spec.targetMatchConstraints.expression",
            )?),
            None => None,
        };
        let own = MatchConstraints::compile(target, "spec.targetMatchConstraints")?;
        let explicit = expression.is_some() || !own.resource_rules.is_empty();
        let constraints = if own.resource_rules.is_empty() {
            match_constraints.clone()
        } else {
            own
        };
        Ok(MutateExisting {
            enabled,
            constraints,
            expression,
            explicit,
            conditions: compile_conditions(
                spec.get("targetMatchConditions"),
                "spec.targetMatchConditions",
            )?,
        })
    }
}

/// A stored object seen as a request, for matching and for the CEL inputs of a target.
fn target_request(trigger: &AdmissionRequest, target: &Value) -> AdmissionRequest {
    AdmissionRequest {
        operation: trigger.operation,
        object: Arc::new(target.clone()),
        user_info: trigger.user_info.clone(),
        no_user_info: trigger.no_user_info,
        ..AdmissionRequest::default()
    }
}

fn namespace_of(v: &Value) -> &str {
    crate::objects::at(v, &["metadata", "namespace"])
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl MutatingPolicy {
    /// `name`, or `namespace/name` for a NamespacedMutatingPolicy (an UpdateRequest's
    /// `spec.policy`).
    pub fn key(&self) -> String {
        super::policy_key(&self.namespace, &self.name)
    }

    /// The kinds (`apiVersion`, `kind`) listed to find the targets; none when the target
    /// expression names them.
    pub fn target_kinds(&self) -> Vec<(String, String)> {
        if self.mutate_existing.expression.is_some() {
            return Vec::new();
        }
        listed_kinds(&self.mutate_existing.constraints)
    }

    /// Whether this policy patches existing objects.
    pub fn mutates_existing(&self) -> bool {
        self.mutate_existing.enabled
    }

    /// Whether an admitted request starts this policy's mutate-existing work: it patches
    /// existing objects, and its `matchConstraints` and `matchConditions` select the request.
    pub fn is_triggered_by(&self, req: &AdmissionRequest, provider: &dyn ContextProvider) -> bool {
        if !self.mutates_existing()
            || (!self.namespace.is_empty() && req.namespace() != self.namespace)
        {
            return false;
        }
        let labels = super::namespace_labels(req, provider);
        if !self.match_constraints.matches(req, labels.as_ref()) {
            return false;
        }
        if self.match_conditions.is_empty() {
            return true;
        }
        let request = validate_cel::CelInput::request_json(req);
        let namespace_object = super::validating_policy::namespace_object(req, provider);
        let input = validate_cel::CelInput {
            object: req.resource(),
            old_object: &req.old_object,
            request: &request,
            namespace_object: namespace_object.as_ref(),
            params: None,
            provider: Some(provider),
        };
        let Ok(mut scope) = validate_cel::base_scope(&input) else {
            return false;
        };
        VariableValues::evaluate(&self.variables, &mut scope);
        matches!(
            evaluate_conditions(&self.match_conditions, &scope),
            ConditionsOutcome::Met
        )
    }

    /// Whether `target` is one of this policy's targets by its rules and selectors (a
    /// NamespacedMutatingPolicy's targets are in its namespace only).
    pub fn selects_target(&self, target: &Value, provider: &dyn ContextProvider) -> bool {
        if !self.namespace.is_empty() && namespace_of(target) != self.namespace {
            return false;
        }
        let req = target_request(&AdmissionRequest::default(), target);
        let labels = super::namespace_labels(&req, provider);
        self.mutate_existing
            .constraints
            .matches_any_operation(&req, labels.as_ref())
    }

    /// The existing objects this policy patches for `trigger`: those the target expression
    /// returns (evaluated with `object` the trigger), else the stored objects of the kinds the
    /// target rules name (rules with wildcards name no kind to list) that the rules select.
    pub fn targets(
        &self,
        trigger: &AdmissionRequest,
        provider: &dyn ContextProvider,
    ) -> Result<Vec<Value>, String> {
        let me = &self.mutate_existing;
        if let Some(expr) = &me.expression {
            let mut scope = Scope::with_provider(Some(provider));
            scope.set_json("object", trigger.resource());
            let vars = VariableValues::evaluate(&self.variables, &mut scope);
            let out = expr
                .eval(&scope)
                .map_err(|e| format!("targetMatchConstraints.expression: {}", vars.explain(e)))?;
            let out = value::to_json(&out);
            let items = match out {
                Value::Object(mut m) => match m.remove("items") {
                    Some(Value::Array(items)) => items,
                    Some(other) => {
                        m.insert("items".into(), other);
                        vec![Value::Object(m)]
                    }
                    None => vec![Value::Object(m)],
                },
                Value::Null => Vec::new(),
                other => {
                    return Err(format!(
                        "targetMatchConstraints.expression must return an object or a list \
                         object with items, not {other}"
                    ));
                }
            };
            // A namespaced policy never reaches into another namespace, whatever it names.
            return Ok(items
                .into_iter()
                .filter(|t| t.is_object())
                .filter(|t| self.namespace.is_empty() || namespace_of(t) == self.namespace)
                .collect());
        }
        let mut out = Vec::new();
        for (api_version, kind) in self.target_kinds() {
            let objects = match provider.list(&api_version, &kind, &self.namespace) {
                Ok(o) => o,
                // No stored objects are known here (the CLI without target resources).
                Err(ProviderError::Unavailable { .. }) => continue,
                Err(e) => return Err(format!("listing {kind} targets: {e}")),
            };
            out.extend(
                objects
                    .into_iter()
                    .filter(|o| self.selects_target(o, provider)),
            );
        }
        Ok(out)
    }

    /// Runs the mutations on one target: `object` is the target, `request` the trigger's
    /// request; `targetMatchConditions` decide when the policy names its own targets, else
    /// `matchConditions`.
    pub fn evaluate_target(
        &self,
        trigger: &AdmissionRequest,
        target: &Value,
        provider: &dyn ContextProvider,
    ) -> MutateResult {
        // `request.object` is the trigger, not the target that `object` is.
        let mut request = validate_cel::CelInput::request_json(trigger);
        if let Value::Object(m) = &mut request {
            m.insert("object".into(), trigger.object.as_ref().clone());
            m.insert("oldObject".into(), trigger.old_object.as_ref().clone());
        }
        let conditions = if self.mutate_existing.explicit {
            &self.mutate_existing.conditions
        } else {
            &self.match_conditions
        };
        self.run_with(
            &target_request(trigger, target),
            Some(&request),
            conditions,
            provider,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoProvider;
    use serde_json::json;

    fn policy(spec: Value) -> MutatingPolicy {
        MutatingPolicy::compile(&json!({
            "apiVersion": "policies.kyverno.io/v1beta1",
            "kind": "MutatingPolicy",
            "metadata": {"name": "p"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn target_rules_select_any_operation_and_fall_back_to_match_constraints() {
        let own = policy(json!({
            "evaluation": {"mutateExisting": {"enabled": true}},
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["deployments"]}]},
            "targetMatchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]}]},
            "mutations": [],
        }));
        assert!(own.mutates_existing());
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "a"}});
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "a"}});
        assert!(own.selects_target(&cm, &NoProvider));
        assert!(!own.selects_target(&deploy, &NoProvider));
        assert_eq!(
            listed_kinds(&own.mutate_existing.constraints),
            vec![("v1".to_string(), "ConfigMap".to_string())]
        );
        let fallback = policy(json!({
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["deployments"]}]},
            "mutations": [],
        }));
        assert!(!fallback.mutates_existing());
        assert!(fallback.selects_target(&deploy, &NoProvider));
        assert!(!fallback.selects_target(&cm, &NoProvider));
    }

    #[test]
    fn object_is_the_target_and_request_object_the_trigger() {
        let p = policy(json!({
            "evaluation": {"mutateExisting": {"enabled": true}},
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["secrets"]}]},
            "targetMatchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]}]},
            "targetMatchConditions": [{"name": "labelled", "expression": "has(object.metadata.labels)"}],
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                "Object{metadata: Object.metadata{labels: {'by': request.object.metadata.name, 'was': object.metadata.labels.v}}}"}}],
        }));
        let trigger = AdmissionRequest {
            object: Arc::new(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "a"}})),
            ..AdmissionRequest::default()
        };
        let target = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "a", "labels": {"v": "1"}}});
        match p.evaluate_target(&trigger, &target, &NoProvider) {
            MutateResult::Patched(v) => {
                assert_eq!(
                    v["metadata"]["labels"],
                    json!({"v": "1", "by": "s", "was": "1"})
                );
            }
            other => panic!("{other:?}"),
        }
        let bare = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "d", "namespace": "a"}});
        assert!(matches!(
            p.evaluate_target(&trigger, &bare, &NoProvider),
            MutateResult::Skip(_)
        ));
    }

    #[test]
    fn a_namespaced_policy_never_targets_another_namespace() {
        let p = MutatingPolicy::compile(&json!({
            "apiVersion": "policies.kyverno.io/v1beta1",
            "kind": "NamespacedMutatingPolicy",
            "metadata": {"name": "p", "namespace": "team"},
            "spec": {
                "evaluation": {"mutateExisting": {"enabled": true}},
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["secrets"]}]},
                "targetMatchConstraints": {"expression":
                    "{'items': [{'metadata': {'name': 'x', 'namespace': 'team'}}, {'metadata': {'name': 'y', 'namespace': 'other'}}]}"},
                "mutations": [],
            },
        }))
        .unwrap();
        let trigger = AdmissionRequest {
            object: Arc::new(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "team"}})),
            ..AdmissionRequest::default()
        };
        let found = p.targets(&trigger, &NoProvider).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["metadata"]["name"], "x");
    }
}
