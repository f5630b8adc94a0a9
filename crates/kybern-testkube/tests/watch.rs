//! Watches through a real `kube::Client`: event order and versions, selectors, bookmarks,
//! 410 after expiry, and a kube watcher + reflector across dropped and expired watches.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

fn cm(name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}}, "data": {"k": "v"}})
}

async fn next<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event within 5s")
            .expect("stream open")
            .expect("event decodes");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return event;
        }
    }
}

fn rv(event: &WatchEvent<ConfigMap>) -> u64 {
    match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o
            .metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse()
            .unwrap(),
        other => panic!("no object in {other:?}"),
    }
}

#[tokio::test]
async fn watch_reports_changes_in_order_with_versions() {
    let (server, client) = common::start().await;
    let store = server.store();
    store.create("v1", "configmaps", cm("existing")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    // From "0": the current objects first.
    let mut from_zero = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next(&mut from_zero).await, WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("existing"))
    );

    let start = store.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    store.create("v1", "configmaps", cm("a")).unwrap();
    store
        .merge_patch(
            "v1",
            "configmaps",
            Some("default"),
            "a",
            json!({"data": {"k": "w"}}),
        )
        .unwrap();
    store
        .delete("v1", "configmaps", Some("default"), "a")
        .unwrap();
    let events = [
        next(&mut stream).await,
        next(&mut stream).await,
        next(&mut stream).await,
    ];
    assert!(matches!(&events[0], WatchEvent::Added(_)));
    assert!(matches!(&events[1], WatchEvent::Modified(o) if o.data.as_ref().unwrap()["k"] == "w"));
    assert!(matches!(&events[2], WatchEvent::Deleted(_)));
    assert!(rv(&events[0]) < rv(&events[1]) && rv(&events[1]) < rv(&events[2]));
    assert_eq!(rv(&events[2]), store.resource_version());
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let (server, client) = common::start().await;
    let store = server.store();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let start = store.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().labels("app=web"), &start)
        .await
        .unwrap()
        .boxed();
    store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "other", "namespace": "default"}}),
        )
        .unwrap();
    store.create("v1", "configmaps", cm("a")).unwrap();
    store
        .merge_patch(
            "v1",
            "configmaps",
            Some("default"),
            "a",
            json!({"metadata": {"labels": {"app": "db"}}}),
        )
        .unwrap();
    store
        .merge_patch(
            "v1",
            "configmaps",
            Some("default"),
            "other",
            json!({"metadata": {"labels": {"app": "web"}}}),
        )
        .unwrap();
    let names = |e: &WatchEvent<ConfigMap>| match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.clone().unwrap()),
        other => format!("{other:?}"),
    };
    let got = [
        names(&next(&mut stream).await),
        names(&next(&mut stream).await),
        names(&next(&mut stream).await),
    ];
    assert_eq!(got, ["ADDED a", "DELETED a", "ADDED other"]);
}

#[tokio::test]
async fn bookmarks_timeouts_and_expiry() {
    let (server, client) = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let now = server.store().resource_version().to_string();

    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &now)
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(3), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, WatchEvent::Bookmark(b) if b.metadata.resource_version == now));
    // timeoutSeconds=1 closes the stream cleanly.
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some(e) = stream.next().await {
            assert!(matches!(e, Ok(WatchEvent::Bookmark(_))), "{e:?}");
        }
    })
    .await;
    assert!(closed.is_ok(), "stream ended");

    // Expiry: open watches get a 410 ERROR, and so does resuming from before it.
    let mut open = api
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    server.store().create("v1", "configmaps", cm("a")).unwrap();
    assert!(matches!(next(&mut open).await, WatchEvent::Added(_)));
    server.faults().expire_watches();
    assert!(matches!(next(&mut open).await, WatchEvent::Error(e) if e.code == 410));
    let mut old = api
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next(&mut old).await, WatchEvent::Error(e) if e.code == 410 && e.reason == "Expired")
    );
    let current = server.store().resource_version().to_string();
    let mut fresh = api
        .watch(&WatchParams::default(), &current)
        .await
        .unwrap()
        .boxed();
    server.store().create("v1", "configmaps", cm("b")).unwrap();
    assert!(matches!(next(&mut fresh).await, WatchEvent::Added(_)));
}

#[tokio::test]
async fn streaming_list_ends_with_the_initial_events_bookmark() {
    let (server, client) = common::start().await;
    server.store().create("v1", "configmaps", cm("a")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().streaming_lists();
    let stream = reflector(writer, watcher(api, config))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(stream.try_for_each(|_| async { Ok(()) }));
    tokio::time::timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.state().len(), 1);
    let watches = server
        .faults()
        .requests()
        .into_iter()
        .filter(|(_, p)| p.contains("sendInitialEvents=true"))
        .count();
    assert_eq!(watches, 1);
    task.abort();
}

#[tokio::test]
async fn reflector_stays_consistent_across_dropped_and_expired_watches() {
    let (server, client) = common::start().await;
    let store = server.store().clone();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    let has = |names: &'static [&'static str]| {
        let reader = reader.clone();
        move |_: &kybern_testkube::Store| {
            let mut got: Vec<String> = reader
                .state()
                .iter()
                .map(|c| c.metadata.name.clone().unwrap())
                .collect();
            got.sort();
            got == names
        }
    };
    let lists = || {
        server
            .faults()
            .requests()
            .iter()
            .filter(|(_, p)| !p.contains("watch=") && p.contains("/configmaps"))
            .count()
    };

    store.create("v1", "configmaps", cm("a")).unwrap();
    assert!(store.wait_for(Duration::from_secs(5), has(&["a"])).await);

    // A dropped watch resumes from its last version: no new list, nothing missed.
    let lists_before = lists();
    server.faults().drop_watches();
    store.create("v1", "configmaps", cm("b")).unwrap();
    assert!(
        store
            .wait_for(Duration::from_secs(5), has(&["a", "b"]))
            .await
    );
    assert_eq!(lists(), lists_before);

    // An expired watch makes the watcher list again; changes made meanwhile are all seen.
    server.faults().expire_watches();
    store.create("v1", "configmaps", cm("c")).unwrap();
    store
        .delete("v1", "configmaps", Some("default"), "a")
        .unwrap();
    assert!(
        store
            .wait_for(Duration::from_secs(5), has(&["b", "c"]))
            .await
    );
    // The 410 may reach the watcher after the events sent before it: wait for the list.
    let start = std::time::Instant::now();
    while lists() <= lists_before && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lists() > lists_before, "the watcher re-listed");
    task.abort();
}
