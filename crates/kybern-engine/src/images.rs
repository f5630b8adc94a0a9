//! Container image references: parsing them as Kyverno does and building the `images` variable.

use serde_json::{Map, Value, json};

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    pub registry: String,
    pub path: String,
    pub name: String,
    pub tag: String,
    pub digest: String,
}

const DEFAULT_REGISTRY: &str = "docker.io";

impl ImageInfo {
    /// Parses `[registry/]path[:tag][@digest]`; short names get the default registry and `latest`.
    pub fn parse(image: &str) -> Option<ImageInfo> {
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            return None;
        }
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, d.to_string()),
            None => (image, String::new()),
        };
        // A tag is a `:` after the last `/` (a `:` before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name_part, tag) = match rest.get(last_slash..).and_then(|s| s.rfind(':')) {
            Some(i) => {
                let split = last_slash + i;
                (
                    rest.get(..split)?,
                    rest.get(split + 1..).unwrap_or_default().to_string(),
                )
            }
            None => (rest, String::new()),
        };
        let (registry, path) = match name_part.split_once('/') {
            Some((first, tail))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), tail.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name_part.to_string()),
        };
        if path.is_empty() {
            return None;
        }
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        let tag = if tag.is_empty() && digest.is_empty() {
            "latest".to_string()
        } else {
            tag
        };
        Some(ImageInfo {
            registry,
            path,
            name,
            tag,
            digest,
        })
    }

    /// `registry/path:tag`, or `registry/path@digest` when pinned.
    pub fn reference(&self) -> String {
        if self.digest.is_empty() {
            format!("{}/{}:{}", self.registry, self.path, self.tag)
        } else {
            format!("{}/{}@{}", self.registry, self.path, self.digest)
        }
    }

    fn to_json(&self, pointer: &str) -> Value {
        json!({
            "registry": self.registry,
            "path": self.path,
            "name": self.name,
            "tag": self.tag,
            "digest": self.digest,
            "reference": self.reference(),
            "referenceWithTag": format!("{}/{}:{}", self.registry, self.path, self.tag),
            "jsonPointer": pointer,
        })
    }
}

/// Where the pod spec of a kind lives.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "DaemonSet"
        | "StatefulSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The `images` variable: `images.<containers|initContainers|ephemeralContainers>.<name>.{…}`.
pub fn extract(resource: &Value) -> Value {
    let kind = resource
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(spec_ptr) = pod_spec_pointer(kind) else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        let ptr = format!("{spec_ptr}/{field}");
        let Some(list) = resource.pointer(&ptr).and_then(Value::as_array) else {
            continue;
        };
        let mut by_name = Map::new();
        for (i, c) in list.iter().enumerate() {
            let (Some(name), Some(image)) = (
                c.get("name").and_then(Value::as_str),
                c.get("image").and_then(Value::as_str),
            ) else {
                continue;
            };
            if let Some(info) = ImageInfo::parse(image) {
                by_name.insert(name.to_string(), info.to_json(&format!("{ptr}/{i}/image")));
            }
        }
        if !by_name.is_empty() {
            out.insert(field.to_string(), Value::Object(by_name));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_get_registry_and_latest() {
        let i = ImageInfo::parse("nginx").unwrap();
        assert_eq!(
            (i.registry.as_str(), i.path.as_str(), i.tag.as_str()),
            ("docker.io", "nginx", "latest")
        );
        assert_eq!(i.reference(), "docker.io/nginx:latest");
    }

    #[test]
    fn registry_with_port_and_digest() {
        let i = ImageInfo::parse("localhost:5000/team/app:1.2@sha256:abc").unwrap();
        assert_eq!(i.registry, "localhost:5000");
        assert_eq!(i.path, "team/app");
        assert_eq!(i.name, "app");
        assert_eq!(i.tag, "1.2");
        assert_eq!(i.digest, "sha256:abc");
    }

    #[test]
    fn extracts_from_deployments() {
        let d = serde_json::json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "ghcr.io/x/web:2"}]}}}});
        let imgs = extract(&d);
        assert_eq!(imgs["containers"]["web"]["tag"], "2");
        assert_eq!(
            imgs["containers"]["web"]["jsonPointer"],
            "/spec/template/spec/containers/0/image"
        );
    }
}
