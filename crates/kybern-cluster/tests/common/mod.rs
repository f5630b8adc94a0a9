//! Shared by the cluster-mode tests: a fake API server prepared as after `helm install`,
//! server options, an HTTPS client that trusts only the published caBundle, waiting helpers.
#![allow(dead_code)]

use base64::Engine as _;
use kybern_cluster::certificates::CertSource;
use kybern_cluster::names::{Names, Scheme};
use kybern_cluster::serve::{ClusterOptions, ClusterServer};
use kybern_cluster::webhooks::WebhookSettings;
use kybern_testkube::FakeApiServer;
use kybern_webhook::config::{Limits, TlsSource, WebhookConfig};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const NS: &str = "kybern";
pub const SERVICE_DNS: &str = "kybern-svc.kybern.svc";
pub const VWC: &str = "kybern-resource-validating-webhook-cfg";
pub const ADMISSION: &str = "admissionregistration.k8s.io/v1";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Cluster {
    pub api: FakeApiServer,
    pub kubeconfig: PathBuf,
    /// The kubeconfig's folder and each server's certificates; removed with the cluster.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// A fresh folder inside the cluster's.
    pub fn temp_dir(&self, tag: &str) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.path().join(format!("{tag}-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// A fake API server with kybern's namespace and CRDs, as after `helm install`.
pub async fn cluster() -> Cluster {
    let api = FakeApiServer::start().await.unwrap();
    let store = api.store();
    store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": NS, "labels": {"kubernetes.io/metadata.name": NS}}}),
        )
        .unwrap();
    store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team", "tier": "prod"}}}),
        )
        .unwrap();
    for crd in kybern_cluster::crds::all() {
        store
            .create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
            .unwrap();
    }
    let dir = tempfile::Builder::new()
        .prefix("kybern-cluster-")
        .tempdir()
        .unwrap();
    let kubeconfig = dir.path().join("config");
    api.write_kubeconfig(&kubeconfig).unwrap();
    Cluster {
        api,
        kubeconfig,
        dir,
    }
}

pub fn options(c: &Cluster, identity: &str) -> ClusterOptions {
    let names = Names::new(Scheme::Kybern, NS, None);
    ClusterOptions {
        kubeconfig: Some(c.kubeconfig.clone()),
        names: names.clone(),
        identity: identity.to_string(),
        certificates: CertSource::Managed,
        cert_dir: c.temp_dir("certs"),
        webhooks: WebhookSettings {
            names,
            default_timeout_seconds: 10,
            exclude_namespaces: vec!["kube-system".into()],
            url_base: None,
            namespace_selector: None,
            object_selector: None,
            match_conditions: Vec::new(),
        },
        config_map: "kybern".into(),
        stale_bound: Duration::from_secs(60),
        defaults: Default::default(),
        server: WebhookConfig {
            exception_namespaces: Vec::new(),
            listen: "127.0.0.1:0".parse().unwrap(),
            policy_paths: Vec::new(),
            cluster_resources: None,
            tls: TlsSource::Files {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            poll_interval: Duration::from_millis(50),
            limits: Limits::default(),
            filters: Default::default(),
            config_map: None,
        },
        admission_reports: None,
        images: None,
    }
}

/// An HTTPS client that trusts only the caBundle of the live webhook configuration and reaches
/// the server under the Service's DNS name, as the API server does.
pub fn client_from_ca_bundle(ca_bundle_b64: &str, server: &ClusterServer) -> reqwest::Client {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle_b64)
        .unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve(SERVICE_DNS, server.running.local_addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn url(server: &ClusterServer, path: &str) -> String {
    format!(
        "https://{SERVICE_DNS}:{}{path}",
        server.running.local_addr.port()
    )
}

pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn webhook<'a>(vwc: &'a Value, name: &str) -> Option<&'a Value> {
    vwc["webhooks"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == name)
}

pub fn require_label(name: &str, action: &str) -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name},
        "spec": {"validationFailureAction": action, "background": false, "rules": [{
            "name": "check-team",
            "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
            "validate": {"message": "team label required", "pattern": {"metadata": {"labels": {"team": "?*"}}}}
        }]}
    })
}

pub fn review(uid: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": name, "namespace": "team", "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "team", "labels": labels}},
            "dryRun": false
        }
    })
}

pub async fn send(
    client: &reqwest::Client,
    server: &ClusterServer,
    path: &str,
    body: &Value,
) -> Value {
    let resp = client
        .post(url(server, path))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["response"].clone()
}

pub async fn ready(client: &reqwest::Client, server: &ClusterServer) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url(server, "/health/readiness")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn live_vwc(c: &Cluster) -> Value {
    let store = c.api.store();
    let mut found = None;
    wait_for(
        "the validating webhook configuration",
        Duration::from_secs(20),
        || {
            found = store.get(ADMISSION, "validatingwebhookconfigurations", None, VWC);
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}
