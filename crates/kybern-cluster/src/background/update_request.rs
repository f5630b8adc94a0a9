//! UpdateRequests (`kyverno.io/v2`): the durable hand-off of generate and mutate-existing work from admission to the
//! controller, in Kyverno's shape so existing tooling reads them. Pure: the request and policy in,
//! the object out, its name derived from policy, rules and request so that the same work is
//! never queued twice (every replica and every webhook path that sees the request computes the
//! same name; the second create is a 409).

use kybern_engine::request::AdmissionRequest;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The wire form (`admission.k8s.io/v1` AdmissionRequest) of an engine request, as stored in
/// `spec.context.admissionRequestInfo.admissionRequest`.
pub fn wire_request(uid: &str, request: &AdmissionRequest) -> Value {
    let gvk = request.gvk();
    let object = request.resource();
    let name = if request.request_name.is_empty() {
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    } else {
        request.request_name.as_str()
    };
    let operation = request.operation.as_str();
    json!({
        "uid": uid,
        "kind": {"group": gvk.group, "version": gvk.version, "kind": gvk.kind},
        "subResource": request.subresource,
        "name": name,
        "namespace": request.namespace(),
        "operation": operation,
        "userInfo": {
            "username": request.user_info.username,
            "uid": request.user_info.uid,
            "groups": request.user_info.groups,
            "extra": request.user_info.extra,
        },
        "object": *request.object,
        "oldObject": *request.old_object,
        "dryRun": request.dry_run,
    })
}

/// The deterministic name of the work for `rules` of `policy_key` on this request.
pub fn name(policy_key: &str, rules: &[String], trigger_uid: &str, request_uid: &str) -> String {
    let mut h = Sha256::new();
    for part in [policy_key, trigger_uid, request_uid] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for r in rules {
        h.update(r.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("ur-{hex}")
}

/// Kyverno's `spec.requestType`: what the controller does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Generate,
    /// Mutate existing: patch the rule's `targets`.
    Mutate,
    /// A GeneratingPolicy's objects (Kyverno's `cel-generate`).
    CelGenerate,
    /// A MutatingPolicy's existing targets (Kyverno's `cel-mutate`).
    CelMutate,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Generate => "generate",
            RequestType::Mutate => "mutate",
            RequestType::CelGenerate => "cel-generate",
            RequestType::CelMutate => "cel-mutate",
        }
    }
}

/// What an UpdateRequest records.
#[derive(Debug, Clone)]
pub struct GenerateWork<'a> {
    pub request_type: RequestType,
    /// `name` for a ClusterPolicy, `namespace/name` for a Policy (Kyverno's `spec.policy`).
    pub policy: &'a str,
    /// The store key of the policy (`ClusterPolicy.kyverno.io/name`).
    pub policy_key: &'a str,
    pub rules: Vec<String>,
    pub synchronize: bool,
    /// The trigger was deleted: what the rules wrote for it is deleted (Kyverno's
    /// `deleteDownstream`).
    pub delete_downstream: bool,
    pub request_uid: &'a str,
    pub request: &'a AdmissionRequest,
    /// Where UpdateRequests live (kybern's namespace).
    pub namespace: &'a str,
}

