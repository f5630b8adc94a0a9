//! `kybern convert --check`: both forms evaluated on the same resources, every difference listed.

use super::Conversion;
use serde_json::Value;

/// Where a converted policy decides differently from its rule on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub rule: String,
    /// `Kind namespace/name`.
    pub resource: String,
    pub original: &'static str,
    pub converted: &'static str,
}

/// How the converted policies decide against the original rules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// (rule, resource) pairs compared.
    pub compared: usize,
    /// Pairs where either form applied (passed, failed or errored) rather than not selecting.
    pub decided: usize,
    pub disagreements: Vec<Disagreement>,
    /// Pairs of a `validate.cel` rule where the original failed and the conversion errored: a
    /// ClusterPolicy reports an expression error as a failure, a ValidatingPolicy as an error;
    /// both deny (the conversion keeps `failurePolicy: Fail`).
    pub error_as_failure: usize,
    /// Converted policies that do not compile: (rule, error). Each is a defect of the converter.
    pub invalid: Vec<(String, String)>,
}

fn resource_name(v: &Value) -> String {
    let get = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default();
    format!(
        "{} {}/{}",
        get("/kind"),
        get("/metadata/namespace"),
        get("/metadata/name")
    )
}

/// The outcome of the original rule (with its autogen rules) on a resource.
fn original_outcome(rules: &[crate::response::RuleResult], name: &str) -> &'static str {
    use crate::response::RuleStatus;
    let mine = |r: &&crate::response::RuleResult| {
        r.name == name
            || r.name == format!("autogen-{name}")
            || r.name == format!("autogen-cronjob-{name}")
    };
    let statuses: Vec<RuleStatus> = rules.iter().filter(mine).map(|r| r.status).collect();
    if statuses.contains(&RuleStatus::Fail) {
        "fail"
    } else if statuses.contains(&RuleStatus::Error) {
        "error"
    } else if statuses.contains(&RuleStatus::Pass) || statuses.contains(&RuleStatus::Warn) {
        "pass"
    } else {
        "none"
    }
}

fn converted_outcome(r: &crate::cel::validating_policy::CelPolicyResult) -> &'static str {
    use crate::cel::validating_policy::CelPolicyResult;
    match r {
        CelPolicyResult::Pass => "pass",
        CelPolicyResult::Fail(_) => "fail",
        CelPolicyResult::Error(_) => "error",
        CelPolicyResult::NotMatched | CelPolicyResult::Skip(_) => "none",
    }
}

/// Evaluates the original rules and their conversions on each resource (as CREATE requests)
/// and lists where they decide differently.
pub fn compare(
    doc: &Value,
    conversion: &Conversion,
    resources: &[Value],
    provider: &dyn crate::context::ContextProvider,
) -> Agreement {
    use crate::cel::policy_set::{CelDocument, compile_document};
    use crate::request::{AdmissionRequest, Operation};
    let mut out = Agreement::default();
    let Ok(original) = crate::policy::compile_policy(doc) else {
        return out;
    };
    let mut converted = Vec::new();
    for (rule, v) in &conversion.policies {
        match compile_document(v) {
            Some(Ok(CelDocument::Validating(p))) => converted.push((rule.clone(), p)),
            Some(Ok(_)) | None => out
                .invalid
                .push((rule.clone(), "not read as a ValidatingPolicy".into())),
            Some(Err(e)) => out.invalid.push((rule.clone(), e.to_string())),
        }
    }
    let engine = crate::engine::Engine::new(provider);
    for resource in resources {
        let request = AdmissionRequest {
            operation: Operation::Create,
            object: std::sync::Arc::new(resource.clone()),
            ..AdmissionRequest::default()
        };
        let response = engine.validate(
            &original,
            &crate::engine::PolicyContext::new(&request),
            &[],
            &std::collections::BTreeMap::new(),
        );
        for (rule, vpol) in &converted {
            let was = original_outcome(&response.rules, rule);
            let now = converted_outcome(&vpol.evaluate(&request, provider));
            out.compared += 1;
            if was != "none" || now != "none" {
                out.decided += 1;
            }
            if was == "fail" && now == "error" && conversion.from_cel.contains(rule) {
                out.error_as_failure += 1;
            } else if was != now {
                out.disagreements.push(Disagreement {
                    rule: rule.clone(),
                    resource: resource_name(resource),
                    original: was,
                    converted: now,
                });
            }
        }
    }
    out
}
