//! Admission results into reports: `serve --cluster` puts the validate and verifyImages results
//! of policies that do not run in the background (which the scan cannot reproduce: they depend on the request)
//! into the resource's report, next to the scan's results. The request path only builds the
//! results and offers them to a bounded queue; a full queue drops them (counted), so reports
//! never slow or change a decision. Writes are paced and retried by [`Writer`].

use super::endpoint::ReportMetrics;
use super::merge::{self, Part};
use super::scan::{self, ScanSettings};
use super::shape::{self, ReportApi, Subject};
use super::writer::{ReportSwitch, Write, WriteSettings, Writer};
use kybern_engine::report;
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::RuleType;
use kybern_webhook::AdmissionObserver;
use kybern_webhook::decision::{Decision, Endpoint};
use kybern_webhook::store::PolicySet;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The field manager of admission's report writes.
pub const FIELD_MANAGER: &str = "kybern-admission-reports";

/// Hands admission results to the report writer.
pub struct AdmissionReports {
    writer: Writer,
    api: ReportApi,
    settings: ScanSettings,
    metrics: Arc<ReportMetrics>,
    /// The admission-only policies of the last policy set seen, by its generation.
    known: Mutex<(u64, Arc<BTreeSet<String>>)>,
}

impl AdmissionReports {
    /// Starts the writer. Must be called inside the runtime.
    pub fn start(
        client: kube::Client,
        api: ReportApi,
        settings: ScanSettings,
        writes: WriteSettings,
        metrics: Arc<ReportMetrics>,
        switch: ReportSwitch,
        stop: CancellationToken,
    ) -> Self {
        // Dropped admission writes are not written again: the next admission of the resource is.
        let (dropped, _) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::spawn(
            client,
            FIELD_MANAGER.to_string(),
            writes,
            Arc::clone(&metrics),
            dropped,
            switch,
            stop,
        );
        AdmissionReports {
            writer,
            api,
            settings,
            metrics,
            known: Mutex::new((0, Arc::new(BTreeSet::new()))),
        }
    }

    fn known(&self, set: &PolicySet) -> Arc<BTreeSet<String>> {
        let Ok(mut k) = self.known.lock() else {
            return Arc::new(scan::admission_policies(set));
        };
        if k.0 != set.generation {
            *k = (set.generation, Arc::new(scan::admission_policies(set)));
        }
        Arc::clone(&k.1)
    }
}

/// The admission-only results of `decision`, and the policies they are from (a policy that
/// matched and has no result left still clears its earlier ones).
pub fn admission_results(
    decision: &Decision,
    settings: &ScanSettings,
) -> (BTreeSet<String>, Vec<Map<String, Value>>) {
    let mut policies = BTreeSet::new();
    let mut results = Vec::new();
    let no_annotations = BTreeMap::new();
    for outcome in &decision.outcomes {
        let resp = &outcome.response;
        // The scan reports background policies' validate rules; verifyImages rules are checked
        // at admission only.
        let wanted = |t: RuleType| match t {
            RuleType::Validation => !outcome.background,
            RuleType::ImageVerify => true,
            _ => false,
        };
        let annotations = outcome
            .policy
            .as_ref()
            .map_or(&no_annotations, |p| &p.annotations);
        let mut validates = false;
        for rule in &resp.rules {
            if !wanted(rule.rule_type) {
                continue;
            }
            validates = true;
            let status = report::reported_status(resp, rule, false);
            if !settings.results.contains(&status) {
                continue;
            }
            let message = scan::cap_message(&rule.message, settings.message_limit);
            let mut entry = report::result_entry(resp, rule, status, &message, annotations, 0);
            merge::mark(&mut entry, merge::ADMISSION_REVIEW);
            results.push(entry);
        }
        if validates {
            policies.insert(report::policy_ref(resp));
        }
    }
    (policies, results)
}

impl AdmissionObserver for AdmissionReports {
    fn admitted(
        &self,
        _uid: &str,
        request: &Arc<AdmissionRequest>,
        set: &Arc<PolicySet>,
        endpoint: Endpoint,
        decision: &Decision,
    ) {
        // A CREATE's object has its UID only at validating admission, and the report is
        // named by it.
        if endpoint != Endpoint::Validate
            || !matches!(request.operation, Operation::Create | Operation::Update)
        {
            return;
        }
        let admission_only = |o: &kybern_webhook::decision::PolicyOutcome| {
            !o.background
                || o.response
                    .rules
                    .iter()
                    .any(|r| r.rule_type == RuleType::ImageVerify)
        };
        if !decision.outcomes.iter().any(admission_only) {
            return;
        }
        let Some(subject) = Subject::of(&request.object) else {
            return;
        };
        let (policies, results) = admission_results(decision, &self.settings);
        if policies.is_empty() {
            return;
        }
        let mut report = shape::report(
            self.api,
            &subject,
            results,
            super::hash::ResultsHash(0),
            now_seconds(),
        );
        // The results hash is the scan's, of its own results.
        if let Some(a) = report
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(super::hash::ANNOTATION);
        }
        let write = Write::Merge {
            report,
            part: Part::Admission {
                policies,
                known: self.known(set),
            },
        };
        if !self.writer.try_send(write) {
            self.metrics.dropped.inc();
        }
    }
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybern_engine::response::{EngineResponse, RuleResult, RuleStatus};
    use kybern_webhook::decision::PolicyOutcome;
    use std::time::Duration;

    fn outcome(policy: &str, background: bool, rules: &[(&str, RuleType)]) -> PolicyOutcome {
        PolicyOutcome {
            policy: None,
            response: EngineResponse {
                policy_name: policy.into(),
                policy_namespace: String::new(),
                policy_kind: "ClusterPolicy".into(),
                unscored: false,
                rules: rules
                    .iter()
                    .map(|(n, t)| RuleResult::new(*n, *t, RuleStatus::Fail, "m"))
                    .collect(),
                resource: Arc::new(Value::Null),
                patched_resource: Arc::new(Value::Null),
            },
            enforce: false,
            background,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn admission_reports_admission_only_validate_rules_and_every_verify_images_rule() {
        let decision = Decision {
            allowed: true,
            outcomes: vec![
                outcome("scanned", true, &[("v", RuleType::Validation)]),
                outcome(
                    "images",
                    true,
                    &[("v", RuleType::Validation), ("i", RuleType::ImageVerify)],
                ),
                outcome("admission-only", false, &[("v", RuleType::Validation)]),
                outcome("mutates", false, &[("m", RuleType::Mutation)]),
            ],
            ..Decision::default()
        };
        let (policies, results) = admission_results(&decision, &ScanSettings::default());
        assert_eq!(
            policies.into_iter().collect::<Vec<_>>(),
            vec!["admission-only".to_string(), "images".to_string()]
        );
        let got: Vec<(String, String, String)> = results
            .iter()
            .map(|r| {
                (
                    r["policy"].as_str().unwrap().into(),
                    r["rule"].as_str().unwrap().into(),
                    r["properties"]["process"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("images".into(), "i".into(), merge::ADMISSION_REVIEW.into()),
                (
                    "admission-only".into(),
                    "v".into(),
                    merge::ADMISSION_REVIEW.into()
                ),
            ]
        );
    }
}
