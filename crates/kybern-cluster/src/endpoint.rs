//! The controllers' plain-HTTP endpoint: `/health/liveness`, `/health/readiness` (every watch
//! synced and fresh) and `/metrics` in the OpenMetrics text format, for probes and Prometheus.

use crate::watch::{self, Cache};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Serves the endpoint on `listen` until `stop`; `metrics` renders the `/metrics` body and
/// `name` names the endpoint in the log. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
    caches: Vec<Cache>,
    stop: CancellationToken,
    name: &'static str,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/health/liveness", get(|| async { "ok" }))
        .route(
            "/health/readiness",
            get(move || {
                let ready = watch::readiness(&caches, Duration::from_secs(60));
                async move {
                    match ready {
                        Ok(()) => (StatusCode::OK, "ready".to_string()),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = metrics();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        );
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move {
            stop.cancelled().await;
        });
        if let Err(e) = served.await {
            tracing::error!(error = %e, endpoint = name, "endpoint stopped");
        }
    });
    Ok(local)
}
