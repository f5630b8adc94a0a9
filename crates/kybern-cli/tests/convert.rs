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

/// A restricted Pod that passes every check, with an init and a regular container.
fn compliant_pod() -> serde_json::Value {
    let container = |name: &str, image: &str| {
        serde_json::json!({
            "name": name,
            "image": image,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
        })
    };
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [container("setup", "busybox:1.36")],
            "containers": [container("app", "ghcr.io/kyverno/test-nginx:1.0")],
        },
    })
}

/// Pods that break each Pod Security control in turn (some only at some versions), in the pod
/// spec or in one container, and the same as Deployments.
fn pod_security_resources() -> Vec<serde_json::Value> {
    use serde_json::json;
    let pod_changes: Vec<(&str, serde_json::Value)> = vec![
        ("/spec/hostNetwork", json!(true)),
        ("/spec/hostPID", json!(true)),
        ("/spec/hostIPC", json!(true)),
        (
            "/spec/volumes",
            json!([{"name": "root", "hostPath": {"path": "/"}}]),
        ),
        (
            "/spec/volumes",
            json!([{"name": "share", "nfs": {"server": "n", "path": "/"}}]),
        ),
        (
            "/spec/volumes",
            json!([{"name": "cfg", "configMap": {"name": "c"}}]),
        ),
        (
            "/spec/securityContext/sysctls",
            json!([{"name": "kernel.msgmax", "value": "1"}]),
        ),
        (
            "/spec/securityContext/sysctls",
            json!([{"name": "net.ipv4.tcp_rmem", "value": "1"}]),
        ),
        ("/spec/securityContext/runAsNonRoot", json!(false)),
        ("/spec/securityContext/runAsUser", json!(0)),
        (
            "/spec/securityContext/seccompProfile",
            json!({"type": "Unconfined"}),
        ),
        (
            "/spec/securityContext/seccompProfile",
            serde_json::Value::Null,
        ),
        (
            "/spec/securityContext/seLinuxOptions",
            json!({"type": "spc_t"}),
        ),
        (
            "/spec/securityContext/seLinuxOptions",
            json!({"type": "container_engine_t"}),
        ),
        (
            "/spec/securityContext/seLinuxOptions",
            json!({"user": "root"}),
        ),
        (
            "/spec/securityContext/appArmorProfile",
            json!({"type": "Unconfined"}),
        ),
        (
            "/spec/securityContext/windowsOptions",
            json!({"hostProcess": true}),
        ),
        ("/spec/os", json!({"name": "windows"})),
        (
            "/metadata/annotations",
            json!({"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}),
        ),
        (
            "/metadata/annotations",
            json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
        ),
        (
            "/metadata/annotations",
            json!({"container.seccomp.security.alpha.kubernetes.io/setup": "localhost/x"}),
        ),
    ];
    let container_changes: Vec<(&str, serde_json::Value)> = vec![
        ("/securityContext/privileged", json!(true)),
        ("/securityContext/allowPrivilegeEscalation", json!(true)),
        (
            "/securityContext/allowPrivilegeEscalation",
            serde_json::Value::Null,
        ),
        (
            "/securityContext/capabilities",
            json!({"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
        ),
        (
            "/securityContext/capabilities",
            json!({"drop": ["ALL"], "add": ["CHOWN"]}),
        ),
        (
            "/securityContext/capabilities",
            json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
        ),
        (
            "/securityContext/capabilities",
            json!({"drop": ["NET_RAW"]}),
        ),
        ("/securityContext/procMount", json!("Unmasked")),
        ("/securityContext/runAsUser", json!(0)),
        ("/securityContext/runAsNonRoot", json!(false)),
        (
            "/securityContext/seccompProfile",
            json!({"type": "Unconfined"}),
        ),
        (
            "/securityContext/seccompProfile",
            json!({"type": "Localhost", "localhostProfile": "p"}),
        ),
        (
            "/securityContext/seLinuxOptions",
            json!({"role": "sysadm_r"}),
        ),
        (
            "/securityContext/appArmorProfile",
            json!({"type": "Localhost", "localhostProfile": "p"}),
        ),
        (
            "/securityContext/windowsOptions",
            json!({"hostProcess": true}),
        ),
        ("/ports", json!([{"containerPort": 80, "hostPort": 8080}])),
        (
            "/livenessProbe",
            json!({"httpGet": {"port": 80, "host": "10.0.0.1"}}),
        ),
        (
            "/lifecycle",
            json!({"preStop": {"tcpSocket": {"port": 80, "host": "node"}}}),
        ),
        ("/image", json!("redis:7")),
    ];
    let set = |doc: &mut serde_json::Value, pointer: &str, value: serde_json::Value| {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = doc.pointer_mut(parent).unwrap();
        if value.is_null() {
            target.as_object_mut().unwrap().remove(key);
        } else {
            target[key] = value;
        }
    };
    let mut pods = vec![compliant_pod()];
    for (pointer, value) in &pod_changes {
        let mut pod = compliant_pod();
        set(&mut pod, pointer, value.clone());
        pods.push(pod);
    }
    for list in ["initContainers", "containers"] {
        for (pointer, value) in &container_changes {
            let mut pod = compliant_pod();
            set(&mut pod, &format!("/spec/{list}/0{pointer}"), value.clone());
            pods.push(pod.clone());
            // The same change with the pod-level defaults gone: containers must carry them.
            let sc = pod.pointer_mut("/spec/securityContext").unwrap();
            *sc = json!({});
            pods.push(pod);
        }
    }
    // Sections written but left empty (YAML gives null), which Pod Security reads as unset.
    for pointer in [
        "/spec/securityContext",
        "/spec/containers/0/securityContext",
        "/spec/containers/0/securityContext/capabilities",
        "/spec/containers/0/securityContext/seLinuxOptions",
        "/spec/initContainers/0/securityContext/runAsNonRoot",
        "/spec/containers/0/ports",
        "/spec/containers/0/livenessProbe",
        "/spec/volumes",
        "/spec/os",
        "/metadata/annotations",
    ] {
        let mut pod = compliant_pod();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        pod.pointer_mut(parent).unwrap()[key] = serde_json::Value::Null;
        pods.push(pod);
    }
    // Windows pods are exempt from some restricted checks at newer versions only.
    let mut windows = compliant_pod();
    set(&mut windows, "/spec/os", json!({"name": "windows"}));
    set(
        &mut windows,
        "/spec/containers/0/securityContext",
        json!({"privileged": false}),
    );
    pods.push(windows);
    let deployments: Vec<serde_json::Value> = pods
        .iter()
        .step_by(3)
        .enumerate()
        .map(|(i, pod)| {
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": format!("web-{i}"), "namespace": "shop"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": pod["metadata"].clone(), "spec": pod["spec"].clone()},
                },
            })
        })
        .collect();
    // Kyverno reads a CronJob's checks with the jobTemplate's metadata, not the pod template's.
    let cronjobs: Vec<serde_json::Value> = pods
        .iter()
        .step_by(4)
        .enumerate()
        .map(|(i, pod)| {
            json!({
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": format!("nightly-{i}"), "namespace": "shop"},
                "spec": {
                    "schedule": "0 1 * * *",
                    "jobTemplate": {"spec": {"template": {
                        "metadata": pod["metadata"].clone(),
                        "spec": pod["spec"].clone(),
                    }}},
                },
            })
        })
        .collect();
    let mut all: Vec<serde_json::Value> = pods
        .into_iter()
        .enumerate()
        .map(|(i, mut pod)| {
            pod["metadata"]["name"] = json!(format!("web-{i}"));
            pod
        })
        .collect();
    all.extend(deployments);
    all.extend(cronjobs);
    all
}

