//! `kybern serve --cluster`: the admission webhook with policies, context and certificates from
//! the API. Every replica watches and serves; the Lease holder also writes the certificate
//! Secrets, the webhook configurations and policy status.

use crate::certificates::{CertSource, Certificates};
use crate::context::{CallLimits, ClusterContext};
use crate::discovery::Kinds;
use crate::error::ClusterError;
use crate::global_context::GlobalContext;
use crate::names::Names;
use crate::registration;
use crate::reports::admission::AdmissionReports;
use crate::reports::endpoint::ReportMetrics;
use crate::reports::scan::ScanSettings;
use crate::reports::shape::ReportApi;
use crate::reports::writer::{ReportSwitch, WriteSettings};
use crate::source::{self, PolicySource};
use crate::watch::{self, Cache, Trim};
use crate::webhooks::WebhookSettings;
use arc_swap::ArcSwap;
use kube::api::{ApiResource, GroupVersionKind};
use kybern_engine::request::AdmissionRequest;
use kybern_webhook::config::{TlsSource, WebhookConfig};
use kybern_webhook::decision::{Decision, Endpoint};
use kybern_webhook::filters::AdmissionFilters;
use kybern_webhook::store::PolicySet;
use kybern_webhook::store::PolicyStore;
use kybern_webhook::{AdmissionObserver, ExternalParts, ExtraMetrics, ReadinessCheck, Running};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch as channel};
use tokio_util::sync::CancellationToken;

/// How often the leader re-checks everything even without a change (the API server may have
/// lost a write, someone may have edited a webhook configuration).
const RESYNC: Duration = Duration::from_secs(30);
/// How often certificates are checked for renewal and copied from their Secret.
const CERT_CHECK: Duration = Duration::from_secs(10);
/// How often discovery runs again (CRDs installed after start-up).
const DISCOVERY_REFRESH: Duration = Duration::from_secs(60);

/// Everything `serve --cluster` needs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `None`: `$KUBECONFIG`, then the in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
    pub names: Names,
    /// The leader-election identity (the Pod's name).
    pub identity: String,
    pub certificates: CertSource,
    /// The serving certificate's working folder (writable).
    pub cert_dir: PathBuf,
    pub webhooks: WebhookSettings,
    /// The ConfigMap with Kyverno's `resourceFilters` and exclusions, in `names.namespace`.
    pub config_map: String,
    /// Defaults for policies that leave fields unset.
    pub defaults: source::PolicyDefaults,
    /// A watch failing longer than this makes the replica unready.
    pub stale_bound: Duration,
    /// Listen address and limits; the policy and TLS fields are set here.
    pub server: WebhookConfig,
    /// Admission results of policies that do not run in the background go to reports;
    /// `None`: they do not.
    pub admission_reports: Option<AdmissionReportOptions>,
    /// Registry access for `verifyImages`, `imageRegistry` context entries and image data;
    /// `None`: such lookups are rule errors.
    pub images: Option<crate::pull_secrets::ImageOptions>,
}

/// How admission results reach reports.
#[derive(Debug, Clone, Default)]
pub struct AdmissionReportOptions {
    pub api: ReportApi,
    pub scan: ScanSettings,
    pub writes: WriteSettings,
}

/// Tells every observer in turn.
struct Observers(Vec<Arc<dyn AdmissionObserver>>);

impl AdmissionObserver for Observers {
    fn admitted(
        &self,
        uid: &str,
        request: &Arc<AdmissionRequest>,
        set: &Arc<PolicySet>,
        endpoint: Endpoint,
        decision: &Decision,
    ) {
        for o in &self.0 {
            o.admitted(uid, request, set, endpoint, decision);
        }
    }
}

/// Connects to the API server.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(ClusterError::Api)
}

fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural)
}

fn rbac(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
        plural,
    )
}

/// Readiness over every watch.
struct WatchReadiness {
    caches: Vec<Cache>,
    bound: Duration,
}

impl ReadinessCheck for WatchReadiness {
    fn check(&self) -> Result<(), String> {
        watch::readiness(&self.caches, self.bound)
    }
}

