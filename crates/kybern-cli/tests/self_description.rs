//! What the binary says about itself: `kybern version`, `kybern docs` (the committed
//! docs/cli.md must be what it prints) and `kybern completion SHELL`.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

fn kybern(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kybern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn the_committed_command_reference_is_what_kybern_docs_prints() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let printed = text(&kybern(&["docs"]));
    if std::env::var_os("KYBERN_REGENERATE").is_some() {
        std::fs::write(&path, &printed).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == printed,
        "docs/cli.md is stale: run `kybern docs > docs/cli.md` (or this test with KYBERN_REGENERATE=1)"
    );
    for verb in [
        "test",
        "apply",
        "jp",
        "serve",
        "version",
        "docs",
        "completion",
        "create",
        "fix",
        "oci",
    ] {
        assert!(
            printed.contains(&format!("### `kybern {verb}`")),
            "{verb} missing"
        );
    }
}

#[test]
fn version_names_the_release_the_commit_and_the_kyverno_it_follows() {
    let lines = text(&kybern(&["version"]));
    assert!(
        lines.starts_with(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{lines}"
    );
    for field in [
        "Commit: ",
        "Build date: ",
        "Kyverno semantics: kyverno/kyverno ",
    ] {
        assert!(lines.contains(field), "{field} missing in {lines}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&text(&kybern(&["version", "-o", "json"]))).unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["commit"].as_str().is_some_and(|c| !c.is_empty()));
}

#[test]
fn completion_scripts_know_every_verb() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = text(&kybern(&["completion", shell]));
        for verb in ["apply", "test", "jp", "serve", "completion"] {
            assert!(script.contains(verb), "{shell} script lacks {verb}");
        }
    }
    // The bash script is valid bash.
    let script = text(&kybern(&["completion", "bash"]));
    let dir = std::env::temp_dir().join(format!("kybern-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kybern.bash");
    std::fs::write(&file, script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn an_unknown_shell_is_refused() {
    let out = Command::new(BIN)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}
