//! `kybern apply --registry` with a `verifyImages` policy against a real registry: Debian's
//! `docker-registry` on a loopback port, images pushed and signed (cosign's layout, P-256 keys)
//! by the test itself.

use kybern_registry::testing::{
    Signature, TestAttestation, TestCa, TestIdentity, TestRegistry, public_key_pem, signing_key,
};
use kybern_registry::{Registry, RegistryConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

fn policy(addr: &str, key_label: &str) -> String {
    let key = public_key_pem(&signing_key(key_label));
    let indented: String = key
        .lines()
        .map(|l| format!("                      {l}\n"))
        .collect();
    format!(
        r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: verify-signature
spec:
  rules:
    - name: check-key
      match:
        any:
          - resources:
              kinds: [Pod]
      verifyImages:
        - imageReferences: ["{addr}/kybern/*"]
          failureAction: Enforce
          attestors:
            - entries:
                - keys:
                    publicKeys: |-
{indented}                    rekor:
                      ignoreTlog: true
                    ctlog:
                      ignoreSCT: true
"#
    )
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  containers:\n    - name: app\n      image: {image}\n"
    )
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn apply(args: &[&Path], extra: &[&str]) -> (i32, String) {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kybern"))
        .arg("apply")
        .args(args)
        .args(extra)
        .output()
        .unwrap();
    // Whole-process time of one apply, registry calls included (printed, not asserted).
    eprintln!("kybern apply {extra:?}: {:?}", started.elapsed());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn apply_with_registry_passes_signed_images_pins_them_and_fails_the_others() {
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let repo = format!("{}/kybern/app", server.addr);
    let signed = registry.push_image(&repo, "signed", "signed").unwrap();
    registry.push_image(&repo, "unsigned", "unsigned").unwrap();
    let key = signing_key("release");
    registry
        .push_signatures(&repo, &signed, &[Signature::by(&key)])
        .unwrap();

    let dir = Dir(std::env::temp_dir().join(format!("kybern-apply-images-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let good = write(&dir.0, "good.yaml", &policy(&server.addr, "release"));
    let wrong = write(&dir.0, "wrong.yaml", &policy(&server.addr, "someone-else"));
    let signed_pod = write(
        &dir.0,
        "signed.yaml",
        &pod("signed", &format!("{repo}:signed")),
    );
    let unsigned_pod = write(
        &dir.0,
        "unsigned.yaml",
        &pod("unsigned", &format!("{repo}:unsigned")),
    );

    // Signed by the policy's key: both passes pass and the printed Pod is pinned.
    let (code, out) = apply(&[&good, Path::new("-r"), &signed_pod], &["--registry"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("image: {repo}:signed@{signed}")),
        "{out}"
    );
    assert!(out.contains("pass: 2, fail: 0"), "{out}");

    // Unsigned: both passes fail with the reason, and apply exits 1.
    let (code, out) = apply(&[&good, Path::new("-r"), &unsigned_pod], &["--registry"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no signatures found"), "{out}");
    assert!(out.contains("pass: 0, fail: 2"), "{out}");

    // Signed, but not by the policy's key.
    let (code, out) = apply(&[&wrong, Path::new("-r"), &signed_pod], &["--registry"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no matching signatures: invalid signature"),
        "{out}"
    );

    // Attestations: a code review signed by the same key, with a condition on its predicate.
    registry
        .push_attestations(
            &repo,
            &signed,
            &[TestAttestation {
                certificate: None,
                key: &key,
                predicate_type: "https://example.com/CodeReview/v1",
                predicate: serde_json::json!({"repo": {"branch": "main"}}),
                subject_digest: None,
            }],
        )
        .unwrap();
    let attested = |branch: &str| {
        let mut text = policy(&server.addr, "release");
        let key = public_key_pem(&signing_key("release"));
        let indented: String = key
            .lines()
            .map(|l| format!("                          {l}\n"))
            .collect();
        text.push_str(&format!(
            "          attestations:\n            - type: https://example.com/CodeReview/v1\n              attestors:\n                - entries:\n                    - keys:\n                        publicKeys: |-\n{indented}                        rekor:\n                          ignoreTlog: true\n              conditions:\n                - all:\n                    - key: \"{{{{ repo.branch }}}}\"\n                      operator: Equals\n                      value: {branch}\n"
        ));
        text
    };
    let main = write(&dir.0, "attested-main.yaml", &attested("main"));
    let (code, out) = apply(&[&main, Path::new("-r"), &signed_pod], &["--registry"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pass: 2, fail: 0"), "{out}");
    let release = write(&dir.0, "attested-release.yaml", &attested("release"));
    let (code, out) = apply(&[&release, Path::new("-r"), &signed_pod], &["--registry"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("attestation checks failed"), "{out}");

    // Without --registry nothing is fetched: the rule is an error that says how to allow it.
    let (_, out) = apply(&[&good, Path::new("-r"), &signed_pod], &[]);
    assert!(out.contains("only with --registry"), "{out}");
    assert!(out.contains("error: 2"), "{out}");
}

/// A CI identity issued by `https://token.actions.example.com`.
fn ci_identity(subject: &str) -> TestIdentity<'_> {
    TestIdentity {
        subject,
        issuer: "https://token.actions.example.com",
        extensions: &[],
        expired: false,
    }
}

/// A ClusterPolicy with one keyless attestor: the roots, the identity, the log waived.
fn keyless_policy(addr: &str, roots: &str, subject: &str) -> String {
    let indented: String = roots
        .lines()
        .map(|l| format!("                      {l}\n"))
        .collect();
    format!(
        r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: verify-keyless
spec:
  rules:
    - name: check-identity
      match:
        any:
          - resources:
              kinds: [Pod]
      verifyImages:
        - imageReferences: ["{addr}/kybern/*"]
          failureAction: Enforce
          attestors:
            - entries:
                - keyless:
                    subject: "{subject}"
                    issuer: https://token.actions.example.com
                    roots: |-
{indented}                    rekor:
                      ignoreTlog: true
                    ctlog:
                      ignoreSCT: true
"#
    )
}

#[test]
fn apply_with_registry_checks_keyless_identities_under_the_policy_roots() {
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let repo = format!("{}/kybern/keyless", server.addr);
    let ca = TestCa::new("ci", true);
    let sign = |tag: &str, subject: &str| {
        ca.push_signed_image(&registry, &repo, tag, &ci_identity(subject), None)
            .unwrap()
    };
    let release = sign(
        "release",
        "https://github.com/example/app/.github/workflows/release.yaml@refs/heads/main",
    );
    sign(
        "fork",
        "https://github.com/mallory/app/.github/workflows/release.yaml@refs/heads/main",
    );

    let dir =
        Dir(std::env::temp_dir().join(format!("kybern-apply-keyless-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let policy = write(
        &dir.0,
        "policy.yaml",
        &keyless_policy(
            &server.addr,
            ca.root_pem(),
            "https://github.com/example/app/.github/workflows/*",
        ),
    );
    let good = write(
        &dir.0,
        "good.yaml",
        &pod("good", &format!("{repo}:release")),
    );
    let (code, out) = apply(&[&policy, Path::new("-r"), &good], &["--registry"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("image: {repo}:release@{release}")),
        "{out}"
    );
    assert!(out.contains("pass: 2, fail: 0"), "{out}");

    let fork = write(&dir.0, "fork.yaml", &pod("fork", &format!("{repo}:fork")));
    let (code, out) = apply(&[&policy, Path::new("-r"), &fork], &["--registry"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("subject mismatch"), "{out}");

    // The same identity under roots the policy does not name.
    let stranger = TestCa::new("stranger", false);
    let other_roots = write(
        &dir.0,
        "other-roots.yaml",
        &keyless_policy(
            &server.addr,
            stranger.root_pem(),
            "https://github.com/example/app/.github/workflows/*",
        ),
    );
    let (code, out) = apply(&[&other_roots, Path::new("-r"), &good], &["--registry"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("certificate verification failed"), "{out}");
}

/// A `kybern serve --registry` process on a loopback port, killed on drop.
struct Serve {
    child: std::process::Child,
    port: u16,
    ca: Vec<u8>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(policies: &Path, certs: &Path) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kybern"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--ip", "127.0.0.1", "--registry"])
            .arg("--policies")
            .arg(policies)
            .arg("--cert-dir")
            .arg(certs)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let ca_path = certs.join("ca.crt");
        while !ca_path.exists() {
            assert!(std::time::Instant::now() < deadline, "no CA written");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let serve = Serve {
            child,
            port,
            ca: std::fs::read(&ca_path).unwrap(),
        };
        loop {
            let ready = serve
                .client()
                .get(format!("https://127.0.0.1:{port}/health/readiness"))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return serve;
            }
            assert!(std::time::Instant::now() < deadline, "server not ready");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca).unwrap())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap()
    }

    fn review(&self, path: &str, image: &str) -> serde_json::Value {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": image}]}});
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "img-1", "operation": "CREATE",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default", "name": "p",
                "userInfo": {"username": "someone"}, "object": pod,
            }
        });
        self.client()
            .post(format!("https://127.0.0.1:{}{path}", self.port))
            .json(&body)
            .send()
            .unwrap()
            .json::<serde_json::Value>()
            .unwrap()["response"]
            .clone()
    }
}

#[test]
fn serve_with_registry_pins_signed_images_and_denies_the_others() {
    use base64::Engine as _;
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let repo = format!("{}/kybern/app", server.addr);
    let signed = registry.push_image(&repo, "signed", "signed").unwrap();
    registry.push_image(&repo, "unsigned", "unsigned").unwrap();
    let key = signing_key("release");
    registry
        .push_signatures(&repo, &signed, &[Signature::by(&key)])
        .unwrap();
    let dir = Dir(std::env::temp_dir().join(format!("kybern-serve-images-{}", std::process::id())));
    let policies = dir.0.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    write(&policies, "verify.yaml", &policy(&server.addr, "release"));
    let serve = Serve::start(&policies, &dir.0.join("certs"));

    // /mutate pins the signed image to its digest.
    let r = serve.review("/mutate", &format!("{repo}:signed"));
    assert_eq!(r["allowed"], true, "{r}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(
            r["patch"]
                .as_str()
                .unwrap_or_else(|| panic!("no patch: {r}")),
        )
        .unwrap();
    let patch: serde_json::Value = serde_json::from_slice(&patch).unwrap();
    let pinned = format!("{repo}:signed@{signed}");
    assert!(
        patch
            .as_array()
            .unwrap()
            .iter()
            .any(|op| op["path"] == "/spec/containers/0/image" && op["value"] == pinned.as_str()),
        "{patch}"
    );
    // /validate admits the pinned image and denies the unsigned one, saying why.
    let r = serve.review("/validate", &pinned);
    assert_eq!(r["allowed"], true, "{r}");
    let r = serve.review("/validate", &format!("{repo}:unsigned"));
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no signatures found"), "{message}");
}

/// The conformance corpus (`$KYBERN_CONFORMANCE_DIR`, default `../shared/conformance`).
fn corpus() -> PathBuf {
    match std::env::var_os("KYBERN_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    }
}

/// Replaces the body of every PEM public key in `text` with `key`'s, keeping the indentation.
fn replace_keys(text: &str, key: &str) -> String {
    let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("-----END PUBLIC KEY-----") {
            let indent = &line[..line.len() - trimmed.len()];
            for b in &body {
                out.push_str(&format!("{indent}{b}\n"));
            }
            inside = false;
        }
        if !inside {
            out.push_str(line);
            out.push('\n');
        }
        if trimmed.starts_with("-----BEGIN PUBLIC KEY-----") {
            inside = true;
        }
    }
    out
}

/// Runs one of Kyverno's signature suites unchanged but for the images (moved to a loopback
/// registry, `signed` signed there by a test key, `unsigned` not) and the policies' keys (that
/// test key): the same expected results must hold under `kybern test --registry`. Then the
/// suite with Kyverno's own keys must fail, since nothing here is signed by them.
fn local_signature_suite(name: &str) {
    let suite = corpus().join("kyverno/cli/test/images").join(name);
    if !suite.is_dir() {
        eprintln!(
            "conformance corpus not found at {}: local suite {name} SKIPPED",
            suite.display()
        );
        return;
    }
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let repo = format!("{}/kyverno/test-verify-image", server.addr);
    // Different contents, so that `unsigned` does not share the signed digest.
    let signed = registry.push_image(&repo, "signed", "signed").unwrap();
    registry.push_image(&repo, "unsigned", "unsigned").unwrap();
    let key = signing_key("kyverno-suite");
    registry
        .push_signatures(&repo, &signed, &[Signature::by(&key)])
        .unwrap();

    let dir =
        Dir(std::env::temp_dir().join(format!("kybern-local-suite-{name}-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut policy_files = Vec::new();
    for entry in std::fs::read_dir(&suite).unwrap() {
        let path = entry.unwrap().path();
        let original = std::fs::read_to_string(&path).unwrap();
        let moved = original.replace("ghcr.io/kyverno/test-verify-image", &repo);
        let text = replace_keys(&moved, &public_key_pem(&key));
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if text != moved {
            policy_files.push((file.clone(), moved));
        }
        write(&dir.0, &file, &text);
    }
    assert!(!policy_files.is_empty(), "{name}: no public keys replaced");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_kybern"))
            .arg("test")
            .arg(&dir.0)
            .arg("--registry")
            .output()
            .unwrap()
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("passed and 0 tests failed"), "{name}: {text}");

    for (file, with_kyverno_keys) in policy_files {
        write(&dir.0, &file, &with_kyverno_keys);
    }
    assert!(
        !run().status.success(),
        "{name}: passed with Kyverno's keys"
    );
}

/// Kyverno's `images/signatures` suite against a local registry.
#[test]
fn kyverno_signature_suite_passes_against_a_local_registry() {
    local_signature_suite("signatures");
}

/// Kyverno's `images/verify-signature` suite against a local registry: Pods, and DataVolumes
/// whose image an `imageExtractors` entry reads from a URL (`docker://` trimmed by JMESPath).
#[test]
fn kyverno_verify_signature_suite_passes_against_a_local_registry() {
    local_signature_suite("verify-signature");
}

/// An ImageValidatingPolicy whose validations call the registry functions with one cosign key
/// attestor; `tlog` false leaves out `ctlog.insecureIgnoreTlog`.
fn image_validating_policy(addr: &str, key_label: &str, branch: &str, tlog: bool) -> String {
    let key = public_key_pem(&signing_key(key_label));
    let indented: String = key.lines().map(|l| format!("            {l}\n")).collect();
    let ctlog = if tlog {
        "        ctlog:\n          insecureIgnoreTlog: true\n          insecureIgnoreSCT: true\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: policies.kyverno.io/v1beta1
kind: ImageValidatingPolicy
metadata:
  name: signed-and-reviewed
spec:
  validationActions: [Deny]
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [pods]
  matchImageReferences:
    - glob: "{addr}/kybern/*"
  attestors:
    - name: release
      cosign:
        key:
          data: |
{indented}{ctlog}  attestations:
    - name: review
      intoto:
        type: https://example.com/CodeReview/v1
  validations:
    - expression: >-
        images.containers.map(image, verifyImageSignatures(image, [attestors.release])).all(e, e > 0)
      message: not signed by the release key
    - expression: >-
        images.containers.all(image,
          verifyAttestationSignatures(image, attestations.review, [attestors.release]) > 0 &&
          extractPayload(image, attestations.review).predicate.repo.branch == '{branch}')
      message: not reviewed on {branch}
"#
    )
}

#[test]
fn image_validating_policies_verify_signatures_and_attestations_in_a_registry() {
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let repo = format!("{}/kybern/ivpol", server.addr);
    let signed = registry
        .push_image(&repo, "signed", "ivpol-signed")
        .unwrap();
    registry
        .push_image(&repo, "unsigned", "ivpol-unsigned")
        .unwrap();
    let key = signing_key("release");
    registry
        .push_signatures(&repo, &signed, &[Signature::by(&key)])
        .unwrap();
    registry
        .push_attestations(
            &repo,
            &signed,
            &[TestAttestation {
                certificate: None,
                key: &key,
                predicate_type: "https://example.com/CodeReview/v1",
                predicate: serde_json::json!({"repo": {"branch": "main"}}),
                subject_digest: None,
            }],
        )
        .unwrap();
    let dir = Dir(std::env::temp_dir().join(format!("kybern-ivpol-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let signed_pod = write(
        &dir.0,
        "signed.yaml",
        &pod("signed", &format!("{repo}:signed")),
    );
    let unsigned_pod = write(
        &dir.0,
        "unsigned.yaml",
        &pod("unsigned", &format!("{repo}:unsigned")),
    );
    let run = |file: &str, key_label: &str, branch: &str, tlog: bool, pod: &Path| {
        let policy = write(
            &dir.0,
            file,
            &image_validating_policy(&server.addr, key_label, branch, tlog),
        );
        apply(&[&policy, Path::new("-r"), pod], &["--registry"])
    };

    // Signed and reviewed on main by the release key.
    let (code, out) = run("good.yaml", "release", "main", true, &signed_pod);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pass: 1, fail: 0"), "{out}");
    // The payload is read, and its branch is not the one asked for.
    let (code, out) = run("branch.yaml", "release", "release", true, &signed_pod);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not reviewed on release"), "{out}");
    // No signature at all, and a signature by another key: no attestor verifies.
    let (code, out) = run("good.yaml", "release", "main", true, &unsigned_pod);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not signed by the release key"), "{out}");
    let (code, out) = run("wrong.yaml", "someone-else", "main", true, &signed_pod);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not signed by the release key"), "{out}");
    // Verifying through the Rekor log is not done: an error naming the setting, never a pass.
    let (code, out) = run("tlog.yaml", "release", "main", false, &signed_pod);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("insecureIgnoreTlog"), "{out}");
    assert!(out.contains("error: 1"), "{out}");
}

/// An ImageValidatingPolicy with a keyless attestor: the roots and two identities (either may
/// match), the log and timestamps waived.
fn keyless_image_policy(addr: &str, roots: &str, subjects: [&str; 2]) -> String {
    let indented: String = roots
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect();
    let [first, second] = subjects;
    format!(
        r#"apiVersion: policies.kyverno.io/v1beta1
kind: ImageValidatingPolicy
metadata:
  name: keyless-identity
spec:
  validationActions: [Deny]
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [pods]
  matchImageReferences:
    - glob: "{addr}/kybern/*"
  attestors:
    - name: ci
      cosign:
        keyless:
          identities:
            - subject: "{first}"
              issuer: https://token.actions.example.com
            - subjectRegExp: "{second}"
              issuerRegExp: "^https://token\\.actions\\."
          roots: |
{indented}        ctlog:
          insecureIgnoreTlog: true
          insecureIgnoreSCT: true
  validations:
    - expression: >-
        images.containers.map(image, verifyImageSignatures(image, [attestors.ci])).all(e, e > 0)
      message: not signed by the CI identity
"#
    )
}

#[test]
fn image_validating_policies_verify_keyless_identities_under_their_roots() {
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    let repo = format!("{}/kybern/ivpol-keyless", server.addr);
    let ca = TestCa::new("ivpol", false);
    for (tag, subject) in [
        ("main", "ci@example.com"),
        ("nightly", "nightly-bot@example.com"),
        ("laptop", "dev@example.org"),
    ] {
        ca.push_signed_image(&registry, &repo, tag, &ci_identity(subject), None)
            .unwrap();
    }
    let dir =
        Dir(std::env::temp_dir().join(format!("kybern-ivpol-keyless-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let policy = write(
        &dir.0,
        "policy.yaml",
        &keyless_image_policy(
            &server.addr,
            ca.root_pem(),
            ["ci@example.com", "^[a-z-]+-bot@example\\\\.com$"],
        ),
    );
    for (tag, passes) in [("main", true), ("nightly", true), ("laptop", false)] {
        let pod = write(
            &dir.0,
            &format!("{tag}.yaml"),
            &pod(tag, &format!("{repo}:{tag}")),
        );
        let (code, out) = apply(&[&policy, Path::new("-r"), &pod], &["--registry"]);
        if passes {
            assert_eq!(code, 0, "{tag}: {out}");
            assert!(out.contains("pass: 1, fail: 0"), "{tag}: {out}");
        } else {
            assert_eq!(code, 1, "{tag}: {out}");
            assert!(
                out.contains("not signed by the CI identity"),
                "{tag}: {out}"
            );
        }
    }
}
