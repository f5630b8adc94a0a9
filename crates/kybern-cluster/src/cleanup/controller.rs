//! `kybern controller --enable cleanup`: under its own Lease, runs cleanup policies and
//! DeletingPolicies on their schedules and deletes objects whose `cleanup.kyverno.io/ttl` label
//! has expired. Lists are paged, deletions carry the policy's propagation policy, and each run
//! is recorded in the policy's `status.lastExecutionTime`, so a new leader neither repeats a run
//! nor misses one. Time comes from a [`Clock`], so tests can move it.

use super::policy::{CleanupPolicy, Wanted};
use super::ttl;
use crate::background::endpoint::ControllerMetrics;
use crate::context::ClusterContext;
use crate::discovery::Kinds;
use crate::error::ClusterError;
use crate::names::Names;
use crate::watch::{Cache, Trim};
use crate::webhooks::{KindResolver, Resource};
use arc_swap::ArcSwap;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PropagationPolicy,
};
use kybern_webhook::provider::RequestContext;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, watch as channel};
use tokio_util::sync::CancellationToken;

/// The time the controller goes by.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// What the cleanup part needs.
#[derive(Clone)]
pub struct CleanupOptions {
    pub kubeconfig: Option<PathBuf>,
    pub names: Names,
    pub identity: String,
    pub clock: Arc<dyn Clock>,
    /// How often schedules are checked (they have minute granularity).
    pub tick: Duration,
    /// How often objects with a TTL label are looked for (Kyverno: 1 minute).
    pub ttl_interval: Duration,
    /// Objects per list page.
    pub page_size: u32,
    /// Where the cleanup metrics go: the background part's, when it runs in the same process
    /// (its endpoint serves them); `None`: a registry of its own.
    pub metrics: Option<Arc<ControllerMetrics>>,
    /// Where `/health/*` and `/metrics` are served when no other part serves them.
    pub listen: Option<std::net::SocketAddr>,
}

impl CleanupOptions {
    /// The defaults, on the system clock.
    pub fn new(kubeconfig: Option<PathBuf>, names: Names, identity: String) -> Self {
        CleanupOptions {
            kubeconfig,
            names,
            identity,
            clock: Arc::new(SystemClock),
            tick: Duration::from_secs(10),
            ttl_interval: Duration::from_secs(60),
            page_size: 500,
            metrics: None,
            listen: None,
        }
    }
}

/// The running cleanup part.
pub struct Cleanup {
    pub leader: channel::Receiver<bool>,
    /// The address of the health and metrics endpoint, when served.
    pub endpoint: Option<std::net::SocketAddr>,
    stop: CancellationToken,
}

