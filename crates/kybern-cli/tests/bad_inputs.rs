//! The CLI loses nothing: inputs that cannot be read are errors that name the file, the document
//! and the line, the documents that can be read are still evaluated, and the run exits non-zero.
//! Each test runs the `kybern` binary on files it writes to a fresh directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

/// A directory of input files, removed when dropped.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("kybern-bad-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fixture { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Pods must carry a `team` label.
const POLICY: &str = "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-team
spec:
  validationFailureAction: Enforce
  rules:
  - name: team-label
    match:
      any:
      - resources:
          kinds: [Pod]
    validate:
      message: a team label is required
      pattern:
        metadata:
          labels:
            team: \"?*\"
";

fn pod(name: &str, team: Option<&str>) -> String {
    let labels = team.map_or_else(String::new, |t| format!("  labels:\n    team: {t}\n"));
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{labels}spec:\n  containers:\n  - name: c\n    image: nginx:1.27\n"
    )
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(BIN);
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn apply(policies: &Path, resources: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"apply", &policies, &"--resource", &resources];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn apply_with_a_missing_resource_path_is_an_error() {
    let fx = Fixture::new("missing-resource");
    let policy = fx.write("policy.yaml", POLICY);
    let missing = fx.path("missing.yaml");
    let out = apply(&policy, &missing, &[]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("missing.yaml: does not exist"), "{err}");
    assert!(!stdout(&out).contains("0 resource"), "{}", stdout(&out));
}