/// Retries `f` until it succeeds, logging each failure: the API server may come up after kybern.
async fn until_ok<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0u32;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                attempts += 1;
                // The first misses are the normal start-up order (the leader is being elected).
                if attempts > 3 {
                    tracing::warn!(error = %e, "{what} failed; retrying");
                } else {
                    tracing::info!(error = %e, "{what} not done yet; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A running cluster-mode server.
pub struct ClusterServer {
    pub running: Running,
    /// The caBundle (PEM) in force.
    pub ca_bundle: channel::Receiver<String>,
    pub leader: channel::Receiver<bool>,
    /// Ends the background loops (leader work, certificates, discovery, watches' consumers).
    stop: CancellationToken,
}

impl ClusterServer {
    /// Stops serving and leader work; the Lease is released once every loop has ended.
    pub async fn shutdown(self) {
        self.stop.cancel();
        drop(self.leader);
        self.running.shutdown().await;
    }
}

/// Spawns `fut` until `stop` is cancelled.
fn spawn_until(
    stop: &CancellationToken,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = fut => {}
        }
    });
}

/// Starts everything and returns once the server listens (readiness follows the watches).
pub async fn start(options: ClusterOptions) -> Result<ClusterServer, ClusterError> {
    let stop = CancellationToken::new();
    let client = client(options.kubeconfig.as_deref()).await?;
    // Lease renewals get a client of their own.
    let lease_client = self::client(options.kubeconfig.as_deref()).await?;
    let names = options.names.clone();

    let kinds = until_ok("discovery", || Kinds::discover(&client)).await;
    let kinds = Arc::new(ArcSwap::from_pointee(kinds));

    let lease = names.leader_lease();
    let leader = until_ok("leader election", || {
        crate::leader::campaign(
            lease_client.clone(),
            &names.namespace,
            &lease,
            &options.identity,
            names.field_manager(),
        )
    })
    .await;

    // The server cannot listen before it has a certificate: the leader makes one, everyone
    // copies it.
    let certs = Arc::new(Certificates::new(
        client.clone(),
        names.clone(),
        options.certificates.clone(),
        &options.cert_dir,
    ));
    let bundle = until_ok("certificates", || {
        let certs = Arc::clone(&certs);
        let leads = *leader.borrow();
        async move {
            if leads {
                certs.reconcile().await?;
            }
            certs.mirror().await?.ok_or_else(|| {
                ClusterError::Certificates(
                    "waiting for the leader to create the serving certificate Secret".into(),
                )
            })
        }
    })
    .await;
    let (bundle_tx, bundle_rx) = channel::channel(bundle);

    let store = Arc::new(
        PolicyStore::for_objects()
            .with_exception_namespaces(options.server.exception_namespaces.clone())
            .with_background_controller(),
    );
    let (policy_resources, missing) = source::policy_resources(&kinds.load());
    for m in &missing {
        tracing::warn!(kind = %m, "the cluster does not serve this policy kind (its CRD is not installed); it is not watched");
    }
    let policies = PolicySource::spawn(
        &client,
        policy_resources,
        Arc::clone(&store),
        options.defaults.clone(),
        &stop,
    );

    let filters = Arc::new(ArcSwap::from_pointee(AdmissionFilters::default()));
    let config_loaded = Arc::new(Notify::new());
    let config_cache = source::spawn_config_map(
        &client,
        &names.namespace,
        &options.config_map,
        Arc::clone(&filters),
        Arc::clone(&config_loaded),
        &stop,
    );

    let bindings_changed = Arc::new(Notify::new());
    let spawn = |r: ApiResource, trim: Trim, n: Arc<Notify>| {
        Cache::spawn(client.clone(), r, None, None, trim, n, &stop)
    };
    // The webhook configurations themselves: one edited or deleted by someone else (a stale
    // caBundle fails every call) is written again at once, not at the next resync.
    let webhooks_changed = Arc::new(Notify::new());
    let webhook_caches: Vec<Cache> = [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ]
    .into_iter()
    .map(|kind| {
        let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
        let plural = format!("{}s", kind.to_ascii_lowercase());
        spawn(
            ApiResource::from_gvk_with_plural(&gvk, &plural),
            Trim::Slim,
            Arc::clone(&webhooks_changed),
        )
    })
    .collect();
    let ignored = Arc::new(Notify::new());
    let gce_caches: Vec<Cache> = kinds
        .load()
        .find("kyverno.io", "GlobalContextEntry", Some("v2alpha1"))
        .map(|r| {
            let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
            spawn(
                ApiResource::from_gvk_with_plural(&gvk, &r.plural),
                Trim::Object,
                Arc::clone(&ignored),
            )
        })
        .into_iter()
        .collect();
    let global = match gce_caches.first() {
        Some(c) => GlobalContext::spawn(client.clone(), c.clone(), &stop),
        None => Arc::new(GlobalContext::default()),
    };
    let context = Arc::new(ClusterContext::new(
        client.clone(),
        [
            spawn(
                core("Namespace", "namespaces"),
                Trim::Object,
                Arc::clone(&ignored),
            ),
            spawn(
                core("ConfigMap", "configmaps"),
                Trim::Object,
                Arc::clone(&ignored),
            ),
            spawn(
                rbac("RoleBinding", "rolebindings"),
                Trim::Object,
                Arc::clone(&bindings_changed),
            ),
            spawn(
                rbac("ClusterRoleBinding", "clusterrolebindings"),
                Trim::Slim,
                Arc::clone(&bindings_changed),
            ),
        ],
        Arc::clone(&kinds),
        global,
        CallLimits::default(),
    ));
    {
        let context = Arc::clone(&context);
        spawn_until(&stop, async move {
            loop {
                bindings_changed.notified().await;
                context.refresh_bindings();
            }
        });
    }

    let mut all_caches = policies.caches.clone();
    all_caches.push(config_cache.clone());
    all_caches.extend(context.caches());
    all_caches.extend(gce_caches);
    let readiness = Arc::new(WatchReadiness {
        caches: all_caches.clone(),
        bound: options.stale_bound,
    });

    let (cert, key) = certs.pair_paths();
    let mut server = options.server.clone();
    server.policy_paths = Vec::new();
    server.tls = TlsSource::Files { cert, key };
    server.config_map = None;
    let mut observers: Vec<Arc<dyn AdmissionObserver>> =
        vec![Arc::new(crate::background::queue::UpdateRequestQueue::new(
            client.clone(),
            &names.namespace,
            Arc::clone(&context),
        ))];
    let mut extra_metrics = None;
    if let Some(o) = &options.admission_reports {
        let metrics = Arc::new(ReportMetrics::new());
        observers.push(Arc::new(AdmissionReports::start(
            client.clone(),
            o.api,
            o.scan.clone(),
            o.writes.clone(),
            Arc::clone(&metrics),
            ReportSwitch::from_config_map(
                config_cache.clone(),
                &names.namespace,
                &options.config_map,
            ),
            stop.clone(),
        )));
        let families: ExtraMetrics = Arc::new(move || metrics.families());
        extra_metrics = Some(families);
    }
    let provider: Arc<dyn kybern_webhook::provider::RequestContext> = match &options.images {
        Some(images) => {
            let policies = Arc::clone(&store);
            spawn_until(
                &stop,
                crate::pull_secrets::keep_in_sync(
                    kube::Api::namespaced(client.clone(), &names.namespace),
                    images.clone(),
                    move || {
                        let set = policies.snapshot();
                        let mut names: Vec<String> = set
                            .policies
                            .iter()
                            .flat_map(|p| p.registry_secrets())
                            .map(str::to_string)
                            .collect();
                        names.sort();
                        names.dedup();
                        names
                    },
                ),
            );
            Arc::new(kybern_webhook::images::WithImages::new(
                context.clone(),
                Arc::clone(&images.lookups),
            ))
        }
        None => context.clone(),
    };
    let running = kybern_webhook::start_with(
        server,
        ExternalParts {
            store: Some(Arc::clone(&store)),
            provider: Some(provider),
            filters: Some(filters),
            readiness: Some(readiness),
            observer: Some(Arc::new(Observers(observers))),
            extra_metrics,
        },
    )
    .await
    .map_err(|e| ClusterError::Server(e.to_string()))?;

    // Staleness and leadership, as metrics.
    {
        let metrics = Arc::clone(&running.metrics);
        let caches = all_caches.clone();
        let leader = leader.clone();
        spawn_until(&stop, async move {
            loop {
                let stale = watch::staleness(&caches).as_secs();
                metrics
                    .watch_stale_seconds
                    .set(i64::try_from(stale).unwrap_or(i64::MAX));
                metrics.leader.set(i64::from(*leader.borrow()));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    // Certificates: the leader renews, everyone copies.
    {
        let certs = Arc::clone(&certs);
        let leader = leader.clone();
        spawn_until(&stop, async move {
            loop {
                tokio::time::sleep(CERT_CHECK).await;
                if *leader.borrow()
                    && let Err(e) = certs.reconcile().await
                {
                    tracing::warn!(error = %e, "certificate renewal failed");
                }
                match certs.mirror().await {
                    Ok(Some(b)) => {
                        bundle_tx.send_if_modified(|old| {
                            let changed = *old != b;
                            *old = b.clone();
                            changed
                        });
                    }
                    Ok(None) => tracing::warn!(
                        "the serving certificate Secret is gone; serving the last copy"
                    ),
                    Err(e) => tracing::warn!(error = %e, "serving certificate not copied"),
                }
            }
        });
    }

    // Discovery again from time to time, for kinds installed later.
    {
        let client = client.clone();
        let kinds = Arc::clone(&kinds);
        spawn_until(&stop, async move {
            loop {
                tokio::time::sleep(DISCOVERY_REFRESH).await;
                match Kinds::discover(&client).await {
                    Ok(k) => kinds.store(Arc::new(k)),
                    Err(e) => {
                        tracing::warn!(error = %e, "discovery failed; keeping the last answer")
                    }
                }
            }
        });
    }

    spawn_until(
        &stop,
        leader_loop(LeaderWork {
            client,
            store,
            policies,
            kinds,
            settings: options.webhooks.clone(),
            config_map: config_cache,
            config_loaded,
            webhooks_changed,
            _webhook_caches: webhook_caches,
            leader: leader.clone(),
            bundle: bundle_rx.clone(),
        }),
    );

    Ok(ClusterServer {
        running,
        ca_bundle: bundle_rx,
        leader,
        stop,
    })
}

struct LeaderWork {
    client: kube::Client,
    store: Arc<PolicyStore>,
    policies: PolicySource,
    kinds: Arc<ArcSwap<Kinds>>,
    settings: WebhookSettings,
    /// The Kyverno-format ConfigMap: its `webhooks` and `matchConditions` keys.
    config_map: Cache,
    config_loaded: Arc<Notify>,
    /// A webhook configuration changed (kybern's own writes too: then nothing differs).
    webhooks_changed: Arc<Notify>,
    /// Kept for their watches.
    _webhook_caches: Vec<Cache>,
    leader: channel::Receiver<bool>,
    bundle: channel::Receiver<String>,
}

/// Writes webhook configurations and status whenever the policies, the CA bundle or the
/// leadership change, and every [`RESYNC`]; only while leading and only from a synced store.
async fn leader_loop(mut w: LeaderWork) {
    loop {
        if *w.leader.borrow() && w.store.is_ready() {
            let objects = w.policies.objects();
            let status = w.store.status();
            let (good, errors) = registration::split_by_errors(&objects, &status);
            let bundle = w.bundle.borrow().clone();
            let kinds = w.kinds.load_full();
            let config_map = w.config_map.values().into_iter().next();
            let (settings, problems) = w.settings.with_config_map(config_map.as_ref());
            for p in problems {
                tracing::warn!(problem = %p, "ConfigMap value ignored");
            }
            match registration::apply_webhooks(&w.client, good, &settings, &bundle, kinds.as_ref())
                .await
            {
                Ok(desired) => {
                    for (policy, kind) in &desired.unresolved {
                        tracing::warn!(%policy, %kind, "the cluster serves no such kind; no webhook rule for it");
                    }
                    match registration::write_statuses(
                        &w.client,
                        &w.policies.caches,
                        &errors,
                        &desired,
                    )
                    .await
                    {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(policies = n, "policy status written"),
                        Err(e) => tracing::warn!(error = %e, "policy status not written"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook configurations not written"),
            }
        }
        tokio::select! {
            _ = w.policies.synced.changed() => {}
            _ = w.bundle.changed() => {}
            _ = w.config_loaded.notified() => {}
            _ = w.webhooks_changed.notified() => {}
            _ = w.leader.changed() => {
                tracing::info!(leader = *w.leader.borrow(), "leadership changed");
            }
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// Runs until `signal`, then drains in-flight requests.
pub async fn run(
    options: ClusterOptions,
    signal: impl std::future::Future<Output = ()>,
) -> Result<(), ClusterError> {
    let server = start(options).await?;
    signal.await;
    tracing::info!("shutting down: draining in-flight requests");
    server.shutdown().await;
    Ok(())
}

/// Removes the webhook configurations (the chart's pre-delete hook).
pub async fn delete_webhooks(
    kubeconfig: Option<&std::path::Path>,
    names: &Names,
) -> Result<usize, ClusterError> {
    let client = client(kubeconfig).await?;
    registration::delete_webhooks(&client, names).await
}
