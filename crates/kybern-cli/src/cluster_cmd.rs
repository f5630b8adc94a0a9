//! `kybern crds` and `kybern webhooks delete`: the cluster-side verbs that are not the server.

use anyhow::{Context, Result};
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
