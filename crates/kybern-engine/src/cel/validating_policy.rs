//! ValidatingPolicy (`policies.kyverno.io`, with its Namespaced variant) and Kubernetes'
//! ValidatingAdmissionPolicy with its bindings: compiled once, evaluated per admission request
//! into one whole-policy result.

use super::match_constraints::{MatchConstraints, RequestAttributes};
use super::request_inputs::{RequestInputs, SharedVariables};
use super::validate_cel::{
    CelInput, CelOutcome, ParamSource, Validation, base_scope, base_scope_unchecked,
    compile_validations, run_validations,
};
use super::{
    CelError, Condition, ConditionsOutcome, Variable, VariableValues, compile_conditions,
    compile_variables, evaluate_conditions,
};
use crate::context::ContextProvider;
use crate::request::AdmissionRequest;
use serde_json::{Value, json};
use std::sync::Arc;

/// The policy kinds this module evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CelPolicyKind {
    ValidatingPolicy,
    NamespacedValidatingPolicy,
    ValidatingAdmissionPolicy,
}

impl CelPolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CelPolicyKind::ValidatingPolicy => "ValidatingPolicy",
            CelPolicyKind::NamespacedValidatingPolicy => "NamespacedValidatingPolicy",
            CelPolicyKind::ValidatingAdmissionPolicy => "ValidatingAdmissionPolicy",
        }
    }

    /// The kind of a policy document, if this module evaluates it.
    pub fn of(doc: &Value) -> Option<CelPolicyKind> {
        let api = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        let group = api.split('/').next().unwrap_or_default();
        match (group, kind) {
            ("policies.kyverno.io", "ValidatingPolicy") => Some(CelPolicyKind::ValidatingPolicy),
            ("policies.kyverno.io", "NamespacedValidatingPolicy") => {
                Some(CelPolicyKind::NamespacedValidatingPolicy)
            }
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
                Some(CelPolicyKind::ValidatingAdmissionPolicy)
            }
            _ => None,
        }
    }
}

/// `spec.evaluation.mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvaluationMode {
    Kubernetes,
    Json,
    /// `HTTP`, `Envoy`: authorization requests, not evaluated by kybern.
    Other(String),
}

/// The whole-policy result for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum CelPolicyResult {
    /// `matchConstraints` (or every binding) do not select the request.
    NotMatched,
    /// `matchConditions` are false.
    Skip(String),
    Pass,
    Fail(String),
    Error(String),
}

/// A ValidatingAdmissionPolicyBinding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    pub policy_name: String,
    pub match_resources: Option<MatchConstraints>,
    pub param_ref: Option<Value>,
    pub validation_actions: Arc<[String]>,
}

