//! The registry client: a synchronous face over `oci-client` for callers that are not async (the
//! engine's context providers), with per-call time limits, size limits on blobs, credentials and
//! the plain-HTTP rule.

use crate::credentials::Credentials;
use crate::reference::{self, is_loopback};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::Digest as _;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Media types a manifest request accepts: images and indexes, OCI and Docker (a registry
/// answers MANIFEST_UNKNOWN when the stored type is not listed).
pub(crate) const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How the registry client behaves.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Credentials by registry.
    pub credentials: Credentials,
    /// Extra CA certificates (PEM) trusted for registries.
    pub ca_certificates: Vec<Vec<u8>>,
    /// Upper bound for one call (a manifest, a blob, a tag resolution), connection included.
    pub timeout: Duration,
    /// Upper bound for one blob (signature payloads, configs).
    pub max_blob_bytes: usize,
    /// Upper bound for one manifest or index.
    pub max_manifest_bytes: usize,
    /// How long a verified signature is remembered (by digest, never by tag).
    pub cache_ttl: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            credentials: Credentials::default(),
            ca_certificates: Vec::new(),
            timeout: Duration::from_secs(15),
            max_blob_bytes: 4 << 20,
            max_manifest_bytes: 4 << 20,
            cache_ttl: Duration::from_secs(600),
        }
    }
}

/// Why a registry call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RegistryError {
    /// The registry could not be reached or did not answer in time (or answered 5xx).
    #[error("{0}")]
    Unreachable(String),
    /// The registry answered that the manifest or blob does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Any other refusal or bad answer (authentication, digest mismatch, oversized data).
    #[error("{0}")]
    Failed(String),
}

/// Whether a request failed before any answer: no connection, a timeout, or a connection
/// dropped while sending (a pooled keep-alive connection to a registry that went away fails
/// this way rather than as a connect error).
fn never_answered(e: &reqwest::Error) -> bool {
    e.status().is_none() && (e.is_connect() || e.is_timeout() || e.is_request())
}

fn classify(what: &str, e: OciDistributionError) -> RegistryError {
    match &e {
        OciDistributionError::RequestError(r) if never_answered(r) => {
            RegistryError::Unreachable(format!("{what}: registry unreachable: {e}"))
        }
        OciDistributionError::RequestError(r)
            if r.status().is_some_and(|s| s.is_server_error()) =>
        {
            RegistryError::Unreachable(format!("{what}: {e}"))
        }
        OciDistributionError::ServerError { code, .. } if *code >= 500 => {
            RegistryError::Unreachable(format!("{what}: {e}"))
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => {
            RegistryError::NotFound(format!("{what}: not found"))
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                let code = format!("{:?}", x.code).to_ascii_uppercase();
                code.contains("UNKNOWN")
            }) =>
        {
            RegistryError::NotFound(format!("{what}: not found"))
        }
        _ => RegistryError::Failed(format!("{what}: {e}")),
    }
}

/// Collects a blob, refusing more than `limit` bytes.
struct Bounded {
    data: Vec<u8>,
    limit: usize,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.data.len().saturating_add(buf.len()) > self.limit {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "blob is larger than {} bytes",
                self.limit
            ))));
        }
        self.data.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A registry client shared by all evaluations of a process.
