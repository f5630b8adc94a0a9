//! `matchConstraints` / `matchResources` of ValidatingPolicies, ValidatingAdmissionPolicies and
//! their bindings: resource rules by group, version, plural resource, operation and scope, with
//! namespace and object selectors, as the apiserver matches them.

use super::CelError;
use crate::context::Labels;
use crate::matching::selector_matches;
use crate::policy::LabelSelector;
use crate::request::{AdmissionRequest, Operation};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Built-in kinds: (group, kind, plural resource, namespaced).
const BUILTIN: &[(&str, &str, &str, bool)] = &[
    ("", "Pod", "pods", true),
    ("", "Service", "services", true),
    ("", "ConfigMap", "configmaps", true),
    ("", "Secret", "secrets", true),
    ("", "Namespace", "namespaces", false),
    ("", "Node", "nodes", false),
    ("", "PersistentVolume", "persistentvolumes", false),
    ("", "PersistentVolumeClaim", "persistentvolumeclaims", true),
    ("", "ServiceAccount", "serviceaccounts", true),
    ("", "Endpoints", "endpoints", true),
    ("", "Event", "events", true),
    ("", "LimitRange", "limitranges", true),
    ("", "ResourceQuota", "resourcequotas", true),
    ("", "ReplicationController", "replicationcontrollers", true),
    ("", "PodTemplate", "podtemplates", true),
    ("", "Binding", "bindings", true),
    ("", "ComponentStatus", "componentstatuses", false),
    ("apps", "Deployment", "deployments", true),
    ("apps", "StatefulSet", "statefulsets", true),
    ("apps", "DaemonSet", "daemonsets", true),
    ("apps", "ReplicaSet", "replicasets", true),
    ("apps", "ControllerRevision", "controllerrevisions", true),
    ("batch", "Job", "jobs", true),
    ("batch", "CronJob", "cronjobs", true),
    (
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    ("autoscaling", "Scale", "scale", true),
    (
        "policy",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    ("policy", "Eviction", "eviction", true),
    ("networking.k8s.io", "Ingress", "ingresses", true),
    ("networking.k8s.io", "IngressClass", "ingressclasses", false),
    (
        "networking.k8s.io",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("rbac.authorization.k8s.io", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    ("storage.k8s.io", "StorageClass", "storageclasses", false),
    ("storage.k8s.io", "CSIDriver", "csidrivers", false),
    ("storage.k8s.io", "CSINode", "csinodes", false),
    (
        "storage.k8s.io",
        "VolumeAttachment",
        "volumeattachments",
        false,
    ),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
    ),
    (
        "scheduling.k8s.io",
        "PriorityClass",
        "priorityclasses",
        false,
    ),
    ("coordination.k8s.io", "Lease", "leases", true),
    ("discovery.k8s.io", "EndpointSlice", "endpointslices", true),
    ("node.k8s.io", "RuntimeClass", "runtimeclasses", false),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        false,
    ),
    ("events.k8s.io", "Event", "events", true),
    ("apiregistration.k8s.io", "APIService", "apiservices", false),
];

/// The API group of a built-in kind; `None` for a kind the table does not know.
pub fn builtin_group(kind: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(_, k, _, _)| *k == kind)
        .map(|(g, _, _, _)| *g)
}

/// The built-in kinds (`Pod`, `Deployment`, ...).
pub fn builtin_kinds() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(_, k, _, _)| *k)
}

/// True when `resource` (a plural name) is a built-in resource of the API group.
pub(crate) fn is_builtin_resource(group: &str, resource: &str) -> bool {
    BUILTIN
        .iter()
        .any(|(g, _, r, _)| *g == group && *r == resource)
}

/// The plural resource name of a kind: the table for built-in kinds, else the lower-case kind
/// with an English plural (the usual CRD convention).
pub fn resource_for_kind(group: &str, kind: &str) -> String {
    resource_of_kind(group, kind).into_owned()
}

/// [`resource_for_kind`], borrowed for built-in kinds.
fn resource_of_kind(group: &str, kind: &str) -> Cow<'static, str> {
    if let Some((_, _, r, _)) = BUILTIN
        .iter()
        .find(|(g, k, _, _)| *g == group && *k == kind)
    {
        return Cow::Borrowed(r);
    }
    if let Some((_, _, r, _)) = BUILTIN.iter().find(|(_, k, _, _)| *k == kind) {
        return Cow::Borrowed(r);
    }
    let lower = kind.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return Cow::Owned(format!("{stem}ies"));
    }
    if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        return Cow::Owned(format!("{lower}es"));
    }
    Cow::Owned(format!("{lower}s"))
}

