//! The cluster verbs as a user runs them: `kybern crds` matches the chart's committed copy, and
//! `kybern serve --cluster --kubeconfig K` against an API server (the in-repo fake) becomes
//! ready, writes its Secrets and webhook configurations, and decides with a policy applied by
//! `kubectl`; `kybern webhooks delete` removes the configurations.

use base64::Engine as _;
use kybern_testkube::FakeApiServer;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");
const SERVICE_DNS: &str = "kybern-svc.kybern.svc";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn crds_in_the_chart_are_what_kybern_crds_prints() {
    let out = Command::new(BIN).arg("crds").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let path = repo().join("charts/kybern/crds/crds.yaml");
    if std::env::var_os("KYBERN_REGENERATE").is_some() {
        std::fs::write(&path, &printed).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == printed,
        "charts/kybern/crds/crds.yaml is stale: run `kybern crds > charts/kybern/crds/crds.yaml` (or this test with KYBERN_REGENERATE=1)"
    );
}

fn kubectl() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("kubectl not found: install Debian's kubernetes-client (.ci/run does)")
    })
}

fn kubectl_apply(kubeconfig: &Path, yaml: &str) {
    let mut child = Command::new(kubectl())
        .args(["--kubeconfig"])
        .arg(kubeconfig)
        .args(["apply", "--validate=false", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const POLICY: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-team
spec:
  validationFailureAction: Enforce
  background: false
  rules:
    - name: check-team
      match:
        any:
          - resources:
              kinds: [ConfigMap]
      validate:
        message: "ConfigMaps need a team label"
        pattern:
          metadata:
            labels:
              team: "?*"
"#;

fn review(uid: &str) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "name": "c", "namespace": "default", "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}}})
}

#[test]
fn serve_cluster_writes_its_objects_and_decides_with_a_policy_applied_by_kubectl() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = runtime.block_on(FakeApiServer::start()).unwrap();
    let dir = repo().join(format!("target/tmp/cluster-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();

    // As after `helm install`: the namespace and the CRDs.
    kubectl_apply(
        &kubeconfig,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kybern\n",
    );
    let crds = Command::new(BIN).arg("crds").output().unwrap();
    kubectl_apply(&kubeconfig, &String::from_utf8(crds.stdout).unwrap());

    let port = free_port();
    let _server = Server(
        Command::new(BIN)
            .args(["serve", "--cluster", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--namespace", "kybern", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cert-dir")
            .arg(dir.join("certs"))
            .args(["--pod-name", "kybern-0", "--poll-interval", "1"])
            .env("KYBERN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Secrets and the webhook configuration appear; the caBundle is what a client trusts.
    let store = api.store();
    let start = Instant::now();
    let vwc = loop {
        if let Some(v) = store.get(
            "admissionregistration.k8s.io/v1",
            "validatingwebhookconfigurations",
            None,
            "kybern-resource-validating-webhook-cfg",
        ) {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no webhook configuration written"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        store
            .get(
                "v1",
                "secrets",
                Some("kybern"),
                "kybern-svc.kybern.svc.kybern-tls-pair"
            )
            .is_some()
    );
    assert!(
        store
            .get(
                "coordination.k8s.io/v1",
                "leases",
                Some("kybern"),
                "kybern-admission"
            )
            .is_some()
    );
    let ca_secret = store
        .get(
            "v1",
            "secrets",
            Some("kybern"),
            "kybern-svc.kybern.svc.kybern-tls-ca",
        )
        .unwrap();
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca_secret["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    let _ = vwc;
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .resolve(SERVICE_DNS, ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("https://{SERVICE_DNS}:{port}");
    let start = Instant::now();
    loop {
        if client
            .get(format!("{base}/health/readiness"))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A policy applied with kubectl decides within a second or so.
    let applied = Instant::now();
    kubectl_apply(&kubeconfig, POLICY);
    loop {
        let r: Value = client
            .post(format!("{base}/validate/fail"))
            .json(&review("u1"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if r["response"]["allowed"] == false {
            assert!(
                r["response"]["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("ConfigMaps need a team label")
            );
            break;
        }
        assert!(
            applied.elapsed() < Duration::from_secs(5),
            "the policy never took effect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("kubectl apply to the first denial: {:?}", applied.elapsed());
    // kubectl sees the policy Ready, as Kyverno users check it.
    let start = Instant::now();
    loop {
        let out = Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "clusterpolicy", "require-team", "-o", "json"])
            .output()
            .unwrap();
        let p: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if p["status"]["conditions"][0]["status"] == "True" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "status never Ready: {p}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // What the server asked of the API, for the chart check: its RBAC must allow each request.
    let served: Vec<Value> = api
        .faults()
        .requests_with_agents()
        .into_iter()
        .filter(|(_, _, agent)| !agent.starts_with("kubectl"))
        .map(|(method, path, _)| json!([method, path]))
        .collect();
    assert!(served.iter().any(|r| r[0] == "PATCH"), "no write recorded");
    std::fs::write(
        repo().join("target/cluster-requests.json"),
        serde_json::to_string_pretty(&served).unwrap(),
    )
    .unwrap();

    // Uninstall as the chart's hooks do: scale to zero, then delete the configurations.
    drop(_server);
    let out = Command::new(BIN)
        .args(["webhooks", "delete", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        store
            .list(
                "admissionregistration.k8s.io/v1",
                "validatingwebhookconfigurations",
                None
            )
            .is_empty()
    );
    runtime.block_on(api.shutdown());
}
