//! `kybern create`: golden outputs of every subcommand (fixtures in tests/create/, rewritten
//! with KYBERN_REGENERATE=1), flag errors, and the skeletons used as they are: a created test
//! file with a created values file passes `kybern test`, and a created exception turns a failing
//! `kybern apply` into a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

fn kybern(args: &[&str], dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/create")
        .join(name)
}

/// A fresh folder, removed with everything in it when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("kybern-create-{name}-"))
        .tempdir()
        .unwrap()
}

const GOLDEN: &[(&str, &[&str])] = &[
    (
        "exception-any-all.yaml",
        &[
            "create",
            "exception",
            "test",
            "--policy-rules",
            "policy,rule-1,rule-2",
            "--policy-rules",
            "other,rule",
            "--any",
            "kind=Pod,kind=Deployment,name=test-*",
            "--all",
            "kind=Pod,name=test-*,namespace=test,operation=UPDATE",
        ],
    ),
    (
        "exception-namespace-no-background.yaml",
        &[
            "create",
            "exception",
            "skip-dev",
            "--namespace",
            "dev",
            "--background=false",
            "--policy-rules",
            "require-labels,check-for-labels",
            "--any",
            "kind=Pod,namespace=dev",
        ],
    ),
    (
        "test-results.yaml",
        &[
            "create",
            "test",
            "-n",
            "my-test",
            "-p",
            "policy.yaml",
            "-r",
            "resource.yaml,more.yaml",
            "-f",
            "values.yaml",
            "--pass",
            "policy,rule,good,default,Pod",
            "--fail",
            "policy,rule,bad,,Pod",
            "--skip",
            "policy,mutate,pod,default,Pod,patched.yaml",
        ],
    ),
    ("test-empty.yaml", &["create", "test"]),
    (
        "values.yaml",
        &[
            "create",
            "values",
            "-g",
            "request.mode=dev,replicas=3",
            "-n",
            "prod,env=prod,tier=1",
            "--rule",
            "policy,rule,env=demo",
            "--resource",
            "policy,resource,env=demo",
            "--rule",
            "other,rule,enabled=true",
        ],
    ),
    ("values-empty.yaml", &["create", "values"]),
    (
        "user-info.yaml",
        &[
            "create",
            "user-info",
            "-u",
            "molybdenum@somecorp.com",
            "-g",
            "basic-user",
            "-c",
            "admin",
            "-r",
            "dev/reader,dev/writer",
        ],
    ),
    (
        "metrics-config.yaml",
        &[
            "create",
            "metrics-config",
            "-i",
            "ns-included-1",
            "-i",
            "ns-included-2",
            "-e",
            "ns-excluded",
        ],
    ),
    ("metrics-config-empty.yaml", &["create", "metrics-config"]),
    (
        "cluster-role.yaml",
        &[
            "create",
            "cluster-role",
            "crontabs",
            "--api-groups",
            "stable.example.com",
            "--resources",
            "crontabs",
            "--verbs",
            "get,list",
            "--controllers",
            "background-controller,reports-controller",
        ],
    ),
    (
        "role-all-verbs.yaml",
        &[
            "create",
            "role",
            "pods",
            "-g",
            "core",
            "--resources",
            "pods",
            "--verbs",
            "all",
        ],
    ),
];

