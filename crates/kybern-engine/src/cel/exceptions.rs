//! PolicyExceptions of `policies.kyverno.io` for the CEL policy kinds: `policyRefs` select the
//! policies, `matchConditions` (all true) select the requests, and `images`/`allowedValues`
//! narrow the exception to what CEL sees as `exceptions.allowedImages`/`allowedValues`
//! instead of skipping the whole policy.

use super::{
    CelError, Condition, ConditionsOutcome, Scope, compile_conditions, evaluate_conditions,
};
use serde_json::{Value, json};

/// A compiled CEL PolicyException.
#[derive(Debug, Clone)]
pub struct CelException {
    /// `namespace/name`, or `name` when cluster-wide.
    pub key: String,
    /// `(kind, name)` of the policies it applies to.
    pub policy_refs: Vec<(String, String)>,
    pub match_conditions: Vec<Condition>,
    pub images: Vec<String>,
    pub allowed_values: Vec<String>,
    /// `reportResult: pass` (default skip).
    pub report_pass: bool,
    /// Some text of the exception's spec mentions `request`: a condition may read it.
    pub reads_request: bool,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl CelException {
    /// The namespace the exception lives in; empty for a cluster-wide one.
    pub fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
    }

    /// Whether `doc` is a CEL PolicyException (`policies.kyverno.io`).
    pub fn is_cel_exception(doc: &Value) -> bool {
        doc.get("kind").and_then(Value::as_str) == Some("PolicyException")
            && doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("policies.kyverno.io/"))
    }

    /// Compiles a PolicyException document.
    pub fn compile(doc: &Value) -> Result<CelException, CelError> {
        let spec = doc
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| CelError::new("spec", "is required"))?;
        let refs = spec
            .get("policyRefs")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                CelError::new(
                    "spec.policyRefs",
                    "at least one policy reference is required",
                )
            })?;
        let mut policy_refs = Vec::with_capacity(refs.len());
        for (i, r) in refs.iter().enumerate() {
            let name = r.get("name").and_then(Value::as_str).ok_or_else(|| {
                CelError::new(format!("spec.policyRefs[{i}].name"), "is required")
            })?;
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or_default();
            policy_refs.push((kind.to_string(), name.to_string()));
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name.to_string(),
        };
        Ok(CelException {
            key,
            policy_refs,
            match_conditions: compile_conditions(
                spec.get("matchConditions"),
                "spec.matchConditions",
            )?,
            images: strings(spec.get("images")),
            allowed_values: strings(spec.get("allowedValues")),
            report_pass: spec.get("reportResult").and_then(Value::as_str) == Some("pass"),
            reads_request: crate::policy::value_contains(spec, "request"),
        })
    }

    /// Whether the exception names the policy (an empty kind names any kind).
    pub fn applies_to(&self, kind: &str, name: &str) -> bool {
        self.policy_refs
            .iter()
            .any(|(k, n)| n == name && (k.is_empty() || k == kind))
    }
}

/// What the exceptions of a policy decide for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum ExceptionOutcome {
    /// No exception exempts the whole request (partial ones are visible as `exceptions`).
    None,
    Skip(String),
    Pass(String),
    Error(String),
}

/// Evaluates `exceptions` on the scope and sets the `exceptions` variable from the partial
/// ones (`images`, `allowedValues`).
pub fn check_exceptions(exceptions: &[CelException], scope: &mut Scope) -> ExceptionOutcome {
    let (outcome, partial) = evaluate_exceptions(exceptions, scope);
    set_partial(scope, partial);
    outcome
}

/// What expressions read as `exceptions` when no exception applies in part: the same empty
/// lists for every request, read in place.
pub(crate) static NO_PARTIAL_EXCEPTIONS: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| json!({"allowedImages": [], "allowedValues": []}));

/// The `exceptions` variable after the exceptions were evaluated.
enum Partial {
    /// Not set: an exception applies to the whole request, or one failed; the rule does not run.
    Unset,
    /// No exception applies in part.
    Empty,
    /// The images and values the exceptions that apply in part allow.
    Allowed(Value),
}

fn set_partial(scope: &mut Scope, partial: Partial) {
    match partial {
        Partial::Unset => {}
        Partial::Empty => scope.set_json_ref("exceptions", &NO_PARTIAL_EXCEPTIONS),
        Partial::Allowed(v) => scope.set_json("exceptions", &v),
    }
}