impl Binding {
    /// Compiles a `ValidatingAdmissionPolicyBinding` document.
    pub fn compile(doc: &Value) -> Result<Binding, CelError> {
        let spec = doc
            .get("spec")
            .ok_or_else(|| CelError::new("spec", "is required"))?;
        let policy_name = spec
            .get("policyName")
            .and_then(Value::as_str)
            .ok_or_else(|| CelError::new("spec.policyName", "is required"))?;
        Ok(Binding {
            name: crate::objects::at(doc, &["metadata", "name"])
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            policy_name: policy_name.to_string(),
            match_resources: match spec.get("matchResources") {
                None | Some(Value::Null) => None,
                Some(m) => Some(MatchConstraints::compile(Some(m), "spec.matchResources")?),
            },
            param_ref: spec.get("paramRef").cloned(),
            validation_actions: string_list(spec.get("validationActions")).into(),
        })
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Pod controllers that get an automatically generated variant of a Pod policy.
const POD_CONTROLLERS: [&str; 6] = [
    "daemonsets",
    "deployments",
    "jobs",
    "statefulsets",
    "replicasets",
    "cronjobs",
];

/// A compiled ValidatingPolicy or ValidatingAdmissionPolicy.
#[derive(Debug, Clone)]
pub struct ValidatingPolicy {
    pub kind: CelPolicyKind,
    pub name: String,
    /// For NamespacedValidatingPolicy; empty otherwise.
    pub namespace: String,
    pub match_constraints: MatchConstraints,
    pub match_conditions: Vec<Condition>,
    pub variables: Vec<Variable>,
    pub validations: Vec<Validation>,
    pub validation_actions: Arc<[String]>,
    /// `failurePolicy: Ignore` (default `Fail`).
    pub failure_policy_ignore: bool,
    pub mode: EvaluationMode,
    /// `paramKind` (VAP).
    pub param_kind: Option<Value>,
    /// Plural resources of pod controllers evaluated through the Pod policy (autogen).
    pub autogen_controllers: Vec<String>,
    /// Bindings of a ValidatingAdmissionPolicy (empty: evaluated as if bound once).
    pub bindings: Vec<Binding>,
    /// The policy document's `metadata.annotations`.
    pub annotations: serde_json::Map<String, Value>,
    /// CEL PolicyExceptions naming this policy.
    pub exceptions: Vec<super::exceptions::CelException>,
    /// Some text of the policy's spec mentions `request`: an expression may read it.
    pub reads_request: bool,
}

impl ValidatingPolicy {
    /// Whether an expression of the policy or of its exceptions can read `request`, or its
    /// bindings' parameters need the request's namespace.
    fn needs_request(&self) -> bool {
        self.reads_request
            || self.param_kind.is_some()
            || !self.bindings.is_empty()
            || self.exceptions.iter().any(|e| e.reads_request)
    }

    /// Compiles a ValidatingPolicy, NamespacedValidatingPolicy or ValidatingAdmissionPolicy
    /// document. `auditAnnotations` are checked for syntax and not evaluated.
    pub fn compile(doc: &Value) -> Result<ValidatingPolicy, CelError> {
        let kind = CelPolicyKind::of(doc).ok_or_else(|| {
            CelError::new(
                "kind",
                "not a ValidatingPolicy or ValidatingAdmissionPolicy",
            )
        })?;
        let spec = doc
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| CelError::new("spec", "is required"))?;
        let mode = match crate::objects::at(spec, &["evaluation", "mode"])
            .and_then(Value::as_str)
            .unwrap_or("Kubernetes")
        {
            "Kubernetes" | "" => EvaluationMode::Kubernetes,
            "JSON" => EvaluationMode::Json,
            other => EvaluationMode::Other(other.to_string()),
        };
        let match_constraints =
            MatchConstraints::compile(spec.get("matchConstraints"), "spec.matchConstraints")?;
        if let Some(list) = spec.get("auditAnnotations").and_then(Value::as_array) {
            for (i, a) in list.iter().enumerate() {
                if let Some(src) = a.get("valueExpression").and_then(Value::as_str) {
                    super::Expression::compile(
                        src,
                        &format!("spec.auditAnnotations[{i}].valueExpression"),
                    )?;
                }
            }
        }
        let autogen_controllers = if kind == CelPolicyKind::ValidatingAdmissionPolicy {
            Vec::new()
        } else {
            autogen_controllers(spec, &match_constraints)
        };
        let mut variables = compile_variables(spec.get("variables"), "spec.variables")?;
        let validations = compile_validations(
            spec.get("validations"),
            "spec.validations",
            kind != CelPolicyKind::ValidatingAdmissionPolicy,
        )?;
        super::mark_unused_variables(
            &mut variables,
            validations.iter().flat_map(|v| {
                std::iter::once(v.expression.source.as_str())
                    .chain(v.message_expression.iter().map(|m| m.source.as_str()))
            }),
        );
        Ok(ValidatingPolicy {
            kind,
            name: super::policy_name(doc),
            namespace: super::policy_namespace(
                doc,
                kind == CelPolicyKind::NamespacedValidatingPolicy,
            ),
            match_conditions: compile_conditions(
                spec.get("matchConditions"),
                "spec.matchConditions",
            )?,
            variables,
            validations,
            validation_actions: string_list(spec.get("validationActions")).into(),
            failure_policy_ignore: spec.get("failurePolicy").and_then(Value::as_str)
                == Some("Ignore"),
            mode,
            param_kind: spec.get("paramKind").filter(|v| !v.is_null()).cloned(),
            match_constraints,
            autogen_controllers,
            bindings: Vec::new(),
            exceptions: Vec::new(),
            reads_request: crate::policy::value_contains(spec, "request"),
            annotations: crate::objects::at(doc, &["metadata", "annotations"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Attaches the bindings among `bindings` that name this policy (VAP only).
    pub fn bind(&mut self, bindings: &[Binding]) {
        self.bindings = bindings
            .iter()
            .filter(|b| b.policy_name == self.name)
            .cloned()
            .collect();
    }

    /// Evaluates the policy on an admission request (Kubernetes mode).
    pub fn evaluate(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
    ) -> CelPolicyResult {
        let inputs = RequestInputs::new(req);
        self.evaluate_in(&inputs, &SharedVariables::default(), provider)
    }

    /// [`ValidatingPolicy::evaluate`] with the request's inputs and request-wide variable
    /// values shared with other policies.
    pub fn evaluate_in<'i>(
        &self,
        inputs: &'i RequestInputs,
        shared: &'i SharedVariables<'i>,
        provider: &'i dyn ContextProvider,
    ) -> CelPolicyResult {
        self.evaluate_bound(inputs, shared, provider).0
    }

    /// Evaluates the policy for the admission webhook: one result per binding that selects the
    /// request (a ValidatingAdmissionPolicy's bindings act independently, each with its own
    /// validation actions; an unbound one does not apply, as in the API server), or one result
    /// with the policy's own actions for the other kinds. Empty when nothing selects the request.
    pub fn evaluate_admission(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
    ) -> Vec<(CelPolicyResult, Arc<[String]>)> {
        let inputs = RequestInputs::new(req);
        self.evaluate_admission_in(&inputs, &SharedVariables::default(), provider)
    }

    /// [`ValidatingPolicy::evaluate_admission`] with the request's inputs and request-wide
    /// variable values shared with other policies.
    pub fn evaluate_admission_in<'i>(
        &self,
        inputs: &'i RequestInputs,
        shared: &'i SharedVariables<'i>,
        provider: &'i dyn ContextProvider,
    ) -> Vec<(CelPolicyResult, Arc<[String]>)> {
        if self.kind == CelPolicyKind::ValidatingAdmissionPolicy && self.bindings.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.results(inputs, shared, provider, &mut |r, b| {
            if r != CelPolicyResult::NotMatched {
                let actions = b.map_or(&self.validation_actions, |b| &b.validation_actions);
                out.push((r, Arc::clone(actions)));
            }
            true
        });
        out
    }

    /// The result as the kyverno CLI reports it: the first failing or erroring binding, else a
    /// pass, else a skip.
    fn evaluate_bound<'i>(
        &self,
        inputs: &'i RequestInputs,
        shared: &'i SharedVariables<'i>,
        provider: &'i dyn ContextProvider,
    ) -> (CelPolicyResult, Option<&Binding>) {
        let mut result = (CelPolicyResult::NotMatched, None);
        self.results(inputs, shared, provider, &mut |r, b| match r {
            CelPolicyResult::Fail(_) | CelPolicyResult::Error(_) => {
                result = (r, b);
                false
            }
            CelPolicyResult::Pass => {
                result = (r, b);
                true
            }
            CelPolicyResult::Skip(_) if result.0 == CelPolicyResult::NotMatched => {
                result = (r, b);
                true
            }
            _ => true,
        });
        result
    }

    /// Gives `out` the result of every binding that selects the request (one unbound result for
    /// the other kinds), none when the policy does not select it; stops when `out` says false.
    fn results<'s, 'i>(
        &'s self,
        inputs: &'i RequestInputs,
        shared: &'i SharedVariables<'i>,
        provider: &'i dyn ContextProvider,
        out: &mut dyn FnMut(CelPolicyResult, Option<&'s Binding>) -> bool,
    ) {
        let req = inputs.request();
        if self.mode != EvaluationMode::Kubernetes {
            return;
        }
        if !self.namespace.is_empty() && req.namespace() != self.namespace {
            return;
        }
        let ns_labels = inputs.namespace_labels(provider);
        if self
            .match_constraints
            .matches_with(inputs.attributes(), req, ns_labels)
        {
            return self.evaluate_matched(inputs, shared, None, provider, out);
        }
        if let Some(view) = inputs.autogen(&self.autogen_controllers)
            && self
                .match_constraints
                .matches_with(&view.attributes, &view.request, ns_labels)
        {
            self.evaluate_matched(inputs, shared, Some(view), provider, out);
        }
    }

    /// Evaluates a JSON-mode policy on one payload (`object` is the payload).
    pub fn evaluate_json(
        &self,
        payload: &Value,
        provider: &dyn ContextProvider,
    ) -> CelPolicyResult {
        if self.mode != EvaluationMode::Json {
            return CelPolicyResult::NotMatched;
        }
        let null = Value::Null;
        let input = CelInput {
            object: payload,
            old_object: &null,
            request: &null,
            namespace_object: None,
            params: None,
            provider: Some(provider),
        };
        self.run(&RunInput::new(input), None)
    }

    /// Evaluates after `matchConstraints` selected the request, or its Pod template (`view`,
    /// autogen).
    fn evaluate_matched<'s, 'i>(
        &'s self,
        inputs: &'i RequestInputs,
        shared: &'i SharedVariables<'i>,
        view: Option<&'i AutogenView>,
        provider: &'i dyn ContextProvider,
        out: &mut dyn FnMut(CelPolicyResult, Option<&'s Binding>) -> bool,
    ) {
        static NO_REQUEST: Value = Value::Null;
        let req = inputs.request();
        let namespace_object = inputs.namespace_object(provider);
        // `request` is built (and size-checked) only for policies that can read it.
        let (request, request_checked) = if self.needs_request() {
            (inputs.request_json(), inputs.request_within_limits())
        } else {
            (&NO_REQUEST, true)
        };
        let (matched, input, checked) = match view {
            None => (
                req,
                CelInput {
                    object: &req.object,
                    old_object: &req.old_object,
                    request,
                    namespace_object,
                    params: None,
                    provider: Some(provider),
                },
                inputs.objects_within_limits(provider),
            ),
            Some(v) => (
                &v.request,
                CelInput {
                    object: &v.object,
                    old_object: &v.old_object,
                    // `request` stays the controller's request (its kind, resource and name),
                    // as a Kyverno autogen policy evaluates the request it was sent; only the
                    // objects become the template.
                    request,
                    namespace_object,
                    params: None,
                    provider: Some(provider),
                },
                v.within_limits(namespace_object),
            ),
        };
        let checked = checked && request_checked;
        // Exceptions read the request as sent, not its Pod template.
        let sent = (view.is_some() && !self.exceptions.is_empty()).then(|| CelInput {
            object: &req.object,
            old_object: &req.old_object,
            ..input
        });
        let input = RunInput {
            policy: input,
            exceptions: sent,
            // The inputs were size-checked once for every policy.
            checked,
            shared: Some(shared),
        };
        if self.kind != CelPolicyKind::ValidatingAdmissionPolicy || self.bindings.is_empty() {
            out(self.run(&input, None), None);
            return;
        }
        let ns_labels = inputs.namespace_labels(provider);
        for b in &self.bindings {
            let selects = b
                .match_resources
                .as_ref()
                .is_none_or(|m| m.matches_binding(matched, ns_labels));
            if selects && !out(self.run(&input, Some(b)), Some(b)) {
                return;
            }
        }
    }

    fn run(&self, run: &RunInput, binding: Option<&Binding>) -> CelPolicyResult {
        let input = &run.policy;
        let scope = if run.checked {
            Ok(base_scope_unchecked(input))
        } else {
            base_scope(input)
        };
        let mut scope = match scope {
            Ok(s) => s,
            Err(e) => return CelPolicyResult::Error(e),
        };
        let exceptions = match &run.exceptions {
            None => super::exceptions::check_exceptions(&self.exceptions, &mut scope),
            Some(sent) => match base_scope(sent) {
                Ok(sent) => {
                    super::exceptions::check_exceptions_on(&self.exceptions, &sent, &mut scope)
                }
                Err(e) => return CelPolicyResult::Error(e),
            },
        };
        match exceptions {
            super::exceptions::ExceptionOutcome::None => {}
            super::exceptions::ExceptionOutcome::Skip(m) => return CelPolicyResult::Skip(m),
            super::exceptions::ExceptionOutcome::Pass(_) => return CelPolicyResult::Pass,
            super::exceptions::ExceptionOutcome::Error(e) => return CelPolicyResult::Error(e),
        }
        match evaluate_conditions(&self.match_conditions, &scope) {
            ConditionsOutcome::Met => {}
            ConditionsOutcome::NotMet(name) => {
                return CelPolicyResult::Skip(format!("match condition {name:?} not met"));
            }
            ConditionsOutcome::Error(e) => return CelPolicyResult::Error(e),
        }
        if let EvaluationMode::Other(mode) = &self.mode {
            return self.run_authz(mode, &mut scope);
        }
        let params = match self.params_for(binding, input) {
            Ok(p) => p,
            Err(r) => return r,
        };
        static NO_PARAMS: Value = Value::Null;
        let Some(params) = params else {
            scope.set_json_ref("params", &NO_PARAMS);
            return self.validate(&mut scope, run.shared);
        };
        for p in &params {
            scope.set_json("params", p);
            let result = self.validate(&mut scope, run.shared);
            if result != CelPolicyResult::Pass {
                return result;
            }
        }
        CelPolicyResult::Pass
    }

    /// The variables, then the validations, over `scope` (its `params` set).
    fn validate<'p>(
        &self,
        scope: &mut super::Scope<'p>,
        shared: Option<&SharedVariables<'p>>,
    ) -> CelPolicyResult {
        let vars = VariableValues::evaluate_shared(&self.variables, scope, shared);
        match run_validations(&self.validations, &vars, scope) {
            CelOutcome::Pass => CelPolicyResult::Pass,
            CelOutcome::Fail(m) => CelPolicyResult::Fail(m),
            CelOutcome::Skip(m) => CelPolicyResult::Skip(m),
            CelOutcome::Error(e) => CelPolicyResult::Error(e),
        }
    }

    /// Evaluates a policy of an authorization mode (`HTTP`, `Envoy`) on one request payload
    /// (`object`).
    pub fn evaluate_authz(
        &self,
        payload: &Value,
        provider: &dyn ContextProvider,
    ) -> CelPolicyResult {
        if !matches!(self.mode, EvaluationMode::Other(_)) {
            return CelPolicyResult::NotMatched;
        }
        let null = Value::Null;
        let input = CelInput {
            object: payload,
            old_object: &null,
            request: &null,
            namespace_object: None,
            params: None,
            provider: Some(provider),
        };
        self.run(&RunInput::new(input), None)
    }

    /// Authorization modes: the first validation that returns a response decides (`ok`: pass,
    /// `denied`: fail); `null` goes on to the next; none deciding is a skip.
    fn run_authz(&self, mode: &str, scope: &mut super::Scope) -> CelPolicyResult {
        if mode != "HTTP" && mode != "Envoy" {
            return CelPolicyResult::Error(format!("unknown evaluation mode {mode:?}"));
        }
        let vars = VariableValues::evaluate(&self.variables, scope);
        for v in &self.validations {
            let out = match v.expression.eval(scope) {
                Ok(out) => super::value::to_json(&out),
                Err(e) => return CelPolicyResult::Error(vars.explain(e)),
            };
            if out.is_null() {
                continue;
            }
            if out.get("ok").is_some() {
                return CelPolicyResult::Pass;
            }
            if let Some(d) = out.get("denied") {
                let detail = d
                    .get("code")
                    .map(|c| format!("request denied with status code {c}"))
                    .or_else(|| {
                        d.get("reason")
                            .and_then(Value::as_str)
                            .map(|r| format!("request denied, reason: {r}"))
                    })
                    .unwrap_or_else(|| "request denied".to_string());
                return CelPolicyResult::Fail(detail);
            }
            return CelPolicyResult::Error(format!(
                "validation {:?} did not return an authorization response",
                v.expression.source
            ));
        }
        CelPolicyResult::Skip("request does not match".into())
    }

    /// The params to evaluate with; `None` when the policy takes none (`params` is then null).
    fn params_for(
        &self,
        binding: Option<&Binding>,
        input: &CelInput,
    ) -> Result<Option<Vec<Value>>, CelPolicyResult> {
        let Some(b) = binding else {
            return Ok(None);
        };
        let src = match ParamSource::compile(self.param_kind.as_ref(), b.param_ref.as_ref(), "spec")
        {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(None),
            Err(e) => return Err(CelPolicyResult::Error(e.to_string())),
        };
        let ns = input
            .request
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match src.resolve(input.provider, ns) {
            Ok(found) if found.is_empty() => {
                if src.allow_not_found {
                    Err(CelPolicyResult::Pass)
                } else {
                    Err(CelPolicyResult::Error(format!(
                        "no params found for policy binding {:?} with Deny parameterNotFoundAction",
                        b.name
                    )))
                }
            }
            Ok(found) => Ok(Some(found)),
            Err(e) => Err(CelPolicyResult::Error(e)),
        }
    }
}

/// The object's Namespace: from the provider, else built from known namespace labels.
pub fn namespace_object(req: &AdmissionRequest, provider: &dyn ContextProvider) -> Option<Value> {
    let ns = req.namespace();
    if ns.is_empty() {
        return None;
    }
    if let Ok(Some(v)) = provider.resource("v1", "Namespace", "", ns) {
        return Some(v);
    }
    let labels = super::namespace_labels(req, provider);
    Some(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": labels.unwrap_or_default()},
    }))
}

/// What [`ValidatingPolicy::run`] reads: the policy's input, and for a Pod template view
/// (autogen) the request as sent, on which exceptions are decided.
struct RunInput<'a> {
    policy: CelInput<'a>,
    exceptions: Option<CelInput<'a>>,
    /// `policy`'s inputs are known to be within the size limits.
    checked: bool,
    /// Request-wide variable values shared with the request's other policies.
    shared: Option<&'a SharedVariables<'a>>,
}

impl<'a> RunInput<'a> {
    fn new(policy: CelInput<'a>) -> Self {
        RunInput {
            policy,
            exceptions: None,
            checked: false,
            shared: None,
        }
    }
}

/// Which pod controllers get the Pod policy: `autogen.podControllers.controllers` when given,
/// else all of them, and only for policies that select Pods alone.
pub fn autogen_controllers(spec: &Value, m: &MatchConstraints) -> Vec<String> {
    let pods_only = !m.resource_rules.is_empty()
        && m.resource_rules.iter().all(|r| {
            r.resources.iter().all(|x| x == "pods") && r.api_groups.iter().all(|g| g.is_empty())
        });
    if !pods_only {
        return Vec::new();
    }
    match crate::objects::at(spec, &["autogen", "podControllers", "controllers"])
        .and_then(Value::as_array)
    {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_ascii_lowercase)
            .collect(),
        None => POD_CONTROLLERS.iter().map(|s| (*s).to_string()).collect(),
    }
}

