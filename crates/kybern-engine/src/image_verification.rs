//! `verifyImages` rules: which images an entry covers and the check that needs no registry,
//! `verifyDigest` (every covered image is pinned by a digest). Signatures, attestations and
//! digest resolution for `mutateDigest` need registry access, which this engine does not have:
//! an image that would need them makes the rule an error that names the image and the reason.

use crate::images::ImageInfo;
use crate::response::{FailureAction, RuleStatus};
use crate::wildcard;
use serde_json::Value;

/// One `verifyImages` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageVerification {
    /// `imageReferences` (or the older `image`): wildcard patterns of the images covered.
    pub references: Vec<String>,
    /// `skipImageReferences`.
    pub skip: Vec<String>,
    /// `attestors` or `attestations` are set: checking them needs the registry.
    pub needs_registry: bool,
    /// `verifyDigest` (default true).
    pub verify_digest: bool,
    /// `mutateDigest` (default true).
    pub mutate_digest: bool,
    /// `failureAction` of the entry, when set.
    pub failure_action: Option<FailureAction>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    }
}

impl ImageVerification {
    /// Reads one entry of `verifyImages`.
    pub fn from_json(entry: &Value) -> Self {
        let flag = |k: &str| entry.get(k).and_then(Value::as_bool).unwrap_or(true);
        let mut references = strings(entry.get("imageReferences"));
        references.extend(strings(entry.get("image")));
        ImageVerification {
            references,
            skip: strings(entry.get("skipImageReferences")),
            needs_registry: non_empty(entry.get("attestors"))
                || non_empty(entry.get("attestations"))
                || non_empty(entry.get("key"))
                || non_empty(entry.get("roots")),
            verify_digest: flag("verifyDigest"),
            mutate_digest: flag("mutateDigest"),
            failure_action: match entry.get("failureAction").and_then(Value::as_str) {
                Some(a) if a.eq_ignore_ascii_case("enforce") => Some(FailureAction::Enforce),
                Some(a) if a.eq_ignore_ascii_case("audit") => Some(FailureAction::Audit),
                _ => None,
            },
        }
    }

    fn covers(&self, image: &str, normalized: &str) -> bool {
        let any = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| wildcard::matches(p, image) || wildcard::matches(p, normalized))
        };
        any(&self.references) && !any(&self.skip)
    }
}

/// The images of a resource's pod spec, as written.
fn images_of(resource: &Value) -> Vec<String> {
    let extracted = crate::images::extract(resource);
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(by_name) = extracted.get(field).and_then(Value::as_object) {
            for info in by_name.values() {
                // The pointer to the image in the resource gives the image as written.
                if let Some(image) = info
                    .get("jsonPointer")
                    .and_then(Value::as_str)
                    .and_then(|p| resource.pointer(p))
                    .and_then(Value::as_str)
                {
                    out.push(image.to_string());
                }
            }
        }
    }
    out
}

/// Checks a resource against the entries: `None` when no entry covers any of its images.
pub fn check(entries: &[ImageVerification], resource: &Value) -> Option<(RuleStatus, String)> {
    let images = images_of(resource);
    let mut covered = false;
    let mut missing = Vec::new();
    for e in entries {
        for image in &images {
            let Some(info) = ImageInfo::parse(image) else {
                continue;
            };
            if !e.covers(image, &info.reference()) {
                continue;
            }
            covered = true;
            if e.needs_registry {
                return Some((
                    RuleStatus::Error,
                    format!(
                        "verifying signatures or attestations of {image} needs registry access, which kybern does not have yet"
                    ),
                ));
            }
            if info.digest.is_empty() && e.mutate_digest {
                return Some((
                    RuleStatus::Error,
                    format!(
                        "resolving the digest of {image} (mutateDigest) needs registry access, which kybern does not have yet"
                    ),
                ));
            }
            if info.digest.is_empty() && e.verify_digest {
                missing.push(image.clone());
            }
        }
    }
    if !covered {
        return None;
    }
    if missing.is_empty() {
        Some((RuleStatus::Pass, "image digests verified".into()))
    } else {
        Some((
            RuleStatus::Fail,
            format!("missing digest for {}", missing.join(", ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(images: &[&str]) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": containers}})
    }

    #[test]
    fn digests_are_checked_offline_and_registry_work_is_an_error() {
        let digest_only = ImageVerification::from_json(&json!({
            "imageReferences": ["*"], "mutateDigest": false, "verifyDigest": true}));
        let cases = [
            (pod(&["nginx:1.27@sha256:abc"]), Some(RuleStatus::Pass)),
            (pod(&["nginx:1.27"]), Some(RuleStatus::Fail)),
            (
                pod(&["nginx@sha256:abc", "redis:7"]),
                Some(RuleStatus::Fail),
            ),
        ];
        for (resource, want) in cases {
            let got = check(std::slice::from_ref(&digest_only), &resource).map(|(s, _)| s);
            assert_eq!(got, want, "{resource}");
        }
        let (_, message) = check(&[digest_only], &pod(&["redis:7"])).unwrap();
        assert_eq!(message, "missing digest for redis:7");

        let only_ghcr = ImageVerification::from_json(&json!({
            "imageReferences": ["ghcr.io/*"], "mutateDigest": false}));
        assert_eq!(check(&[only_ghcr], &pod(&["nginx:1"])), None);

        let signed = ImageVerification::from_json(&json!({
            "imageReferences": ["*"], "attestors": [{"entries": [{"keys": {"publicKeys": "k"}}]}]}));
        let (status, message) = check(&[signed], &pod(&["nginx:1"])).unwrap();
        assert_eq!(status, RuleStatus::Error);
        assert!(message.contains("registry access"), "{message}");

        let mutate = ImageVerification::from_json(&json!({"imageReferences": ["*"]}));
        assert_eq!(
            check(&[mutate], &pod(&["nginx:1"])).map(|(s, _)| s),
            Some(RuleStatus::Error)
        );
    }
}
