//! The decision trace a client asks for with `?explain` (or `?explain=true`): every rule of the
//! policies that could apply to the request's kind and what decided it, returned in a denial's
//! `status.details.causes` and logged with the request's uid. Built only when asked; bounded in
//! entries and bytes so that a trace never makes an answer large.

use crate::admission::{Cause, StatusDetails};
use crate::decision::Decision;
use crate::store::PolicySet;
use kybern_engine::explain;
use kybern_engine::request::AdmissionRequest;

/// Entries kept at most; the last cause then says how many were left out.
pub const MAX_ENTRIES: usize = 64;
/// Bytes of messages kept at most.
pub const MAX_BYTES: usize = 16 * 1024;

/// True when the query asks for a trace.
pub fn asked(query: Option<&str>) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .any(|kv| matches!(kv, "explain" | "explain=true" | "explain=1"))
}

/// The trace of `decision`, as status details. The context entries its conditions name are
/// loaded through `provider` again (it may wait on lookups: call it off the async workers).
pub fn details(
    set: &PolicySet,
    request: &AdmissionRequest,
    decision: &Decision,
    provider: &dyn kybern_engine::context::ContextProvider,
) -> StatusDetails {
    let kind = request.gvk().kind;
    let responses: Vec<_> = decision
        .outcomes
        .iter()
        .map(|o| o.response.clone())
        .collect();
    // The server has no values files: entries load from the provider.
    let no_values = |_: &kybern_engine::policy::Policy, _: &str| None;
    let sources = explain::TraceSources {
        provider,
        rule_values: &no_values,
    };
    let entries = explain::trace(
        set.candidates(&kind).into_iter().map(|p| p.as_ref()),
        &responses,
        request,
        Some(sources),
    );
    let total = entries.len();
    let mut causes = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let message = format!("{}: {}", e.name(), e.outcome);
        if causes.len() == MAX_ENTRIES || bytes + message.len() > MAX_BYTES {
            break;
        }
        bytes += message.len();
        causes.push(Cause {
            reason: reason(&e.outcome),
            message,
        });
    }
    if causes.len() < total {
        causes.push(Cause {
            reason: "TraceTruncated",
            message: format!("{} more entries left out", total - causes.len()),
        });
    }
    StatusDetails { causes }
}

/// A cause's `reason`, from the outcome's first word.
fn reason(outcome: &str) -> &'static str {
    match outcome.split(':').next().unwrap_or_default() {
        "fail" => "RuleFailed",
        "pass" => "RulePassed",
        "skip" => "RuleSkipped",
        "error" => "RuleError",
        "warn" => "RuleWarned",
        "not matched" => "RuleNotMatched",
        _ if outcome.starts_with("excluded") => "RuleExcluded",
        _ => "RuleNotEvaluated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_is_asked_by_name_with_or_without_a_value() {
        assert!(asked(Some("timeout=10s&explain")));
        assert!(asked(Some("explain=true")));
        assert!(!asked(Some("timeout=10s")));
        assert!(!asked(Some("explain=false")));
        assert!(!asked(None));
    }

    #[test]
    fn a_long_trace_is_cut_at_its_entry_bound_and_says_so() {
        use kybern_engine::cel::policy_set::CelPolicySet;
        use std::sync::Arc;
        let policies = (0..100)
            .map(|i| {
                Arc::new(
                    kybern_engine::policy::compile_policy(&serde_json::json!({
                        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
                        "metadata": {"name": format!("p{i}")},
                        "spec": {"rules": [{"name": "r",
                            "match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": ["prod"]}}]},
                            "validate": {"message": "m", "deny": {}}}]}
                    }))
                    .unwrap(),
                )
            })
            .collect();
        let set = PolicySet::new(policies, vec![], CelPolicySet::default(), 1);
        let request = AdmissionRequest {
            object: Arc::new(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "dev"}})),
            ..AdmissionRequest::default()
        };
        let d = details(
            &set,
            &request,
            &Decision::default(),
            &kybern_engine::context::NoProvider,
        );
        // 100 policies of three rules each (the rule and its two auto-generated ones).
        assert_eq!(d.causes.len(), MAX_ENTRIES + 1);
        assert_eq!(d.causes[0].reason, "RuleNotMatched");
        let last = d.causes.last().unwrap();
        assert_eq!(
            (last.reason, last.message.as_str()),
            ("TraceTruncated", "236 more entries left out")
        );
    }

    #[test]
    fn reasons_follow_the_outcome() {
        assert_eq!(reason("fail: x"), "RuleFailed");
        assert_eq!(
            reason("not matched: kind Pod is not one of [Service]"),
            "RuleNotMatched"
        );
        assert_eq!(reason("excluded by exclude.any[0]"), "RuleExcluded");
        assert_eq!(reason("not evaluated: other namespace"), "RuleNotEvaluated");
    }
}
