//! MutatingPolicy (`policies.kyverno.io`, with its Namespaced variant) and Kubernetes'
//! MutatingAdmissionPolicy with its bindings: `mutations` as `ApplyConfiguration` (a CEL object
//! merged into the resource) or `JSONPatch` (a CEL list of RFC 6902 operations), applied in
//! order, each seeing the result of the previous one as `object`.
//!
//! Merging follows the apiserver: a MutatingAdmissionPolicy merges with a deduced schema (maps
//! merge field by field, lists are replaced whole); a MutatingPolicy merges with the Kubernetes
//! schema of known kinds (lists such as `containers` merge by their key), as Kyverno's static
//! type converter does.

use super::exceptions::{CelException, ExceptionOutcome, check_exceptions, check_exceptions_on};
use super::match_constraints::MatchConstraints;
use super::mutate_existing::MutateExisting;
use super::validate_cel::{CelInput, ParamSource, base_scope};
use super::validating_policy::{Binding, autogen_controllers, autogen_request};
use super::{
    CelError, Condition, ConditionsOutcome, Expression, Variable, VariableValues,
    compile_conditions, compile_variables, evaluate_conditions, value,
};
use crate::context::ContextProvider;
use crate::request::AdmissionRequest;
use serde_json::Value;

/// The policy kinds this module evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutatingKind {
    MutatingPolicy,
    NamespacedMutatingPolicy,
    MutatingAdmissionPolicy,
}

impl MutatingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MutatingKind::MutatingPolicy => "MutatingPolicy",
            MutatingKind::NamespacedMutatingPolicy => "NamespacedMutatingPolicy",
            MutatingKind::MutatingAdmissionPolicy => "MutatingAdmissionPolicy",
        }
    }

    /// The kind of a policy document, if this module evaluates it.
    pub fn of(doc: &Value) -> Option<MutatingKind> {
        let api = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        match (api.split('/').next().unwrap_or_default(), kind) {
            ("policies.kyverno.io", "MutatingPolicy") => Some(MutatingKind::MutatingPolicy),
            ("policies.kyverno.io", "NamespacedMutatingPolicy") => {
                Some(MutatingKind::NamespacedMutatingPolicy)
            }
            ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => {
                Some(MutatingKind::MutatingAdmissionPolicy)
            }
            _ => None,
        }
    }
}

/// How a mutation's expression result is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    ApplyConfiguration,
    JsonPatch,
}

/// One `mutations` entry.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub patch_type: PatchType,
    pub expression: Expression,
}

/// The result of a mutating policy on one request.
#[derive(Debug, Clone, PartialEq)]
pub enum MutateResult {
    /// `matchConstraints` (or every binding) do not select the request.
    NotMatched,
    /// `matchConditions` are false, or an exception applies (message).
    Skip(String),
    /// An exception with `reportResult: pass` applies (message).
    ExceptionPass(String),
    /// The mutations ran; the patched resource (possibly unchanged).
    Patched(Value),
    Error(String),
}

/// A compiled MutatingPolicy or MutatingAdmissionPolicy.
#[derive(Debug, Clone)]
pub struct MutatingPolicy {
    pub kind: MutatingKind,
    pub name: String,
    /// For NamespacedMutatingPolicy; empty otherwise.
    pub namespace: String,
    pub match_constraints: MatchConstraints,
    pub match_conditions: Vec<Condition>,
    pub variables: Vec<Variable>,
    pub mutations: Vec<Mutation>,
    pub param_kind: Option<Value>,
    /// Bindings of a MutatingAdmissionPolicy.
    pub bindings: Vec<Binding>,
    /// Plural resources of pod controllers mutated through the Pod policy (autogen).
    pub autogen_controllers: Vec<String>,
    /// CEL PolicyExceptions naming this policy.
    pub exceptions: Vec<CelException>,
    pub annotations: serde_json::Map<String, Value>,
    /// `evaluation.mutateExisting` with its targets.
    pub mutate_existing: MutateExisting,
}

