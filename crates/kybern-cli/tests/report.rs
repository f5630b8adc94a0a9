//! `kybern report` against an API server (the in-repo fake) holding PolicyReports and a
//! ClusterPolicyReport in the shape the reports controller writes: the text summary and the
//! JSON, exactly.

use kybern_cluster::reports::hash::ResultsHash;
use kybern_cluster::reports::shape::{ReportApi, Subject, report};
use kybern_testkube::FakeApiServer;
use serde_json::{Map, Value, json};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kybern");
const REPORTS: &str = "wgpolicyk8s.io/v1alpha2";

fn result(policy: &str, rule: &str, word: &str) -> Map<String, Value> {
    json!({"policy": policy, "rule": rule, "result": word, "message": "m", "source": "kyverno", "scored": true})
        .as_object()
        .unwrap()
        .clone()
}

fn subject(kind: &str, name: &str, namespace: &str, uid: &str) -> Subject {
    Subject {
        api_version: "v1".into(),
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.into(),
        uid: uid.into(),
    }
}

fn run(kubeconfig: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("report")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_summarises_the_cluster_reports_per_namespace_policy_and_failing_rule() {
    let api = FakeApiServer::start().await.unwrap();
    let store = api.store();
    for crd in kybern_cluster::crds::all() {
        store
            .create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
            .unwrap();
    }
    for ns in ["team-a", "team-b"] {
        store
            .create("v1", "namespaces", json!({"metadata": {"name": ns}}))
            .unwrap();
    }
    let reports = [
        (
            subject("Pod", "web", "team-a", "u1"),
            vec![
                result("require-team", "check-team", "fail"),
                result("pss", "baseline", "pass"),
            ],
        ),
        (
            subject("Pod", "db", "team-a", "u2"),
            vec![
                result("require-team", "check-team", "fail"),
                result("pss", "baseline", "fail"),
            ],
        ),
        (
            subject("Pod", "job", "team-b", "u3"),
            vec![result("team-b/local", "r", "warn")],
        ),
        (
            subject("Namespace", "team-a", "", "u4"),
            vec![result("ns-labels", "owner", "error")],
        ),
    ];
    for (s, results) in reports {
        let r = report(ReportApi::Wgpolicy, &s, results, ResultsHash(1), 1);
        let plural = if s.namespace.is_empty() {
            "clusterpolicyreports"
        } else {
            "policyreports"
        };
        store.create(REPORTS, plural, r).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("kybern-report-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    api.write_kubeconfig(&kubeconfig).unwrap();

    let k = kubeconfig.clone();
    let text = tokio::task::spawn_blocking(move || run(&k, &[]))
        .await
        .unwrap();
    let want = "\
4 reports: 1 pass, 3 fail, 1 warn, 1 error, 0 skip

┌───────────┬──────┬──────┬──────┬───────┬──────┐
│ NAMESPACE │ PASS │ FAIL │ WARN │ ERROR │ SKIP │
├───────────┼──────┼──────┼──────┼───────┼──────┤
│ (cluster) │ 0    │ 0    │ 0    │ 1     │ 0    │
│ team-a    │ 1    │ 3    │ 0    │ 0     │ 0    │
│ team-b    │ 0    │ 0    │ 1    │ 0     │ 0    │
└───────────┴──────┴──────┴──────┴───────┴──────┘

┌──────────────┬──────┬──────┬──────┬───────┬──────┐
│ POLICY       │ PASS │ FAIL │ WARN │ ERROR │ SKIP │
├──────────────┼──────┼──────┼──────┼───────┼──────┤
│ ns-labels    │ 0    │ 0    │ 0    │ 1     │ 0    │
│ pss          │ 1    │ 1    │ 0    │ 0     │ 0    │
│ require-team │ 0    │ 2    │ 0    │ 0     │ 0    │
│ team-b/local │ 0    │ 0    │ 1    │ 0     │ 0    │
└──────────────┴──────┴──────┴──────┴───────┴──────┘

┌──────────────┬────────────┬──────────┐
│ POLICY       │ RULE       │ FAILURES │
├──────────────┼────────────┼──────────┤
│ require-team │ check-team │ 2        │
│ pss          │ baseline   │ 1        │
└──────────────┴────────────┴──────────┘
";
    assert_eq!(text, want, "got:\n{text}");

    let k = kubeconfig.clone();
    let json_out = tokio::task::spawn_blocking(move || run(&k, &["-o", "json", "--top", "1"]))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(
        v,
        json!({
            "reports": 4,
            "total": {"pass": 1, "fail": 3, "warn": 1, "error": 1, "skip": 0},
            "namespaces": {
                "": {"pass": 0, "fail": 0, "warn": 0, "error": 1, "skip": 0},
                "team-a": {"pass": 1, "fail": 3, "warn": 0, "error": 0, "skip": 0},
                "team-b": {"pass": 0, "fail": 0, "warn": 1, "error": 0, "skip": 0}
            },
            "policies": {
                "ns-labels": {"pass": 0, "fail": 0, "warn": 0, "error": 1, "skip": 0},
                "pss": {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0},
                "require-team": {"pass": 0, "fail": 2, "warn": 0, "error": 0, "skip": 0},
                "team-b/local": {"pass": 0, "fail": 0, "warn": 1, "error": 0, "skip": 0}
            },
            "failing_rules": [{"policy": "require-team", "rule": "check-team", "failures": 2}]
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    api.shutdown().await;
}