impl Cleanup {
    /// Stops the work; the Lease is released once the loop has ended.
    pub async fn shutdown(self) {
        self.stop.cancel();
        drop(self.leader);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The four policy kinds: (group, kind).
const POLICY_KINDS: [(&str, &str); 4] = [
    ("kyverno.io", "ClusterCleanupPolicy"),
    ("kyverno.io", "CleanupPolicy"),
    ("policies.kyverno.io", "DeletingPolicy"),
    ("policies.kyverno.io", "NamespacedDeletingPolicy"),
];

struct Worker {
    client: kube::Client,
    kinds: Arc<ArcSwap<Kinds>>,
    context: Arc<ClusterContext>,
    clock: Arc<dyn Clock>,
    page_size: u32,
    /// Work stops between pages when the Lease is lost.
    leader: channel::Receiver<bool>,
    metrics: Arc<ControllerMetrics>,
}

/// Starts the cleanup part.
pub async fn start(options: CleanupOptions) -> Result<Cleanup, ClusterError> {
    let stop = CancellationToken::new();
    let client = crate::serve::client(options.kubeconfig.as_deref()).await?;
    let lease_client = crate::serve::client(options.kubeconfig.as_deref()).await?;
    let kinds = Arc::new(ArcSwap::from_pointee(Kinds::discover(&client).await?));
    let leader = crate::leader::campaign(
        lease_client,
        &options.names.namespace,
        &options.names.cleanup_lease(),
        &options.identity,
        options.names.product(),
    )
    .await?;
    let changed = Arc::new(Notify::new());
    let mut policies = Vec::new();
    for (group, kind) in POLICY_KINDS {
        let served = kinds.load().find(group, kind, None).cloned();
        match served {
            Some(r) => policies.push((
                api_resource(&r),
                Cache::spawn(
                    client.clone(),
                    api_resource(&r),
                    None,
                    None,
                    Trim::Object,
                    Arc::clone(&changed),
                    &stop,
                ),
            )),
            None => {
                tracing::warn!(%group, %kind, "the cluster serves no such kind; its policies are not run")
            }
        }
    }
    let context = crate::background::controller::cluster_context(&client, &kinds, &stop);
    let metrics = options
        .metrics
        .unwrap_or_else(|| Arc::new(ControllerMetrics::new()));
    let endpoint = match options.listen {
        Some(addr) => {
            let mut caches: Vec<Cache> = policies.iter().map(|(_, c)| c.clone()).collect();
            caches.extend(context.caches());
            Some(
                crate::background::endpoint::serve(
                    addr,
                    Arc::clone(&metrics),
                    caches,
                    stop.clone(),
                )
                .await
                .map_err(|e| ClusterError::Server(format!("cannot listen on {addr}: {e}")))?,
            )
        }
        None => None,
    };
    let worker = Worker {
        client,
        kinds,
        context,
        clock: options.clock,
        page_size: options.page_size,
        leader: leader.clone(),
        metrics,
    };
    let task_stop = stop.clone();
    let task_leader = leader.clone();
    let (tick, ttl_interval) = (options.tick, options.ttl_interval);
    tokio::spawn(async move {
        tokio::select! {
            _ = task_stop.cancelled() => {}
            _ = run(worker, policies, task_leader, tick, ttl_interval) => {}
        }
    });
    Ok(Cleanup {
        leader,
        endpoint,
        stop,
    })
}

fn api_resource(r: &Resource) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&r.group, &r.version, &r.kind),
        &r.plural,
    )
}

