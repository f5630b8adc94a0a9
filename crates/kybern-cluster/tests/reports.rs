//! Policy reports end to end on the fake API server: `kybern controller --enable reports` scans
//! existing Pods, keeps one PolicyReport per Pod in step with Pods and policies, writes nothing
//! for changes that leave results as they were, and survives an API that refuses report writes.

mod common;

use common::*;
use kybern_cluster::names::{Names, Scheme};
use kybern_cluster::reports::controller::{ReportController, ReportOptions};
use kybern_cluster::reports::scan::ScanSettings;
use kybern_cluster::reports::shape::ReportApi;
use kybern_cluster::reports::writer::WriteSettings;
use serde_json::{Value, json};
use std::time::Duration;

const REPORTS: &str = "wgpolicyk8s.io/v1alpha2";
const PODS: usize = 200;

fn label_policy(name: &str, label: &str) -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
        "metadata": {"name": name, "annotations": {
            "policies.kyverno.io/severity": "medium", "policies.kyverno.io/category": "Best Practices"}},
        "spec": {"background": true, "rules": [{
            "name": format!("check-{label}"),
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": format!("label {label} is required"),
                "pattern": {"metadata": {"labels": {label: "?*"}}}}
        }]}
    })
}

fn pod(i: usize) -> Value {
    let mut labels = json!({"app": "web"});
    if i.is_multiple_of(2) {
        labels["team"] = json!("a");
    }
    json!({"metadata": {"name": format!("pod-{i}"), "namespace": "team", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}})
}

