//! Errors of the cluster mode.

/// What went wrong talking to the cluster or keeping kybern's objects there.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("certificates: {0}")]
    Certificates(String),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("webhook server: {0}")]
    Server(String),
}
