//! The validate rule handler: `pattern`, `anyPattern`, `deny`, `foreach` and `podSecurity`,
//! producing one rule status and message.

use crate::cel::CelOutcome;
use crate::context::ContextProvider;
use crate::context_loader;
use crate::json_context::JsonContext;
use crate::pattern::{self, PatternError, PatternErrorKind};
use crate::pod_security::{self, Exclude};
use crate::policy::{ForeachValidation, Pattern, Validation, ValidationCheck};
use crate::request::AdmissionRequest;
use crate::response::RuleStatus;
use crate::variables::{self, SubstituteOptions};
use ::jmespath::{Rcvar, Variable};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// True if an interpreter value holds a floating-point number anywhere.
fn has_float(v: &Variable) -> bool {
    match v {
        Variable::Number(n) => n.is_f64(),
        Variable::Array(items) => items.iter().any(|x| has_float(x)),
        Variable::Object(m) => m.values().any(|x| has_float(x)),
        _ => false,
    }
}

/// What a handler needs about the rule being evaluated.
pub struct CheckInput<'a> {
    pub rule_name: &'a str,
    pub request: &'a AdmissionRequest,
    pub validation: &'a Validation,
    /// The resource the rule checks (the old object for DELETE).
    pub resource: &'a Value,
    pub ctx: &'a JsonContext,
    pub opts: SubstituteOptions,
    pub provider: &'a dyn ContextProvider,
    pub policy_namespace: &'a str,
    pub preset: &'a Map<String, Value>,
    /// PSS exclusions from matching PolicyExceptions.
    pub pss_excludes: &'a [Exclude],
    /// Pod Security check results shared by the request's podSecurity rules.
    pub pss_checks: &'a pod_security::CheckCache,
    /// Values for `foreachValues`, by variable name: the i-th element is used in the i-th iteration.
    pub foreach_values: &'a Map<String, Value>,
}

/// `None`: the rule produces no result (e.g. a pattern on DELETE, an empty foreach list).
pub type CheckOutcome = Option<(RuleStatus, String)>;

pub fn run(input: &CheckInput) -> CheckOutcome {
    let v = input.validation;
    match &v.check {
        ValidationCheck::Unsupported(field) => Some((
            RuleStatus::Error,
            format!("kybern does not support {field} yet"),
        )),
        // Kyverno has no manifest handler for DELETE requests: no result.
        ValidationCheck::Manifests(_) if input.opts.delete => None,
        ValidationCheck::Manifests(m) => {
            Some(m.verify(&input.request.object, input.request.dry_run))
        }
        ValidationCheck::Cel(cel) => {
            let request = crate::cel::CelInput::request_json(input.request);
            // As for the CEL policy kinds: the stored Namespace, else one built from the name
            // and the known labels.
            let namespace_object =
                crate::cel::validating_policy::namespace_object(input.request, input.provider);
            let cel_input = crate::cel::CelInput {
                object: &input.request.object,
                old_object: &input.request.old_object,
                request: &request,
                namespace_object: namespace_object.as_ref(),
                params: None,
                provider: Some(input.provider),
            };
            Some(match cel.evaluate(&cel_input) {
                CelOutcome::Pass => (
                    RuleStatus::Pass,
                    ["validation rule '", input.rule_name, "' passed."].concat(),
                ),
                CelOutcome::Fail(m) => (RuleStatus::Fail, m),
                CelOutcome::Skip(m) => (RuleStatus::Skip, m),
                CelOutcome::Error(m) => (RuleStatus::Error, m),
            })
        }
        ValidationCheck::PodSecurity(ps) => {
            if input.opts.delete {
                return None;
            }
            match pod_security::evaluate_shared(
                ps,
                input.resource,
                input.pss_excludes,
                input.pss_checks,
            ) {
                Err(e) => Some((RuleStatus::Error, e.to_string())),
                Ok(ev) if ev.checks_before_exceptions.is_empty() => Some((
                    RuleStatus::Pass,
                    ["Validation rule '", input.rule_name, "' passed."].concat(),
                )),
                Ok(ev) if ev.checks.is_empty() => Some((
                    RuleStatus::Skip,
                    "rule is skipped due to policy exceptions".to_string(),
                )),
                Ok(ev) => Some((
                    RuleStatus::Fail,
                    pod_security::failure_message(input.rule_name, ps, &ev.checks),
                )),
            }
        }
        check => {
            let scope = Scope {
                resource: input.resource,
                ctx: input.ctx,
                depth: 0,
            };
            check_resource(input, check, &scope)
        }
    }
}

