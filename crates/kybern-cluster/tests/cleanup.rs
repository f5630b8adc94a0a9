//! Cleanup on the fake API server: cleanup policies and DeletingPolicies delete what they select
//! when their schedule comes, on a clock the test moves; TTL labels expire.

mod common;

use common::*;
use kybern_cluster::cleanup::controller::{self, CleanupOptions, Clock};
use kybern_cluster::names::{Names, Scheme};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// A clock that moves only when told.
struct TestClock(Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, minutes: i64) {
        *self.0.lock().unwrap() += time::Duration::minutes(minutes);
    }
}

async fn start(c: &Cluster) -> (controller::Cleanup, Arc<TestClock>) {
    let clock = Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())));
    let mut options = CleanupOptions::new(
        Some(c.kubeconfig.clone()),
        Names::new(Scheme::Kybern, NS, None),
        "cleaner".to_string(),
    );
    options.clock = clock.clone();
    options.tick = Duration::from_millis(100);
    options.ttl_interval = Duration::from_millis(300);
    // Small pages, so that runs go through several.
    options.page_size = 2;
    options.listen = Some("127.0.0.1:0".parse().unwrap());
    let cleanup = controller::start(options).await.unwrap();
    wait_for("the cleanup Lease", Duration::from_secs(20), || {
        *cleanup.leader.borrow()
    })
    .await;
    (cleanup, clock)
}

fn namespaces(store: &kybern_testkube::Store, names: &[&str]) {
    for name in names {
        store
            .create("v1", "namespaces", json!({"metadata": {"name": name}}))
            .unwrap();
    }
}

fn config_map(store: &kybern_testkube::Store, ns: &str, name: &str, labels: Value, state: &str) {
    store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"state": state}}),
        )
        .unwrap();
}

