//! The reports controller's metrics, and its plain-HTTP endpoint (liveness, readiness: every
//! policy and context watch synced; `/metrics`) when it runs without the background controller
//! (beside it, its metrics join that endpoint's).

use crate::watch::Cache;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The reports controller's metrics.
#[derive(Default)]
pub struct ReportMetrics {
    registry: Registry,
    /// Report write requests sent (retries included).
    pub writes: Counter,
    /// Report write requests that failed.
    pub write_errors: Counter,
    /// Report writes given up.
    pub dropped: Counter,
    /// Resources evaluated.
    pub scanned: Counter,
    /// Resources with a report, as the controller knows them.
    pub reports: Gauge,
    /// 1 on the replica holding the reports Lease.
    pub leader: Gauge,
}

impl ReportMetrics {
    pub fn new() -> Self {
        let mut m = ReportMetrics::default();
        let r = &mut m.registry;
        r.register(
            "kybern_report_writes",
            "Report write requests sent, retries included",
            m.writes.clone(),
        );
        r.register(
            "kybern_report_write_errors",
            "Report write requests that failed",
            m.write_errors.clone(),
        );
        r.register(
            "kybern_report_writes_dropped",
            "Report writes given up after their attempts",
            m.dropped.clone(),
        );
        r.register(
            "kybern_report_resources_scanned",
            "Resources evaluated by the background scan",
            m.scanned.clone(),
        );
        r.register(
            "kybern_reports",
            "Resources with a policy report",
            m.reports.clone(),
        );
        r.register(
            "kybern_reports_leader",
            "1 while this replica holds the reports Lease",
            m.leader.clone(),
        );
        m
    }

    /// The metric families without the closing `# EOF` line, for another endpoint to serve
    /// with its own.
    pub fn families(&self) -> String {
        let text = self.render();
        text.strip_suffix("# EOF\n").unwrap_or(&text).to_string()
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

/// Serves `/health/liveness`, `/health/readiness` and `/metrics` on `listen` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<ReportMetrics>,
    caches: Vec<Cache>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    crate::endpoint::serve(
        listen,
        Arc::new(move || metrics.render()),
        caches,
        stop,
        "reports",
    )
    .await
}
