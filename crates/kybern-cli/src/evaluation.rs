//! Evaluating loaded policies on loaded resources, with values and user info: the part of a
//! run that `test` and `apply` share.

use crate::files::Document;
use crate::policy_set::PolicySet;
use crate::provider::FileProvider;
use crate::resources::ResourceKey;
use crate::spec::{UserInfoSpec, ValuesSpec};
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::request::{AdmissionRequest, Gvk, Operation};
use kybern_engine::response::EngineResponse;
use serde_json::Value;
use std::collections::BTreeMap;

/// Responses by resource, in resource order.
pub type ResponseMap = Vec<(ResourceKey, Vec<EngineResponse>)>;

/// What evaluation reads.
pub struct Inputs<'a> {
    pub values: &'a ValuesSpec,
    pub user: Option<&'a UserInfoSpec>,
    pub provider: &'a FileProvider,
    pub set: &'a PolicySet,
}

/// Evaluates every policy on every resource; `forced_op` overrides the operation from values.
pub fn evaluate(
    inputs: &Inputs,
    resources: &[Document],
    forced_op: Option<Operation>,
) -> ResponseMap {
    let engine = Engine::new(inputs.provider);
    let mut out = Vec::with_capacity(resources.len());
    for doc in resources {
        let resource = &doc.value;
        let name = resource
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespace = resource
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut responses = Vec::with_capacity(inputs.set.policies.len());
        for policy in &inputs.set.policies {
            let mut variables = inputs.values.global_values.clone();
            let mut rule_values: BTreeMap<String, RuleValues> = BTreeMap::new();
            for pv in inputs
                .values
                .policies
                .iter()
                .filter(|p| p.name == policy.name)
            {
                for rv in pv.resources.iter().filter(|r| r.name == name) {
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
            // Offline there is no stored object: an UPDATE compares the resource with itself.
            let (object, old_object) = match op {
                Operation::Delete => (Value::Null, resource.clone()),
                Operation::Update => (resource.clone(), resource.clone()),
                _ => (resource.clone(), Value::Null),
            };
            let request = AdmissionRequest {
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
                subresource: String::new(),
                kind_override: None,
                dry_run: false,
                variables,
                no_user_info: inputs.user.is_none(),
            };
            let (kind_override, subresource) = subresource_of(inputs.values, resource);
            let request = AdmissionRequest {
                kind_override,
                subresource,
                ..request
            };
            let pctx = PolicyContext::new(&request);
            responses.push(engine.validate(policy, &pctx, &inputs.set.exceptions, &rule_values));
        }
        if !inputs.set.cel.policies.is_empty() {
            let request = cel_request(inputs, resource, forced_op);
            let provider = crate::cel_policies::WithNamespaces {
                inner: inputs.provider,
                namespaces: &inputs.values.namespaces,
            };
            responses.extend(inputs.set.cel.evaluate(&request, &provider));
        }
        out.push((ResourceKey::of(resource), responses));
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
    resource: &Value,
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
    let (object, old_object) = match op {
        Operation::Delete => (Value::Null, resource.clone()),
        Operation::Update => (resource.clone(), resource.clone()),
        _ => (resource.clone(), Value::Null),
    };
    let namespace = resource
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
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
        variables: inputs.values.global_values.clone(),
        no_user_info: inputs.user.is_none(),
    }
}
