//! `admission.k8s.io/v1` AdmissionReview as the API server sends and expects it, and its
//! translation into the engine's [`AdmissionRequest`].

use crate::error::ApiError;
use kybern_engine::request::{AdmissionRequest, Gvk, Operation, UserInfo};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The only AdmissionReview version handled (Kyverno registers `admissionReviewVersions: [v1]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// An incoming AdmissionReview.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub request: Option<WireRequest>,
}

/// Group, version and kind.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// Group, version and resource.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

/// The `userInfo` of a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireUserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub extra: Map<String, Value>,
}

/// The `request` of an AdmissionReview.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRequest {
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    pub request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    pub request_sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub user_info: WireUserInfo,
    #[serde(default, deserialize_with = "strict_value")]
    pub object: Value,
    #[serde(default, deserialize_with = "strict_value")]
    pub old_object: Value,
    #[serde(default)]
    pub dry_run: Option<bool>,
    #[serde(default)]
    pub options: Option<Value>,
}

/// The `status` of a denial.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub status: &'static str,
    pub message: String,
    /// The decision trace, when the request asked for it (`?explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

/// `metav1.StatusDetails`, of which only `causes` is used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusDetails {
    pub causes: Vec<Cause>,
}

/// `metav1.StatusCause`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Base64 of the RFC 6902 JSON patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The answer: an AdmissionReview carrying only the response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: AdmissionResponse,
}

impl ReviewResponse {
    pub fn new(response: AdmissionResponse) -> Self {
        ReviewResponse {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response,
        }
    }
}

/// Nesting levels of an AdmissionReview around its `object`: the review and its `request`.
pub const WRAPPER_DEPTH: usize = 2;

/// What a cheap pass over a body tells before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Deepest nesting of brackets in the whole body.
    pub depth: usize,
    /// JSON values in containers (an upper bound: `{`, `[` and `,` outside strings).
    pub values: usize,
}

/// Scans a body's brackets and separators, skipping strings.
pub fn shape(body: &[u8]) -> Shape {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut values = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                values += 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
    }
    Shape {
        depth: deepest,
        values,
    }
}

/// Decodes a body into an AdmissionReview and checks the parts every answer needs.
/// `max_object_depth` bounds the nesting of the `object` and `oldObject` themselves (their own
/// braces are level 1); the AdmissionReview around them is not counted.
pub fn decode(body: &[u8], max_object_depth: usize) -> Result<(WireRequest, String), ApiError> {
    decode_shaped(body, shape(body), max_object_depth)
}

/// [`decode`] with the body's [`Shape`] already known.
pub fn decode_shaped(
    body: &[u8],
    shape: Shape,
    max_object_depth: usize,
) -> Result<(WireRequest, String), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::EmptyBody);
    }
    // The other parts of a review (userInfo, options) nest less than the object may.
    if shape.depth > max_object_depth.saturating_add(WRAPPER_DEPTH) {
        return Err(ApiError::TooDeep(max_object_depth));
    }
    // The scan above bounds the depth, so serde_json's own bound (128 for the whole body, which
    // would count the wrapper) is not needed.
    let mut de = serde_json::Deserializer::from_slice(body);
    de.disable_recursion_limit();
    let review = AdmissionReview::deserialize(&mut de)
        .and_then(|r| de.end().map(|()| r))
        .map_err(|e| ApiError::InvalidReview(e.to_string()))?;
    let version = review.api_version.unwrap_or_default();
    if version != API_VERSION || review.kind.as_deref() != Some("AdmissionReview") {
        return Err(ApiError::UnsupportedVersion(format!(
            "apiVersion {version:?}, kind {:?}",
            review.kind.unwrap_or_default()
        )));
    }
    let request = review.request.ok_or(ApiError::MissingRequest)?;
    let uid = match &request.uid {
        Some(u) if !u.is_empty() => u.clone(),
        _ => return Err(ApiError::MissingUid),
    };
    Ok((request, uid))
}

