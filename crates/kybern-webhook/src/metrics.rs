//! Prometheus metrics with Kyverno's names and labels, so existing dashboards work.
//! The engine records nothing; the server records what the engine returned.

use crate::metric_handles::Handles;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Label pairs, for metrics of our own recorded rarely.
pub type LabelSet = Vec<(String, String)>;

/// A label value shared between the series of one request (cloning it does not allocate).
pub type Shared = Arc<String>;

/// Labels of `kyverno_admission_requests_total` and `kyverno_admission_review_duration_seconds`,
/// in Kyverno's order.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub resource_kind: Shared,
    pub resource_namespace: Shared,
    pub resource_request_operation: &'static str,
    pub request_allowed: bool,
}

/// Labels of `kyverno_policy_results_total` and `kyverno_policy_execution_duration_seconds`,
/// in Kyverno's order. Built once per rule on every request, so only the policy and rule names
/// are new values; the rest are static or shared per request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy_validation_mode: &'static str,
    pub policy_type: &'static str,
    pub policy_background_mode: bool,
    pub policy_namespace: Shared,
    pub policy_name: Shared,
    pub resource_kind: Shared,
    pub resource_namespace: Shared,
    pub resource_request_operation: &'static str,
    pub rule_name: Shared,
    pub rule_result: &'static str,
    pub rule_type: &'static str,
    pub rule_execution_cause: &'static str,
    pub dry_run: bool,
}

fn duration_histogram() -> Histogram {
    // Kyverno's default bucket boundaries (seconds).
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0,
    ])
}

/// All metrics of the server.
pub struct Metrics {
    registry: Registry,
    pub admission_requests: Family<RequestLabels, Counter>,
    pub admission_review_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub policy_results: Family<PolicyLabels, Counter>,
    pub policy_execution_duration: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    pub policy_load_errors: Family<LabelSet, Counter>,
    pub policies_loaded: Gauge,
    pub policy_set_generation: Gauge,
    pub evaluation_timeouts: Counter,
    /// Seconds the longest-failing watch of the cluster mode has been failing (0: all healthy).
    pub watch_stale_seconds: Gauge,
    /// 1 while this replica holds the cluster mode's leader Lease.
    pub leader: Gauge,
    pub policy_result_handles: Handles<Counter>,
    pub policy_duration_handles: Handles<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let admission_requests = Family::<RequestLabels, Counter>::default();
        let admission_review_duration =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let policy_results = Family::<PolicyLabels, Counter>::default();
        let policy_execution_duration =
            Family::<PolicyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let policy_load_errors = Family::<LabelSet, Counter>::default();
        let policies_loaded = Gauge::default();
        let policy_set_generation = Gauge::default();
        let evaluation_timeouts = Counter::default();
        registry.register(
            "kyverno_admission_requests",
            "Admission requests handled",
            admission_requests.clone(),
        );
        registry.register(
            "kyverno_admission_review_duration_seconds",
            "Time to answer an admission review",
            admission_review_duration.clone(),
        );
        registry.register(
            "kyverno_policy_results",
            "Rule results of policies applied in admission",
            policy_results.clone(),
        );
        registry.register(
            "kyverno_policy_execution_duration_seconds",
            "Time to evaluate one policy on one request (recorded once per policy, with the rule labels empty)",
            policy_execution_duration.clone(),
        );
        registry.register(
            "kybern_policy_load_errors",
            "Policy files whose new version did not load (their last good version stays in force)",
            policy_load_errors.clone(),
        );
        registry.register(
            "kybern_policies_loaded",
            "Policies in the current policy set",
            policies_loaded.clone(),
        );
        registry.register(
            "kybern_policy_set_generation",
            "Generation of the current policy set",
            policy_set_generation.clone(),
        );
        registry.register(
            "kybern_evaluation_timeouts",
            "Admission reviews answered by failurePolicy because evaluation missed the deadline",
            evaluation_timeouts.clone(),
        );
        let watch_stale_seconds = Gauge::default();
        registry.register(
            "kybern_watch_stale_seconds",
            "Seconds the longest-failing watch of the API has been failing (0 when every watch is healthy)",
            watch_stale_seconds.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "kybern_leader",
            "1 while this replica holds the leader Lease (writes webhook configurations, certificates and policy status)",
            leader.clone(),
        );
        Metrics {
            registry,
            watch_stale_seconds,
            leader,
            policy_result_handles: Handles::default(),
            policy_duration_handles: Handles::default(),
            admission_requests,
            admission_review_duration,
            policy_results,
            policy_execution_duration,
            policy_load_errors,
            policies_loaded,
            policy_set_generation,
            evaluation_timeouts,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

/// Builds a label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}
