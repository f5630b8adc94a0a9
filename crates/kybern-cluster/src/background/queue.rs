//! The admission side of background work: an admitted request that a generate or
//! mutate-existing rule acts on is recorded as an UpdateRequest, off the request path, so the controller can do the work even
//! if this replica goes away. Dry runs queue nothing (the server does not call it for them).

use super::update_request::{self, GenerateWork, RequestType};
use super::{generate, mutate_existing};
use crate::context::ClusterContext;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kybern_engine::cel::generating_policy::GenerateResult;
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_webhook::AdmissionObserver;
use kybern_webhook::decision::{Decision, Endpoint};
use kybern_webhook::store::PolicySet;
use std::sync::Arc;

/// Queues generate and mutate-existing work as UpdateRequests in kybern's namespace.
pub struct UpdateRequestQueue {
    api: Api<DynamicObject>,
    namespace: String,
    context: Arc<ClusterContext>,
    runtime: tokio::runtime::Handle,
}

/// The UpdateRequest resource (`kyverno.io/v2`).
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kyverno.io", "v2", "UpdateRequest"),
        "updaterequests",
    )
}

impl UpdateRequestQueue {
    /// Must be called inside the runtime.
    pub fn new(client: kube::Client, namespace: &str, context: Arc<ClusterContext>) -> Self {
        UpdateRequestQueue {
            api: Api::namespaced_with(client, namespace, &resource()),
            namespace: namespace.to_string(),
            context,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl UpdateRequestQueue {
    /// A deleted trigger: the objects synchronized generate rules and GeneratingPolicies wrote for
    /// it are queued for deletion.
    fn trigger_deleted(&self, uid: &str, request: &Arc<AdmissionRequest>, set: &Arc<PolicySet>) {
        let kind = request.gvk().kind;
        let mut objects = Vec::new();
        for policy in set.candidates(&kind) {
            if !generate::has_generate(policy) {
                continue;
            }
            let rules = generate::synchronized_rules_selecting(policy, request);
            if rules.is_empty() {
                continue;
            }
            let key = format!("{}.kyverno.io/{}", policy.kind.as_str(), policy.key());
            objects.push(update_request::object(&GenerateWork {
                request_type: RequestType::Generate,
                policy: &policy.key(),
                policy_key: &key,
                rules,
                synchronize: true,
                delete_downstream: true,
                request_uid: uid,
                request,
                namespace: &self.namespace,
            }));
        }
        // Synchronized GeneratingPolicies selecting the deleted object (whatever the operation).
        let labels = kybern_engine::cel::namespace_labels(request, self.context.as_ref());
        for g in set.cel.generating.iter() {
            if !g.policy.evaluation.synchronize
                || (!g.namespace.is_empty() && request.namespace() != g.namespace)
                || !g
                    .match_constraints
                    .matches_any_operation(request, labels.as_ref())
            {
                continue;
            }
            let policy = g.key();
            objects.push(update_request::object(&GenerateWork {
                request_type: RequestType::CelGenerate,
                policy: &policy,
                policy_key: &format!("{}.policies.kyverno.io/{policy}", g.kind),
                rules: Vec::new(),
                synchronize: true,
                delete_downstream: true,
                request_uid: uid,
                request,
                namespace: &self.namespace,
            }));
        }
        if objects.is_empty() {
            return;
        }
        let api = self.api.clone();
        self.runtime
            .spawn(async move { create_all(&api, objects).await });
    }
}

/// Creates the UpdateRequests (the same work queued twice is a 409, and fine).
async fn create_all(api: &Api<DynamicObject>, objects: Vec<serde_json::Value>) {
    for object in objects {
        let Ok(ur) = serde_json::from_value::<DynamicObject>(object) else {
            continue;
        };
        match api.create(&PostParams::default(), &ur).await {
            Ok(_) => tracing::debug!(name = ?ur.metadata.name, "background work queued"),
            // The same work, queued by another path or replica.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                tracing::error!(name = ?ur.metadata.name, error = %e, "background work could not be queued")
            }
        }
    }
}

impl AdmissionObserver for UpdateRequestQueue {
    fn admitted(
        &self,
        uid: &str,
        request: &Arc<AdmissionRequest>,
        set: &Arc<PolicySet>,
        endpoint: Endpoint,
        _decision: &Decision,
    ) {
        if request.operation == Operation::Delete {
            if endpoint == Endpoint::Validate {
                self.trigger_deleted(uid, request, set);
            }
            return;
        }
        if !matches!(request.operation, Operation::Create | Operation::Update) {
            return;
        }
        // Generation is queued once the request has passed validation (a request admitted by
        // the mutating webhook may still be denied), and so once per request.
        let validated = endpoint == Endpoint::Validate;
        let kind = request.gvk().kind;
        let policies: Vec<_> = set
            .candidates(&kind)
            .into_iter()
            .filter(|p| {
                (validated && generate::has_generate(p)) || mutate_existing::has_mutate_existing(p)
            })
            .cloned()
            .collect();
        let mutates_existing = set.cel.mutating.iter().any(|m| m.mutates_existing());
        if policies.is_empty() && (!validated || set.cel.generating.is_empty()) && !mutates_existing
        {
            return;
        }
        let (request, set, uid) = (Arc::clone(request), Arc::clone(set), uid.to_string());
        let (api, namespace, context) = (
            self.api.clone(),
            self.namespace.clone(),
            Arc::clone(&self.context),
        );
        self.runtime.spawn(async move {
            let work = tokio::task::spawn_blocking(move || {
                let mut objects = Vec::new();
                for policy in policies {
                    let generate_rules = if validated && generate::has_generate(&policy) {
                        generate::matching_rules(
                            &policy,
                            &request,
                            context.as_ref(),
                            &set.exceptions,
                        )
                    } else {
                        Vec::new()
                    };
                    let mutate_rules = mutate_existing::matching_rules(&policy, &request);
                    let key = format!("{}.kyverno.io/{}", policy.kind.as_str(), policy.key());
                    for (request_type, rules) in [
                        (RequestType::Generate, generate_rules),
                        (RequestType::Mutate, mutate_rules),
                    ] {
                        if rules.is_empty() {
                            continue;
                        }
                        objects.push(update_request::object(&GenerateWork {
                            request_type,
                            policy: &policy.key(),
                            policy_key: &key,
                            synchronize: request_type == RequestType::Generate
                                && generate::any_synchronized(&policy, &rules),
                            rules,
                            delete_downstream: false,
                            request_uid: &uid,
                            request: &request,
                            namespace: &namespace,
                        }));
                    }
                }
                // GeneratingPolicies whose trigger this is: what they would generate now
                // (or their error, which the controller records) is queued for the controller.
                for g in set.cel.generating.iter().filter(|_| validated) {
                    let wanted = match g.evaluate(&request, context.as_ref()) {
                        GenerateResult::Generated(o) => !o.is_empty(),
                        GenerateResult::Error(_) => true,
                        _ => false,
                    };
                    if !wanted {
                        continue;
                    }
                    let policy = g.key();
                    objects.push(update_request::object(&GenerateWork {
                        request_type: RequestType::CelGenerate,
                        policy: &policy,
                        policy_key: &format!("{}.policies.kyverno.io/{policy}", g.kind),
                        synchronize: false,
                        rules: Vec::new(),
                        delete_downstream: false,
                        request_uid: &uid,
                        request: &request,
                        namespace: &namespace,
                    }));
                }
                // MutatingPolicies that patch existing objects when this request is admitted.
                for m in set.cel.mutating.iter() {
                    if !m.is_triggered_by(&request, context.as_ref()) {
                        continue;
                    }
                    let policy = m.key();
                    objects.push(update_request::object(&GenerateWork {
                        request_type: RequestType::CelMutate,
                        policy: &policy,
                        policy_key: &format!("{}.policies.kyverno.io/{policy}", m.kind.as_str()),
                        synchronize: false,
                        rules: Vec::new(),
                        delete_downstream: false,
                        request_uid: &uid,
                        request: &request,
                        namespace: &namespace,
                    }));
                }
                objects
            })
            .await
            .unwrap_or_default();
            create_all(&api, work).await;
        });
    }
}
