//! The CLI's context provider: cluster objects, mocked API calls and global context entries
//! read from files, the way `kyverno test` and `kyverno apply` serve them offline, and image
//! registries (signatures, digests) when `--registry` allows them.

use crate::spec::ValuesSpec;
use anyhow::{Context, Result};
use kybern_engine::context::{
    ApiCall, ContextProvider, ImageData, Labels, ProviderError, SignatureCheck, SignatureOutcome,
};
use kybern_engine::objects;
use kybern_registry::credentials::Credentials;
use kybern_registry::{Registry, RegistryConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags for image registry access (`verifyImages` signatures and digests).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Reach image registries to verify image signatures and resolve tags to digests
    /// (credentials from the docker config: $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long = "registry", env = "KYBERN_REGISTRY")]
    pub registry: bool,
    /// A registry (HOST[:PORT]) reached over plain HTTP; loopback registries always are.
    #[arg(
        long = "insecure-registry",
        env = "KYBERN_INSECURE_REGISTRIES",
        value_name = "HOST[:PORT]",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
    /// A PEM file of CA certificates trusted for registries, besides the public roots.
    #[arg(
        long = "registry-ca-file",
        env = "KYBERN_REGISTRY_CA_FILES",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub registry_ca_file: Vec<PathBuf>,
    /// Seconds one registry call may take.
    #[arg(
        long = "registry-timeout",
        env = "KYBERN_REGISTRY_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 15
    )]
    pub registry_timeout: u64,
}

impl RegistryArgs {
    /// The registry client the flags ask for; `None` without `--registry`.
    pub fn build(&self) -> Result<Option<Arc<Registry>>> {
        if !self.registry {
            return Ok(None);
        }
        let credentials = Credentials::from_environment()?;
        let mut ca_certificates = Vec::new();
        for path in &self.registry_ca_file {
            ca_certificates.push(
                std::fs::read(path)
                    .with_context(|| format!("failed to read {}", path.display()))?,
            );
        }
        let registry = Registry::new(RegistryConfig {
            insecure: self.insecure_registry.clone(),
            credentials,
            ca_certificates,
            timeout: Duration::from_secs(self.registry_timeout.max(1)),
            ..RegistryConfig::default()
        })?;
        Ok(Some(Arc::new(registry)))
    }
}

/// File-backed answers. Sources that were not given are unavailable, so rules behave as in
/// the kyverno CLI's local mode (such context entries are left unloaded).
/// One mocked API answer.
#[derive(Debug, Default, Clone)]
pub struct MockResponse {
    /// `url` (service calls) or `urlPath` (Kubernetes API calls).
    pub url: String,
    /// Empty: any method.
    pub method: String,
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, Default, Clone)]
pub struct FileProvider {
    /// Objects from `clusterResources`; `None` when the test has none.
    pub cluster: Option<Vec<Value>>,
    /// Objects generate rules may clone (`cloneSourceResource` files).
    pub clone_sources: Vec<Value>,
    /// Existing objects mutate rules with `targets` may patch (`targetResources` files).
    pub targets: Vec<Value>,
    /// Mocked responses from `apiCallResponses`.
    pub api_responses: Vec<MockResponse>,
    pub global_entries: BTreeMap<String, Value>,
    pub namespace_labels: BTreeMap<String, Labels>,
    /// Image data from a test's `context` file (`spec.images`), by `image`.
    pub images: Vec<Value>,
    /// Image registry access (`--registry`).
    pub registry: Option<Arc<Registry>>,
}

fn no_registry(what: String) -> ProviderError {
    ProviderError::Unavailable {
        what,
        reason: "image registries are reached only with --registry".into(),
    }
}

fn field<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn unavailable(what: &str) -> ProviderError {
    ProviderError::Unavailable {
        what: what.into(),
        reason: "no cluster resources were given".into(),
    }
}

impl FileProvider {
    /// Namespace labels from a values file (`namespaceSelector`, `namespaces`) and from Namespace
    /// objects among the cluster resources; the first source to name a namespace wins.
    pub fn add_namespace_labels(&mut self, values: &ValuesSpec) {
        for ns in &values.namespace_selector {
            self.namespace_labels
                .insert(ns.name.clone(), ns.labels.clone());
        }
        let mut ns_objects: Vec<&Value> = values.namespaces.iter().collect();
        if let Some(cluster) = &self.cluster {
            ns_objects.extend(cluster.iter().filter(|o| field(o, "/kind") == "Namespace"));
        }
        for ns in ns_objects {
            self.namespace_labels
                .entry(field(ns, "/metadata/name").to_string())
                .or_insert_with(|| objects::labels(ns));
        }
    }

