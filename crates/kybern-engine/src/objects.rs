//! Lookups over in-memory Kubernetes objects: by key, by kind, and by Kubernetes API path
//! (`/api/v1/namespaces/x/configmaps`). Providers backed by files or caches share these.

use crate::context::ProviderError;
use serde_json::{Value, json};

/// The string at a path of keys; empty when absent or not a string.
pub fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    at(v, path).and_then(Value::as_str).unwrap_or_default()
}

/// The value at a path of keys (a JSON pointer would unescape each key into a new string).
pub fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, key| get(v, key))
}

/// `v[key]` when `v` is an object ([`map_get`]).
pub fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => map_get(m, key),
        _ => None,
    }
}

/// `m[key]`. A resource's objects are small (a container has a handful of keys): comparing
/// key lengths first skips most byte comparisons, which the map's ordered search makes with
/// every key it passes.
pub fn map_get<'v>(m: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v Value> {
    if m.len() > 16 {
        return m.get(key);
    }
    m.iter()
        .find(|(k, _)| k.len() == key.len() && k.as_bytes() == key.as_bytes())
        .map(|(_, v)| v)
}

/// An object's `metadata.labels` as strings (non-string values printed as JSON).
pub fn labels(obj: &Value) -> crate::context::Labels {
    crate::objects::at(obj, &["metadata", "labels"])
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), crate::variables::to_text(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Kinds compare without case: a kind derived from a plural resource name (`computeclasses`)
/// cannot recover its capitals (`ComputeClass`), and no two kinds differ by case alone.
fn same_kind(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The object with this apiVersion, kind, namespace and name.
pub fn find<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<&'a Value> {
    objects.into_iter().find(|o| {
        str_at(o, &["apiVersion"]) == api_version
            && same_kind(str_at(o, &["kind"]), kind)
            && str_at(o, &["metadata", "namespace"]) == namespace
            && str_at(o, &["metadata", "name"]) == name
    })
}

/// Objects of one apiVersion and kind, in a namespace (empty: every namespace).
pub fn select<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
    api_version: &'a str,
    kind: &'a str,
    namespace: &'a str,
) -> impl Iterator<Item = &'a Value> {
    objects.into_iter().filter(move |o| {
        str_at(o, &["apiVersion"]) == api_version
            && same_kind(str_at(o, &["kind"]), kind)
            && (namespace.is_empty() || str_at(o, &["metadata", "namespace"]) == namespace)
    })
}

/// Does a plural resource name (`configmaps`, `ingresses`, `policies`) name this kind?
fn resource_names_kind(resource: &str, kind: &str) -> bool {
    let kind = kind.to_ascii_lowercase();
    resource.strip_suffix('s') == Some(kind.as_str())
        || resource.strip_suffix("es") == Some(kind.as_str())
        || kind
            .strip_suffix('y')
            .is_some_and(|k| resource.strip_suffix("ies") == Some(k))
}

/// True when the API serves `resource` at `api_version`: a built-in resource, the kind of one of
/// the objects, or the plural of one of the CustomResourceDefinitions among them.
fn served(objects: &[&Value], api_version: &str, resource: &str) -> bool {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    crate::cel::match_constraints::is_builtin_resource(group, resource)
        || objects.iter().any(|o| {
            (str_at(o, &["apiVersion"]) == api_version
                && resource_names_kind(resource, str_at(o, &["kind"])))
                || (str_at(o, &["kind"]) == "CustomResourceDefinition"
                    && str_at(o, &["spec", "group"]) == group
                    && str_at(o, &["spec", "names", "plural"]) == resource
                    && crate::objects::at(o, &["spec", "versions"])
                        .and_then(Value::as_array)
                        .is_some_and(|vs| vs.iter().any(|v| str_at(v, &["name"]) == version)))
        })
}

/// Answers a Kubernetes API GET path from the objects: one object, or a `List` of them. A
/// resource the API does not serve is a not-found error, as the API server's 404, so that an
/// apiCall's `default` applies (an empty `List` would hide it).
pub fn api_path<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
    path: &str,
) -> Result<Value, ProviderError> {
    let path = path
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    let unsupported = || ProviderError::Failed(format!("unsupported API path {path}"));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (api_version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return Err(unsupported()),
    };
    let (namespace, resource, name) = match rest {
        ["namespaces", ns, res] => (Some(*ns), *res, None),
        ["namespaces", ns, res, name] => (Some(*ns), *res, Some(*name)),
        [res] => (None, *res, None),
        [res, name] => (None, *res, Some(*name)),
        _ => return Err(unsupported()),
    };
    let objects: Vec<&Value> = objects.into_iter().collect();
    if !served(&objects, &api_version, resource) {
        return Err(ProviderError::Failed(format!(
            "{path}: the server could not find the requested resource (404)"
        )));
    }
    let mut items = objects.into_iter().filter(|o| {
        str_at(o, &["apiVersion"]) == api_version
            && resource_names_kind(resource, str_at(o, &["kind"]))
            && namespace.is_none_or(|ns| str_at(o, &["metadata", "namespace"]) == ns)
    });
    match name {
        Some(n) => items
            .find(|o| str_at(o, &["metadata", "name"]) == n)
            .cloned()
            .ok_or_else(|| ProviderError::Failed(format!("{path} not found"))),
        None => Ok(json!({
            "apiVersion": "v1", "kind": "List", "metadata": {},
            "items": items.cloned().collect::<Vec<_>>(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "y"}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": "x"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
        ]
    }

    #[test]
    fn finds_by_key_and_kind() {
        let objs = objects();
        assert!(find(&objs, "v1", "ConfigMap", "y", "b").is_some());
        assert!(find(&objs, "v1", "ConfigMap", "x", "b").is_none());
        assert_eq!(select(&objs, "v1", "ConfigMap", "").count(), 2);
    }

    #[test]
    fn answers_api_paths() {
        let objs = objects();
        let list = api_path(&objs, "/api/v1/namespaces/x/configmaps").unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let ing = api_path(&objs, "/apis/networking.k8s.io/v1/namespaces/x/ingresses/i").unwrap();
        assert_eq!(ing["metadata"]["name"], "i");
        assert_eq!(
            api_path(&objs, "/api/v1/namespaces").unwrap()["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(api_path(&objs, "/api/v1/namespaces/x/configmaps/zz").is_err());
        assert!(api_path(&objs, "/version").is_err());
    }

    #[test]
    fn unknown_resources_are_not_found_and_known_ones_list_empty() {
        let mut objs = objects();
        let empty = api_path(&objs, "/api/v1/namespaces/x/secrets").unwrap();
        assert_eq!(empty["items"], json!([]));
        let err = api_path(&objs, "/api/v1/namespaces/x/nosuchthings").unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        assert!(api_path(&objs, "/apis/example.com/v1/widgets").is_err());
        objs.push(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1"}]}}),
        );
        assert_eq!(
            api_path(&objs, "/apis/example.com/v1/widgets").unwrap()["items"],
            json!([])
        );
        assert!(api_path(&objs, "/apis/example.com/v2/widgets").is_err());
    }
}
