//! `validate.cel` of ClusterPolicy/Policy rules: expressions with messages, variables, params and
//! the rule's `celPreconditions`, and the validation core shared with ValidatingPolicies.

use super::{
    CelError, Compile, Condition, ConditionsOutcome, Expression, MAX_INPUT_NODES, Scope, Variable,
    VariableValues, compile_conditions_with, compile_variables_with, evaluate_conditions,
    json_size_within,
};
use crate::context::ContextProvider;
use crate::matching::selector_matches;
use crate::policy::LabelSelector;
use crate::request::AdmissionRequest;
use serde_json::{Value, json};

/// What one CEL evaluation reads. `request` is the Kubernetes AdmissionRequest as JSON
/// ([`CelInput::request_json`]).
#[derive(Clone, Copy)]
pub struct CelInput<'a> {
    pub object: &'a Value,
    pub old_object: &'a Value,
    pub request: &'a Value,
    /// The object's Namespace (`null` in CEL when absent or cluster-scoped).
    pub namespace_object: Option<&'a Value>,
    /// Params chosen by the caller; when `None` and the rule has `paramRef`, they are looked up
    /// through `provider`.
    pub params: Option<&'a Value>,
    /// For params and `resource.Get`/`resource.List`.
    pub provider: Option<&'a dyn ContextProvider>,
}

impl CelInput<'_> {
    /// The `request` variable for an admission request, shaped as Kubernetes'
    /// `admission.k8s.io/v1` AdmissionRequest.
    pub fn request_json(req: &AdmissionRequest) -> Value {
        let gvk = req.gvk();
        let resource = super::match_constraints::resource_for_kind(&gvk.group, &gvk.kind);
        let kind = json!({"group": gvk.group, "version": gvk.version, "kind": gvk.kind});
        let gvr = json!({"group": gvk.group, "version": gvk.version, "resource": resource});
        let mut out = json!({
            "uid": "",
            "kind": kind,
            "resource": gvr,
            "requestKind": kind,
            "requestResource": gvr,
            "name": req.name().unwrap_or_default(),
            "namespace": req.namespace(),
            "operation": req.operation.as_str(),
            "userInfo": req.user_info,
            "dryRun": req.dry_run,
        });
        if !req.subresource.is_empty()
            && let Value::Object(m) = &mut out
        {
            m.insert("subResource".into(), Value::String(req.subresource.clone()));
            m.insert(
                "requestSubResource".into(),
                Value::String(req.subresource.clone()),
            );
        }
        out
    }
}

/// The result of a CEL validation.
#[derive(Debug, Clone, PartialEq)]
pub enum CelOutcome {
    Pass,
    Fail(String),
    Skip(String),
    Error(String),
}

/// One `validations`/`expressions` entry.
#[derive(Debug, Clone)]
pub struct Validation {
    pub expression: Expression,
    pub message: Option<String>,
    pub message_expression: Option<Expression>,
}

/// Compiles `validations`/`expressions` at `path` (required, non-empty when `required`).
pub fn compile_validations(
    list: Option<&Value>,
    path: &str,
    required: bool,
) -> Result<Vec<Validation>, CelError> {
    compile_validations_with(list, path, required, Expression::compile)
}