/// Kinds sent for subresources that are not the parent object, with the parent's kind.
fn parent_kind(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "pods" => "Pod",
        "deployments" => "Deployment",
        "replicasets" => "ReplicaSet",
        "statefulsets" => "StatefulSet",
        "daemonsets" => "DaemonSet",
        "replicationcontrollers" => "ReplicationController",
        "jobs" => "Job",
        "cronjobs" => "CronJob",
        "services" => "Service",
        "nodes" => "Node",
        "namespaces" => "Namespace",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "persistentvolumes" => "PersistentVolume",
        "horizontalpodautoscalers" => "HorizontalPodAutoscaler",
        "serviceaccounts" => "ServiceAccount",
        "certificatesigningrequests" => "CertificateSigningRequest",
        "customresourcedefinitions" => "CustomResourceDefinition",
        "ingresses" => "Ingress",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        _ => return None,
    })
}

/// The namespace whose labels the request's `namespaceSelector`s are judged on; empty for
/// cluster-scoped objects and for a Namespace itself (its own labels count).
pub fn labels_namespace(w: &WireRequest) -> String {
    let is_namespace =
        w.kind.kind == "Namespace" && w.sub_resource.as_deref().unwrap_or("").is_empty();
    if is_namespace {
        String::new()
    } else {
        w.namespace.clone().unwrap_or_default()
    }
}

/// Builds the engine request. `namespace_labels` looks up a namespace's labels.
pub fn to_engine_request(
    mut w: WireRequest,
    namespace_labels: impl Fn(&str) -> Option<kybern_engine::context::Labels>,
) -> Result<AdmissionRequest, ApiError> {
    let operation = Operation::parse(&w.operation)
        .ok_or_else(|| ApiError::UnknownOperation(w.operation.clone()))?;
    let namespace = w.namespace.clone().unwrap_or_default();
    // Taken, not copied: the objects are the largest part of the request.
    let mut object = std::mem::take(&mut w.object);
    let mut old_object = std::mem::take(&mut w.old_object);
    // The engine reads the namespace from the object; fill it in when the API server left it out,
    // as Kyverno's `ConvertResource` does (not for a Namespace, whose request namespace is its own
    // name). Objects without metadata, such as the PodExecOptions of a `pods/exec` CONNECT, get it
    // too, so rules keyed on the namespace see it.
    if !namespace.is_empty() && w.kind.kind != "Namespace" {
        for obj in [&mut object, &mut old_object] {
            let Some(fields) = obj.as_object_mut() else {
                continue;
            };
            if let Some(meta) = fields
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                && !meta.contains_key("namespace")
            {
                meta.insert("namespace".into(), Value::String(namespace.clone()));
            }
        }
    }
    let subresource = w.sub_resource.clone().unwrap_or_default();
    let kind_override = if subresource.is_empty() {
        // Kinds the object does not carry (e.g. a bare object) come from the request.
        let from_object = Gvk::of(if object.is_null() {
            &old_object
        } else {
            &object
        });
        (from_object.kind.is_empty() && !w.kind.kind.is_empty()).then(|| Gvk {
            group: w.kind.group.clone(),
            version: w.kind.version.clone(),
            kind: w.kind.kind.clone(),
        })
    } else {
        // A subresource is matched as `<ParentKind>/<subresource>`.
        let kind = parent_kind(&w.resource.resource)
            .map(str::to_string)
            .unwrap_or_else(|| w.kind.kind.clone());
        Some(Gvk {
            group: w.resource.group.clone(),
            version: w.resource.version.clone(),
            kind,
        })
    };
    let user_info = UserInfo {
        username: w.user_info.username.clone(),
        uid: w.user_info.uid.clone(),
        groups: w.user_info.groups.clone(),
        extra: w.user_info.extra.clone(),
    };
    let labels_ns = labels_namespace(&w);
    Ok(AdmissionRequest {
        operation,
        object: object.into(),
        old_object: old_object.into(),
        user_info,
        roles: Vec::new(),
        cluster_roles: Vec::new(),
        namespace_labels: if labels_ns.is_empty() {
            None
        } else {
            namespace_labels(&labels_ns)
        },
        subresource,
        kind_override,
        dry_run: w.dry_run.unwrap_or(false),
        variables: Map::new(),
        no_user_info: false,
        request_name: w.name.clone().unwrap_or_default(),
    })
}

/// Deserializes JSON into a `Value`, refusing duplicate object keys: a parser that keeps the last
/// duplicate while the API server kept another would let a request bypass policies.
fn strict_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    d.deserialize_any(StrictVisitor)
}