    /// Cluster objects, clone sources and mutate targets together.
    fn objects(&self, what: &str) -> Result<Vec<&Value>, ProviderError> {
        if self.cluster.is_none() && self.clone_sources.is_empty() && self.targets.is_empty() {
            return Err(unavailable(what));
        }
        Ok(self
            .cluster
            .iter()
            .flatten()
            .chain(&self.clone_sources)
            .chain(&self.targets)
            .collect())
    }

    fn cluster(&self, what: &str) -> Result<&Vec<Value>, ProviderError> {
        self.cluster.as_ref().ok_or_else(|| unavailable(what))
    }

    /// Answers Kubernetes API paths such as `/api/v1/namespaces/x/configmaps` from cluster objects.
    fn api_path(&self, path: &str) -> Result<Value, ProviderError> {
        objects::api_path(self.cluster("apiCall")?, path)
    }
}

impl ContextProvider for FileProvider {
    fn resource(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let all = self.objects("resource")?;
        Ok(objects::find(all, api_version, kind, namespace, name).cloned())
    }

    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        let all = self.objects("resource list")?;
        Ok(objects::select(all, api_version, kind, namespace)
            .cloned()
            .collect())
    }

    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ProviderError> {
        self.resource("v1", "ConfigMap", namespace, name)
    }

    fn api_call(&self, call: &ApiCall) -> Result<Value, ProviderError> {
        let method = call.method.to_ascii_uppercase();
        let wanted = call.url.split('?').next().unwrap_or_default();
        for r in &self.api_responses {
            let same_method = r.method.is_empty() || r.method.eq_ignore_ascii_case(&method);
            let same_url =
                r.url == call.url || r.url == wanted || r.url.split('?').next() == Some(wanted);
            if same_method && same_url {
                if r.status >= 400 {
                    return Err(ProviderError::Failed(format!(
                        "{} {} returned status {}",
                        method, call.url, r.status
                    )));
                }
                if call.cel_http {
                    // The kyverno CLI serves a mocked response whole to CEL's http library.
                    return Ok(serde_json::json!({"body": r.body, "statusCode": r.status}));
                }
                return Ok(r.body.clone());
            }
        }
        if call.is_service {
            return Err(ProviderError::Unavailable {
                what: "service call".into(),
                reason: format!("no mocked response for {} {}", method, call.url),
            });
        }
        self.api_path(&call.url)
    }

    fn namespace_labels(&self, namespace: &str) -> Result<Option<Labels>, ProviderError> {
        Ok(self.namespace_labels.get(namespace).cloned())
    }

    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        if let Some(data) = self.images.iter().find(|i| field(i, "/image") == image) {
            return Ok(ImageData { data: data.clone() });
        }
        if let Some(registry) = &self.registry {
            return registry
                .image_data(image)
                .map(|data| ImageData { data })
                .map_err(|e| ProviderError::Failed(e.to_string()));
        }
        Err(ProviderError::Unavailable {
            what: format!("image registry data for {image}"),
            reason: "registry not reachable".into(),
        })
    }

    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        if self.global_entries.is_empty() {
            return Err(unavailable("globalContext"));
        }
        Ok(self.global_entries.get(name).cloned())
    }

    fn verify_image_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError> {
        match &self.registry {
            Some(r) => r.verify_for_provider(check),
            None => Err(no_registry(format!(
                "signature verification of {}",
                check.image
            ))),
        }
    }

    fn image_digest(&self, image: &str) -> Result<String, ProviderError> {
        match &self.registry {
            Some(r) => r.digest_for_provider(image),
            None => Err(no_registry(format!("the digest of {image}"))),
        }
    }

    fn verify_image_attestations(
        &self,
        check: &SignatureCheck,
    ) -> Result<kybern_engine::context::AttestationOutcome, ProviderError> {
        match &self.registry {
            Some(r) => r.attestations_for_provider(check),
            None => Err(no_registry(format!(
                "attestation verification of {}",
                check.image
            ))),
        }
    }
}
