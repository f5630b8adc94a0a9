//! The admission request as the engine sees it, whether it comes from the CLI or the webhook,
//! and the JSON context (`request.*`, `serviceAccountName`, `images`, ...) built from it.

use crate::context::Labels;
use crate::images;
use crate::jmespath::to_variable;
use crate::json_context::{DeferredImages, DeferredObjects, JsonContext};
use ::jmespath::{Rcvar, Variable};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    #[default]
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        match s.to_ascii_uppercase().as_str() {
            "CREATE" => Some(Operation::Create),
            "UPDATE" => Some(Operation::Update),
            "DELETE" => Some(Operation::Delete),
            "CONNECT" => Some(Operation::Connect),
            _ => None,
        }
    }
}

/// Who made the request (the AdmissionRequest `userInfo`, plus the roles bound to them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// An object's `(group, version, kind)` from its `apiVersion` and `kind`, borrowed.
fn gvk_parts_of(object: &Value) -> (&str, &str, &str) {
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or_default();
    let api_version = text("apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    (group, version, text("kind"))
}

/// Group, version and kind of the requested object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    /// From an object's `apiVersion` and `kind`.
    pub fn of(object: &Value) -> Gvk {
        let (group, version, kind) = gvk_parts_of(object);
        Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One admission request: what every policy is evaluated against.
#[derive(Debug, Clone, Default)]
pub struct AdmissionRequest {
    pub operation: Operation,
    /// The new object; `Null` for DELETE. Shared: responses keep it without copying.
    pub object: Arc<Value>,
    /// The old object; `Null` for CREATE.
    pub old_object: Arc<Value>,
    pub user_info: UserInfo,
    pub roles: Vec<String>,
    pub cluster_roles: Vec<String>,
    /// Labels of the object's namespace, when known (for `namespaceSelector`).
    pub namespace_labels: Option<Labels>,
    /// e.g. `status`, `scale`, `exec`; empty for the main resource.
    pub subresource: String,
    /// The kind of the request when it differs from the object (subresources such as `Pod/exec`).
    pub kind_override: Option<Gvk>,
    pub dry_run: bool,
    /// Extra variables to place in the context before context entries load (dotted paths),
    /// e.g. values from a `kyverno test` values file.
    pub variables: Map<String, Value>,
    /// True when no admission user information is known (background scans, CLI without userinfo).
    pub no_user_info: bool,
    /// The AdmissionRequest's `name` as the API server sent it; empty: the object's name is used
    /// (the CLI). It differs for subresources such as `pods/exec`, whose object has no name.
    pub request_name: String,
}

impl AdmissionRequest {
    /// The object rules look at: the new object, or the old one for DELETE.
    pub fn resource(&self) -> &Value {
        self.resource_shared()
    }

    /// [`AdmissionRequest::resource`], shared.
    pub fn resource_shared(&self) -> &Arc<Value> {
        if self.object.is_null() {
            &self.old_object
        } else {
            &self.object
        }
    }

    pub fn gvk(&self) -> Gvk {
        self.kind_override
            .clone()
            .unwrap_or_else(|| Gvk::of(self.resource()))
    }

    /// [`AdmissionRequest::gvk`] borrowed: `(group, version, kind)`.
    pub fn gvk_parts(&self) -> (&str, &str, &str) {
        match &self.kind_override {
            Some(g) => (&g.group, &g.version, &g.kind),
            None => gvk_parts_of(self.resource()),
        }
    }

    /// The request's name: as the API server sent it, else the object's `metadata.name`.
    pub fn name(&self) -> Option<&str> {
        if self.request_name.is_empty() {
            self.resource()
                .get("metadata")
                .and_then(|v| v.get("name"))
                .and_then(Value::as_str)
        } else {
            Some(&self.request_name)
        }
    }

    pub fn namespace(&self) -> &str {
        self.resource()
            .get("metadata")
            .and_then(|v| v.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The JSON context every rule starts from.
    ///
    /// Built straight into the interpreter's values: the object is converted once, without an
    /// intermediate JSON copy.
    pub fn base_context(&self) -> JsonContext {
        self.build_context(None)
    }

    /// Like [`AdmissionRequest::base_context`], given the resource (`self.resource()`) as shared:
    /// the `images` variable is then only built if an expression reads it.
    pub(crate) fn base_context_shared(&self, resource: Arc<Value>) -> JsonContext {
        self.build_context(Some(resource))
    }

    fn build_context(&self, resource_arc: Option<Arc<Value>>) -> JsonContext {
        let gvk = self.gvk();
        let resource = self.resource();
        let (sa_namespace, sa_name) = self
            .user_info
            .username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .unwrap_or(("", ""));
        let mut request = BTreeMap::new();
        request.insert("operation".to_string(), var_str(self.operation.as_str()));
        request.insert("userInfo".to_string(), user_info_var(&self.user_info));
        request.insert("roles".to_string(), var_strings(&self.roles));
        request.insert("clusterRoles".to_string(), var_strings(&self.cluster_roles));
        request.insert("namespace".to_string(), var_str(self.namespace()));
        request.insert(
            "name".to_string(),
            if self.request_name.is_empty() {
                resource
                    .get("metadata")
                    .and_then(|v| v.get("name"))
                    .map_or_else(|| Rcvar::new(Variable::Null), to_variable)
            } else {
                var_str(&self.request_name)
            },
        );
        let mut kind = BTreeMap::new();
        kind.insert("group".to_string(), var_str(&gvk.group));
        kind.insert("version".to_string(), var_str(&gvk.version));
        kind.insert("kind".to_string(), var_str(&gvk.kind));
        request.insert("kind".to_string(), Rcvar::new(Variable::Object(kind)));
        request.insert(
            "dryRun".to_string(),
            Rcvar::new(Variable::Bool(self.dry_run)),
        );
        if !self.subresource.is_empty() {
            request.insert("subResource".to_string(), var_str(&self.subresource));
        }
        let mut root = BTreeMap::new();
        root.insert("request".to_string(), Rcvar::new(Variable::Object(request)));
        root.insert("serviceAccountName".to_string(), var_str(sa_name));
        root.insert("serviceAccountNamespace".to_string(), var_str(sa_namespace));
        let images = match resource_arc {
            Some(resource) => Some(DeferredImages::new(resource)),
            None => {
                root.insert(
                    "images".to_string(),
                    to_variable(&images::extract(resource)),
                );
                None
            }
        };
        // `request.object` and `request.oldObject` are converted only for expressions that read
        // them: many policies read only the request's namespace, operation or user.
        let objects = DeferredObjects::new(Arc::clone(&self.object), Arc::clone(&self.old_object));
        let mut ctx =
            JsonContext::from_variable(Rcvar::new(Variable::Object(root)), images, Some(objects));
        for (k, v) in &self.variables {
            ctx.set(k, v);
        }
        ctx
    }
}

fn var_str(s: &str) -> Rcvar {
    Rcvar::new(Variable::String(s.to_string()))
}

fn var_strings(items: &[String]) -> Rcvar {
    Rcvar::new(Variable::Array(items.iter().map(|s| var_str(s)).collect()))
}

/// `userInfo` as its JSON serialisation would read (`extra` only when set).
fn user_info_var(u: &UserInfo) -> Rcvar {
    let mut m = BTreeMap::new();
    m.insert("username".to_string(), var_str(&u.username));
    m.insert("uid".to_string(), var_str(&u.uid));
    m.insert("groups".to_string(), var_strings(&u.groups));
    if !u.extra.is_empty() {
        m.insert(
            "extra".to_string(),
            to_variable(&Value::Object(u.extra.clone())),
        );
    }
    Rcvar::new(Variable::Object(m))
}
