//! kybern-webhook: the HTTPS admission webhook server on top of `kybern-engine`.
//!
//! This crate owns the wire format (`admission.k8s.io/v1` AdmissionReview), the HTTP and TLS
//! stack (axum on hyper, rustls with the ring provider), the policy store that loads policy folders,
//! compiles them once and swaps them atomically, the file-backed context provider, request limits,
//! Prometheus metrics with Kyverno's names, and certificate generation and reloading.
//!
//! It must not decide anything itself: every admission decision comes from the engine's single
//! entry point ([`kybern_engine::engine::Engine::validate`]), called exactly as the CLI calls it.
//! It never depends on the CLI crate.

pub mod admission;
pub mod budget;
pub mod certs;
pub mod config;
pub mod connections;
pub mod decision;
pub mod error;
pub mod filters;
pub mod images;
pub mod in_place;
pub mod metric_handles;
pub mod metrics;
pub mod patch;
pub mod provider;
pub mod routes;
pub mod server;
pub mod store;
pub mod trace;

pub use config::{Limits, WebhookConfig};
pub use server::{
    AdmissionObserver, ExternalParts, ExtraMetrics, ReadinessCheck, Running, start, start_with,
};
