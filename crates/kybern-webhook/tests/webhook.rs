//! The webhook over real TLS sockets: decisions, messages, warnings, limits and reloads.

mod common;

use common::{TestServer, review, serve};
use kybern_webhook::config::Limits;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUIRE_TEAM: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-team
spec:
  validationFailureAction: Enforce
  rules:
    - name: check-team
      match:
        any:
          - resources:
              kinds: [Pod]
      exclude:
        any:
          - subjects:
              - kind: User
                name: admin
      validate:
        message: "every Pod needs a team label"
        pattern:
          metadata:
            labels:
              team: "?*"
"#;

const AUDIT_COST: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: audit-cost
spec:
  validationFailureAction: Audit
  rules:
    - name: check-cost
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: "a cost label is recommended"
        pattern:
          metadata:
            labels:
              cost: "?*"
"#;

const DELETE_GUARD: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: delete-guard
spec:
  validationFailureAction: Enforce
  rules:
    - name: protected
      match:
        any:
          - resources:
              kinds: [Pod]
              operations: [DELETE]
      validate:
        message: "protected Pods cannot be deleted"
        deny:
          conditions:
            any:
              - key: "{{ request.oldObject.metadata.labels.protected || '' }}"
                operator: Equals
                value: "true"
"#;

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    })
}

async fn standard() -> TestServer {
    serve(
        &[
            ("team.yaml", REQUIRE_TEAM),
            ("cost.yaml", AUDIT_COST),
            ("delete.yaml", DELETE_GUARD),
        ],
        Limits::default(),
    )
    .await
}

