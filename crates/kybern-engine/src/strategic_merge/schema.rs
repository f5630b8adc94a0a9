//! Which lists of built-in Kubernetes types merge by key during a strategic merge patch.
//!
//! The table is transcribed from the `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`
//! extensions of the Kubernetes OpenAPI (generated from the `patchStrategy` / `patchMergeKey` tags
//! of `k8s.io/api` core/v1, apps/v1 and batch/v1). Only the types a mutate policy can reach through
//! the kinds below are listed; a field missing from the table has no strategy and is replaced, as a
//! field the schema knows without a strategy would be (e.g. `tolerations`, `args`, `readinessGates`).
//!
//! kustomize (which Kyverno delegates to) looks the schema up by the resource's `apiVersion` and
//! `kind` in its built-in OpenAPI document; a resource it cannot find (CRDs, removed API versions,
//! a missing `apiVersion`) gets no schema at all, so every list of it is replaced.

use serde_json::Value;

/// A schema node: a built-in type whose fields we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// Any other built-in object: only `metadata` is known.
    Object,
    ObjectMeta,
    Pod,
    PodSpec,
    PodStatus,
    Container,
    PodTemplateSpec,
    PodTemplate,
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, ReplicationController.
    Workload,
    WorkloadSpec,
    /// A status whose `conditions` merge by `type`.
    ConditionStatus,
    CronJob,
    CronJobSpec,
    JobTemplate,
    Service,
    ServiceSpec,
    ServiceAccount,
    Node,
    NodeSpec,
    NodeStatus,
}

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListRule {
    /// `x-kubernetes-patch-merge-key`; `None` for a merged list of scalars (e.g. `finalizers`).
    pub key: Option<&'static str>,
    /// The element type, when elements have list fields of their own.
    pub elem: Option<Ty>,
}

/// What the schema says about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Object(Ty),
    /// A list with patch strategy `merge`.
    MergeList(ListRule),
}

const fn keyed(key: &'static str) -> Field {
    Field::MergeList(ListRule {
        key: Some(key),
        elem: None,
    })
}

const fn keyed_of(key: &'static str, elem: Ty) -> Field {
    Field::MergeList(ListRule {
        key: Some(key),
        elem: Some(elem),
    })
}

const SCALAR_SET: Field = Field::MergeList(ListRule {
    key: None,
    elem: None,
});

/// (type, field, schema of the field).
const FIELDS: &[(Ty, &str, Field)] = &[
    (Ty::Object, "metadata", Field::Object(Ty::ObjectMeta)),
    (Ty::ObjectMeta, "finalizers", SCALAR_SET),
    (Ty::ObjectMeta, "ownerReferences", keyed("uid")),
    (Ty::Pod, "metadata", Field::Object(Ty::ObjectMeta)),
    (Ty::Pod, "spec", Field::Object(Ty::PodSpec)),
    (Ty::Pod, "status", Field::Object(Ty::PodStatus)),
    (Ty::PodSpec, "containers", keyed_of("name", Ty::Container)),
    (
        Ty::PodSpec,
        "initContainers",
        keyed_of("name", Ty::Container),
    ),
    (
        Ty::PodSpec,
        "ephemeralContainers",
        keyed_of("name", Ty::Container),
    ),
    (Ty::PodSpec, "volumes", keyed("name")),
    (Ty::PodSpec, "imagePullSecrets", keyed("name")),
    (Ty::PodSpec, "hostAliases", keyed("ip")),
    (
        Ty::PodSpec,
        "topologySpreadConstraints",
        keyed("topologyKey"),
    ),
    (Ty::PodSpec, "resourceClaims", keyed("name")),
    (Ty::PodSpec, "schedulingGates", keyed("name")),
    (Ty::PodStatus, "conditions", keyed("type")),
    (Ty::PodStatus, "podIPs", keyed("ip")),
    (Ty::PodStatus, "hostIPs", keyed("ip")),
    (Ty::Container, "ports", keyed("containerPort")),
    (Ty::Container, "env", keyed("name")),
    (Ty::Container, "volumeMounts", keyed("mountPath")),
    (Ty::Container, "volumeDevices", keyed("devicePath")),
    (
        Ty::PodTemplateSpec,
        "metadata",
        Field::Object(Ty::ObjectMeta),
    ),
    (Ty::PodTemplateSpec, "spec", Field::Object(Ty::PodSpec)),
    (Ty::PodTemplate, "metadata", Field::Object(Ty::ObjectMeta)),
    (
        Ty::PodTemplate,
        "template",
        Field::Object(Ty::PodTemplateSpec),
    ),
    (Ty::Workload, "metadata", Field::Object(Ty::ObjectMeta)),
    (Ty::Workload, "spec", Field::Object(Ty::WorkloadSpec)),
    (Ty::Workload, "status", Field::Object(Ty::ConditionStatus)),
    (
        Ty::WorkloadSpec,
        "template",
        Field::Object(Ty::PodTemplateSpec),
    ),
    (Ty::ConditionStatus, "conditions", keyed("type")),
    (Ty::CronJob, "metadata", Field::Object(Ty::ObjectMeta)),
    (Ty::CronJob, "spec", Field::Object(Ty::CronJobSpec)),
    (
        Ty::CronJobSpec,
        "jobTemplate",
        Field::Object(Ty::JobTemplate),
    ),
    (Ty::JobTemplate, "metadata", Field::Object(Ty::ObjectMeta)),
    (Ty::JobTemplate, "spec", Field::Object(Ty::WorkloadSpec)),
    (Ty::Service, "metadata", Field::Object(Ty::ObjectMeta)),
    (Ty::Service, "spec", Field::Object(Ty::ServiceSpec)),
    (Ty::ServiceSpec, "ports", keyed("port")),
    (
        Ty::ServiceAccount,
        "metadata",
        Field::Object(Ty::ObjectMeta),
    ),
    (Ty::ServiceAccount, "secrets", keyed("name")),
    (Ty::Node, "metadata", Field::Object(Ty::ObjectMeta)),
    (Ty::Node, "spec", Field::Object(Ty::NodeSpec)),
    (Ty::Node, "status", Field::Object(Ty::NodeStatus)),
    (Ty::NodeSpec, "podCIDRs", SCALAR_SET),
    (Ty::NodeStatus, "addresses", keyed("type")),
    (Ty::NodeStatus, "conditions", keyed("type")),
];

