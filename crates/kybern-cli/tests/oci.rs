//! `kybern oci push` / `kybern oci pull` against Debian's `docker-registry` on loopback (started
//! by the test; skipped with a message when it is not installed, required under CI).
//!
//! The layout checked is the one `kyverno oci` writes and reads, from Kyverno's
//! cmd/cli/kubectl-kyverno/commands/oci/internal/annotations.go (PolicyConfigMediaType,
//! PolicyLayerMediaType, io.kyverno.image.kind/name/apiVersion) and push/options.go (an
//! `empty.Image` with `types.OCIManifestSchema1`, one layer per policy): an OCI image manifest,
//! config `application/vnd.cncf.kyverno.config.v1+json`, layers
//! `application/vnd.cncf.kyverno.policy.layer.v1+yaml`.

use kybern_registry::testing::TestRegistry;
use kybern_registry::{Registry, RegistryConfig, reference};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

fn kybern(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        // No credentials of the machine running the tests.
        .env("DOCKER_CONFIG", dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh folder, removed with everything in it when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("kybern-oci-{name}-"))
        .tempdir()
        .unwrap()
}

const POLICIES: &str = r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-labels
  annotations:
    policies.kyverno.io/title: Require Labels
spec:
  background: true
  rules:
  - name: check-for-labels
    match:
      any:
      - resources:
          kinds: [Pod]
    validate:
      failureAction: Enforce
      message: "label `app.kubernetes.io/name` is required"
      pattern:
        metadata:
          labels:
            app.kubernetes.io/name: "?*"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: not-a-policy
data:
  a: b
"#;

const NAMESPACED: &str = r#"apiVersion: kyverno.io/v1
kind: Policy
metadata:
  name: add-team
  namespace: dev
spec:
  rules:
  - name: add-team
    match:
      any:
      - resources:
          kinds: [ConfigMap]
    mutate:
      patchStrategicMerge:
        metadata:
          labels:
            team: dev
"#;

fn registry_client() -> Registry {
    Registry::new(RegistryConfig::default()).unwrap()
}

#[test]
fn pushed_policies_carry_kyvernos_media_types_and_pull_back_identical() {
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let tmp = temp_dir("roundtrip");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/cluster.yaml"), POLICIES).unwrap();
    std::fs::write(dir.join("policies/namespaced.yaml"), NAMESPACED).unwrap();
    let image = format!("{}/kyverno/policies:v1", server.addr);

    let push = kybern(&["oci", "push", "policies", "-i", &image], dir);
    assert!(push.status.success(), "{}", text(&push.stderr));
    let pushed = text(&push.stdout);
    let pushed_digest = pushed.trim().rsplit('@').next().unwrap().to_string();
    assert!(pushed.starts_with(&format!("{image}@sha256:")), "{pushed}");

    let client = registry_client();
    let r = reference::parse(&image).unwrap();
    let (bytes, digest) = client.manifest(&r).unwrap();
    assert_eq!(digest, pushed_digest);
    let manifest: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.kyverno.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "one layer per policy, the ConfigMap left out"
    );
    let mut seen = Vec::new();
    for l in layers {
        assert_eq!(
            l["mediaType"],
            "application/vnd.cncf.kyverno.policy.layer.v1+yaml"
        );
        let a = &l["annotations"];
        assert_eq!(a["io.kyverno.image.apiVersion"], "kyverno.io/v1");
        seen.push(format!(
            "{}/{}",
            a["io.kyverno.image.kind"].as_str().unwrap(),
            a["io.kyverno.image.name"].as_str().unwrap()
        ));
        // The layer is the policy's YAML.
        let blob = client.blob(&r, l["digest"].as_str().unwrap()).unwrap();
        let docs = kybern_engine::yaml::parse_all(&text(&blob)).unwrap();
        assert_eq!(docs.len(), 1);
    }
    seen.sort();
    assert_eq!(seen, ["ClusterPolicy/require-labels", "Policy/add-team"]);

    let pull = kybern(&["oci", "pull", "pulled", "-i", &image], dir);
    assert!(pull.status.success(), "{}", text(&pull.stderr));
    let originals = [
        ("require-labels.yaml", POLICIES),
        ("add-team.yaml", NAMESPACED),
    ];
    for (file, source) in originals {
        let original = kybern_engine::yaml::parse_all(source).unwrap().remove(0);
        let pulled_text = std::fs::read_to_string(dir.join("pulled").join(file)).unwrap();
        let pulled = kybern_engine::yaml::parse_all(&pulled_text).unwrap();
        assert_eq!(pulled, vec![original], "{file}");
    }
    assert_eq!(std::fs::read_dir(dir.join("pulled")).unwrap().count(), 2);

    // The pulled policies work: the cluster policy still denies an unlabelled Pod.
    std::fs::write(
        dir.join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: nginx\n",
    )
    .unwrap();
    let apply = kybern(
        &[
            "apply",
            "pulled/require-labels.yaml",
            "--resource",
            "pod.yaml",
        ],
        dir,
    );
    assert!(
        text(&apply.stdout).contains("fail: 1"),
        "{}",
        text(&apply.stdout)
    );

    // Pushing the same policies again gives the same digest.
    let again = kybern(&["oci", "push", "policies", "-i", &image], dir);
    assert_eq!(text(&again.stdout), pushed);
}

