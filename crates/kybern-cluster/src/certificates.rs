//! The webhook's certificates kept in Secrets: the leader creates and renews a CA and a serving
//! pair with kybern-webhook's certificate code (the same rotation timeline as file mode), every
//! replica copies the pair into its certificate folder, where the server's resolver picks it up
//! on new handshakes. The caBundle is every CA in the CA Secret, so a new CA is trusted before
//! it signs. A user-supplied Secret (or cert-manager's) can replace all of this.

use crate::error::ClusterError;
use crate::names::Names;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kybern_webhook::certs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// CA and pair created and renewed by the leader in kybern's Secrets.
    Managed,
    /// A `kubernetes.io/tls` Secret with `tls.crt`, `tls.key` and `ca.crt` made by someone else.
    Secret(String),
}

/// Keys of the CA Secret: the bundle and the signing key, plus the announced next CA.
const CA_KEYS: [(&str, &str); 4] = [
    ("tls.crt", certs::CA_CERT),
    ("tls.key", certs::CA_KEY),
    ("ca-next.crt", certs::NEXT_CA_CERT),
    ("ca-next.key", certs::NEXT_CA_KEY),
];
/// Keys of the pair Secret.
const PAIR_KEYS: [(&str, &str); 3] = [
    ("tls.crt", certs::TLS_CERT),
    ("tls.key", certs::TLS_KEY),
    ("ca.crt", certs::CA_CERT),
];

type Data = BTreeMap<String, String>;

fn data_of(secret: &Secret) -> Data {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

/// Writes `contents` when it differs from the file's; true when written.
fn write_if_changed(path: &Path, contents: &str) -> Result<bool, ClusterError> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == contents) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| ClusterError::Certificates(format!("{}: {e}", path.display()));
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(true)
}

/// Files of a folder under Secret keys.
fn read_keys(dir: &Path, keys: &[(&str, &str)]) -> Data {
    keys.iter()
        .filter_map(|(key, file)| {
            Some((
                key.to_string(),
                std::fs::read_to_string(dir.join(file)).ok()?,
            ))
        })
        .collect()
}

/// The certificates of one replica.
pub struct Certificates {
    secrets: Api<Secret>,
    names: Names,
    source: CertSource,
    /// What the server serves from (`tls.crt`, `tls.key`, `ca.crt`).
    serving_dir: PathBuf,
    /// The leader's working copy for creation and renewal.
    work_dir: PathBuf,
}

impl Certificates {
    pub fn new(client: kube::Client, names: Names, source: CertSource, dir: &Path) -> Self {
        Certificates {
            secrets: Api::namespaced(client, &names.namespace),
            names,
            source,
            serving_dir: dir.to_path_buf(),
            work_dir: dir.join("leader"),
        }
    }

    /// The serving certificate and key files.
    pub fn pair_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.serving_dir.join(certs::TLS_CERT),
            self.serving_dir.join(certs::TLS_KEY),
        )
    }

    fn pair_secret_name(&self) -> String {
        match &self.source {
            CertSource::Managed => self.names.pair_secret(),
            CertSource::Secret(name) => name.clone(),
        }
    }

    /// Leader work: creates the Secrets when missing and renews what is close to expiry.
    /// Returns true when a Secret was written.
    pub async fn reconcile(&self) -> Result<bool, ClusterError> {
        if self.source != CertSource::Managed {
            return Ok(false);
        }
        let ca = self.secrets.get_opt(&self.names.ca_secret()).await?;
        let pair = self.secrets.get_opt(&self.names.pair_secret()).await?;
        let (label_key, label_value) = self.names.cert_label();
        for s in [&ca, &pair].into_iter().flatten() {
            let managed = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&label_key))
                .is_some_and(|v| v == &label_value);
            if !managed {
                return Err(ClusterError::Certificates(format!(
                    "Secret {}/{} exists without the label {label_key}={label_value}: it is not managed by {}; remove it or give --tls-secret",
                    self.names.namespace,
                    s.metadata.name.as_deref().unwrap_or_default(),
                    self.names.product()
                )));
            }
        }
        let (ca_data, pair_data) = (
            ca.as_ref().map(data_of).unwrap_or_default(),
            pair.as_ref().map(data_of).unwrap_or_default(),
        );
        let work = self.work_dir.clone();
        let dns = self.names.dns_names();
        let (new_ca, new_pair) =
            tokio::task::spawn_blocking(move || renew_in(&work, &ca_data, &pair_data, &dns))
                .await
                .map_err(|e| ClusterError::Certificates(e.to_string()))??;
        let mut wrote = false;
        for (name, current, wanted) in [
            (self.names.ca_secret(), ca.as_ref().map(data_of), new_ca),
            (
                self.names.pair_secret(),
                pair.as_ref().map(data_of),
                new_pair,
            ),
        ] {
            if current.as_ref() == Some(&wanted) {
                continue;
            }
            let secret = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": self.names.namespace,
                    "labels": {label_key.clone(): label_value.clone()},
                },
                "type": "kubernetes.io/tls",
                "data": wanted.iter().map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.encode(v))).collect::<BTreeMap<_, _>>(),
            });
            self.secrets
                .patch(
                    &name,
                    &PatchParams::apply(self.names.field_manager()).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
            tracing::info!(secret = %name, "certificate Secret written");
            wrote = true;
        }
        Ok(wrote)
    }

    /// Every replica: copies the pair Secret into the serving folder. Returns the CA bundle
    /// (PEM) when the Secret exists, `None` while it does not.
    pub async fn mirror(&self) -> Result<Option<String>, ClusterError> {
        let name = self.pair_secret_name();
        let Some(secret) = self.secrets.get_opt(&name).await? else {
            return Ok(None);
        };
        let data = data_of(&secret);
        let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
            return Err(ClusterError::Certificates(format!(
                "Secret {}/{name} lacks tls.crt or tls.key",
                self.names.namespace
            )));
        };
        let bundle = match (&self.source, data.get("ca.crt")) {
            (_, Some(ca)) => ca.clone(),
            (CertSource::Managed, None) => {
                let ca = self.secrets.get_opt(&self.names.ca_secret()).await?;
                ca.as_ref()
                    .and_then(|s| data_of(s).get("tls.crt").cloned())
                    .unwrap_or_default()
            }
            (CertSource::Secret(_), None) => {
                return Err(ClusterError::Certificates(format!(
                    "Secret {}/{name} lacks ca.crt, which the webhook configurations need as caBundle",
                    self.names.namespace
                )));
            }
        };
        let dir = self.serving_dir.clone();
        let (cert, key, ca) = (cert.clone(), key.clone(), bundle.clone());
        tokio::task::spawn_blocking(move || -> Result<(), ClusterError> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ClusterError::Certificates(format!("{}: {e}", dir.display())))?;
            // The key first: the resolver reloads when the certificate's stamp moves.
            write_if_changed(&dir.join(certs::TLS_KEY), &key)?;
            write_if_changed(&dir.join(certs::TLS_CERT), &cert)?;
            write_if_changed(&dir.join(certs::CA_CERT), &ca)?;
            Ok(())
        })
        .await
        .map_err(|e| ClusterError::Certificates(e.to_string()))??;
        Ok(Some(bundle))
    }
}

