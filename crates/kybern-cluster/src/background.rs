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
