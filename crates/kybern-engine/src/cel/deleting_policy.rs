//! DeletingPolicy (`policies.kyverno.io`, with its Namespaced variant): a cron `schedule`
//! (parsed and validated when the policy loads) and CEL `conditions` that select the matching
//! resources to delete. Evaluation answers whether a resource would be deleted.

use super::match_constraints::MatchConstraints;
use super::validate_cel::{CelInput, base_scope};
use super::{
    CelError, Condition, ConditionsOutcome, Variable, VariableValues, compile_conditions,
    compile_variables, evaluate_conditions,
};
use crate::context::ContextProvider;
use crate::request::AdmissionRequest;
use serde_json::Value;

/// The result of a DeletingPolicy on one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteResult {
    NotMatched,
    /// The conditions hold: the resource would be deleted.
    Delete,
    /// A condition is false (its name).
    Keep(String),
    Error(String),
}

/// A compiled DeletingPolicy.
#[derive(Debug, Clone)]
pub struct DeletingPolicy {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub schedule: String,
    pub match_constraints: Option<MatchConstraints>,
    pub conditions: Vec<Condition>,
    pub variables: Vec<Variable>,
    pub annotations: serde_json::Map<String, Value>,
}

/// The kind name when `doc` is a DeletingPolicy.
pub fn deleting_kind(doc: &Value) -> Option<&'static str> {
    let api = doc.get("apiVersion").and_then(Value::as_str)?;
    if !api.starts_with("policies.kyverno.io/") {
        return None;
    }
    match doc.get("kind").and_then(Value::as_str)? {
        "DeletingPolicy" => Some("DeletingPolicy"),
        "NamespacedDeletingPolicy" => Some("NamespacedDeletingPolicy"),
        _ => None,
    }
}

/// Ranges of the five cron fields: minute, hour, day of month, month, day of week.
const CRON_FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn cron_value(s: &str, field: usize) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let upper = s.to_ascii_uppercase();
    let names: &[&str] = match field {
        3 => &MONTHS,
        4 => &DAYS,
        _ => return None,
    };
    let base = if field == 3 { 1 } else { 0 };
    names
        .iter()
        .position(|n| *n == upper)
        .and_then(|i| u32::try_from(i).ok())
        .map(|i| i + base)
}

/// Validates a standard five-field cron schedule (or a `@every`/`@daily`-style descriptor).
pub fn validate_schedule(s: &str) -> Result<(), String> {
    let s = s.trim();
    if let Some(desc) = s.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => {
                crate::duration::parse(d.trim_start_matches("every ").trim())
                    .map(|_| ())
                    .ok_or_else(|| format!("invalid @every duration {d:?}"))
            }
            _ => Err(format!("unknown descriptor @{desc}")),
        };
    }
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!("expected 5 fields, found {}", parts.len()));
    }
    for (i, (part, (name, lo, hi))) in parts.iter().zip(CRON_FIELDS).enumerate() {
        for item in part.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, st)) => (r, Some(st)),
                None => (item, None),
            };
            if let Some(st) = step
                && st.parse::<u32>().map_or(true, |n| n == 0)
            {
                return Err(format!("{name}: invalid step {st:?}"));
            }
            if range == "*" || range == "?" {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (Some(a), Some(b)) = (cron_value(a, i), cron_value(b, i)) else {
                return Err(format!("{name}: invalid value {range:?}"));
            };
            if a < lo || b > hi || a > b {
                return Err(format!("{name}: {range:?} is outside {lo}-{hi}"));
            }
        }
    }
    Ok(())
}