/// The kind of a plural resource (the inverse of [`resource_for_kind`] for built-in kinds; for
/// others the singular guessed from the plural, capitalised).
pub fn kind_for_resource(group: &str, resource: &str) -> String {
    let resource = resource.to_ascii_lowercase();
    if let Some((_, k, _, _)) = BUILTIN
        .iter()
        .find(|(g, _, r, _)| *g == group && *r == resource)
        .or_else(|| BUILTIN.iter().find(|(_, _, r, _)| *r == resource))
    {
        return (*k).to_string();
    }
    let singular = if let Some(stem) = resource.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = resource.strip_suffix("ses") {
        format!("{stem}s")
    } else {
        resource.strip_suffix('s').unwrap_or(&resource).to_string()
    };
    let mut chars = singular.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

/// One `resourceRules` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRule {
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub operations: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (the default).
    pub scope: String,
}

fn strings(v: Option<&Value>, path: &str) -> Result<Vec<String>, CelError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| CelError::new(format!("{path}[{i}]"), "must be a string"))
            })
            .collect(),
        Some(_) => Err(CelError::new(path, "must be a list of strings")),
    }
}

fn any_matches(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl ResourceRule {
    fn compile(v: &Value, path: &str) -> Result<ResourceRule, CelError> {
        Ok(ResourceRule {
            api_groups: strings(v.get("apiGroups"), &format!("{path}.apiGroups"))?,
            api_versions: strings(v.get("apiVersions"), &format!("{path}.apiVersions"))?,
            resources: strings(v.get("resources"), &format!("{path}.resources"))?,
            resource_names: strings(v.get("resourceNames"), &format!("{path}.resourceNames"))?,
            operations: strings(v.get("operations"), &format!("{path}.operations"))?,
            scope: v
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        })
    }

    fn matches(&self, r: &RequestAttributes) -> bool {
        if !r.any_operation && !any_matches(&self.operations, &r.operation) {
            return false;
        }
        if !any_matches(&self.api_groups, &r.group) || !any_matches(&self.api_versions, &r.version)
        {
            return false;
        }
        let resource_ok = self.resources.iter().any(|pattern| {
            let (pres, psub) = pattern.split_once('/').unwrap_or((pattern.as_str(), ""));
            let res_ok = pres == "*" || pres == r.resource.as_ref();
            let sub_ok = if pattern.contains('/') {
                psub == "*" || psub == r.subresource.as_ref()
            } else {
                // `*` alone matches only main resources; a name without `/` only the resource.
                r.subresource.is_empty()
            };
            res_ok && sub_ok
        });
        if !resource_ok {
            return false;
        }
        if !self.resource_names.is_empty() && !self.resource_names.iter().any(|n| *n == r.name) {
            return false;
        }
        match self.scope.as_str() {
            "Cluster" => r.namespace.is_empty(),
            "Namespaced" => !r.namespace.is_empty(),
            _ => true,
        }
    }
}

/// What matching reads from a request: the same for every policy, so read once per request
/// ([`RequestAttributes::of`]).
pub struct RequestAttributes<'a> {
    operation: Cow<'a, str>,
    /// Operations aside: the object as stored, not a request changing it.
    any_operation: bool,
    group: Cow<'a, str>,
    version: Cow<'a, str>,
    resource: Cow<'static, str>,
    subresource: Cow<'a, str>,
    name: Cow<'a, str>,
    namespace: Cow<'a, str>,
}

impl<'a> RequestAttributes<'a> {
    /// The attributes of `req` for its operation.
    pub fn of(req: &'a AdmissionRequest) -> Self {
        let (group, version, kind) = req.gvk_parts();
        RequestAttributes {
            operation: Cow::Borrowed(req.operation.as_str()),
            any_operation: false,
            resource: resource_of_kind(group, kind),
            group: Cow::Borrowed(group),
            version: Cow::Borrowed(version),
            subresource: Cow::Borrowed(&req.subresource),
            name: Cow::Borrowed(
                crate::objects::at(req.resource(), &["metadata", "name"])
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            namespace: Cow::Borrowed(req.namespace()),
        }
    }

    /// The attributes holding their own strings, for a request made for one admission
    /// request (autogen's Pod view) that outlives no borrow of it.
    pub fn into_owned(self) -> RequestAttributes<'static> {
        let own = |c: Cow<'a, str>| Cow::Owned(c.into_owned());
        RequestAttributes {
            operation: own(self.operation),
            any_operation: self.any_operation,
            group: own(self.group),
            version: own(self.version),
            resource: self.resource,
            subresource: own(self.subresource),
            name: own(self.name),
            namespace: own(self.namespace),
        }
    }
}

/// `matchConstraints` of a policy or `matchResources` of a binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatchConstraints {
    pub resource_rules: Vec<ResourceRule>,
    pub exclude_resource_rules: Vec<ResourceRule>,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
}

fn selector(v: Option<&Value>, path: &str) -> Result<Option<LabelSelector>, CelError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| CelError::new(path, format!("invalid label selector: {e}"))),
    }
}

