//! `kybern crds`, `kybern webhooks delete` and `kybern controller`: the cluster-side verbs that
//! are not the admission server.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Flags of `kybern webhooks`.
#[derive(Debug, clap::Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub action: WebhooksAction,
}

/// What to do with the webhook configurations.
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksAction {
    /// Delete the webhook configurations kybern wrote (run before uninstalling, so that no
    /// request waits on a webhook that is gone).
    Delete {
        /// Kubeconfig file (default: $KUBECONFIG, then the in-cluster configuration).
        #[arg(long, env = "KYBERN_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Which names kybern ran with: `kybern` or `kyverno`.
        #[arg(long, env = "KYBERN_NAMES", default_value = "kybern")]
        names: kybern_cluster::names::Scheme,
    },
}

/// Prints every CRD as YAML.
pub fn crds() -> Result<i32> {
    print!("{}", kybern_cluster::crds::yaml());
    Ok(0)
}

/// Runs a `webhooks` action.
pub fn webhooks(args: &WebhooksArgs) -> Result<i32> {
    match &args.action {
        WebhooksAction::Delete { kubeconfig, names } => {
            let names = kybern_cluster::names::Names::new(*names, "", None);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let deleted = runtime
                .block_on(kybern_cluster::serve::delete_webhooks(
                    kubeconfig.as_deref(),
                    &names,
                ))
                .context("cannot delete the webhook configurations")?;
            println!("deleted {deleted} webhook configurations");
            Ok(0)
        }
    }
}

/// Flags of `kybern controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then the in-cluster configuration).
    #[arg(long, env = "KYBERN_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of kybern's Leases and UpdateRequests (as `serve --cluster`).
    #[arg(long, env = "KYBERN_NAMESPACE", default_value = "kybern")]
    pub namespace: String,
    /// Object names: `kybern` or `kyverno` (as `serve --cluster`).
    #[arg(long, env = "KYBERN_NAMES", default_value = "kybern")]
    pub names: kybern_cluster::names::Scheme,
    /// Parts to run (comma separated): `background` (generate and mutate-existing rules),
    /// `reports` (background scan into policy reports), `cleanup` (cleanup policies,
    /// DeletingPolicies and TTL labels).
    #[arg(
        long,
        env = "KYBERN_ENABLE",
        value_delimiter = ',',
        default_value = "background"
    )]
    pub enable: Vec<String>,
    /// Leader-election identity (the Pod's name; default: the host name).
    #[arg(long = "pod-name", env = "KYBERN_POD_NAME")]
    pub pod_name: Option<String>,
    /// Address of the plain-HTTP health and metrics endpoint (`/health/liveness`,
    /// `/health/readiness`, `/metrics`).
    #[arg(long, env = "KYBERN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// Honour PolicyExceptions only from these namespaces (comma separated; default: every
    /// namespace), as `serve --exception-namespace`.
    #[arg(
        long = "exception-namespace",
        env = "KYBERN_EXCEPTION_NAMESPACES",
        value_delimiter = ','
    )]
    pub exception_namespaces: Vec<String>,
    #[command(flatten)]
    pub reports: crate::report_cmd::ReportsArgs,
}

/// Runs the background controller until SIGTERM or Ctrl-C.
pub fn controller(args: &ControllerArgs) -> Result<i32> {
    for part in &args.enable {
        match part.as_str() {
            "background" | "reports" | "cleanup" => {}
            other => bail!("--enable {other}: unknown part (background, reports, cleanup)"),
        }
    }
    let background = args.enable.iter().any(|p| p == "background");
    let reports = args.enable.iter().any(|p| p == "reports");
    let cleanup = args.enable.iter().any(|p| p == "cleanup");
    let report_settings = args.reports.settings()?;
    let identity = args.pod_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("kybern-{}", std::process::id()))
    });
    let names = kybern_cluster::names::Names::new(args.names, &args.namespace, None);
    // One endpoint per process: the background part's when it runs (the reports metrics join
    // it), else the reports part's.
    let report_options = kybern_cluster::reports::controller::ReportOptions {
        kubeconfig: args.kubeconfig.clone(),
        names: names.clone(),
        identity: identity.clone(),
        listen: (!background).then_some(args.listen),
        interval: report_settings.interval,
        scan: report_settings.scan,
        write: report_settings.write,
        api: report_settings.api,
        exception_namespaces: args.exception_namespaces.clone(),
    };
    let mut cleanup_options = kybern_cluster::cleanup::controller::CleanupOptions::new(
        args.kubeconfig.clone(),
        names.clone(),
        identity.clone(),
    );
    // Alone, the cleanup part serves the endpoint; beside background, its metrics join that one.
    cleanup_options.listen = (!background && !reports).then_some(args.listen);
    let options = kybern_cluster::background::controller::ControllerOptions {
        kubeconfig: args.kubeconfig.clone(),
        names,
        identity,
        listen: Some(args.listen),
        exception_namespaces: args.exception_namespaces.clone(),
    };
    crate::serve_cmd::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let controller = match background {
            true => Some(
                kybern_cluster::background::controller::start(options)
                    .await
                    .context("cannot start the controller")?,
            ),
            false => None,
        };
        let report_controller = match reports {
            true => Some(
                kybern_cluster::reports::controller::start(report_options)
                    .await
                    .context("cannot start the reports controller")?,
            ),
            false => None,
        };
        // Beside background, the reports part's metrics join that endpoint.
        if let (Some(c), Some(r)) = (&controller, &report_controller) {
            let m = std::sync::Arc::clone(&r.metrics);
            let _ = c
                .metrics
                .also
                .set(std::sync::Arc::new(move || m.families()));
        }
        cleanup_options.metrics = controller
            .as_ref()
            .map(|c| std::sync::Arc::clone(&c.metrics));
        let cleanup_part = match cleanup {
            true => Some(
                kybern_cluster::cleanup::controller::start(cleanup_options)
                    .await
                    .context("cannot start the cleanup part")?,
            ),
            false => None,
        };
        crate::serve_cmd::shutdown_signal().await;
        if let Some(c) = cleanup_part {
            c.shutdown().await;
        }
        if let Some(c) = controller {
            c.shutdown().await;
        }
        if let Some(c) = report_controller {
            c.shutdown().await;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}
