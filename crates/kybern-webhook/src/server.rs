//! The HTTPS server: accept loop with a connection cap and TLS handshake timeout, hyper HTTP/2 or
//! HTTP/1.1 by ALPN with header read timeouts, the axum router, admission handlers that read
//! bounded bodies and run the engine on the blocking pool under a semaphore and a deadline,
//! policy and certificate polling, and graceful shutdown.

use crate::admission::{self, AdmissionResponse, ReviewResponse, Status};
use crate::budget::{BodyReservation, MemoryBudget};
use crate::certs::{self, CertError, CertResolver};
use crate::config::{TlsSource, WebhookConfig};
use crate::connections::{Admission, Slots};
use crate::decision::{self, Decision, Endpoint, Route};
use crate::error::ApiError;
use crate::filters::{self, AdmissionFilters};
use crate::metric_handles::PolicyLabelsRef;
use crate::metrics::{Metrics, RequestLabels, Shared};
use crate::provider::{ClusterResources, RequestContext};
use crate::routes;
use crate::store::PolicyStore;
use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kybern_engine::request::AdmissionRequest;
use kybern_engine::response::{FailureAction, RuleStatus, RuleType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("configuration: {0}")]
    Config(String),
}

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<PolicyStore>,
    pub provider: Arc<dyn RequestContext>,
    /// Further conditions of readiness (the cluster's watches), beside the policy store's.
    pub readiness: Option<Arc<dyn ReadinessCheck>>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<WebhookConfig>,
    /// The filters in force (replaced when the ConfigMap file changes).
    pub filters: Arc<ArcSwap<AdmissionFilters>>,
    /// Told of every admitted request that is not a dry run (background work hand-off).
    pub observer: Option<Arc<dyn AdmissionObserver>>,
    extra_metrics: Option<ExtraMetrics>,
    evaluations: Arc<Semaphore>,
    waiting_sets: Arc<crate::in_place::WaitingSets>,
    budget: Arc<MemoryBudget>,
}

/// A condition the server is ready only under; the cluster mode uses it for its watches.
pub trait ReadinessCheck: Send + Sync {
    /// `Err` names what is not ready.
    fn check(&self) -> Result<(), String>;
}

/// Told of admitted requests after the answer is decided; it must hand any work off and return
/// at once (it runs on the request path).
pub trait AdmissionObserver: Send + Sync {
    /// `uid` is the AdmissionRequest's; `set` the policy set the decision used; `endpoint` the
    /// webhook the request came to and `decision` what it answered.
    fn admitted(
        &self,
        uid: &str,
        request: &Arc<AdmissionRequest>,
        set: &Arc<crate::store::PolicySet>,
        endpoint: crate::decision::Endpoint,
        decision: &Decision,
    );
}

/// Parts supplied from outside instead of being built from [`WebhookConfig`]: the cluster mode
/// feeds the store from the API and answers lookups from its caches.
#[derive(Default)]
pub struct ExternalParts {
    /// A store the caller fills ([`PolicyStore::sync_objects`]); files are not scanned.
    pub store: Option<Arc<PolicyStore>>,
    pub provider: Option<Arc<dyn RequestContext>>,
    /// Filters the caller keeps up to date (the ConfigMap from the API).
    pub filters: Option<Arc<ArcSwap<AdmissionFilters>>>,
    pub readiness: Option<Arc<dyn ReadinessCheck>>,
    pub observer: Option<Arc<dyn AdmissionObserver>>,
    /// More metric families (OpenMetrics text without `# EOF`) served on `/metrics`.
    pub extra_metrics: Option<ExtraMetrics>,
}

/// Renders metric families owned outside the server.
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// A running server.
pub struct Running {
    pub local_addr: SocketAddr,
    /// The CA bundle (PEM) when the certificate was generated.
    pub ca_pem: Option<String>,
    pub store: Arc<PolicyStore>,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    poller: JoinHandle<()>,
}

impl Running {
    /// Waits until the first policy load has finished.
    pub async fn wait_ready(&self) {
        while !self.store.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops accepting, drains in-flight requests (up to the grace period) and returns.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        self.poller.abort();
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        self.shutdown().await;
    }
}

