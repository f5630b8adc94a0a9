//! The context provider of `kybern serve --cluster`: Namespaces, ConfigMaps and role bindings
//! from watch caches; `apiCall` entries and CEL `resource.Get/List` through the API, bounded in
//! time and size; global context entries from their refreshed copies.
//!
//! The engine is synchronous and runs on the blocking pool, so API calls are handed to the async
//! runtime and waited for with a deadline rather than entered with `block_on`.

use crate::discovery::Kinds;
use crate::global_context::GlobalContext;
use crate::watch::Cache;
use arc_swap::ArcSwap;
use http_body_util::{BodyExt, Limited};
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use kybern_engine::context::{ApiCall, ContextProvider, ImageData, Labels, ProviderError};
use kybern_engine::request::UserInfo;
use kybern_webhook::provider::RequestContext;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Bounds on one call to the API server.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    pub max_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        // Kyverno's default maximum context size is 2 MiB; a call must fit in an admission deadline.
        CallLimits {
            timeout: Duration::from_secs(5),
            max_bytes: 2 * 1024 * 1024,
        }
    }
}

/// The caches and the client the provider reads.
pub struct ClusterContext {
    pub namespaces: Cache,
    pub config_maps: Cache,
    pub role_bindings: Cache,
    pub cluster_role_bindings: Cache,
    pub kinds: Arc<ArcSwap<Kinds>>,
    pub global: Arc<GlobalContext>,
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    limits: CallLimits,
    /// Role bindings as JSON, rebuilt when they change (read on every request).
    bindings: Arc<ArcSwap<Vec<Value>>>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(format!("{what}: {e}"))
}

impl ClusterContext {
    /// Builds the provider; must be called inside the runtime.
    pub fn new(
        client: kube::Client,
        caches: [Cache; 4],
        kinds: Arc<ArcSwap<Kinds>>,
        global: Arc<GlobalContext>,
        limits: CallLimits,
    ) -> Self {
        let [
            namespaces,
            config_maps,
            role_bindings,
            cluster_role_bindings,
        ] = caches;
        let bindings = Arc::new(ArcSwap::from_pointee(Vec::new()));
        ClusterContext {
            namespaces,
            config_maps,
            role_bindings,
            cluster_role_bindings,
            kinds,
            global,
            client,
            runtime: tokio::runtime::Handle::current(),
            limits,
            bindings,
        }
    }

    /// Rebuilds the bindings snapshot; call after the binding caches change.
    pub fn refresh_bindings(&self) {
        let mut all = self.role_bindings.values();
        all.extend(self.cluster_role_bindings.values());
        self.bindings.store(Arc::new(all));
    }

    /// The caches whose sync readiness waits for.
    pub fn caches(&self) -> Vec<Cache> {
        vec![
            self.namespaces.clone(),
            self.config_maps.clone(),
            self.role_bindings.clone(),
            self.cluster_role_bindings.clone(),
        ]
    }

