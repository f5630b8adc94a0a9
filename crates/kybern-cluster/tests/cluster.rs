//! `serve --cluster` end to end against the in-repo fake API server: the real kube client,
//! watches, server-side applies and Lease; admission requests over real TLS with the caBundle
//! the leader published as the only root.

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

const NS: &str = "kybern";
const SERVICE_DNS: &str = "kybern-svc.kybern.svc";
const VWC: &str = "kybern-resource-validating-webhook-cfg";
const ADMISSION: &str = "admissionregistration.k8s.io/v1";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("kybern-cluster-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Cluster {
    api: FakeApiServer,
    kubeconfig: PathBuf,
}

/// A fake API server with kybern's namespace and CRDs, as after `helm install`.
async fn cluster() -> Cluster {
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
    let kubeconfig = temp_dir("kubeconfig").join("config");
    api.write_kubeconfig(&kubeconfig).unwrap();
    Cluster { api, kubeconfig }
}

fn options(c: &Cluster, identity: &str) -> ClusterOptions {
    let names = Names::new(Scheme::Kybern, NS, None);
    ClusterOptions {
        kubeconfig: Some(c.kubeconfig.clone()),
        names: names.clone(),
        identity: identity.to_string(),
        certificates: CertSource::Managed,
        cert_dir: temp_dir("certs"),
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
    }
}

/// An HTTPS client that trusts only the caBundle of the live webhook configuration and reaches
/// the server under the Service's DNS name, as the API server does.
fn client_from_ca_bundle(ca_bundle_b64: &str, server: &ClusterServer) -> reqwest::Client {
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

fn url(server: &ClusterServer, path: &str) -> String {
    format!(
        "https://{SERVICE_DNS}:{}{path}",
        server.running.local_addr.port()
    )
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn webhook<'a>(vwc: &'a Value, name: &str) -> Option<&'a Value> {
    vwc["webhooks"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == name)
}

fn require_label(name: &str, action: &str) -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name},
        "spec": {"validationFailureAction": action, "background": false, "rules": [{
            "name": "check-team",
            "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
            "validate": {"message": "team label required", "pattern": {"metadata": {"labels": {"team": "?*"}}}}
        }]}
    })
}

