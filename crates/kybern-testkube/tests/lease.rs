//! Leader election with `kube-lease-manager` against the fake: one leader, and failover when
//! the leader releases or stops renewing.

mod common;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch::Receiver;

async fn manager(client: kube::Client, identity: &str) -> kube_lease_manager::LeaseManager {
    named(client, "kybern-test", identity).await
}

async fn named(
    client: kube::Client,
    lease: &str,
    identity: &str,
) -> kube_lease_manager::LeaseManager {
    LeaseManagerBuilder::new(client, lease)
        .with_namespace("default")
        .with_identity(identity)
        .with_duration(2)
        .with_grace(1)
        .build()
        .await
        .unwrap()
}

async fn becomes(rx: &mut Receiver<bool>, want: bool, within: Duration) -> bool {
    tokio::time::timeout(within, rx.wait_for(|leader| *leader == want))
        .await
        .is_ok_and(|r| r.is_ok())
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get("kybern-test")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn one_leader_then_failover_on_release_and_on_silence() {
    let (server, client) = common::start().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");

    let (mut a, a_task) = manager(client.clone(), "a").await.watch().await;
    assert!(
        becomes(&mut a, true, Duration::from_secs(5)).await,
        "the first manager leads"
    );
    let (mut b, b_task) = manager(client.clone(), "b").await.watch().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !*b.borrow(),
        "the second one waits while the lease is renewed"
    );
    assert!(*a.borrow());
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));

    // A releases (its channel closes): B takes over.
    drop(a);
    a_task.await.unwrap().unwrap();
    assert!(
        becomes(&mut b, true, Duration::from_secs(6)).await,
        "B leads after A released"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("b"));

    // B stops renewing without releasing (a crashed leader): C takes over once it expires.
    let (mut c, c_task) = manager(client.clone(), "c").await.watch().await;
    b_task.abort();
    assert!(
        becomes(&mut c, true, Duration::from_secs(8)).await,
        "C leads after B went silent"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("c"));

    // Every lock, renewal and release is a PATCH of the lease with the manager's own field
    // manager (`kube-lease-manager-<random>`: `with_identity` does not change it).
    let log = server.faults().requests();
    let patches = log
        .iter()
        .filter(|(m, p)| m == "PATCH" && p.contains("fieldManager=kube-lease-manager-"));
    assert!(patches.count() >= 3);
    drop(c);
    c_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn managers_starting_together_elect_exactly_one() {
    let (_server, client) = common::start().await;
    let managers = futures::future::join_all(["x", "y", "z"].map(|id| {
        let client = client.clone();
        async move { named(client, "together", id).await.watch().await }
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leaders = managers.iter().filter(|(rx, _)| *rx.borrow()).count();
    assert_eq!(leaders, 1);
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let holder = leases
        .get("together")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let (rx, _) = &managers[["x", "y", "z"].iter().position(|id| *id == holder).unwrap()];
    assert!(
        *rx.borrow(),
        "the lease holder is the one that thinks it leads"
    );
    for (_, task) in managers {
        task.abort();
    }
}
