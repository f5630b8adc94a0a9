//! The controller's plain-HTTP endpoint: liveness, readiness (every watch synced) and metrics
//! (pending and failed UpdateRequests, cleanup runs and deletions, leadership), for probes and
//! Prometheus.

use crate::watch::Cache;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The controller's metrics.
#[derive(Default)]
pub struct ControllerMetrics {
    registry: Registry,
    /// UpdateRequests waiting to be done.
    pub pending: Gauge,
    /// UpdateRequests given up after their retries.
    pub failed: Gauge,
    /// 1 on the replica holding the background Lease.
    pub leader: Gauge,
    /// Metric families of another part in the same process (policy reports), served with
    /// these; the text has no closing `# EOF` line.
    pub also: std::sync::OnceLock<Arc<dyn Fn() -> String + Send + Sync>>,
    /// Runs of cleanup policies and DeletingPolicies.
    pub cleanup_runs: Counter,
    /// Objects deleted by cleanup policies, DeletingPolicies and TTL labels.
    pub cleanup_deleted: Counter,
    /// Deletions and lists of cleanup that failed.
    pub cleanup_failures: Counter,
    /// 1 on the replica holding the cleanup Lease.
    pub cleanup_leader: Gauge,
}

impl ControllerMetrics {
    pub fn new() -> Self {
        let mut m = ControllerMetrics::default();
        m.registry.register(
            "kybern_update_requests_pending",
            "Generate UpdateRequests waiting to be done",
            m.pending.clone(),
        );
        m.registry.register(
            "kybern_update_requests_failed",
            "Generate UpdateRequests kept as Failed after their retries",
            m.failed.clone(),
        );
        m.registry.register(
            "kybern_background_leader",
            "1 while this replica holds the background Lease",
            m.leader.clone(),
        );
        m.registry.register(
            "kybern_cleanup_runs",
            "Runs of cleanup policies and DeletingPolicies",
            m.cleanup_runs.clone(),
        );
        m.registry.register(
            "kybern_cleanup_deleted",
            "Objects deleted by cleanup policies, DeletingPolicies and TTL labels",
            m.cleanup_deleted.clone(),
        );
        m.registry.register(
            "kybern_cleanup_failures",
            "Cleanup lists and deletions that failed",
            m.cleanup_failures.clone(),
        );
        m.registry.register(
            "kybern_cleanup_leader",
            "1 while this replica holds the cleanup Lease",
            m.cleanup_leader.clone(),
        );
        m
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        if let Some(also) = self.also.get() {
            // One exposition: the other part's families go before the single closing `# EOF`.
            let mine = out.strip_suffix("# EOF\n").unwrap_or(&out);
            out = format!("{mine}{}# EOF\n", also());
        }
        out
    }
}

/// Serves `/health/liveness`, `/health/readiness` and `/metrics` on `listen` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<ControllerMetrics>,
    caches: Vec<Cache>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    crate::endpoint::serve(
        listen,
        Arc::new(move || metrics.render()),
        caches,
        stop,
        "controller",
    )
    .await
}