/// Whether autogen gives the request to a Pod policy: its resource is one of the pod
/// `controllers` and it is not a subresource request.
pub fn autogen_applies(controllers: &[String], req: &AdmissionRequest) -> bool {
    autogen_resource(req).is_some_and(|r| controllers.contains(&r))
}

/// The resource of a request autogen can apply to (a pod controller at its served version,
/// no subresource), whichever controllers a policy names.
pub fn autogen_resource(req: &AdmissionRequest) -> Option<String> {
    let gvk = req.gvk();
    // The generated policies match each controller at its served version only (`apps/v1`,
    // `batch/v1`), as Kyverno's autogen writes their resource rules.
    let served = match gvk.kind.as_str() {
        "Job" | "CronJob" => gvk.group == "batch" && gvk.version == "v1",
        "ReplicationController" => gvk.group.is_empty() && gvk.version == "v1",
        _ => gvk.group == "apps" && gvk.version == "v1",
    };
    (served && req.subresource.is_empty())
        .then(|| super::match_constraints::resource_for_kind(&gvk.group, &gvk.kind))
}

/// The request as a Pod request when its resource is one of the pod `controllers` (autogen):
/// the Pod template becomes the object.
pub fn autogen_request(controllers: &[String], req: &AdmissionRequest) -> Option<AdmissionRequest> {
    autogen_applies(controllers, req).then(|| {
        let (object, old_object) = pod_objects(req);
        pod_request(req, object, old_object)
    })
}