/// Builds the router (exposed for in-process tests).
pub fn router(state: AppState) -> Router {
    let admit = || {
        post(|st: State<AppState>, req: Request| async move {
            match routes::route_for(req.uri().path()) {
                Some(route) => handle_admission(st, req, route).await,
                None => Err(ApiError::NotFound),
            }
        })
    };
    let mut router = Router::new();
    for head in [
        "validate", "mutate", "vpol", "nvpol", "mpol", "nmpol", "gpol", "ngpol", "ivpol", "nivpol",
    ] {
        router = router
            .route(&format!("/{head}"), admit())
            .route(&format!("/{head}/{{*rest}}"), admit());
    }
    router
        .route("/policyvalidate", post(validate_policy))
        .route("/health/liveness", get(|| async { "ok" }))
        .route("/health/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Refuses a policy or exception that does not compile, with the error and its field path, as
/// Kyverno's policy webhook does; everything else (and DELETE) is allowed.
async fn validate_policy(State(st): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let limits = &st.config.limits;
    let (bytes, _reservation) = read_body(
        req.into_body(),
        limits.max_body_bytes,
        limits.body_read_timeout,
        &st.budget,
    )
    .await?;
    let (wire, uid) = admission::decode(&bytes, limits.max_object_depth)?;
    let issues = if wire.operation.eq_ignore_ascii_case("DELETE") {
        Vec::new()
    } else {
        let doc = wire.object.clone();
        tokio::task::spawn_blocking(move || crate::store::check_document(&doc))
            .await
            .unwrap_or_default()
    };
    let response = AdmissionResponse {
        uid,
        allowed: issues.is_empty(),
        status: (!issues.is_empty()).then(|| Status {
            status: "Failure",
            message: format!("the policy is invalid: {}", issues.join("; ")),
            details: None,
        }),
        patch: None,
        patch_type: None,
        warnings: Vec::new(),
    };
    Ok(axum::Json(ReviewResponse::new(response)).into_response())
}

async fn readiness(State(st): State<AppState>) -> Response {
    let status = st.store.status();
    let waiting = st.readiness.as_ref().and_then(|r| r.check().err());
    let ready = st.store.is_ready() && waiting.is_none();
    let body = serde_json::json!({
        "ready": ready,
        "waiting": waiting,
        "generation": status.generation,
        "policies": status.policies,
        "exceptions": status.exceptions,
        "errors": status.errors,
        "unsupported": status.unsupported,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        match &st.extra_metrics {
            Some(extra) => {
                let own = st.metrics.render();
                format!(
                    "{}{}# EOF\n",
                    own.strip_suffix("# EOF\n").unwrap_or(&own),
                    extra()
                )
            }
            None => st.metrics.render(),
        },
    )
        .into_response()
}

/// `?timeout=10s` as the API server sends it; absent, unparsable or non-positive: the default.
fn request_timeout(query: Option<&str>, default: Duration, max: Duration) -> Duration {
    let value = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="));
    let parsed = value
        .and_then(kybern_engine::duration::parse)
        .filter(|n| *n > 0)
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_nanos);
    parsed.unwrap_or(default).min(max)
}

/// Reads a body of at most `limit` bytes within `within`, charging its bytes to the body budget as
/// they arrive; the reservation is returned with the bytes.
async fn read_body(
    body: Body,
    limit: usize,
    within: Duration,
    budget: &MemoryBudget,
) -> Result<(Vec<u8>, BodyReservation<'_>), ApiError> {
    let read = async move {
        let mut body = body;
        let mut bytes = Vec::new();
        let mut reservation = budget.body();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| ApiError::BodyRead)?.into_data() else {
                continue;
            };
            let len = bytes.len().saturating_add(data.len());
            if len > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            reservation.grow_to(len)?;
            bytes.extend_from_slice(&data);
        }
        Ok((bytes, reservation))
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

/// Bodies up to this size are decoded on the async worker that read them.
const DECODE_IN_PLACE_BYTES: usize = 256 * 1024;

/// Sets the cancel flag when the handler is dropped (client gone) or finished.
struct CancelOnDrop(Arc<AtomicBool>);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn handle_admission(
    State(st): State<AppState>,
    req: Request,
    route: Route,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let limits = &st.config.limits;
    let timeout = request_timeout(
        req.uri().query(),
        limits.default_timeout,
        limits.max_timeout,
    );
    let explain = crate::trace::asked(req.uri().query());
    let deadline = started + timeout.saturating_sub(limits.answer_margin);
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(content_type.to_string()));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A declared length over the cap is refused before reading anything.
    if declared.is_some_and(|len| len > limits.max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge(limits.max_body_bytes));
    }
    // Memory is reserved before it is used: the body's bytes as they arrive, then the decoded
    // request by an estimate from the body's shape.
    let (bytes, body_reservation) = read_body(
        body,
        limits.max_body_bytes,
        limits.body_read_timeout,
        &st.budget,
    )
    .await?;
    let shape = admission::shape(&bytes);
    let _decoded_reservation = st
        .budget
        .reserve_decoded(
            crate::budget::estimate_decoded(bytes.len(), shape.values),
            deadline,
        )
        .await?;
    let max_depth = limits.max_object_depth;
    let in_place = bytes.len() <= crate::in_place::MAX_BODY_BYTES;
    // Decoding a large body takes milliseconds: off the async workers, so that it does not stall
    // handshakes and other requests; small ones are decoded in place (a thread hop costs more).
    let (wire, uid) = if bytes.len() > DECODE_IN_PLACE_BYTES {
        tokio::task::spawn_blocking(move || admission::decode_shaped(&bytes, shape, max_depth))
            .await
            .map_err(|e| ApiError::Internal(format!("decoding task failed: {e}")))??
    } else {
        admission::decode_shaped(&bytes, shape, max_depth)?
    };
    drop(body_reservation);
    if !st.store.is_ready() {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"code": 503, "message": "policies are not loaded yet"}})),
        )
            .into_response());
    }
    let provider = Arc::clone(&st.provider);
    // The request's own name: subresource objects (e.g. PodExecOptions) carry none.
    let name = wire.name.clone().unwrap_or_default();
    let labels_ns = admission::labels_namespace(&wire);
    let mut request = admission::to_engine_request(wire, |ns| provider.labels_of(ns))?;
    if request.namespace_labels.is_none() && !labels_ns.is_empty() && provider.labels_may_lag() {
        request.namespace_labels = namespace_labels_from_source(&provider, labels_ns).await?;
    }
    (request.roles, request.cluster_roles) = provider.roles_of(&request.user_info);
    if let Some(reason) = st.filters.load().skip_reason(&request, &name) {
        tracing::debug!(%reason, "admitted without evaluation");
        let response = AdmissionResponse {
            uid,
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
            warnings: Vec::new(),
        };
        return Ok(axum::Json(ReviewResponse::new(response)).into_response());
    }
    let set = st.store.snapshot();
    let request = Arc::new(request);

    let decision = evaluate(&st, &set, &request, &route, deadline, in_place).await;
    record_metrics(
        &st.metrics,
        &request,
        &decision,
        started.elapsed(),
        route.endpoint,
    );

    if decision.allowed
        && !request.dry_run
        && let Some(observer) = &st.observer
    {
        observer.admitted(&uid, &request, &set, route.endpoint, &decision);
    }
    let details = if explain {
        let (set, request, decision) = (Arc::clone(&set), Arc::clone(&request), decision.clone());
        let provider = Arc::clone(&st.provider);
        tokio::task::spawn_blocking(move || {
            crate::trace::details(&set, &request, &decision, provider.as_ref())
        })
        .await
        .ok()
    } else {
        None
    };
    if let Some(d) = &details {
        let trace: Vec<&str> = d.causes.iter().map(|c| c.message.as_str()).collect();
        tracing::info!(%uid, allowed = decision.allowed, trace = ?trace, "decision trace");
    }
    let response = AdmissionResponse {
        uid,
        allowed: decision.allowed,
        status: (!decision.allowed).then(|| Status {
            status: "Failure",
            message: decision.message.clone().unwrap_or_default(),
            details,
        }),
        patch: decision
            .patch
            .as_ref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p.to_string().as_bytes())),
        patch_type: decision.patch.as_ref().map(|_| "JSONPatch"),
        warnings: decision.warnings,
    };
    Ok(axum::Json(ReviewResponse::new(response)).into_response())
}

