//! `kybern serve`: the admission webhook over HTTPS, policies from files, or with `--cluster`
//! policies, context and certificates from the Kubernetes API. Flags are resolved into the
//! webhook crate's [`WebhookConfig`] (and the cluster crate's options); every flag can also come
//! from a `KYBERN_*` variable.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use kybern_webhook::config::{Limits, TlsSource, WebhookConfig};
use kybern_webhook::filters::AdmissionFilters;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `kybern serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KYBERN_LISTEN", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// Policy and PolicyException files or folders (repeatable; comma separated in the variable).
    #[arg(long = "policies", env = "KYBERN_POLICIES", value_delimiter = ',')]
    pub policies: Vec<PathBuf>,
    /// Namespaces, ConfigMaps and other objects that context entries and namespaceSelector read.
    #[arg(long = "cluster-resources", env = "KYBERN_CLUSTER_RESOURCES")]
    pub cluster_resources: Option<PathBuf>,
    /// Serving certificate (PEM); requires --key.
    #[arg(long, env = "KYBERN_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM); requires --cert.
    #[arg(long, env = "KYBERN_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Folder for the generated CA and serving certificate (used when --cert is not given).
    #[arg(
        long = "cert-dir",
        env = "KYBERN_CERT_DIR",
        default_value = "kybern-certs"
    )]
    pub cert_dir: PathBuf,
    /// DNS names of the generated certificate (repeatable).
    #[arg(long = "dns-name", env = "KYBERN_DNS_NAMES", value_delimiter = ',')]
    pub dns_names: Vec<String>,
    /// IP addresses of the generated certificate (repeatable).
    #[arg(long = "ip", env = "KYBERN_IPS", value_delimiter = ',')]
    pub ips: Vec<IpAddr>,
    /// Seconds between checks of policy and certificate files for changes.
    #[arg(
        long = "poll-interval",
        env = "KYBERN_POLL_INTERVAL",
        default_value_t = 2
    )]
    pub poll_interval: u64,
    /// Largest accepted request body in bytes.
    #[arg(long = "max-body-bytes", env = "KYBERN_MAX_BODY_BYTES", default_value_t = 7 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Evaluations running at once (default: the number of CPUs).
    #[arg(long = "max-evaluations", env = "KYBERN_MAX_EVALUATIONS")]
    pub max_evaluations: Option<usize>,
    /// Open connections at once (default 1024); when all are taken, the oldest connection that
    /// has not sent a request yet is closed for a new one.
    #[arg(long = "max-connections", env = "KYBERN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds allowed for a TLS handshake (default 10).
    #[arg(long = "handshake-timeout", env = "KYBERN_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<u64>,
    /// Seconds allowed to receive a request's headers, and that an idle keep-alive connection is
    /// kept (default 10).
    #[arg(long = "header-read-timeout", env = "KYBERN_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// Seconds allowed to receive a request's body (default 10).
    #[arg(long = "body-read-timeout", env = "KYBERN_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Option<u64>,
    /// MiB of request bodies read at once (default 64); a body that finds no room gets 503.
    #[arg(long = "body-budget-mib", env = "KYBERN_BODY_BUDGET_MIB")]
    pub body_budget_mib: Option<usize>,
    /// MiB of decoded requests evaluated at once, by an estimate from each body's shape (default
    /// 128); a request that finds no room before its deadline, or needs more, gets 503.
    #[arg(long = "memory-budget-mib", env = "KYBERN_MEMORY_BUDGET_MIB")]
    pub memory_budget_mib: Option<usize>,
    /// Kyverno's `kyverno` ConfigMap (YAML or JSON): its `resourceFilters` and
    /// `excludeUsernames`/`excludeGroups`/`excludeRoles`/`excludeClusterRoles` are applied; the file
    /// is re-read when it changes.
    #[arg(long = "config", env = "KYBERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Honour PolicyExceptions only from these namespaces (comma separated; default: every
    /// namespace). Others are reported and ignored, so that whoever may create an exception in
    /// some namespace cannot switch policies off (Kyverno's `--exceptionNamespace`).
    #[arg(
        long = "exception-namespace",
        env = "KYBERN_EXCEPTION_NAMESPACES",
        value_delimiter = ','
    )]
    pub exception_namespaces: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub registry: crate::provider::RegistryArgs,
}

/// The registry client as the server's image lookups (`verifyImages` signatures and digests,
/// image data).
pub(crate) struct RegistryLookups(pub std::sync::Arc<kybern_registry::Registry>);

mod registry_lookups {
    use super::RegistryLookups;
    use kybern_engine::context::{
        AttestationOutcome, ImageData, ProviderError, SignatureCheck, SignatureOutcome,
    };
    use kybern_registry::credentials::Credentials;
    use kybern_webhook::images::ImageLookups;

    impl ImageLookups for RegistryLookups {
        fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
            self.0
                .image_data(image)
                .map(|data| ImageData { data })
                .map_err(|e| ProviderError::Failed(e.to_string()))
        }
        fn verify_image_signature(
            &self,
            check: &SignatureCheck,
        ) -> Result<SignatureOutcome, ProviderError> {
            self.0.verify_for_provider(check)
        }
        fn verify_image_attestations(
            &self,
            check: &SignatureCheck,
        ) -> Result<AttestationOutcome, ProviderError> {
            self.0.attestations_for_provider(check)
        }
        fn image_digest(&self, image: &str) -> Result<String, ProviderError> {
            self.0.digest_for_provider(image)
        }
        fn use_pull_secrets(&self, secrets: &[(String, Vec<u8>)]) -> Vec<String> {
            let mut all = Credentials::default();
            let mut errors = Vec::new();
            for (name, bytes) in secrets {
                match Credentials::from_docker_config(bytes, &format!("pull secret {name}")) {
                    Ok(c) => all.merge(c),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            self.0.set_pull_secret_credentials(all);
            errors
        }
    }
}

/// Flags of `kybern serve --cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Run inside Kubernetes: policies, exceptions and context from the API, certificates in
    /// Secrets, webhook configurations written by the elected leader.
    #[arg(long, env = "KYBERN_CLUSTER")]
    pub cluster: bool,
    /// Kubeconfig file (default: $KUBECONFIG, then the in-cluster configuration).
    #[arg(long, env = "KYBERN_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of kybern's Secrets, Lease and ConfigMap (never sent to the webhooks).
    #[arg(long, env = "KYBERN_NAMESPACE", default_value = "kybern")]
    pub namespace: String,
    /// The Service the API server calls (default: kybern-svc, or kyverno-svc with --names kyverno).
    #[arg(long = "service-name", env = "KYBERN_SERVICE_NAME")]
    pub service_name: Option<String>,
    /// Object names: `kybern`, or `kyverno` to use Kyverno's (webhook configurations, Secrets,
    /// Lease, ConfigMap), so that tools written for Kyverno find them.
    #[arg(long, env = "KYBERN_NAMES", default_value = "kybern")]
    pub names: kybern_cluster::names::Scheme,
    /// A `kubernetes.io/tls` Secret (tls.crt, tls.key, ca.crt) made by you or cert-manager;
    /// kybern then creates no certificate of its own.
    #[arg(long = "tls-secret", env = "KYBERN_TLS_SECRET")]
    pub tls_secret: Option<String>,
    /// `kubernetes.io/dockerconfigjson` Secrets in --namespace whose credentials registry calls
    /// use (with --registry; read again every 30 s).
    #[arg(
        long = "image-pull-secrets",
        env = "KYBERN_IMAGE_PULL_SECRETS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub image_pull_secrets: Vec<String>,
    /// failurePolicy for policies that set none: Fail (Kyverno's default) or Ignore.
    #[arg(long = "failure-policy", env = "KYBERN_FAILURE_POLICY", value_parser = ["Fail", "Ignore"])]
    pub failure_policy: Option<String>,
    /// Webhook timeout for policies that set none, in seconds (at most 30).
    #[arg(
        long = "webhook-timeout",
        env = "KYBERN_WEBHOOK_TIMEOUT",
        default_value_t = 10
    )]
    pub webhook_timeout: u64,
    /// Namespaces never sent to the webhooks, besides kybern's own (comma separated).
    #[arg(
        long = "exclude-namespaces",
        env = "KYBERN_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub exclude_namespaces: Vec<String>,
    /// The ConfigMap (Kyverno's format) with resourceFilters and exclusions (default: kybern,
    /// or kyverno with --names kyverno).
    #[arg(long = "config-map", env = "KYBERN_CONFIG_MAP")]
    pub config_map: Option<String>,
    /// Leader-election identity (the Pod's name; default: the host name).
    #[arg(long = "pod-name", env = "KYBERN_POD_NAME")]
    pub pod_name: Option<String>,
    /// `https://host:port`: webhook configurations call this URL instead of the Service (kybern
    /// running outside the cluster).
    #[arg(long = "webhook-url", env = "KYBERN_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Seconds a watch may keep failing before the replica reports itself unready.
    #[arg(long = "stale-after", env = "KYBERN_STALE_AFTER", default_value_t = 60)]
    pub stale_after: u64,
    #[command(flatten)]
    pub reports: crate::report_cmd::AdmissionReportsArgs,
}

