//! `kybern controller --enable reports`: under its own Lease, watches every kind that policies
//! with `background: true` select, evaluates each resource when the watch lists it (on start,
//! after a policy change, and every interval: the watches are started again and list anew) and
//! when it changes, and keeps one report per resource with results. Memory holds, per resource
//! with a report, its UID, namespace and results hash; a report is written only when that hash
//! changes, and deleted when its resource or its last result goes.

use super::endpoint::{self, ReportMetrics};
use super::hash::{self, ResultsHash};
use super::merge::Part;
use super::scan::{self, ScanSettings};
use super::shape::{self, ReportApi, Subject};
use super::writer::{self, ReportSwitch, WriteSettings, Writer};
use crate::context::{CallLimits, ClusterContext};
use crate::discovery::Kinds;
use crate::error::ClusterError;
use crate::global_context::GlobalContext;
use crate::names::Names;
use crate::source::{self, PolicyDefaults, PolicySource};
use crate::watch::{Cache, Trim};
use crate::webhooks::Resource;
use arc_swap::ArcSwap;
use futures::StreamExt;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kybern_webhook::store::{PolicySet, PolicyStore};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch as channel};
use tokio_util::sync::CancellationToken;

/// Events handled per turn of the loop (their evaluations run together off the async threads).
const BATCH: usize = 256;

/// What the reports controller needs.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub kubeconfig: Option<PathBuf>,
    pub names: Names,
    pub identity: String,
    /// Where `/health/*` and `/metrics` are served; `None`: not served.
    pub listen: Option<std::net::SocketAddr>,
    /// Every resource is evaluated again this often.
    pub interval: Duration,
    pub scan: ScanSettings,
    pub write: WriteSettings,
    /// The report API written.
    pub api: ReportApi,
    /// Namespaces whose PolicyExceptions are honoured; empty: all.
    pub exception_namespaces: Vec<String>,
}

/// A running reports controller.
pub struct ReportController {
    pub leader: channel::Receiver<bool>,
    pub endpoint: Option<std::net::SocketAddr>,
    pub metrics: Arc<ReportMetrics>,
    stop: CancellationToken,
}