fn pod_security_policy(name: &str, level: &str, version: &str, exclude: &str) -> String {
    format!(
        "\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: {name}
spec:
  validationFailureAction: Enforce
  rules:
  - name: pss
    match:
      any:
      - resources:
          kinds: [Pod]
    validate:
      podSecurity:
        level: {level}
        version: {version}
{exclude}
---
"
    )
}

#[test]
fn pod_security_subrules_convert_and_decide_as_the_originals() {
    let dir = std::env::temp_dir().join(format!("kybern-convert-pss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let resources = dir.join("pods.yaml");
    let docs: Vec<String> = pod_security_resources()
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    std::fs::write(&resources, docs.join("\n---\n")).unwrap();
    let excluded = "        exclude:
        - controlName: Capabilities
          images: ['ghcr.io/kyverno/test-nginx*', 'redis*']
        - controlName: Host Namespaces
        - controlName: Host Ports
          images: ['*']";
    let mut policies = String::new();
    for (name, level, version, exclude) in [
        ("baseline-latest", "baseline", "latest", ""),
        ("restricted-latest", "restricted", "latest", ""),
        ("restricted-1-24", "restricted", "v1.24", ""),
        ("baseline-1-30", "baseline", "v1.30", ""),
        ("restricted-1-31", "restricted", "v1.31", ""),
        ("restricted-1-35", "restricted", "v1.35", ""),
        ("restricted-excluded", "restricted", "latest", excluded),
        (
            "seccomp-excluded",
            "restricted",
            "latest",
            "        exclude:\n        - controlName: Seccomp",
        ),
    ] {
        policies.push_str(&pod_security_policy(name, level, version, exclude));
    }
    let policy = dir.join("policies.yaml");
    std::fs::write(&policy, policies).unwrap();
    let out = Command::new(BIN)
        .arg("convert")
        .arg(&policy)
        .arg("--check")
        .arg(&resources)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("7 rule(s) converted, 1 not converted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("seccomp-excluded/pss: not converted: podSecurity.exclude[0] (Seccomp)"),
        "{stderr}"
    );
    let disagreements: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("disagreement:") || l.starts_with("invalid:"))
        .collect();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("check: "))
        .unwrap_or_default();
    eprintln!("podSecurity {line}");
    let pairs = number_before(line, "rule/resource pairs");
    assert!(pairs > 7 * 80, "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The converted policies carry one validation per check of the level.
    let converted = kybern_engine::yaml::parse_all(&stdout).unwrap();
    let count = |name: &str| {
        converted
            .iter()
            .find(|d| d["metadata"]["name"] == name)
            .and_then(|d| d["spec"]["validations"].as_array())
            .map_or(0, Vec::len)
    };
    assert_eq!(count("baseline-latest-pss"), 12);
    assert_eq!(count("restricted-latest-pss"), 18);
    assert_eq!(count("restricted-excluded-pss"), 17);
}
