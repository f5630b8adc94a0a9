//! Policies from the API into the webhook's policy store: one watch per policy kind the cluster
//! serves, and after every change (debounced) the store is made to hold exactly the watched
//! objects. Also the Kyverno-format ConfigMap whose filters admit requests without evaluation.

use crate::discovery::Kinds;
use crate::kinds::{KINDS, Role};
use crate::watch::{Cache, Trim};
use crate::webhooks::policy_key;
use arc_swap::ArcSwap;
use kube::api::{ApiResource, GroupVersionKind};
use kybern_webhook::filters::AdmissionFilters;
use kybern_webhook::store::{PolicyStore, SourceObject};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Kinds of the API server's own admission policies, read so that `kybern serve` decides as the
/// kyverno CLI does when it is called on paths that serve every kind.
const ADMISSION_POLICY_KINDS: [&str; 4] = [
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
];

/// Debounce between a change and the store's rebuild: a burst of edits compiles once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The policy kinds to watch, at the version the cluster serves; kinds it does not serve are
/// returned by name (their CRD is not installed).
pub fn policy_resources(kinds: &Kinds) -> (Vec<ApiResource>, Vec<String>) {
    let mut wanted: Vec<(&str, &str, Option<&str>)> = KINDS
        .iter()
        .filter(|k| k.role == Role::Policy)
        .map(|k| (k.group, k.kind, Some(k.storage_version())))
        .collect();
    wanted.extend(
        ADMISSION_POLICY_KINDS
            .iter()
            .map(|k| ("admissionregistration.k8s.io", *k, None)),
    );
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (group, kind, version) in wanted {
        match kinds.find(group, kind, version) {
            Some(r) => {
                let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
                found.push(ApiResource::from_gvk_with_plural(&gvk, &r.plural));
            }
            None => missing.push(format!("{kind}.{group}")),
        }
    }
    (found, missing)
}

/// Defaults given to policies that leave a field unset, applied before compilation so the
/// store and the webhook configurations see the same policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyDefaults {
    /// `Fail` or `Ignore` for policies that set no failurePolicy (Kyverno's default is `Fail`).
    pub failure_policy: Option<String>,
}

impl PolicyDefaults {
    fn apply(&self, object: &mut Value) {
        let Some(fp) = &self.failure_policy else {
            return;
        };
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let set = spec.contains_key("failurePolicy")
            || spec
                .get("webhookConfiguration")
                .is_some_and(|w| w.get("failurePolicy").is_some());
        if !set {
            spec.insert("failurePolicy".into(), Value::String(fp.clone()));
        }
    }
}

/// The policy watches and the task that keeps the store in step with them.
pub struct PolicySource {
    pub caches: Vec<Cache>,
    defaults: PolicyDefaults,
    /// The store's generation after each sync (the leader rebuilds webhooks on change).
    pub synced: watch::Receiver<u64>,
}

impl PolicySource {
    /// Starts watching `resources` and feeding `store`.
    pub fn spawn(
        client: &kube::Client,
        resources: Vec<ApiResource>,
        store: Arc<PolicyStore>,
        defaults: PolicyDefaults,
        stop: &CancellationToken,
    ) -> PolicySource {
        let changed = Arc::new(Notify::new());
        let caches: Vec<Cache> = resources
            .into_iter()
            .map(|r| {
                Cache::spawn(
                    client.clone(),
                    r,
                    None,
                    None,
                    Trim::Object,
                    Arc::clone(&changed),
                    stop,
                )
            })
            .collect();
        let (tx, rx) = watch::channel(0u64);
        // With no policy kind served there is no event to wait for: sync the empty set now.
        changed.notify_one();
        let task_caches = caches.clone();
        let task_defaults = defaults.clone();
        let task_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = task_stop.cancelled() => break,
                    _ = changed.notified() => {}
                }
                tokio::time::sleep(DEBOUNCE).await;
                let complete = task_caches.iter().all(|c| c.health.synced());
                let objects = objects_of(&task_caches, &task_defaults);
                let s = Arc::clone(&store);
                let swapped =
                    tokio::task::spawn_blocking(move || s.sync_objects(objects, complete))
                        .await
                        .unwrap_or(false);
                if swapped || complete {
                    tx.send_replace(store.snapshot().generation);
                }
            }
        });
        PolicySource {
            caches,
            defaults,
            synced: rx,
        }
    }

    /// Every watched policy object, by key.
    pub fn objects(&self) -> Vec<(String, Value)> {
        objects_of(&self.caches, &self.defaults)
            .into_iter()
            .map(|o| (o.key, o.object))
            .collect()
    }
}

fn objects_of(caches: &[Cache], defaults: &PolicyDefaults) -> Vec<SourceObject> {
    caches
        .iter()
        .flat_map(Cache::values)
        .map(|mut object| {
            defaults.apply(&mut object);
            object
        })
        .map(|object| SourceObject {
            key: policy_key(&object),
            version: object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            object,
        })
        .collect()
}

/// Watches the Kyverno-format ConfigMap and keeps `filters` to what it says: no ConfigMap means
/// no filters; a version that does not parse is reported and the last good one stays.
pub fn spawn_config_map(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    filters: Arc<ArcSwap<AdmissionFilters>>,
    loaded: Arc<Notify>,
    stop: &CancellationToken,
) -> Cache {
    let changed = Arc::new(Notify::new());
    let gvk = GroupVersionKind::gvk("", "v1", "ConfigMap");
    let cache = Cache::spawn(
        client.clone(),
        ApiResource::from_gvk_with_plural(&gvk, "configmaps"),
        Some(namespace),
        Some(format!("metadata.name={name}")),
        Trim::Object,
        Arc::clone(&changed),
        stop,
    );
    let task_cache = cache.clone();
    let task_stop = stop.clone();
    let label = format!("{namespace}/{name}");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = task_stop.cancelled() => break,
                _ = changed.notified() => {}
            }
            let doc = task_cache.values().into_iter().next();
            match doc.map(|d| AdmissionFilters::from_config_map(&d)) {
                None => filters.store(Arc::new(AdmissionFilters::default())),
                Some(Ok(f)) => {
                    filters.store(Arc::new(f));
                    tracing::info!(config_map = %label, "configuration loaded");
                }
                Some(Err(e)) => tracing::warn!(config_map = %label, error = %e,
                    "configuration does not load; the last good version stays in force"),
            }
            loaded.notify_one();
        }
    });
    cache
}