/// The schema of field `name` of type `ty`, if it merges specially or leads to such a field.
pub(crate) fn field(ty: Ty, name: &str) -> Option<Field> {
    FIELDS
        .iter()
        .find(|(t, n, _)| *t == ty && *n == name)
        .map(|(_, _, f)| *f)
}

/// API groups served by Kubernetes itself: their kinds have a schema (at least `metadata`).
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

/// The root schema of a resource, from its `apiVersion` and `kind`.
pub(crate) fn root(resource: &Value) -> Option<Ty> {
    let kind = resource.get("kind")?.as_str()?;
    let api_version = resource.get("apiVersion")?.as_str()?;
    if kind.is_empty() || api_version.is_empty() {
        return None;
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ty = match (group, version, kind) {
        ("", "v1", "Pod") => Ty::Pod,
        ("", "v1", "ReplicationController")
        | ("apps", "v1", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "v1", "Job") => Ty::Workload,
        ("batch", "v1" | "v1beta1", "CronJob") => Ty::CronJob,
        ("", "v1", "PodTemplate") => Ty::PodTemplate,
        ("", "v1", "Service") => Ty::Service,
        ("", "v1", "ServiceAccount") => Ty::ServiceAccount,
        ("", "v1", "Node") => Ty::Node,
        // Pod controllers of API versions removed from Kubernetes are unknown to the schema.
        ("apps" | "extensions", _, "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            return None;
        }
        _ if BUILTIN_GROUPS.contains(&group) => Ty::Object,
        _ => return None,
    };
    Some(ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_root_types_by_group_version_and_kind() {
        let cases = [
            (json!({"apiVersion": "v1", "kind": "Pod"}), Some(Ty::Pod)),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
                Some(Ty::Workload),
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob"}),
                Some(Ty::CronJob),
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap"}),
                Some(Ty::Object),
            ),
            (
                json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment"}),
                None,
            ),
            (
                json!({"apiVersion": "example.com/v1", "kind": "Widget"}),
                None,
            ),
            (json!({"kind": "Pod"}), None),
        ];
        for (resource, want) in cases {
            assert_eq!(root(&resource), want, "{resource}");
        }
    }

    #[test]
    fn tolerations_have_no_merge_key() {
        assert_eq!(field(Ty::PodSpec, "tolerations"), None);
        assert!(matches!(
            field(Ty::Container, "volumeMounts"),
            Some(Field::MergeList(ListRule {
                key: Some("mountPath"),
                ..
            }))
        ));
    }
}
