//! Shared helpers: a started fake and a kube client for it.

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kybern_testkube::FakeApiServer;

/// A fresh fake and a client configured from its kubeconfig, as cluster code would be.
pub async fn start() -> (FakeApiServer, Client) {
    let server = FakeApiServer::start().await.expect("start fake");
    let client = client(&server).await;
    (server, client)
}

pub async fn client(server: &FakeApiServer) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig loads");
    Client::try_from(config).expect("client builds")
}

/// The `kube::Error::Api` code and reason of a failed call.
#[allow(dead_code)]
pub fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}