/// [`check_exceptions`] with the conditions read on `request_scope`: the request as it was
/// sent when the policy runs on a Pod template (autogen), as Kyverno evaluates exceptions
/// with their expressions unrewritten on the request's object.
pub fn check_exceptions_on(
    exceptions: &[CelException],
    request_scope: &Scope,
    scope: &mut Scope,
) -> ExceptionOutcome {
    let (outcome, partial) = evaluate_exceptions(exceptions, request_scope);
    set_partial(scope, partial);
    outcome
}

/// The decision of `exceptions` on `scope`, and the `exceptions` variable the partial ones
/// make when none exempts the whole request.
fn evaluate_exceptions(exceptions: &[CelException], scope: &Scope) -> (ExceptionOutcome, Partial) {
    let mut images = Vec::new();
    let mut values = Vec::new();
    let mut full: Vec<&CelException> = Vec::new();
    for e in exceptions {
        match evaluate_conditions(&e.match_conditions, scope) {
            ConditionsOutcome::Met => {
                if e.images.is_empty() && e.allowed_values.is_empty() {
                    full.push(e);
                } else {
                    images.extend(e.images.iter().cloned());
                    values.extend(e.allowed_values.iter().cloned());
                }
            }
            ConditionsOutcome::NotMet(_) => {}
            ConditionsOutcome::Error(err) if full.is_empty() => {
                let err = format!("policy exception {:?}: {err}", e.key);
                return (ExceptionOutcome::Error(err), Partial::Unset);
            }
            ConditionsOutcome::Error(_) => {}
        }
    }
    if let Some(first) = full.first() {
        let keys: Vec<&str> = full.iter().map(|e| e.key.as_str()).collect();
        let keys = keys.join(", ");
        let outcome = if first.report_pass {
            ExceptionOutcome::Pass(format!("rule is passed due to policy exception: {keys}"))
        } else {
            ExceptionOutcome::Skip(format!("rule is skipped due to policy exception: {keys}"))
        };
        return (outcome, Partial::Unset);
    }
    if images.is_empty() && values.is_empty() {
        return (ExceptionOutcome::None, Partial::Empty);
    }
    (
        ExceptionOutcome::None,
        Partial::Allowed(json!({"allowedImages": images, "allowedValues": values})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exception(conditions: Value, extra: Value) -> CelException {
        let mut spec = json!({"policyRefs": [{"name": "p", "kind": "ValidatingPolicy"}],
                              "matchConditions": conditions});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        CelException::compile(&json!({"apiVersion": "policies.kyverno.io/v1alpha1",
            "kind": "PolicyException", "metadata": {"name": "ex", "namespace": "ns"}, "spec": spec}))
        .unwrap()
    }

    #[test]
    fn exceptions_decide_by_conditions() {
        let yes = json!([{"name": "a", "expression": "object.metadata.name == 'x'"}]);
        let no = json!([{"name": "a", "expression": "object.metadata.name == 'y'"}]);
        let cases: Vec<(&str, CelException, ExceptionOutcome)> = vec![
            (
                "matching exception skips",
                exception(yes.clone(), json!({})),
                ExceptionOutcome::Skip("rule is skipped due to policy exception: ns/ex".into()),
            ),
            (
                "reportResult pass passes",
                exception(yes.clone(), json!({"reportResult": "pass"})),
                ExceptionOutcome::Pass("rule is passed due to policy exception: ns/ex".into()),
            ),
            (
                "conditions not met",
                exception(no, json!({})),
                ExceptionOutcome::None,
            ),
            (
                "images only narrow",
                exception(yes, json!({"images": ["nginx:*"]})),
                ExceptionOutcome::None,
            ),
        ];
        for (name, e, want) in cases {
            let mut scope = Scope::default();
            scope.set_json("object", &json!({"metadata": {"name": "x"}}));
            assert_eq!(check_exceptions(&[e], &mut scope), want, "{name}");
        }
    }

    #[test]
    fn policy_refs_are_required_and_matched_by_kind() {
        let e = exception(json!([]), json!({}));
        assert!(e.applies_to("ValidatingPolicy", "p"));
        assert!(!e.applies_to("MutatingPolicy", "p"));
        let bad = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "PolicyException",
                         "metadata": {"name": "x"}, "spec": {}});
        assert_eq!(
            CelException::compile(&bad).unwrap_err().path,
            "spec.policyRefs"
        );
    }
}
