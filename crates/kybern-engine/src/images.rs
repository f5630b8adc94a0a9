//! Container image references: parsing them as Kyverno does, building the `images` variable,
//! and finding images where a rule's `imageExtractors` say custom resources keep them.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

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

/// One `imageExtractors` entry: where resources of a kind keep image references.
#[derive(Debug, Clone, PartialEq)]
pub struct Extractor {
    /// The path's fields before the value; `*` walks every item of a list or map.
    fields: Vec<String>,
    /// The field holding the image (`value`, else the path's last field).
    value: String,
    /// `key`: the field naming each image (its pointer when unset).
    key: String,
    /// `name`: the group the images are listed under (`custom` when unset).
    pub name: String,
    /// `jmesPath`: applied to each value, must give the image string.
    jmes_path: String,
}

/// A rule's `imageExtractors`: for each kind they name, they replace the built-in pod-spec
/// extraction (as in Kyverno).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extractors(BTreeMap<String, Vec<Extractor>>);

/// An image an extractor found: its group, key, the image (after `jmesPath`) and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub group: String,
    pub key: String,
    pub image: String,
    pub pointer: String,
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl Extractors {
    /// Reads `imageExtractors` (`{Kind: [{path, value, key, name, jmesPath}]}`); the error
    /// names the field.
    pub fn from_json(v: Option<&Value>) -> Result<Extractors, (String, String)> {
        let mut out = BTreeMap::new();
        let Some(map) = v.and_then(Value::as_object) else {
            return match v {
                None | Some(Value::Null) => Ok(Extractors::default()),
                Some(_) => Err((String::new(), "must be a map of kinds to lists".into())),
            };
        };
        for (kind, list) in map {
            let Some(list) = list.as_array() else {
                return Err((format!(".{kind}"), "must be a list".into()));
            };
            let mut extractors = Vec::new();
            for (i, e) in list.iter().enumerate() {
                let at = format!(".{kind}[{i}]");
                let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
                let mut fields: Vec<String> = text("path")
                    .split('/')
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect();
                let value = match text("value") {
                    "" => match fields.pop() {
                        Some(last) => last,
                        None => return Err((format!("{at}.path"), "path is required".into())),
                    },
                    v => v.to_string(),
                };
                let jmes_path = text("jmesPath").to_string();
                if !jmes_path.is_empty() {
                    crate::jmespath::compile(&jmes_path)
                        .map_err(|err| (format!("{at}.jmesPath"), err.to_string()))?;
                }
                extractors.push(Extractor {
                    fields,
                    value,
                    key: text("key").to_string(),
                    name: match text("name") {
                        "" => "custom".to_string(),
                        n => n.to_string(),
                    },
                    jmes_path,
                });
            }
            out.insert(kind.clone(), extractors);
        }
        Ok(Extractors(out))
    }

    /// The extractors for a kind, when the rule names it.
    pub fn for_kind(&self, kind: &str) -> Option<&[Extractor]> {
        self.0.get(kind).map(Vec::as_slice)
    }
}

/// The `images` variable of extracted images, Kyverno's shape
/// (`images.<name>.<key>.{registry, path, name, tag, digest, reference, ..., jsonPointer}`);
/// values that are no image are left out (the rule reports them).
pub fn images_variable(found: &[Extracted]) -> Value {
    let mut out = Map::new();
    for f in found {
        let Some(info) = ImageInfo::parse(&f.image) else {
            continue;
        };
        if let Some(group) = out
            .entry(f.group.clone())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
        {
            group.insert(f.key.clone(), info.to_json(&f.pointer));
        }
    }
    Value::Object(out)
}

