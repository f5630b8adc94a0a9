//! `kybern serve` as kube-apiserver reaches it: a Go `net/http` client (tests/go-admission-client)
//! that trusts only the caBundle, verifies the Service DNS name and negotiates HTTP/2 by ALPN,
//! or HTTP/1.1, and a load run across a serving-certificate rotation.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");
const SERVICE_NAME: &str = "kybern-svc.kybern.svc";

const REQUIRE_APP: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-app
spec:
  validationFailureAction: Enforce
  background: false
  rules:
    - name: check-app
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: "Pods must have the label app"
        pattern:
          metadata:
            labels:
              app: "?*"
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Scratch space under target/, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("go-client-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_go() -> PathBuf {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/lib/go/bin/go")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("go not found: install Debian's golang-go (.ci/run does)"))
}

/// Builds the Go client once per test binary, offline: standard library only.
fn go_client() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let go = find_go();
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-admission-client");
        let out = work.join("admissionclient");
        let started = Instant::now();
        let built = Command::new(&go)
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(repo().join("tests/go-admission-client"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOENV", "off")
            .env("GO111MODULE", "on")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", work.join("cache"))
            .env("GOPATH", work.join("gopath"))
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "go build failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        eprintln!("go client built in {:?}", started.elapsed());
        out
    })
}

