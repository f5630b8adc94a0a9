//! Report writes, bounded: one task writes them in order, paced to a rate, each retried with a
//! doubling wait on errors that may pass (429, 5xx, connection failures) and dropped after its
//! attempts or at once on errors that will not (413 too large, 422 invalid). Consecutive
//! failures slow every later write as well, so an API server in trouble sees a trickle, never
//! a storm. A dropped write is reported back so the resource is written again at its next scan.

use super::endpoint::ReportMetrics;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How writes are paced and retried.
#[derive(Debug, Clone)]
pub struct WriteSettings {
    /// Writes per second at most.
    pub per_second: u32,
    /// Attempts per write, the first included.
    pub attempts: u32,
    /// The first wait after a failure; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Writes waiting at most; the scan waits when they are this many.
    pub queue: usize,
}

impl Default for WriteSettings {
    fn default() -> Self {
        WriteSettings {
            per_second: 50,
            attempts: 4,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            queue: 256,
        }
    }
}

/// One write.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create or replace a report (server-side apply).
    Apply(Value),
    /// Delete the report of a resource.
    Delete {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

impl Write {
    fn target(&self) -> (&str, String, String) {
        match self {
            Write::Apply(v) => {
                let s = |p: &str| {
                    v.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let kind = match v.get("kind").and_then(Value::as_str) {
                    Some("ClusterPolicyReport") => "ClusterPolicyReport",
                    Some("Report") => "Report",
                    Some("ClusterReport") => "ClusterReport",
                    _ => "PolicyReport",
                };
                (kind, s("/metadata/namespace"), s("/metadata/name"))
            }
            Write::Delete {
                kind,
                namespace,
                name,
            } => (kind, namespace.clone(), name.clone()),
        }
    }
}

/// The API resource of a report kind (`PolicyReport`, `ClusterPolicyReport`, `Report`,
/// `ClusterReport`).
pub fn report_resource(kind: &str) -> ApiResource {
    let (group, version, kind, plural) = match kind {
        "ClusterPolicyReport" => (
            "wgpolicyk8s.io",
            "v1alpha2",
            "ClusterPolicyReport",
            "clusterpolicyreports",
        ),
        "Report" => ("openreports.io", "v1alpha1", "Report", "reports"),
        "ClusterReport" => (
            "openreports.io",
            "v1alpha1",
            "ClusterReport",
            "clusterreports",
        ),
        _ => (
            "wgpolicyk8s.io",
            "v1alpha2",
            "PolicyReport",
            "policyreports",
        ),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The sending side: queue writes here.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Write>,
}

impl Writer {
    /// Starts the writing task. Names of reports whose write was dropped go to `dropped`.
    pub fn spawn(
        client: kube::Client,
        field_manager: String,
        settings: WriteSettings,
        metrics: Arc<ReportMetrics>,
        dropped: mpsc::UnboundedSender<String>,
        stop: CancellationToken,
    ) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Write>(settings.queue.max(1));
        tokio::spawn(async move {
            let spacing = Duration::from_secs(1) / settings.per_second.max(1);
            let mut next = Instant::now();
            // Consecutive writes that ended in failure: every later write waits the longer.
            let mut failing: u32 = 0;
            loop {
                let write = tokio::select! {
                    _ = stop.cancelled() => break,
                    w = rx.recv() => match w { Some(w) => w, None => break },
                };
                let mut attempt = 0;
                loop {
                    let penalty = backoff(&settings, failing);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep_until(next + penalty) => {}
                    }
                    next = Instant::now() + spacing;
                    attempt += 1;
                    metrics.writes.inc();
                    match send(&client, &field_manager, &write).await {
                        Ok(()) => {
                            failing = 0;
                            break;
                        }
                        Err(e) => {
                            metrics.write_errors.inc();
                            failing = failing.saturating_add(1);
                            let (_, namespace, name) = write.target();
                            if !e.retryable || attempt >= settings.attempts {
                                metrics.dropped.inc();
                                tracing::warn!(report = %name, %namespace, attempts = attempt, error = %e.message, "report write dropped");
                                let _ = dropped.send(name);
                                break;
                            }
                            tracing::debug!(report = %name, attempt, error = %e.message, "report write failed; retrying");
                        }
                    }
                }
            }
        });
        Writer { tx }
    }

    /// Queues a write; waits while the queue is full.
    pub async fn send(&self, write: Write) {
        let _ = self.tx.send(write).await;
    }
}

/// The wait before a write after `failing` consecutive failures: 0, then doubling from the
/// first backoff up to the most.
fn backoff(settings: &WriteSettings, failing: u32) -> Duration {
    if failing == 0 {
        return Duration::ZERO;
    }
    settings
        .first_backoff
        .saturating_mul(2u32.saturating_pow(failing.saturating_sub(1).min(16)))
        .min(settings.max_backoff)
}

struct WriteError {
    retryable: bool,
    message: String,
}

async fn send(client: &kube::Client, field_manager: &str, write: &Write) -> Result<(), WriteError> {
    let (kind, namespace, name) = write.target();
    let resource = report_resource(kind);
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), &namespace, &resource)
    };
    let result = match write {
        Write::Apply(body) => api
            .patch(
                &name,
                &PatchParams::apply(field_manager).force(),
                &Patch::Apply(body),
            )
            .await
            .map(|_| ()),
        Write::Delete { .. } => match api.delete(&name, &DeleteParams::default()).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other.map(|_| ()),
        },
    };
    result.map_err(|e| WriteError {
        retryable: match &e {
            // Too large, invalid, forbidden, gone: the same write fails the same way again.
            kube::Error::Api(s) => s.code == 429 || s.code >= 500,
            _ => true,
        },
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_first_backoff_up_to_the_most() {
        let s = WriteSettings {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..WriteSettings::default()
        };
        assert_eq!(backoff(&s, 0), Duration::ZERO);
        assert_eq!(backoff(&s, 1), Duration::from_millis(100));
        assert_eq!(backoff(&s, 3), Duration::from_millis(400));
        assert_eq!(backoff(&s, 40), Duration::from_secs(1));
    }
}
