//! PATCH bodies by content type: JSON merge patch, JSON patch, strategic merge patch and
//! server-side apply, each turned into the patched object.

use serde_json::Value;

use kybern_engine::strategic_merge::{self, PatchOutcome};

use crate::error::StoreError;

/// The patch formats the fake accepts, named by their `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchKind {
    /// The kind for a `Content-Type` header value (parameters ignored).
    pub(crate) fn from_content_type(content_type: &str) -> Option<PatchKind> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Decodes a patch body: JSON, or for apply patches also YAML (one document).
pub(crate) fn decode(kind: PatchKind, body: &[u8]) -> Result<Value, StoreError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) if kind == PatchKind::Apply => {
            let text = std::str::from_utf8(body)
                .map_err(|_| StoreError::BadRequest("apply patch is not UTF-8".to_string()))?;
            let mut docs = kybern_engine::yaml::parse_all(text)
                .map_err(|e| StoreError::BadRequest(format!("error decoding YAML: {e}")))?;
            match docs.len() {
                1 => Ok(docs.remove(0)),
                0 => Err(StoreError::BadRequest(format!(
                    "error decoding patch: {json_err}"
                ))),
                n => Err(StoreError::BadRequest(format!(
                    "apply patch must be one YAML document, got {n}"
                ))),
            }
        }
        Err(e) => Err(StoreError::BadRequest(format!("error decoding patch: {e}"))),
    }
}

/// Applies `patch` (already decoded) of `kind` to `live`, returning the patched object.
///
/// Strategic merge patches and apply configurations go through the engine's strategic merge,
/// whose list merge keys come from the built-in Kubernetes schema (lists of custom resources are
/// replaced). Apply merges maps recursively, `null` removes a field, and fields the manager
/// applied before but omits now are kept (no managed-fields pruning).
pub(crate) fn apply_patch(
    kind: PatchKind,
    live: &Value,
    patch: &Value,
) -> Result<Value, StoreError> {
    match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(StoreError::BadRequest(
                    "merge patch must be a JSON object".to_string(),
                ));
            }
            let mut out = live.clone();
            json_patch::merge(&mut out, patch);
            Ok(out)
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| StoreError::BadRequest(format!("error decoding JSON patch: {e}")))?;
            let mut out = live.clone();
            json_patch::patch(&mut out, &ops).map_err(|e| StoreError::Invalid {
                kind: String::new(),
                name: String::new(),
                message: format!("the JSON patch could not be applied: {e}"),
            })?;
            Ok(out)
        }
        PatchKind::Strategic | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(StoreError::BadRequest(
                    "patch must be a JSON object".to_string(),
                ));
            }
            match strategic_merge::apply_configuration(live, patch) {
                Ok(PatchOutcome::Patched(v)) => Ok(v),
                Ok(PatchOutcome::Skip(m)) => Err(StoreError::BadRequest(m)),
                Err(e) => Err(StoreError::BadRequest(format!("error applying patch: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx"}, {"name": "side", "image": "busybox"}
            ]}}}
        })
    }

    #[test]
    fn content_types_map_to_kinds() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml"),
            Some(PatchKind::Apply)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }

    #[test]
    fn merge_patch_null_removes_and_lists_replace() {
        let p = json!({"metadata": {"labels": {"a": null}}, "spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}});
        let out = apply_patch(PatchKind::Merge, &live(), &p).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "x"}])
        );
    }

    #[test]
    fn strategic_patch_merges_containers_by_name_and_null_removes() {
        let p = json!({"metadata": {"labels": {"b": null}},
            "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "alpine"}]}}}});
        let out = apply_patch(PatchKind::Strategic, &live(), &p).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["image"], "nginx");
        assert_eq!(c[1]["image"], "alpine");
    }

    #[test]
    fn json_patch_ops_and_failed_test_is_invalid() {
        let p = json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]);
        assert_eq!(
            apply_patch(PatchKind::Json, &live(), &p).unwrap()["spec"]["replicas"],
            3
        );
        let bad = json!([{"op": "test", "path": "/spec/replicas", "value": 9}]);
        assert_eq!(
            apply_patch(PatchKind::Json, &live(), &bad)
                .unwrap_err()
                .code(),
            422
        );
        assert_eq!(
            apply_patch(PatchKind::Json, &live(), &json!({"op": 1}))
                .unwrap_err()
                .code(),
            400
        );
    }

    #[test]
    fn apply_bodies_may_be_yaml() {
        let v = decode(
            PatchKind::Apply,
            b"apiVersion: v1\nkind: ConfigMap\ndata:\n  k: v\n",
        )
        .unwrap();
        assert_eq!(v["data"]["k"], "v");
        assert!(decode(PatchKind::Merge, b"a: b").is_err());
        assert!(decode(PatchKind::Apply, b"").is_err());
    }
}