fn names_in(store: &kybern_testkube::Store, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = store
        .list("v1", "configmaps", Some(ns))
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanup_policies_delete_exactly_what_they_select_at_their_scheduled_time() {
    let c = cluster().await;
    let store = c.api.store();
    namespaces(store, &["app", "other", "cel"]);
    let labelled = json!({"cleanup": "yes"});
    for name in ["stale-1", "stale-2", "stale-3", "keep-1"] {
        config_map(store, "app", name, labelled.clone(), "stale");
    }
    config_map(store, "app", "fresh", labelled.clone(), "fresh");
    config_map(store, "app", "unlabelled", json!({}), "stale");
    config_map(store, "other", "stale-1", labelled.clone(), "stale");
    config_map(store, "cel", "stale", json!({}), "stale");
    config_map(store, "cel", "fresh", json!({}), "fresh");
    config_map(store, "other", "stale-cel", json!({}), "stale");
    store
        .create(
            "kyverno.io/v2",
            "clustercleanuppolicies",
            json!({"apiVersion": "kyverno.io/v2", "kind": "ClusterCleanupPolicy",
                "metadata": {"name": "stale-config"},
                "spec": {"schedule": "*/5 * * * *", "deletionPropagationPolicy": "Background",
                    "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "namespaces": ["app"],
                        "selector": {"matchLabels": {"cleanup": "yes"}}}}]},
                    "exclude": {"any": [{"resources": {"names": ["keep-*"]}}]},
                    "conditions": {"all": [{"key": "{{ target.data.state }}", "operator": "Equals", "value": "stale"}]}}}),
        )
        .unwrap();
    // A namespaced DeletingPolicy whose CEL condition picks stale ConfigMaps, hourly.
    store
        .create(
            "policies.kyverno.io/v1",
            "namespaceddeletingpolicies",
            json!({"apiVersion": "policies.kyverno.io/v1", "kind": "NamespacedDeletingPolicy",
                "metadata": {"name": "stale-cel", "namespace": "cel"},
                "spec": {"schedule": "0 * * * *",
                    "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]},
                    "conditions": [{"name": "stale", "expression": "object.data.state == 'stale'"}]}}),
        )
        .unwrap();
    let (cleanup, clock) = start(&c).await;
    // Before its time a policy deletes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(names_in(store, "app").len(), 6);

    clock.advance(6);
    wait_for(
        "the ClusterCleanupPolicy's run",
        Duration::from_secs(20),
        || names_in(store, "app") == ["fresh", "keep-1", "unlabelled"],
    )
    .await;
    assert_eq!(names_in(store, "other"), ["stale-1", "stale-cel"]);
    let policy = || {
        store
            .get(
                "kyverno.io/v2",
                "clustercleanuppolicies",
                None,
                "stale-config",
            )
            .unwrap()
    };
    // The run is recorded after its deletions.
    wait_for("lastExecutionTime", Duration::from_secs(10), || {
        policy()["status"]["lastExecutionTime"].is_string()
    })
    .await;
    let policy = policy();
    let stamp = policy["status"]["lastExecutionTime"].as_str().unwrap();
    let stamp =
        OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((stamp - clock.now()).abs() < time::Duration::seconds(1));
    // The hourly DeletingPolicy has not come yet (unless the hour turned in those 6 minutes).
    let hour_turned = clock.now().minute() < 6;
    if !hour_turned {
        assert_eq!(names_in(store, "cel"), ["fresh", "stale"]);
    }

    // The endpoint counts the run and its deletions.
    let metrics = reqwest::get(format!("http://{}/metrics", cleanup.endpoint.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    assert!(value("kybern_cleanup_deleted_total") >= 3, "{metrics}");
    assert!(value("kybern_cleanup_runs_total") >= 1, "{metrics}");
    assert_eq!(value("kybern_cleanup_leader"), 1, "{metrics}");

    // Created after the run: kept until the next scheduled time.
    config_map(store, "app", "stale-4", labelled.clone(), "stale");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(names_in(store, "app").contains(&"stale-4".to_string()));

    clock.advance(61);
    wait_for("both policies' next runs", Duration::from_secs(20), || {
        names_in(store, "cel") == ["fresh"]
            && !names_in(store, "app").contains(&"stale-4".to_string())
    })
    .await;
    // The namespaced policy stayed in its namespace.
    assert_eq!(names_in(store, "other"), ["stale-1", "stale-cel"]);
    wait_for(
        "the DeletingPolicy's lastExecutionTime",
        Duration::from_secs(10),
        || {
            store
                .get(
                    "policies.kyverno.io/v1",
                    "namespaceddeletingpolicies",
                    Some("cel"),
                    "stale-cel",
                )
                .unwrap()["status"]["lastExecutionTime"]
                .is_string()
        },
    )
    .await;
    cleanup.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ttl_labels_expire() {
    let c = cluster().await;
    let store = c.api.store();
    namespaces(store, &["app"]);
    let ttl = |v: &str| json!({"cleanup.kyverno.io/ttl": v});
    config_map(store, "app", "in-an-hour", ttl("1h"), "");
    config_map(store, "app", "long-ago", ttl("2020-01-01"), "");
    config_map(store, "app", "at-a-time", ttl("2020-01-01T101500Z"), "");
    config_map(store, "app", "not-a-ttl", ttl("soon"), "");
    config_map(store, "app", "no-ttl", json!({}), "");
    store
        .create(
            "v1",
            "secrets",
            json!({"metadata": {"name": "half-hour", "namespace": "app", "labels": ttl("30m"),
                "annotations": {"cleanup.kyverno.io/propagation-policy": "Foreground"}}}),
        )
        .unwrap();
    let (cleanup, clock) = start(&c).await;
    wait_for("the expired ones to go", Duration::from_secs(20), || {
        names_in(store, "app") == ["in-an-hour", "no-ttl", "not-a-ttl"]
    })
    .await;
    assert!(
        store
            .get("v1", "secrets", Some("app"), "half-hour")
            .is_some()
    );
    clock.advance(31);
    wait_for("the Secret's 30 minutes", Duration::from_secs(20), || {
        store
            .get("v1", "secrets", Some("app"), "half-hour")
            .is_none()
    })
    .await;
    assert_eq!(
        names_in(store, "app"),
        ["in-an-hour", "no-ttl", "not-a-ttl"]
    );
    clock.advance(30);
    wait_for("the hour", Duration::from_secs(20), || {
        names_in(store, "app") == ["no-ttl", "not-a-ttl"]
    })
    .await;
    cleanup.shutdown().await;
    c.api.shutdown().await;
}