/// Labels of a namespace the provider's memory does not hold, asked from its source off the async
/// workers (the lookup may wait on the API server).
async fn namespace_labels_from_source(
    provider: &Arc<dyn RequestContext>,
    namespace: String,
) -> Result<Option<kybern_engine::context::Labels>, ApiError> {
    let p = Arc::clone(provider);
    let ns = namespace.clone();
    tokio::task::spawn_blocking(move || p.namespace_labels(&ns))
        .await
        .map_err(|e| ApiError::Internal(format!("namespace lookup task failed: {e}")))?
        .map_err(|e| ApiError::NamespaceLookup {
            namespace,
            reason: e.to_string(),
        })
}

async fn evaluate(
    st: &AppState,
    set: &Arc<crate::store::PolicySet>,
    request: &Arc<AdmissionRequest>,
    route: &Route,
    deadline: Instant,
    in_place: bool,
) -> Decision {
    if in_place && !st.waiting_sets.waits(set.generation) {
        // Only when a worker is free: the pool's bound on concurrent evaluations still holds.
        if let Ok(_permit) = st.evaluations.try_acquire() {
            let view = crate::in_place::NoWait::new(st.provider.as_ref());
            let never = AtomicBool::new(false);
            let d = decision::decide(set, &view, request, route, deadline, &never);
            if !view.waited() {
                if d.timed_out {
                    st.metrics.evaluation_timeouts.inc();
                }
                return d;
            }
            st.waiting_sets.remember(set.generation);
        }
    }
    let deadline_tokio = tokio::time::Instant::from_std(deadline);
    let permit =
        match tokio::time::timeout_at(deadline_tokio, Arc::clone(&st.evaluations).acquire_owned())
            .await
        {
            Ok(Ok(p)) => p,
            _ => {
                st.metrics.evaluation_timeouts.inc();
                return decision::decide_without_evaluation(
                    set,
                    request,
                    route,
                    "no evaluation worker became free before the deadline",
                );
            }
        };
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(Arc::clone(&cancel));
    let task = {
        let set = Arc::clone(set);
        let request = Arc::clone(request);
        let provider = Arc::clone(&st.provider);
        let cancel = Arc::clone(&cancel);
        let route = route.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            decision::decide(&set, provider.as_ref(), &request, &route, deadline, &cancel)
        })
    };
    match tokio::time::timeout_at(deadline_tokio + Duration::from_millis(50), task).await {
        Ok(Ok(d)) => {
            if d.timed_out {
                st.metrics.evaluation_timeouts.inc();
            }
            d
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "evaluation worker failed");
            decision::decide_without_evaluation(set, request, route, "evaluation failed")
        }
        Err(_) => {
            st.metrics.evaluation_timeouts.inc();
            decision::decide_without_evaluation(
                set,
                request,
                route,
                "evaluation did not finish before the deadline",
            )
        }
    }
}