#[test]
fn every_subcommand_writes_its_golden_skeleton() {
    let regenerate = std::env::var_os("KYBERN_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (name, args) in GOLDEN {
        let out = kybern(args, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = stdout(&out);
        // Every skeleton is one YAML document.
        let docs = kybern_engine::yaml::parse_all(&got).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(docs.len(), 1, "{name}");
        if regenerate {
            std::fs::write(fixture(name), &got).unwrap();
        }
        if std::fs::read_to_string(fixture(name)).unwrap_or_default() != got {
            stale.push(format!("{name}:\n{got}"));
        }
    }
    assert!(
        stale.is_empty(),
        "outputs differ from tests/create/ (KYBERN_REGENERATE=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn output_flag_writes_the_file_and_nothing_to_stdout() {
    let tmp = temp_dir("output");
    let dir = tmp.path();
    let path = dir.join("ui.yaml");
    let out = kybern(
        &[
            "create",
            "user-info",
            "-u",
            "me",
            "-o",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("username: me\n"), "{written}");
    let bad = kybern(
        &["create", "user-info", "-o", "/nonexistent-dir/x.yaml"],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot write /nonexistent-dir/x.yaml"));
}

#[test]
fn malformed_flag_values_are_errors_naming_the_flag() {
    for (args, wanted) in [
        (
            &[
                "create",
                "exception",
                "x",
                "--policy-rules",
                "only-policy",
                "--any",
                "kind=Pod",
            ][..],
            "--policy-rules",
        ),
        (
            &[
                "create",
                "exception",
                "x",
                "--policy-rules",
                "p,r",
                "--any",
                "color=red",
            ][..],
            "unknown key \"color\"",
        ),
        (
            &[
                "create",
                "exception",
                "x",
                "--policy-rules",
                "p,r",
                "--all",
                "operation=PATCH",
            ][..],
            "operation must be",
        ),
        (
            &["create", "exception", "x", "--policy-rules", "p,r"][..],
            "--any or --all",
        ),
        (
            &[
                "create",
                "exception",
                "--policy-rules",
                "p,r",
                "--any",
                "kind=Pod",
            ][..],
            "<NAME>",
        ),
        (&["create", "test", "--pass", "p,r,res"][..], "--pass"),
        (&["create", "values", "-g", "novalue"][..], "--global"),
        (&["create", "values", "--rule", "p"][..], "--rule"),
        (&["create", "values", "-n", "prod"][..], "--ns-selector"),
        (
            &["create", "cluster-role", "x", "-g", "g", "--resources", "r"][..],
            "--verbs",
        ),
        (
            &[
                "create",
                "cluster-role",
                "x",
                "-g",
                "g",
                "--resources",
                "r",
                "--verbs",
                "get",
                "--controllers",
                "",
            ][..],
            "--controllers",
        ),
    ] {
        let out = kybern(args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

const POLICY: &str = r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-team
spec:
  background: false
  rules:
  - name: check-team
    match:
      any:
      - resources:
          kinds:
          - Pod
    validate:
      failureAction: Enforce
      message: "the team label must be {{ allowed }}"
      pattern:
        metadata:
          labels:
            team: "{{ allowed }}"
"#;

fn pod(name: &str, team: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    team: {team}\nspec:\n  containers:\n  - name: c\n    image: nginx\n"
    )
}

fn suite_dir(name: &str) -> tempfile::TempDir {
    let tmp = temp_dir(name);
    let dir = tmp.path();
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    let resources = format!("{}---\n{}", pod("good", "team-a"), pod("bad", "team-b"));
    std::fs::write(dir.join("resources.yaml"), resources).unwrap();
    tmp
}

#[test]
fn a_created_test_with_created_values_passes_kybern_test() {
    let tmp = suite_dir("suite");
    let dir = tmp.path();
    let values = kybern(
        &[
            "create",
            "values",
            "--rule",
            "require-team,check-team,allowed=team-a",
            "-o",
            "values.yaml",
        ],
        Some(dir),
    );
    assert!(
        values.status.success(),
        "{}",
        String::from_utf8_lossy(&values.stderr)
    );
    let test = kybern(
        &[
            "create",
            "test",
            "-n",
            "team",
            "-p",
            "policy.yaml",
            "-r",
            "resources.yaml",
            "-f",
            "values.yaml",
            "--pass",
            "require-team,check-team,good,default,Pod",
            "--fail",
            "require-team,check-team,bad,default,Pod",
            "-o",
            "kyverno-test.yaml",
        ],
        Some(dir),
    );
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let run = kybern(&["test", dir.to_str().unwrap()], None);
    let text = stdout(&run);
    assert!(
        run.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        text.contains("Test Summary: 2 tests passed and 0 tests failed"),
        "{text}"
    );

    // The expectations are checked, not echoed: a wrong one fails.
    let wrong = kybern(
        &[
            "create",
            "test",
            "-p",
            "policy.yaml",
            "-r",
            "resources.yaml",
            "-f",
            "values.yaml",
            "--pass",
            "require-team,check-team,bad,default,Pod",
            "-o",
            "kyverno-test.yaml",
        ],
        Some(dir),
    );
    assert!(wrong.status.success());
    let run = kybern(&["test", dir.to_str().unwrap()], None);
    assert!(!run.status.success(), "{}", stdout(&run));
}

#[test]
fn a_created_exception_exempts_the_resources_it_matches_in_kybern_apply() {
    let tmp = suite_dir("exception");
    let dir = tmp.path();
    let set = ["--set", "allowed=team-a"];
    let base = ["apply", "policy.yaml", "--resource", "resources.yaml"];
    let without = kybern(&[&base[..], &set[..]].concat(), Some(dir));
    let text = stdout(&without);
    assert!(!without.status.success(), "{text}");
    assert!(text.contains("fail: 1"), "{text}");

    let created = kybern(
        &[
            "create",
            "exception",
            "team-b-ok",
            "--policy-rules",
            "require-team,check-team",
            "--any",
            "kind=Pod,name=bad",
            "-o",
            "exception.yaml",
        ],
        Some(dir),
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let with = kybern(
        &[&base[..], &set[..], &["--exception", "exception.yaml"][..]].concat(),
        Some(dir),
    );
    let text = stdout(&with);
    assert!(
        with.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(text.contains("fail: 0"), "{text}");
    assert!(text.contains("skip: 1"), "{text}");
}

#[test]
fn a_created_user_info_is_read_by_kybern_apply() {
    let tmp = temp_dir("userinfo");
    let dir = tmp.path();
    std::fs::write(
        dir.join("policy.yaml"),
        r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: admins-only
spec:
  background: false
  rules:
  - name: check-group
    match:
      any:
      - resources:
          kinds:
          - ConfigMap
    validate:
      failureAction: Enforce
      message: only admins
      deny:
        conditions:
          all:
          - key: admins
            operator: AnyNotIn
            value: "{{ request.userInfo.groups }}"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: default\n",
    )
    .unwrap();
    let apply = |user: &[&str]| {
        let created = kybern(
            &[&["create", "user-info", "-o", "ui.yaml"][..], user].concat(),
            Some(dir),
        );
        assert!(created.status.success());
        kybern(
            &[
                "apply",
                "policy.yaml",
                "--resource",
                "cm.yaml",
                "--userinfo",
                "ui.yaml",
            ],
            Some(dir),
        )
    };
    let admin = apply(&["-u", "ann", "-g", "admins,devs"]);
    assert!(admin.status.success(), "{}", stdout(&admin));
    let other = apply(&["-u", "bob", "-g", "devs"]);
    assert!(!other.status.success(), "{}", stdout(&other));
}
