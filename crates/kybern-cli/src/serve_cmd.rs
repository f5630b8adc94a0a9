//! `kybern serve`: the admission webhook over HTTPS, policies from files. Flags are resolved into
//! the webhook crate's [`WebhookConfig`]; every flag can also come from a `KYBERN_*` variable.

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
    /// Kyverno's `kyverno` ConfigMap (YAML or JSON): its `resourceFilters` and
    /// `excludeUsernames`/`excludeGroups`/`excludeRoles`/`excludeClusterRoles` are applied; the file
    /// is re-read when it changes.
    #[arg(long = "config", env = "KYBERN_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ServeArgs {
    /// Resolves flags into the server configuration.
    fn config(&self) -> Result<WebhookConfig> {
        if self.policies.is_empty() {
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
        Ok(WebhookConfig {
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

async fn shutdown_signal() {
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

/// Runs the server until SIGTERM or Ctrl-C.
pub fn execute(args: &ServeArgs) -> Result<i32> {
    let config = args.config()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KYBERN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = kybern_webhook::start(config)
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
