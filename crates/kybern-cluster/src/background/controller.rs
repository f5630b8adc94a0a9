//! `kybern controller --enable background`: under its own Lease, processes the generate
//! UpdateRequests that admission queued (bounded retries; finished ones are deleted, failed ones
//! kept with their message), and keeps `synchronize: true` objects equal to their rule: a
//! generated object that is edited or deleted is written again.

use super::generate::{self, Generated};
use super::mutate_existing;
use super::permissions;
use super::queue;
use super::update_request::{self, GenerateWork, RequestType};

mod cel_mutate;
mod clone_sources;
mod generated_kinds;
mod regenerate;
mod with_trigger;
use crate::context::{CallLimits, ClusterContext};
use crate::discovery::Kinds;
use crate::error::ClusterError;
use crate::global_context::GlobalContext;
use crate::names::Names;
use crate::source::{self, PolicyDefaults, PolicySource};
use crate::watch::{Cache, Trim};
use crate::webhooks::KindResolver;
use arc_swap::ArcSwap;
use futures::StreamExt;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kybern_engine::cel::generating_policy::{GenerateResult, GeneratingPolicy};
use kybern_engine::policy::{Policy, RuleBody};
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_webhook::admission::WireRequest;
use kybern_webhook::provider::RequestContext;
use kybern_webhook::store::PolicyStore;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch as channel};
use tokio_util::sync::CancellationToken;

/// Attempts before an UpdateRequest is marked Failed; between them the wait doubles from
/// [`FIRST_RETRY`] (a policy the controller has not seen yet, an API hiccup, pass on retry).
const MAX_ATTEMPTS: u64 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_secs(2);
/// UpdateRequests processed per pass, oldest first; restores and policy changes are seen between
/// passes, and only a batch is held as JSON at a time.
const BATCH: usize = 100;
/// How often the background permissions of unchanged policies are checked again (RBAC may
/// change without them).
const PERMISSIONS_EVERY: Duration = Duration::from_secs(300);
/// UpdateRequests of a batch processed at once (each mostly waits on the API server).
const WORKERS: usize = 8;

/// What `kybern controller` needs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub kubeconfig: Option<PathBuf>,
    pub names: Names,
    pub identity: String,
    /// Where `/health/*` and `/metrics` are served (plain HTTP); `None`: not served.
    pub listen: Option<std::net::SocketAddr>,
    /// Namespaces whose PolicyExceptions are honoured; empty: all.
    pub exception_namespaces: Vec<String>,
}

/// A running controller.
pub struct Controller {
    pub leader: channel::Receiver<bool>,
    /// Its metrics, which a cleanup part in the same process adds to.
    pub metrics: Arc<super::endpoint::ControllerMetrics>,
    /// The address of the health and metrics endpoint, when served.
    pub endpoint: Option<std::net::SocketAddr>,
    stop: CancellationToken,
}

impl Controller {
    /// Stops the work; the Lease is released once every loop has ended.
    pub async fn shutdown(self) {
        self.stop.cancel();
        drop(self.leader);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Worker {
    /// When each UpdateRequest that failed was last tried.
    tried: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The resourceVersion of each object this controller wrote last, by uid: the watch event
    /// of its own write is not a change to put back.
    written: std::sync::Mutex<std::collections::HashMap<String, String>>,
    metrics: Arc<super::endpoint::ControllerMetrics>,
    client: kube::Client,
    store: Arc<PolicyStore>,
    context: Arc<ClusterContext>,
    kinds: Arc<ArcSwap<Kinds>>,
    field_manager: String,
    /// `(apiVersion, kind, "")` of objects synchronized GeneratingPolicies wrote (their kinds
    /// come out of CEL, so they are known only once written).
    cel_synchronized_kinds: std::sync::Mutex<BTreeSet<(String, String, String)>>,
    /// Where UpdateRequests live: a put-back that fails is queued there to be retried.
    requests_namespace: String,
}

/// The request uid of a put-back's UpdateRequest: one per version of the changed object, so a
/// change is queued once however often it is seen.
fn retry_uid(object: &DynamicObject) -> String {
    format!(
        "restore-{}-{}",
        object.metadata.uid.as_deref().unwrap_or_default(),
        object
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    )
}

/// Starts the background controller.
pub async fn start(options: ControllerOptions) -> Result<Controller, ClusterError> {
    let stop = CancellationToken::new();
    let client = crate::serve::client(options.kubeconfig.as_deref()).await?;
    let lease_client = crate::serve::client(options.kubeconfig.as_deref()).await?;
    let names = options.names.clone();
    let kinds = Arc::new(ArcSwap::from_pointee(Kinds::discover(&client).await?));
    let leader = crate::leader::campaign(
        lease_client,
        &names.namespace,
        &names.background_lease(),
        &options.identity,
        names.product(),
    )
    .await?;

    let store = Arc::new(
        PolicyStore::for_objects()
            .with_exception_namespaces(options.exception_namespaces.clone())
            .with_background_controller(),
    );
    let (resources, _) = source::policy_resources(&kinds.load());
    let policies = PolicySource::spawn(
        &client,
        resources,
        Arc::clone(&store),
        PolicyDefaults::default(),
        &stop,
    );
    let context = cluster_context(&client, &kinds, &stop);
    let requests_changed = Arc::new(Notify::new());
    let requests = Cache::spawn(
        client.clone(),
        queue::resource(),
        Some(&names.namespace),
        None,
        // The queue's order and backoff need only metadata and status: the spec (with the
        // admission request, about 13 KiB) is read when a request is processed, so the cache of
        // a long queue stays small.
        Trim::Without(&["/spec"]),
        Arc::clone(&requests_changed),
        &stop,
    );
    let metrics = Arc::new(super::endpoint::ControllerMetrics::new());
    let endpoint = match options.listen {
        Some(addr) => {
            let mut caches = policies.caches.clone();
            caches.extend(context.caches());
            caches.push(requests.clone());
            Some(
                super::endpoint::serve(addr, Arc::clone(&metrics), caches, stop.clone())
                    .await
                    .map_err(|e| ClusterError::Server(format!("cannot listen on {addr}: {e}")))?,
            )
        }
        None => None,
    };
    let worker = Arc::new(Worker {
        tried: Default::default(),
        written: Default::default(),
        metrics: Arc::clone(&metrics),
        client: client.clone(),
        store,
        context,
        kinds,
        field_manager: format!("{}-background", names.product()),
        cel_synchronized_kinds: Default::default(),
        requests_namespace: names.namespace.clone(),
    });
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let task_stop = stop.clone();
    let task_leader = leader.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = task_stop.cancelled() => {}
            _ = run(worker, policies, requests, requests_changed, task_leader, events_tx, events_rx, task_stop.clone()) => {}
        }
    });
    Ok(Controller {
        leader,
        metrics,
        endpoint,
        stop,
    })
}

