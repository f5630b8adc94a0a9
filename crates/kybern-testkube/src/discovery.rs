//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}` and
//! `/apis/{group}/{version}`, always in the legacy (non-aggregated) JSON form.

use serde_json::{Value, json};

use crate::resource::{ResourceType, version_priority};

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The built-in types in the `all` category.
const ALL_CATEGORY: [(&str, &str); 6] = [
    ("", "pods"),
    ("", "services"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
];

/// `/version`: the server claims Kubernetes 1.33.0.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's versions.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis`: every named group with its versions, the preferred one first.
pub(crate) fn group_list<'a>(types: impl Iterator<Item = &'a ResourceType>) -> Value {
    let types: Vec<&ResourceType> = types.collect();
    let mut names: Vec<&str> = Vec::new();
    for t in &types {
        if !t.group.is_empty() && !names.contains(&t.group.as_str()) {
            names.push(&t.group);
        }
    }
    let groups: Vec<Value> = names
        .iter()
        .filter_map(|g| group_doc(types.iter().copied(), g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, or `None` for an unknown group.
pub(crate) fn group<'a>(
    types: impl Iterator<Item = &'a ResourceType>,
    group: &str,
) -> Option<Value> {
    let mut doc = group_doc(types, group)?;
    if let Some(map) = doc.as_object_mut() {
        map.insert("kind".to_string(), json!("APIGroup"));
        map.insert("apiVersion".to_string(), json!("v1"));
    }
    Some(doc)
}

fn group_doc<'a>(types: impl Iterator<Item = &'a ResourceType>, group: &str) -> Option<Value> {
    let mut versions: Vec<&str> = Vec::new();
    for t in types.filter(|t| t.group == group) {
        if !versions.contains(&t.version.as_str()) {
            versions.push(&t.version);
        }
    }
    versions.sort_by_key(|v| version_priority(v));
    let entry = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    let preferred = entry(versions.first()?);
    Some(json!({
        "name": group,
        "versions": versions.iter().map(|v| entry(v)).collect::<Vec<_>>(),
        "preferredVersion": preferred,
    }))
}

/// `/api/v1` or `/apis/{group}/{version}`, or `None` if nothing is served there.
pub(crate) fn resource_list<'a>(
    types: impl Iterator<Item = &'a ResourceType>,
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types.filter(|t| t.group == group && t.version == version) {
        let mut doc = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
            "shortNames": t.short_names,
        });
        // `kubectl get all` looks for this category.
        if ALL_CATEGORY.contains(&(t.group.as_str(), t.plural.as_str())) {
            doc["categories"] = json!(["all"]);
        }
        resources.push(doc);
        if t.has_status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::builtin;

    #[test]
    fn groups_list_preferred_version_first() {
        let mut types = builtin();
        types.push(ResourceType::new(
            "admissionregistration.k8s.io/v1alpha1",
            "X",
            "xs",
            false,
        ));
        let doc = group(types.iter(), "admissionregistration.k8s.io").unwrap();
        assert_eq!(doc["preferredVersion"]["version"], "v1");
        let versions: Vec<&str> = doc["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["v1", "v1beta1", "v1alpha1"]);
        let list = group_list(types.iter());
        assert!(
            list["groups"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["name"] != "")
        );
        assert!(group(types.iter(), "nope").is_none());
    }

    #[test]
    fn resource_lists_carry_status_subresources() {
        let types = builtin();
        let doc = resource_list(types.iter(), "", "v1").unwrap();
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"pods")
                && names.contains(&"pods/status")
                && !names.contains(&"configmaps/status")
        );
        assert!(resource_list(types.iter(), "apps", "v2").is_none());
    }
}
