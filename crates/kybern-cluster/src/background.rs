//! Background work in the cluster: generate and mutate-existing rules act after admission.
//! Admission queues the work as UpdateRequests ([`queue`]), the controller does it under its own
//! Lease ([`controller`]); [`generate`] says what a rule wants written, [`mutate_existing`] which
//! targets a rule patches.
//!
//! Done so far: ClusterPolicy/Policy generate rules (`data`, `clone`, `cloneList`, `foreach`)
//! on CREATE and UPDATE, `synchronize`, `generateExisting`; `mutate.targets` on trigger events
//! and `mutateExistingOnPolicyUpdate`; GeneratingPolicies; MutatingPolicies that mutate existing
//! targets; synchronized objects deleted with their policy
//! ([`generate::downstream_on_policy_delete`]) and with their trigger.

pub mod controller;
pub mod endpoint;
pub mod generate;
pub mod mutate_existing;
pub mod permissions;
pub mod queue;
pub mod update_request;

use kybern_engine::matching::{self, MatchSubject};
use kybern_engine::policy::{Policy, Rule};
use kybern_engine::request::AdmissionRequest;

/// The rules `keep` accepts whose `match`/`exclude` select the request (a namespaced Policy's
/// only in its own namespace): which background rules a request concerns.
pub fn rules_selecting(
    policy: &Policy,
    request: &AdmissionRequest,
    keep: impl Fn(&Rule) -> bool,
) -> Vec<String> {
    if !policy.namespace.is_empty() && request.namespace() != policy.namespace {
        return Vec::new();
    }
    let subject = MatchSubject::new(request);
    policy
        .rules
        .iter()
        .filter(|r| keep(r))
        .filter(|r| r.may_match_kind(&subject.gvk.kind))
        .filter(|r| matching::matches(&r.match_resources, &subject))
        .filter(|r| {
            !r.exclude
                .as_ref()
                .is_some_and(|e| matching::excluded(e, &subject))
        })
        .map(|r| r.name.clone())
        .collect()
}
