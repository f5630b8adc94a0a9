//! `kubectl` against the fake, in process and through the `kybern-fake-apiserver` binary.
//! kubectl must be installed (Debian's kubernetes-client; .ci/run installs it): these tests fail
//! rather than pass silently without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kybern_testkube::FakeApiServer;

fn require_kubectl() {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "kubectl not found: install Debian's kubernetes-client (.ci/run does)"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kybern-testkube-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs kubectl off the runtime (the server shares it) and returns stdout, failing on error.
async fn kubectl(dir: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "--kubeconfig".to_string(),
        dir.join("kubeconfig").display().to_string(),
        "--cache-dir".to_string(),
        dir.join("cache").display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new("kubectl").args(&all).output())
        .await
        .unwrap()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const MANIFEST: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: nginx}
      - {name: side, image: busybox}
";

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: 1}
";

#[tokio::test]
async fn kubectl_applies_gets_and_deletes() {
    require_kubectl();
    let server = FakeApiServer::start().await.unwrap();
    let dir = scratch("apply");
    server.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    let manifest = dir.join("manifest.yaml");
    let widget = dir.join("widget.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    std::fs::write(&widget, WIDGET).unwrap();
    let path = |p: &Path| p.display().to_string();

    let out = kubectl(&dir, &["apply", "--validate=false", "-f", &path(&manifest)]).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    // The CRD's kind is served at once, as on a real cluster.
    kubectl(&dir, &["apply", "--validate=false", "-f", &path(&widget)]).await;
    let json: serde_json::Value =
        serde_json::from_str(&kubectl(&dir, &["get", "wd", "w1", "-o", "json"]).await).unwrap();
    assert_eq!(json["spec"]["size"], 1);
    assert_eq!(json["kind"], "Widget");

    // A second client-side apply sends a strategic merge patch for the Deployment.
    std::fs::write(&manifest, MANIFEST.replace("busybox", "alpine")).unwrap();
    let out = kubectl(&dir, &["apply", "--validate=false", "-f", &path(&manifest)]).await;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let deploy = server
        .store()
        .get("apps/v1", "deployments", Some("default"), "web")
        .unwrap();
    let containers = &deploy["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[1]["image"], "alpine");
    assert_eq!(containers.as_array().unwrap().len(), 2);
    assert_eq!(deploy["metadata"]["generation"], 2);
    assert!(
        server
            .faults()
            .requests()
            .iter()
            .any(|(m, p)| m == "PATCH" && p.contains("/deployments/web"))
    );

    let out = kubectl(
        &dir,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            &path(&widget),
        ],
    )
    .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let names = kubectl(&dir, &["get", "deploy", "-l", "app=web", "-o", "name"]).await;
    assert_eq!(names.trim(), "deployment.apps/web");

    kubectl(&dir, &["delete", "-f", &path(&widget)]).await;
    assert!(
        server
            .store()
            .get("example.com/v1", "widgets", Some("default"), "w1")
            .is_none()
    );
    kubectl(&dir, &["delete", "-f", &path(&manifest)]).await;
    assert!(
        server
            .store()
            .list("apps/v1", "deployments", None)
            .is_empty()
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_binary_serves_kubectl() {
    require_kubectl();
    let dir = scratch("binary");
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kybern-fake-apiserver"))
        .args(["--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut waited = Duration::ZERO;
    while !kubeconfig.exists() && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let out = kubectl(&dir, &["get", "namespaces", "-o", "name"]).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.contains("namespace/default") && out.contains("namespace/kube-system"),
        "{out}"
    );
}
