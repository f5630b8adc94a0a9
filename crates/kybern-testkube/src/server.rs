//! The listening server: accepts connections on 127.0.0.1, serves them over HTTP/1.1 and
//! writes kubeconfigs that point at it.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::faults::Faults;
use crate::http::{self, Shared};
use crate::store::Store;

/// A running fake API server. Dropping it stops it too; [`FakeApiServer::shutdown`] also waits.
pub struct FakeApiServer {
    addr: SocketAddr,
    store: Store,
    faults: Faults,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeApiServer {
    /// Starts a server on `127.0.0.1` on a free port.
    pub async fn start() -> std::io::Result<FakeApiServer> {
        FakeApiServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts a server on `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeApiServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let store = Store::new();
        let faults = Faults::new(store.clone());
        let shared = Shared {
            store: store.clone(),
            faults: faults.clone(),
            address: addr.to_string(),
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(listener, shared, stopped));
        Ok(FakeApiServer {
            addr,
            store,
            faults,
            stop: Some(stop),
            task,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server: cluster, user (a dummy token) and context all named
    /// `fake`, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {url}
users:
- name: fake
  user:
    token: fake-token
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
preferences: {{}}
",
            url = self.url()
        )
    }

    /// Writes [`FakeApiServer::kubeconfig`] to `path`, atomically (a reader that sees the
    /// file sees all of it, and the server is already listening).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        std::fs::write(&partial, self.kubeconfig())?;
        std::fs::rename(&partial, path)
    }

    /// The objects, for setup and assertions without a client.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Fault injection and the request log.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stops accepting, closes every connection (and so every watch) and waits for that.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Shared, mut stopped: oneshot::Receiver<()>) {
    // Dropping the set when the loop ends aborts every connection still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                while connections.try_join_next().is_some() {}
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(http::handle(shared, req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        }
    }
    connections.shutdown().await;
}
