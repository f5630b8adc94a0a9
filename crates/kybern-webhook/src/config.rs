//! Resolved server configuration: where to listen, what to load, which certificate, and the limits.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Bounds that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body. 7 MiB fits a 3 MiB object plus its oldObject.
    pub max_body_bytes: usize,
    /// Deepest accepted nesting of the `object` and `oldObject` (their own braces are level 1;
    /// the AdmissionReview around them is not counted). Deeper requests get 400.
    pub max_object_depth: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (slowloris), and to wait for the first request
    /// of a connection or the next one on an idle HTTP/1.1 keep-alive connection.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request's body.
    pub body_read_timeout: Duration,
    /// Open connections at once. When all are taken, the oldest connection that has not sent a
    /// request yet is closed for the new one; only when every connection serves requests is the new
    /// one closed on accept.
    pub max_connections: usize,
    /// Evaluations running at once on the blocking pool.
    pub max_concurrent_evaluations: usize,
    /// Deadline when the request has no usable `?timeout=`.
    pub default_timeout: Duration,
    /// The longest deadline honoured (the API server's maximum webhook timeout).
    pub max_timeout: Duration,
    /// Time kept back from the deadline to write the answer.
    pub answer_margin: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Memory for request bodies being read or waiting to be decoded, charged by the bytes received
    /// as they arrive; a body that finds no room is refused with 503 at once.
    pub body_budget_bytes: usize,
    /// Memory for decoded requests being evaluated, reserved by an estimate from each body's shape
    /// ([`crate::budget::estimate_decoded`]). Requests that find no room before their deadline, or
    /// need more than all of it, are refused with 503 and the reason.
    pub memory_budget_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Limits {
            max_body_bytes: 7 * 1024 * 1024,
            max_object_depth: 128,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            // Evaluation is CPU-bound (lookups read files loaded in memory): more evaluations at
            // once than CPUs only add context switches (measured: less and steadier throughput).
            max_concurrent_evaluations: cpus,
            default_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(30),
            answer_margin: Duration::from_millis(200),
            shutdown_grace: Duration::from_secs(20),
            // Nine bodies at the 7 MiB cap at once; small reviews never fill it.
            body_budget_bytes: 64 * 1024 * 1024,
            // With the bodies, keeps a burst of large reviews under 256 MiB of RSS.
            memory_budget_bytes: 128 * 1024 * 1024,
        }
    }
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files given by the operator; reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed CA and a serving certificate created (once) in `dir`.
    Generated {
        dir: PathBuf,
        dns_names: Vec<String>,
        ips: Vec<IpAddr>,
    },
}

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    /// Policy and PolicyException files or folders.
    pub policy_paths: Vec<PathBuf>,
    /// Namespaces, ConfigMaps and other objects that context entries read.
    pub cluster_resources: Option<PathBuf>,
    pub tls: TlsSource,
    /// How often policy folders and certificate files are checked for changes.
    pub poll_interval: Duration,
    pub limits: Limits,
    /// Requests admitted without evaluation (Kyverno's ConfigMap `resourceFilters` and exclusions)
    /// when no `config_map` file is given.
    pub filters: crate::filters::AdmissionFilters,
    /// A `kyverno` ConfigMap file whose filters apply instead; re-read when it changes (a version
    /// that does not parse is reported and the last good one stays).
    pub config_map: Option<PathBuf>,
    /// Namespaces whose PolicyExceptions are honoured; empty: every namespace (Kyverno's
    /// `--exceptionNamespace`, the remedy of CVE-2024-48921).
    pub exception_namespaces: Vec<String>,
}