fn options(c: &Cluster, write: WriteSettings, interval: Duration) -> ReportOptions {
    ReportOptions {
        kubeconfig: Some(c.kubeconfig.clone()),
        names: Names::new(Scheme::Kybern, NS, None),
        identity: "reports-1".into(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        interval,
        scan: ScanSettings::default(),
        write,
        api: ReportApi::Wgpolicy,
        exception_namespaces: Vec::new(),
    }
}

fn fast_writes() -> WriteSettings {
    WriteSettings {
        per_second: 10_000,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..WriteSettings::default()
    }
}

fn report_writes(c: &Cluster) -> usize {
    c.api
        .faults()
        .requests()
        .iter()
        .filter(|(m, p)| (m == "PATCH" || m == "PUT" || m == "POST") && p.contains("policyreports"))
        .count()
}

fn reports(c: &Cluster) -> Vec<Value> {
    c.api.store().list(REPORTS, "policyreports", Some("team"))
}

fn report_of(c: &Cluster, pod: &Value) -> Option<Value> {
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    c.api
        .store()
        .get(REPORTS, "policyreports", Some("team"), uid)
}

fn results(report: &Value) -> Vec<(String, String)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["policy"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn started(c: &Cluster, write: WriteSettings, interval: Duration) -> ReportController {
    let controller = kybern_cluster::reports::controller::start(options(c, write, interval))
        .await
        .unwrap();
    wait_for(
        "the reports controller to lead",
        Duration::from_secs(20),
        || *controller.leader.borrow(),
    )
    .await;
    controller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn existing_pods_get_one_report_each_that_follows_pods_and_policies() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    let pods: Vec<Value> = (0..PODS)
        .map(|i| store.create("v1", "pods", pod(i)).unwrap())
        .collect();
    // Events churn: never scanned even when a policy selects them.
    let mut events = label_policy("event-reasons", "reason");
    events["spec"]["rules"][0]["match"]["any"][0]["resources"]["kinds"] = json!(["Event"]);
    store
        .create("kyverno.io/v1", "clusterpolicies", events)
        .unwrap();
    store
        .create(
            "v1",
            "events",
            json!({"metadata": {"name": "e", "namespace": "team"}, "reason": "x"}),
        )
        .unwrap();
    let controller = started(&c, fast_writes(), Duration::from_secs(3600)).await;

    wait_for("a report for every Pod", Duration::from_secs(60), || {
        reports(&c).len() == PODS
    })
    .await;
    for (i, p) in pods.iter().enumerate() {
        let r = report_of(&c, p).unwrap_or_else(|| panic!("no report for pod-{i}"));
        assert_eq!(
            r["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kyverno"
        );
        assert_eq!(
            r["metadata"]["ownerReferences"][0]["uid"],
            p["metadata"]["uid"]
        );
        assert_eq!(r["metadata"]["ownerReferences"][0]["kind"], "Pod");
        assert_eq!(r["scope"]["name"], p["metadata"]["name"]);
        let want = if i.is_multiple_of(2) { "pass" } else { "fail" };
        assert_eq!(
            results(&r),
            vec![("require-team".to_string(), want.to_string())]
        );
        let result = &r["results"][0];
        assert_eq!(result["rule"], "check-team");
        assert_eq!(result["source"], "kyverno");
        assert_eq!(result["severity"], "medium");
        assert_eq!(result["category"], "Best Practices");
        assert_eq!(result["scored"], true);
        assert!(result["timestamp"]["seconds"].as_u64().unwrap() > 0);
        assert_eq!(r["summary"][want], 1);
        if want == "fail" {
            assert!(
                result["message"]
                    .as_str()
                    .unwrap()
                    .contains("label team is required"),
                "{result}"
            );
        }
    }
    let writes = report_writes(&c);
    assert_eq!(writes, PODS, "one write per Pod");

    // A change that leaves the results as they were writes nothing.
    store
        .merge_patch(
            "v1",
            "pods",
            Some("team"),
            "pod-1",
            json!({"metadata": {"annotations": {"note": "x"}}}),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        report_writes(&c),
        writes,
        "an irrelevant change was written"
    );

    // A change of results is written.
    store
        .merge_patch(
            "v1",
            "pods",
            Some("team"),
            "pod-1",
            json!({"metadata": {"labels": {"team": "b"}}}),
        )
        .unwrap();
    wait_for("pod-1's report to pass", Duration::from_secs(20), || {
        report_of(&c, &pods[1])
            .is_some_and(|r| results(&r) == vec![("require-team".into(), "pass".into())])
    })
    .await;
    assert_eq!(report_writes(&c), writes + 1);

    // A policy added: every report gains its results.
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-owner", "owner"),
        )
        .unwrap();
    wait_for(
        "every report to carry the new policy",
        Duration::from_secs(60),
        || reports(&c).iter().all(|r| results(r).len() == 2),
    )
    .await;
    // A policy removed: its results go.
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "require-team")
        .unwrap();
    wait_for(
        "every report to drop the removed policy",
        Duration::from_secs(60),
        || {
            let all = reports(&c);
            all.len() == PODS
                && all
                    .iter()
                    .all(|r| results(r) == vec![("require-owner".to_string(), "fail".to_string())])
        },
    )
    .await;

    // The fake API server has no garbage collector: the controller deletes a gone Pod's report.
    store.delete("v1", "pods", Some("team"), "pod-3").unwrap();
    wait_for("pod-3's report to go", Duration::from_secs(20), || {
        report_of(&c, &pods[3]).is_none()
    })
    .await;

    // The last policy removed: no results, no reports.
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "require-owner")
        .unwrap();
    wait_for("every report to go", Duration::from_secs(60), || {
        reports(&c).is_empty()
    })
    .await;
    assert!(
        c.api
            .faults()
            .requests()
            .iter()
            .all(|(_, p)| !p.contains("/events?") && !p.ends_with("/events")),
        "Events were read: {:?}",
        c.api
            .faults()
            .requests()
            .iter()
            .filter(|(_, p)| p.contains("/events"))
            .collect::<Vec<_>>()
    );
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_controller_rewrites_nothing_unchanged_and_removes_reports_of_gone_pods() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    for i in 0..20 {
        store.create("v1", "pods", pod(i)).unwrap();
    }
    let first = started(&c, fast_writes(), Duration::from_secs(3600)).await;
    wait_for("20 reports", Duration::from_secs(30), || {
        reports(&c).len() == 20
    })
    .await;
    first.shutdown().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.delete("v1", "pods", Some("team"), "pod-0").unwrap();
    let writes = report_writes(&c);
    let second = started(&c, fast_writes(), Duration::from_secs(3600)).await;
    wait_for(
        "the gone Pod's report to go",
        Duration::from_secs(30),
        || reports(&c).len() == 19,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        report_writes(&c),
        writes,
        "unchanged reports were written again"
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_report_writes_are_retried_a_bounded_number_of_times_and_the_controller_stays_healthy()
 {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    for i in 0..20 {
        store.create("v1", "pods", pod(i)).unwrap();
    }
    c.api
        .faults()
        .fail(Some("POST"), "policyreports", 500, 1_000_000);
    let write = WriteSettings {
        attempts: 3,
        ..fast_writes()
    };
    let controller = started(&c, write, Duration::from_secs(3)).await;
    let endpoint = controller.endpoint.unwrap();
    wait_for("every write dropped", Duration::from_secs(60), || {
        controller.metrics.dropped.get() >= 20
    })
    .await;
    let attempts = report_writes(&c);
    assert!(
        (20..=3 * 20 + 3).contains(&attempts),
        "{attempts} write attempts for 20 reports"
    );
    assert!(reports(&c).is_empty());
    let http = reqwest::Client::new();
    for path in ["/health/liveness", "/health/readiness"] {
        let r = http
            .get(format!("http://{endpoint}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let metrics = http
        .get(format!("http://{endpoint}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kybern_report_writes_dropped_total"),
        "{metrics}"
    );
    // The API recovers: the next interval's scan writes what was dropped.
    c.api.faults().reset();
    wait_for(
        "the reports after recovery",
        Duration::from_secs(30),
        || reports(&c).len() == 20,
    )
    .await;
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_security_and_autogen_rules_report_on_pods_and_deployments_and_pass_can_be_left_out() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            json!({
                "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
                "metadata": {"name": "pss-baseline"},
                "spec": {"background": true, "rules": [{
                    "name": "baseline",
                    "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "validate": {"podSecurity": {"level": "baseline", "version": "latest"}}
                }]}
            }),
        )
        .unwrap();
    let container = |privileged: bool| json!([{"name": "c", "image": "nginx:1.27", "securityContext": {"privileged": privileged}}]);
    let good = store
        .create(
            "v1",
            "pods",
            json!({"metadata": {"name": "good", "namespace": "team"}, "spec": {"containers": container(false)}}),
        )
        .unwrap();
    let bad = store
        .create(
            "v1",
            "pods",
            json!({"metadata": {"name": "bad", "namespace": "team"}, "spec": {"containers": container(true)}}),
        )
        .unwrap();
    let deployment = store
        .create(
            "apps/v1",
            "deployments",
            json!({"metadata": {"name": "web", "namespace": "team"}, "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": container(true)}}}}),
        )
        .unwrap();
    let mut opts = options(&c, fast_writes(), Duration::from_secs(3600));
    opts.scan = ScanSettings {
        results: kybern_cluster::reports::scan::parse_results(&[
            "fail".into(),
            "warn".into(),
            "error".into(),
        ])
        .unwrap(),
        ..ScanSettings::default()
    };
    let controller = kybern_cluster::reports::controller::start(opts)
        .await
        .unwrap();
    wait_for(
        "the reports of the bad Pod and the Deployment",
        Duration::from_secs(30),
        || reports(&c).len() == 2,
    )
    .await;
    let bad_report = report_of(&c, &bad).expect("the privileged Pod's report");
    assert_eq!(bad_report["results"][0]["rule"], "baseline");
    assert_eq!(bad_report["results"][0]["result"], "fail");
    assert!(
        bad_report["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("rivileged"),
        "{}",
        bad_report["results"][0]
    );
    assert!(
        report_of(&c, &good).is_none(),
        "a report holding only pass results was written"
    );
    let d = report_of(&c, &deployment).expect("the Deployment's report");
    assert_eq!(d["scope"]["kind"], "Deployment");
    assert_eq!(d["metadata"]["ownerReferences"][0]["apiVersion"], "apps/v1");
    assert_eq!(d["results"][0]["rule"], "autogen-baseline");
    assert_eq!(d["results"][0]["result"], "fail");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validating_policies_with_background_evaluation_report_too() {
    let c = cluster().await;
    let store = c.api.store();
    let vpol = |name: &str, background: bool| {
        json!({
            "apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy",
            "metadata": {"name": name},
            "spec": {
                "validationActions": ["Audit"],
                "evaluation": {"background": {"enabled": background}},
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}]},
                "validations": [{"expression": "has(object.metadata.labels) && 'team' in object.metadata.labels",
                    "message": "label team is required"}]
            }
        })
    };
    store
        .create(
            "policies.kyverno.io/v1",
            "validatingpolicies",
            vpol("vpol-team", true),
        )
        .unwrap();
    store
        .create(
            "policies.kyverno.io/v1",
            "validatingpolicies",
            vpol("admission-only", false),
        )
        .unwrap();
    let pods: Vec<Value> = (0..4)
        .map(|i| store.create("v1", "pods", pod(i)).unwrap())
        .collect();
    let controller = started(&c, fast_writes(), Duration::from_secs(3600)).await;
    wait_for("a report per Pod", Duration::from_secs(30), || {
        reports(&c).len() == 4
    })
    .await;
    for (i, p) in pods.iter().enumerate() {
        let r = report_of(&c, p).unwrap();
        let want = if i.is_multiple_of(2) { "pass" } else { "fail" };
        assert_eq!(
            results(&r),
            vec![("vpol-team".to_string(), want.to_string())],
            "{r}"
        );
    }
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_refused_as_too_large_is_dropped_without_retries() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    for i in 0..5 {
        store.create("v1", "pods", pod(i)).unwrap();
    }
    c.api
        .faults()
        .fail(Some("POST"), "policyreports", 413, 1_000_000);
    let controller = started(&c, fast_writes(), Duration::from_secs(3600)).await;
    wait_for("every write dropped", Duration::from_secs(30), || {
        controller.metrics.dropped.get() >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(report_writes(&c), 5, "a 413 was retried");
    assert!(reports(&c).is_empty());
    let endpoint = controller.endpoint.unwrap();
    let r = reqwest::get(format!("http://{endpoint}/health/liveness"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openreports_reports_are_written_when_asked() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    let pods: Vec<Value> = (0..2)
        .map(|i| store.create("v1", "pods", pod(i)).unwrap())
        .collect();
    let mut opts = options(&c, fast_writes(), Duration::from_secs(3600));
    opts.api = ReportApi::OpenReports;
    let controller = kybern_cluster::reports::controller::start(opts)
        .await
        .unwrap();
    wait_for("two openreports Reports", Duration::from_secs(30), || {
        store
            .list("openreports.io/v1alpha1", "reports", Some("team"))
            .len()
            == 2
    })
    .await;
    let uid = pods[1]["metadata"]["uid"].as_str().unwrap();
    let r = store
        .get("openreports.io/v1alpha1", "reports", Some("team"), uid)
        .unwrap();
    assert_eq!(r["kind"], "Report");
    assert_eq!(r["source"], "kyverno");
    assert_eq!(
        results(&r),
        vec![("require-team".to_string(), "fail".to_string())]
    );
    assert!(
        reports(&c).is_empty(),
        "wgpolicyk8s reports were written too"
    );
    store.delete("v1", "pods", Some("team"), "pod-1").unwrap();
    wait_for(
        "the Report of the deleted Pod to go",
        Duration::from_secs(30),
        || {
            store
                .list("openreports.io/v1alpha1", "reports", Some("team"))
                .len()
                == 1
        },
    )
    .await;
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beside_the_background_part_report_metrics_join_its_endpoint() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    store.create("v1", "pods", pod(1)).unwrap();
    let background = kybern_cluster::background::controller::start(
        kybern_cluster::background::controller::ControllerOptions {
            kubeconfig: Some(c.kubeconfig.clone()),
            names: Names::new(Scheme::Kybern, NS, None),
            identity: "bg".into(),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            exception_namespaces: Vec::new(),
        },
    )
    .await
    .unwrap();
    let mut opts = options(&c, fast_writes(), Duration::from_secs(3600));
    opts.listen = None;
    let reports_part = kybern_cluster::reports::controller::start(opts)
        .await
        .unwrap();
    assert!(reports_part.endpoint.is_none());
    let m = std::sync::Arc::clone(&reports_part.metrics);
    let _ = background
        .metrics
        .also
        .set(std::sync::Arc::new(move || m.families()));
    wait_for("the report", Duration::from_secs(30), || {
        reports(&c).len() == 1
    })
    .await;
    let endpoint = background.endpoint.unwrap();
    let text = reqwest::get(format!("http://{endpoint}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("kybern_update_requests_pending"), "{text}");
    assert!(text.contains("kybern_report_writes_total 1"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.ends_with("# EOF\n"));
    reports_part.shutdown().await;
    background.shutdown().await;
}

fn audit_owner_policy() -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "audit-owner"},
        "spec": {"background": false, "validationFailureAction": "Audit", "rules": [{
            "name": "check-owner",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "label owner is required",
                "pattern": {"metadata": {"labels": {"owner": "?*"}}}}
        }]}
    })
}

fn pod_review(uid: &str, pod: &Value) -> Value {
    let name = pod["metadata"]["name"].as_str().unwrap();
    let mut object = pod.clone();
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("Pod");
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name, "namespace": "team", "operation": "UPDATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object, "oldObject": object, "dryRun": false
        }
    })
}

