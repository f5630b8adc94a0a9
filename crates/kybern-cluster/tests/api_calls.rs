//! Context lookups of the cluster mode against the fake API server, at their bounds: an
//! apiCall answer too large, an API server too slow, a path that is not an API path, and a
//! service URL (which could reach metadata addresses) are rule errors with a reason, in bounded
//! time.

mod common;

use arc_swap::ArcSwap;
use common::*;
use kube::api::{ApiResource, GroupVersionKind};
use kybern_cluster::context::{CallLimits, ClusterContext};
use kybern_cluster::discovery::Kinds;
use kybern_cluster::global_context::GlobalContext;
use kybern_cluster::watch::{Cache, Trim};
use kybern_engine::context::{ApiCall, ContextProvider, ProviderError};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn call(url: &str, is_service: bool) -> ApiCall {
    ApiCall {
        url: url.into(),
        is_service,
        method: "GET".into(),
        body: None,
        cel_http: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_calls_are_bounded_in_size_and_time_and_reach_only_the_api() {
    let c = cluster().await;
    let client = kybern_cluster::serve::client(Some(&c.kubeconfig))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let cache = |kind: &str, plural: &str, group: &str| {
        Cache::spawn(
            client.clone(),
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural),
            None,
            None,
            Trim::Object,
            Arc::new(Notify::new()),
            &stop,
        )
    };
    let rbac = "rbac.authorization.k8s.io";
    let context = Arc::new(ClusterContext::new(
        client.clone(),
        [
            cache("Namespace", "namespaces", ""),
            cache("ConfigMap", "configmaps", ""),
            cache("RoleBinding", "rolebindings", rbac),
            cache("ClusterRoleBinding", "clusterrolebindings", rbac),
        ],
        Arc::new(ArcSwap::from_pointee(Kinds::default())),
        Arc::new(GlobalContext::default()),
        CallLimits {
            timeout: Duration::from_millis(500),
            max_bytes: 4096,
        },
    ));
    let store = c.api.store();
    store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "small", "namespace": "team"}, "data": {"k": "v"}}),
        )
        .unwrap();
    let ask = |url: &'static str, service: bool| {
        let context = Arc::clone(&context);
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            (context.api_call(&call(url, service)), t.elapsed())
        })
    };

    // Under the bounds: answered.
    let (small, _) = ask("/api/v1/namespaces/team/configmaps/small", false)
        .await
        .unwrap();
    assert_eq!(small.unwrap()["data"]["k"], "v");

    // An answer over the size bound is an error naming it, not a buffer without end.
    store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "big", "namespace": "team"}, "data": {"k": "x".repeat(64 * 1024)}}),
        )
        .unwrap();
    let (big, _) = ask("/api/v1/namespaces/team/configmaps/big", false)
        .await
        .unwrap();
    let message = format!("{:?}", big.unwrap_err());
    assert!(message.contains("over 4096 bytes"), "{message}");

    // Paths that are not API paths, and service URLs (metadata addresses among them), are not
    // called.
    let (relative, _) = ask("http://169.254.169.254/latest/meta-data", false)
        .await
        .unwrap();
    assert!(matches!(relative, Err(ProviderError::Failed(m)) if m.contains("not an API path")));
    let (service, _) = ask("http://169.254.169.254/latest/meta-data", true)
        .await
        .unwrap();
    assert!(matches!(service, Err(ProviderError::Unavailable { .. })));

    // An API server slower than the bound: an error at the bound, not a hung request.
    c.api.faults().latency(Duration::from_secs(3));
    let (slow, took) = ask("/api/v1/namespaces/team/configmaps/small", false)
        .await
        .unwrap();
    let message = format!("{:?}", slow.unwrap_err());
    assert!(message.contains("no answer within"), "{message}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    stop.cancel();
}