impl Extractor {
    /// The images this extractor finds in `resource`, in document order.
    pub fn extract(&self, resource: &Value) -> Result<Vec<Extracted>, String> {
        let mut out = Vec::new();
        self.walk(resource, &mut Vec::new(), &self.fields, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        node: &Value,
        path: &mut Vec<String>,
        fields: &[String],
        out: &mut Vec<Extracted>,
    ) -> Result<(), String> {
        if node.is_null() {
            return Ok(());
        }
        if let Some((first, rest)) = fields.split_first()
            && first == "*"
        {
            match node {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push(i.to_string());
                        self.walk(item, path, rest, out)?;
                        path.pop();
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map {
                        path.push(escape_pointer(k));
                        self.walk(item, path, rest, out)?;
                        path.pop();
                    }
                }
                _ => return Err("invalid type".into()),
            }
            return Ok(());
        }
        let Some(object) = node.as_object() else {
            return Err("invalid image config".into());
        };
        let Some((first, rest)) = fields.split_first() else {
            let mut pointer: String = path.iter().map(|p| format!("/{p}")).collect();
            pointer.push('/');
            pointer.push_str(&escape_pointer(&self.value));
            let key = if self.key.is_empty() {
                pointer.clone()
            } else {
                match object.get(&self.key).and_then(Value::as_str) {
                    Some(k) => k.to_string(),
                    None => return Err("invalid key".into()),
                }
            };
            // An object without the value holds no image.
            let Some(raw) = object.get(&self.value).and_then(Value::as_str) else {
                return Ok(());
            };
            let image = if self.jmes_path.is_empty() {
                raw.to_string()
            } else {
                // Compiled once per expression text (checked at load), not per value.
                let expr =
                    crate::variables::compiled(&self.jmes_path).map_err(|e| e.to_string())?;
                match expr.search(&Value::String(raw.to_string())) {
                    Ok(Value::String(s)) => s,
                    Ok(other) => {
                        return Err(format!(
                            "jmespath {} must produce a string, but produced {other}",
                            self.jmes_path
                        ));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            };
            out.push(Extracted {
                group: self.name.clone(),
                key,
                image,
                pointer,
            });
            return Ok(());
        };
        match object.get(first) {
            Some(next) => {
                path.push(escape_pointer(first));
                let r = self.walk(next, path, rest, out);
                path.pop();
                r
            }
            None => Ok(()),
        }
    }
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

    #[test]
    fn extractors_walk_lists_and_maps_and_transform_with_jmespath() {
        let extractors = Extractors::from_json(Some(&json!({
            "DataVolume": [{"path": "/spec/source/registry/url",
                            "jmesPath": "trim_prefix(@, 'docker://')"}],
            "Task": [{"name": "steps", "path": "/spec/steps/*", "value": "image", "key": "name"},
                     {"path": "/spec/sidecars/*/image"}],
        })))
        .unwrap();
        let dv = json!({"kind": "DataVolume", "spec": {"source": {"registry": {
            "url": "docker://ghcr.io/team/disk:v1"}}}});
        let found = extractors.for_kind("DataVolume").unwrap()[0]
            .extract(&dv)
            .unwrap();
        assert_eq!(
            found,
            vec![Extracted {
                group: "custom".into(),
                key: "/spec/source/registry/url".into(),
                image: "ghcr.io/team/disk:v1".into(),
                pointer: "/spec/source/registry/url".into(),
            }]
        );
        let task = json!({"kind": "Task", "spec": {
            "steps": [{"name": "build", "image": "golang:1.22"}, {"name": "no-image"}],
            "sidecars": [{"image": "redis:7"}]}});
        let [steps, sidecars] = extractors.for_kind("Task").unwrap() else {
            panic!("two extractors")
        };
        let found = steps.extract(&task).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (
                found[0].group.as_str(),
                found[0].key.as_str(),
                found[0].pointer.as_str()
            ),
            ("steps", "build", "/spec/steps/0/image")
        );
        assert_eq!(
            sidecars.extract(&task).unwrap()[0].pointer,
            "/spec/sidecars/0/image"
        );
        assert!(extractors.for_kind("Pod").is_none());
        let mut all = steps.extract(&task).unwrap();
        all.extend(sidecars.extract(&task).unwrap());
        let images = images_variable(&all);
        assert_eq!(images["steps"]["build"]["tag"], "1.22");
        assert_eq!(
            images["custom"]["/spec/sidecars/0/image"]["jsonPointer"],
            "/spec/sidecars/0/image"
        );
        // A key field that is missing, a wildcard over a string: Kyverno's errors.
        let bad = json!({"kind": "Task", "spec": {"steps": [{"image": "x"}], "sidecars": "x"}});
        assert_eq!(steps.extract(&bad).unwrap_err(), "invalid key");
        assert_eq!(sidecars.extract(&bad).unwrap_err(), "invalid type");
        let err = Extractors::from_json(Some(&json!({"X": [{"path": "/a", "jmesPath": "("}]})))
            .unwrap_err();
        assert_eq!(err.0, ".X[0].jmesPath");
    }
}