    /// A GET or POST on an API path, answered within the limits.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ProviderError> {
        if !path.starts_with('/') {
            return Err(failed("apiCall", format!("{path:?} is not an API path")));
        }
        let request = http::Request::builder()
            .method(if method.eq_ignore_ascii_case("POST") {
                http::Method::POST
            } else {
                http::Method::GET
            })
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .map_err(|e| failed("apiCall", e))?;
        let client = self.client.clone();
        let limits = self.limits;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let owned_path = path.to_string();
        self.runtime.spawn(async move {
            let result = tokio::time::timeout(limits.timeout, async {
                let response = client
                    .send(request.map(kube::client::Body::from))
                    .await
                    .map_err(|e| failed(&owned_path, e))?;
                let status = response.status();
                let bytes = Limited::new(response.into_body(), limits.max_bytes)
                    .collect()
                    .await
                    .map_err(|e| {
                        failed(
                            &owned_path,
                            format!(
                                "response over {} bytes or unreadable: {e}",
                                limits.max_bytes
                            ),
                        )
                    })?
                    .to_bytes();
                let value: Value =
                    serde_json::from_slice(&bytes).map_err(|e| failed(&owned_path, e))?;
                if !status.is_success() {
                    let message = value
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    return Err(failed(&owned_path, format!("{status}: {message}")));
                }
                Ok(value)
            })
            .await
            .unwrap_or_else(|_| {
                Err(failed(
                    &owned_path,
                    format!("no answer within {:?}", limits.timeout),
                ))
            });
            let _ = tx.send(result);
        });
        rx.recv_timeout(self.limits.timeout + Duration::from_millis(500))
            .unwrap_or_else(|_| Err(failed(path, "the call did not finish")))
    }

    /// The API path of a kind's objects.
    fn path_of(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<String, ProviderError> {
        let kinds = self.kinds.load();
        let r = kinds.by_api_version(api_version, kind).ok_or_else(|| {
            failed(
                "resource",
                format!("the cluster serves no {api_version} {kind}"),
            )
        })?;
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        Ok(if r.namespaced && !namespace.is_empty() {
            format!("{base}/namespaces/{namespace}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        })
    }
}

impl ContextProvider for ClusterContext {
    fn resource(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        if api_version == "v1" && kind == "ConfigMap" {
            return self.config_map(namespace, name);
        }
        // A Namespace from the watch cache: every CEL policy reads its request's `namespaceObject`,
        // which must not cost an API call per request. One just created may not be cached yet.
        if api_version == "v1"
            && kind == "Namespace"
            && let Some(v) = self.namespaces.get("", name)
        {
            return Ok(Some(v));
        }
        let path = format!("{}/{name}", self.path_of(api_version, kind, namespace)?);
        match self.call("GET", &path, None) {
            Ok(v) => Ok(Some(v)),
            Err(ProviderError::Failed(m)) if m.contains("404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        let path = self.path_of(api_version, kind, namespace)?;
        let list = self.call("GET", &path, None)?;
        let mut items = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // List items come without their type.
        for item in &mut items {
            if let Some(m) = item.as_object_mut() {
                m.entry("apiVersion")
                    .or_insert_with(|| Value::String(api_version.to_string()));
                m.entry("kind")
                    .or_insert_with(|| Value::String(kind.to_string()));
            }
        }
        Ok(items)
    }

    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ProviderError> {
        let key = ObjectRef::<DynamicObject>::new_with(name, self.config_maps.resource.clone())
            .within(namespace);
        Ok(self
            .config_maps
            .reader
            .get(&key)
            .and_then(|o| self.config_maps.to_value(&o)))
    }

    fn api_call(&self, call: &ApiCall) -> Result<Value, ProviderError> {
        if call.is_service {
            return Err(ProviderError::Unavailable {
                what: "service call".into(),
                reason: format!(
                    "calls to services outside the Kubernetes API are not made yet ({})",
                    call.url
                ),
            });
        }
        self.call(&call.method, &call.url, call.body.as_ref())
    }

    fn namespace_labels(&self, namespace: &str) -> Result<Option<Labels>, ProviderError> {
        if namespace.is_empty() {
            return Ok(None);
        }
        if let Some(labels) = self.labels_of(namespace) {
            return Ok(Some(labels));
        }
        // Not in the watch cache yet (a Namespace created a moment ago): asked from the API
        // server, and an error stays an error: a namespaceSelector judged on no labels would let
        // the request through policies meant for it.
        let namespace_object = self.resource("v1", "Namespace", "", namespace)?;
        Ok(namespace_object.map(|ns| {
            ns.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        Err(ProviderError::Unavailable {
            what: format!("image registry data for {image}"),
            reason: "registry lookups are not made by this server yet".into(),
        })
    }

    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        self.global.get(name)
    }
}

impl RequestContext for ClusterContext {
    fn roles_of(&self, user: &UserInfo) -> (Vec<String>, Vec<String>) {
        let bindings = self.bindings.load();
        if bindings.is_empty() {
            return (Vec::new(), Vec::new());
        }
        kybern_engine::rbac::requester_roles(bindings.iter(), user)
    }

    fn labels_of(&self, namespace: &str) -> Option<Labels> {
        let key = ObjectRef::<DynamicObject>::new_with(namespace, self.namespaces.resource.clone());
        self.namespaces
            .reader
            .get(&key)
            .map(|ns| ns.metadata.labels.clone().unwrap_or_default())
    }

    fn labels_may_lag(&self) -> bool {
        true
    }
}
