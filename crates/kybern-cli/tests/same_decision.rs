//! `kybern apply` and `kybern serve` must decide alike: the same resources go through both, and
//! the rules that fail, the denial, and the mutation patch must agree.

use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Server {
    child: Child,
    port: u16,
    ca: Vec<u8>,
    _dir: tempdir::Dir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn start(policies: &Path) -> Server {
    let dir = std::env::temp_dir().join(format!("kybern-same-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--ip",
            "127.0.0.1",
        ])
        .arg("--policies")
        .arg(policies)
        .arg("--cert-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ca_path = dir.join("ca.crt");
    while !ca_path.exists() {
        assert!(Instant::now() < deadline, "the server did not write its CA");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let ca = std::fs::read(&ca_path).unwrap();
    let server = Server {
        child,
        port,
        ca,
        _dir: tempdir::Dir(dir),
    };
    let client = server.client();
    loop {
        let ready = client
            .get(format!(
                "https://127.0.0.1:{}/health/readiness",
                server.port
            ))
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Server {
    fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca).unwrap())
            .build()
            .unwrap()
    }

    fn review(&self, path: &str, object: &Value) -> Value {
        let kind = object["kind"].as_str().unwrap();
        let api_version = object["apiVersion"].as_str().unwrap();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "same-1", "operation": "CREATE",
                "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
                "namespace": object["metadata"]["namespace"], "name": object["metadata"]["name"],
                "userInfo": {"username": "someone"}, "object": object,
            }
        });
        self.client()
            .post(format!("https://127.0.0.1:{}{path}", self.port))
            .json(&body)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["response"]
            .clone()
    }
}

/// The failing `policy/rule` pairs `kybern apply` reports for one resource file.
fn apply_failures(policies: &Path, resource: &Path) -> Vec<String> {
    let out = Command::new(BIN)
        .arg("apply")
        .arg(policies)
        .arg("--resource")
        .arg(resource)
        .args(["--policy-report", "--output-format", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut failing = Vec::new();
    for doc in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
        for r in doc.unwrap()["results"].as_array().into_iter().flatten() {
            if matches!(r["result"].as_str(), Some("fail" | "warn")) {
                failing.push(format!(
                    "{}/{}",
                    r["policy"].as_str().unwrap(),
                    r["rule"].as_str().unwrap()
                ));
            }
        }
    }
    failing.sort();
    failing
}

#[test]
fn apply_and_the_webhook_agree_on_the_examples() {
    let policies = repo().join("examples/policies");
    let server = start(&policies);
    let docs = std::fs::read_to_string(repo().join("examples/resources/pods.yaml")).unwrap();
    let tmp = std::env::temp_dir().join(format!("kybern-same-res-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let _cleanup = tempdir::Dir(tmp.clone());
    let mut compared = 0;
    for (i, object) in kybern_engine::yaml::parse_all(&docs)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        let file = tmp.join(format!("r{i}.yaml"));
        std::fs::write(&file, serde_json::to_string(&object).unwrap()).unwrap();

        // Mutation: the webhook's patch applied to the object equals what apply writes.
        let mutated = server.review("/mutate", &object);
        assert_eq!(mutated["allowed"], true, "{mutated}");
        let patched = match mutated["patch"].as_str() {
            Some(p) => {
                let ops: Value = serde_json::from_slice(
                    &base64::engine::general_purpose::STANDARD.decode(p).unwrap(),
                )
                .unwrap();
                kybern_engine::json_patch::apply(&object, &ops).unwrap()
            }
            None => object.clone(),
        };
        let out_file = tmp.join(format!("m{i}.yaml"));
        Command::new(BIN)
            .arg("apply")
            .arg(&policies)
            .arg("--resource")
            .arg(&file)
            .arg("-o")
            .arg(&out_file)
            .output()
            .unwrap();
        let written = std::fs::read_to_string(&out_file).unwrap_or_default();
        let from_apply = kybern_engine::yaml::parse_all(&written)
            .unwrap()
            .into_iter()
            .next()
            .unwrap_or_else(|| object.clone());
        assert_eq!(patched, from_apply, "mutation differs for document {i}");

        // Validation of the mutated object: the same rules fail, and Enforce failures deny.
        let validated = server.review("/validate", &patched);
        let mut from_webhook: Vec<String> = Vec::new();
        for w in validated["warnings"].as_array().into_iter().flatten() {
            // `policy <name>.<rule>: <message>`
            let w = w.as_str().unwrap().trim_start_matches("policy ");
            let (pr, _) = w.split_once(": ").unwrap();
            let (p, r) = pr.split_once('.').unwrap();
            from_webhook.push(format!("{p}/{r}"));
        }
        let message = validated["status"]["message"].as_str().unwrap_or_default();
        let mutated_file = tmp.join(format!("v{i}.yaml"));
        std::fs::write(&mutated_file, serde_json::to_string(&patched).unwrap()).unwrap();
        let expected = apply_failures(&policies, &mutated_file);
        for f in &expected {
            let (p, r) = f.split_once('/').unwrap();
            let in_webhook =
                from_webhook.contains(f) || (message.contains(p) && message.contains(r));
            assert!(
                in_webhook,
                "{f} fails in apply but not in the webhook answer {validated}"
            );
        }
        for f in &from_webhook {
            assert!(
                expected.contains(f),
                "{f} fails in the webhook but not in apply"
            );
        }
        assert_eq!(validated["allowed"], message.is_empty(), "{validated}");
        compared += 1;
    }
    assert!(compared >= 2);
}
