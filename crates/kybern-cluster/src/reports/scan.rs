//! What a background scan reports for one resource: the validate results of every policy with
//! `background: true` that matches it (Pod Security subrules and auto-generated rules for pod
//! controllers included, as the engine compiles them), and of ValidatingPolicies and bound
//! ValidatingAdmissionPolicies whose background evaluation is on, evaluated as Kyverno's
//! background scan does (a CREATE without user information), filtered and capped as configured.

use super::merge;
use crate::discovery::Kinds;
use crate::webhooks::{KindResolver, Resource};
use kybern_engine::cel::policy_set::{AdmissionFilter, CelKinds};
use kybern_engine::context::ContextProvider;
use kybern_engine::engine::{Engine, PolicyContext};
use kybern_engine::policy::{Policy, RuleBody};
use kybern_engine::report;
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::{RuleStatus, RuleType};
use kybern_webhook::store::PolicySet;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Kinds never scanned unless a rule names them and they are asked for: they change so often
/// that reports on them would be churn (Events, Leases), or they are reports themselves.
pub const CHURNING_KINDS: &[&str] = &[
    "Event",
    "Lease",
    "PolicyReport",
    "ClusterPolicyReport",
    "EphemeralReport",
    "ClusterEphemeralReport",
    "UpdateRequest",
];

/// How results are kept.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// The result words written to reports (`--report-results`).
    pub results: HashSet<RuleStatus>,
    /// Longest message kept, in bytes; longer ones are cut at a character boundary and end in `...`.
    pub message_limit: usize,
    /// Kinds scanned even though they churn.
    pub allowed_churning_kinds: Vec<String>,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            results: [
                RuleStatus::Pass,
                RuleStatus::Fail,
                RuleStatus::Warn,
                RuleStatus::Error,
                RuleStatus::Skip,
            ]
            .into_iter()
            .collect(),
            message_limit: 1024,
            allowed_churning_kinds: Vec::new(),
        }
    }
}

/// Parses `--report-results` (`fail,warn,error`).
pub fn parse_results(words: &[String]) -> Result<HashSet<RuleStatus>, String> {
    words
        .iter()
        .map(|w| match w.trim() {
            "pass" => Ok(RuleStatus::Pass),
            "fail" => Ok(RuleStatus::Fail),
            "warn" => Ok(RuleStatus::Warn),
            "error" => Ok(RuleStatus::Error),
            "skip" => Ok(RuleStatus::Skip),
            other => Err(format!(
                "unknown result {other:?} (pass, fail, warn, error, skip)"
            )),
        })
        .collect()
}

/// True when a policy takes part in background scans.
pub fn scans(policy: &Policy) -> bool {
    policy.background
        && policy
            .rules
            .iter()
            .any(|r| matches!(r.body, RuleBody::Validate(_)))
}

/// True when a policy has verifyImages rules.
pub fn verifies_images(policy: &Policy) -> bool {
    policy
        .rules
        .iter()
        .any(|r| matches!(r.body, RuleBody::VerifyImages { .. }))
}

