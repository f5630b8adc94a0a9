//! The context provider of the server until cluster mode exists: Namespaces, ConfigMaps and other
//! objects read once from `--cluster-resources` files. Without that folder every lookup is
//! unavailable, as in the CLI's local mode.

use kybern_engine::context::{ApiCall, ContextProvider, ImageData, Labels, ProviderError};
use kybern_engine::objects::{self, str_at};
use kybern_engine::yaml::{Limits, parse_documents};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// What the server needs from the outside world for one request: the engine's lookups plus the
/// requester's roles and the request namespace's labels, which it resolves before evaluation.
/// Implemented from files ([`ClusterResources`]) and from the cluster's caches.
pub trait RequestContext: ContextProvider {
    /// The requester's Roles (`namespace:name`) and ClusterRoles.
    fn roles_of(&self, user: &kybern_engine::request::UserInfo) -> (Vec<String>, Vec<String>);
    /// Labels of a namespace, when it is known here (from memory, without waiting).
    fn labels_of(&self, namespace: &str) -> Option<Labels>;
    /// Whether a namespace [`RequestContext::labels_of`] does not know may still exist (a cache
    /// that lags behind its source): the server then asks
    /// [`ContextProvider::namespace_labels`], which may wait, and a failed lookup is an error, not
    /// an empty set of labels.
    fn labels_may_lag(&self) -> bool {
        false
    }
}

impl RequestContext for ClusterResources {
    fn roles_of(&self, user: &kybern_engine::request::UserInfo) -> (Vec<String>, Vec<String>) {
        ClusterResources::roles_of(self, user)
    }
    fn labels_of(&self, namespace: &str) -> Option<Labels> {
        ClusterResources::labels_of(self, namespace)
    }
}

/// Objects loaded from files.
#[derive(Debug, Default, Clone)]
pub struct ClusterResources {
    /// `None` when no folder was given.
    objects: Option<Vec<Value>>,
    namespace_labels: BTreeMap<String, Labels>,
    /// RoleBindings and ClusterRoleBindings, for the requester's roles.
    bindings: Vec<Value>,
}

fn unavailable(what: &str) -> ProviderError {
    ProviderError::Unavailable {
        what: what.into(),
        reason: "no cluster resources were given".into(),
    }
}

/// Every `.yaml`, `.yml` and `.json` file under `path`, in name order, hidden entries excluded.
pub fn manifest_files(path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    if std::fs::metadata(path)?.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    // Hidden entries are skipped: test fixtures (`.chainsaw-test`) and the `..data` folders of
    // mounted ConfigMaps, which would otherwise load every policy twice.
    let mut entries: Vec<_> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for p in entries {
        if p.is_dir() {
            out.extend(manifest_files(&p)?);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(out)
}

impl ClusterResources {
    /// Reads every object under `dir` (`List` kinds are expanded). Returns problems as messages.
    pub fn load(dir: &Path) -> (ClusterResources, Vec<String>) {
        let mut problems = Vec::new();
        let mut objects = Vec::new();
        match manifest_files(dir) {
            Ok(files) => {
                for f in files {
                    let text = match std::fs::read(&f) {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(e) => {
                            problems.push(format!("{}: cannot read: {e}", f.display()));
                            continue;
                        }
                    };
                    let (docs, err) = parse_documents(&text, &Limits::default());
                    if let Some(e) = err {
                        problems.push(format!("{}: {e}", f.display()));
                    }
                    for (_, v) in docs {
                        match v.get("items").and_then(Value::as_array) {
                            Some(items) if str_at(&v, &["kind"]).ends_with("List") => {
                                objects.extend(items.iter().cloned());
                            }
                            _ if v.is_object() => objects.push(v),
                            _ => {}
                        }
                    }
                }
            }
            Err(e) => problems.push(format!("{}: {e}", dir.display())),
        }
        (ClusterResources::from_objects(objects), problems)
    }

    /// A provider over the given objects.
    pub fn from_objects(objects: Vec<Value>) -> ClusterResources {
        let mut namespace_labels = BTreeMap::new();
        for ns in objects
            .iter()
            .filter(|o| str_at(o, &["kind"]) == "Namespace")
        {
            namespace_labels.insert(
                str_at(ns, &["metadata", "name"]).to_string(),
                objects::labels(ns),
            );
        }
        let bindings = objects
            .iter()
            .filter(|o| matches!(str_at(o, &["kind"]), "RoleBinding" | "ClusterRoleBinding"))
            .cloned()
            .collect();
        ClusterResources {
            objects: Some(objects),
            namespace_labels,
            bindings,
        }
    }

    /// The requester's Roles (`namespace:name`) and ClusterRoles from the loaded bindings.
    pub fn roles_of(&self, user: &kybern_engine::request::UserInfo) -> (Vec<String>, Vec<String>) {
        if self.bindings.is_empty() {
            return (Vec::new(), Vec::new());
        }
        kybern_engine::rbac::requester_roles(&self.bindings, user)
    }

    /// Labels of a namespace, when it is known.
    pub fn labels_of(&self, namespace: &str) -> Option<Labels> {
        self.namespace_labels.get(namespace).cloned()
    }

    fn objects(&self, what: &str) -> Result<&Vec<Value>, ProviderError> {
        self.objects.as_ref().ok_or_else(|| unavailable(what))
    }

    /// Answers Kubernetes API paths such as `/api/v1/namespaces/x/configmaps` from the objects.
    fn api_path(&self, path: &str) -> Result<Value, ProviderError> {
        objects::api_path(self.objects("apiCall")?, path)
    }
}

impl ContextProvider for ClusterResources {
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
        if call.is_service {
            return Err(ProviderError::Unavailable {
                what: "service call".into(),
                reason: format!("service calls are not made by this server ({})", call.url),
            });
        }
        if !call.method.is_empty() && !call.method.eq_ignore_ascii_case("GET") {
            return Err(ProviderError::Unavailable {
                what: "apiCall".into(),
                reason: format!("only GET is answered from files, not {}", call.method),
            });
        }
        self.api_path(&call.url)
    }

    fn namespace_labels(&self, namespace: &str) -> Result<Option<Labels>, ProviderError> {
        Ok(self.labels_of(namespace))
    }

    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        Err(ProviderError::Unavailable {
            what: format!("image registry data for {image}"),
            reason: "registry lookups are not made by this server".into(),
        })
    }

    fn global_context(&self, _name: &str) -> Result<Option<Value>, ProviderError> {
        Err(unavailable("globalContext"))
    }
    fn lookups_wait(&self) -> bool {
        false
    }
}
