//! MutatingPolicies with `evaluation.mutateExisting`: their `cel-mutate` UpdateRequests, and
//! the run over existing objects when such a policy is created or changed.

use super::Worker;
use crate::webhooks::KindResolver;
use kybern_engine::cel::match_constraints::MatchConstraints;
use kybern_engine::cel::mutating_policy::{MutateResult, MutatingPolicy};
use kybern_engine::request::AdmissionRequest;
use serde_json::Value;
use std::sync::Arc;

/// What identifies a MutatingPolicy's mutate-existing work: a changed policy (other mutations or
/// targets) runs over the existing objects again.
pub(super) fn fingerprint(policy: &MutatingPolicy) -> String {
    let sources: Vec<&str> = policy
        .mutations
        .iter()
        .map(|m| m.expression.source.as_str())
        .collect();
    let expression = policy
        .mutate_existing
        .expression
        .as_ref()
        .map(|e| e.source.as_str());
    format!(
        "{}/{}/{sources:?}/{expression:?}/{:?}",
        policy.kind.as_str(),
        policy.key(),
        policy.mutate_existing.constraints
    )
}

fn name_of(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default();
    format!(
        "{} {}/{}",
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name")
    )
}

impl Worker {
    /// A `cel-mutate` UpdateRequest: the policy's targets for the recorded trigger, patched.
    pub(super) async fn cel_mutate_for(&self, ur: &Value) -> Result<usize, String> {
        let key = ur
            .pointer("/spec/policy")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let policy = self.mutating_policy(&key).ok_or_else(|| {
            format!(
                "MutatingPolicy {key} with mutateExisting is not loaded (deleted, changed, or it \
                 does not compile)"
            )
        })?;
        let request = self.request_of(ur)?;
        self.cel_mutate_and_write(policy, request).await
    }

    /// The loaded MutatingPolicy with this key that mutates existing objects.
    fn mutating_policy(&self, key: &str) -> Option<MutatingPolicy> {
        self.store
            .snapshot()
            .cel
            .mutating
            .iter()
            .find(|m| m.mutates_existing() && m.key() == key)
            .map(|m| m.policy.clone())
    }

    /// Runs the policy on each of its targets for the trigger and writes those it changed;
    /// targets that failed make the whole work fail (and be retried) after the others are
    /// written.
    pub(super) async fn cel_mutate_and_write(
        &self,
        policy: MutatingPolicy,
        request: AdmissionRequest,
    ) -> Result<usize, String> {
        let context = Arc::clone(&self.context);
        let (changed, errors) = tokio::task::spawn_blocking(move || {
            let mut changed = Vec::new();
            let mut errors = Vec::new();
            match policy.targets(&request, context.as_ref()) {
                Err(e) => errors.push(e),
                Ok(targets) => {
                    for target in targets {
                        match policy.evaluate_target(&request, &target, context.as_ref()) {
                            MutateResult::Patched(v) if !v.is_null() && v != target => {
                                changed.push(v);
                            }
                            MutateResult::Error(e) => {
                                errors.push(format!("{}: {e}", name_of(&target)));
                            }
                            _ => {}
                        }
                    }
                }
            }
            (changed, errors)
        })
        .await
        .map_err(|e| e.to_string())?;
        let written = self.write_targets(&changed).await?;
        if errors.is_empty() {
            Ok(written)
        } else {
            Err(errors.join("; "))
        }
    }

    /// A mutate-existing MutatingPolicy that appeared or changed: with a target expression, it
    /// runs for each existing object its `matchConstraints` select (the expression needs a
    /// trigger); otherwise once over every target.
    pub(super) async fn cel_mutate_existing(&self, policy: MutatingPolicy) {
        let key = policy.key();
        let requests = if policy.mutate_existing.expression.is_some() {
            let kinds = self.kinds.load_full();
            let resources = named_resources(&kinds, &policy.match_constraints, None);
            self.objects_as_requests(&resources, &policy.namespace, &key)
                .await
                .into_iter()
                .filter(|r| policy.is_triggered_by(r, self.context.as_ref()))
                .collect()
        } else {
            vec![AdmissionRequest {
                no_user_info: true,
                ..AdmissionRequest::default()
            }]
        };
        for request in requests {
            if let Err(e) = self.cel_mutate_and_write(policy.clone(), request).await {
                tracing::warn!(policy = %key, error = %e, "mutate existing for a new or changed MutatingPolicy failed");
            }
        }
    }
}

/// The served resources that a policy's resource rules name for `operation` (any: `None`; with
/// a wildcard version only the preferred one).
pub(super) fn named_resources<'k>(
    kinds: &'k crate::discovery::Kinds,
    constraints: &MatchConstraints,
    operation: Option<&str>,
) -> Vec<&'k crate::webhooks::Resource> {
    let named = |list: &[String], value: &str| list.iter().any(|x| x == "*" || x == value);
    kinds
        .resources()
        .iter()
        .filter(|r| {
            constraints.resource_rules.iter().any(|rule| {
                operation.is_none_or(|op| named(&rule.operations, op))
                    && named(&rule.api_groups, &r.group)
                    && named(&rule.resources, &r.plural)
                    && named(&rule.api_versions, &r.version)
                    && (r.preferred || !rule.api_versions.iter().any(|v| v == "*"))
            })
        })
        .collect()
}