struct Scope<'a> {
    resource: &'a Value,
    ctx: &'a JsonContext,
    depth: usize,
}

/// The rule message with variables substituted; computed only for failures, as Kyverno does, and
/// kept as written when a variable cannot be resolved.
fn message(input: &CheckInput, ctx: &JsonContext) -> Option<String> {
    let m = input.validation.message.as_ref()?;
    Some(
        variables::substitute_string(m, ctx, input.opts, "validate/message")
            .map(|v| variables::to_text(&v))
            .unwrap_or_else(|_| m.clone()),
    )
}

fn with_period(s: &str) -> String {
    if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

fn pattern_failure(msg: Option<String>, rule: &str, err: &PatternError) -> String {
    match msg {
        Some(m) if !m.is_empty() => format!(
            "validation error: {} rule {rule} failed at path {}",
            with_period(&m),
            err.path
        ),
        _ => format!("validation error: rule {rule} failed at path {}", err.path),
    }
}

/// Matches the resource against the pattern: the one compiled at load, else the pattern with
/// its references and variables resolved for this request. The outer error is the rule's.
fn match_pattern(
    p: &Pattern,
    resource: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<Result<(), PatternError>, String> {
    if let Some(compiled) = &p.compiled {
        return Ok(compiled.validate(resource));
    }
    let pat = substitute_pattern(p, ctx, opts, path)?;
    Ok(pattern::validate(resource, &pat))
}

/// The pattern with references and variables resolved; borrowed when it has neither.
fn substitute_pattern<'p>(
    p: &'p Pattern,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<Cow<'p, Value>, String> {
    if !p.has_references && !p.has_variables {
        return Ok(Cow::Borrowed(&p.value));
    }
    let resolved = if p.has_references {
        Cow::Owned(pattern::resolve_references(&p.value).map_err(|e| e.message)?)
    } else {
        Cow::Borrowed(&p.value)
    };
    if !p.has_variables {
        return Ok(resolved);
    }
    variables::substitute_all(&resolved, ctx, opts, path)
        .map(Cow::Owned)
        .map_err(|e| format!("variable substitution failed for rule: {e}"))
}

/// Evaluates pattern, anyPattern, deny or a foreach list against the scope.
fn check_resource(input: &CheckInput, check: &ValidationCheck, scope: &Scope) -> CheckOutcome {
    let msg = || message(input, scope.ctx);
    match check {
        ValidationCheck::Deny(conditions) => {
            match conditions.evaluate(scope.ctx, input.opts, "validate/deny/conditions") {
                Err(e) => Some((
                    RuleStatus::Error,
                    format!("failed to check deny conditions: {e}"),
                )),
                Ok(outcome) if outcome.met => {
                    let mut text = match msg() {
                        Some(m) if !m.is_empty() => m,
                        _ => format!("validation error: rule {} failed", input.rule_name),
                    };
                    if !outcome.messages.is_empty() {
                        text = format!("{text}; {}", outcome.messages.join("; "));
                    }
                    Some((RuleStatus::Fail, text))
                }
                Ok(_) => Some((
                    RuleStatus::Pass,
                    ["validation rule '", input.rule_name, "' passed."].concat(),
                )),
            }
        }
        ValidationCheck::Pattern(p) => {
            if input.opts.delete && scope.depth == 0 {
                return None;
            }
            let matched =
                match_pattern(p, scope.resource, scope.ctx, input.opts, "validate/pattern");
            let matched = match matched {
                Ok(m) => m,
                Err(e) => return Some((RuleStatus::Error, e)),
            };
            match matched {
                Ok(()) => Some((
                    RuleStatus::Pass,
                    ["validation rule '", input.rule_name, "' passed."].concat(),
                )),
                Err(e) if e.kind == PatternErrorKind::Skip => Some((RuleStatus::Skip, e.message)),
                Err(e) if e.path.is_empty() => Some((RuleStatus::Error, e.message)),
                Err(e) => Some((
                    RuleStatus::Fail,
                    pattern_failure(msg(), input.rule_name, &e),
                )),
            }
        }
        ValidationCheck::AnyPattern(list) => {
            if input.opts.delete && scope.depth == 0 {
                return None;
            }
            let mut failures = Vec::new();
            let mut skips = Vec::new();
            for (i, p) in list.iter().enumerate() {
                let matched = match_pattern(
                    p,
                    scope.resource,
                    scope.ctx,
                    input.opts,
                    &format!("validate/anyPattern/{i}"),
                );
                let matched = match matched {
                    Ok(m) => m,
                    Err(e) => return Some((RuleStatus::Error, e)),
                };
                match matched {
                    Ok(()) => {
                        return Some((
                            RuleStatus::Pass,
                            format!(
                                "validation rule '{}' anyPattern[{i}] passed.",
                                input.rule_name
                            ),
                        ));
                    }
                    Err(e) if e.kind == PatternErrorKind::Skip => skips.push(e.message),
                    Err(e) => failures.push(format!(
                        "rule {}[{i}] failed at path {}",
                        input.rule_name, e.path
                    )),
                }
            }
            if failures.is_empty() {
                return Some((RuleStatus::Skip, skips.join(" ")));
            }
            let text = match msg() {
                Some(m) if !m.is_empty() => format!(
                    "validation error: {} {}",
                    with_period(&m),
                    failures.join(" ")
                ),
                _ => format!("validation error: {}", failures.join(" ")),
            };
            Some((RuleStatus::Fail, text))
        }
        ValidationCheck::Foreach(list) => foreach(input, list, scope),
        ValidationCheck::PodSecurity(_)
        | ValidationCheck::Cel(_)
        | ValidationCheck::Manifests(_)
        | ValidationCheck::Unsupported(_) => run(input),
    }
}

/// What one foreach element came to.
enum Element {
    /// Its preconditions are not met: it is left out.
    Excluded,
    /// It cannot be checked (an error, reported as it is).
    Invalid(String),
    Checked(CheckOutcome),
}

/// A foreach element: borrowed from the request's JSON (whole floats already written as
/// integers), or an interpreter value.
enum ForeachElement<'a> {
    Json(std::borrow::Cow<'a, Value>),
    Var(Rcvar),
}

/// How an element is set in its context: by its place in the request's objects, or converted.
enum Binding {
    Place(crate::json_context::JsonRef),
    Var(Rcvar),
}

fn foreach(input: &CheckInput, list: &[ForeachValidation], scope: &Scope) -> CheckOutcome {
    let mut applied = 0usize;
    for entry in list {
        let check = &entry.check;
        let expr = match variables::substitute_string(
            &entry.list,
            scope.ctx,
            input.opts,
            "validate/foreach/list",
        ) {
            Ok(v) => variables::to_text(&v),
            Err(e) => {
                return Some((
                    RuleStatus::Error,
                    format!("failed to substitute foreach list: {e}"),
                ));
            }
        };
        let found = variables::compiled_for(&expr, input.opts).and_then(|compiled| {
            match variables::evaluate_list(&compiled, scope.ctx)? {
                // Read from the request's JSON: each element's JSON is borrowed from it.
                variables::Found::Json(v) => Ok(v.into_items().map(|items| {
                    items
                        .into_iter()
                        .map(|item| ForeachElement::Json(crate::jmespath::normalized_cow(item)))
                        .collect::<Vec<_>>()
                })),
                variables::Found::Var(v) => Ok(match &*v {
                    Variable::Array(items) => {
                        Some(items.iter().cloned().map(ForeachElement::Var).collect())
                    }
                    Variable::Null | Variable::Expref(_) => None,
                    _ => Some(vec![ForeachElement::Var(v)]),
                }),
            }
        });
        let elements = match found {
            Ok(Some(elements)) => elements,
            Ok(None) => continue,
            Err(crate::jmespath::JmespathError::NotFound { .. }) => continue,
            Err(e) => {
                return Some((
                    RuleStatus::Error,
                    format!("failed to evaluate list {expr}: {e}"),
                ));
            }
        };
        if let Err(e) = scope.ctx.budget().charge_foreach(elements.len()) {
            return Some((RuleStatus::Error, e));
        }
        let element_key = format!("element{}", scope.depth);
        let index_key = format!("elementIndex{}", scope.depth);
        // Elements borrowed from the request's objects are set in the context by their place
        // there: read in place, never converted unless the interpreter reads them.
        static NOT_IN_REQUEST: Value = Value::Null;
        let targets: Vec<&Value> = elements
            .iter()
            .map(|e| match e {
                ForeachElement::Json(std::borrow::Cow::Borrowed(v)) => *v,
                _ => &NOT_IN_REQUEST,
            })
            .collect();
        let places = scope.ctx.locate_in_request(&targets);
        for (index, (element, place)) in elements.into_iter().zip(places).enumerate() {
            let (element_json, binding, is_object) = match element {
                ForeachElement::Json(json) => {
                    if json.is_null() {
                        continue;
                    }
                    let binding = match place {
                        Some(place) => Binding::Place(place),
                        None => Binding::Var(crate::jmespath::to_variable(&json)),
                    };
                    let is_object = json.is_object();
                    (Some(json), binding, is_object)
                }
                ForeachElement::Var(element_var) => {
                    if matches!(&*element_var, Variable::Null | Variable::Expref(_)) {
                        continue;
                    }
                    // The context sees the element as its JSON form would convert back: share
                    // the interpreter value when that conversion is the identity (no floats to
                    // normalise). The JSON form itself is only needed when the check looks at a
                    // resource.
                    let floats = has_float(&element_var);
                    let element_json = (floats || !matches!(check, ValidationCheck::Deny(_)))
                        .then(|| std::borrow::Cow::Owned(crate::jmespath::to_json(&element_var)));
                    let element_var = match &element_json {
                        Some(json) if floats => crate::jmespath::to_variable(json),
                        _ => element_var,
                    };
                    let is_object = matches!(&*element_var, Variable::Object(_));
                    (element_json, Binding::Var(element_var), is_object)
                }
            };
            let index_var = Rcvar::new(Variable::Number(serde_json::Number::from(index)));
            let mut ctx = scope.ctx.clone();
            match binding {
                Binding::Var(element_var) => ctx.set_tops([
                    ("element", element_var.clone()),
                    ("elementIndex", index_var.clone()),
                    (element_key.as_str(), element_var),
                    (index_key.as_str(), index_var),
                ]),
                Binding::Place(place) => {
                    ctx.set_tops([
                        ("elementIndex", index_var.clone()),
                        (index_key.as_str(), index_var),
                    ]);
                    ctx.set_json_top(&["element", &element_key], place);
                }
            }
            for (name, values) in input.foreach_values {
                if let Some(v) = values.as_array().and_then(|a| a.get(index)) {
                    ctx.set(name, v);
                }
            }
            let src = context_loader::Sources {
                provider: input.provider,
                policy_namespace: input.policy_namespace,
                preset: input.preset,
                opts: input.opts,
            };
            // The element's context entries load when the element's checks first read them.
            let run = context_loader::run_deferred(&entry.context, &mut ctx, src, |ctx| {
                if let Some(pre) = &entry.preconditions {
                    match pre.evaluate(ctx, input.opts, "validate/foreach/preconditions") {
                        Ok(o) if o.met => {}
                        _ => return Element::Excluded,
                    }
                }
                let element_scope = entry.element_scope.unwrap_or(is_object);
                if element_scope && !is_object {
                    return Element::Invalid(format!(
                        "failed to evaluate foreach: elementScope is set but element {index} is not an object"
                    ));
                }
                let inner = Scope {
                    resource: if element_scope {
                        // (A deny check never reads it.)
                        element_json.as_deref().unwrap_or(scope.resource)
                    } else {
                        scope.resource
                    },
                    ctx,
                    depth: scope.depth + 1,
                };
                Element::Checked(check_resource(input, check, &inner))
            });
            let outcome = match run {
                Err(e) => {
                    return Some((
                        RuleStatus::Error,
                        format!("failed to load foreach context: {e}"),
                    ));
                }
                Ok(Element::Excluded) => continue,
                Ok(Element::Invalid(text)) => return Some((RuleStatus::Error, text)),
                Ok(Element::Checked(outcome)) => outcome,
            };
            match outcome {
                None => {}
                Some((RuleStatus::Pass, _)) => applied += 1,
                Some((RuleStatus::Skip, _)) => {}
                Some((status, text)) => {
                    let text = if text.starts_with("validation failure: ") {
                        text
                    } else {
                        format!("validation failure: {text}")
                    };
                    return Some((status, text));
                }
            }
        }
    }
    if applied == 0 {
        return Some((RuleStatus::Skip, "rule skipped".into())).filter(|_| scope.depth > 0);
    }
    Some((
        RuleStatus::Pass,
        ["validation rule '", input.rule_name, "' passed."].concat(),
    ))
}