/// Kyverno's label value for an operation.
fn operation_label(op: kybern_engine::request::Operation) -> &'static str {
    use kybern_engine::request::Operation;
    match op {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Connect => "connect",
    }
}

fn rule_type_label(t: RuleType) -> &'static str {
    match t {
        RuleType::Validation => "validate",
        RuleType::Mutation => "mutate",
        RuleType::Generation => "generate",
        RuleType::ImageVerify => "imageVerify",
    }
}

fn record_metrics(
    m: &Metrics,
    request: &AdmissionRequest,
    decision: &Decision,
    elapsed: Duration,
    endpoint: Endpoint,
) {
    let kind: Shared = Arc::new(request.gvk().kind);
    let namespace: Shared = Arc::new(request.namespace().to_string());
    let op = operation_label(request.operation);
    let req_labels = RequestLabels {
        resource_kind: Arc::clone(&kind),
        resource_namespace: Arc::clone(&namespace),
        resource_request_operation: op,
        request_allowed: decision.allowed,
    };
    m.admission_requests.get_or_create(&req_labels).inc();
    m.admission_review_duration
        .get_or_create(&req_labels)
        .observe(elapsed.as_secs_f64());
    // One lock each for every series the request records.
    let mut results = m.policy_result_handles.lock();
    let mut durations = m.policy_duration_handles.lock();
    for o in &decision.outcomes {
        let r = &o.response;
        let namespaced = !r.policy_namespace.is_empty();
        let series = PolicyLabelsRef {
            policy_validation_mode: if o.enforce { "enforce" } else { "audit" },
            policy_type: if namespaced { "namespaced" } else { "cluster" },
            policy_background_mode: o.background,
            policy_namespace: if namespaced { &r.policy_namespace } else { "-" },
            policy_name: &r.policy_name,
            resource_kind: kind.as_str(),
            resource_namespace: namespace.as_str(),
            resource_request_operation: op,
            rule_name: "",
            rule_result: "pass",
            rule_type: "validate",
            rule_execution_cause: "admission_request",
            dry_run: request.dry_run,
        }
        .for_policy();
        let mut worst = RuleStatus::Pass;
        for rule in &r.rules {
            let labels = series.rule(
                &rule.name,
                rule.status.as_str(),
                rule_type_label(rule.rule_type),
            );
            results
                .get(&labels, |l| m.policy_results.get_or_create(l).clone())
                .inc();
            worst = match (worst, rule.status) {
                (_, RuleStatus::Error) | (RuleStatus::Error, _) => RuleStatus::Error,
                (_, RuleStatus::Fail) | (RuleStatus::Fail, _) => RuleStatus::Fail,
                (_, RuleStatus::Warn) | (RuleStatus::Warn, _) => RuleStatus::Warn,
                (w, _) => w,
            };
            if rule.status == RuleStatus::Fail {
                let action = rule.failure_action.unwrap_or(if o.enforce {
                    FailureAction::Enforce
                } else {
                    FailureAction::Audit
                });
                tracing::info!(policy = %r.policy_name, rule = %rule.name, ?action, kind = %kind,
                    namespace = %namespace, message = %rule.message, "policy violation");
            }
        }
        if r.rules.is_empty() {
            continue;
        }
        let rule_type = match endpoint {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        };
        durations
            .get(&series.rule("", worst.as_str(), rule_type), |l| {
                m.policy_execution_duration.get_or_create(l).clone()
            })
            .observe(o.duration.as_secs_f64());
    }
}