/// [`compile_validations`] with the given way to compile each expression.
pub fn compile_validations_with(
    list: Option<&Value>,
    path: &str,
    required: bool,
    compile: Compile,
) -> Result<Vec<Validation>, CelError> {
    let items = match list {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(CelError::new(path, "must be a list")),
    };
    if required && items.is_empty() {
        return Err(CelError::new(path, "at least one validation is required"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let src = item
            .get("expression")
            .and_then(Value::as_str)
            .ok_or_else(|| CelError::new(format!("{p}.expression"), "is required"))?;
        let message_expression = match item.get("messageExpression").and_then(Value::as_str) {
            Some(m) if !m.trim().is_empty() => Some(compile(m, &format!("{p}.messageExpression"))?),
            _ => None,
        };
        out.push(Validation {
            expression: compile(src, &format!("{p}.expression"))?,
            message: item
                .get("message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            message_expression,
        });
    }
    Ok(out)
}

/// Where params come from: `paramKind` plus `paramRef`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSource {
    pub api_version: String,
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub selector: Option<LabelSelector>,
    /// `parameterNotFoundAction: Allow` (default `Deny`).
    pub allow_not_found: bool,
}

impl ParamSource {
    /// From `paramKind` and `paramRef` (both required for params to be used).
    pub fn compile(
        param_kind: Option<&Value>,
        param_ref: Option<&Value>,
        path: &str,
    ) -> Result<Option<ParamSource>, CelError> {
        let (Some(kind), Some(r)) = (
            param_kind.filter(|v| !v.is_null()),
            param_ref.filter(|v| !v.is_null()),
        ) else {
            return Ok(None);
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let selector =
            match r.get("selector") {
                None | Some(Value::Null) => None,
                Some(s) => Some(serde_json::from_value(s.clone()).map_err(|e| {
                    CelError::new(format!("{path}.paramRef.selector"), e.to_string())
                })?),
            };
        Ok(Some(ParamSource {
            api_version: text(kind, "apiVersion").unwrap_or_default(),
            kind: text(kind, "kind")
                .ok_or_else(|| CelError::new(format!("{path}.paramKind.kind"), "is required"))?,
            name: text(r, "name"),
            namespace: text(r, "namespace"),
            selector,
            allow_not_found: text(r, "parameterNotFoundAction").as_deref() == Some("Allow"),
        }))
    }

    /// The param objects for a request in `namespace`.
    pub fn resolve(
        &self,
        provider: Option<&dyn ContextProvider>,
        namespace: &str,
    ) -> Result<Vec<Value>, String> {
        let Some(provider) = provider else {
            return Ok(Vec::new());
        };
        let ns = self.namespace.as_deref().unwrap_or(namespace);
        if let Some(name) = &self.name {
            let found = provider
                .resource(&self.api_version, &self.kind, ns, name)
                .ok()
                .flatten()
                .or_else(|| {
                    provider
                        .resource(&self.api_version, &self.kind, "", name)
                        .ok()
                        .flatten()
                });
            return Ok(found.into_iter().collect());
        }
        let all = provider
            .list(&self.api_version, &self.kind, ns)
            .unwrap_or_default();
        Ok(all
            .into_iter()
            .filter(|o| {
                self.selector.as_ref().is_none_or(|s| {
                    let labels = crate::objects::at(o, &["metadata", "labels"])
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    selector_matches(s, &labels)
                })
            })
            .collect())
    }
}

/// The scope every CEL policy kind starts from, with input size checks.
pub fn base_scope<'p>(input: &CelInput<'p>) -> Result<Scope<'p>, String> {
    let null = Value::Null;
    for (name, v) in [
        ("object", input.object),
        ("oldObject", input.old_object),
        ("request", input.request),
        ("namespaceObject", input.namespace_object.unwrap_or(&null)),
        ("params", input.params.unwrap_or(&null)),
    ] {
        if !json_size_within(v, MAX_INPUT_NODES) {
            return Err(format!(
                "{name} is larger than {MAX_INPUT_NODES} values: not evaluated"
            ));
        }
    }
    Ok(base_scope_unchecked(input))
}

/// [`base_scope`] for inputs already known to be within the size limits.
pub fn base_scope_unchecked<'p>(input: &CelInput<'p>) -> Scope<'p> {
    // Borrowed, not converted: the interpreter's context is built only if an expression
    // needs it, and then `request` carries `object` and `oldObject` ([`Scope`]).
    Scope::with_inputs(
        input.provider,
        [
            input.object,
            input.old_object,
            input.request,
            input.namespace_object.unwrap_or(&Value::Null),
            input.params.unwrap_or(&Value::Null),
            &super::exceptions::NO_PARTIAL_EXCEPTIONS,
        ],
    )
}

/// The message of a failed validation: `messageExpression`, else `message`, else the
/// apiserver's `failed expression: <expression>`.
fn failure_message(v: &Validation, scope: &Scope) -> String {
    if let Some(m) = &v.message_expression
        && let Ok(text) = m.eval_string(scope)
        && !text.trim().is_empty()
    {
        return text;
    }
    v.message
        .clone()
        .unwrap_or_else(|| format!("failed expression: {}", v.expression.source))
}

