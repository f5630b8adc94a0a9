//! Machine-readable output: `kybern test --output-format` gives one document a CI system reads
//! (JSON, YAML, JUnit XML or Markdown) with the same rows and exit code as the table, and
//! `kybern apply --output-format json` (without `--policy-report`) every rule result.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

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

const RESOURCES: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: labelled
  labels:
    team: a
spec:
  containers:
  - name: c
    image: nginx:1.27
---
apiVersion: v1
kind: Pod
metadata:
  name: bare
spec:
  containers:
  - name: c
    image: nginx:1.27
";

/// `bare` is expected to pass but fails: one failed row beside one passing row.
const TEST: &str = "\
apiVersion: cli.kyverno.io/v1alpha1
kind: Test
metadata:
  name: team-labels
policies:
- policy.yaml
resources:
- resources.yaml
results:
- policy: require-team
  rule: team-label
  resources: [labelled, bare]
  kind: Pod
  result: pass
";

struct Suite {
    dir: PathBuf,
}

impl Suite {
    fn new(name: &str) -> Suite {
        let dir = std::env::temp_dir().join(format!("kybern-out-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("policy.yaml", POLICY),
            ("resources.yaml", RESOURCES),
            ("kyverno-test.yaml", TEST),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        Suite { dir }
    }

    fn test(&self, format: &str) -> Output {
        Command::new(BIN)
            .arg("test")
            .arg(&self.dir)
            .args(["--output-format", format])
            .output()
            .unwrap()
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn json_output_is_one_document_with_every_row_and_the_exit_code_of_the_table() {
    let suite = Suite::new("json");
    let out = suite.test("json");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["summary"]["pass"], 1);
    assert_eq!(doc["summary"]["fail"], 1);
    let rows = doc["tests"][0]["results"].as_array().unwrap();
    let result_of = |name: &str| {
        rows.iter()
            .find(|r| r["resource"].as_str().unwrap().ends_with(name))
            .map(|r| r["result"].as_str().unwrap().to_string())
    };
    assert_eq!(result_of("/labelled").as_deref(), Some("Pass"));
    assert_eq!(result_of("/bare").as_deref(), Some("Fail"));
    // Progress lines leave standard output to the document.
    assert!(String::from_utf8_lossy(&out.stderr).contains("Loading test team-labels"));
}

#[test]
fn yaml_output_reads_as_the_json_document() {
    let suite = Suite::new("yaml");
    let yaml = suite.test("yaml");
    let json = suite.test("json");
    let from_yaml = kybern_engine::yaml::parse_all(&stdout(&yaml)).unwrap();
    let from_json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(from_yaml, vec![from_json]);
}

#[test]
fn junit_output_has_a_failure_for_the_failed_row() {
    let suite = Suite::new("junit");
    let out = suite.test("junit");
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    assert!(
        xml.contains("<testsuites name=\"kybern test\" tests=\"2\" failures=\"1\">"),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.trim_end().ends_with("</testsuites>"), "{xml}");
}

#[test]
fn markdown_output_is_a_table_and_a_summary() {
    let suite = Suite::new("markdown");
    let out = suite.test("markdown");
    let md = stdout(&out);
    assert!(
        md.contains("| ID | POLICY | RULE | RESOURCE | RESULT | REASON | MESSAGE |"),
        "{md}"
    );
    assert!(md.contains("1 tests passed and 1 tests failed"), "{md}");
}

#[test]
fn apply_json_output_lists_every_rule_result_and_the_summary() {
    let suite = Suite::new("apply-json");
    let out = Command::new(BIN)
        .arg("apply")
        .arg(suite.dir.join("policy.yaml"))
        .arg("--resource")
        .arg(suite.dir.join("resources.yaml"))
        .args(["--output-format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        doc["summary"],
        serde_json::json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let bare = results
        .iter()
        .find(|r| r["resource"]["name"] == "bare")
        .unwrap();
    assert_eq!(bare["result"], "fail");
    assert_eq!(bare["policy"], "require-team");
    assert_eq!(bare["rule"], "team-label");
    assert_eq!(bare["resource"]["kind"], "Pod");
    assert!(
        bare["message"]
            .as_str()
            .unwrap()
            .contains("a team label is required")
    );
}

#[test]
fn apply_header_counts_every_resource_before_any_result() {
    let suite = Suite::new("apply-header");
    // Several batches of documents, the failing ones spread through them, and a List.
    let mut resources = String::new();
    for i in 0..300 {
        let labels = if i % 50 == 49 {
            String::new()
        } else {
            "\n  labels:\n    team: a".to_string()
        };
        resources.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}{labels}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.27\n"
        ));
    }
    resources.push_str(
        "---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: in-list-a\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: in-list-b\n    labels:\n      team: b\n",
    );
    let file = suite.dir.join("many.yaml");
    std::fs::write(&file, resources).unwrap();
    let out = Command::new(BIN)
        .arg("apply")
        .arg(suite.dir.join("policy.yaml"))
        .arg("--resource")
        .arg(&file)
        .output()
        .unwrap();
    let text = stdout(&out);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap();
    // The policy's rule and the two rules autogen gives it for pod controllers.
    assert_eq!(
        first, "Applying 3 policy rule(s) to 302 resource(s)...",
        "{text}"
    );
    // Every failure is reported after the header, in reading order.
    let failed: Vec<usize> = ["p49", "p99", "p149", "p199", "p249", "p299", "in-list-a"]
        .iter()
        .map(|n| {
            text.find(&format!("/{n} "))
                .or_else(|| text.find(&format!("/{n}\n")))
                .unwrap_or_else(|| panic!("{n} not reported: {text}"))
        })
        .collect();
    assert!(failed.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(
        text.trim_end()
            .ends_with("pass: 295, fail: 7, warn: 0, error: 0, skip: 0"),
        "{text}"
    );
}

#[test]
fn apply_stops_when_its_reader_stops_reading() {
    let suite = Suite::new("apply-closed");
    let mut resources = String::new();
    for i in 0..4000 {
        resources.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: unlabelled-{i}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.27\n"
        ));
    }
    let file = suite.dir.join("many.yaml");
    std::fs::write(&file, resources).unwrap();
    let mut child = Command::new(BIN)
        .arg("apply")
        .arg(suite.dir.join("policy.yaml"))
        .arg("--resource")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Read a little of the report, then stop reading, as `| head` does.
    let mut first = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kybern apply kept running after its output was closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(141));
}