/// Starts the server: certificate, listener, background policy load, polling and the accept loop.
pub async fn start(config: WebhookConfig) -> Result<Running, StartError> {
    start_with(config, ExternalParts::default()).await
}

/// [`start`] with parts supplied by the caller.
pub async fn start_with(
    config: WebhookConfig,
    parts: ExternalParts,
) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let provider = Arc::new(certs::crypto_provider());
    let (cert_path, key_path, ca_pem) = match &config.tls {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone(), None),
        TlsSource::Generated {
            dir,
            dns_names,
            ips,
        } => {
            let g = certs::ensure_generated(dir, dns_names, ips)?;
            log_renewal(dir, g.renewal);
            (g.cert, g.key, Some(g.ca_pem))
        }
    };
    let resolver = Arc::new(CertResolver::new(
        Arc::clone(&provider),
        cert_path,
        key_path,
    )?);
    let tls = certs::server_config(provider, Arc::clone(&resolver))?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));

    let provider: Arc<dyn RequestContext> = match (parts.provider, &config.cluster_resources) {
        (Some(p), _) => p,
        (None, Some(dir)) => {
            let (res, problems) = ClusterResources::load(dir);
            for p in problems {
                tracing::warn!(problem = %p, "cluster resource not loaded");
            }
            Arc::new(res)
        }
        (None, None) => Arc::new(ClusterResources::default()),
    };
    let filters = match parts.filters {
        Some(f) => f,
        None => Arc::new(ArcSwap::from_pointee(match &config.config_map {
            Some(path) => filters::read_config_map(path).map_err(StartError::Config)?,
            None => config.filters.clone(),
        })),
    };
    let scan_files = parts.store.is_none();
    let store = parts.store.unwrap_or_else(|| {
        Arc::new(
            PolicyStore::new(config.policy_paths.clone())
                .with_exception_namespaces(config.exception_namespaces.clone()),
        )
    });
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        store: Arc::clone(&store),
        provider,
        readiness: parts.readiness,
        observer: parts.observer,
        extra_metrics: parts.extra_metrics,
        metrics: Arc::clone(&metrics),
        config: Arc::clone(&config),
        filters: Arc::clone(&filters),
        evaluations: Arc::new(Semaphore::new(
            config.limits.max_concurrent_evaluations.max(1),
        )),
        waiting_sets: Arc::default(),
        budget: Arc::new(MemoryBudget::new(
            config.limits.body_budget_bytes,
            config.limits.memory_budget_bytes,
        )),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!(%local_addr, "admission webhook listening");

    let poller = tokio::spawn(poll(
        scan_files.then(|| Arc::clone(&store)),
        Arc::clone(&store),
        Arc::clone(&metrics),
        resolver,
        config.poll_interval,
        match &config.tls {
            TlsSource::Generated {
                dir,
                dns_names,
                ips,
            } => Some((dir.clone(), dns_names.clone(), ips.clone())),
            TlsSource::Files { .. } => None,
        },
        config.config_map.clone().map(|path| ConfigWatch {
            stamp: crate::store::stamp(&path),
            path,
            filters: Arc::clone(&filters),
        }),
    ));
    let (tx, rx) = oneshot::channel();
    let app = router(state);
    let task = tokio::spawn(accept_loop(
        listener,
        acceptor,
        app,
        Arc::clone(&config),
        rx,
    ));
    Ok(Running {
        local_addr,
        ca_pem,
        store,
        metrics,
        shutdown: Some(tx),
        task,
        poller,
    })
}

