//! Evaluating loaded policies on loaded resources, with values and user info: the part of a
//! run that `test` and `apply` share.

use crate::files::Document;
use crate::policy_set::PolicySet;
use crate::provider::FileProvider;
use crate::resources::ResourceKey;
use crate::spec::{UserInfoSpec, ValuesSpec};
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::policy::{Policy, RuleBody};
use kybern_engine::request::{AdmissionRequest, Gvk, Operation};
use kybern_engine::response::{EngineResponse, RuleType};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Responses by resource, in resource order.
pub type ResponseMap = Vec<(ResourceKey, Vec<EngineResponse>)>;

/// What evaluation reads.
pub struct Inputs<'a> {
    pub values: &'a ValuesSpec,
    pub user: Option<&'a UserInfoSpec>,
    pub provider: &'a FileProvider,
    pub set: &'a PolicySet,
}

/// The passes over policies, in the kyverno CLI's order; each policy gets a response per pass it
/// has rules for.
#[derive(Clone, Copy)]
enum Phase {
    Mutate,
    Validate,
    Generate,
}

fn is_mutate(b: &RuleBody) -> bool {
    matches!(
        b,
        RuleBody::Mutate(_)
            | RuleBody::Unsupported {
                rule_type: RuleType::Mutation,
                ..
            }
    )
}

impl Phase {
    fn applies_to(self, p: &Policy) -> bool {
        match self {
            // verifyImages rules verify signatures and pin digests in the mutate pass.
            Phase::Mutate => {
                p.has_rule_of(is_mutate)
                    || p.has_rule_of(|b| matches!(b, RuleBody::VerifyImages { .. }))
            }
            Phase::Validate if p.has_rule_of(|b| matches!(b, RuleBody::Validate(_))) => true,
            Phase::Validate => p.has_rule_of(|b| {
                !matches!(
                    b,
                    RuleBody::Generate(_)
                        | RuleBody::Unsupported {
                            rule_type: RuleType::Generation,
                            ..
                        }
                )
            }),
            Phase::Generate => p.has_rule_of(|b| {
                matches!(
                    b,
                    RuleBody::Generate(_)
                        | RuleBody::Unsupported {
                            rule_type: RuleType::Generation,
                            ..
                        }
                )
            }),
        }
    }
}

/// Per-policy values for one resource: variables (global, then resource-specific) and rule values.
/// `None` when the values file says nothing specific about this policy.
fn policy_values(
    values: &ValuesSpec,
    policy: &str,
    resource_name: &str,
) -> Option<(Map<String, Value>, BTreeMap<String, RuleValues>)> {
    let mut found = false;
    let mut variables = values.global_values.clone();
    let mut rule_values = BTreeMap::new();
    for pv in values.policies.iter().filter(|p| p.name == policy) {
        found = true;
        for rv in pv.resources.iter().filter(|r| r.name == resource_name) {
            variables.extend(rv.values.clone());
        }
        for rule in &pv.rules {
            rule_values.insert(
                rule.name.clone(),
                RuleValues {
                    values: rule.values.clone(),
                    foreach_values: rule.foreach_values.clone(),
                },
            );
        }
    }
    found.then_some((variables, rule_values))
}

fn build_request(
    inputs: &Inputs,
    resource: &Arc<Value>,
    mut variables: Map<String, Value>,
    forced_op: Option<Operation>,
) -> AdmissionRequest {
    let op = forced_op.unwrap_or_else(|| {
        variables
            .get("request.operation")
            .and_then(Value::as_str)
            .and_then(Operation::parse)
            .unwrap_or(Operation::Create)
    });
    if forced_op.is_some() {
        variables.insert(
            "request.operation".into(),
            Value::String(op.as_str().into()),
        );
    }
    request_for(inputs, resource, op, variables)
}

/// The values a values file gives for `rule` of `policy` on the resource named `resource_name`
/// (what its context entries are replaced with), for explaining the rule.
pub fn rule_values_for_explain(
    inputs: &Inputs,
    policy: &str,
    resource_name: &str,
    rule: &str,
) -> Option<Map<String, Value>> {
    let (_, rules) = policy_values(inputs.values, policy, resource_name)?;
    kybern_engine::engine::values_for(&rules, rule).map(|v| v.values.clone())
}

/// The request `kybern apply` evaluates a resource with (global values, the operation they
/// name), for explaining its rules.
pub fn request_for_explain(inputs: &Inputs, resource: &Arc<Value>) -> AdmissionRequest {
    build_request(inputs, resource, inputs.values.global_values.clone(), None)
}

/// The admission request for a resource with the given operation and variables, the user info
/// and the namespace labels of the run.
fn request_for(
    inputs: &Inputs,
    resource: &Arc<Value>,
    op: Operation,
    variables: Map<String, Value>,
) -> AdmissionRequest {
    // Offline there is no stored object: an UPDATE compares the resource with itself. The
    // resource is shared, not copied, into the request.
    let shared = Arc::clone(resource);
    let null = Arc::new(Value::Null);
    let (object, old_object) = match op {
        Operation::Delete => (null, shared),
        Operation::Update => (Arc::clone(&shared), shared),
        _ => (shared, null),
    };
    let namespace = crate::resources::text_at(resource, &["metadata", "namespace"]);
    let (kind_override, subresource) = subresource_of(inputs.values, resource);
    AdmissionRequest {
        operation: op,
        object,
        old_object,
        user_info: inputs.user.map(|u| u.user_info.clone()).unwrap_or_default(),
        roles: inputs.user.map(|u| u.roles.clone()).unwrap_or_default(),
        cluster_roles: inputs
            .user
            .map(|u| u.cluster_roles.clone())
            .unwrap_or_default(),
        namespace_labels: inputs.provider.namespace_labels.get(namespace).cloned(),
        subresource,
        kind_override,
        dry_run: false,
        variables,
        no_user_info: inputs.user.is_none(),
        request_name: String::new(),
    }
}