/// Runs validations in order: the first false is a failure, an error is an error.
pub fn run_validations(
    validations: &[Validation],
    variables: &VariableValues,
    scope: &Scope,
) -> CelOutcome {
    for v in validations {
        match v.expression.eval_bool(scope) {
            Ok(true) => {}
            Ok(false) => return CelOutcome::Fail(failure_message(v, scope)),
            Err(e) => return CelOutcome::Error(variables.explain(e)),
        }
    }
    CelOutcome::Pass
}

/// A compiled `validate.cel` with its rule's `celPreconditions`.
#[derive(Debug, Clone)]
pub struct ValidateCel {
    pub validations: Vec<Validation>,
    pub variables: Vec<Variable>,
    pub preconditions: Vec<Condition>,
    pub params: Option<ParamSource>,
}

impl ValidateCel {
    /// Compiles the `validate.cel` value at `path` (e.g. `spec.rules[0].validate.cel`) and the
    /// rule's `celPreconditions`. `auditAnnotations` are accepted and not evaluated (they only
    /// annotate audit events); `generate` only concerns VAP generation in a cluster.
    pub fn compile(
        validate_cel: &Value,
        cel_preconditions: Option<&Value>,
        path: &str,
    ) -> Result<Self, CelError> {
        if !validate_cel.is_object() {
            return Err(CelError::new(path, "must be an object"));
        }
        // Kyverno compiles these when the rule runs: an expression that does not compile fails
        // the rule, not the policy.
        let compile = Expression::compile_deferred;
        Ok(ValidateCel {
            validations: compile_validations_with(
                validate_cel.get("expressions"),
                &format!("{path}.expressions"),
                false,
                compile,
            )?,
            variables: compile_variables_with(
                validate_cel.get("variables"),
                &format!("{path}.variables"),
                compile,
            )?,
            preconditions: compile_conditions_with(
                cel_preconditions,
                &path.replace(".validate.cel", ".celPreconditions"),
                compile,
            )?,
            params: ParamSource::compile(
                validate_cel.get("paramKind"),
                validate_cel.get("paramRef"),
                path,
            )?,
        })
    }

    /// Evaluates the rule: preconditions (false → skip), then, for each param object (or once
    /// without params), the variables and expressions.
    pub fn evaluate(&self, input: &CelInput) -> CelOutcome {
        let mut scope = match base_scope(input) {
            Ok(s) => s,
            Err(e) => return CelOutcome::Error(e),
        };
        match evaluate_conditions(&self.preconditions, &scope) {
            ConditionsOutcome::Met => {}
            ConditionsOutcome::NotMet(_) => {
                return CelOutcome::Skip("cel preconditions not satisfied".into());
            }
            // The apiserver's matcher under failurePolicy Fail denies when a condition
            // cannot be evaluated.
            ConditionsOutcome::Error(e) => return CelOutcome::Fail(e),
        }
        let params: Vec<Value> = match (&self.params, input.params) {
            (_, Some(p)) => vec![p.clone()],
            (None, None) => vec![Value::Null],
            (Some(src), None) => {
                let ns = input
                    .request
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match src.resolve(input.provider, ns) {
                    Ok(found) if found.is_empty() => {
                        if src.allow_not_found {
                            return CelOutcome::Pass;
                        }
                        return CelOutcome::Error(format!(
                            "no params found: {} {} not found",
                            src.kind,
                            src.name.as_deref().unwrap_or("(selector)")
                        ));
                    }
                    Ok(found) => found,
                    Err(e) => return CelOutcome::Error(e),
                }
            }
        };
        for p in &params {
            scope.set_json("params", p);
            let vars = VariableValues::evaluate(&self.variables, &mut scope);
            let outcome = run_validations(&self.validations, &vars, &scope);
            match outcome {
                CelOutcome::Pass => {}
                // As in a ValidatingAdmissionPolicy under failurePolicy Fail (what Kyverno runs
                // `validate.cel` as), a validation that cannot be evaluated denies: a failure.
                CelOutcome::Error(e) => return CelOutcome::Fail(e),
                other => return other,
            }
        }
        CelOutcome::Pass
    }
}