impl ClusterArgs {
    fn names(&self) -> kybern_cluster::names::Names {
        kybern_cluster::names::Names::new(self.names, &self.namespace, self.service_name.as_deref())
    }
}

impl ServeArgs {
    /// Resolves flags into the server configuration.
    fn config(&self) -> Result<WebhookConfig> {
        if self.policies.is_empty() && !self.cluster.cluster {
            bail!("give at least one --policies folder or file (or KYBERN_POLICIES)");
        }
        let tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsSource::Generated {
                dir: self.cert_dir.clone(),
                dns_names: self.dns_names.clone(),
                ips: self.ips.clone(),
            },
        };
        let mut limits = Limits {
            max_body_bytes: self.max_body_bytes,
            ..Limits::default()
        };
        if let Some(n) = self.max_evaluations {
            limits.max_concurrent_evaluations = n.max(1);
        }
        if let Some(n) = self.max_connections {
            limits.max_connections = n.max(1);
        }
        let seconds = |s: u64| Duration::from_secs(s.max(1));
        if let Some(s) = self.handshake_timeout {
            limits.handshake_timeout = seconds(s);
        }
        if let Some(s) = self.header_read_timeout {
            limits.header_read_timeout = seconds(s);
        }
        if let Some(s) = self.body_read_timeout {
            limits.body_read_timeout = seconds(s);
        }
        if let Some(m) = self.body_budget_mib {
            limits.body_budget_bytes = m.max(1).saturating_mul(1024 * 1024);
        }
        if let Some(m) = self.memory_budget_mib {
            limits.memory_budget_bytes = m.max(1).saturating_mul(1024 * 1024);
        }
        Ok(WebhookConfig {
            exception_namespaces: self.exception_namespaces.clone(),
            listen: self.listen,
            policy_paths: self.policies.clone(),
            cluster_resources: self.cluster_resources.clone(),
            tls,
            poll_interval: Duration::from_secs(self.poll_interval.max(1)),
            limits,
            filters: AdmissionFilters::default(),
            config_map: self.config.clone(),
        })
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs to stderr, filtered by `KYBERN_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KYBERN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `serve --cluster`: resolves the cluster options and runs until a signal.
fn execute_cluster(args: &ServeArgs, server: WebhookConfig) -> Result<i32> {
    use kybern_cluster::certificates::CertSource;
    let c = &args.cluster;
    if !c.image_pull_secrets.is_empty() && !args.registry.registry {
        bail!("--image-pull-secrets is used by registry calls: add --registry");
    }
    if !args.policies.is_empty() || args.cluster_resources.is_some() || args.config.is_some() {
        bail!(
            "--policies, --cluster-resources and --config read files; with --cluster they come from the API (the ConfigMap named by --config-map)"
        );
    }
    if c.webhook_timeout == 0 || c.webhook_timeout > 30 {
        bail!("--webhook-timeout must be between 1 and 30 seconds (the API server's bounds)");
    }
    let names = c.names();
    let identity = match &c.pod_name {
        Some(p) => p.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("kybern-{}", std::process::id())),
    };
    let options = kybern_cluster::serve::ClusterOptions {
        kubeconfig: c.kubeconfig.clone(),
        identity,
        certificates: match &c.tls_secret {
            Some(s) => CertSource::Secret(s.clone()),
            None => CertSource::Managed,
        },
        cert_dir: args.cert_dir.clone(),
        webhooks: kybern_cluster::webhooks::WebhookSettings {
            names: names.clone(),
            default_timeout_seconds: c.webhook_timeout,
            exclude_namespaces: c.exclude_namespaces.clone(),
            url_base: c.webhook_url.clone(),
            namespace_selector: None,
            object_selector: None,
            match_conditions: Vec::new(),
        },
        config_map: c.config_map.clone().unwrap_or_else(|| names.config_map()),
        stale_bound: Duration::from_secs(c.stale_after.max(1)),
        defaults: kybern_cluster::source::PolicyDefaults {
            failure_policy: c.failure_policy.clone(),
        },
        names,
        server,
        admission_reports: c.reports.options()?,
        images: args
            .registry
            .build()?
            .map(|registry| kybern_cluster::pull_secrets::ImageOptions {
                lookups: std::sync::Arc::new(RegistryLookups(registry)),
                pull_secrets: c.image_pull_secrets.clone(),
                refresh: kybern_cluster::pull_secrets::REFRESH,
            }),
    };
    init_logging();
    runtime()?.block_on(kybern_cluster::serve::run(options, shutdown_signal()))?;
    Ok(0)
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn execute(args: &ServeArgs) -> Result<i32> {
    let config = args.config()?;
    if args.cluster.cluster {
        return execute_cluster(args, config);
    }
    init_logging();
    let mut parts = kybern_webhook::ExternalParts::default();
    if let Some(registry) = args.registry.build()? {
        let inner = match &args.cluster_resources {
            Some(dir) => {
                let (resources, problems) = kybern_webhook::provider::ClusterResources::load(dir);
                for p in problems {
                    eprintln!("warning: cluster resource not loaded: {p}");
                }
                resources
            }
            None => kybern_webhook::provider::ClusterResources::default(),
        };
        parts.provider = Some(std::sync::Arc::new(
            kybern_webhook::images::WithImages::new(
                std::sync::Arc::new(inner),
                std::sync::Arc::new(RegistryLookups(registry)),
            ),
        ));
    }
    let runtime = runtime()?;
    runtime.block_on(async {
        let running = kybern_webhook::start_with(config, parts)
            .await
            .context("cannot start the webhook")?;
        if let Some(ca) = &running.ca_pem {
            eprintln!(
                "CA bundle of the generated certificate ({}):",
                args.cert_dir.join("ca.crt").display()
            );
            print!("{ca}");
            println!(
                "caBundle: {}",
                base64::engine::general_purpose::STANDARD.encode(ca.as_bytes())
            );
        }
        running.run_until(shutdown_signal()).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}