struct Server {
    _process: Running,
    port: u16,
    cert_dir: PathBuf,
    ca_pem: Vec<u8>,
    _scratch: Scratch,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Starts `kybern serve` with a generated certificate for the Service name only.
fn start(tag: &str) -> Server {
    let scratch = Scratch::new(&format!("server-{tag}"));
    let policies = scratch.0.join("policies");
    let cert_dir = scratch.0.join("certs");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("require-app.yaml"), REQUIRE_APP).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--policies")
        .arg(&policies)
        .arg("--cert-dir")
        .arg(&cert_dir)
        .args(["--dns-name", SERVICE_NAME, "--poll-interval", "1"])
        .env("KYBERN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let process = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let ca_path = cert_dir.join("ca.crt");
    loop {
        if let Ok(ca_pem) = std::fs::read(&ca_path) {
            let server = Server {
                _process: process,
                port,
                cert_dir,
                ca_pem,
                _scratch: scratch,
            };
            server.wait_ready(deadline);
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not write its CA");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A client with a pool of its own (so a new TLS handshake) that reaches 127.0.0.1 under
    /// the Service name, trusting only the CA.
    fn fresh_client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .resolve(
                SERVICE_NAME,
                std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            )
            .tls_info(true)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    fn wait_ready(&self, deadline: Instant) {
        loop {
            let ready = self
                .fresh_client()
                .get(format!(
                    "https://{SERVICE_NAME}:{}/health/readiness",
                    self.port
                ))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leaf certificate (DER) a new TLS handshake is served.
    fn served_certificate(&self) -> Vec<u8> {
        let res = self
            .fresh_client()
            .get(format!(
                "https://{SERVICE_NAME}:{}/health/liveness",
                self.port
            ))
            .send()
            .unwrap();
        res.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .unwrap()
            .to_vec()
    }

    /// Signs a new serving certificate with the generated CA and swaps it in the way a
    /// renewal does: each file written aside and renamed into place.
    fn rotate_serving_certificate(&self) -> Vec<u8> {
        let dir = &self.cert_dir;
        let ca_pem = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        let ca_key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap())
                .unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![SERVICE_NAME.to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(150);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("tls.key.new"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("tls.crt.new"), cert.pem()).unwrap();
        std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key")).unwrap();
        std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
        cert.der().to_vec()
    }
}

fn review(uid: &str, operation: &str, object: Value, sub_resource: Option<&str>) -> Value {
    let kind = object["kind"].as_str().unwrap().to_string();
    let resource = if kind == "PodExecOptions" {
        "pods".to_string()
    } else {
        format!("{}s", kind.to_lowercase())
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "subResource": sub_resource,
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "requestResource": {"group": "", "version": "v1", "resource": resource},
            "requestSubResource": sub_resource,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": "5a3c", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    })
}

/// The cases file: the first case is also the one the load run repeats.
fn write_cases(dir: &Path) -> PathBuf {
    let exec = json!({
        "apiVersion": "v1", "kind": "PodExecOptions",
        "metadata": {"name": "web-0", "namespace": "shop"},
        "stdin": true, "tty": true, "container": "web", "command": ["sh"]
    });
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    let cases = json!([
        {"name": "compliant pod", "path": "/validate",
         "review": review("7d0c1f3e-0001", "CREATE", pod("web-0", json!({"app": "web"})), None),
         "allowed": true},
        {"name": "pod without app label", "path": "/validate",
         "review": review("7d0c1f3e-0002", "CREATE", pod("web-1", json!({"team": "a"})), None),
         "allowed": false, "messageContains": "Pods must have the label app"},
        {"name": "exec into a pod", "path": "/validate",
         "review": review("7d0c1f3e-0003", "CONNECT", exec, Some("exec")),
         "allowed": true},
        {"name": "namespace", "path": "/validate",
         "review": review("7d0c1f3e-0004", "CREATE", namespace, None),
         "allowed": true},
    ]);
    let path = dir.join("cases.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cases).unwrap()).unwrap();
    path
}

fn client_command(server: &Server, scratch: &Path, proto: &str) -> Command {
    let ca = scratch.join("ca-bundle.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let mut cmd = Command::new(go_client());
    cmd.arg("-url")
        .arg(server.url())
        .arg("-ca")
        .arg(&ca)
        .args(["-server-name", SERVICE_NAME, "-proto", proto])
        .args(["-timeout-seconds", "10"])
        .arg("-cases")
        .arg(write_cases(scratch));
    cmd
}

fn show(what: &str, out: &Output) -> String {
    let text = format!(
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    text
}

fn cases_pass_over(proto: &str) {
    let client = go_client();
    assert!(client.is_file());
    let server = start(proto);
    let scratch = Scratch::new(&format!("{proto}-cases"));
    let out = client_command(&server, &scratch.0, proto).output().unwrap();
    let text = show(&format!("go client, {proto}"), &out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cases=4 mismatches=0"),
        "every case must have run: {text}"
    );
}

#[test]
fn go_client_gets_the_decisions_over_http2() {
    cases_pass_over("h2");
}

#[test]
fn go_client_gets_the_decisions_over_http1() {
    cases_pass_over("http1");
}

/// The value of `key=` in the Go client's summary line.
fn field<'a>(summary: &'a str, key: &str) -> &'a str {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {summary:?}"))
}

#[test]
fn go_client_load_over_http2_survives_a_certificate_rotation() {
    let client = go_client();
    assert!(client.is_file());
    let server = start("load");
    let scratch = Scratch::new("load");
    let before = server.served_certificate();
    let load = client_command(&server, &scratch.0, "h2")
        .args(["-load", "4s", "-rate", "200", "-new-conn-every", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut load = Running(load);

    // Rotate while the load runs, then see a new handshake get the new certificate.
    std::thread::sleep(Duration::from_millis(1200));
    let rotated = server.rotate_serving_certificate();
    assert_ne!(rotated, before);
    let rotated_at = Instant::now();
    loop {
        let served = server.served_certificate();
        if served == rotated {
            break;
        }
        assert_eq!(served, before, "neither the old nor the new certificate");
        assert!(
            rotated_at.elapsed() < Duration::from_secs(5),
            "the rotated certificate was not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "rotated certificate served after {:?}",
        rotated_at.elapsed()
    );

    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read as _;
    load.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    load.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = load.0.wait().unwrap();
    let text = show(
        "go client load, h2",
        &Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        },
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("requests="))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    assert_eq!(field(summary, "failures"), "0", "{text}");
    assert_eq!(field(summary, "proto"), "HTTP/2.0", "{text}");
    let requests: u64 = field(summary, "requests").parse().unwrap();
    assert!(requests >= 400, "about 800 requests were due: {text}");
    // New connections after the rotation saw the new certificate, with no failed request.
    assert_eq!(field(summary, "certs"), "2", "{text}");
    assert!(status.success(), "{text}");
}