impl ReportController {
    /// Stops the work; the Lease is released once every loop has ended.
    pub async fn shutdown(self) {
        self.stop.cancel();
        drop(self.leader);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the reports controller.
pub async fn start(options: ReportOptions) -> Result<ReportController, ClusterError> {
    let stop = CancellationToken::new();
    let client = crate::serve::client(options.kubeconfig.as_deref()).await?;
    let lease_client = crate::serve::client(options.kubeconfig.as_deref()).await?;
    let names = options.names.clone();
    let kinds = Arc::new(ArcSwap::from_pointee(Kinds::discover(&client).await?));
    let leader = crate::leader::campaign(
        lease_client,
        &names.namespace,
        &names.reports_lease(),
        &options.identity,
        names.product(),
    )
    .await?;
    let store = Arc::new(
        PolicyStore::for_objects().with_exception_namespaces(options.exception_namespaces.clone()),
    );
    let (resources, _) = source::policy_resources(&kinds.load());
    let policies = PolicySource::spawn(
        &client,
        resources,
        Arc::clone(&store),
        PolicyDefaults::default(),
        &stop,
    );
    let ignored = Arc::new(Notify::new());
    let spawn = |group: &str, kind: &str, plural: &str, trim: Trim| {
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        Cache::spawn(
            client.clone(),
            ApiResource::from_gvk_with_plural(&gvk, plural),
            None,
            None,
            trim,
            Arc::clone(&ignored),
            &stop,
        )
    };
    let rbac = "rbac.authorization.k8s.io";
    let context = Arc::new(ClusterContext::new(
        client.clone(),
        [
            spawn("", "Namespace", "namespaces", Trim::Object),
            spawn("", "ConfigMap", "configmaps", Trim::Object),
            spawn(rbac, "RoleBinding", "rolebindings", Trim::Slim),
            spawn(
                rbac,
                "ClusterRoleBinding",
                "clusterrolebindings",
                Trim::Slim,
            ),
        ],
        Arc::clone(&kinds),
        Arc::new(GlobalContext::default()),
        CallLimits::default(),
    ));
    let metrics = Arc::new(ReportMetrics::new());
    let endpoint = match options.listen {
        Some(addr) => {
            let mut caches = policies.caches.clone();
            caches.extend(context.caches());
            Some(
                endpoint::serve(addr, Arc::clone(&metrics), caches, stop.clone())
                    .await
                    .map_err(|e| ClusterError::Server(format!("cannot listen on {addr}: {e}")))?,
            )
        }
        None => None,
    };
    let (dropped_tx, dropped_rx) = mpsc::unbounded_channel();
    let config_map = names.config_map();
    let switch_cache = Cache::spawn(
        client.clone(),
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        ),
        Some(&names.namespace),
        Some(format!("metadata.name={config_map}")),
        Trim::Object,
        Arc::new(Notify::new()),
        &stop,
    );
    let writer = Writer::spawn(
        client.clone(),
        format!("{}-reports", names.product()),
        options.write.clone(),
        Arc::clone(&metrics),
        dropped_tx,
        ReportSwitch::from_config_map(switch_cache, &names.namespace, &config_map),
        stop.clone(),
    );
    let (events_tx, events_rx) = mpsc::channel(BATCH * 4);
    let scanner = Scanner {
        client,
        store,
        context,
        kinds,
        settings: Arc::new(options.scan.clone()),
        api: options.api,
        metrics: Arc::clone(&metrics),
        writer,
        events: events_tx,
        entries: HashMap::new(),
        subjects: Vec::new(),
        epochs: HashMap::new(),
        epoch: 0,
        watching: None,
        admission_policies: Arc::new(BTreeSet::new()),
    };
    let task_stop = stop.clone();
    let task_leader = leader.clone();
    tokio::spawn(scanner.run(
        policies,
        task_leader,
        events_rx,
        dropped_rx,
        options.interval,
        task_stop,
    ));
    Ok(ReportController {
        leader,
        endpoint,
        metrics,
        stop,
    })
}

/// What is remembered of a resource with a report.
struct Tracked {
    /// `None`: unknown (the last write was dropped), so the next scan writes.
    hash: Option<ResultsHash>,
    /// Index into the subjects table (`apiVersion`, kind).
    subject: u16,
    namespace: Box<str>,
    /// The watch listing that last saw it.
    epoch: u64,
}

enum Event {
    /// A listing starts.
    Init,
    Object(DynamicObject),
    /// The listing is complete: what it did not see is gone.
    InitDone,
    Deleted(DynamicObject),
}

/// The watches of one policy generation.
struct Watching {
    generation: u64,
    policy_generation: u64,
    stop: CancellationToken,
    watched: BTreeSet<u16>,
    listing: BTreeSet<u16>,
}

struct Scanner {
    client: kube::Client,
    store: Arc<PolicyStore>,
    context: Arc<ClusterContext>,
    kinds: Arc<ArcSwap<Kinds>>,
    settings: Arc<ScanSettings>,
    api: ReportApi,
    metrics: Arc<ReportMetrics>,
    writer: Writer,
    events: mpsc::Sender<(u64, u16, Event)>,
    entries: HashMap<String, Tracked>,
    /// (`apiVersion`, kind) of scanned resources, interned.
    subjects: Vec<(String, String)>,
    /// The current listing epoch of each subject.
    epochs: HashMap<u16, u64>,
    epoch: u64,
    watching: Option<Watching>,
    /// Policies whose admission results reports keep ([`scan::admission_policies`]).
    admission_policies: Arc<BTreeSet<String>>,
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn api_version_of(r: &Resource) -> String {
    if r.group.is_empty() {
        r.version.clone()
    } else {
        format!("{}/{}", r.group, r.version)
    }
}

impl Scanner {
    async fn run(
        mut self,
        mut policies: PolicySource,
        mut leader: channel::Receiver<bool>,
        mut events: mpsc::Receiver<(u64, u16, Event)>,
        mut dropped: mpsc::UnboundedReceiver<String>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut loaded = false;
        let mut rescan_at = tokio::time::Instant::now() + interval;
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = leader.changed() => {}
                _ = policies.synced.changed() => {}
                Some(e) = events.recv() => batch.push(e),
                Some(name) = dropped.recv() => self.forget(&name),
                _ = tokio::time::sleep_until(rescan_at) => {
                    rescan_at = tokio::time::Instant::now() + interval;
                    if let Some(w) = &mut self.watching {
                        // Listing again re-evaluates every resource.
                        w.policy_generation = u64::MAX;
                    }
                }
            }
            while batch.len() < BATCH {
                match events.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            while let Ok(name) = dropped.try_recv() {
                self.forget(&name);
            }
            let leads = *leader.borrow();
            self.metrics.leader.set(i64::from(leads));
            if !leads {
                if let Some(w) = self.watching.take() {
                    w.stop.cancel();
                }
                continue;
            }
            if !self.store.is_ready() {
                continue;
            }
            if !loaded {
                self.load_existing().await;
                loaded = true;
            }
            let set = self.store.snapshot();
            if self
                .watching
                .as_ref()
                .is_none_or(|w| w.policy_generation != set.generation)
            {
                let objects: Vec<Value> = policies.objects().into_iter().map(|(_, o)| o).collect();
                self.restart(&set, &objects, &stop).await;
                continue;
            }
            self.handle(set, batch).await;
            self.metrics
                .reports
                .set(i64::try_from(self.entries.len()).unwrap_or(i64::MAX));
        }
        if let Some(w) = self.watching.take() {
            w.stop.cancel();
        }
    }

