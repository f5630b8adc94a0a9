//! Admission results into reports: `serve --cluster` puts the validate results of policies that
//! do not run in the background (which the scan cannot reproduce: they depend on the request)
//! into the resource's report, next to the scan's results. The request path only builds the
//! results and offers them to a bounded queue; a full queue drops them (counted), so reports
//! never slow or change a decision. Writes are paced and retried by [`Writer`].

use super::endpoint::ReportMetrics;
use super::merge::{self, Part};
use super::scan::{self, ScanSettings};
use super::shape::{self, ReportApi, Subject};
use super::writer::{Write, WriteSettings, Writer};
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
    for outcome in decision.outcomes.iter().filter(|o| !o.background) {
        let resp = &outcome.response;
        let annotations = outcome
            .policy
            .as_ref()
            .map_or(&no_annotations, |p| &p.annotations);
        let mut validates = false;
        for rule in &resp.rules {
            if rule.rule_type != RuleType::Validation {
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
        if decision.outcomes.iter().all(|o| o.background) {
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
