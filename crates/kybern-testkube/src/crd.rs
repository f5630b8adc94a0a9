//! CustomResourceDefinitions: the resource types a CRD serves, and the status the
//! apiextensions controllers would give it.

use serde_json::{Value, json};

use crate::error::StoreError;
use crate::resource::ResourceType;

/// The types a CustomResourceDefinition serves, or why it is invalid.
pub(crate) fn served_types(crd: &Value) -> Result<Vec<ResourceType>, StoreError> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let invalid = |message: &str| StoreError::Invalid {
        kind: "CustomResourceDefinition".to_string(),
        name: name.clone(),
        message: message.to_string(),
    };
    let spec = crd
        .get("spec")
        .ok_or_else(|| invalid("spec: Required value"))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let group = text(spec.get("group"));
    let names = spec.get("names").cloned().unwrap_or_default();
    let plural = text(names.get("plural"));
    let kind = text(names.get("kind"));
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err(invalid(
            "spec.group, spec.names.plural and spec.names.kind are required",
        ));
    }
    if name != format!("{plural}.{group}") {
        return Err(invalid(
            "metadata.name: Invalid value: must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let singular = Some(text(names.get("singular")))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let short_names: Vec<String> = names
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err(invalid("spec.scope: must be Namespaced or Cluster")),
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        return Err(invalid("spec.versions: Required value"));
    }
    let mut types = Vec::new();
    for v in &versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = text(v.get("name"));
        if version.is_empty() {
            return Err(invalid("spec.versions[].name: Required value"));
        }
        types.push(ResourceType {
            group: group.clone(),
            version,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            has_status: v.pointer("/subresources/status").is_some(),
            short_names: short_names.clone(),
        });
    }
    Ok(types)
}

/// The status the apiextensions controllers would set: names accepted, established.
pub(crate) fn status(crd: &Value, types: &[ResourceType], now: &str) -> Value {
    let condition = |kind: &str, reason: &str| json!({"type": kind, "status": "True", "reason": reason, "message": "", "lastTransitionTime": now});
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let stored = if stored.is_empty() {
        types
            .first()
            .map(|t| vec![Value::String(t.version.clone())])
            .unwrap_or_default()
    } else {
        stored
    };
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_default(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts"),
            condition("Established", "InitialNamesAccepted"),
        ],
        "storedVersions": stored,
    })
}