/// The `kyverno` ConfigMap file and the filters it sets.
struct ConfigWatch {
    path: std::path::PathBuf,
    stamp: Option<crate::store::Stamp>,
    filters: Arc<ArcSwap<AdmissionFilters>>,
}

impl ConfigWatch {
    /// Re-reads the file when it changed; a version that does not load keeps the last good one.
    fn reload_if_changed(&mut self) {
        let now = crate::store::stamp(&self.path);
        if now == self.stamp {
            return;
        }
        self.stamp = now;
        match filters::read_config_map(&self.path) {
            Ok(f) => {
                self.filters.store(Arc::new(f));
                tracing::info!(file = %self.path.display(), "configuration reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "configuration does not load; the last good version stays in force")
            }
        }
    }
}

/// How often generated certificates are checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);

/// Renews generated certificates close to expiry; the resolver picks the new files up.
fn renew_certificates(dir: &std::path::Path, dns_names: &[String], ips: &[std::net::IpAddr]) {
    match certs::renew_generated(dir, dns_names, ips, time::OffsetDateTime::now_utc()) {
        Ok(r) => log_renewal(dir, r),
        Err(e) => tracing::error!(error = %e, "certificate renewal failed"),
    }
}

fn log_renewal(dir: &std::path::Path, renewal: certs::Renewal) {
    let bundle = || {
        let pem = std::fs::read(dir.join(certs::CA_CERT)).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(pem)
    };
    match renewal {
        certs::Renewal::Nothing => {}
        certs::Renewal::Serving => {
            tracing::info!(dir = %dir.display(), "serving certificate renewed by the same CA");
        }
        certs::Renewal::AnnouncedCa => tracing::warn!(
            dir = %dir.display(),
            ca_bundle = %bundle(),
            "a new CA was added to the bundle and signs in 30 days: put this caBundle in the webhook configurations before then"
        ),
        certs::Renewal::SwitchedCa => tracing::warn!(
            dir = %dir.display(),
            ca_bundle = %bundle(),
            "the announced CA now signs the serving certificate"
        ),
        certs::Renewal::ReplacedEndedCa => tracing::warn!(
            dir = %dir.display(),
            ca_bundle = %bundle(),
            "the CA had ended and was replaced: put this caBundle in the webhook configurations now"
        ),
    }
}

/// Loads policies now and whenever files change; reloads the certificate when its files change;
/// renews generated certificates before they expire.
async fn poll(
    scan: Option<Arc<PolicyStore>>,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    resolver: Arc<CertResolver>,
    every: Duration,
    generated: Option<(std::path::PathBuf, Vec<String>, Vec<std::net::IpAddr>)>,
    mut config_watch: Option<ConfigWatch>,
) {
    let mut known_errors = Vec::new();
    let mut last_renewal_check = Instant::now();
    loop {
        if let Some(w) = config_watch.as_mut() {
            w.reload_if_changed();
        }
        if let Some((dir, names, ips)) = &generated
            && last_renewal_check.elapsed() >= RENEWAL_CHECK
        {
            last_renewal_check = Instant::now();
            let (dir, names, ips) = (dir.clone(), names.clone(), ips.clone());
            let _ =
                tokio::task::spawn_blocking(move || renew_certificates(&dir, &names, &ips)).await;
        }
        if let Some(s) = scan.clone()
            && tokio::task::spawn_blocking(move || s.reload())
                .await
                .is_err()
        {
            tracing::error!("policy reload failed");
        }
        let status = store.status();
        for e in &status.errors {
            if !known_errors.contains(e) {
                metrics
                    .policy_load_errors
                    .get_or_create(&crate::metrics::labels(&[("file", &e.file)]))
                    .inc();
            }
        }
        known_errors = status.errors;
        metrics
            .policies_loaded
            .set(i64::try_from(status.policies).unwrap_or(i64::MAX));
        metrics
            .policy_set_generation
            .set(i64::try_from(status.generation).unwrap_or(i64::MAX));
        let r = Arc::clone(&resolver);
        let _ = tokio::task::spawn_blocking(move || r.reload_if_changed()).await;
        tokio::time::sleep(every).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    config: Arc<WebhookConfig>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Slots::new(config.limits.max_connections);
    loop {
        let (tcp, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(c) => c,
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let slot = match slots.admit().await {
            Admission::Admitted(s) => s,
            Admission::AdmittedByEviction(s) => {
                tracing::debug!(%peer, "connection limit reached; the oldest idle connection was closed");
                s
            }
            Admission::Refused => {
                tracing::warn!(%peer, "connection limit reached by connections serving requests; closing connection");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limits = config.limits.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let slot = Arc::new(slot);
            let close = Arc::clone(&slot.close);
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let tls = tokio::select! {
                res = handshake => match res {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                () = close.notified() => {
                    tracing::debug!(%peer, "closed during the TLS handshake to make room");
                    return;
                }
            };
            // HTTP/2 only when negotiated by ALPN, as Go's server does over TLS: a client that
            // offers no ALPN gets HTTP/1.1 rather than a guess from its first bytes.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let seen_request = Arc::new(AtomicBool::new(false));
            let service = {
                let seen = Arc::clone(&seen_request);
                let slot = Arc::clone(&slot);
                let inner = TowerToHyperService::new(app);
                hyper::service::service_fn(move |req| {
                    if !seen.swap(true, Ordering::Relaxed) {
                        slot.serving();
                    }
                    hyper::service::Service::call(&inner, req)
                })
            };
            let builder = connection_builder(&limits, h2);
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(tls), service));
            tokio::pin!(conn);
            // HTTP/2 has no header read timeout: a connection whose first request does not
            // arrive in that time is closed instead (Go's server bounds the preface likewise).
            let first_request = tokio::time::sleep(limits.header_read_timeout);
            let result = tokio::select! {
                res = &mut conn => res,
                () = first_request => {
                    if !seen_request.load(Ordering::Relaxed) {
                        tracing::debug!(%peer, "no request before the header read timeout");
                        return;
                    }
                    conn.await
                }
                () = close.notified() => {
                    // Told to close while a first request was already arriving: it is served.
                    if !seen_request.load(Ordering::Relaxed) {
                        tracing::debug!(%peer, "idle connection closed to make room");
                        return;
                    }
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(config.limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// Streams one HTTP/2 connection may carry at once (Go's server default).
const H2_MAX_CONCURRENT_STREAMS: u32 = 250;
/// Ping an idle HTTP/2 peer this often and drop it when no answer comes in time: connections
/// from a vanished API server do not hold a connection slot forever.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Decoded request headers per HTTP/2 stream; an AdmissionReview POST carries a few hundred bytes.
const H2_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// A connection builder for the negotiated protocol, with the limits of each.
fn connection_builder(
    limits: &crate::config::Limits,
    h2: bool,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_read_timeout))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_header_list_size(H2_MAX_HEADER_LIST_BYTES);
    if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_query_is_parsed_and_bounded() {
        let d = Duration::from_secs(10);
        let max = Duration::from_secs(30);
        assert_eq!(
            request_timeout(Some("timeout=5s"), d, max),
            Duration::from_secs(5)
        );
        assert_eq!(request_timeout(Some("timeout=999999s"), d, max), max);
        assert_eq!(request_timeout(Some("timeout=0s"), d, max), d);
        assert_eq!(request_timeout(Some("timeout=garbage"), d, max), d);
        assert_eq!(request_timeout(None, d, max), d);
    }
}
