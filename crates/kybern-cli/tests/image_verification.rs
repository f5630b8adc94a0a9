//! `kybern apply --registry` with a `verifyImages` policy against a real registry: Debian's
//! `docker-registry` on a loopback port, images pushed and signed (cosign's layout, P-256 keys)
//! by the test itself.

use kybern_registry::testing::{Signature, TestRegistry, public_key_pem, signing_key};
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
    let out = Command::new(env!("CARGO_BIN_EXE_kybern"))
        .arg("apply")
        .args(args)
        .args(extra)
        .output()
        .unwrap();
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

    // Without --registry nothing is fetched: the rule is an error that says how to allow it.
    let (_, out) = apply(&[&good, Path::new("-r"), &signed_pod], &[]);
    assert!(out.contains("only with --registry"), "{out}");
    assert!(out.contains("error: 2"), "{out}");
}
