//! One watched kind: a kube-runtime reflector over dynamic objects, trimmed to what kybern reads,
//! with its health (synced once, broken since when) for readiness and staleness.

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How a watch is doing.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    broken_since: Mutex<Option<Instant>>,
}

impl Health {
    /// True once the first complete list has arrived.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How long the watch has been failing, if it is.
    pub fn broken_for(&self) -> Option<Duration> {
        self.broken_since
            .lock()
            .ok()
            .and_then(|b| b.map(|since| since.elapsed()))
    }

    fn ok(&self) {
        if let Ok(mut b) = self.broken_since.lock() {
            *b = None;
        }
    }

    fn failed(&self) {
        if let Ok(mut b) = self.broken_since.lock() {
            b.get_or_insert_with(Instant::now);
        }
    }
}

/// A watched kind's objects.
#[derive(Clone)]
pub struct Cache {
    /// For messages: `kyverno.io/v1 clusterpolicies`.
    pub name: String,
    pub resource: ApiResource,
    pub reader: Store<DynamicObject>,
    pub health: Arc<Health>,
}

/// What a cache keeps of each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// Everything but `metadata.managedFields` and the last-applied annotation.
    Object,
    /// The object without annotations, owner references and finalizers (role bindings: their
    /// subjects and roleRef are what is read).
    Slim,
    /// [`Trim::Slim`] without labels either, and without the fields at these JSON pointers
    /// (read from the API server when needed): for objects kept by the thousand of which little
    /// is read from the cache.
    Without(&'static [&'static str]),
}

fn trim(obj: &mut DynamicObject, how: Trim) {
    obj.metadata.managed_fields = None;
    if let Some(a) = obj.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    match how {
        Trim::Object => {}
        Trim::Slim => slim(obj),
        Trim::Without(pointers) => {
            slim(obj);
            obj.metadata.labels = None;
            for p in pointers {
                let Some((parent, key)) = p.rsplit_once('/') else {
                    continue;
                };
                if let Some(m) = obj.data.pointer_mut(parent).and_then(|v| v.as_object_mut()) {
                    m.remove(key);
                }
            }
        }
    }
}

fn slim(obj: &mut DynamicObject) {
    obj.metadata.annotations = None;
    obj.metadata.owner_references = None;
    obj.metadata.finalizers = None;
}

impl Cache {
    /// Starts watching `resource` (all namespaces, or one), trimmed as `how` says; `changed` is
    /// notified after every event that changed the cache.
    pub fn spawn(
        client: kube::Client,
        resource: ApiResource,
        namespace: Option<&str>,
        field_selector: Option<String>,
        how: Trim,
        changed: Arc<Notify>,
        stop: &CancellationToken,
    ) -> Cache {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client, ns, &resource),
            None => Api::all_with(client, &resource),
        };
        let name = format!("{} {}", resource.api_version, resource.plural);
        let writer = reflector::store::Writer::new(resource.clone());
        let reader = writer.as_reader();
        let health = Arc::new(Health::default());
        let mut config = watcher::Config::default();
        if let Some(f) = field_selector {
            config = config.fields(&f);
        }
        let task_health = Arc::clone(&health);
        let task_name = name.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let stream = watcher(api, config)
                .default_backoff()
                .modify(move |o| trim(o, how))
                .reflect(writer);
            futures::pin_mut!(stream);
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    e = stream.next() => match e {
                        Some(e) => e,
                        None => break,
                    },
                };
                match event {
                    Ok(watcher::Event::InitDone) => {
                        task_health.ok();
                        task_health.synced.store(true, Ordering::Release);
                        changed.notify_one();
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => task_health.ok(),
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                        task_health.ok();
                        changed.notify_one();
                    }
                    Err(e) => {
                        task_health.failed();
                        tracing::warn!(watch = %task_name, error = %e, "watch failed; retrying");
                    }
                }
            }
        });
        Cache {
            name,
            resource,
            reader,
            health,
        }
    }

    /// Every object as JSON with its apiVersion and kind (list items may come without them).
    pub fn values(&self) -> Vec<Value> {
        self.reader
            .state()
            .iter()
            .filter_map(|o| self.to_value(o))
            .collect()
    }

    /// The object named `name` (in `namespace`, empty for cluster-scoped ones), as JSON.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        let mut key = reflector::ObjectRef::new_with(name, self.resource.clone());
        if !namespace.is_empty() {
            key = key.within(namespace);
        }
        self.reader.get(&key).and_then(|o| self.to_value(&o))
    }

    /// One object as JSON with its apiVersion and kind.
    pub fn to_value(&self, obj: &DynamicObject) -> Option<Value> {
        let mut v = serde_json::to_value(obj).ok()?;
        if let Some(m) = v.as_object_mut() {
            m.entry("apiVersion")
                .or_insert_with(|| Value::String(self.resource.api_version.clone()));
            m.entry("kind")
                .or_insert_with(|| Value::String(self.resource.kind.clone()));
        }
        Some(v)
    }
}

/// Readiness over several caches: every one synced, none broken longer than `bound`.
pub fn readiness(caches: &[Cache], bound: Duration) -> Result<(), String> {
    let waiting: Vec<String> = caches
        .iter()
        .filter_map(|c| {
            if !c.health.synced() {
                return Some(format!("{} has not synced", c.name));
            }
            match c.health.broken_for() {
                Some(d) if d > bound => {
                    Some(format!("{} has been failing for {}s", c.name, d.as_secs()))
                }
                _ => None,
            }
        })
        .collect();
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(waiting.join("; "))
    }
}

/// The longest time any cache has been failing (0 when all are healthy).
pub fn staleness(caches: &[Cache]) -> Duration {
    caches
        .iter()
        .filter_map(|c| c.health.broken_for())
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_drops_the_named_fields_and_keeps_the_rest() {
        let mut o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "kyverno.io/v2", "kind": "UpdateRequest",
            "metadata": {"name": "ur-1", "annotations": {"a": "b"}, "labels": {"c": "d"}},
            "spec": {"policy": "p", "context": {"admissionRequestInfo": {"big": "x"}}},
        }))
        .unwrap();
        trim(
            &mut o,
            Trim::Without(&["/spec/context", "/spec/absent", "/no/parent"]),
        );
        assert_eq!(o.data["spec"], serde_json::json!({"policy": "p"}));
        assert!(o.metadata.annotations.is_none() && o.metadata.labels.is_none());
        assert_eq!(o.metadata.name.as_deref(), Some("ur-1"));
    }
}