/// Evaluates every policy on every resource; `forced_op` overrides the operation from values.
pub fn evaluate(
    inputs: &Inputs,
    resources: &[Document],
    forced_op: Option<Operation>,
) -> ResponseMap {
    let owned = resources.iter().map(|d| d.value.clone()).collect();
    evaluate_owned(inputs, owned, forced_op)
}

/// [`evaluate`] on resources the caller gives up, so that none of them is copied.
pub fn evaluate_owned(
    inputs: &Inputs,
    resources: Vec<Value>,
    forced_op: Option<Operation>,
) -> ResponseMap {
    let engine = Engine::new(inputs.provider);
    let no_rule_values = BTreeMap::new();
    let mut out = Vec::with_capacity(resources.len());
    for resource in resources {
        let key = ResourceKey::of(&resource);
        let resource = Arc::new(resource);
        let name = crate::resources::text_at(&resource, &["metadata", "name"]);
        let mut responses = Vec::with_capacity(inputs.set.policies.len());
        let exceptions = &inputs.set.exceptions;
        // Mutations chain across policies in load order; validation and generation see the result.
        let mut current = Arc::clone(&resource);
        for policy in inputs
            .set
            .policies
            .iter()
            .filter(|p| Phase::Mutate.applies_to(p))
        {
            let specific = policy_values(inputs.values, &policy.name, name);
            let variables = specific
                .as_ref()
                .map_or_else(|| inputs.values.global_values.clone(), |(v, _)| v.clone());
            let rule_values = specific.as_ref().map_or(&no_rule_values, |(_, r)| r);
            let request = build_request(inputs, &current, variables, forced_op);
            let r = engine.mutate(
                policy,
                &PolicyContext::new(&request),
                exceptions,
                rule_values,
            );
            current = Arc::clone(&r.patched_resource);
            // A verifyImages-only policy that had nothing to verify leaves no response.
            if !r.rules.is_empty() || policy.has_rule_of(is_mutate) {
                responses.push(r);
            }
        }
        // Policies without values of their own share one prepared request.
        let shared_request = build_request(
            inputs,
            &current,
            inputs.values.global_values.clone(),
            forced_op,
        );
        let shared = PolicyContext::new(&shared_request);
        for phase in [Phase::Validate, Phase::Generate] {
            for policy in inputs.set.policies.iter().filter(|p| phase.applies_to(p)) {
                let specific = policy_values(inputs.values, &policy.name, name);
                let specific_request = specific
                    .as_ref()
                    .map(|(vars, _)| build_request(inputs, &current, vars.clone(), forced_op));
                let specific_pctx = specific_request.as_ref().map(PolicyContext::new);
                let pctx = specific_pctx.as_ref().unwrap_or(&shared);
                let rule_values = specific.as_ref().map_or(&no_rule_values, |(_, r)| r);
                if matches!(phase, Phase::Validate) {
                    responses.push(engine.validate(policy, pctx, exceptions, rule_values));
                } else {
                    // Like the kyverno CLI, a generate pass that produced nothing leaves no response.
                    let r = engine.generate(policy, pctx, exceptions, rule_values);
                    if !r.rules.is_empty() {
                        responses.push(r);
                    }
                }
            }
        }
        if !inputs.set.cel.is_empty() {
            // CEL policies see the resource after the ClusterPolicy mutations.
            let request = cel_request(inputs, &current, forced_op);
            let provider = crate::cel_policies::WithNamespaces {
                inner: inputs.provider,
                namespaces: &inputs.values.namespaces,
            };
            let cel = inputs
                .set
                .cel
                .evaluate(&request, &provider, forced_op.is_none());
            responses.extend(cel);
        }
        out.push((key, responses));
    }
    out
}

/// A resource whose kind is listed as a subresource in the values (e.g. a `Scale`) is evaluated as
/// that subresource of its parent kind (`Deployment/scale`).
fn subresource_of(values: &ValuesSpec, resource: &Value) -> (Option<Gvk>, String) {
    let gvk = Gvk::of(resource);
    for s in &values.subresources {
        let sub = &s.subresource;
        if sub.kind == gvk.kind && sub.group == gvk.group && sub.version == gvk.version {
            let parent = &s.parent_resource;
            let name = sub
                .name
                .split_once('/')
                .map(|(_, n)| n.to_string())
                .unwrap_or_default();
            let parent_gvk = Gvk {
                group: parent.group.clone(),
                version: parent.version.clone(),
                kind: parent.kind.clone(),
            };
            return (Some(parent_gvk), name);
        }
    }
    (None, String::new())
}

/// The admission request CEL policies see for a resource: the operation from `forced_op` or the
/// global values, the user info, and the namespace labels.
fn cel_request(
    inputs: &Inputs,
    resource: &Arc<Value>,
    forced_op: Option<Operation>,
) -> AdmissionRequest {
    let op = forced_op.unwrap_or_else(|| {
        inputs
            .values
            .global_values
            .get("request.operation")
            .and_then(Value::as_str)
            .and_then(Operation::parse)
            .unwrap_or(Operation::Create)
    });
    request_for(inputs, resource, op, inputs.values.global_values.clone())
}