#[test]
fn apply_with_a_missing_policy_exception_or_values_path_is_an_error() {
    let fx = Fixture::new("missing-inputs");
    let policy = fx.write("policy.yaml", POLICY);
    let resource = fx.write("pod.yaml", &pod("good", Some("a")));
    let nowhere = fx.path("nowhere.yaml");
    for extra in [
        vec![&"--exception" as &dyn AsRef<std::ffi::OsStr>, &nowhere],
        vec![&"--values-file", &nowhere],
        vec![&"--userinfo", &nowhere],
        vec![&"--target-resource", &nowhere],
    ] {
        let out = apply(&policy, &resource, &extra);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("nowhere.yaml: does not exist"),
            "{}",
            stderr(&out)
        );
    }
    let out = apply(&nowhere, &resource, &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("nowhere.yaml: does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_broken_resource_document_is_an_error_and_the_others_are_still_evaluated() {
    let fx = Fixture::new("broken-resource");
    let policy = fx.write("policy.yaml", POLICY);
    let text = format!(
        "{}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\n  labels: [team\n---\n{}",
        pod("first", Some("a")),
        pod("last", None)
    );
    let resources = fx.write("pods.yaml", &text);
    let out = apply(&policy, &resources, &[]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    // The second document (1-based) starts on line 12; its error is on line 16 or after.
    assert!(
        err.contains("pods.yaml (document 2): line 16")
            || err.contains("pods.yaml (document 2): line 17"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(text.contains("resource default/Pod/last failed"), "{text}");
    assert!(text.contains("pass: 1, fail: 1"), "{text}");
}

#[test]
fn a_broken_document_fails_the_run_even_when_every_rule_passes() {
    let fx = Fixture::new("broken-only");
    let policy = fx.write("policy.yaml", POLICY);
    let text = format!(
        "{}---\nkind: Pod\nmetadata: {{name: x\n",
        pod("good", Some("a"))
    );
    let resources = fx.write("pods.yaml", &text);
    let out = apply(&policy, &resources, &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("pass: 1, fail: 0"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("pods.yaml (document 2): line"), "{err}");
    assert!(err.contains("could not be read"), "{err}");
}

#[test]
fn a_resource_file_over_32_mib_is_read_document_by_document() {
    let fx = Fixture::new("big-file");
    let policy = fx.write("policy.yaml", POLICY);
    // 40 documents of about 1 MiB each: 40 MiB in one file, every document well under the bound.
    let padding = "x".repeat(1 << 20);
    let mut text = String::new();
    for i in 0..40 {
        let team = if i == 39 { None } else { Some("a") };
        text.push_str(&pod(&format!("p{i}"), team).replace(
            "spec:\n",
            &format!("  annotations:\n    padding: {padding}\nspec:\n"),
        ));
        text.push_str("---\n");
    }
    assert!(text.len() > 32 << 20);
    let resources = fx.write("big.yaml", &text);
    let out = apply(&policy, &resources, &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("to 40 resource(s)"), "{text}");
    assert!(text.contains("pass: 39, fail: 1"), "{text}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn a_document_over_the_bound_is_an_error_naming_it_and_the_others_are_evaluated() {
    let fx = Fixture::new("big-document");
    let policy = fx.write("policy.yaml", POLICY);
    let huge = "y".repeat(33 << 20);
    let text = format!(
        "{}---\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n  blob: {huge}\n---\n{}",
        pod("before", Some("a")),
        pod("after", Some("b"))
    );
    let resources = fx.write("mixed.yaml", &text);
    let out = apply(&policy, &resources, &[]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("mixed.yaml (document 2): line 11: the document is"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("pass: 2, fail: 0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_broken_policy_document_is_an_error_and_the_other_policies_still_apply() {
    let fx = Fixture::new("broken-policy");
    let policies = fx.write(
        "policies.yaml",
        &format!("{POLICY}---\napiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: [broken\n"),
    );
    let resources = fx.write("pod.yaml", &pod("unlabelled", None));
    let out = apply(&policies, &resources, &[]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("policies.yaml (document 2): line"), "{err}");
    let text = stdout(&out);
    assert!(
        text.contains("policy require-team -> resource default/Pod/unlabelled failed"),
        "{text}"
    );
}

#[test]
fn broken_exceptions_and_values_files_are_errors() {
    let fx = Fixture::new("broken-extras");
    let policy = fx.write("policy.yaml", POLICY);
    let resource = fx.write("pod.yaml", &pod("good", Some("a")));
    let exceptions = fx.write(
        "exceptions.yaml",
        "apiVersion: kyverno.io/v2\nkind: PolicyException\nmetadata: {name: x\n",
    );
    let out = apply(&policy, &resource, &[&"--exception", &exceptions]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("exceptions.yaml (document 1): line"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("pass: 1"), "{}", stdout(&out));
    let values = fx.write(
        "values.yaml",
        "apiVersion: cli.kyverno.io/v1alpha1\nkind: Values\npolicies: [\n",
    );
    let out = apply(&policy, &resource, &[&"--values-file", &values]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("values.yaml (document 1): line"),
        "{}",
        stderr(&out)
    );
}

/// A suite whose policy cannot be read fails; a good suite in the same run still passes.
#[test]
fn test_fails_a_suite_whose_files_cannot_be_read() {
    let fx = Fixture::new("test-suites");
    let suite = "\
apiVersion: cli.kyverno.io/v1alpha1
kind: Test
metadata:
  name: t
policies:
- policy.yaml
resources:
- pods.yaml
results:
- policy: require-team
  rule: team-label
  resources: [good]
  kind: Pod
  result: pass
";
    fx.write("good/kyverno-test.yaml", suite);
    fx.write("good/policy.yaml", POLICY);
    fx.write("good/pods.yaml", &pod("good", Some("a")));
    fx.write("bad/kyverno-test.yaml", suite);
    fx.write("bad/policy.yaml", &format!("{POLICY}---\nkind: [broken\n"));
    fx.write("bad/pods.yaml", &pod("good", Some("a")));
    let out = run(&[&"test", &fx.dir]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("Error: "), "{text}");
    assert!(text.contains("policy.yaml (document 2): line"), "{text}");
    assert!(text.contains("Load error"), "{text}");
    assert!(
        text.contains("Test Summary: 1 tests passed and 1 tests failed"),
        "{text}"
    );
}

/// A broken resource document fails the suite too, even when the rows it could check would pass.
#[test]
fn test_fails_a_suite_with_a_broken_resource_document() {
    let fx = Fixture::new("test-broken-resource");
    fx.write(
        "kyverno-test.yaml",
        "\
apiVersion: cli.kyverno.io/v1alpha1
kind: Test
metadata:
  name: t
policies:
- policy.yaml
resources:
- pods.yaml
results:
- policy: require-team
  rule: team-label
  resources: [good]
  kind: Pod
  result: pass
",
    );
    fx.write("policy.yaml", POLICY);
    fx.write(
        "pods.yaml",
        &format!("{}---\nkind: Pod\n  bad: indent\n", pod("good", Some("a"))),
    );
    let out = run(&[&"test", &fx.dir]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("pods.yaml (document 2): line"), "{text}");
    assert!(text.contains("0 tests passed and 1 tests failed"), "{text}");
}

/// `kyverno test` reports a missing resource file and goes on (Kyverno's own suites rely on it):
/// the banner is printed and the results are judged on the resources that exist.
#[test]
fn test_reports_a_missing_resource_file_as_kyverno_does() {
    let fx = Fixture::new("test-missing-resource");
    fx.write(
        "kyverno-test.yaml",
        "\
apiVersion: cli.kyverno.io/v1alpha1
kind: Test
metadata:
  name: t
policies:
- policy.yaml
resources:
- pods.yaml
- absent.yaml
results:
- policy: require-team
  rule: team-label
  resources: [good]
  kind: Pod
  result: pass
",
    );
    fx.write("policy.yaml", POLICY);
    fx.write("pods.yaml", &pod("good", Some("a")));
    let out = run(&[&"test", &fx.dir]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("failed to load resources: "),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("absent.yaml"), "{}", stdout(&out));
}
