//! GlobalContextEntries: each entry's data fetched from the API and refreshed on its interval,
//! with its projections, in the shape the engine reads (`globalReference`, `globalContext.Get`).
//!
//! `kubernetesResource` entries are re-listed every [`RESOURCE_REFRESH`] (Kyverno keeps an
//! informer per entry; a list on a short interval gives the same data a little later);
//! `apiCall` entries follow their `refreshInterval` (Kyverno's default, 10 minutes).

use crate::watch::Cache;
use arc_swap::ArcSwap;
use kybern_engine::context::ProviderError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often `kubernetesResource` entries are listed again.
pub const RESOURCE_REFRESH: Duration = Duration::from_secs(15);
const DEFAULT_API_CALL_REFRESH: Duration = Duration::from_secs(600);
const TICK: Duration = Duration::from_secs(1);

/// The entries' current data: the value, or why it could not be fetched.
#[derive(Debug, Default)]
pub struct GlobalContext {
    entries: ArcSwap<BTreeMap<String, Result<Value, String>>>,
}

impl GlobalContext {
    /// An entry's data; `None` when no entry has that name.
    pub fn get(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        match self.entries.load().get(name) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v.clone())),
            Some(Err(e)) => Err(ProviderError::Failed(format!(
                "global context entry {name}: {e}"
            ))),
        }
    }

    /// Keeps the entries of `cache` fetched until the runtime ends.
    pub fn spawn(
        client: kube::Client,
        cache: Cache,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Arc<GlobalContext> {
        let global = Arc::new(GlobalContext::default());
        let task = Arc::clone(&global);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut fetched: BTreeMap<String, (Instant, String)> = BTreeMap::new();
            loop {
                let entries = cache.values();
                let mut data = (**task.entries.load()).clone();
                let names: Vec<String> = entries.iter().map(name_of).collect();
                data.retain(|k, _| names.contains(k));
                fetched.retain(|k, _| names.contains(k));
                for entry in &entries {
                    let name = name_of(entry);
                    let version = entry
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let due = fetched.get(&name).is_none_or(|(at, v)| {
                        *v != version || at.elapsed() >= refresh_interval(entry)
                    });
                    if !due {
                        continue;
                    }
                    let value = fetch(&client, entry).await.map(|v| project(entry, v));
                    if let Err(e) = &value {
                        tracing::warn!(entry = %name, error = %e, "global context entry not fetched");
                    }
                    data.insert(name.clone(), value);
                    fetched.insert(name, (Instant::now(), version));
                }
                task.entries.store(Arc::new(data));
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
        });
        global
    }
}

fn name_of(entry: &Value) -> String {
    entry
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn refresh_interval(entry: &Value) -> Duration {
    if entry.pointer("/spec/apiCall").is_none() {
        return RESOURCE_REFRESH;
    }
    entry
        .pointer("/spec/apiCall/refreshInterval")
        .and_then(Value::as_str)
        .and_then(kybern_engine::duration::parse)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
        .map_or(DEFAULT_API_CALL_REFRESH, Duration::from_nanos)
}

/// The API path an entry reads.
fn path_of(entry: &Value) -> Result<(String, bool), String> {
    if let Some(r) = entry.pointer("/spec/kubernetesResource") {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let (group, version, resource, namespace) =
            (s("group"), s("version"), s("resource"), s("namespace"));
        if version.is_empty() || resource.is_empty() {
            return Err("spec.kubernetesResource needs version and resource".into());
        }
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        return Ok((
            if namespace.is_empty() {
                format!("{base}/{resource}")
            } else {
                format!("{base}/namespaces/{namespace}/{resource}")
            },
            true,
        ));
    }
    if let Some(call) = entry.pointer("/spec/apiCall") {
        if call.get("service").is_some() {
            return Err("spec.apiCall.service: calls to services are not made yet".into());
        }
        let path = call
            .get("urlPath")
            .and_then(Value::as_str)
            .ok_or("spec.apiCall needs urlPath")?;
        return Ok((path.to_string(), false));
    }
    Err("spec needs kubernetesResource or apiCall".into())
}

async fn fetch(client: &kube::Client, entry: &Value) -> Result<Value, String> {
    let (path, is_list) = path_of(entry)?;
    let method = entry
        .pointer("/spec/apiCall/method")
        .and_then(Value::as_str)
        .unwrap_or("GET");
    let body = match entry
        .pointer("/spec/apiCall/data")
        .and_then(Value::as_array)
    {
        Some(items) if method.eq_ignore_ascii_case("POST") => {
            let map: Map<String, Value> = items
                .iter()
                .filter_map(|i| {
                    Some((
                        i.get("key")?.as_str()?.to_string(),
                        i.get("value").cloned().unwrap_or(Value::Null),
                    ))
                })
                .collect();
            Value::Object(map).to_string().into_bytes()
        }
        _ => Vec::new(),
    };
    let request = http::Request::builder()
        .method(if method.eq_ignore_ascii_case("POST") {
            http::Method::POST
        } else {
            http::Method::GET
        })
        .uri(&path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| e.to_string())?;
    let value: Value = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| format!("{path}: no answer within 10s"))?
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(if is_list {
        value
            .get("items")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()))
    } else {
        value
    })
}

/// The data with its projections, as the CLI gives it: the whole data under `""` and each
/// projection under its name.
fn project(entry: &Value, data: Value) -> Value {
    let Some(projections) = entry
        .pointer("/spec/projections")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    else {
        return data;
    };
    let mut out = Map::new();
    for p in projections {
        let (Some(name), Some(path)) = (
            p.get("name").and_then(Value::as_str),
            p.get("jmesPath").and_then(Value::as_str),
        ) else {
            continue;
        };
        let v = kybern_engine::variables::compiled(path)
            .and_then(|e| e.search(&data))
            .unwrap_or(Value::Null);
        out.insert(name.to_string(), v);
    }
    out.insert(String::new(), data);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_intervals_follow_the_entry_kind() {
        let res = json!({"spec": {"kubernetesResource": {"group": "apps", "version": "v1", "resource": "deployments", "namespace": "a"}}});
        assert_eq!(
            path_of(&res).unwrap(),
            ("/apis/apps/v1/namespaces/a/deployments".to_string(), true)
        );
        assert_eq!(refresh_interval(&res), RESOURCE_REFRESH);
        let call = json!({"spec": {"apiCall": {"urlPath": "/api/v1/namespaces", "refreshInterval": "30s"}}});
        assert_eq!(
            path_of(&call).unwrap(),
            ("/api/v1/namespaces".to_string(), false)
        );
        assert_eq!(refresh_interval(&call), Duration::from_secs(30));
        assert!(path_of(&json!({"spec": {}})).is_err());
    }

    #[test]
    fn projections_sit_beside_the_whole_data() {
        let entry =
            json!({"spec": {"projections": [{"name": "names", "jmesPath": "[].metadata.name"}]}});
        let data = json!([{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]);
        let p = project(&entry, data.clone());
        assert_eq!(p["names"], json!(["a", "b"]));
        assert_eq!(p[""], data);
    }
}
