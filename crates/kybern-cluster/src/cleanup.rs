//! Deleting on a schedule: ClusterCleanupPolicy/CleanupPolicy and
//! DeletingPolicy/NamespacedDeletingPolicy run on their cron `schedule` ([`schedule`],
//! [`policy`]), and objects labelled `cleanup.kyverno.io/ttl` are deleted when it expires
//! ([`ttl`]); [`controller`] does it under its own Lease.

pub mod controller;
pub mod policy;
pub mod schedule;
pub mod ttl;