    fn forget(&mut self, name: &str) {
        if let Some(t) = self.entries.get_mut(name) {
            t.hash = None;
        }
    }

    fn intern(&mut self, api_version: &str, kind: &str) -> u16 {
        if let Some(i) = self
            .subjects
            .iter()
            .position(|(a, k)| a == api_version && k == kind)
        {
            return u16::try_from(i).unwrap_or(u16::MAX);
        }
        self.subjects
            .push((api_version.to_string(), kind.to_string()));
        u16::try_from(self.subjects.len() - 1).unwrap_or(u16::MAX)
    }

    /// Reads the reports that exist (theirs hashes), so a restart rewrites only what changed and
    /// removes reports of resources deleted meanwhile.
    async fn load_existing(&mut self) {
        let selector = format!("{}={}", shape::MANAGED_BY.0, shape::MANAGED_BY.1);
        for kind in [self.api.kind(true), self.api.kind(false)] {
            let api: Api<DynamicObject> =
                Api::all_with(self.client.clone(), &writer::report_resource(kind));
            let mut params = ListParams::default().labels(&selector).limit(500);
            loop {
                let list = match api.list_metadata(&params).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(%kind, error = %e, "existing reports not read; they are written again");
                        break;
                    }
                };
                for r in &list.items {
                    let m = &r.metadata;
                    let (Some(name), Some(owner)) = (
                        m.name.clone(),
                        m.owner_references.as_ref().and_then(|o| o.first()),
                    ) else {
                        continue;
                    };
                    let hash = m
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(hash::ANNOTATION))
                        .and_then(|h| ResultsHash::from_hex(h));
                    let subject = self.intern(&owner.api_version, &owner.kind);
                    self.entries.insert(
                        name,
                        Tracked {
                            hash,
                            subject,
                            namespace: m.namespace.clone().unwrap_or_default().into(),
                            epoch: 0,
                        },
                    );
                }
                match list.metadata.continue_ {
                    Some(c) if !c.is_empty() => params = params.continue_token(&c),
                    _ => break,
                }
            }
        }
    }

    /// Starts the watches of the kinds the current policies select (stopping the previous ones):
    /// their listings evaluate every resource again.
    async fn restart(&mut self, set: &PolicySet, objects: &[Value], stop: &CancellationToken) {
        let generation = match self.watching.take() {
            Some(w) => {
                w.stop.cancel();
                w.generation + 1
            }
            None => 1,
        };
        if let Ok(k) = Kinds::discover(&self.client).await {
            self.kinds.store(Arc::new(k));
        }
        let kinds = self.kinds.load();
        let admission_policies = scan::admission_policies(set);
        if !self.admission_policies.is_subset(&admission_policies) {
            // Admission results of a policy that went stay in reports until their next write:
            // write every report again (paced), this once.
            for t in self.entries.values_mut() {
                t.hash = None;
            }
        }
        self.admission_policies = Arc::new(admission_policies);
        let mut resources = scan::scanned_kinds(set, &kinds, &self.settings);
        for r in scan::cel_scanned_kinds(objects, &kinds, &self.settings) {
            if !resources.contains(&r) {
                resources.push(r);
            }
        }
        let watch_stop = stop.child_token();
        let mut watched = BTreeSet::new();
        for r in resources {
            let subject = self.intern(&api_version_of(&r), &r.kind);
            watched.insert(subject);
            let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
            spawn_watch(
                Api::all_with(self.client.clone(), &resource),
                generation,
                subject,
                self.events.clone(),
                watch_stop.clone(),
            );
        }
        tracing::info!(
            kinds = watched.len(),
            policies = set.policies.len(),
            "background scan started"
        );
        self.watching = Some(Watching {
            generation,
            policy_generation: set.generation,
            stop: watch_stop,
            listing: watched.clone(),
            watched,
        });
        if self.watching.as_ref().is_some_and(|w| w.listing.is_empty()) {
            self.sweep().await;
        }
    }

    /// Deletes the reports of resources whose kind is no longer scanned.
    async fn sweep(&mut self) {
        let Some(w) = &self.watching else { return };
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, t)| !w.watched.contains(&t.subject))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.clear(&uid).await;
        }
    }

    /// Removes a resource's background results from its report (admission results stay).
    async fn clear(&mut self, uid: &str) {
        if let Some(t) = self.entries.remove(uid) {
            let kind = self.api.kind(!t.namespace.is_empty());
            let mut metadata = json!({"name": uid});
            if !t.namespace.is_empty() {
                metadata["namespace"] = json!(&*t.namespace);
            }
            let report = json!({"kind": kind, "metadata": metadata, "results": []});
            self.writer
                .send(writer::Write::Merge {
                    report,
                    part: Part::Background {
                        admission_policies: self.admission_policies.clone(),
                    },
                })
                .await;
        }
    }

    /// Deletes the report of a resource that is gone.
    async fn delete(&mut self, uid: &str) {
        if let Some(t) = self.entries.remove(uid) {
            let kind = self.api.kind(!t.namespace.is_empty());
            self.writer
                .send(writer::Write::Delete {
                    kind,
                    namespace: t.namespace.into(),
                    name: uid.to_string(),
                })
                .await;
        }
    }

    async fn handle(&mut self, set: Arc<PolicySet>, batch: Vec<(u64, u16, Event)>) {
        let generation = self.watching.as_ref().map_or(0, |w| w.generation);
        let batch: Vec<(u16, Event)> = batch
            .into_iter()
            .filter(|(g, _, _)| *g == generation)
            .map(|(_, s, e)| (s, e))
            .collect();
        // Evaluate every object of the batch in one blocking task.
        let objects: Vec<(usize, Value)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, (s, e))| match e {
                Event::Object(o) => self.to_value(*s, o).map(|v| (i, v)),
                _ => None,
            })
            .collect();
        let (context, settings) = (Arc::clone(&self.context), Arc::clone(&self.settings));
        let eval_set = Arc::clone(&set);
        let evaluated: HashMap<usize, (Subject, Vec<Map<String, Value>>)> =
            tokio::task::spawn_blocking(move || {
                objects
                    .into_iter()
                    .filter_map(|(i, o)| {
                        let subject = Subject::of(&o)?;
                        let results =
                            scan::evaluate(&eval_set, context.as_ref(), Arc::new(o), &settings);
                        Some((i, (subject, results)))
                    })
                    .collect()
            })
            .await
            .unwrap_or_default();
        let mut evaluated = evaluated;
        for (i, (subject_index, event)) in batch.into_iter().enumerate() {
            match event {
                Event::Init => {
                    self.epoch += 1;
                    self.epochs.insert(subject_index, self.epoch);
                }
                Event::Object(_) => {
                    if let Some((subject, results)) = evaluated.remove(&i) {
                        self.metrics.scanned.inc();
                        self.record(subject_index, subject, results).await;
                    }
                }
                Event::Deleted(o) => {
                    if let Some(uid) = o.metadata.uid.as_deref() {
                        self.delete(uid).await;
                    }
                }
                Event::InitDone => {
                    let epoch = self.epochs.get(&subject_index).copied().unwrap_or(0);
                    let gone: Vec<String> = self
                        .entries
                        .iter()
                        .filter(|(_, t)| t.subject == subject_index && t.epoch < epoch)
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        self.delete(&uid).await;
                    }
                    let all_listed = match &mut self.watching {
                        Some(w) => w.listing.remove(&subject_index) && w.listing.is_empty(),
                        None => false,
                    };
                    if all_listed {
                        self.sweep().await;
                    }
                }
            }
        }
    }

    /// The object as the engine reads it, without managed fields.
    fn to_value(&self, subject: u16, o: &DynamicObject) -> Option<Value> {
        o.metadata.uid.as_ref()?;
        let (api_version, kind) = self.subjects.get(usize::from(subject))?;
        let mut v = serde_json::to_value(o).ok()?;
        let m = v.as_object_mut()?;
        m.insert("apiVersion".into(), Value::String(api_version.clone()));
        m.insert("kind".into(), Value::String(kind.clone()));
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        Some(v)
    }

    /// Writes a resource's report when its results changed; deletes it when none are left.
    async fn record(
        &mut self,
        subject_index: u16,
        subject: Subject,
        results: Vec<Map<String, Value>>,
    ) {
        if results.is_empty() {
            self.clear(&subject.uid).await;
            return;
        }
        let hash = ResultsHash::of(&results);
        let epoch = self
            .epochs
            .get(&subject_index)
            .copied()
            .unwrap_or(self.epoch);
        let t = self
            .entries
            .entry(subject.uid.clone())
            .or_insert_with(|| Tracked {
                hash: None,
                subject: subject_index,
                namespace: subject.namespace.clone().into(),
                epoch,
            });
        t.epoch = epoch;
        t.subject = subject_index;
        if t.hash == Some(hash) {
            return;
        }
        t.hash = Some(hash);
        let report = shape::report(self.api, &subject, results, hash, now_seconds());
        self.writer
            .send(writer::Write::Merge {
                report,
                part: Part::Background {
                    admission_policies: self.admission_policies.clone(),
                },
            })
            .await;
    }
}

fn spawn_watch(
    api: Api<DynamicObject>,
    generation: u64,
    subject: u16,
    events: mpsc::Sender<(u64, u16, Event)>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                e = stream.next() => match e { Some(e) => e, None => break },
            };
            let event = match event {
                Ok(watcher::Event::Init) => Event::Init,
                Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)) => Event::Object(o),
                Ok(watcher::Event::InitDone) => Event::InitDone,
                Ok(watcher::Event::Delete(o)) => Event::Deleted(o),
                Err(e) => {
                    tracing::warn!(error = %e, "watch of scanned resources failed; retrying");
                    continue;
                }
            };
            let sent = tokio::select! {
                _ = stop.cancelled() => break,
                s = events.send((generation, subject, event)) => s,
            };
            if sent.is_err() {
                break;
            }
        }
    });
}