async fn run(
    w: Worker,
    policies: Vec<(ApiResource, Cache)>,
    leader: channel::Receiver<bool>,
    tick: Duration,
    ttl_interval: Duration,
) {
    let mut last_ttl: Option<Instant> = None;
    // The last compile error reported per policy version, so it is logged once.
    let mut reported: HashMap<String, String> = HashMap::new();
    // Runs done here, in case the status written for them is not in the cache yet.
    let mut ran_at: HashMap<String, OffsetDateTime> = HashMap::new();
    loop {
        tokio::time::sleep(tick).await;
        let leads = *leader.borrow();
        w.metrics.cleanup_leader.set(i64::from(leads));
        if !leads {
            continue;
        }
        for (resource, cache) in &policies {
            for doc in cache.values() {
                let key = format!(
                    "{}/{}/{}",
                    resource.kind,
                    doc.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    doc.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
                let mut policy = match CleanupPolicy::compile(&doc) {
                    Ok(p) => p,
                    Err(e) => {
                        let version = doc
                            .pointer("/metadata/resourceVersion")
                            .map(Value::to_string)
                            .unwrap_or_default();
                        if reported.insert(key.clone(), version.clone()) != Some(version) {
                            tracing::warn!(policy = %key, error = %e, "cleanup policy not run");
                        }
                        continue;
                    }
                };
                if let Some(t) = ran_at.get(&key)
                    && policy.last_execution.is_none_or(|l| l < *t)
                {
                    policy.last_execution = Some(*t);
                }
                let now = w.clock.now();
                if policy.next_run().is_some_and(|at| at <= now) {
                    w.execute(&policy, resource, now).await;
                    ran_at.insert(key, now);
                }
            }
        }
        if last_ttl.is_none_or(|t| t.elapsed() >= ttl_interval) {
            last_ttl = Some(Instant::now());
            w.expire_ttl().await;
        }
    }
}

fn propagation(value: Option<&str>) -> Option<PropagationPolicy> {
    match value? {
        "Foreground" => Some(PropagationPolicy::Foreground),
        "Background" => Some(PropagationPolicy::Background),
        "Orphan" => Some(PropagationPolicy::Orphan),
        _ => None,
    }
}

impl Worker {
    /// The served resources `wanted` names, in their preferred versions.
    fn resources(&self, wanted: &Wanted) -> Vec<Resource> {
        let kinds = self.kinds.load();
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        kinds
            .resources()
            .iter()
            .filter(|r| r.preferred)
            .filter(|r| match wanted {
                Wanted::Kind(selector) => {
                    let s = kybern_engine::matching::parse_kind(selector);
                    r.kind == s.kind
                        && (s.group == "*" || s.group == r.group)
                        && (s.version == "*" || s.version == r.version)
                }
                Wanted::Rule {
                    groups,
                    versions,
                    resources,
                } => {
                    any(groups, &r.group)
                        && (versions.is_empty() || any(versions, &r.version))
                        && any(resources, &r.plural)
                }
            })
            .cloned()
            .collect()
    }

    /// One run of a policy: lists what it may select, page by page, deletes what it selects,
    /// and records the run.
    async fn execute(&self, policy: &CleanupPolicy, resource: &ApiResource, now: OffsetDateTime) {
        let started = Instant::now();
        let mut resources: Vec<Resource> = policy
            .wanted()
            .iter()
            .flat_map(|w| self.resources(w))
            .collect();
        resources.sort();
        resources.dedup();
        let params = DeleteParams {
            propagation_policy: propagation(policy.propagation.as_deref()),
            ..DeleteParams::default()
        };
        let mut deleted = 0usize;
        for r in resources {
            // A namespaced policy never reaches cluster-scoped kinds.
            if !policy.namespace.is_empty() && !r.namespaced {
                continue;
            }
            let namespace = (!policy.namespace.is_empty()).then_some(policy.namespace.as_str());
            let result = self
                .each_page(&r, namespace, None, |object| {
                    let labels = object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .and_then(|ns| self.context.labels_of(ns));
                    match policy.selects(object, labels, self.context.as_ref()) {
                        Ok(selected) => selected,
                        Err(e) => {
                            tracing::warn!(policy = %policy.name, error = %e, "cleanup condition failed; object kept");
                            false
                        }
                    }
                }, &params)
                .await;
            match result {
                Ok(n) => deleted += n,
                Err(e) => {
                    self.metrics.cleanup_failures.inc();
                    tracing::warn!(policy = %policy.name, kind = %r.kind, error = %e, "cleanup of a kind failed")
                }
            }
        }
        if !*self.leader.borrow() {
            // Cut short: the next leader runs it again, as it is not recorded.
            tracing::info!(policy = %policy.name, deleted, "cleanup Lease lost during a run");
            return;
        }
        self.metrics.cleanup_runs.inc();
        tracing::info!(policy = %policy.name, kind = policy.kind, deleted, elapsed = ?started.elapsed(), "cleanup policy ran");
        let Ok(stamp) = now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339) else {
            return;
        };
        let api: Api<DynamicObject> = if policy.namespace.is_empty() {
            Api::all_with(self.client.clone(), resource)
        } else {
            Api::namespaced_with(self.client.clone(), &policy.namespace, resource)
        };
        let status = json!({"status": {"lastExecutionTime": stamp}});
        if let Err(e) = api
            .patch_status(
                &policy.name,
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        {
            tracing::warn!(policy = %policy.name, error = %e, "lastExecutionTime not recorded");
        }
    }

    /// Lists `r` page by page (in `namespace` when given, with a label selector when given) and
    /// deletes each object `select` picks; returns how many were deleted.
    async fn each_page(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        labels: Option<&str>,
        mut select: impl FnMut(Value) -> bool,
        params: &DeleteParams,
    ) -> Result<usize, kube::Error> {
        let resource = api_resource(r);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) if r.namespaced => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        };
        let mut list_params = ListParams::default().limit(self.page_size);
        if let Some(l) = labels {
            list_params = list_params.labels(l);
        }
        let mut deleted = 0;
        loop {
            if !*self.leader.borrow() {
                return Ok(deleted);
            }
            let page = api.list(&list_params).await?;
            for item in page.items {
                let name = item.metadata.name.clone().unwrap_or_default();
                let ns = item.metadata.namespace.clone().unwrap_or_default();
                let Ok(mut object) = serde_json::to_value(item) else {
                    continue;
                };
                object["apiVersion"] = json!(resource.api_version);
                object["kind"] = json!(resource.kind);
                if !select(object) {
                    continue;
                }
                let target: Api<DynamicObject> = if r.namespaced {
                    Api::namespaced_with(self.client.clone(), &ns, &resource)
                } else {
                    Api::all_with(self.client.clone(), &resource)
                };
                match target.delete(&name, params).await {
                    Ok(_) => {
                        deleted += 1;
                        self.metrics.cleanup_deleted.inc();
                        tracing::info!(kind = %r.kind, namespace = %ns, %name, "deleted");
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        self.metrics.cleanup_failures.inc();
                        tracing::warn!(kind = %r.kind, namespace = %ns, %name, error = %e, "not deleted")
                    }
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => {
                    list_params = list_params.continue_token(&token);
                }
                _ => return Ok(deleted),
            }
        }
    }

    /// Deletes every object whose TTL label has expired, of every kind that can be listed.
    async fn expire_ttl(&self) {
        let now = self.clock.now();
        let resources: Vec<Resource> = self
            .kinds
            .load()
            .resources()
            .iter()
            .filter(|r| r.preferred)
            .cloned()
            .collect();
        for r in resources {
            // Each object says how to delete it.
            let mut per_object: Vec<(String, String, Option<PropagationPolicy>)> = Vec::new();
            let result = self
                .each_page(
                    &r,
                    None,
                    Some(ttl::LABEL),
                    |object| {
                        let text = |p: &str| {
                            object
                                .pointer(p)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        let value = object
                            .pointer("/metadata/labels")
                            .and_then(|l| l.get(ttl::LABEL))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let created = OffsetDateTime::parse(&text("/metadata/creationTimestamp"), &Rfc3339)
                            .unwrap_or(now);
                        match ttl::expiry(value, created) {
                            Ok(at) if at <= now => {
                                let how = object
                                    .pointer("/metadata/annotations")
                                    .and_then(|a| a.get(ttl::PROPAGATION))
                                    .and_then(Value::as_str);
                                per_object.push((
                                    text("/metadata/namespace"),
                                    text("/metadata/name"),
                                    propagation(how),
                                ));
                            }
                            Ok(_) => {}
                            Err(e) => tracing::debug!(kind = %r.kind, name = %text("/metadata/name"), error = %e, "TTL label not understood"),
                        }
                        // Deleted below, each with its own propagation policy.
                        false
                    },
                    &DeleteParams::default(),
                )
                .await;
            if let Err(e) = result {
                // Kinds that cannot be listed (no permission, not listable) are passed over.
                tracing::debug!(kind = %r.kind, error = %e, "not checked for TTL labels");
                continue;
            }
            let resource = api_resource(&r);
            for (ns, name, how) in per_object {
                let api: Api<DynamicObject> = if r.namespaced {
                    Api::namespaced_with(self.client.clone(), &ns, &resource)
                } else {
                    Api::all_with(self.client.clone(), &resource)
                };
                let params = DeleteParams {
                    propagation_policy: how,
                    ..DeleteParams::default()
                };
                match api.delete(&name, &params).await {
                    Ok(_) => {
                        self.metrics.cleanup_deleted.inc();
                        tracing::info!(kind = %r.kind, namespace = %ns, %name, "TTL expired: deleted")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        self.metrics.cleanup_failures.inc();
                        tracing::warn!(kind = %r.kind, namespace = %ns, %name, error = %e, "TTL expired but not deleted")
                    }
                }
            }
        }
    }
}
