//! The `wgpolicyk8s.io` policy report shape: one result entry per rule result and the summary
//! counts, written the same way by `kybern apply --policy-report` (offline) and by the reports
//! controller (in a cluster). The caller supplies the clock and decides where entries go.

use crate::response::{EngineResponse, FailureAction, RuleResult, RuleStatus};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The API group and version of PolicyReport and ClusterPolicyReport.
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";

/// The result words in the order of the summary's (sorted) keys.
pub const SUMMARY_KEYS: [&str; 5] = ["error", "fail", "pass", "skip", "warn"];

/// Policy annotations that reports copy into each result.
pub const SEVERITY_ANNOTATION: &str = "policies.kyverno.io/severity";
pub const CATEGORY_ANNOTATION: &str = "policies.kyverno.io/category";

/// The result a report records for a rule: a failure of an unscored policy is a warning, and so
/// is an audit failure when `audit_warn` asks for it (the CLI's `--audit-warn`).
pub fn reported_status(resp: &EngineResponse, rule: &RuleResult, audit_warn: bool) -> RuleStatus {
    if rule.status != RuleStatus::Fail {
        return rule.status;
    }
    let audit = rule.failure_action == Some(FailureAction::Audit);
    if resp.unscored || (audit_warn && audit) {
        RuleStatus::Warn
    } else {
        RuleStatus::Fail
    }
}

/// The `policy` field of a result: `name`, or `namespace/name` for a namespaced Policy.
pub fn policy_ref(resp: &EngineResponse) -> String {
    if resp.policy_namespace.is_empty() {
        resp.policy_name.clone()
    } else {
        format!("{}/{}", resp.policy_namespace, resp.policy_name)
    }
}

/// Kyverno's severities; anything else is left out of the result, as Kyverno does.
fn severity(annotations: &BTreeMap<String, String>) -> Option<&'static str> {
    let s = annotations.get(SEVERITY_ANNOTATION)?;
    ["critical", "high", "medium", "low", "info"]
        .into_iter()
        .find(|k| s.eq_ignore_ascii_case(k))
}

/// One entry of a report's `results`. `annotations` are the policy's (severity and category
/// come from them); `seconds` is the timestamp. Fields a report of one resource leaves out
/// (`resources`) are the caller's to add.
pub fn result_entry(
    resp: &EngineResponse,
    rule: &RuleResult,
    status: RuleStatus,
    message: &str,
    annotations: &BTreeMap<String, String>,
    seconds: u64,
) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("policy".into(), json!(policy_ref(resp)));
    entry.insert("rule".into(), json!(rule.name));
    entry.insert("result".into(), json!(status.as_str()));
    entry.insert("message".into(), json!(message));
    entry.insert("scored".into(), json!(!resp.unscored));
    entry.insert("source".into(), json!("kyverno"));
    entry.insert("timestamp".into(), json!({"nanos": 0, "seconds": seconds}));
    if let Some(s) = severity(annotations) {
        entry.insert("severity".into(), json!(s));
    }
    if let Some(c) = annotations
        .get(CATEGORY_ANNOTATION)
        .filter(|c| !c.is_empty())
    {
        entry.insert("category".into(), json!(c));
    }
    entry
}

/// Counts of each result word, in [`SUMMARY_KEYS`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary(pub [usize; 5]);

impl Summary {
    /// Counts one result word (words outside [`SUMMARY_KEYS`] are not counted).
    pub fn count(&mut self, word: &str) {
        if let Some(n) = SUMMARY_KEYS
            .iter()
            .position(|k| *k == word)
            .and_then(|i| self.0.get_mut(i))
        {
            *n += 1;
        }
    }

    /// Adds another summary's counts.
    pub fn add(&mut self, other: &Summary) {
        for (t, n) in self.0.iter_mut().zip(other.0) {
            *t += n;
        }
    }

    /// The count of `word` (0 for an unknown word).
    pub fn get(&self, word: &str) -> usize {
        SUMMARY_KEYS
            .iter()
            .position(|k| *k == word)
            .and_then(|i| self.0.get(i).copied())
            .unwrap_or(0)
    }

    /// The `summary` object of a report.
    pub fn to_value(&self) -> Value {
        Value::Object(
            SUMMARY_KEYS
                .iter()
                .zip(self.0)
                .map(|(k, n)| ((*k).to_string(), json!(n)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::RuleType;
    use std::sync::Arc;

    fn response(unscored: bool, action: FailureAction) -> EngineResponse {
        EngineResponse {
            policy_name: "require-labels".into(),
            policy_namespace: String::new(),
            policy_kind: "ClusterPolicy".into(),
            unscored,
            rules: vec![RuleResult {
                failure_action: Some(action),
                ..RuleResult::new("check", RuleType::Validation, RuleStatus::Fail, "m")
            }],
            resource: Arc::new(Value::Null),
            patched_resource: Arc::new(Value::Null),
        }
    }

    #[test]
    fn unscored_failures_and_audit_failures_with_audit_warn_are_warnings() {
        let r = response(true, FailureAction::Enforce);
        assert_eq!(reported_status(&r, &r.rules[0], false), RuleStatus::Warn);
        let r = response(false, FailureAction::Audit);
        assert_eq!(reported_status(&r, &r.rules[0], false), RuleStatus::Fail);
        assert_eq!(reported_status(&r, &r.rules[0], true), RuleStatus::Warn);
    }

    #[test]
    fn entries_carry_known_severities_and_categories_only() {
        let r = response(false, FailureAction::Audit);
        let mut a = BTreeMap::new();
        a.insert(SEVERITY_ANNOTATION.to_string(), "High".to_string());
        a.insert(CATEGORY_ANNOTATION.to_string(), "Pod Security".to_string());
        let e = result_entry(&r, &r.rules[0], RuleStatus::Fail, "m", &a, 7);
        assert_eq!(e["severity"], "high");
        assert_eq!(e["category"], "Pod Security");
        assert_eq!(e["timestamp"]["seconds"], 7);
        a.insert(SEVERITY_ANNOTATION.to_string(), "urgent".to_string());
        let e = result_entry(&r, &r.rules[0], RuleStatus::Fail, "m", &a, 7);
        assert!(e.get("severity").is_none());
    }

    #[test]
    fn summary_counts_known_words() {
        let mut s = Summary::default();
        s.count("fail");
        s.count("fail");
        s.count("pass");
        s.count("bogus");
        assert_eq!(s.get("fail"), 2);
        assert_eq!(
            s.to_value(),
            json!({"error": 0, "fail": 2, "pass": 1, "skip": 0, "warn": 0})
        );
    }
}
