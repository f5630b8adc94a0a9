//! Registry credentials from docker config files (`~/.docker/config.json`, `$DOCKER_CONFIG`) and
//! from `kubernetes.io/dockerconfigjson` secrets, which share the format. Credential helpers
//! (`credsStore`, `credHelpers`) are not run.

use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A user name and password (or identity token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

/// Credentials by registry host, as written in a docker config's `auths`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    by_registry: BTreeMap<String, Credential>,
}

/// A docker config could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("docker config {source_name}: {reason}")]
pub struct CredentialsError {
    pub source_name: String,
    pub reason: String,
}

/// The key of a registry in `auths`: `https://host/v1/` and `host` name the same registry.
fn normalize(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

impl Credentials {
    /// Reads the `auths` of a docker config (or `.dockerconfigjson`) document.
    pub fn from_docker_config(bytes: &[u8], source_name: &str) -> Result<Self, CredentialsError> {
        let err = |reason: String| CredentialsError {
            source_name: source_name.to_string(),
            reason,
        };
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| err(format!("not JSON: {e}")))?;
        let mut out = Credentials::default();
        let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
            return Ok(out);
        };
        for (registry, entry) in auths {
            let text = |k: &str| {
                entry
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let credential = if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| err(format!("auths.{registry}.auth is not base64: {e}")))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| err(format!("auths.{registry}.auth is not UTF-8")))?;
                let (user, pass) = decoded
                    .split_once(':')
                    .ok_or_else(|| err(format!("auths.{registry}.auth is not user:password")))?;
                Credential {
                    username: user.to_string(),
                    password: pass.to_string(),
                }
            } else if !text("identitytoken").is_empty() {
                // Docker sends an identity token as the password of the user `<token>`.
                Credential {
                    username: "<token>".to_string(),
                    password: text("identitytoken"),
                }
            } else if !text("username").is_empty() {
                Credential {
                    username: text("username"),
                    password: text("password"),
                }
            } else {
                continue;
            };
            out.by_registry.insert(normalize(registry), credential);
        }
        Ok(out)
    }

    /// Reads a docker config file.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let bytes = std::fs::read(path).map_err(|e| CredentialsError {
            source_name: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_docker_config(&bytes, &path.display().to_string())
    }

    /// The docker config the docker CLI would read: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`. No file: no credentials.
    pub fn from_environment() -> Result<Self, CredentialsError> {
        let path = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".docker").join("config.json"),
                None => return Ok(Credentials::default()),
            },
        };
        if !path.exists() {
            return Ok(Credentials::default());
        }
        Self::from_file(&path)
    }

    /// Adds `other`'s credentials; those already present win.
    pub fn merge(&mut self, other: Credentials) {
        for (k, v) in other.by_registry {
            self.by_registry.entry(k).or_insert(v);
        }
    }

    /// The credential for a registry host (`host[:port]`).
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.by_registry.get(&normalize(registry))
    }

    /// True when no registry has credentials.
    pub fn is_empty(&self) -> bool {
        self.by_registry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_username_and_identity_token_forms_are_read() {
        let config = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "127.0.0.1:5001": {"username": "kybern", "password": "secret"},
            "ghcr.io": {"identitytoken": "tok"},
            "empty.example": {}
        }}"#;
        let c = Credentials::from_docker_config(config, "config.json").unwrap();
        assert_eq!(c.get("index.docker.io").unwrap().username, "user");
        assert_eq!(c.get("docker.io").unwrap().password, "pass");
        assert_eq!(c.get("127.0.0.1:5001").unwrap().password, "secret");
        assert_eq!(c.get("ghcr.io").unwrap().username, "<token>");
        assert!(c.get("empty.example").is_none());
    }

    #[test]
    fn bad_configs_name_the_source_and_field() {
        let e = Credentials::from_docker_config(b"{", "pull-secret").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("docker config pull-secret: not JSON")
        );
        let e = Credentials::from_docker_config(br#"{"auths": {"r.io": {"auth": "!!"}}}"#, "c")
            .unwrap_err();
        assert!(
            e.to_string().contains("auths.r.io.auth is not base64"),
            "{e}"
        );
    }
}
