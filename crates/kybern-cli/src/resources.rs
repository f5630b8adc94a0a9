//! Resources as the kyverno CLI reads them: namespace defaulting, keys, and the tidy comparison
//! used for patched and generated resources.

use serde_json::{Map, Value};
use std::fmt;

/// Kinds that live outside namespaces (they get no `default` namespace).
const CLUSTER_SCOPED: [&str; 30] = [
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "CustomResourceDefinition",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "CSINode",
    "APIService",
    "CertificateSigningRequest",
    "VolumeAttachment",
    "PodSecurityPolicy",
    "ClusterPolicy",
    "ClusterPolicyReport",
    "ClusterIssuer",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "ClusterCleanupPolicy",
    "ComponentStatus",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "GlobalContextEntry",
];

pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

/// Gives namespaced objects without a namespace the `default` namespace, as the kyverno CLI does.
pub fn default_namespace(mut v: Value) -> Value {
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if is_cluster_scoped(&kind) {
        return v;
    }
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        let empty = meta
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if empty {
            meta.insert("namespace".into(), Value::String("default".into()));
        }
    }
    v
}

/// `apiVersion,kind,namespace,name`: how results find resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// The string at a path of keys, or "".
pub fn text_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    kybern_engine::objects::at(v, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl ResourceKey {
    pub fn of(v: &Value) -> ResourceKey {
        let s = |path: &[&str]| text_at(v, path).to_string();
        ResourceKey {
            api_version: s(&["apiVersion"]),
            kind: s(&["kind"]),
            namespace: s(&["metadata", "namespace"]),
            name: s(&["metadata", "name"]),
        }
    }

    /// Same group (ignoring the version), kind, namespace and name: the CLI's duplicate rule.
    pub fn same_object(&self, other: &ResourceKey) -> bool {
        let group = |a: &str| {
            a.rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default()
        };
        group(&self.api_version) == group(&other.api_version)
            && self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.api_version, self.kind, self.namespace, self.name
        )
    }
}

/// Removes nulls, empty maps and empty lists, recursively.
pub fn tidy(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| tidy(v).map(|v| (k.clone(), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a.iter().filter_map(tidy).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// Drops `generate.kyverno.io/` labels and adds `app.kubernetes.io/managed-by: kyverno`, as the
/// CLI does on both sides before comparing.
pub fn fixup_generate_labels(mut v: Value) -> Value {
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(l) = labels {
            l.retain(|k, _| !k.starts_with("generate.kyverno.io/"));
            l.entry("app.kubernetes.io/managed-by")
                .or_insert(Value::String("kyverno".into()));
        }
    }
    v
}

/// Numbers equal as JSON numbers compare equal (`1` and `1.0`).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Compares an actual object with an expected one the way `kyverno test` does.
pub fn resources_equal(actual: &Value, expected: &Value) -> bool {
    let a = tidy(&fixup_generate_labels(actual.clone()));
    let b = tidy(&fixup_generate_labels(expected.clone()));
    match (a, b) {
        (Some(a), Some(b)) => json_equal(&a, &b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_namespace_for_namespaced_kinds_only() {
        let pod = default_namespace(json!({"kind": "Pod", "metadata": {"name": "p"}}));
        assert_eq!(pod["metadata"]["namespace"], "default");
        let ns = default_namespace(json!({"kind": "Namespace", "metadata": {"name": "n"}}));
        assert!(ns["metadata"].get("namespace").is_none());
    }

    #[test]
    fn tidy_comparison_ignores_empties_but_not_values() {
        let a = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {}}, "spec": {"x": null, "y": 1}});
        let b = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"y": 1.0}});
        assert!(resources_equal(&a, &b));
        let c = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"y": 2}});
        assert!(!resources_equal(&a, &c));
    }
}