#[test]
fn pull_refuses_an_image_without_policy_layers_and_push_needs_policies() {
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let tmp = temp_dir("errors");
    let dir = tmp.path();
    let client = registry_client();
    let repo = format!("{}/plain/image", server.addr);
    client.push_image(&repo, "v1", "hello").unwrap();
    let pull = kybern(&["oci", "pull", "out", "-i", &format!("{repo}:v1")], dir);
    assert!(!pull.status.success());
    assert!(
        text(&pull.stderr).contains("holds no Kyverno policy layer"),
        "{}",
        text(&pull.stderr)
    );
    let missing = kybern(&["oci", "pull", "out", "-i", &format!("{repo}:nope")], dir);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("not found"),
        "{}",
        text(&missing.stderr)
    );

    // Kyverno's later bundle format is named, not mistaken for an empty artifact.
    let bundle = reference::parse(&format!("{repo}:bundle")).unwrap();
    let layer = kybern_registry::Layer {
        data: b"not read".to_vec(),
        media_type: "application/vnd.cncf.kyverno.bundle.content.v1.tar+gzip".into(),
        annotations: Default::default(),
    };
    client
        .push_artifact(
            &bundle,
            &[layer],
            b"{}".to_vec(),
            "application/vnd.cncf.kyverno.bundle.config.v1+json",
        )
        .unwrap();
    let pull = kybern(
        &["oci", "pull", "out", "-i", &format!("{repo}:bundle")],
        dir,
    );
    assert!(!pull.status.success());
    assert!(
        text(&pull.stderr).contains("bundle format"),
        "{}",
        text(&pull.stderr)
    );

    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let push = kybern(
        &["oci", "push", "cm.yaml", "-i", &format!("{repo}:cm")],
        dir,
    );
    assert!(!push.status.success());
    assert!(text(&push.stderr).contains("no ClusterPolicy or Policy found in cm.yaml"));
    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: b\nspec:\n  rules:\n  - name: r\n    match: {any: [{resources: {kinds: [Pod]}}]}\n    validate: {pattern: {a: 1}, bogus: 2}\n",
    )
    .unwrap();
    let push = kybern(
        &["oci", "push", "broken.yaml", "-i", &format!("{repo}:b")],
        dir,
    );
    assert!(!push.status.success(), "an invalid policy is not published");
    assert!(
        text(&push.stderr).contains("broken.yaml (document 1)"),
        "{}",
        text(&push.stderr)
    );
}

/// `kybern:registry-secret` (bcrypt, as distribution's htpasswd auth wants it).
const HTPASSWD: &str = "kybern:$2b$05$wRV/6yywZ7rjs9PFLEIkaOEbXjGByukrWYOZ.Oh/WTlwsyLMvVEfq";

#[test]
fn a_private_registry_is_used_with_the_docker_config_credentials() {
    let Some(server) = TestRegistry::start_with_basic_auth(HTPASSWD) else {
        return;
    };
    let tmp = temp_dir("private");
    let dir = tmp.path();
    std::fs::write(dir.join("policy.yaml"), NAMESPACED).unwrap();
    let image = format!("{}/private/policies:v1", server.addr);
    // No docker config in `dir` yet: the registry refuses.
    let refused = kybern(&["oci", "push", "policy.yaml", "-i", &image], dir);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Error: push"),
        "{}",
        text(&refused.stderr)
    );
    // The docker CLI's form: base64 of user:password under the registry's host:port.
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("kybern:registry-secret")
    };
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap();
    let push = kybern(&["oci", "push", "policy.yaml", "-i", &image], dir);
    assert!(push.status.success(), "{}", text(&push.stderr));
    let pull = kybern(&["oci", "pull", "out", "-i", &image], dir);
    assert!(pull.status.success(), "{}", text(&pull.stderr));
    assert!(dir.join("out/add-team.yaml").is_file());
}