/// The request seen through its pod controller's template (autogen of the CEL kinds).
pub struct AutogenView {
    /// The Pod request that matching reads: the controller's namespace is on the Pod, whose
    /// kind and metadata are all it holds.
    pub request: AdmissionRequest,
    /// `object` as CEL reads it: the template as written.
    pub object: Value,
    /// `oldObject` as CEL reads it.
    pub old_object: Value,
    /// What matching reads from `request`, read once for every policy.
    pub attributes: RequestAttributes<'static>,
    within_limits: std::cell::OnceCell<bool>,
}

impl AutogenView {
    /// Whether the view's inputs are within [`super::MAX_INPUT_NODES`] (checked once).
    pub fn within_limits(&self, namespace_object: Option<&Value>) -> bool {
        *self.within_limits.get_or_init(|| {
            let null = Value::Null;
            [
                &self.object,
                &self.old_object,
                namespace_object.unwrap_or(&null),
            ]
            .into_iter()
            .all(|v| super::json_size_within(v, super::MAX_INPUT_NODES))
        })
    }
}

/// [`AutogenView`] of a pod controller request (whatever the policy's controllers).
pub fn autogen_view(req: &AdmissionRequest) -> AutogenView {
    let (object, old_object) = pod_objects(req);
    // Matching reads the kind and the metadata only: the Pod's spec is not copied for it.
    let for_matching = |pod: &Value| -> Value {
        match pod {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| k.as_str() != "spec")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        }
    };
    let request = pod_request(req, for_matching(&object), for_matching(&old_object));
    AutogenView {
        attributes: RequestAttributes::of(&request).into_owned(),
        request,
        object,
        old_object,
        within_limits: std::cell::OnceCell::new(),
    }
}

