//! Policy reports in the cluster: `kybern controller --enable reports` scans, under its own
//! Lease, every resource that background policies match and keeps one `wgpolicyk8s.io`
//! PolicyReport per resource (ClusterPolicyReport for cluster-scoped ones), owned by it.
//!
//! Bounded by design: memory holds a hash of each resource's results, not the resources nor the
//! reports ([`hash`]); a change that leaves results as they were writes nothing; writes are
//! paced, retried with backoff and then dropped ([`writer`]); messages are capped and pass
//! results can be left out ([`scan`]). [`scan`] evaluates, [`shape`] builds the report object,
//! [`controller`] watches and decides what to write, [`summary`] reads reports back for
//! `kybern report`.

pub mod admission;
pub mod controller;
pub mod endpoint;
pub mod hash;
pub mod merge;
pub mod scan;
pub mod shape;
pub mod summary;
pub mod writer;