/// The UpdateRequest object for `work`.
pub fn object(work: &GenerateWork<'_>) -> Value {
    let trigger = work.request.resource();
    let meta = |p: &str| {
        trigger
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let trigger_uid = meta("/metadata/uid");
    let gvk = work.request.gvk();
    let api_version = if gvk.group.is_empty() {
        gvk.version.clone()
    } else {
        format!("{}/{}", gvk.group, gvk.version)
    };
    let (policy_ns, policy_name) = work.policy.split_once('/').unwrap_or(("", work.policy));
    // Kyverno's labels for each type, so its tooling selects the requests it knows.
    let labels = match work.request_type {
        RequestType::Generate | RequestType::CelGenerate => json!({
            "generate.kyverno.io/policy-name": policy_name,
            "generate.kyverno.io/policy-namespace": policy_ns,
            "generate.kyverno.io/trigger-kind": gvk.kind,
            "generate.kyverno.io/trigger-namespace": meta("/metadata/namespace"),
            "generate.kyverno.io/trigger-uid": trigger_uid,
        }),
        RequestType::Mutate | RequestType::CelMutate => json!({
            "mutate.updaterequest.kyverno.io/policy-name": policy_name,
            "mutate.updaterequest.kyverno.io/trigger-name":
                meta("/metadata/name").chars().take(63).collect::<String>(),
            "mutate.updaterequest.kyverno.io/trigger-namespace": meta("/metadata/namespace"),
            "mutate.updaterequest.kyverno.io/trigger-kind": gvk.kind,
            "mutate.updaterequest.kyverno.io/trigger-apiversion": api_version.replace('/', "-"),
            "mutate.updaterequest.kyverno.io/trigger-uid": trigger_uid,
        }),
    };
    json!({
        "apiVersion": "kyverno.io/v2",
        "kind": "UpdateRequest",
        "metadata": {
            "name": name(work.policy_key, &work.rules, &trigger_uid, work.request_uid),
            "namespace": work.namespace,
            "labels": labels,
        },
        "spec": {
            "requestType": work.request_type.as_str(),
            "policy": work.policy,
            "rule": work.rules.first().cloned().unwrap_or_default(),
            "ruleContext": work.rules.iter().map(|r| json!({
                "rule": r,
                "synchronize": work.synchronize,
                "trigger": {
                    "apiVersion": api_version,
                    "kind": gvk.kind,
                    "namespace": meta("/metadata/namespace"),
                    "name": meta("/metadata/name"),
                    "uid": meta("/metadata/uid"),
                },
            })).collect::<Vec<_>>(),
            "resource": {
                "apiVersion": api_version,
                "kind": gvk.kind,
                "namespace": meta("/metadata/namespace"),
                "name": meta("/metadata/name"),
                "uid": meta("/metadata/uid"),
            },
            "synchronize": work.synchronize,
            "deleteDownstream": work.delete_downstream,
            "context": {
                "userInfo": {
                    "roles": work.request.roles,
                    "clusterRoles": work.request.cluster_roles,
                    "userInfo": {
                        "username": work.request.user_info.username,
                        "uid": work.request.user_info.uid,
                        "groups": work.request.user_info.groups,
                    },
                },
                "admissionRequestInfo": {
                    "admissionRequest": wire_request(work.request_uid, work.request),
                    "operation": wire_request(work.request_uid, work.request)["operation"],
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybern_engine::request::Operation;
    use std::sync::Arc;

    fn request(uid: &str) -> AdmissionRequest {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a", "uid": uid}});
        let mut r = AdmissionRequest {
            operation: Operation::Create,
            object: Arc::new(ns),
            ..AdmissionRequest::default()
        };
        r.user_info.username = "alice".into();
        r
    }

    #[test]
    fn the_same_work_gets_the_same_name_and_other_work_another() {
        let rules = vec!["default-deny".to_string()];
        let a = name("ClusterPolicy.kyverno.io/p", &rules, "t1", "r1");
        assert_eq!(a, name("ClusterPolicy.kyverno.io/p", &rules, "t1", "r1"));
        assert!(a.starts_with("ur-") && a.len() == 23);
        assert_ne!(a, name("ClusterPolicy.kyverno.io/p", &rules, "t1", "r2"));
        assert_ne!(a, name("ClusterPolicy.kyverno.io/q", &rules, "t1", "r1"));
    }

    #[test]
    fn the_object_carries_the_request_the_controller_needs() {
        let req = request("u-1");
        let work = GenerateWork {
            request_type: RequestType::Generate,
            policy: "add-netpol",
            policy_key: "ClusterPolicy.kyverno.io/add-netpol",
            rules: vec!["default-deny".into()],
            synchronize: true,
            delete_downstream: false,
            request_uid: "req-1",
            request: &req,
            namespace: "kybern",
        };
        let ur = object(&work);
        assert_eq!(ur["spec"]["requestType"], "generate");
        assert_eq!(ur["spec"]["resource"]["kind"], "Namespace");
        assert_eq!(ur["spec"]["resource"]["uid"], "u-1");
        let wire = &ur["spec"]["context"]["admissionRequestInfo"]["admissionRequest"];
        assert_eq!(wire["operation"], "CREATE");
        assert_eq!(wire["object"]["metadata"]["name"], "team-a");
        assert_eq!(wire["userInfo"]["username"], "alice");
        assert_eq!(ur["metadata"]["namespace"], "kybern");
        assert_eq!(
            ur["metadata"]["labels"]["generate.kyverno.io/policy-name"],
            "add-netpol"
        );
        let mutate = object(&GenerateWork {
            request_type: RequestType::Mutate,
            ..work
        });
        assert_eq!(mutate["spec"]["requestType"], "mutate");
        let labels = &mutate["metadata"]["labels"];
        assert_eq!(
            labels["mutate.updaterequest.kyverno.io/policy-name"],
            "add-netpol"
        );
        assert_eq!(
            labels["mutate.updaterequest.kyverno.io/trigger-kind"],
            "Namespace"
        );
        assert_eq!(
            labels["mutate.updaterequest.kyverno.io/trigger-apiversion"],
            "v1"
        );
    }
}
