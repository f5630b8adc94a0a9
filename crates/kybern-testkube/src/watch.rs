//! Watch streams: initial events, changes from the history, bookmarks, timeouts and the
//! faults that end a watch.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::faults::Faults;
use crate::resource::ResourceType;
use crate::selector::Selector;
use crate::store::{EventType, Store, present};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// What a watch request asks for.
#[derive(Debug, Clone)]
pub(crate) struct WatchRequest {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
    /// `resourceVersion`; `None`, empty or `0` means "current state first".
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: a streaming list ending in an `initial-events-end` bookmark.
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
}

/// Starts a watch; its JSON lines arrive on the returned receiver, which closes when the watch
/// ends. A malformed `resourceVersion` is refused before anything is streamed.
pub(crate) fn start(
    store: &Store,
    faults: &Faults,
    req: WatchRequest,
) -> Result<mpsc::Receiver<Bytes>, StoreError> {
    let from = match req.resource_version.as_deref() {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| StoreError::BadRequest(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    let (tx, rx) = mpsc::channel(256);
    let store = store.clone();
    let signals = faults.watch_signals();
    tokio::spawn(run(store, signals, req, from, tx));
    Ok(rx)
}

async fn run(
    store: Store,
    mut signals: crate::faults::WatchSignals,
    req: WatchRequest,
    from: Option<u64>,
    tx: mpsc::Sender<Bytes>,
) {
    // Subscribe before reading, so no write between the two is missed.
    let mut changed = store.subscribe();
    let (initial, mut last_rv) = {
        let st = store.lock();
        match from {
            Some(rv) => (Vec::new(), rv),
            None => (
                st.matching(&req.rt, req.namespace.as_deref(), &req.labels, &req.fields),
                st.rv(),
            ),
        }
    };
    for obj in initial {
        if send(&tx, "ADDED", obj).await.is_err() {
            return;
        }
    }
    if req.send_initial_events {
        let mut mark = bookmark(&req.rt, last_rv);
        mark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        if send(&tx, "BOOKMARK", mark).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(req.timeout.unwrap_or(Duration::from_secs(3600)));
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval(BOOKMARK_EVERY);
    loop {
        let held = signals.held.borrow_and_update().contains(&req.rt.plural);
        if !held && forward(&store, &req, &mut last_rv, &tx).await.is_err() {
            return;
        }
        tokio::select! {
            res = changed.changed() => {
                if res.is_err() {
                    return;
                }
            }
            _ = signals.held.changed() => {}
            _ = ticks.tick(), if req.bookmarks && !held => {
                if forward(&store, &req, &mut last_rv, &tx).await.is_err()
                    || send(&tx, "BOOKMARK", bookmark(&req.rt, last_rv)).await.is_err()
                {
                    return;
                }
            }
            _ = &mut deadline => return,
            _ = signals.drop.changed() => return,
            _ = signals.expire.changed() => {
                let err = StoreError::Expired(format!("too old resource version: {last_rv}"));
                let _ = send(&tx, "ERROR", err.to_status()).await;
                return;
            }
            _ = tx.closed() => return,
        }
    }
}

/// Sends the events after `last_rv` that this watch sees; `Err` ends the watch.
async fn forward(
    store: &Store,
    req: &WatchRequest,
    last_rv: &mut u64,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), ()> {
    let pending = {
        let st = store.lock();
        let events = st.events_since(*last_rv);
        if events.is_ok() {
            *last_rv = st.rv().max(*last_rv);
        }
        events
    };
    let pending = match pending {
        Ok(events) => events,
        Err(expired) => {
            let _ = send(tx, "ERROR", expired.to_status()).await;
            return Err(());
        }
    };
    for event in pending {
        let k = &event.key;
        if k.group != req.rt.group
            || k.plural != req.rt.plural
            || req.namespace.as_deref().is_some_and(|ns| ns != k.namespace)
        {
            continue;
        }
        let sees = |o: &Value| req.labels.matches(o) && req.fields.matches(o);
        let now = sees(&event.object);
        let before = event.old.as_ref().is_some_and(sees);
        // An object that starts or stops matching a selector appears or disappears.
        let kind = match (event.kind, before, now) {
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Added | EventType::Deleted, _, true) => event.kind,
            _ => continue,
        };
        send(tx, kind.as_str(), present(&event.object, &req.rt)).await?;
    }
    Ok(())
}

fn bookmark(rt: &ResourceType, rv: u64) -> Value {
    json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}})
}

async fn send(tx: &mpsc::Sender<Bytes>, kind: &str, object: Value) -> Result<(), ()> {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    tx.send(Bytes::from(line)).await.map_err(|_| ())
}
