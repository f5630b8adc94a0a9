//! Clone sources of synchronized generate rules: when a source changes, every object the rule
//! cloned from it is generated again for its trigger, so downstream copies follow their source.
//! Sources are watched per kind and namespace (the rule's `clone.namespace` or
//! `cloneList.namespace`, when written out rather than given by a variable).

use super::{Changed, Worker};
use futures::StreamExt;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kybern_engine::policy::{Policy, RuleBody};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn literal(s: &str) -> bool {
    !s.is_empty() && !s.contains("{{")
}

/// What a synchronized rule clones from: `(apiVersion, kind, namespace, name)`, the name empty
/// for `cloneList` (any object of the kind in the namespace).
fn sources_of(g: &Value) -> Vec<(String, String, String, String)> {
    if !super::generate::is_synchronized(g) {
        return Vec::new();
    }
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut out = Vec::new();
    if let Some(c) = g.get("clone").filter(|c| c.is_object()) {
        let (api_version, kind) = (s(g, "/apiVersion"), s(g, "/kind"));
        let (namespace, name) = (s(c, "/namespace"), s(c, "/name"));
        if [&api_version, &kind, &name].iter().all(|x| literal(x)) && !namespace.contains("{{") {
            out.push((api_version, kind, namespace, name));
        }
    }
    if let Some(c) = g.get("cloneList").filter(|c| c.is_object()) {
        let namespace = s(c, "/namespace");
        if !namespace.contains("{{") {
            for k in c
                .get("kinds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let (api_version, kind) = k.rsplit_once('/').unwrap_or(("v1", k));
                out.push((
                    api_version.to_string(),
                    kind.to_string(),
                    namespace.clone(),
                    String::new(),
                ));
            }
        }
    }
    out
}

/// The `(apiVersion, kind, namespace)` to watch for the clone sources of these policies.
pub(super) fn watched_sources(policies: &[Arc<Policy>]) -> BTreeSet<(String, String, String)> {
    policies
        .iter()
        .flat_map(|p| &p.rules)
        .filter_map(|r| match &r.body {
            RuleBody::Generate(g) => Some(sources_of(g)),
            _ => None,
        })
        .flatten()
        .map(|(a, k, ns, _)| (a, k, ns))
        .collect()
}

/// Watches one source kind in one namespace; changes (not the initial list) go to `events`.
pub(super) fn spawn_source_watch(
    w: &Arc<Worker>,
    key: &(String, String, String),
    events: mpsc::UnboundedSender<Changed>,
    stop: &CancellationToken,
) {
    let kinds = w.kinds.load();
    let Some(r) = kinds.by_api_version(&key.0, &key.1) else {
        tracing::warn!(api_version = %key.0, kind = %key.1, "the cluster serves no such kind; clones of it do not follow their source");
        return;
    };
    let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &r.plural);
    let api: Api<DynamicObject> = if r.namespaced && !key.2.is_empty() {
        Api::namespaced_with(w.client.clone(), &key.2, &resource)
    } else {
        Api::all_with(w.client.clone(), &resource)
    };
    let stop = stop.clone();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                e = stream.next() => match e { Some(e) => e, None => break },
            };
            match event {
                Ok(watcher::Event::Apply(mut o)) => {
                    o.types = resource_types(&resource);
                    let _ = events.send(Changed::Source(o));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "watch of clone sources failed; retrying"),
            }
        }
    });
}

fn resource_types(r: &ApiResource) -> Option<kube::api::TypeMeta> {
    Some(kube::api::TypeMeta {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
    })
}

impl Worker {
    /// A clone source changed: the synchronized rules cloning from it generate again for each
    /// trigger they generated for.
    pub(super) async fn source_changed(&self, source: &DynamicObject) {
        let (api_version, kind) = source
            .types
            .as_ref()
            .map(|t| (t.api_version.clone(), t.kind.clone()))
            .unwrap_or_default();
        let namespace = source.metadata.namespace.clone().unwrap_or_default();
        let name = source.metadata.name.clone().unwrap_or_default();
        let policies = self.store.snapshot().policies.clone();
        for policy in policies.iter() {
            for r in &policy.rules {
                let RuleBody::Generate(g) = &r.body else {
                    continue;
                };
                let clones_it = sources_of(g).iter().any(|(a, k, ns, n)| {
                    *a == api_version
                        && *k == kind
                        && *ns == namespace
                        && (n.is_empty() || *n == name)
                });
                if clones_it {
                    self.generate_again(policy, &r.name).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn synchronized_clones_name_their_sources() {
        let clone = json!({"apiVersion": "v1", "kind": "Secret", "synchronize": true,
            "clone": {"namespace": "default", "name": "regcred"}});
        assert_eq!(
            sources_of(&clone),
            vec![(
                "v1".into(),
                "Secret".into(),
                "default".into(),
                "regcred".into()
            )]
        );
        let list = json!({"synchronize": true,
            "cloneList": {"namespace": "base", "kinds": ["v1/ConfigMap", "networking.k8s.io/v1/NetworkPolicy"]}});
        assert_eq!(sources_of(&list).len(), 2);
        assert_eq!(sources_of(&list)[1].0, "networking.k8s.io/v1");
        let unsynchronized = json!({"apiVersion": "v1", "kind": "Secret",
            "clone": {"namespace": "default", "name": "regcred"}});
        assert!(sources_of(&unsynchronized).is_empty());
        let variable = json!({"apiVersion": "v1", "kind": "Secret", "synchronize": true,
            "clone": {"namespace": "default", "name": "{{request.object.metadata.name}}"}});
        assert!(sources_of(&variable).is_empty());
    }
}