#[tokio::test]
async fn a_compliant_pod_is_admitted_without_warnings() {
    let s = standard().await;
    let r = s
        .send(
            "/validate",
            &review(
                "CREATE",
                &pod("ok", json!({"team": "a", "cost": "b"})),
                &Value::Null,
            ),
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("status").is_none());
    assert!(r.get("warnings").is_none(), "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn an_enforce_violation_is_denied_with_kyvernos_message() {
    let s = standard().await;
    for path in ["/validate", "/validate/fail"] {
        let r = s
            .send(
                path,
                &review("CREATE", &pod("bad", json!({"cost": "b"})), &Value::Null),
            )
            .await;
        assert_eq!(r["allowed"], false, "{r}");
        assert_eq!(r["status"]["status"], "Failure");
        let msg = r["status"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(
                "\n\nresource Pod/shop/bad was blocked due to the following policies \n\n"
            ),
            "{msg:?}"
        );
        assert!(msg.contains("require-team:\n  check-team: "), "{msg}");
        assert!(msg.contains("every Pod needs a team label"), "{msg}");
    }
    // The policy's failurePolicy is Fail: the /ignore webhook does not serve it.
    let r = s
        .send(
            "/validate/ignore",
            &review("CREATE", &pod("bad", json!({})), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn audit_failures_are_allowed_with_warnings() {
    let s = standard().await;
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("a", json!({"team": "x"})), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{r}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with("policy audit-cost.check-cost: "),
        "{r}"
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn delete_is_evaluated_on_the_old_object() {
    let s = standard().await;
    let protected = pod("p", json!({"team": "a", "protected": "true"}));
    let r = s
        .send("/validate", &review("DELETE", &Value::Null, &protected))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("delete-guard")
    );
    let plain = pod("q", json!({"team": "a"}));
    let r = s
        .send("/validate", &review("DELETE", &Value::Null, &plain))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    // The mutating webhook does not handle DELETE.
    let r = s
        .send("/mutate", &review("DELETE", &Value::Null, &protected))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn update_sees_both_objects() {
    let s = standard().await;
    let old = pod("u", json!({"team": "a"}));
    let new = pod("u", json!({}));
    let r = s.send("/validate", &review("UPDATE", &new, &old)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let r = s.send("/validate", &review("UPDATE", &old, &new)).await;
    assert_eq!(r["allowed"], true, "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn dry_run_gets_the_same_decision_and_is_labelled_in_metrics() {
    let s = standard().await;
    let mut rv = review("CREATE", &pod("d", json!({})), &Value::Null);
    rv["request"]["dryRun"] = json!(true);
    let r = s.send("/validate", &rv).await;
    assert_eq!(r["allowed"], false, "{r}");
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dry_run=\"true\""), "{metrics}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn user_info_drives_subject_exclusions() {
    let s = standard().await;
    let mut rv = review("CREATE", &pod("x", json!({"cost": "1"})), &Value::Null);
    rv["request"]["userInfo"]["username"] = json!("admin");
    let r = s.send("/validate", &rv).await;
    assert_eq!(r["allowed"], true, "{r}");
    rv["request"]["userInfo"]["username"] = json!("bob");
    let r = s.send("/validate", &rv).await;
    assert_eq!(r["allowed"], false, "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn mutate_without_changes_returns_no_patch() {
    let s = standard().await;
    let r = s
        .send(
            "/mutate",
            &review("CREATE", &pod("m", json!({})), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r.get("patch").is_none() && r.get("patchType").is_none(),
        "{r}"
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_clear_client_errors() {
    let s = standard().await;
    let good =
        serde_json::to_string(&review("CREATE", &pod("m", json!({})), &Value::Null)).unwrap();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let no_uid = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}).to_string();
    let no_request =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string();
    let v1beta1 = good.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    let bad_op = good.replace("\"CREATE\"", "\"EXPLODE\"");
    let dup = good.replacen(
        "\"kind\":\"Pod\"",
        "\"kind\":\"Pod\",\"kind\":\"Secret\"",
        1,
    );
    let cases: Vec<(&str, &str, Option<&str>, String, u16)> = vec![
        ("GET", "/validate", None, String::new(), 405),
        (
            "PUT",
            "/validate",
            Some("application/json"),
            good.clone(),
            405,
        ),
        (
            "POST",
            "/nowhere",
            Some("application/json"),
            good.clone(),
            404,
        ),
        (
            "POST",
            "//validate",
            Some("application/json"),
            good.clone(),
            404,
        ),
        ("POST", "/validate", Some("text/plain"), good.clone(), 415),
        ("POST", "/validate", None, good.clone(), 415),
        (
            "POST",
            "/validate",
            Some("application/json"),
            String::new(),
            400,
        ),
        (
            "POST",
            "/validate",
            Some("application/json"),
            "{not json".into(),
            417,
        ),
        (
            "POST",
            "/validate",
            Some("application/json"),
            format!("{good}garbage"),
            417,
        ),
        (
            "POST",
            "/validate",
            Some("application/json"),
            "\u{feff}{}".into(),
            417,
        ),
        ("POST", "/validate", Some("application/json"), deep, 400),
        ("POST", "/validate", Some("application/json"), no_uid, 400),
        (
            "POST",
            "/validate",
            Some("application/json"),
            no_request,
            400,
        ),
        ("POST", "/validate", Some("application/json"), v1beta1, 400),
        ("POST", "/validate", Some("application/json"), bad_op, 400),
        ("POST", "/validate", Some("application/json"), dup, 417),
        (
            "POST",
            "/validate?timeout=garbage",
            Some("application/json"),
            good.clone(),
            200,
        ),
        (
            "POST",
            "/validate?timeout=999999s",
            Some("application/json"),
            good.clone(),
            200,
        ),
    ];
    for (method, path, ctype, body, want) in cases {
        let mut req = s
            .client
            .request(method.parse().unwrap(), format!("{}{path}", s.base))
            .body(body.clone());
        if let Some(ct) = ctype {
            req = req.header("content-type", ct);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(
            status, want,
            "{method} {path} {ctype:?} {:.80}: {text}",
            body
        );
        if want != 200 {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], want, "{text}");
            assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        }
    }
    // Still serving.
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("ok", json!({"team": "a"})), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], true);
    s.running.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_cap_get_413_and_a_large_legitimate_update_works() {
    let s = standard().await;
    let big = "x".repeat(8 * 1024 * 1024);
    let res = s
        .client
        .post(format!("{}/validate", s.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    // The server may answer 413 before the client finished sending, then close.
    if let Ok(res) = res {
        assert_eq!(res.status(), 413);
    }
    // 2 x 3 MiB: an UPDATE of an object at the API server's size limit.
    let blob = "y".repeat(3 * 1024 * 1024);
    let mut old = pod("big", json!({"team": "a"}));
    old["metadata"]["annotations"] = json!({"blob": blob});
    let r = s.send("/validate", &review("UPDATE", &old, &old)).await;
    assert_eq!(r["allowed"], true, "{}", r["status"]);
    s.running.shutdown().await;
}

async fn raw_tls(s: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls;
    let ca = s.running.ca_pem.clone().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.running.local_addr)
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], limits).await;
    // Headers that never finish: the connection is closed.
    let mut tls = raw_tls(&s).await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slow headers were not cut off");
    // A body that never arrives: 408.
    let mut tls = raw_tls(&s).await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(s.running.local_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET /health/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_missed_deadline_applies_the_failure_policy() {
    let ignore = REQUIRE_TEAM
        .replace("name: require-team", "name: require-team-ignore")
        .replace("spec:\n", "spec:\n  failurePolicy: Ignore\n");
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], Limits::default()).await;
    let rv = review("CREATE", &pod("t", json!({"team": "a"})), &Value::Null);
    let r = s.send("/validate?timeout=1ns", &rv).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("failurePolicy Fail"),
        "{r}"
    );
    s.running.shutdown().await;
    let s = serve(&[("team.yaml", &ignore)], Limits::default()).await;
    let r = s.send("/validate?timeout=1ns", &rv).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("failurePolicy Ignore"),
        "{r}"
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn health_and_metrics_endpoints() {
    let s = standard().await;
    let get = |p: &str| s.client.get(format!("{}{p}", s.base)).send();
    assert_eq!(get("/health/liveness").await.unwrap().status(), 200);
    let ready: Value = get("/health/readiness")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["policies"], 3);
    // Twice: the same series counts both, and each rule keeps its own series.
    for _ in 0..2 {
        s.send(
            "/validate",
            &review("CREATE", &pod("m", json!({})), &Value::Null),
        )
        .await;
    }
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    let failing: Vec<&str> = m
        .lines()
        .filter(|l| {
            l.starts_with("kyverno_policy_results_total{")
                && l.contains("policy_name=\"require-team\"")
                && l.contains("rule_result=\"fail\"")
        })
        .collect();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert!(failing.iter().all(|l| l.ends_with(" 2")), "{failing:?}");
    for name in [
        "kyverno_admission_requests_total{",
        "kyverno_admission_review_duration_seconds_bucket{",
        "kyverno_policy_results_total{",
        "kyverno_policy_execution_duration_seconds_bucket{",
    ] {
        assert!(m.contains(name), "{name} missing");
    }
    assert!(m.contains("policy_name=\"require-team\""));
    assert!(m.contains("rule_result=\"fail\""));
    assert!(m.contains("request_allowed=\"false\""));
    s.running.shutdown().await;
}

#[tokio::test]
async fn an_invalid_file_is_reported_and_its_last_good_version_stays() {
    let s = standard().await;
    let file = s.dir.join("policies/team.yaml");
    std::fs::write(&file, "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata: {name: require-team}\nspec:\n  rules: [{name: x, bogus: 1}]\n").unwrap();
    let mut ready = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = s
            .client
            .get(format!("{}/health/readiness", s.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !ready["errors"].as_array().unwrap().is_empty() {
            break;
        }
    }
    assert!(
        ready["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("team.yaml"),
        "{ready}"
    );
    assert_eq!(ready["policies"], 3, "{ready}");
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("b", json!({})), &Value::Null),
        )
        .await;
    assert_eq!(
        r["allowed"], false,
        "the last good version must stay in force: {r}"
    );
    let m = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("kybern_policy_load_errors_total{file="), "{m}");
    s.running.shutdown().await;
}

fn versioned_policies(version: &str) -> String {
    let one = |name: &str| {
        format!(
            "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: {name}\nspec:\n  validationFailureAction: Enforce\n  rules:\n    - name: r\n      match:\n        any:\n          - resources:\n              kinds: [ConfigMap]\n      validate:\n        message: \"{name} {version}\"\n        pattern:\n          metadata:\n            labels:\n              ok: \"?*\"\n"
        )
    };
    format!("{}---\n{}", one("first"), one("second"))
}

#[tokio::test]
async fn reloads_under_load_never_show_an_empty_or_mixed_set() {
    let s = Arc::new(
        serve(
            &[("set.yaml", &versioned_policies("v1"))],
            Limits::default(),
        )
        .await,
    );
    let pdir = s.dir.join("policies");
    let writer = {
        let pdir = pdir.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let v = if i % 2 == 0 { "v2" } else { "v1" };
                let tmp = pdir.join("set.tmp");
                std::fs::write(&tmp, versioned_policies(v)).unwrap();
                std::fs::rename(&tmp, pdir.join("set.yaml")).unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}});
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = Arc::clone(&s);
        let cm = cm.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..40 {
                let r = s
                    .send("/validate", &review("CREATE", &cm, &Value::Null))
                    .await;
                assert_eq!(
                    r["allowed"], false,
                    "an empty set admitted the request: {r}"
                );
                let msg = r["status"]["message"].as_str().unwrap();
                let v1 = msg.contains("first v1") && msg.contains("second v1");
                let v2 = msg.contains("first v2") && msg.contains("second v2");
                assert!(v1 ^ v2, "mixed or partial set: {msg}");
                seen.insert(if v1 { "v1" } else { "v2" });
            }
            seen
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    writer.await.unwrap();
    assert!(
        s.running.store.snapshot().generation > 2,
        "no reload happened"
    );
    eprintln!("versions seen: {seen:?}");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart() {
    let s = standard().await;
    let other = common::temp_dir("rotated");
    let fresh = kybern_webhook::certs::ensure_generated(
        &other,
        &["localhost".into()],
        &["127.0.0.1".parse().unwrap()],
    )
    .unwrap();
    let certs = s.dir.join("certs");
    std::fs::copy(&fresh.key, certs.join("tls.key.new")).unwrap();
    std::fs::copy(&fresh.cert, certs.join("tls.crt.new")).unwrap();
    std::fs::rename(certs.join("tls.key.new"), certs.join("tls.key")).unwrap();
    std::fs::rename(certs.join("tls.crt.new"), certs.join("tls.crt")).unwrap();
    let client = common::client_for(&fresh.ca_pem);
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if client
            .get(format!("{}/health/liveness", s.base))
            .send()
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "the new certificate was not served");
    s.running.shutdown().await;
}

const DEFAULTS: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: defaults
spec:
  rules:
    - name: add-managed-by
      match:
        any:
          - resources:
              kinds: [Pod]
      mutate:
        patchStrategicMerge:
          metadata:
            labels:
              +(managed-by): kybern
    - name: default-run-as-non-root
      match:
        any:
          - resources:
              kinds: [Pod]
      mutate:
        patchStrategicMerge:
          spec:
            securityContext:
              +(runAsNonRoot): true
"#;

#[tokio::test]
async fn mutate_returns_a_base64_json_patch_that_yields_the_mutated_object() {
    use base64::Engine as _;
    let s = serve(&[("defaults.yaml", DEFAULTS)], Limits::default()).await;
    let mutated = |labels: Value, security: Value| {
        let mut p = pod("m", labels);
        p["spec"]["securityContext"] = security;
        p
    };
    // (case, pod sent, wanted RFC 6902 operations, wanted object after applying them)
    let cases = [
        (
            "both defaults added",
            pod("m", json!({"team": "a"})),
            json!([
                {"op": "add", "path": "/metadata/labels/managed-by", "value": "kybern"},
                {"op": "add", "path": "/spec/securityContext", "value": {"runAsNonRoot": true}},
            ]),
            mutated(
                json!({"team": "a", "managed-by": "kybern"}),
                json!({"runAsNonRoot": true}),
            ),
        ),
        (
            "present values are kept",
            mutated(json!({"managed-by": "helm"}), json!({"runAsUser": 1000})),
            json!([
                {"op": "add", "path": "/spec/securityContext/runAsNonRoot", "value": true},
            ]),
            mutated(
                json!({"managed-by": "helm"}),
                json!({"runAsUser": 1000, "runAsNonRoot": true}),
            ),
        ),
    ];
    for (case, sent, want_ops, want_object) in cases {
        let r = s
            .send("/mutate", &review("CREATE", &sent, &Value::Null))
            .await;
        assert_eq!(r["allowed"], true, "{case}: {r}");
        assert_eq!(r["patchType"], "JSONPatch", "{case}: {r}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap();
        let ops: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ops, want_ops, "{case}");
        let patch: json_patch::Patch = serde_json::from_value(ops).unwrap();
        let mut object = sent.clone();
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(object, want_object, "{case}");
    }
    s.running.shutdown().await;
}

#[tokio::test]
async fn configured_filters_and_exclusions_admit_without_evaluation() {
    use kybern_webhook::filters::AdmissionFilters;
    let dir = common::temp_dir("filters");
    let pdir = dir.join("policies");
    let cdir = dir.join("cluster");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(pdir.join("team.yaml"), REQUIRE_TEAM).unwrap();
    std::fs::write(
        cdir.join("rbac.json"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "admins"},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "platform-admins"}]})
        .to_string(),
    )
    .unwrap();
    let mut cfg = common::config(&pdir, &dir.join("certs"), Limits::default());
    cfg.cluster_resources = Some(cdir);
    cfg.filters = AdmissionFilters::from_config_map(&json!({"kind": "ConfigMap",
        "data": {"resourceFilters": "[Event,*,*] [*/*,kube-system,*]",
            "excludeClusterRoles": "cluster-admin"}}))
    .unwrap();
    let s = common::serve_config(cfg, dir).await;
    let bad = pod("p", json!({}));
    let r = s
        .send("/validate", &review("CREATE", &bad, &Value::Null))
        .await;
    assert_eq!(r["allowed"], false, "evaluated by default: {r}");

    let mut system = bad.clone();
    system["metadata"]["namespace"] = json!("kube-system");
    let r = s
        .send("/validate", &review("CREATE", &system, &Value::Null))
        .await;
    assert_eq!(r["allowed"], true, "kube-system is filtered: {r}");

    // The ClusterRoleBinding makes the group's members cluster-admins, who are excluded.
    let mut rv = review("CREATE", &bad, &Value::Null);
    rv["request"]["userInfo"]["groups"] = json!(["platform-admins", "system:authenticated"]);
    let r = s.send("/validate", &rv).await;
    assert_eq!(r["allowed"], true, "cluster-admin is excluded: {r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn the_configmap_file_is_reread_when_it_changes() {
    let dir = common::temp_dir("configmap");
    let pdir = dir.join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("team.yaml"), REQUIRE_TEAM).unwrap();
    let cm = dir.join("kyverno.yaml");
    let write = |filters: &str| {
        std::fs::write(
            &cm,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kyverno\ndata:\n  resourceFilters: '{filters}'\n"
            ),
        )
        .unwrap();
    };
    write("[Pod,shop,*]");
    let mut cfg = common::config(&pdir, &dir.join("certs"), Limits::default());
    cfg.config_map = Some(cm.clone());
    let s = common::serve_config(cfg, dir).await;
    let bad = pod("p", json!({}));
    let decide = || async {
        s.send("/validate", &review("CREATE", &bad, &Value::Null))
            .await["allowed"]
            .clone()
    };
    assert_eq!(decide().await, true, "filtered by the first version");

    // A new version without the filter takes effect; the mtime must move on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write("[Event,*,*]");
    let mut reloaded = false;
    for _ in 0..100 {
        if decide().await == false {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reloaded, "the changed ConfigMap was not applied");

    // A broken version keeps the last good filters.
    std::fs::write(
        &cm,
        "kind: ConfigMap\ndata:\n  resourceFilters: '[Pod,shop'\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(decide().await, false);
    s.running.shutdown().await;
}

const REQUIRE_DIGEST: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-digest
spec:
  rules:
    - name: check-digest
      match:
        any:
          - resources:
              kinds: [Pod]
      verifyImages:
        - imageReferences: ["*"]
          mutateDigest: false
          required: false
          verifyDigest: true
          failureAction: Enforce
"#;

#[tokio::test]
async fn verify_images_digest_checks_deny_unpinned_images() {
    let s = serve(&[("digest.yaml", REQUIRE_DIGEST)], Limits::default()).await;
    let unpinned = pod("p", json!({"team": "a"}));
    let r = s
        .send("/validate", &review("CREATE", &unpinned, &Value::Null))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("require-digest") && message.contains("missing digest for nginx:1.27"),
        "{message}"
    );
    let mut pinned = unpinned.clone();
    pinned["spec"]["containers"][0]["image"] = json!("nginx:1.27@sha256:0123456789abcdef");
    let r = s
        .send("/validate", &review("CREATE", &pinned, &Value::Null))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    s.running.shutdown().await;
}
