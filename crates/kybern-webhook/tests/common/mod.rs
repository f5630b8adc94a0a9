//! Shared test harness: a real server on 127.0.0.1 with a generated certificate and an HTTPS
//! client that trusts only its CA.
#![allow(dead_code)]

use kybern_webhook::config::{Limits, TlsSource, WebhookConfig};
use kybern_webhook::{Running, start};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temporary folder, removed with everything in it when dropped.
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh temporary folder.
pub fn temp_dir(tag: &str) -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix(&format!("kybern-webhook-{tag}-"))
            .tempdir()
            .unwrap(),
    )
}

pub struct TestServer {
    pub running: Running,
    pub client: reqwest::Client,
    pub base: String,
    /// The server's policies and certificates; removed with the server.
    pub dir: TestDir,
}

pub fn config(policies: &Path, cert_dir: &Path, limits: Limits) -> WebhookConfig {
    WebhookConfig {
        exception_namespaces: Vec::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        policy_paths: vec![policies.to_path_buf()],
        cluster_resources: None,
        tls: TlsSource::Generated {
            dir: cert_dir.to_path_buf(),
            dns_names: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
        },
        poll_interval: Duration::from_millis(50),
        limits,
        filters: Default::default(),
        config_map: None,
    }
}

pub fn client_for(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Starts a server over `policies` (a map of file name to YAML text).
pub async fn serve(policies: &[(&str, &str)], limits: Limits) -> TestServer {
    let dir = temp_dir("srv");
    let pdir = dir.join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    for (name, text) in policies {
        std::fs::write(pdir.join(name), text).unwrap();
    }
    serve_config(config(&pdir, &dir.join("certs"), limits), dir).await
}

pub async fn serve_config(cfg: WebhookConfig, dir: TestDir) -> TestServer {
    let running = start(cfg).await.unwrap();
    running.wait_ready().await;
    let client = client_for(running.ca_pem.as_deref().unwrap());
    let base = format!("https://localhost:{}", running.local_addr.port());
    TestServer {
        running,
        client,
        base,
        dir,
    }
}

/// An AdmissionReview for an object, with the given operation.
pub fn review(op: &str, object: &Value, old: &Value) -> Value {
    let obj = if object.is_null() { old } else { object };
    let api = obj["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    let kind = obj["kind"].as_str().unwrap_or_default();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", COUNTER.fetch_add(1, Ordering::SeqCst)),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "operation": op,
            "userInfo": {"username": "alice", "uid": "1", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": null
        }
    })
}

impl TestServer {
    /// POSTs a review and returns the `response` part.
    pub async fn send(&self, path: &str, review: &Value) -> Value {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .json(review)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], review["request"]["uid"]);
        body["response"].clone()
    }
}
