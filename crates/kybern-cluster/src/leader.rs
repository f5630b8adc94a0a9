//! Leader election on a Lease (kube-lease-manager): the leader alone writes webhook
//! configurations, certificates and policy status; every replica serves admission all the time.
//! Losing the Lease stops leader work without exiting, and the replica campaigns again.

use crate::error::ClusterError;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// Seconds a Lease stays held without renewal, and the margin before its holder renews.
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;

/// Campaigns for `lease` in `namespace` as `identity`. The receiver says whether this replica
/// leads now; dropping it releases the Lease. Use a client of its own, so that a burst of watch
/// traffic cannot delay renewals.
pub async fn campaign(
    client: kube::Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    product: &str,
) -> Result<watch::Receiver<bool>, ClusterError> {
    // kube-lease-manager detects a competing holder through server-side apply conflicts between
    // field managers: each replica needs a manager name of its own.
    let field_manager = format!("{product}-lease-{identity}");
    let manager = LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager(&field_manager)
        .build()
        .await
        .map_err(|e| ClusterError::Lease(e.to_string()))?;
    let (rx, task) = manager.watch().await;
    let lease = lease.to_string();
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => tracing::info!(%lease, "lease released"),
            Ok(Err(e)) => tracing::error!(%lease, error = %e, "leader election ended"),
            Err(e) => tracing::error!(%lease, error = %e, "leader election task failed"),
        }
    });
    Ok(rx)
}
