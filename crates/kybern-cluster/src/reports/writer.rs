//! Report writes, bounded: one task writes them in order, paced to a rate, each retried with a
//! doubling wait on errors that may pass (429, 5xx, connection failures) and dropped after its
//! attempts or at once on errors that will not (413 too large, 422 invalid). Consecutive
//! failures slow every later write as well, so an API server in trouble sees a trickle, never
//! a storm. A dropped write is reported back so the resource is written again at its next scan.

use super::endpoint::ReportMetrics;
use super::hash;
use super::merge::{self, Part};
use crate::watch::Cache;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams, Preconditions,
};
use serde_json::{Value, json};
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
    /// A resource's report: its results replace the `part` they belong to and the rest of the
    /// report's results stay (see [`merge`]). The report is created when absent and deleted
    /// when no result is left.
    Merge { report: Value, part: Part },
    /// Delete the report of a resource that is gone.
    Delete {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

impl Write {
    fn target(&self) -> (&str, String, String) {
        match self {
            Write::Merge { report: v, .. } => {
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

/// Report writes can be stopped while kybern runs, as when etcd is in trouble: `reports: "off"`
/// in kybern's ConfigMap (the one of `--config-map`) turns every write into a drop (counted; the
/// scan writes the resource again after they are back on).
#[derive(Clone, Default)]
pub struct ReportSwitch {
    config_map: Option<(Cache, String, String)>,
}

/// The ConfigMap key of the switch.
pub const SWITCH_KEY: &str = "reports";

impl ReportSwitch {
    /// Read from the ConfigMap `namespace/name` in `cache`.
    pub fn from_config_map(cache: Cache, namespace: &str, name: &str) -> Self {
        ReportSwitch {
            config_map: Some((cache, namespace.to_string(), name.to_string())),
        }
    }

    /// False while the ConfigMap says `reports: "off"`.
    pub fn is_on(&self) -> bool {
        let Some((cache, namespace, name)) = &self.config_map else {
            return true;
        };
        cache
            .get(namespace, name)
            .and_then(|cm| {
                cm.pointer(&format!("/data/{SWITCH_KEY}"))
                    .and_then(Value::as_str)
                    .map(|v| !v.trim().eq_ignore_ascii_case("off"))
            })
            .unwrap_or(true)
    }
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
        switch: ReportSwitch,
        stop: CancellationToken,
    ) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Write>(settings.queue.max(1));
        tokio::spawn(async move {
            let spacing = Duration::from_secs(1) / settings.per_second.max(1);
            let mut next = Instant::now();
            // Consecutive writes that ended in failure: every later write waits the longer.
            let mut failing: u32 = 0;
            let mut writing = true;
            loop {
                let write = tokio::select! {
                    _ = stop.cancelled() => break,
                    w = rx.recv() => match w { Some(w) => w, None => break },
                };
                let on = switch.is_on();
                if on != writing {
                    writing = on;
                    tracing::warn!(
                        key = SWITCH_KEY,
                        writing,
                        "report writes switched by the ConfigMap"
                    );
                }
                if !on {
                    metrics.dropped.inc();
                    let _ = dropped.send(write.target().2);
                    continue;
                }
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

    /// Queues a write unless the queue is full; false when it was not queued.
    pub fn try_send(&self, write: Write) -> bool {
        self.tx.try_send(write).is_ok()
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

/// Times a write reads the report again after another writer changed it in between.
const CONFLICT_ATTEMPTS: usize = 5;

async fn send(client: &kube::Client, field_manager: &str, write: &Write) -> Result<(), WriteError> {
    let (kind, namespace, name) = write.target();
    let resource = report_resource(kind);
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), &namespace, &resource)
    };
    let result = match write {
        Write::Merge { report, part } => {
            let mut outcome = Ok(());
            for _ in 0..CONFLICT_ATTEMPTS {
                outcome = merge_once(&api, field_manager, &name, report, part).await;
                match &outcome {
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => continue,
                    _ => break,
                }
            }
            outcome
        }
        Write::Delete { .. } => match api.delete(&name, &DeleteParams::default()).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other.map(|_| ()),
        },
    };
    result.map_err(|e| WriteError {
        retryable: match &e {
            // Too large, invalid, forbidden, gone: the same write fails the same way again.
            kube::Error::Api(s) => s.code == 429 || s.code >= 500 || s.code == 409,
            _ => true,
        },
        message: e.to_string(),
    })
}

/// Reads the report, merges, and writes it back under its resourceVersion (a 409 means another
/// writer came in between: read again).
async fn merge_once(
    api: &Api<DynamicObject>,
    field_manager: &str,
    name: &str,
    incoming: &Value,
    part: &Part,
) -> Result<(), kube::Error> {
    let existing = api
        .get_opt(name)
        .await?
        .and_then(|o| serde_json::to_value(o).ok());
    let results_of = |v: &Value| {
        v.get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let merged = merge::merge(
        &existing.as_ref().map(results_of).unwrap_or_default(),
        &results_of(incoming),
        part,
    );
    let params = PostParams {
        dry_run: false,
        field_manager: Some(field_manager.to_string()),
    };
    let Some(existing) = existing else {
        if merged.is_empty() {
            return Ok(());
        }
        let mut body = incoming.clone();
        set_results(&mut body, merged);
        let object: DynamicObject =
            serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
        return api.create(&params, &object).await.map(|_| ());
    };
    let version = existing
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if merged.is_empty() {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: version,
                uid: None,
            }),
            ..DeleteParams::default()
        };
        return match api.delete(name, &params).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other.map(|_| ()),
        };
    }
    if results_of(&existing) == merged && !matches!(part, Part::Background { .. }) {
        return Ok(());
    }
    let mut body = existing;
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if matches!(part, Part::Background { .. }) {
        // The controller's write owns the report's shape and the hash of its own results.
        for field in ["scope", "source"] {
            if let Some(v) = incoming.get(field) {
                body[field] = v.clone();
            }
        }
        for field in ["labels", "ownerReferences"] {
            if let Some(v) = incoming.pointer(&format!("/metadata/{field}")) {
                body["metadata"][field] = v.clone();
            }
        }
        let hash = incoming
            .pointer(&format!(
                "/metadata/annotations/{}",
                escape(hash::ANNOTATION)
            ))
            .cloned();
        let annotations = body["metadata"]
            .as_object_mut()
            .map(|m| m.entry("annotations").or_insert_with(|| json!({})));
        if let Some(Value::Object(a)) = annotations {
            match hash {
                Some(h) => {
                    a.insert(hash::ANNOTATION.into(), h);
                }
                None => {
                    a.remove(hash::ANNOTATION);
                }
            }
        }
    }
    set_results(&mut body, merged);
    let object: DynamicObject = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
    api.replace(name, &params, &object).await.map(|_| ())
}

/// A JSON pointer token for `key`.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn set_results(report: &mut Value, results: Vec<Value>) {
    report["summary"] = merge::summary(&results);
    report["results"] = Value::Array(results);
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