fn review(uid: &str, name: &str, labels: Value) -> Value {
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

async fn send(client: &reqwest::Client, server: &ClusterServer, path: &str, body: &Value) -> Value {
    let resp = client
        .post(url(server, path))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["response"].clone()
}

async fn ready(client: &reqwest::Client, server: &ClusterServer) {
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

async fn live_vwc(c: &Cluster) -> Value {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_policy_applied_through_the_api_decides_admission() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();

    // Secrets in kybern's namespace; the published caBundle verifies the serving certificate.
    assert!(
        store
            .get(
                "v1",
                "secrets",
                Some(NS),
                "kybern-svc.kybern.svc.kybern-tls-ca"
            )
            .is_some()
    );
    assert!(
        store
            .get(
                "v1",
                "secrets",
                Some(NS),
                "kybern-svc.kybern.svc.kybern-tls-pair"
            )
            .is_some()
    );
    let vwc = live_vwc(&c).await;
    assert_eq!(
        vwc["metadata"]["labels"]["webhook.kybern.io/managed-by"],
        "kybern"
    );
    let bundle = server.ca_bundle.borrow().clone();
    let client = client_from_ca_bundle(
        &base64::engine::general_purpose::STANDARD.encode(&bundle),
        &server,
    );
    ready(&client, &server).await;

    // A policy created through the API: webhook rules and decisions follow within a second.
    let created = Instant::now();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("require-team", "Enforce"),
        )
        .unwrap();
    let mut vwc = Value::Null;
    wait_for("the policy's webhook rules", Duration::from_secs(5), || {
        vwc = store
            .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
            .unwrap_or_default();
        webhook(&vwc, "validate.kybern.svc-fail").is_some()
    })
    .await;
    let hook = webhook(&vwc, "validate.kybern.svc-fail").unwrap().clone();
    assert_eq!(hook["clientConfig"]["service"]["path"], "/validate/fail");
    assert_eq!(hook["clientConfig"]["service"]["namespace"], NS);
    assert_eq!(hook["rules"][0]["resources"], json!(["configmaps"]));
    assert!(hook["namespaceSelector"].to_string().contains(NS));
    // The client built from the live configuration's caBundle reaches the server.
    let client = client_from_ca_bundle(hook["clientConfig"]["caBundle"].as_str().unwrap(), &server);
    let path = "/validate/fail";
    loop {
        let r = send(&client, &server, path, &review("u1", "bad", json!({}))).await;
        if r["allowed"] == false {
            assert_eq!(r["uid"], "u1");
            assert!(
                r["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("team label required")
            );
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(5),
            "the policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = created.elapsed();
    eprintln!("policy created through the API decided admission after {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let ok = send(
        &client,
        &server,
        path,
        &review("u2", "good", json!({"team": "a"})),
    )
    .await;
    assert_eq!(ok["allowed"], true);

    // Status: Ready as Kyverno writes it.
    wait_for("Ready status", Duration::from_secs(5), || {
        store
            .get("kyverno.io/v1", "clusterpolicies", None, "require-team")
            .is_some_and(|p| p["status"]["conditions"][0]["status"] == "True")
    })
    .await;

    // An update changes the decision: Audit admits with a warning.
    let mut audit = require_label("require-team", "Audit");
    audit["metadata"]["resourceVersion"] = store
        .get("kyverno.io/v1", "clusterpolicies", None, "require-team")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    store
        .put("kyverno.io/v1", "clusterpolicies", audit)
        .unwrap();
    let start = Instant::now();
    loop {
        let r = send(&client, &server, path, &review("u3", "bad", json!({}))).await;
        if r["allowed"] == true {
            assert!(
                r["warnings"].to_string().contains("team label required"),
                "{r}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the update never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A broken policy reports its error on its own object and leaves the others working.
    let mut broken = require_label("broken", "Enforce");
    broken["spec"]["rules"][0]["match"]["all"] = json!([{"resources": {"kinds": ["Pod"]}}]);
    store
        .create("kyverno.io/v1", "clusterpolicies", broken)
        .unwrap();
    wait_for("the broken policy's status", Duration::from_secs(5), || {
        store
            .get("kyverno.io/v1", "clusterpolicies", None, "broken")
            .is_some_and(|p| p["status"]["conditions"][0]["status"] == "False")
    })
    .await;
    let p = store
        .get("kyverno.io/v1", "clusterpolicies", None, "broken")
        .unwrap();
    assert!(
        p["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.rules[0]"),
        "{p}"
    );
    let r = send(&client, &server, path, &review("u4", "bad", json!({}))).await;
    assert_eq!(r["allowed"], true, "the broken policy must not decide: {r}");

    // Deleting the policies removes their webhook rules.
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "broken")
        .unwrap();
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "require-team")
        .unwrap();
    wait_for("the rules to go", Duration::from_secs(5), || {
        let vwc = store
            .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
            .unwrap_or_default();
        webhook(&vwc, "validate.kybern.svc-fail").is_none()
    })
    .await;
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_exception_applied_through_the_api_takes_effect() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("require-team", "Enforce"),
        )
        .unwrap();
    live_vwc(&c).await;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let path = "/validate/fail";
    let start = Instant::now();
    while send(&client, &server, path, &review("u1", "legacy", json!({}))).await["allowed"] != false
    {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store
        .create(
            "kyverno.io/v2",
            "policyexceptions",
            json!({"apiVersion": "kyverno.io/v2", "kind": "PolicyException",
                "metadata": {"name": "legacy", "namespace": "team"},
                "spec": {"exceptions": [{"policyName": "require-team", "ruleNames": ["check-team"]}],
                    "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "names": ["legacy"]}}]}}}),
        )
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u2", "legacy", json!({}))).await["allowed"] != true
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the exception never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only the excepted resource.
    let other = send(&client, &server, path, &review("u3", "other", json!({}))).await;
    assert_eq!(other["allowed"], false);
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_elect_one_leader_and_fail_over() {
    let c = cluster().await;
    let a = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let b = kybern_cluster::serve::start(options(&c, "b"))
        .await
        .unwrap();
    let (la, lb) = (a.leader.clone(), b.leader.clone());
    wait_for("a leader", Duration::from_secs(20), || {
        *la.borrow() || *lb.borrow()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(*la.borrow() != *lb.borrow(), "exactly one leader");
    let lease = c
        .api
        .store()
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "kybern-admission",
        )
        .unwrap();
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let a_leads = *la.borrow();
    assert_eq!(
        holder,
        if a_leads { "a" } else { "b" },
        "the Lease names the leader"
    );
    // Every receiver of the leader's election must go for its Lease to be released.
    let (leader, follower, follower_rx) = if a_leads {
        drop(la);
        (a, b, lb)
    } else {
        drop(lb);
        (b, a, la)
    };
    // Both serve admission with the same certificate.
    let bundle = leader.ca_bundle.borrow().clone();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bundle);
    for s in [&leader, &follower] {
        ready(&client_from_ca_bundle(&encoded, s), s).await;
    }
    leader.shutdown().await;
    let start = Instant::now();
    wait_for("fail-over", Duration::from_secs(40), || {
        *follower_rx.borrow()
    })
    .await;
    eprintln!("the follower took over after {:?}", start.elapsed());
    // The new leader does leader work: a new policy reaches the webhook configuration.
    c.api
        .store()
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("after-failover", "Enforce"),
        )
        .unwrap();
    let store = c.api.store();
    wait_for(
        "webhook rules from the new leader",
        Duration::from_secs(10),
        || {
            let vwc = store
                .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
                .unwrap_or_default();
            webhook(&vwc, "validate.kybern.svc-fail").is_some()
        },
    )
    .await;
    follower.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_and_expired_watches_recover_without_losing_an_update() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let path = "/validate/fail";
    // A policy created while every watch is down is seen once they come back.
    c.api.faults().drop_watches();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("p1", "Enforce"),
        )
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u1", "x", json!({}))).await["allowed"] != false {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "update lost after a dropped watch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Expired resource versions (410 Gone) make the watcher list again.
    c.api.faults().expire_watches();
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "p1")
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u2", "x", json!({}))).await["allowed"] != true {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "update lost after 410 Gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_labels_and_config_map_filters_come_from_the_api() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    // A policy selecting namespaces by label: only `tier: prod` namespaces are checked.
    let mut p = require_label("prod-only", "Enforce");
    p["spec"]["rules"][0]["match"]["any"][0]["resources"]["namespaceSelector"] =
        json!({"matchLabels": {"tier": "prod"}});
    store.create("kyverno.io/v1", "clusterpolicies", p).unwrap();
    let path = "/validate/fail";
    let start = Instant::now();
    while send(&client, &server, path, &review("u1", "x", json!({}))).await["allowed"] != false {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "namespace labels not read from the API"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The Kyverno-format ConfigMap: a resourceFilters entry admits without evaluation.
    store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "kybern", "namespace": NS},
                "data": {"resourceFilters": "[ConfigMap,team,*]",
                    "webhooks": r#"[{"objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}]"#}}),
        )
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u2", "x", json!({}))).await["allowed"] != true {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "ConfigMap filters not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its `webhooks` selectors reach the webhook configuration; kybern's namespace stays out.
    wait_for(
        "the ConfigMap's objectSelector",
        Duration::from_secs(5),
        || {
            let vwc = store
                .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
                .unwrap_or_default();
            webhook(&vwc, "validate.kybern.svc-fail").is_some_and(|w| {
                w["objectSelector"]["matchExpressions"][0]["key"] == "skip"
                    && w["namespaceSelector"].to_string().contains("\"kybern\"")
            })
        },
    )
    .await;
    server.shutdown().await;
    c.api.shutdown().await;
}
