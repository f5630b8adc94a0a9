//! The CLI's context provider: cluster objects, mocked API calls and global context entries
//! read from files, the way `kyverno test` and `kyverno apply` serve them offline.

use crate::spec::ValuesSpec;
use kybern_engine::context::{ApiCall, ContextProvider, ImageData, Labels, ProviderError};
use kybern_engine::objects;
use serde_json::Value;
use std::collections::BTreeMap;

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
}