impl DeletingPolicy {
    /// Compiles a DeletingPolicy document; the schedule must be a valid cron expression.
    pub fn compile(doc: &Value) -> Result<DeletingPolicy, CelError> {
        let kind =
            deleting_kind(doc).ok_or_else(|| CelError::new("kind", "not a DeletingPolicy"))?;
        let spec = doc
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| CelError::new("spec", "is required"))?;
        let schedule = spec
            .get("schedule")
            .and_then(Value::as_str)
            .ok_or_else(|| CelError::new("spec.schedule", "is required"))?;
        validate_schedule(schedule)
            .map_err(|e| CelError::new("spec.schedule", format!("invalid cron schedule: {e}")))?;
        Ok(DeletingPolicy {
            kind,
            name: super::policy_name(doc),
            namespace: super::policy_namespace(doc, kind == "NamespacedDeletingPolicy"),
            schedule: schedule.to_string(),
            match_constraints: match spec.get("matchConstraints") {
                None | Some(Value::Null) => None,
                m => {
                    // Deletion is not an admission operation: rules select every operation.
                    let mut c = MatchConstraints::compile(m, "spec.matchConstraints")?;
                    for r in c
                        .resource_rules
                        .iter_mut()
                        .chain(c.exclude_resource_rules.iter_mut())
                    {
                        if r.operations.is_empty() {
                            r.operations = vec!["*".to_string()];
                        }
                    }
                    Some(c)
                }
            },
            conditions: compile_conditions(spec.get("conditions"), "spec.conditions")?,
            variables: compile_variables(spec.get("variables"), "spec.variables")?,
            annotations: crate::objects::at(doc, &["metadata", "annotations"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Whether a resource (as a request) would be deleted. A policy without `matchConstraints`
    /// selects nothing in Kubernetes mode.
    pub fn evaluate(&self, req: &AdmissionRequest, provider: &dyn ContextProvider) -> DeleteResult {
        if !self.namespace.is_empty() && req.namespace() != self.namespace {
            return DeleteResult::NotMatched;
        }
        let ns_labels = super::namespace_labels(req, provider);
        match &self.match_constraints {
            Some(m) if m.matches(req, ns_labels.as_ref()) => {}
            _ => return DeleteResult::NotMatched,
        }
        let namespace_object = super::validating_policy::namespace_object(req, provider);
        self.decide(req.resource(), namespace_object.as_ref(), provider)
    }

    /// Evaluates the conditions on a JSON payload (no matching).
    pub fn evaluate_json(&self, payload: &Value, provider: &dyn ContextProvider) -> DeleteResult {
        self.decide(payload, None, provider)
    }

    fn decide(
        &self,
        object: &Value,
        namespace_object: Option<&Value>,
        provider: &dyn ContextProvider,
    ) -> DeleteResult {
        let null = Value::Null;
        let input = CelInput {
            object,
            old_object: &null,
            request: &null,
            namespace_object,
            params: None,
            provider: Some(provider),
        };
        let mut scope = match base_scope(&input) {
            Ok(s) => s,
            Err(e) => return DeleteResult::Error(e),
        };
        let vars = VariableValues::evaluate(&self.variables, &mut scope);
        match evaluate_conditions(&self.conditions, &scope) {
            ConditionsOutcome::Met => DeleteResult::Delete,
            ConditionsOutcome::NotMet(name) => DeleteResult::Keep(name),
            ConditionsOutcome::Error(e) => DeleteResult::Error(vars.explain(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoProvider;
    use serde_json::json;

    #[test]
    fn schedules_are_validated() {
        let cases = [
            ("*/1 * * * *", true),
            ("0 3 * * MON-FRI", true),
            ("@daily", true),
            ("0 0 1 JAN *", true),
            ("* * *", false),
            ("61 * * * *", false),
            ("*/0 * * * *", false),
            ("@sometimes", false),
        ];
        for (s, ok) in cases {
            assert_eq!(validate_schedule(s).is_ok(), ok, "{s}");
        }
    }

    fn policy(cond: &str) -> DeletingPolicy {
        DeletingPolicy::compile(&json!({
            "apiVersion": "policies.kyverno.io/v1beta1", "kind": "DeletingPolicy",
            "metadata": {"name": "d"},
            "spec": {"schedule": "*/5 * * * *",
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "resources": ["pods"]}]},
                "conditions": [{"name": "c", "expression": cond}]}
        }))
        .unwrap()
    }

    #[test]
    fn conditions_decide_deletion() {
        let pod = AdmissionRequest {
            object: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "old", "namespace": "x"}}).into(),
            ..AdmissionRequest::default()
        };
        let cases = [
            ("object.metadata.name == 'old'", DeleteResult::Delete),
            (
                "object.metadata.name == 'new'",
                DeleteResult::Keep("c".into()),
            ),
        ];
        for (cond, want) in cases {
            assert_eq!(policy(cond).evaluate(&pod, &NoProvider), want, "{cond}");
        }
        let svc = AdmissionRequest {
            object: json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}})
                .into(),
            ..AdmissionRequest::default()
        };
        assert_eq!(
            policy("true").evaluate(&svc, &NoProvider),
            DeleteResult::NotMatched
        );
        let bad = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "DeletingPolicy",
            "metadata": {"name": "d"}, "spec": {"schedule": "every day"}});
        assert_eq!(
            DeletingPolicy::compile(&bad).unwrap_err().path,
            "spec.schedule"
        );
    }
}