/// Puts the Secrets' contents in `work`, creates or renews there, and returns what the CA and
/// pair Secrets must hold.
fn renew_in(
    work: &Path,
    ca: &Data,
    pair: &Data,
    dns: &[String],
) -> Result<(Data, Data), ClusterError> {
    let io = |e: std::io::Error| ClusterError::Certificates(format!("{}: {e}", work.display()));
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(io)?;
    for (data, keys) in [(ca, &CA_KEYS[..]), (pair, &PAIR_KEYS[..2])] {
        for (key, file) in keys {
            if let Some(v) = data.get(*key) {
                std::fs::write(work.join(file), v).map_err(io)?;
            }
        }
    }
    // A missing half cannot be completed from the other: start over with a new CA.
    let complete = [
        certs::CA_CERT,
        certs::CA_KEY,
        certs::TLS_CERT,
        certs::TLS_KEY,
    ]
    .iter()
    .all(|f| work.join(f).is_file());
    if !complete {
        for f in [
            certs::CA_CERT,
            certs::CA_KEY,
            certs::TLS_CERT,
            certs::TLS_KEY,
        ] {
            let _ = std::fs::remove_file(work.join(f));
        }
    }
    let generated = certs::ensure_generated(work, dns, &[])
        .map_err(|e| ClusterError::Certificates(e.to_string()))?;
    if generated.renewal != certs::Renewal::Nothing {
        tracing::info!(renewal = ?generated.renewal, "certificates renewed");
    }
    Ok((read_keys(work, &CA_KEYS), read_keys(work, &PAIR_KEYS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("kybern-cluster-certs-{tag}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn first_run_creates_a_ca_and_a_pair_and_a_second_run_keeps_them() {
        let dns = vec!["kybern-svc.kybern.svc".to_string()];
        let (ca, pair) = renew_in(temp("a").path(), &Data::new(), &Data::new(), &dns).unwrap();
        assert!(ca["tls.crt"].contains("BEGIN CERTIFICATE"));
        assert!(ca["tls.key"].contains("PRIVATE KEY"));
        assert_eq!(pair["ca.crt"], ca["tls.crt"]);
        let (ca2, pair2) = renew_in(temp("b").path(), &ca, &pair, &dns).unwrap();
        assert_eq!(ca2, ca, "nothing is close to expiry: the CA stays");
        assert_eq!(pair2, pair);
    }

    #[test]
    fn a_pair_without_its_ca_starts_over_with_a_new_ca() {
        let dns = vec!["s".to_string()];
        let (ca, pair) = renew_in(temp("c").path(), &Data::new(), &Data::new(), &dns).unwrap();
        let (ca2, _) = renew_in(temp("d").path(), &Data::new(), &pair, &dns).unwrap();
        assert_ne!(ca2["tls.crt"], ca["tls.crt"]);
    }
}