/// The request's objects as Pods made of their templates, as written.
fn pod_objects(req: &AdmissionRequest) -> (Value, Value) {
    let (_, _, kind) = req.gvk_parts();
    let to_pod = |v: &Value| -> Value {
        if v.is_null() {
            return Value::Null;
        }
        let template = if kind == "CronJob" {
            crate::objects::at(v, &["spec", "jobTemplate", "spec", "template"])
        } else {
            crate::objects::at(v, &["spec", "template"])
        };
        let field = |name: &str| {
            template
                .and_then(|t| t.get(name))
                .cloned()
                .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
        };
        // Built by hand: `json!` would serialise each cloned part into another copy.
        let mut pod = serde_json::Map::new();
        pod.insert("apiVersion".into(), "v1".into());
        pod.insert("kind".into(), "Pod".into());
        pod.insert("metadata".into(), field("metadata"));
        pod.insert("spec".into(), field("spec"));
        Value::Object(pod)
    };
    (to_pod(&req.object), to_pod(&req.old_object))
}

/// The request as a Pod request of these objects: the controller's namespace is put on them.
fn pod_request(req: &AdmissionRequest, object: Value, old_object: Value) -> AdmissionRequest {
    let ns = req.namespace();
    let with_ns = |mut v: Value| -> Value {
        if !ns.is_empty()
            && let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.entry("namespace")
                .or_insert(Value::String(ns.to_string()));
        }
        v
    };
    AdmissionRequest {
        object: std::sync::Arc::new(with_ns(object)),
        old_object: std::sync::Arc::new(with_ns(old_object)),
        kind_override: None,
        ..req.clone()
    }
}