fn compile_mutations(list: Option<&Value>, path: &str) -> Result<Vec<Mutation>, CelError> {
    let items = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(CelError::new(path, "must be a list")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let patch_type = match m.get("patchType").and_then(Value::as_str) {
            Some("ApplyConfiguration") => PatchType::ApplyConfiguration,
            Some("JSONPatch") => PatchType::JsonPatch,
            Some(other) => {
                return Err(CelError::new(
                    format!("{p}.patchType"),
                    format!("unsupported patch type {other:?}"),
                ));
            }
            None => return Err(CelError::new(format!("{p}.patchType"), "is required")),
        };
        let (field, key) = match patch_type {
            PatchType::ApplyConfiguration => ("applyConfiguration", "applyConfiguration"),
            PatchType::JsonPatch => ("jsonPatch", "jsonPatch"),
        };
        let src = m
            .get(key)
            .and_then(|v| v.get("expression"))
            .and_then(Value::as_str)
            .ok_or_else(|| CelError::new(format!("{p}.{field}.expression"), "is required"))?;
        out.push(Mutation {
            patch_type,
            expression: Expression::compile(src, &format!("{p}.{field}.expression"))?,
        });
    }
    Ok(out)
}

impl MutatingPolicy {
    /// Compiles a MutatingPolicy, NamespacedMutatingPolicy or MutatingAdmissionPolicy document.
    pub fn compile(doc: &Value) -> Result<MutatingPolicy, CelError> {
        let kind = MutatingKind::of(doc).ok_or_else(|| {
            CelError::new("kind", "not a MutatingPolicy or MutatingAdmissionPolicy")
        })?;
        let spec = doc
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| CelError::new("spec", "is required"))?;
        let match_constraints =
            MatchConstraints::compile(spec.get("matchConstraints"), "spec.matchConstraints")?;
        let autogen = if kind == MutatingKind::MutatingAdmissionPolicy {
            Vec::new()
        } else {
            autogen_controllers(spec, &match_constraints)
        };
        let mutate_existing = if kind == MutatingKind::MutatingAdmissionPolicy {
            MutateExisting::default()
        } else {
            MutateExisting::compile(spec, &match_constraints)?
        };
        Ok(MutatingPolicy {
            mutate_existing,
            kind,
            name: super::policy_name(doc),
            namespace: super::policy_namespace(doc, kind == MutatingKind::NamespacedMutatingPolicy),
            match_conditions: compile_conditions(
                spec.get("matchConditions"),
                "spec.matchConditions",
            )?,
            variables: compile_variables(spec.get("variables"), "spec.variables")?,
            mutations: compile_mutations(spec.get("mutations"), "spec.mutations")?,
            param_kind: spec.get("paramKind").filter(|v| !v.is_null()).cloned(),
            match_constraints,
            bindings: Vec::new(),
            autogen_controllers: autogen,
            exceptions: Vec::new(),
            annotations: crate::objects::at(doc, &["metadata", "annotations"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Evaluates the policy on a request: matching, bindings, conditions, then the mutations.
    pub fn evaluate(&self, req: &AdmissionRequest, provider: &dyn ContextProvider) -> MutateResult {
        if !self.namespace.is_empty() && req.namespace() != self.namespace {
            return MutateResult::NotMatched;
        }
        let ns_labels = super::namespace_labels(req, provider);
        if !self.match_constraints.matches(req, ns_labels.as_ref()) {
            // Pod controllers: the mutations apply to the Pod template.
            if let Some(pod_req) = autogen_request(&self.autogen_controllers, req)
                && self.match_constraints.matches(&pod_req, ns_labels.as_ref())
            {
                return match self.run(&pod_req, Some(req), None, provider) {
                    MutateResult::Patched(pod) => {
                        MutateResult::Patched(put_template(req.resource(), &pod))
                    }
                    other => other,
                };
            }
            return MutateResult::NotMatched;
        }
        if self.kind != MutatingKind::MutatingAdmissionPolicy || self.bindings.is_empty() {
            return self.run(req, None, None, provider);
        }
        // The first binding that selects the request is used.
        for b in &self.bindings {
            if let Some(m) = &b.match_resources
                && !m.matches_binding(req, ns_labels.as_ref())
            {
                continue;
            }
            return self.run(req, None, Some(b), provider);
        }
        MutateResult::NotMatched
    }

    /// Runs the policy on `req`; `sent` is the request as sent when `req` is its Pod template
    /// view (autogen): exceptions are decided on it.
    fn run(
        &self,
        req: &AdmissionRequest,
        sent: Option<&AdmissionRequest>,
        binding: Option<&Binding>,
        provider: &dyn ContextProvider,
    ) -> MutateResult {
        self.run_inner(req, sent, binding, None, &self.match_conditions, provider)
    }

    /// Runs the policy on `req`'s object with `request` as the CEL `request` (default: `req`'s
    /// own) and `conditions` in place of `matchConditions`.
    pub(super) fn run_with(
        &self,
        req: &AdmissionRequest,
        request: Option<&Value>,
        conditions: &[Condition],
        provider: &dyn ContextProvider,
    ) -> MutateResult {
        self.run_inner(req, None, None, request, conditions, provider)
    }

    fn run_inner(
        &self,
        req: &AdmissionRequest,
        sent: Option<&AdmissionRequest>,
        binding: Option<&Binding>,
        request: Option<&Value>,
        conditions: &[Condition],
        provider: &dyn ContextProvider,
    ) -> MutateResult {
        let own_request;
        let request = match request {
            Some(r) => r,
            None => {
                own_request = CelInput::request_json(req);
                &own_request
            }
        };
        let namespace_object = super::validating_policy::namespace_object(req, provider);
        let input = CelInput {
            object: req.resource(),
            old_object: &req.old_object,
            request,
            namespace_object: namespace_object.as_ref(),
            params: None,
            provider: Some(provider),
        };
        let mut scope = match base_scope(&input) {
            Ok(s) => s,
            Err(e) => return MutateResult::Error(e),
        };
        let params = match self.params_for(binding, provider, req.namespace()) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let exceptions = match sent.filter(|_| !self.exceptions.is_empty()) {
            None => check_exceptions(&self.exceptions, &mut scope),
            Some(sent) => {
                let sent_request = CelInput::request_json(sent);
                let sent_input = CelInput {
                    object: sent.resource(),
                    old_object: &sent.old_object,
                    request: &sent_request,
                    ..input
                };
                match base_scope(&sent_input) {
                    Ok(sent) => check_exceptions_on(&self.exceptions, &sent, &mut scope),
                    Err(e) => return MutateResult::Error(e),
                }
            }
        };
        match exceptions {
            ExceptionOutcome::None => {}
            ExceptionOutcome::Skip(m) => return MutateResult::Skip(m),
            ExceptionOutcome::Pass(m) => return MutateResult::ExceptionPass(m),
            ExceptionOutcome::Error(e) => return MutateResult::Error(e),
        }
        let vars = VariableValues::evaluate(&self.variables, &mut scope);
        match evaluate_conditions(conditions, &scope) {
            ConditionsOutcome::Met => {}
            ConditionsOutcome::NotMet(name) => {
                return MutateResult::Skip(format!("match condition {name:?} not met"));
            }
            ConditionsOutcome::Error(e) => return MutateResult::Error(vars.explain(e)),
        }
        let mut object = req.resource().clone();
        for p in &params {
            scope.set_json("params", p);
            let vars = VariableValues::evaluate(&self.variables, &mut scope);
            for (i, m) in self.mutations.iter().enumerate() {
                let out = match m.expression.eval(&scope) {
                    Ok(v) => value::to_json(&v),
                    Err(e) => {
                        return MutateResult::Error(format!("mutation {i}: {}", vars.explain(e)));
                    }
                };
                object = match apply_mutation(self.kind, m.patch_type, &object, &out) {
                    Ok(o) => o,
                    Err(e) => return MutateResult::Error(format!("mutation {i}: {e}")),
                };
                scope.set_json("object", &object);
            }
        }
        MutateResult::Patched(object)
    }

    fn params_for(
        &self,
        binding: Option<&Binding>,
        provider: &dyn ContextProvider,
        namespace: &str,
    ) -> Result<Vec<Value>, MutateResult> {
        let Some(b) = binding else {
            return Ok(vec![Value::Null]);
        };
        let src = match ParamSource::compile(self.param_kind.as_ref(), b.param_ref.as_ref(), "spec")
        {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(vec![Value::Null]),
            Err(e) => return Err(MutateResult::Error(e.to_string())),
        };
        match src.resolve(Some(provider), namespace) {
            Ok(found) if found.is_empty() => {
                if src.allow_not_found {
                    Err(MutateResult::Patched(Value::Null))
                } else {
                    Err(MutateResult::Error(format!(
                        "no params found for policy binding {:?} with Deny parameterNotFoundAction",
                        b.name
                    )))
                }
            }
            Ok(found) => Ok(found),
            Err(e) => Err(MutateResult::Error(e)),
        }
    }
}

/// Writes a mutated Pod back into a controller's template.
fn put_template(controller: &Value, pod: &Value) -> Value {
    let mut out = controller.clone();
    let pointer = if controller.get("kind").and_then(Value::as_str) == Some("CronJob") {
        "/spec/jobTemplate/spec/template"
    } else {
        "/spec/template"
    };
    if let Some(t) = out.pointer_mut(pointer).and_then(Value::as_object_mut) {
        for key in ["metadata", "spec"] {
            if let Some(v) = pod.get(key) {
                let mut v = v.clone();
                if key == "metadata"
                    && let Some(m) = v.as_object_mut()
                    && controller
                        .pointer(&format!("{pointer}/metadata/namespace"))
                        .is_none()
                {
                    m.remove("namespace");
                }
                t.insert(key.to_string(), v);
            }
        }
    }
    out
}

/// Applies one mutation's result to `object`.
pub fn apply_mutation(
    kind: MutatingKind,
    patch_type: PatchType,
    object: &Value,
    out: &Value,
) -> Result<Value, String> {
    match patch_type {
        PatchType::JsonPatch => {
            if !out.is_array() {
                return Err("a JSONPatch expression must return a list of patch operations".into());
            }
            crate::json_patch::apply(object, out).map_err(|e| e.to_string())
        }
        PatchType::ApplyConfiguration => {
            if !out.is_object() {
                return Err("an ApplyConfiguration expression must return an object".into());
            }
            if kind == MutatingKind::MutatingAdmissionPolicy {
                let mut merged = object.clone();
                merge_deduced(&mut merged, out);
                Ok(merged)
            } else {
                match crate::strategic_merge::apply_configuration(object, out) {
                    Ok(crate::strategic_merge::PatchOutcome::Patched(v)) => Ok(v),
                    Ok(crate::strategic_merge::PatchOutcome::Skip(_)) => Ok(object.clone()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

/// Server-side apply with a deduced schema: maps merge recursively, everything else (lists
/// included) replaces the old value; `null` removes the field.
pub fn merge_deduced(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_deduced(existing, v);
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoProvider;
    use crate::request::Operation;
    use serde_json::json;

    fn policy(kind: &str, mutations: Value, conditions: Value) -> MutatingPolicy {
        let api = if kind == "MutatingAdmissionPolicy" {
            "admissionregistration.k8s.io/v1beta1"
        } else {
            "policies.kyverno.io/v1alpha1"
        };
        MutatingPolicy::compile(&json!({
            "apiVersion": api, "kind": kind, "metadata": {"name": "p"},
            "spec": {
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["pods"]}]},
                "matchConditions": conditions,
                "mutations": mutations,
            }
        }))
        .unwrap()
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "x", "namespace": "default", "labels": {"app": "a"}},
               "spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox"}]}})
    }

    fn request(obj: Value) -> AdmissionRequest {
        AdmissionRequest {
            operation: Operation::Create,
            object: obj.into(),
            ..AdmissionRequest::default()
        }
    }

    #[test]
    fn mutations_apply_in_order() {
        let apply_labels = json!({"patchType": "ApplyConfiguration", "applyConfiguration": {
            "expression": "Object{metadata: Object.metadata{labels: Object.metadata.labels{foo: 'bar'}}}"}});
        let apply_containers = json!({"patchType": "ApplyConfiguration", "applyConfiguration": {
            "expression": "Object{spec: Object.spec{containers: [Object.spec.containers{name: 'd', imagePullPolicy: 'Always'}]}}"}});
        let json_patch = json!({"patchType": "JSONPatch", "jsonPatch": {
            "expression": "[JSONPatch{op: 'add', path: '/metadata/annotations', value: {'seen': object.metadata.labels.foo}}]"}});
        let cases: Vec<(&str, &str, Vec<Value>, Value)> = vec![
            (
                "apply configuration merges maps",
                "MutatingPolicy",
                vec![apply_labels.clone()],
                json!({"app": "a", "foo": "bar"}),
            ),
            (
                "a later JSON patch sees the earlier mutation",
                "MutatingPolicy",
                vec![apply_labels.clone(), json_patch.clone()],
                json!({"app": "a", "foo": "bar"}),
            ),
        ];
        for (name, kind, muts, want_labels) in cases {
            let p = policy(kind, Value::Array(muts), json!([]));
            let MutateResult::Patched(out) = p.evaluate(&request(pod()), &NoProvider) else {
                panic!("{name}: not patched");
            };
            assert_eq!(out["metadata"]["labels"], want_labels, "{name}");
        }
        // Strategic merge keeps the other container; the deduced schema replaces the list.
        for (kind, want) in [("MutatingPolicy", 2), ("MutatingAdmissionPolicy", 1)] {
            let p = policy(kind, json!([apply_containers.clone()]), json!([]));
            let MutateResult::Patched(out) = p.evaluate(&request(pod()), &NoProvider) else {
                panic!("{kind}: not patched");
            };
            assert_eq!(
                out["spec"]["containers"].as_array().unwrap().len(),
                want,
                "{kind}"
            );
        }
    }

    #[test]
    fn conditions_matching_and_errors() {
        let m = json!([{"patchType": "JSONPatch", "jsonPatch": {"expression": "[JSONPatch{op: 'replace', path: '/spec/nope/x', value: 1}]"}}]);
        let false_cond = json!([{"name": "never", "expression": "false"}]);
        let p = policy("MutatingPolicy", m.clone(), false_cond);
        assert!(matches!(
            p.evaluate(&request(pod()), &NoProvider),
            MutateResult::Skip(_)
        ));
        let p = policy("MutatingPolicy", m, json!([]));
        assert!(matches!(
            p.evaluate(&request(pod()), &NoProvider),
            MutateResult::Error(_)
        ));
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
        assert_eq!(
            p.evaluate(&request(svc), &NoProvider),
            MutateResult::NotMatched
        );
    }

    #[test]
    fn compile_errors_name_the_field() {
        let doc = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "MutatingPolicy",
            "metadata": {"name": "p"}, "spec": {"mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": "[("}}]}});
        let err = MutatingPolicy::compile(&doc).unwrap_err();
        assert_eq!(err.path, "spec.mutations[0].jsonPatch.expression");
    }
}