/// The context rules read in the background: namespace labels, ConfigMaps and role bindings
/// from watches, API calls through `client`.
pub(crate) fn cluster_context(
    client: &kube::Client,
    kinds: &Arc<ArcSwap<Kinds>>,
    stop: &CancellationToken,
) -> Arc<ClusterContext> {
    let ignored = Arc::new(Notify::new());
    let spawn = |r: ApiResource, trim: Trim| {
        Cache::spawn(
            client.clone(),
            r,
            None,
            None,
            trim,
            Arc::clone(&ignored),
            stop,
        )
    };
    let core = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural)
    };
    let rbac = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
            plural,
        )
    };
    Arc::new(ClusterContext::new(
        client.clone(),
        [
            spawn(core("Namespace", "namespaces"), Trim::Object),
            spawn(core("ConfigMap", "configmaps"), Trim::Object),
            spawn(rbac("RoleBinding", "rolebindings"), Trim::Slim),
            spawn(
                rbac("ClusterRoleBinding", "clusterrolebindings"),
                Trim::Slim,
            ),
        ],
        Arc::clone(kinds),
        Arc::new(GlobalContext::default()),
        CallLimits::default(),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    w: Arc<Worker>,
    mut policies: PolicySource,
    requests: Cache,
    requests_changed: Arc<Notify>,
    mut leader: channel::Receiver<bool>,
    events_tx: mpsc::UnboundedSender<Changed>,
    mut events_rx: mpsc::UnboundedReceiver<Changed>,
    stop: CancellationToken,
) {
    let mut watched: BTreeSet<(String, String, String)> = BTreeSet::new();
    // Kinds of synchronized rules the cluster did not serve when last tried (warned once).
    let mut unserved: BTreeSet<(String, String, String)> = BTreeSet::new();
    // Each synchronized generate rule's body as last seen (by policy key and rule), and the
    // policy generation that was read at.
    let mut synchronized_rules: HashMap<(String, String), String> = HashMap::new();
    let mut rules_seen_at: Option<u64> = None;
    // Clone sources watched, by apiVersion, kind and namespace.
    let mut sources_watched: BTreeSet<(String, String, String)> = BTreeSet::new();
    // Policies whose `generateExisting` rules already ran in this controller's life (writes are
    // idempotent, so a restart running them again changes nothing).
    let mut existing_done: BTreeSet<String> = BTreeSet::new();
    // The compiled policy whose `mutateExistingOnPolicyUpdate` rules last ran, per policy: the
    // store compiles a policy anew exactly when its object changes, so a new one means the
    // policy was created or changed. (Held, so that a pointer is never reused.)
    let mut mutated_for: HashMap<String, Arc<Policy>> = HashMap::new();
    // Policies with generate rules as last seen, to delete their downstream objects with them.
    let mut generating: HashMap<String, Arc<Policy>> = HashMap::new();
    // Synchronized GeneratingPolicies that delete what they wrote when they are deleted.
    let mut generating_cel: HashMap<String, CelPolicyId> = HashMap::new();
    // More UpdateRequests wait than the last batch took: go on without waiting.
    let mut more = false;
    // UpdateRequests this pass processed, until the cache shows them gone (the watch lags the
    // deletes): a later pass does not take them again.
    let mut handled: HashSet<String> = HashSet::new();
    // The policy generation whose background permissions were last checked, and when.
    let mut checker = permissions::Checker::new(w.client.clone());
    let mut permissions_checked: Option<(u64, std::time::Instant)> = None;
    // Whether this leadership has looked for the kinds GeneratingPolicies wrote before it.
    let mut generated_kinds_known = false;
    loop {
        let mut downstream = Vec::new();
        if !more {
            tokio::select! {
                _ = requests_changed.notified() => {}
                _ = policies.synced.changed() => {}
                _ = leader.changed() => {}
                Some(o) = events_rx.recv() => downstream.push(o),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        more = false;
        while let Ok(o) = events_rx.try_recv() {
            downstream.push(o);
        }
        let leads = *leader.borrow();
        w.metrics.leader.set(i64::from(leads));
        // The cache's own objects (shared, not copied); only a batch becomes JSON.
        let all = requests.reader.state();
        let failed_state = |u: &DynamicObject| {
            u.data.pointer("/status/state").and_then(Value::as_str) == Some("Failed")
        };
        let failed = all.iter().filter(|u| failed_state(u)).count();
        w.metrics
            .failed
            .set(i64::try_from(failed).unwrap_or(i64::MAX));
        w.metrics
            .pending
            .set(i64::try_from(all.len() - failed).unwrap_or(i64::MAX));
        if !leads {
            generated_kinds_known = false;
        }
        if !leads || !w.store.is_ready() {
            continue;
        }
        if !generated_kinds_known {
            generated_kinds_known = true;
            let synchronized: Vec<String> = w
                .store
                .snapshot()
                .cel
                .generating
                .iter()
                .filter(|g| g.policy.evaluation.synchronize)
                .map(|g| g.policy.name.clone())
                .collect();
            w.rediscover_generated_kinds(&synchronized).await;
        }
        let generation = w.store.snapshot().generation;
        if permissions_checked
            .is_none_or(|(g, at)| g != generation || at.elapsed() >= PERMISSIONS_EVERY)
        {
            if permissions_checked.is_some_and(|(g, _)| g != generation) {
                checker.forget();
            }
            permissions_checked = Some((generation, std::time::Instant::now()));
            w.report_permissions(&mut checker, policies.objects()).await;
        }
        // Watch the kinds that synchronized rules generate, to put back what is changed.
        let cel_kinds: Vec<_> = w
            .cel_synchronized_kinds
            .lock()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default();
        for r in synchronized_kinds(&w.store.snapshot().policies)
            .into_iter()
            .chain(cel_kinds)
        {
            if watched.contains(&r) {
                continue;
            }
            if spawn_downstream_watch(&w, &r, events_tx.clone(), &stop) {
                watched.insert(r);
            } else if unserved.insert(r.clone()) {
                tracing::warn!(api_version = %r.0, kind = %r.1, "the cluster serves no such kind (yet); generated objects of it are kept in sync once it does");
            }
        }
        for s in clone_sources::watched_sources(&w.store.snapshot().policies) {
            if sources_watched.insert(s.clone()) {
                clone_sources::spawn_source_watch(&w, &s, events_tx.clone(), &stop);
            }
        }
        generating = w.forget_deleted(generating).await;
        generating_cel = w.forget_deleted_cel(generating_cel).await;
        let generating_now: Vec<GeneratingPolicy> = w
            .store
            .snapshot()
            .cel
            .generating
            .iter()
            .filter(|g| g.policy.evaluation.generate_existing)
            .map(|g| g.policy.clone())
            .collect();
        for policy in generating_now {
            if existing_done.insert(format!("{}/{}", policy.kind, policy.key())) {
                w.cel_generate_existing(policy).await;
            }
        }
        let mutating_now: Vec<_> = w
            .store
            .snapshot()
            .cel
            .mutating
            .iter()
            .filter(|m| m.mutates_existing())
            .map(|m| m.policy.clone())
            .collect();
        for policy in mutating_now {
            if existing_done.insert(cel_mutate::fingerprint(&policy)) {
                w.cel_mutate_existing(policy).await;
            }
        }
        for g in &w.store.snapshot().cel.generating {
            let e = g.policy.evaluation;
            if e.synchronize && !e.orphan_downstream_on_policy_delete {
                generating_cel.insert(
                    g.key(),
                    (
                        g.policy.kind,
                        g.policy.name.clone(),
                        g.policy.namespace.clone(),
                    ),
                );
            }
        }
        let mut raw: Option<HashMap<String, Value>> = None;
        for policy in w.store.snapshot().policies.iter() {
            if !generate::has_generate(policy) {
                continue;
            }
            generating.insert(policy_key(policy), Arc::clone(policy));
            if !existing_done.insert(policy.key()) {
                continue;
            }
            // The deprecated policy-wide `spec.generateExisting` is read from the object.
            let raw = raw.get_or_insert_with(|| policies.objects().into_iter().collect());
            let policy_wide = raw
                .get(&policy_key(policy))
                .and_then(|d| d.pointer("/spec/generateExisting"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let rules = generate_existing_rules(policy, policy_wide);
            if !rules.is_empty() {
                w.generate_existing(Arc::clone(policy), rules).await;
            }
        }
        // A synchronized generate rule that changed updates what it wrote.
        if rules_seen_at != Some(generation) {
            rules_seen_at = Some(generation);
            let policies = w.store.snapshot().policies.clone();
            let mut changed = Vec::new();
            let mut now = HashMap::new();
            for policy in policies.iter() {
                for r in &policy.rules {
                    let RuleBody::Generate(g) = &r.body else {
                        continue;
                    };
                    if !generate::is_synchronized(g) {
                        continue;
                    }
                    let key = (policy_key(policy), r.name.clone());
                    let body = g.to_string();
                    if synchronized_rules.get(&key).is_some_and(|old| *old != body) {
                        changed.push((Arc::clone(policy), r.name.clone()));
                    }
                    now.insert(key, body);
                }
            }
            synchronized_rules = now;
            for (policy, rule) in changed {
                w.generate_again(&policy, &rule).await;
            }
        }
        let with_targets: Vec<Arc<Policy>> = w
            .store
            .snapshot()
            .policies
            .iter()
            .filter(|p| mutate_existing::has_mutate_existing(p))
            .cloned()
            .collect();
        // Deleted policies are forgotten: created again, they run again.
        mutated_for.retain(|key, _| with_targets.iter().any(|p| policy_key(p) == *key));
        if with_targets.iter().any(|p| {
            !mutated_for
                .get(&policy_key(p))
                .is_some_and(|seen| Arc::ptr_eq(seen, p))
        }) {
            let raw: HashMap<String, Value> = policies.objects().into_iter().collect();
            for policy in with_targets {
                let key = policy_key(&policy);
                let Some(doc) = raw.get(&key) else { continue };
                if mutated_for
                    .get(&key)
                    .is_some_and(|seen| Arc::ptr_eq(seen, &policy))
                {
                    continue;
                }
                mutated_for.insert(key, Arc::clone(&policy));
                let rules = mutate_existing::on_policy_update_rules(
                    &policy,
                    doc.get("spec").unwrap_or(&Value::Null),
                );
                if !rules.is_empty() {
                    w.mutate_existing_now(policy, rules).await;
                }
            }
        }
        let due = |u: &DynamicObject| {
            let attempts = u
                .data
                .pointer("/status/retryCount")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            w.due(u.metadata.name.as_deref().unwrap_or_default(), attempts)
        };
        let names: HashSet<&str> = all
            .iter()
            .filter_map(|u| u.metadata.name.as_deref())
            .collect();
        handled.retain(|n| names.contains(n.as_str()));
        drop(names);
        let mut pending: Vec<_> = all
            .into_iter()
            .filter(|u| {
                !failed_state(u)
                    && due(u)
                    && !handled.contains(u.metadata.name.as_deref().unwrap_or_default())
            })
            .collect();
        pending.sort_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        });
        more = pending.len() > BATCH;
        let batch: Vec<(String, Value)> = pending
            .into_iter()
            .take(BATCH)
            .filter_map(|ur| {
                let name = ur.metadata.name.clone().unwrap_or_default();
                requests.to_value(&ur).map(|v| (name, v))
            })
            .collect();
        let done: Vec<String> = futures::stream::iter(batch)
            .map(|(name, value)| {
                let w = &w;
                async move { w.process(&value).await.then_some(name) }
            })
            .buffer_unordered(WORKERS)
            .filter_map(|done| async move { done })
            .collect()
            .await;
        handled.extend(done);
        for change in downstream {
            match change {
                Changed::Downstream(o) => w.restore(&o).await,
                Changed::Source(o) => w.source_changed(&o).await,
            }
        }
    }
}

/// What an UpdateRequest read from the queue's cache lacks (its spec is not cached).
const UR_BULK: &str = "/spec/context";

/// A GeneratingPolicy's kind, name and namespace.
type CelPolicyId = (&'static str, String, String);

/// The key of a policy's watched object (`ClusterPolicy.kyverno.io/name`).
fn policy_key(policy: &Policy) -> String {
    format!("{}.kyverno.io/{}", policy.kind.as_str(), policy.key())
}

/// Rules with `generate.generateExisting: true` (when a rule does not say, the deprecated
/// policy-wide `spec.generateExisting`): they also act on triggers that exist when the policy
/// appears.
fn generate_existing_rules(policy: &Policy, policy_wide: bool) -> Vec<String> {
    policy
        .rules
        .iter()
        .filter(|r| {
            matches!(&r.body, RuleBody::Generate(g)
                if g.get("generateExisting").and_then(Value::as_bool).unwrap_or(policy_wide))
        })
        .map(|r| r.name.clone())
        .collect()
}

/// `(apiVersion, kind, plural)` of objects that `synchronize: true` rules generate.
fn synchronized_kinds(policies: &[Arc<Policy>]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in policies {
        for r in &p.rules {
            let RuleBody::Generate(g) = &r.body else {
                continue;
            };
            if !generate::is_synchronized(g) {
                continue;
            }
            let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or_default();
            let (api_version, kind) = (s("apiVersion"), s("kind"));
            if !api_version.is_empty() && !kind.is_empty() && !kind.contains("{{") {
                out.push((api_version.to_string(), kind.to_string(), String::new()));
            }
        }
    }
    out
}

/// A change the main loop acts on between batches.
enum Changed {
    /// A generated object (to put back when it is not what was written).
    Downstream(DynamicObject),
    /// A clone source (its clones are generated again).
    Source(DynamicObject),
}

/// Watches generated objects of one kind; false when the cluster does not serve the kind (yet:
/// the caller tries again on a later pass).
fn spawn_downstream_watch(
    w: &Arc<Worker>,
    key: &(String, String, String),
    events: mpsc::UnboundedSender<Changed>,
    stop: &CancellationToken,
) -> bool {
    let kinds = w.kinds.load();
    let Some(r) = kinds.by_api_version(&key.0, &key.1) else {
        return false;
    };
    let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
    let api: Api<DynamicObject> = Api::all_with(w.client.clone(), &resource);
    let selector = format!("{}={}", generate::MANAGED_BY.0, generate::MANAGED_BY.1);
    let stop = stop.clone();
    let w = Arc::clone(w);
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                e = stream.next() => match e { Some(e) => e, None => break },
            };
            match event {
                // The controller's own writes come back here, one per generated object: dropped
                // at once rather than queued behind the work that made them (`restore` checks
                // again for a write whose event came before it was remembered).
                Ok(watcher::Event::Apply(o)) => {
                    if !w.own_write(&o) {
                        let _ = events.send(Changed::Downstream(o));
                    }
                }
                // The watch's first listing (or a relisting) may come after this controller
                // wrote an object and someone changed it: put those back. Objects it has no
                // record of writing (from before a restart) are left alone here, so a restart
                // does not rewrite every generated object.
                Ok(watcher::Event::InitApply(o)) => {
                    if w.changed_since_written(&o) {
                        let _ = events.send(Changed::Downstream(o));
                    }
                }
                // A deletion is never the controller's own write, whatever version it carries.
                Ok(watcher::Event::Delete(o)) => {
                    w.forget_write(&o);
                    let _ = events.send(Changed::Downstream(o));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "watch of generated objects failed; retrying"),
            }
        }
    });
    true
}