/// The kinds background policies select, resolved against discovery (preferred versions, no
/// subresources, no wildcard kinds); churning kinds are left out unless allowed.
pub fn scanned_kinds(set: &PolicySet, kinds: &Kinds, settings: &ScanSettings) -> Vec<Resource> {
    let mut selectors: BTreeSet<String> = BTreeSet::new();
    for p in set.policies.iter().filter(|p| scans(p)) {
        for r in p
            .rules
            .iter()
            .filter(|r| matches!(r.body, RuleBody::Validate(_)))
        {
            for d in r.match_resources.descriptions() {
                selectors.extend(d.kinds.iter().cloned());
            }
        }
    }
    let mut out: Vec<Resource> = Vec::new();
    for selector in &selectors {
        let s = kybern_engine::matching::parse_kind(selector);
        if s.subresource.is_some() || s.kind.contains('*') || s.kind.contains('?') {
            continue;
        }
        if CHURNING_KINDS.contains(&s.kind)
            && !settings.allowed_churning_kinds.iter().any(|k| k == s.kind)
        {
            continue;
        }
        for r in kinds.resources().iter().filter(|r| {
            r.kind == s.kind
                && r.preferred
                && (s.group == "*" || s.group == r.group)
                && (s.version == "*" || s.version == r.version)
        }) {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// True for a CEL validating policy object (ValidatingPolicy, NamespacedValidatingPolicy,
/// ValidatingAdmissionPolicy) whose background evaluation is on.
fn cel_scans(object: &Value) -> bool {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    matches!(
        kind,
        "ValidatingPolicy" | "NamespacedValidatingPolicy" | "ValidatingAdmissionPolicy"
    ) && object
        .pointer("/spec/evaluation/background/enabled")
        .and_then(Value::as_bool)
        != Some(false)
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The kinds CEL validating policies select (`spec.matchConstraints.resourceRules`), resolved
/// against discovery; wildcard resources and subresources are not scanned.
pub fn cel_scanned_kinds(
    objects: &[Value],
    kinds: &Kinds,
    settings: &ScanSettings,
) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    for o in objects.iter().filter(|o| cel_scans(o)) {
        let rules = o
            .pointer("/spec/matchConstraints/resourceRules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for rule in rules {
            let groups = strings(rule.get("apiGroups"));
            let versions = strings(rule.get("apiVersions"));
            for plural in strings(rule.get("resources")) {
                if plural.contains('*') || plural.contains('/') {
                    continue;
                }
                for r in kinds.resources().iter().filter(|r| {
                    r.plural == plural
                        && r.preferred
                        && groups.iter().any(|g| *g == "*" || *g == r.group)
                        && versions.iter().any(|v| *v == "*" || *v == r.version)
                }) {
                    let churns = CHURNING_KINDS.contains(&r.kind.as_str())
                        && !settings.allowed_churning_kinds.contains(&r.kind);
                    if !churns && !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
    }
    out
}

/// Cuts a message to `limit` bytes at a character boundary.
pub fn cap_message(message: &str, limit: usize) -> String {
    if message.len() <= limit {
        return message.to_string();
    }
    let mut end = limit.saturating_sub(3);
    while end > 0 && !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", message.get(..end).unwrap_or_default())
}

/// The report results for `object` (with apiVersion and kind), sorted by policy and rule, with
/// timestamp 0 (the writer stamps them).
pub fn evaluate(
    set: &PolicySet,
    provider: &dyn ContextProvider,
    object: Arc<Value>,
    settings: &ScanSettings,
) -> Vec<Map<String, Value>> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace_labels = if namespace.is_empty() {
        None
    } else {
        provider.namespace_labels(&namespace).ok().flatten()
    };
    let request = AdmissionRequest {
        operation: Operation::Create,
        object,
        namespace_labels,
        no_user_info: true,
        ..AdmissionRequest::default()
    };
    let pctx = PolicyContext::new(&request);
    let engine = Engine::new(provider);
    let no_values = BTreeMap::new();
    let mut results = Vec::new();
    for policy in set.candidates(&kind) {
        if !scans(policy) {
            continue;
        }
        let resp = engine.validate(policy, &pctx, &set.exceptions, &no_values);
        for rule in &resp.rules {
            if rule.rule_type != RuleType::Validation {
                continue;
            }
            let status = report::reported_status(&resp, rule, false);
            if !settings.results.contains(&status) {
                continue;
            }
            let message = cap_message(&rule.message, settings.message_limit);
            results.push(report::result_entry(
                &resp,
                rule,
                status,
                &message,
                &policy.annotations,
                0,
            ));
        }
    }
    if !set.cel.is_empty() {
        let filter = AdmissionFilter {
            kinds: CelKinds::Validating,
            failure_policy_fail: None,
            names: &[],
        };
        let pass = set
            .cel
            .validate_admission(&request, provider, filter, &|| false);
        for outcome in pass.outcomes.iter().filter(|o| o.background) {
            let resp = &outcome.response;
            for rule in &resp.rules {
                let status = report::reported_status(resp, rule, false);
                if !settings.results.contains(&status) {
                    continue;
                }
                let message = cap_message(&rule.message, settings.message_limit);
                results.push(report::result_entry(
                    resp,
                    rule,
                    status,
                    &message,
                    &BTreeMap::new(),
                    0,
                ));
            }
        }
    }
    let key = |m: &Map<String, Value>| {
        (
            m.get("policy").and_then(Value::as_str).map(str::to_string),
            m.get("rule").and_then(Value::as_str).map(str::to_string),
        )
    };
    results.sort_by_key(key);
    for r in &mut results {
        merge::mark(r, merge::BACKGROUND_SCAN);
    }
    results
}

/// The policies whose admission results a report keeps: those that do not run in the
/// background, those with verifyImages rules (checked at admission only: the scan has no
/// registry), and the CEL validating policies (admission writes only those that do not run in the
/// background).
pub fn admission_policies(set: &PolicySet) -> BTreeSet<String> {
    set.policies
        .iter()
        .filter(|p| !scans(p) || verifies_images(p))
        .map(|p| p.key())
        .chain(set.cel.validating_policy_refs())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        assert_eq!(cap_message("short", 10), "short");
        let long = "é".repeat(100);
        let cut = cap_message(&long, 50);
        assert!(cut.len() <= 50, "{}", cut.len());
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn report_results_are_parsed_and_unknown_words_refused() {
        let r = parse_results(&["fail".into(), "warn".into(), "error".into()]).unwrap();
        assert!(!r.contains(&RuleStatus::Pass));
        assert!(r.contains(&RuleStatus::Warn));
        assert!(parse_results(&["bad".into()]).unwrap_err().contains("bad"));
    }
}