fn processes(report: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["policy"].as_str().unwrap_or_default().to_string(),
                r["result"].as_str().unwrap_or_default().to_string(),
                r["properties"]["process"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn triple(policy: &str, result: &str, process: &str) -> (String, String, String) {
    (policy.into(), result.into(), process.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_results_of_admission_only_policies_join_the_resources_report() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    store
        .create("kyverno.io/v1", "clusterpolicies", audit_owner_policy())
        .unwrap();
    let mut pod = store
        .create(
            "v1",
            "pods",
            json!({"metadata": {"name": "p", "namespace": "team", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}),
        )
        .unwrap();
    let controller = started(&c, fast_writes(), Duration::from_secs(3600)).await;
    wait_for("the background report", Duration::from_secs(30), || {
        report_of(&c, &pod).is_some()
    })
    .await;

    let mut serve_options = common::options(&c, "a");
    serve_options.admission_reports = Some(kybern_cluster::serve::AdmissionReportOptions {
        writes: fast_writes(),
        ..Default::default()
    });
    let server = kybern_cluster::serve::start(serve_options).await.unwrap();
    let bundle = server.ca_bundle.borrow().clone();
    let client = client_from_ca_bundle(
        &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bundle),
        &server,
    );
    ready(&client, &server).await;

    // An audit failure at admission joins the scan's result in the Pod's one report.
    let mut expected = vec![
        triple("audit-owner", "fail", "admission review"),
        triple("require-team", "fail", "background scan"),
    ];
    let mut report = Value::Null;
    let started_at = std::time::Instant::now();
    while processes(&report) != expected {
        assert!(
            started_at.elapsed() < Duration::from_secs(20),
            "admission result never reached the report: {report}"
        );
        let r = send(&client, &server, "/validate/fail", &pod_review("u1", &pod)).await;
        assert_eq!(r["allowed"], true, "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = report_of(&c, &pod).unwrap_or_default();
    }
    assert_eq!(report["summary"]["fail"], 2, "{report}");

    // The scan rewrites its part after the Pod changes; the admission result stays.
    pod["metadata"]["labels"]["team"] = json!("a");
    pod = store.put("v1", "pods", pod).unwrap();
    expected = vec![
        triple("audit-owner", "fail", "admission review"),
        triple("require-team", "pass", "background scan"),
    ];
    wait_for(
        "the scan's new result beside the admission one",
        Duration::from_secs(20),
        || {
            report = report_of(&c, &pod).unwrap_or_default();
            processes(&report) == expected
        },
    )
    .await;

    // A later admission replaces its own result and keeps the scan's.
    pod["metadata"]["labels"]["owner"] = json!("me");
    expected = vec![
        triple("audit-owner", "pass", "admission review"),
        triple("require-team", "pass", "background scan"),
    ];
    let r = send(&client, &server, "/validate/fail", &pod_review("u2", &pod)).await;
    assert_eq!(r["allowed"], true);
    wait_for(
        "the admission result replaced",
        Duration::from_secs(20),
        || {
            report = report_of(&c, &pod).unwrap_or_default();
            processes(&report) == expected
        },
    )
    .await;
    assert_eq!(report["summary"]["pass"], 2, "{report}");

    // The admission-only policy removed: the scan's next write drops its result.
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "audit-owner")
        .unwrap();
    wait_for(
        "the removed policy's result gone",
        Duration::from_secs(20),
        || {
            report = report_of(&c, &pod).unwrap_or_default();
            processes(&report) == vec![triple("require-team", "pass", "background scan")]
        },
    )
    .await;

    // Report writes failing: admission answers every request at once all the same.
    store
        .create("kyverno.io/v1", "clusterpolicies", audit_owner_policy())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.api.faults().fail(None, "policyreports", 500, 10_000);
    let t = std::time::Instant::now();
    for i in 0..100 {
        let r = send(
            &client,
            &server,
            "/validate/fail",
            &pod_review(&format!("f{i}"), &pod),
        )
        .await;
        assert_eq!(r["allowed"], true);
    }
    eprintln!(
        "100 admissions with report writes failing: {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    let metrics = client
        .get(url(&server, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kybern_report_write_errors_total"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"));
    server.shutdown().await;
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_off_in_the_config_map_stops_every_write_until_it_is_on_again() {
    let c = cluster().await;
    let store = c.api.store();
    let config_map = Names::new(Scheme::Kybern, NS, None).config_map();
    let mut cm = store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": config_map, "namespace": NS}, "data": {"reports": "off"}}),
        )
        .unwrap();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            label_policy("require-team", "team"),
        )
        .unwrap();
    for i in 0..10 {
        store.create("v1", "pods", pod(i)).unwrap();
    }
    let controller = started(&c, fast_writes(), Duration::from_secs(2)).await;
    wait_for("every write dropped", Duration::from_secs(30), || {
        controller.metrics.dropped.get() >= 10
    })
    .await;
    assert_eq!(report_writes(&c), 0, "a report was written while off");
    assert!(reports(&c).is_empty());

    cm["data"]["reports"] = json!("on");
    store.put("v1", "configmaps", cm).unwrap();
    wait_for("the reports once on again", Duration::from_secs(30), || {
        reports(&c).len() == 10
    })
    .await;
    controller.shutdown().await;
}