struct StrictVisitor;
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(request: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#
        )
    }

    #[test]
    fn duplicate_keys_in_the_object_are_refused() {
        let body = review(
            r#"{"uid":"1","operation":"CREATE","object":{"kind":"Pod","kind":"Deployment"}}"#,
        );
        let err = decode(body.as_bytes(), 128).unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn missing_uid_and_request_are_distinct_errors() {
        assert!(matches!(
            decode(review(r#"{"operation":"CREATE"}"#).as_bytes(), 128),
            Err(ApiError::MissingUid)
        ));
        assert!(matches!(
            decode(review("null").as_bytes(), 128),
            Err(ApiError::MissingRequest)
        ));
        assert!(matches!(decode(b"  ", 128), Err(ApiError::EmptyBody)));
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert_eq!(shape(&[b'['; 200]).depth, 200);
        let inside = format!("\"{}\"", "[".repeat(300));
        assert_eq!(shape(inside.as_bytes()).depth, 0);
        assert_eq!(shape(br#"{"a":[1,2,{"b":"x,y"}]}"#).values, 5);
    }

    /// An object nested `levels` deep (its own braces are level 1).
    fn nested_object(levels: usize) -> String {
        let inner = format!(
            "{}1{}",
            r#"{"a":"#.repeat(levels - 1),
            "}".repeat(levels - 1)
        );
        format!(r#"{{"kind":"ConfigMap","data":{inner}}}"#)
    }

    #[test]
    fn the_nesting_limit_counts_the_object_not_the_review_around_it() {
        let body = |levels| {
            review(&format!(
                r#"{{"uid":"1","operation":"CREATE","object":{}}}"#,
                nested_object(levels)
            ))
        };
        let (w, _) = decode(body(128).as_bytes(), 128).unwrap();
        assert_eq!(w.object["kind"], "ConfigMap");
        assert!(matches!(
            decode(body(129).as_bytes(), 128),
            Err(ApiError::TooDeep(128))
        ));
        assert!(decode(body(1000).as_bytes(), 1000).is_ok());
    }

    #[test]
    fn subresources_match_as_parent_kind() {
        let body = review(
            r#"{"uid":"1","operation":"CONNECT","kind":{"group":"","version":"v1","kind":"PodExecOptions"},
            "resource":{"group":"","version":"v1","resource":"pods"},"subResource":"exec","namespace":"ns",
            "object":{"kind":"PodExecOptions","apiVersion":"v1","command":["sh"]}}"#,
        );
        let (w, _) = decode(body.as_bytes(), 128).unwrap();
        let req = to_engine_request(w, |_| None).unwrap();
        assert_eq!(req.gvk().kind, "Pod");
        assert_eq!(req.subresource, "exec");
        assert_eq!(req.operation, Operation::Connect);
    }

    #[test]
    fn connect_requests_keep_the_request_name_and_namespace() {
        let body = review(
            r#"{"uid":"1","operation":"CONNECT","kind":{"group":"","version":"v1","kind":"PodExecOptions"},
            "resource":{"group":"","version":"v1","resource":"pods"},"subResource":"exec",
            "name":"web-0","namespace":"prod",
            "object":{"kind":"PodExecOptions","apiVersion":"v1","command":["sh"]}}"#,
        );
        let (w, _) = decode(body.as_bytes(), 128).unwrap();
        let req = to_engine_request(w, |_| None).unwrap();
        assert_eq!(req.namespace(), "prod");
        assert_eq!(req.name(), Some("web-0"));
        let ctx = req.base_context().to_value();
        assert_eq!(ctx["request"]["namespace"], "prod");
        assert_eq!(ctx["request"]["name"], "web-0");
    }

    #[test]
    fn a_namespace_object_gets_no_namespace() {
        let body = review(
            r#"{"uid":"1","operation":"CREATE","kind":{"group":"","version":"v1","kind":"Namespace"},
            "resource":{"group":"","version":"v1","resource":"namespaces"},"name":"team","namespace":"team",
            "object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"team"}}}"#,
        );
        let (w, _) = decode(body.as_bytes(), 128).unwrap();
        let req = to_engine_request(w, |_| None).unwrap();
        assert_eq!(req.namespace(), "");
    }
}