fn label<'a>(o: &'a DynamicObject, key: &str) -> &'a str {
    o.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

impl Worker {
    /// Sets each policy's `BackgroundPermissions` condition from what the controller may do.
    async fn report_permissions(
        &self,
        checker: &mut permissions::Checker,
        docs: Vec<(String, Value)>,
    ) {
        let kinds = self.kinds.load_full();
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        for (key, doc) in docs {
            let needs = permissions::needs(&doc);
            if needs.is_empty() {
                continue;
            }
            let missing = match checker.missing(&kinds, &needs).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "background permissions could not be checked");
                    return;
                }
            };
            if !missing.is_empty() {
                tracing::warn!(policy = %key, missing = ?missing, "the background controller lacks permissions this policy needs");
            }
            let condition = permissions::condition(&missing);
            let Some(patch) = crate::status::background_condition_patch(&doc, condition, &now)
            else {
                continue;
            };
            let s = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or_default();
            let Ok(api) = self.api_for(s("/apiVersion"), s("/kind"), s("/metadata/namespace"))
            else {
                continue;
            };
            if let Err(e) = api
                .patch_status(
                    s("/metadata/name"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(policy = %key, error = %e, "background permissions not written to the policy's status");
            }
        }
    }

    fn policy(&self, key: &str) -> Option<Arc<Policy>> {
        self.store
            .snapshot()
            .policies
            .iter()
            .find(|p| p.key() == key)
            .cloned()
    }

    /// Does one UpdateRequest: generates, then deletes it; on failure counts the attempt and
    /// marks it Failed after [`MAX_ATTEMPTS`].
    /// False while a failed UpdateRequest waits out its backoff.
    fn due(&self, name: &str, attempts: u64) -> bool {
        let wait = FIRST_RETRY
            * 2u32.saturating_pow(u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX));
        !(attempts > 0
            && self
                .tried
                .lock()
                .is_ok_and(|tried| tried.get(name).is_some_and(|at| at.elapsed() < wait)))
    }

    /// Does the work of one UpdateRequest (read whole first when the cache holds it without its
    /// spec); true when it was done (and deleted, or found gone).
    async fn process(&self, ur: &Value) -> bool {
        if ur.pointer(UR_BULK).is_none() {
            let name = ur.pointer("/metadata/name").and_then(Value::as_str);
            let namespace = ur.pointer("/metadata/namespace").and_then(Value::as_str);
            let (Some(name), Some(namespace)) = (name, namespace) else {
                return false;
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &queue::resource());
            return match api.get_opt(name).await {
                Ok(Some(full)) => match serde_json::to_value(full) {
                    Ok(full) => self.process_whole(&full).await,
                    Err(_) => false,
                },
                // Done and deleted by another pass meanwhile.
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(update_request = %name, error = %e, "UpdateRequest not read");
                    false
                }
            };
        }
        self.process_whole(ur).await
    }

    async fn process_whole(&self, ur: &Value) -> bool {
        let name = ur
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = ur
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &namespace, &queue::resource());
        let attempts = ur
            .pointer("/status/retryCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if !self.due(&name, attempts) {
            return false;
        }
        let delete_downstream = ur
            .pointer("/spec/deleteDownstream")
            .and_then(Value::as_bool)
            == Some(true);
        let outcome = match ur.pointer("/spec/requestType").and_then(Value::as_str) {
            _ if delete_downstream => self.delete_downstream_for(ur).await,
            Some("mutate") => self.mutate_for(ur).await,
            Some("cel-generate") => self.cel_generate_for(ur).await,
            Some("cel-mutate") => self.cel_mutate_for(ur).await,
            _ => self.generate_for(ur).await,
        };
        match outcome {
            Ok(count) => {
                if let Ok(mut tried) = self.tried.lock() {
                    tried.remove(&name);
                }
                tracing::info!(update_request = %name, objects = count, "background work done");
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    tracing::warn!(update_request = %name, error = %e, "finished UpdateRequest not deleted");
                }
                true
            }
            Err(message) => {
                let attempts = attempts + 1;
                if let Ok(mut tried) = self.tried.lock() {
                    tried.insert(name.clone(), std::time::Instant::now());
                }
                let state = if attempts >= MAX_ATTEMPTS {
                    "Failed"
                } else {
                    "Pending"
                };
                tracing::warn!(update_request = %name, attempts, %message, "background work failed");
                let status =
                    json!({"status": {"state": state, "message": message, "retryCount": attempts}});
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
                let (reason, note) = if state == "Failed" {
                    (
                        "Failed",
                        format!("given up after {attempts} attempts: {message}"),
                    )
                } else {
                    (
                        "Retrying",
                        format!("attempt {attempts} of {MAX_ATTEMPTS} failed: {message}"),
                    )
                };
                self.event(ur, reason, &note).await;
                false
            }
        }
    }

    /// A Warning Event on an UpdateRequest, for `kubectl describe ur` and event collectors.
    async fn event(&self, ur: &Value, reason: &str, message: &str) {
        let s = |p: &str| ur.pointer(p).cloned().unwrap_or(Value::Null);
        let namespace = ur
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        // Events hold at most 1 KiB of message.
        let message: String = message.chars().take(1024).collect();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{}.", s("/metadata/name").as_str().unwrap_or("ur")), "namespace": namespace},
            "involvedObject": {"apiVersion": "kyverno.io/v2", "kind": "UpdateRequest",
                "name": s("/metadata/name"), "namespace": namespace, "uid": s("/metadata/uid")},
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": self.field_manager},
            "reportingComponent": self.field_manager,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Event"), "events");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let Ok(event) = serde_json::from_value::<DynamicObject>(event) else {
            return;
        };
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "Event not recorded");
        }
    }

    /// Runs `rules` for every object that already exists of the kinds they match.
    async fn generate_existing(&self, policy: Arc<Policy>, rules: Vec<String>) {
        for request in self.existing_triggers(&policy, &rules).await {
            if let Err(e) = self
                .generate_and_write(Arc::clone(&policy), request, rules.clone())
                .await
            {
                tracing::warn!(policy = %policy.key(), error = %e, "generate for an existing trigger failed");
            }
        }
    }

    /// `mutateExistingOnPolicyUpdate`: runs `rules` for every trigger that exists now.
    async fn mutate_existing_now(&self, policy: Arc<Policy>, rules: Vec<String>) {
        for request in self.existing_triggers(&policy, &rules).await {
            if let Err(e) = self
                .mutate_and_write(Arc::clone(&policy), request, rules.clone())
                .await
            {
                tracing::warn!(policy = %policy.key(), error = %e, "mutate existing on policy update failed");
            }
        }
    }

    /// The objects that exist of the kinds `rules` match, each as a CREATE request (a namespaced
    /// Policy's only from its namespace).
    async fn existing_triggers(&self, policy: &Policy, rules: &[String]) -> Vec<AdmissionRequest> {
        let mut selectors: BTreeSet<String> = BTreeSet::new();
        for r in policy.rules.iter().filter(|r| rules.contains(&r.name)) {
            for d in r.match_resources.descriptions() {
                selectors.extend(d.kinds.iter().cloned());
            }
        }
        let kinds = self.kinds.load_full();
        let mut resources = Vec::new();
        for selector in selectors {
            let s = kybern_engine::matching::parse_kind(&selector);
            resources.extend(kinds.resources().iter().filter(|r| {
                r.kind == s.kind
                    && r.preferred
                    && (s.group == "*" || s.group == r.group)
                    && (s.version == "*" || s.version == r.version)
            }));
        }
        self.objects_as_requests(&resources, &policy.namespace, &policy.key())
            .await
    }

    /// Every object of these kinds (only from `namespace` when it is set), each as a CREATE
    /// request.
    async fn objects_as_requests(
        &self,
        resources: &[&crate::webhooks::Resource],
        namespace: &str,
        policy: &str,
    ) -> Vec<AdmissionRequest> {
        let mut out = Vec::new();
        for r in resources {
            let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
            let api: Api<DynamicObject> = if r.namespaced && !namespace.is_empty() {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            } else {
                Api::all_with(self.client.clone(), &resource)
            };
            let list = match api.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%policy, kind = %r.kind, error = %e, "existing triggers not listed");
                    continue;
                }
            };
            for item in list.items {
                let Ok(mut object) = serde_json::to_value(item) else {
                    continue;
                };
                object["apiVersion"] = json!(resource.api_version);
                object["kind"] = json!(resource.kind);
                let namespace_labels = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .and_then(|ns| self.context.labels_of(ns));
                out.push(AdmissionRequest {
                    operation: Operation::Create,
                    object: Arc::new(object),
                    no_user_info: true,
                    namespace_labels,
                    ..AdmissionRequest::default()
                });
            }
        }
        out
    }

    /// `evaluation.generateExisting`: a GeneratingPolicy generates for the triggers that exist
    /// when it is created, those of every resource its `matchConstraints` name for CREATE.
    async fn cel_generate_existing(&self, policy: GeneratingPolicy) {
        let kinds = self.kinds.load_full();
        let resources =
            cel_mutate::named_resources(&kinds, &policy.match_constraints, Some("CREATE"));
        let key = policy.key();
        for request in self
            .objects_as_requests(&resources, &policy.namespace, &key)
            .await
        {
            if let Err(e) = self.cel_generate_and_write(policy.clone(), request).await {
                tracing::warn!(policy = %key, error = %e, "generate for an existing trigger failed");
            }
        }
    }

    /// The request an UpdateRequest recorded, as the engine reads it.
    fn request_of(&self, ur: &Value) -> Result<AdmissionRequest, String> {
        let wire = ur
            .pointer("/spec/context/admissionRequestInfo/admissionRequest")
            .cloned()
            .ok_or("spec.context.admissionRequestInfo.admissionRequest is missing")?;
        let wire: WireRequest = serde_json::from_value(wire)
            .map_err(|e| format!("spec.context.admissionRequestInfo.admissionRequest: {e}"))?;
        let mut request =
            kybern_webhook::admission::to_engine_request(wire, |ns| self.context.labels_of(ns))
                .map_err(|e| e.to_string())?;
        let strings = |p: &str| -> Vec<String> {
            ur.pointer(p)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        request.roles = strings("/spec/context/userInfo/roles");
        request.cluster_roles = strings("/spec/context/userInfo/clusterRoles");
        Ok(request)
    }

    /// A GeneratingPolicy's UpdateRequest: the policy evaluated again on the recorded request,
    /// its objects written.
    async fn cel_generate_for(&self, ur: &Value) -> Result<usize, String> {
        let key = ur
            .pointer("/spec/policy")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let policy = self.generating_policy(&key).ok_or_else(|| {
            format!("GeneratingPolicy {key} is not loaded (deleted, or it does not compile)")
        })?;
        let request = self.request_of(ur)?;
        self.cel_generate_and_write(policy, request).await
    }

    /// The loaded GeneratingPolicy with this key (`name`, or `namespace/name`).
    fn generating_policy(&self, key: &str) -> Option<GeneratingPolicy> {
        self.store
            .snapshot()
            .cel
            .generating
            .iter()
            .find(|g| g.key() == key)
            .map(|g| g.policy.clone())
    }

    /// Evaluates a GeneratingPolicy on a trigger and writes what it generates: by server-side
    /// apply when it synchronizes (so an edited or deleted object is put back), else created
    /// once and left alone.
    async fn cel_generate_and_write(
        &self,
        policy: GeneratingPolicy,
        request: AdmissionRequest,
    ) -> Result<usize, String> {
        let context = Arc::clone(&self.context);
        let (name, namespace) = (policy.name.clone(), policy.namespace.clone());
        let synchronize = policy.evaluation.synchronize;
        let (result, trigger) = tokio::task::spawn_blocking(move || {
            let result = policy.evaluate(&request, context.as_ref());
            (result, request.resource().clone())
        })
        .await
        .map_err(|e| e.to_string())?;
        let mut objects = match result {
            GenerateResult::Generated(o) => o,
            GenerateResult::Error(e) => return Err(e),
            GenerateResult::NotMatched
            | GenerateResult::Skip(_)
            | GenerateResult::ExceptionPass(_) => return Ok(0),
        };
        for o in &mut objects {
            // A namespaced policy writes only into its own namespace.
            let ns = o
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !namespace.is_empty() && ns != namespace {
                return Err(format!(
                    "a NamespacedGeneratingPolicy in namespace {namespace} cannot generate into {ns:?}"
                ));
            }
            generate::label_with(o, &name, &namespace, "", &trigger);
        }
        if synchronize && let Ok(mut kinds) = self.cel_synchronized_kinds.lock() {
            for o in &objects {
                let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default();
                kinds.insert((s("/apiVersion").into(), s("/kind").into(), String::new()));
            }
        }
        self.write(&Generated {
            rule: String::new(),
            synchronize,
            objects,
        })
        .await
    }

    async fn generate_for(&self, ur: &Value) -> Result<usize, String> {
        let (policy, request, rules) = self.work_of(ur)?;
        self.generate_and_write(policy, request, rules).await
    }

    /// What an UpdateRequest asks for: its policy (loaded), the request of its trigger and the
    /// rules of its `ruleContext`.
    fn work_of(&self, ur: &Value) -> Result<(Arc<Policy>, AdmissionRequest, Vec<String>), String> {
        let policy_key = ur
            .pointer("/spec/policy")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let policy = self.policy(policy_key).ok_or_else(|| {
            format!("policy {policy_key} is not loaded (deleted, or it does not compile)")
        })?;
        let rules: Vec<String> = ur
            .pointer("/spec/ruleContext")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("rule").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let request = self.request_of(ur)?;
        Ok((policy, request, rules))
    }

    /// Of the policies last seen with generate rules, keeps those still loaded; those the API
    /// server no longer has take their synchronized downstream objects with them. (One that is
    /// only out of the store, e.g. an edit that does not compile, is kept and deletes nothing.)
    async fn forget_deleted(
        &self,
        mut known: HashMap<String, Arc<Policy>>,
    ) -> HashMap<String, Arc<Policy>> {
        let loaded: BTreeSet<String> = self
            .store
            .snapshot()
            .policies
            .iter()
            .map(|p| policy_key(p))
            .collect();
        let gone: Vec<String> = known
            .keys()
            .filter(|k| !loaded.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let Some(policy) = known.get(&key).cloned() else {
                continue;
            };
            let (kind, plural) = if policy.namespace.is_empty() {
                ("ClusterPolicy", "clusterpolicies")
            } else {
                ("Policy", "policies")
            };
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("kyverno.io", "v1", kind),
                plural,
            );
            let api: Api<DynamicObject> = if policy.namespace.is_empty() {
                Api::all_with(self.client.clone(), &resource)
            } else {
                Api::namespaced_with(self.client.clone(), &policy.namespace, &resource)
            };
            match api.get_opt(&policy.name).await {
                Ok(None) => {
                    self.delete_downstream(&policy).await;
                    known.remove(&key);
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(policy = %key, error = %e, "cannot tell whether the policy was deleted")
                }
            }
        }
        known
    }

    /// Of the synchronized GeneratingPolicies last seen (key → kind, name, namespace), keeps
    /// those still loaded; those the API server no longer has take what they wrote with them.
    async fn forget_deleted_cel(
        &self,
        mut known: HashMap<String, CelPolicyId>,
    ) -> HashMap<String, CelPolicyId> {
        let snapshot = self.store.snapshot();
        let gone: Vec<(String, CelPolicyId)> = known
            .iter()
            .filter(|(k, _)| !snapshot.cel.generating.iter().any(|g| g.key() == **k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        drop(snapshot);
        for (key, (kind, name, namespace)) in gone {
            let kinds = self.kinds.load();
            let Some(r) = kinds.find("policies.kyverno.io", kind, None) else {
                known.remove(&key);
                continue;
            };
            let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
            let api: Api<DynamicObject> = if namespace.is_empty() {
                Api::all_with(self.client.clone(), &resource)
            } else {
                Api::namespaced_with(self.client.clone(), &namespace, &resource)
            };
            match api.get_opt(&name).await {
                Ok(None) => {
                    let written: Vec<(String, String)> = self
                        .cel_synchronized_kinds
                        .lock()
                        .map(|k| k.iter().map(|(a, k, _)| (a.clone(), k.clone())).collect())
                        .unwrap_or_default();
                    self.delete_labelled(&key, &name, &namespace, "", &written, None)
                        .await;
                    known.remove(&key);
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(policy = %key, error = %e, "cannot tell whether the policy was deleted")
                }
            }
        }
        known
    }

    /// Deletes what a deleted policy's synchronized generate rules wrote (found by Kyverno's
    /// labels), unless the rule says `orphanDownstreamOnPolicyDelete`.
    async fn delete_downstream(&self, policy: &Policy) {
        for (rule, kinds) in generate::downstream_on_policy_delete(policy) {
            self.delete_labelled(
                &policy.key(),
                &policy.name,
                &policy.namespace,
                &rule,
                &kinds,
                None,
            )
            .await;
        }
    }

    /// Deletes the objects of these kinds that Kyverno's labels say this policy and rule wrote.
    async fn delete_labelled(
        &self,
        key: &str,
        policy_name: &str,
        policy_namespace: &str,
        rule: &str,
        kinds: &[(String, String)],
        trigger_uid: Option<&str>,
    ) -> usize {
        let mut selector = format!(
            "{}={},{}={},{}={}",
            generate::MANAGED_BY.0,
            generate::MANAGED_BY.1,
            generate::POLICY_NAME,
            policy_name,
            generate::RULE_NAME,
            rule
        );
        if let Some(uid) = trigger_uid {
            selector.push_str(&format!(",{}={uid}", generate::TRIGGER_UID));
        }
        let mut deleted = 0;
        for (api_version, kind) in kinds {
            let Ok(all) = self.api_for(api_version, kind, "") else {
                continue;
            };
            let list = match all.list(&ListParams::default().labels(&selector)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(policy = %key, %kind, error = %e, "downstream objects not listed");
                    continue;
                }
            };
            for o in list.items {
                if label(&o, generate::POLICY_NAMESPACE) != policy_namespace {
                    continue;
                }
                let name = o.metadata.name.clone().unwrap_or_default();
                let namespace = o.metadata.namespace.clone().unwrap_or_default();
                let Ok(api) = self.api_for(api_version, kind, &namespace) else {
                    continue;
                };
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {
                        deleted += 1;
                        tracing::info!(policy = %key, %kind, %namespace, %name, "downstream object deleted")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(policy = %key, %kind, %namespace, %name, error = %e, "downstream object not deleted")
                    }
                }
            }
        }
        deleted
    }

    async fn mutate_for(&self, ur: &Value) -> Result<usize, String> {
        let (policy, request, rules) = self.work_of(ur)?;
        self.mutate_and_write(policy, request, rules).await
    }

    /// Patches the targets `rules` select for the trigger: each is replaced at the
    /// resourceVersion it was read at, so a concurrent change makes this fail (and be retried)
    /// rather than be overwritten.
    async fn mutate_and_write(
        &self,
        policy: Arc<Policy>,
        request: AdmissionRequest,
        rules: Vec<String>,
    ) -> Result<usize, String> {
        let context = Arc::clone(&self.context);
        let exceptions = self.store.snapshot().exceptions.clone();
        let (targets, errors) = tokio::task::spawn_blocking(move || {
            mutate_existing::run(&policy, &request, context.as_ref(), &exceptions, &rules)
        })
        .await
        .map_err(|e| e.to_string())?;
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        self.write_targets(&targets).await
    }

    /// Writes patched targets, each at the resourceVersion it was read at.
    async fn write_targets(&self, targets: &[Value]) -> Result<usize, String> {
        for target in targets {
            let s = |p: &str| {
                target
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (api_version, kind, name, namespace) = (
                s("/apiVersion"),
                s("/kind"),
                s("/metadata/name"),
                s("/metadata/namespace"),
            );
            let api = self.api_for(&api_version, &kind, &namespace)?;
            let obj: DynamicObject =
                serde_json::from_value(target.clone()).map_err(|e| e.to_string())?;
            api.replace(&name, &PostParams::default(), &obj)
                .await
                .map_err(|e| format!("{kind} {namespace}/{name}: {e}"))?;
        }
        Ok(targets.len())
    }

    /// The API of a kind's objects: in `namespace` when the kind is namespaced and one is given,
    /// in all namespaces otherwise.
    fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Api<DynamicObject>, String> {
        let kinds = self.kinds.load();
        let r = kinds
            .by_api_version(api_version, kind)
            .ok_or_else(|| format!("the cluster serves no {api_version} {kind}"))?;
        let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
        Ok(if r.namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        })
    }

    async fn generate_and_write(
        &self,
        policy: Arc<Policy>,
        request: AdmissionRequest,
        rules: Vec<String>,
    ) -> Result<usize, String> {
        let confined_to = policy.namespace.clone();
        let context = Arc::clone(&self.context);
        let exceptions = self.store.snapshot().exceptions.clone();
        let (generated, errors) = tokio::task::spawn_blocking(move || {
            generate::run(&policy, &request, context.as_ref(), &exceptions, &rules)
        })
        .await
        .map_err(|e| e.to_string())?;
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        // A namespaced Policy writes only into its own namespace.
        if !confined_to.is_empty() {
            for g in &generated {
                for o in &g.objects {
                    let ns = o
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if ns != confined_to {
                        return Err(format!(
                            "rule {}: a Policy in namespace {confined_to} cannot generate into {:?}",
                            g.rule, ns
                        ));
                    }
                }
            }
        }
        let mut count = 0;
        for g in generated {
            count += self.write(&g).await?;
        }
        Ok(count)
    }

    /// Writes one rule's objects: synchronized ones by server-side apply (so they are put back
    /// as the rule says), others only when they do not exist yet.
    async fn write(&self, g: &Generated) -> Result<usize, String> {
        for object in &g.objects {
            let s = |p: &str| {
                object
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (api_version, kind, name, namespace) = (
                s("/apiVersion"),
                s("/kind"),
                s("/metadata/name"),
                s("/metadata/namespace"),
            );
            let kinds = self.kinds.load();
            let r = kinds
                .by_api_version(&api_version, &kind)
                .ok_or_else(|| format!("the cluster serves no {api_version} {kind}"))?;
            let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
            let api: Api<DynamicObject> = if r.namespaced {
                Api::namespaced_with(self.client.clone(), &namespace, &resource)
            } else {
                Api::all_with(self.client.clone(), &resource)
            };
            let result = if g.synchronize {
                api.patch(
                    &name,
                    &PatchParams::apply(&self.field_manager).force(),
                    &Patch::Apply(object),
                )
                .await
                .map(|o| self.remember_write(&o))
            } else {
                let obj: DynamicObject =
                    serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
                match api.create(&PostParams::default(), &obj).await {
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                    other => other.map(|_| ()),
                }
            };
            result.map_err(|e| format!("{kind} {namespace}/{name}: {e}"))?;
        }
        Ok(g.objects.len())
    }

    /// A generated object changed or went away: when its rule synchronizes, generate again for
    /// its trigger (a write that changes nothing is no change, so this settles).
    /// Records the version of an object this controller just wrote (bounded: forgotten in bulk
    /// past 100,000, which at worst costs one needless restore each).
    fn remember_write(&self, o: &DynamicObject) {
        if let (Some(uid), Some(version), Ok(mut w)) = (
            o.metadata.uid.clone(),
            o.metadata.resource_version.clone(),
            self.written.lock(),
        ) {
            if w.len() >= 100_000 {
                w.clear();
            }
            w.insert(uid, version);
        }
    }

    fn forget_write(&self, o: &DynamicObject) {
        if let (Some(uid), Ok(mut w)) = (&o.metadata.uid, self.written.lock()) {
            w.remove(uid);
        }
    }

    /// Whether `object` is at the version this controller last wrote of it; `None` when it has
    /// no record of writing it.
    fn at_written_version(&self, object: &DynamicObject) -> Option<bool> {
        let (Some(uid), Some(version)) = (&object.metadata.uid, &object.metadata.resource_version)
        else {
            return None;
        };
        let written = self.written.lock().ok()?;
        written.get(uid).map(|v| v == version)
    }

    /// True when this controller wrote `object` and it has changed since.
    fn changed_since_written(&self, object: &DynamicObject) -> bool {
        self.at_written_version(object) == Some(false)
    }

    /// True when `object` is exactly what this controller last wrote.
    fn own_write(&self, object: &DynamicObject) -> bool {
        self.at_written_version(object) == Some(true)
    }

    async fn restore(&self, object: &DynamicObject) {
        if self.own_write(object) {
            return;
        }
        let policy_name = label(object, generate::POLICY_NAME);
        let policy_ns = label(object, generate::POLICY_NAMESPACE);
        let key = if policy_ns.is_empty() {
            policy_name.to_string()
        } else {
            format!("{policy_ns}/{policy_name}")
        };
        let Some(policy) = self.policy(&key) else {
            self.restore_cel(object, &key).await;
            return;
        };
        let rule = label(object, generate::RULE_NAME).to_string();
        if !generate::any_synchronized(&policy, std::slice::from_ref(&rule)) {
            return;
        }
        let Some(request) = self.trigger_request(object).await else {
            return;
        };
        let rules = vec![rule];
        if let Err(e) = self
            .generate_and_write(Arc::clone(&policy), request.clone(), rules.clone())
            .await
        {
            tracing::warn!(policy = %key, error = %e, "generated object not restored yet: queued to retry");
            let policy_key = format!("{}.kyverno.io/{}", policy.kind.as_str(), policy.key());
            let work = GenerateWork {
                request_type: RequestType::Generate,
                policy: &policy.key(),
                policy_key: &policy_key,
                rules,
                synchronize: true,
                delete_downstream: false,
                request_uid: &retry_uid(object),
                request: &request,
                namespace: &self.requests_namespace,
            };
            self.queue_retry(&work).await;
        }
    }

    /// Records a put-back that failed as an UpdateRequest, so that it is retried with backoff
    /// (and by the next leader) like admitted work, instead of waiting for the next edit.
    async fn queue_retry(&self, work: &GenerateWork<'_>) {
        let object = update_request::object(work);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), work.namespace, &queue::resource());
        let created = match serde_json::from_value::<DynamicObject>(object) {
            Ok(o) => api.create(&PostParams::default(), &o).await.map(|_| ()),
            Err(e) => {
                tracing::error!(error = %e, "retry UpdateRequest not built");
                return;
            }
        };
        match created {
            Ok(()) => tracing::info!("put-back queued as an UpdateRequest"),
            // Already queued for this change.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                tracing::warn!(error = %e, "retry UpdateRequest not created: the put-back waits for the next change")
            }
        }
    }

    /// Puts back an object a synchronized GeneratingPolicy wrote, by generating again for its
    /// trigger (gone with its trigger: nothing to put back).
    async fn restore_cel(&self, object: &DynamicObject, key: &str) {
        let Some(policy) = self
            .generating_policy(key)
            .filter(|p| p.evaluation.synchronize)
        else {
            return;
        };
        let Some(request) = self.trigger_request(object).await else {
            return;
        };
        if let Err(e) = self.cel_generate_and_write(policy, request.clone()).await {
            tracing::warn!(policy = %key, error = %e, "generated object not restored yet: queued to retry");
            let kind = if key.contains('/') {
                "NamespacedGeneratingPolicy"
            } else {
                "GeneratingPolicy"
            };
            let work = GenerateWork {
                request_type: RequestType::CelGenerate,
                policy: key,
                policy_key: &format!("{kind}.policies.kyverno.io/{key}"),
                rules: Vec::new(),
                synchronize: true,
                delete_downstream: false,
                request_uid: &retry_uid(object),
                request: &request,
                namespace: &self.requests_namespace,
            };
            self.queue_retry(&work).await;
        }
    }

    /// The trigger of a generated object as a CREATE request, generated for again to put the
    /// object back; `None` when the trigger is gone (or could not be read: logged).
    async fn trigger_request(&self, object: &DynamicObject) -> Option<AdmissionRequest> {
        let trigger = match self.trigger_of(object).await {
            Ok(t) => t?,
            Err(e) => {
                tracing::warn!(error = %e, "trigger of a generated object not found");
                return None;
            }
        };
        Some(AdmissionRequest {
            operation: Operation::Create,
            object: Arc::new(trigger),
            no_user_info: true,
            ..AdmissionRequest::default()
        })
    }

    /// The trigger an object was generated for, found by its uid.
    async fn trigger_of(&self, object: &DynamicObject) -> Result<Option<Value>, String> {
        let (group, version, kind) = (
            label(object, generate::TRIGGER_GROUP),
            label(object, generate::TRIGGER_VERSION),
            label(object, generate::TRIGGER_KIND),
        );
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let kinds = self.kinds.load();
        let Some(r) = kinds.by_api_version(&api_version, kind) else {
            return Ok(None);
        };
        let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
        let namespace = label(object, generate::TRIGGER_NAMESPACE);
        let api: Api<DynamicObject> = if r.namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        let uid = label(object, generate::TRIGGER_UID);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .items
            .into_iter()
            .find(|o| o.metadata.uid.as_deref() == Some(uid))
            .and_then(|o| {
                let mut v = serde_json::to_value(o).ok()?;
                v["apiVersion"] = json!(api_version);
                v["kind"] = json!(kind);
                Some(v)
            }))
    }
}
