//! Background work in the cluster: generate rules act after admission. Admission queues the
//! work as UpdateRequests ([`queue`]), the controller does it under its own Lease
//! ([`controller`]), and [`generate`] says what a rule wants written.
//!
//! Done so far: ClusterPolicy/Policy generate rules (`data`, `clone`, `cloneList`, `foreach`)
//! on CREATE and UPDATE, `synchronize`. Not yet: mutate-existing, GeneratingPolicy,
//! `generateExisting`, downstream deletion with the trigger or the policy, cleanup policies.

pub mod controller;
pub mod endpoint;
pub mod generate;
pub mod queue;
pub mod update_request;
