//! kybern-cluster: kybern inside Kubernetes, on kube-rs.
//!
//! It owns the custom kinds and their CRDs, policies and context read from the API into the
//! webhook's policy store and a context provider, the webhook configurations built from the
//! policies and written by the leader, the certificates kept in Secrets, leader election on a
//! Lease, policy status, and the background controllers (generate and mutate-existing work,
//! cleanup, policy reports from background scans). It never decides admission itself (the engine does, through
//! kybern-webhook) and never depends on the CLI.

pub mod background;
pub mod certificates;
pub mod cleanup;
pub mod context;
pub mod crds;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod global_context;
pub mod kinds;
pub mod leader;
pub mod names;
pub mod pull_secrets;
pub mod registration;
pub mod reports;
pub mod serve;
pub mod source;
pub mod status;
pub mod watch;
pub mod webhooks;

pub use error::ClusterError;
