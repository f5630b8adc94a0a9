//! `kybern convert`: ValidatingPolicies from ClusterPolicy patterns, and the check that both
//! forms decide alike on the resources of every conformance suite.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KYBERN_CONFORMANCE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
        PathBuf::from,
    );
    dir.is_dir().then_some(dir)
}

fn suites(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            suites(&p, out);
        } else if p.file_name().is_some_and(|n| n == "kyverno-test.yaml") {
            out.push(p);
        }
    }
}

/// The policy and resource files a suite names that exist.
fn inputs(test: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = test.parent().unwrap();
    let text = std::fs::read_to_string(test).unwrap_or_default();
    let docs = kybern_engine::yaml::parse_all(&text).unwrap_or_default();
    let list = |key: &str| -> Vec<PathBuf> {
        docs.iter()
            .filter_map(|d| d.get(key).and_then(|v| v.as_array()))
            .flatten()
            .filter_map(|v| v.as_str())
            .map(|p| dir.join(p))
            .filter(|p| p.is_file())
            .collect()
    };
    (list("policies"), list("resources"))
}

#[derive(Default)]
struct Totals {
    converted: usize,
    not_converted: usize,
    compared: usize,
    disagreements: Vec<String>,
}

fn number_before(line: &str, word: &str) -> usize {
    line.split(word)
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn converted_policies_decide_as_the_originals_on_every_suite() {
    let Some(dir) = conformance_dir() else {
        eprintln!("conformance corpus absent (set KYBERN_CONFORMANCE_DIR): convert check not run");
        return;
    };
    let mut tests = Vec::new();
    suites(&dir, &mut tests);
    let mut t = Totals::default();
    for test in &tests {
        let (policies, resources) = inputs(test);
        if policies.is_empty() || resources.is_empty() {
            continue;
        }
        let mut cmd = Command::new(BIN);
        cmd.arg("convert").args(&policies).args(["-o", "/dev/null"]);
        for r in &resources {
            cmd.arg("--check").arg(r);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        for line in err.lines() {
            if line.contains("rule(s) converted") {
                t.converted += number_before(line, "rule(s) converted");
                t.not_converted += number_before(line, "not converted");
            } else if let Some(rest) = line.strip_prefix("check: ") {
                // `check: A of B rule/resource pairs decided alike ...`
                t.compared += number_before(rest, "rule/resource pairs");
            } else if line.starts_with("disagreement:") || line.starts_with("invalid:") {
                t.disagreements.push(format!("{}: {line}", test.display()));
            }
        }
    }
    eprintln!(
        "convert: {} rules converted, {} not converted; {} rule/resource pairs compared, {} disagreements",
        t.converted,
        t.not_converted,
        t.compared,
        t.disagreements.len()
    );
    assert!(t.converted > 40, "too few rules converted: {}", t.converted);
    assert!(t.compared > 500, "too few pairs compared: {}", t.compared);
    assert!(
        t.disagreements.is_empty(),
        "converted policies decide differently:\n{}",
        t.disagreements.join("\n")
    );
}

#[test]
fn unconvertible_rules_are_named_with_their_reason() {
    let dir = std::env::temp_dir().join(format!("kybern-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: mixed
spec:
  validationFailureAction: Enforce
  rules:
  - name: no-latest
    match:
      any:
      - resources:
          kinds: [Pod]
    validate:
      message: no latest tag
      pattern:
        spec:
          containers:
          - image: \"!*:latest\"
  - name: context-rule
    match:
      any:
      - resources:
          kinds: [Pod]
    context:
    - name: cm
      configMap:
        name: settings
        namespace: default
    validate:
      message: no
      deny:
        conditions:
          any:
          - key: \"{{ cm.data.mode }}\"
            operator: Equals
            value: bad
",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("convert")
        .arg(&policy)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let docs = kybern_engine::yaml::parse_all(&stdout).unwrap();
    assert_eq!(docs.len(), 1, "{stdout}");
    assert_eq!(docs[0]["kind"], "ValidatingPolicy");
    assert_eq!(docs[0]["metadata"]["name"], "mixed-no-latest");
    assert_eq!(docs[0]["spec"]["validationActions"][0], "Deny");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mixed/context-rule: not converted: context is not converted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 rule(s) converted, 1 not converted"),
        "{stderr}"
    );
}