fn rules(v: Option<&Value>, path: &str) -> Result<Vec<ResourceRule>, CelError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, r)| ResourceRule::compile(r, &format!("{path}[{i}]")))
            .collect(),
        Some(_) => Err(CelError::new(path, "must be a list")),
    }
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    crate::objects::at(v, &["metadata", "labels"])
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn empty_selector(s: &Option<LabelSelector>) -> bool {
    s.as_ref()
        .is_none_or(|s| s.match_labels.is_empty() && s.match_expressions.is_empty())
}

impl MatchConstraints {
    /// Compiles `matchConstraints` (absent: matches nothing, as an empty rule list).
    pub fn compile(v: Option<&Value>, path: &str) -> Result<MatchConstraints, CelError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(MatchConstraints::default());
        };
        Ok(MatchConstraints {
            resource_rules: rules(v.get("resourceRules"), &format!("{path}.resourceRules"))?,
            exclude_resource_rules: rules(
                v.get("excludeResourceRules"),
                &format!("{path}.excludeResourceRules"),
            )?,
            namespace_selector: selector(
                v.get("namespaceSelector"),
                &format!("{path}.namespaceSelector"),
            )?,
            object_selector: selector(v.get("objectSelector"), &format!("{path}.objectSelector"))?,
        })
    }

    /// Whether the request's object is selected whatever the operation: for objects selected as
    /// they are stored (mutate-existing targets, deleted triggers), not as one request changes
    /// them.
    pub fn matches_any_operation(
        &self,
        req: &AdmissionRequest,
        namespace_labels: Option<&Labels>,
    ) -> bool {
        self.matches_rules_with(req, true, true) && self.selectors_match(req, namespace_labels)
    }

    /// Kyverno's "simple" match: exactly one resource rule without resource names, no selectors
    /// and no exclusions. A ValidatingPolicy with such a match reports nothing for resources it
    /// does not select.
    pub fn is_simple(&self) -> bool {
        self.resource_rules.len() == 1
            && self
                .resource_rules
                .first()
                .is_some_and(|r| r.resource_names.is_empty())
            && empty_selector(&self.namespace_selector)
            && empty_selector(&self.object_selector)
            && self.exclude_resource_rules.is_empty()
    }

    /// Whether the request is selected. `namespace_labels` are the labels of the object's
    /// namespace (unknown: no labels).
    pub fn matches(&self, req: &AdmissionRequest, namespace_labels: Option<&Labels>) -> bool {
        self.matches_rules(req, true) && self.selectors_match(req, namespace_labels)
    }

    /// Like [`MatchConstraints::matches`], for a binding's `matchResources`, where an empty
    /// rule list matches every resource the policy matched.
    pub fn matches_binding(
        &self,
        req: &AdmissionRequest,
        namespace_labels: Option<&Labels>,
    ) -> bool {
        self.matches_rules(req, false) && self.selectors_match(req, namespace_labels)
    }

    fn matches_rules(&self, req: &AdmissionRequest, required: bool) -> bool {
        self.matches_rules_with(req, required, false)
    }

    /// [`MatchConstraints::matches`] with the request's attributes already read.
    pub fn matches_with(
        &self,
        attrs: &RequestAttributes,
        req: &AdmissionRequest,
        namespace_labels: Option<&Labels>,
    ) -> bool {
        self.rules_match(attrs, true) && self.selectors_match(req, namespace_labels)
    }

    fn matches_rules_with(
        &self,
        req: &AdmissionRequest,
        required: bool,
        any_operation: bool,
    ) -> bool {
        let attrs = RequestAttributes {
            any_operation,
            ..RequestAttributes::of(req)
        };
        self.rules_match(&attrs, required)
    }

    fn rules_match(&self, attrs: &RequestAttributes, required: bool) -> bool {
        let included = if required || !self.resource_rules.is_empty() {
            self.resource_rules.iter().any(|r| r.matches(attrs))
        } else {
            true
        };
        included && !self.exclude_resource_rules.iter().any(|r| r.matches(attrs))
    }

    fn selectors_match(&self, req: &AdmissionRequest, namespace_labels: Option<&Labels>) -> bool {
        if let Some(sel) = &self.object_selector {
            let new = !req.object.is_null() && selector_matches(sel, &labels_of(&req.object));
            let old =
                !req.old_object.is_null() && selector_matches(sel, &labels_of(&req.old_object));
            if !new && !old {
                return false;
            }
        }
        if let Some(sel) = &self.namespace_selector {
            let gvk = req.gvk();
            let labels = if gvk.kind == "Namespace" && gvk.group.is_empty() {
                Some(labels_of(req.resource()))
            } else if req.namespace().is_empty() {
                // Cluster-scoped objects are not filtered by namespaceSelector.
                None
            } else {
                Some(namespace_labels.cloned().unwrap_or_default())
            };
            if let Some(labels) = labels
                && !selector_matches(sel, &labels)
            {
                return false;
            }
        }
        true
    }
}

/// Whether `op` is one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT` (for validation of policies).
pub fn known_operation(op: &str) -> bool {
    op == "*" || Operation::parse(op).is_some()
}
