//! `kybern lint`: one line per finding with file and line, exit codes 0 (clean), 1 (warnings
//! with --strict) and 2 (errors), `-o json`; and the policy library lints without errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

const BROKEN: &str = "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: broken
spec:
  background: false
  rules:
  - name: names
    match:
      any:
      - resources:
          kinds: [\"*\"]
    validate:
      message: >-
        {{ request.object.metadata.name | }} {{ to_upperr(request.object.kind) }}
      pattern:
        metadata:
          name: \"?*\"
";

const WARNED: &str = "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: warned
spec:
  background: false
  rules:
  - name: team
    match:
      any:
      - resources:
          kinds: [Pod]
    validate:
      message: \"team {{ teams.default }} required\"
      pattern:
        metadata:
          labels:
            team: \"?*\"
";

const CLEAN: &str = "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: clean
spec:
  rules:
  - name: team
    match:
      any:
      - resources:
          kinds: [Pod]
    context:
    - name: teams
      variable:
        value: [a, b]
    validate:
      message: \"{{ request.object.metadata.name }} needs one of {{ teams }}\"
      pattern:
        metadata:
          labels:
            team: \"?*\"
";

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str, files: &[(&str, &str)]) -> Dir {
        let dir = std::env::temp_dir().join(format!("kybern-lint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (f, text) in files {
            std::fs::write(dir.join(f), text).unwrap();
        }
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lint(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("lint");
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn findings_are_one_line_each_with_file_and_line() {
    let dir = Dir::new("lines", &[("broken.yaml", BROKEN), ("warned.yaml", WARNED)]);
    let out = lint(&[&dir.0]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let broken = dir.0.join("broken.yaml");
    let warned = dir.0.join("warned.yaml");
    let want = format!(
        "\
{b}:12: warning[wildcard-kind] spec.rules[0].match.any[0].resources.kinds: `kinds: [\"*\"]` sends every request of every kind to the webhook; name the kinds the rule is about
{b}:15: error[jmespath-syntax] spec.rules[0].validate.message: `{{{{ request.object.metadata.name | }}}}` does not parse: invalid JMESPath expression \"request.object.metadata.name |\": Unexpected nud token -- found Eof at column 30
{b}:15: error[jmespath-function] spec.rules[0].validate.message: unknown function `to_upperr` in `{{{{ to_upperr(request.object.kind) }}}}` (`kybern jp function` lists them)
{w}:14: warning[variable-root] spec.rules[0].validate.message: `teams` in `{{{{ teams.default }}}}` is neither a context entry of the rule nor a variable Kyverno defines: it must come from a values file (`kybern apply -f`/`--set`), otherwise it is null
2 policies checked: 2 error(s), 2 warning(s)
",
        b = broken.display(),
        w = warned.display()
    );
    assert_eq!(stdout(&out), want);
}

#[test]
fn exit_codes_follow_the_worst_finding_and_strict() {
    let clean = Dir::new("clean", &[("clean.yaml", CLEAN)]);
    let warned = Dir::new("warned", &[("warned.yaml", WARNED)]);
    let code = |o: Output| o.status.code();
    assert_eq!(code(lint(&[&clean.0])), Some(0));
    assert_eq!(code(lint(&[&clean.0, &"--strict"])), Some(0));
    assert_eq!(code(lint(&[&warned.0])), Some(0));
    assert_eq!(code(lint(&[&warned.0, &"--strict"])), Some(1));
    let missing = clean.0.join("missing.yaml");
    let out = lint(&[&missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("does not exist"), "{}", stdout(&out));
}

#[test]
fn json_output_carries_every_finding() {
    let dir = Dir::new("json", &[("broken.yaml", BROKEN)]);
    let out = lint(&[&dir.0, &"-o", &"json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        doc["summary"],
        serde_json::json!({"policies": 1, "errors": 2, "warnings": 1})
    );
    let checks: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["wildcard-kind", "jmespath-syntax", "jmespath-function"]
    );
    assert_eq!(doc["findings"][1]["line"], 15);
}

fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KYBERN_CONFORMANCE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
        PathBuf::from,
    );
    dir.is_dir().then_some(dir)
}

/// The policy library loads and its expressions parse; its findings are listed in docs/lint.md.
#[test]
fn the_policy_library_lints_without_errors() {
    let Some(dir) = conformance_dir() else {
        eprintln!(
            "conformance corpus absent (set KYBERN_CONFORMANCE_DIR): library lint not checked"
        );
        return;
    };
    let out = lint(&[&dir.join("policies"), &"-o", &"json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["summary"]["errors"], 0, "{}", stdout(&out));
    assert!(doc["summary"]["policies"].as_u64().unwrap() > 300);
}
