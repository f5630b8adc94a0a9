//! Registry credentials from `kubernetes.io/dockerconfigjson` Secrets in kybern's namespace
//! (Kyverno's `--imagePullSecrets`, and the secrets policies name in
//! `imageRegistryCredentials.secrets`), read at start and again every [`REFRESH`] by default, so a
//! rotated secret is used without a restart.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kybern_webhook::images::ImageLookups;
use std::sync::Arc;
use std::time::Duration;

/// How often the secrets are read again, unless the options say otherwise.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Image lookups for the server and the pull secrets they authenticate with.
#[derive(Clone)]
pub struct ImageOptions {
    pub lookups: Arc<dyn ImageLookups>,
    /// Secret names in kybern's namespace.
    pub pull_secrets: Vec<String>,
    /// How often they are read again.
    pub refresh: Duration,
}

impl std::fmt::Debug for ImageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageOptions")
            .field("pull_secrets", &self.pull_secrets)
            .finish_non_exhaustive()
    }
}

/// Secret names with their docker config bytes.
type Found = Vec<(String, Vec<u8>)>;

/// Reads the secrets; a missing one or one without `.dockerconfigjson` is reported, the others
/// are still used.
async fn read(api: &Api<Secret>, names: &[String]) -> (Found, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(secret)) => {
                let data = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(".dockerconfigjson").or_else(|| d.get(".dockercfg")));
                match data {
                    Some(bytes) => found.push((name.clone(), bytes.0.clone())),
                    None => problems.push(format!("pull secret {name} has no .dockerconfigjson")),
                }
            }
            Ok(None) => problems.push(format!("pull secret {name} does not exist")),
            Err(e) => problems.push(format!("pull secret {name} could not be read: {e}")),
        }
    }
    (found, problems)
}

/// Keeps the lookups' credentials equal to the secrets until the task is dropped: those of the
/// options and those `policy_secrets` names at each read (the `imageRegistryCredentials.secrets`
/// of loaded policies; they authenticate every registry call, not only their rule's). Problems
/// are logged when they change, not on every read.
pub async fn keep_in_sync(
    api: Api<Secret>,
    options: ImageOptions,
    policy_secrets: impl Fn() -> Vec<String>,
) {
    let mut last: Option<(Found, Vec<String>)> = None;
    loop {
        let mut names = options.pull_secrets.clone();
        for name in policy_secrets() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let (found, problems) = read(&api, &names).await;
        let changed = last
            .as_ref()
            .is_none_or(|(f, p)| *f != found || *p != problems);
        if changed {
            let mut all = problems.clone();
            all.extend(options.lookups.use_pull_secrets(&found));
            for p in &all {
                tracing::warn!(problem = %p, "image pull secret not used");
            }
            tracing::info!(
                secrets = found.len(),
                "registry credentials taken from pull secrets"
            );
            last = Some((found, problems));
        }
        tokio::time::sleep(options.refresh).await;
    }
}