pub struct Registry {
    config: RegistryConfig,
    runtime: tokio::runtime::Runtime,
    /// One client per registry host: the scheme (HTTP or HTTPS) is decided per host.
    clients: Mutex<HashMap<String, Arc<Client>>>,
    /// Plain HTTP client for manifests, read with a size bound.
    http: reqwest::Client,
    /// Verified signatures by digest, key and constraints, with the time they were verified.
    pub(crate) verified: Mutex<HashMap<String, (Instant, String)>>,
    /// Credentials from pull secrets, replaced while running; the configured ones come first.
    pull_secrets: std::sync::RwLock<Credentials>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client with its own small runtime for the network calls.
    pub fn new(config: RegistryConfig) -> Result<Registry, RegistryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kybern-registry")
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Failed(format!("cannot start the registry client: {e}")))?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(5));
        for pem in &config.ca_certificates {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RegistryError::Failed(format!("bad CA certificate: {e}")))?;
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http
            .build()
            .map_err(|e| RegistryError::Failed(format!("cannot start the registry client: {e}")))?;
        Ok(Registry {
            config,
            http,
            runtime,
            clients: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            pull_secrets: std::sync::RwLock::new(Credentials::default()),
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Runs a registry call to completion within the configured time, from any thread (also from
    /// one that is itself inside an async runtime, where it waits on a helper thread).
    pub(crate) fn run<T: Send>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, RegistryError>> + Send,
    ) -> Result<T, RegistryError> {
        let timeout = self.config.timeout;
        let bounded = async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(RegistryError::Unreachable(format!(
                    "{what}: no answer within {} s",
                    timeout.as_secs_f32()
                ))),
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| self.runtime.block_on(bounded))
                    .join()
                    .unwrap_or_else(|_| {
                        Err(RegistryError::Failed(format!(
                            "{what}: registry call panicked"
                        )))
                    })
            })
        } else {
            self.runtime.block_on(bounded)
        }
    }

    /// True when this registry host is reached over plain HTTP.
    pub fn uses_http(&self, registry: &str) -> bool {
        is_loopback(registry) || self.config.insecure.iter().any(|h| h == registry)
    }

    pub(crate) fn client(&self, reference: &Reference) -> Arc<Client> {
        let host = reference.resolve_registry().to_string();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let http = self.uses_http(&host) || self.uses_http(reference.registry());
        clients
            .entry(host)
            .or_insert_with(|| {
                let config = ClientConfig {
                    protocol: if http {
                        ClientProtocol::Http
                    } else {
                        ClientProtocol::Https
                    },
                    extra_root_certificates: self
                        .config
                        .ca_certificates
                        .iter()
                        .map(|pem| Certificate {
                            encoding: CertificateEncoding::Pem,
                            data: pem.clone(),
                        })
                        .collect(),
                    read_timeout: Some(self.config.timeout),
                    connect_timeout: Some(self.config.timeout.min(Duration::from_secs(5))),
                    platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
                    ..ClientConfig::default()
                };
                Arc::new(Client::new(config))
            })
            .clone()
    }

    /// Replaces the credentials taken from pull secrets (`kubernetes.io/dockerconfigjson`).
    pub fn set_pull_secret_credentials(&self, credentials: Credentials) {
        match self.pull_secrets.write() {
            Ok(mut c) => *c = credentials,
            Err(poisoned) => *poisoned.into_inner() = credentials,
        }
    }

    pub(crate) fn auth(&self, reference: &Reference) -> RegistryAuth {
        let find = |creds: &Credentials| {
            creds
                .get(reference.registry())
                .or_else(|| creds.get(reference.resolve_registry()))
                .map(|c| RegistryAuth::Basic(c.username.clone(), c.password.clone()))
        };
        if let Some(auth) = find(&self.config.credentials) {
            return auth;
        }
        let secrets = match self.pull_secrets.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        find(&secrets).unwrap_or(RegistryAuth::Anonymous)
    }

    /// The digest an image reference resolves to (the digest itself when it has one; for a
    /// tag, the digest of the manifest or index the registry serves for it).
    pub fn resolve_digest(&self, image: &str) -> Result<String, RegistryError> {
        let reference =
            reference::parse(image).map_err(|e| RegistryError::Failed(e.to_string()))?;
        if let Some(d) = reference.digest() {
            return Ok(d.to_string());
        }
        let (_, digest) = self.manifest(&reference)?;
        Ok(digest)
    }

    /// A manifest (image or index) as the registry serves it, at most `max_manifest_bytes`,
    /// with its digest: computed from the content, and checked against the reference's digest
    /// and the registry's `Docker-Content-Digest`.
    pub fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String), RegistryError> {
        let client = self.client(reference);
        let auth = self.auth(reference);
        let what = format!("manifest of {reference}");
        let limit = self.config.max_manifest_bytes;
        let host = reference.resolve_registry();
        let scheme = if self.uses_http(host) || self.uses_http(reference.registry()) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{host}/v2/{}/manifests/{}",
            reference.repository(),
            reference.digest().or(reference.tag()).unwrap_or("latest")
        );
        self.run(&what, async {
            // The client does the authentication dance (anonymous, basic or bearer token).
            let token = client
                .auth(reference, &auth, oci_client::RegistryOperation::Pull)
                .await
                .map_err(|e| classify(&what, e))?;
            let mut request = self
                .http
                .get(&url)
                .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "));
            request = match (&token, &auth) {
                (Some(t), _) => request.bearer_auth(t),
                (None, RegistryAuth::Basic(user, password)) => {
                    request.basic_auth(user, Some(password))
                }
                _ => request,
            };
            let mut response = request.send().await.map_err(|e| {
                if never_answered(&e) {
                    RegistryError::Unreachable(format!("{what}: registry unreachable: {e}"))
                } else {
                    RegistryError::Failed(format!("{what}: {e}"))
                }
            })?;
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound(format!("{what}: not found")));
            }
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                return Err(RegistryError::Failed(format!(
                    "{what}: Not authorized (HTTP {})",
                    status.as_u16()
                )));
            }
            if status.is_server_error() {
                return Err(RegistryError::Unreachable(format!(
                    "{what}: registry answered HTTP {}",
                    status.as_u16()
                )));
            }
            if status != reqwest::StatusCode::OK {
                return Err(RegistryError::Failed(format!(
                    "{what}: registry answered HTTP {}",
                    status.as_u16()
                )));
            }
            let announced = response
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(RegistryError::Failed(format!(
                    "{what}: manifest is larger than {limit} bytes"
                )));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| RegistryError::Unreachable(format!("{what}: {e}")))?
            {
                if body.len().saturating_add(chunk.len()) > limit {
                    return Err(RegistryError::Failed(format!(
                        "{what}: manifest is larger than {limit} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            let digest = format!("sha256:{:x}", sha2::Sha256::digest(&body));
            for expected in [reference.digest().map(str::to_string), announced]
                .into_iter()
                .flatten()
            {
                if expected.starts_with("sha256:") && expected != digest {
                    return Err(RegistryError::Failed(format!(
                        "{what}: content has digest {digest}, not {expected}"
                    )));
                }
            }
            Ok((body, digest))
        })
    }

    /// A blob of the reference's repository, checked against its digest, at most
    /// `max_blob_bytes` long.
    pub fn blob(&self, reference: &Reference, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let client = self.client(reference);
        let auth = self.auth(reference);
        let what = format!("blob {digest} of {}", reference.repository());
        let limit = self.config.max_blob_bytes;
        self.run(&what, async {
            client
                .store_auth_if_needed(reference.resolve_registry(), &auth)
                .await;
            let mut out = Bounded {
                data: Vec::new(),
                limit,
            };
            client
                .pull_blob(reference, digest, &mut out)
                .await
                .map_err(|e| classify(&what, e))?;
            Ok(out.data)
        })
    }
}

/// The manifest of an index that Kyverno reads image data from: linux/amd64, else the first.
fn pick_platform(index: &serde_json::Value) -> Option<String> {
    let manifests = index.get("manifests")?.as_array()?;
    let is = |m: &serde_json::Value, key: &str, want: &str| {
        m.pointer(&format!("/platform/{key}"))
            .and_then(serde_json::Value::as_str)
            == Some(want)
    };
    manifests
        .iter()
        .find(|m| is(m, "os", "linux") && is(m, "architecture", "amd64"))
        .or_else(|| manifests.first())
        .and_then(|m| m.get("digest"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

impl Registry {
    /// Image data as Kyverno's `imageRegistry` context entries see it (`image`,
    /// `resolvedImage` = `<registry>/<repository>@<digest>`, `registry`, `repository`,
    /// `identifier`, `manifestList`, `manifest`, `configData`), with the fields CEL's
    /// `image.GetMetadata` adds (`tag`, `digest`, `imageIndex`, `config`). For an index the
    /// manifest and config are linux/amd64's.
    pub fn image_data(&self, image: &str) -> Result<serde_json::Value, RegistryError> {
        use serde_json::{Value, json};
        let reference =
            reference::parse(image).map_err(|e| RegistryError::Failed(e.to_string()))?;
        let (bytes, digest) = self.manifest(&reference)?;
        let parse = |b: &[u8], what: &str| {
            serde_json::from_slice::<Value>(b)
                .map_err(|_| RegistryError::Failed(format!("{what} of {image} is not JSON")))
        };
        let top = parse(&bytes, "the manifest")?;
        let (index, manifest) = if top.get("manifests").is_some() {
            let chosen = pick_platform(&top).ok_or_else(|| {
                RegistryError::Failed(format!("the index of {image} lists no manifest"))
            })?;
            let platform_ref = reference.clone_with_digest(chosen);
            let (b, _) = self.manifest(&platform_ref)?;
            (top, parse(&b, "the platform manifest")?)
        } else {
            (Value::Null, top)
        };
        let config = match manifest.pointer("/config/digest").and_then(Value::as_str) {
            Some(d) => parse(&self.blob(&reference, d)?, "the config")?,
            None => Value::Null,
        };
        let registry = reference.registry().to_string();
        let repository = reference.repository().to_string();
        let tag = reference.tag().unwrap_or_default().to_string();
        let identifier = if tag.is_empty() {
            digest.clone()
        } else {
            format!("{tag}@{digest}")
        };
        Ok(json!({
            "image": image,
            "resolvedImage": format!("{registry}/{repository}@{digest}"),
            "registry": registry,
            "repository": repository,
            "identifier": identifier,
            "tag": tag,
            "digest": digest,
            "manifestList": index,
            "imageIndex": index,
            "manifest": manifest,
            "configData": config,
            "config": config,
        }))
    }
}
