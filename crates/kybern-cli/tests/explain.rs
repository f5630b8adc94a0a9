//! `kybern apply --explain`: every rule of every policy is listed for each resource with what
//! decided it, including rules that did not select the resource and why.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

const POLICIES: &str = "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-team
spec:
  rules:
  - name: team
    match:
      any:
      - resources:
          kinds: [Pod]
    exclude:
      any:
      - resources:
          namespaces: [kube-system]
    validate:
      failureAction: Enforce
      message: a team label is required
      pattern:
        metadata:
          labels:
            team: \"?*\"
---
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: prod-deployments
spec:
  rules:
  - name: replicas
    match:
      any:
      - resources:
          kinds: [Deployment]
      - resources:
          kinds: [Pod]
          namespaces: [\"prod-*\"]
    validate:
      message: at least two replicas
      pattern:
        spec:
          replicas: \">=2\"
";

const PODS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: bare
  namespace: dev
---
apiVersion: v1
kind: Pod
metadata:
  name: system
  namespace: kube-system
";

#[test]
fn every_rule_is_explained_for_every_resource() {
    let dir = std::env::temp_dir().join(format!("kybern-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policies.yaml"), POLICIES).unwrap();
    std::fs::write(dir.join("pods.yaml"), PODS).unwrap();
    let out = Command::new(BIN)
        .arg("apply")
        .arg(dir.join("policies.yaml"))
        .arg("--resource")
        .arg(dir.join("pods.yaml"))
        .arg("--explain")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let section = |title: &str| -> Vec<String> {
        text.split("\nexplain ")
            .find(|s| s.starts_with(title))
            .unwrap_or_else(|| panic!("no section {title} in {text}"))
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.contains("/autogen-"))
            .collect()
    };
    assert_eq!(
        section("Pod dev/bare:"),
        [
            "require-team/team: fail: validation error: a team label is required. rule team failed at path /metadata/labels/",
            "prod-deployments/replicas: not matched: match.any[0]: kind Pod is not one of [Deployment]; match.any[1]: namespace \"dev\" is not one of [prod-*]",
        ],
        "{text}"
    );
    assert_eq!(
        section("Pod kube-system/system:")[0],
        "require-team/team: excluded by exclude.any[0]",
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn json_results_carry_the_same_explanations_as_data() {
    let dir = std::env::temp_dir().join(format!("kybern-explain-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policies.yaml"), POLICIES).unwrap();
    std::fs::write(dir.join("pods.yaml"), PODS).unwrap();
    let out = Command::new(BIN)
        .arg("apply")
        .arg(dir.join("policies.yaml"))
        .arg("--resource")
        .arg(dir.join("pods.yaml"))
        .args(["--explain", "--output-format", "json"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let explain = doc["explain"].as_array().expect("an explain array");
    assert_eq!(explain.len(), 2, "{doc}");
    let bare = &explain[0];
    assert_eq!(bare["resource"]["name"], "bare");
    assert_eq!(bare["resource"]["namespace"], "dev");
    let outcome = |rule: &str| {
        bare["trace"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["rule"] == rule)
            .map(|t| t["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(
        outcome("team").as_deref(),
        Some(
            "fail: validation error: a team label is required. rule team failed at path /metadata/labels/"
        )
    );
    assert!(
        outcome("replicas")
            .unwrap()
            .starts_with("not matched: match.any[0]")
    );
    assert_eq!(
        explain[1]["trace"][0]["outcome"],
        "excluded by exclude.any[0]"
    );
    // The results and the summary are still there.
    assert_eq!(doc["summary"]["fail"], 1, "{doc}");
    assert!(doc["results"].as_array().is_some_and(|r| !r.is_empty()));
}

#[test]
fn kybern_test_explains_the_resources_of_each_suite() {
    let dir = std::env::temp_dir().join(format!("kybern-explain-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policies.yaml"), POLICIES).unwrap();
    std::fs::write(dir.join("pods.yaml"), PODS).unwrap();
    std::fs::write(
        dir.join("kyverno-test.yaml"),
        "\
apiVersion: cli.kyverno.io/v1alpha1
kind: Test
metadata:
  name: explained
policies: [policies.yaml]
resources: [pods.yaml]
results:
- policy: require-team
  rule: team
  resources: [bare]
  kind: Pod
  result: fail
",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("test")
        .arg(&dir)
        .arg("--explain")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "\nexplain Pod kube-system/system:\n  require-team/team: excluded by exclude.any[0]\n"
        ),
        "{text}"
    );
    assert!(text.contains("prod-deployments/replicas: not matched: match.any[0]: kind Pod is not one of [Deployment]"), "{text}");
    assert!(
        text.contains("Test Summary: 1 tests passed and 0 tests failed"),
        "{text}"
    );
}

#[test]
fn conditions_show_the_context_values_that_decided() {
    let dir = std::env::temp_dir().join(format!("kybern-explain-ctx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: mode
spec:
  rules:
  - name: strict-mode
    match:
      any:
      - resources:
          kinds: [Pod]
    context:
    - name: settings
      configMap:
        name: settings
        namespace: default
    validate:
      failureAction: Enforce
      message: strict mode forbids this Pod
      deny:
        conditions:
          all:
          - key: \"{{ settings.data.mode }}\"
            operator: Equals
            value: strict
          - key: \"{{ request.object.metadata.name }}\"
            operator: NotEquals
            value: allowed
",
    )
    .unwrap();
    std::fs::write(
        dir.join("values.yaml"),
        "\
apiVersion: cli.kyverno.io/v1alpha1
kind: Values
policies:
- name: mode
  rules:
  - name: strict-mode
    values:
      settings.data.mode: strict
",
    )
    .unwrap();
    std::fs::write(dir.join("pod.yaml"), PODS).unwrap();
    let out = Command::new(BIN)
        .arg("apply")
        .arg(dir.join("policy.yaml"))
        .arg("--resource")
        .arg(dir.join("pod.yaml"))
        .arg("--values-file")
        .arg(dir.join("values.yaml"))
        .arg("--explain")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "mode/strict-mode: fail: strict mode forbids this Pod [all[0]: `{{ settings.data.mode }}` = \"strict\" Equals \"strict\": holds; all[1]: `{{ request.object.metadata.name }}` = \"bare\" NotEquals \"allowed\": holds]"
        ),
        "{text}"
    );
}
