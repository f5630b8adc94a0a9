//! Kyverno's admission semantics as the API server meets them: AdmissionReviews over a real TLS
//! socket, each for a place where kybern once decided differently from Kyverno.

mod common;

use common::{TestServer, config, review, serve, serve_config, temp_dir};
use kybern_webhook::config::Limits;
use serde_json::{Value, json};

fn pod(name: &str, namespace: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    })
}

/// A ClusterPolicy in Enforce mode requiring a `team` label on Pods, with `extra` spliced into
/// its spec.
fn require_team(name: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: {name}
spec:
  validationFailureAction: Enforce
{extra}
  rules:
    - name: check-team
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: "every Pod needs a team label"
        pattern:
          metadata:
            labels:
              team: "?*"
"#
    )
}

async fn validate(srv: &TestServer, object: &Value) -> Value {
    srv.send("/validate", &review("CREATE", object, &Value::Null))
        .await
}

#[tokio::test]
async fn a_policy_with_admission_false_is_not_evaluated_at_admission() {
    let policy = require_team("background-only", "  admission: false\n  background: true");
    let srv = serve(&[("p.yaml", &policy)], Limits::default()).await;
    let resp = validate(&srv, &pod("a", "shop", json!({}))).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp.get("warnings").is_none(), "{resp}");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn webhook_match_conditions_decide_which_requests_a_policy_sees() {
    let policy = require_team(
        "outside-system",
        r#"  webhookConfiguration:
    matchConditions:
      - name: not-system
        expression: "request.namespace != 'system'"
      - name: not-dry-run
        expression: "!request.dryRun"
"#,
    );
    let srv = serve(&[("p.yaml", &policy)], Limits::default()).await;
    // The API server would not have sent this request: the policy is not evaluated, not counted.
    let resp = validate(&srv, &pod("a", "system", json!({}))).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp.get("warnings").is_none(), "{resp}");
    let resp = validate(&srv, &pod("a", "shop", json!({}))).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("every Pod needs a team label"),
        "{resp}"
    );
    srv.running.shutdown().await;
}

#[tokio::test]
async fn a_match_condition_that_fails_to_evaluate_follows_the_failure_policy() {
    let condition = r#"    matchConditions:
      - name: tier
        expression: "object.spec.nothing.here == 'x'"
"#;
    let fail = require_team(
        "fail-closed",
        &format!("  webhookConfiguration:\n    failurePolicy: Fail\n{condition}"),
    );
    let ignore = require_team(
        "fail-open",
        &format!("  webhookConfiguration:\n    failurePolicy: Ignore\n{condition}"),
    );
    let srv = serve(&[("fail.yaml", &fail)], Limits::default()).await;
    let resp = validate(&srv, &pod("a", "shop", json!({"team": "x"}))).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    let message = resp["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("fail-closed") && message.contains("matchConditions"),
        "{message}"
    );
    srv.running.shutdown().await;
    let srv = serve(&[("ignore.yaml", &ignore)], Limits::default()).await;
    let resp = validate(&srv, &pod("a", "shop", json!({}))).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(
        resp["warnings"][0]
            .as_str()
            .unwrap()
            .contains("matchConditions"),
        "{resp}"
    );
    srv.running.shutdown().await;
}

const NO_EXEC_IN_PROD: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: no-exec-in-prod
spec:
  validationFailureAction: Enforce
  background: false
  rules:
    - name: deny-exec
      match:
        any:
          - resources:
              kinds: [Pod/exec]
      validate:
        message: "no exec into {{ request.namespace }}/{{ request.name }}"
        deny:
          conditions:
            any:
              - key: "{{ request.namespace }}"
                operator: Equals
                value: prod
    - name: deny-attach
      match:
        any:
          - resources:
              kinds: [Pod/attach]
              namespaces: [prod]
      validate:
        message: "no attach in prod"
        deny: {}
"#;

/// A CONNECT review as the API server sends it for `kubectl exec`/`attach`: the object is the
/// options, with no metadata; name and namespace are the request's.
fn connect(subresource: &str, kind: &str, name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("connect-{subresource}-{namespace}"),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": subresource,
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "requestSubResource": subresource,
            "name": name,
            "namespace": namespace,
            "operation": "CONNECT",
            "userInfo": {"username": "alice", "uid": "1", "groups": ["system:authenticated"]},
            "object": {"kind": kind, "apiVersion": "v1", "stdin": true, "tty": true,
                "container": "c", "command": ["sh"]},
            "oldObject": null,
            "dryRun": false,
            "options": null
        }
    })
}

#[tokio::test]
async fn connect_requests_keep_the_request_name_and_namespace() {
    let srv = serve(&[("p.yaml", NO_EXEC_IN_PROD)], Limits::default()).await;
    let resp = srv
        .send(
            "/validate",
            &connect("exec", "PodExecOptions", "web-0", "prod"),
        )
        .await;
    assert_eq!(resp["allowed"], false, "{resp}");
    let message = resp["status"]["message"].as_str().unwrap();
    assert!(message.contains("no exec into prod/web-0"), "{message}");
    assert!(message.contains("resource Pod/prod/web-0 "), "{message}");
    let resp = srv
        .send(
            "/validate",
            &connect("attach", "PodAttachOptions", "web-0", "prod"),
        )
        .await;
    assert_eq!(resp["allowed"], false, "{resp}");
    let resp = srv
        .send(
            "/validate",
            &connect("exec", "PodExecOptions", "web-0", "dev"),
        )
        .await;
    assert_eq!(resp["allowed"], true, "{resp}");
    srv.running.shutdown().await;
}

/// A server over `policy` whose context provider holds `objects`.
async fn serve_with_objects(policy: &str, objects: &[Value]) -> TestServer {
    let dir = temp_dir("semantics");
    let pdir = dir.join("policies");
    let cdir = dir.join("cluster");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(pdir.join("p.yaml"), policy).unwrap();
    for (i, o) in objects.iter().enumerate() {
        std::fs::write(cdir.join(format!("{i}.json")), o.to_string()).unwrap();
    }
    let mut cfg = config(&pdir, &dir.join("certs"), Limits::default());
    cfg.cluster_resources = Some(cdir);
    serve_config(cfg, dir).await
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

#[tokio::test]
async fn an_api_call_to_a_resource_the_api_does_not_serve_uses_its_default() {
    let policy = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: budgets
spec:
  validationFailureAction: Enforce
  background: false
  rules:
    - name: need-budget-api
      match:
        any:
          - resources:
              kinds: [Pod]
      context:
        - name: budgets
          apiCall:
            urlPath: "/apis/example.com/v1/namespaces/{{ request.namespace }}/budgets"
            jmesPath: "items | length(@)"
            default: -1
      validate:
        message: "no budget API (budgets: {{ budgets }})"
        deny:
          conditions:
            any:
              - key: "{{ budgets }}"
                operator: Equals
                value: -1
"#;
    let srv = serve_with_objects(policy, &[namespace("shop")]).await;
    let resp = validate(&srv, &pod("a", "shop", json!({}))).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("no budget API (budgets: -1)"),
        "{resp}"
    );
    srv.running.shutdown().await;
}

#[tokio::test]
async fn an_api_call_the_rule_never_reads_cannot_fail_the_request() {
    let policy = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: lazy
spec:
  validationFailureAction: Enforce
  background: false
  rules:
    - name: team-on-create
      match:
        any:
          - resources:
              kinds: [Pod]
      context:
        - name: settings
          apiCall:
            urlPath: "/api/v1/namespaces/{{ request.namespace }}/configmaps/missing"
      preconditions:
        any:
          - key: "{{ request.operation }}"
            operator: Equals
            value: CREATE
          - key: "{{ settings.data.enforce }}"
            operator: Equals
            value: "true"
      validate:
        message: "every Pod needs a team label"
        pattern:
          metadata:
            labels:
              team: "?*"
"#;
    let srv = serve_with_objects(policy, &[namespace("shop")]).await;
    let resp = validate(&srv, &pod("a", "shop", json!({"team": "x"}))).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp.get("warnings").is_none(), "{resp}");
    let resp = validate(&srv, &pod("b", "shop", json!({}))).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    // An UPDATE reads the entry, which cannot load: the rule errors under failurePolicy Fail.
    let old = pod("c", "shop", json!({}));
    let resp = srv
        .send(
            "/validate",
            &review("UPDATE", &pod("c", "shop", json!({})), &old),
        )
        .await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("failed to load context"),
        "{resp}"
    );
    srv.running.shutdown().await;
}

#[tokio::test]
async fn an_equality_anchor_mismatch_denies_under_failure_policy_ignore() {
    // failurePolicy covers rules that cannot be evaluated; a mismatch is a failure and denies.
    let policy = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: host-and-user
spec:
  validationFailureAction: Enforce
  webhookConfiguration:
    failurePolicy: Ignore
  rules:
    - name: no-host-path-non-root
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: "no host paths, and no root"
        pattern:
          spec:
            volumes:
              - X(hostPath): "null"
            securityContext:
              =(runAsNonRoot): true
"#;
    let srv = serve(&[("p.yaml", policy)], Limits::default()).await;
    let mut object = pod("a", "shop", json!({}));
    object["spec"]["securityContext"] = json!({"runAsNonRoot": false});
    object["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
    let resp = validate(&srv, &object).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("failed at path /spec/securityContext/runAsNonRoot/"),
        "{resp}"
    );
    object["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    let resp = validate(&srv, &object).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    srv.running.shutdown().await;
}

/// A PolicyException for `require-team`, in `namespace`.
fn team_exception(name: &str, namespace: &str) -> String {
    format!(
        r#"
apiVersion: kyverno.io/v2
kind: PolicyException
metadata:
  name: {name}
  namespace: {namespace}
spec:
  exceptions:
    - policyName: require-team
      ruleNames: [check-team]
  match:
    any:
      - resources:
          kinds: [Pod]
          names: ["{name}-*"]
"#
    )
}

#[tokio::test]
async fn exceptions_outside_the_allowed_namespaces_are_ignored_and_reported() {
    // CVE-2024-48921: whoever may create a PolicyException in any namespace could switch a
    // policy off. With --exception-namespace only the named namespaces count.
    let dir = temp_dir("exception-ns");
    let pdir = dir.join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("policy.yaml"), require_team("require-team", "")).unwrap();
    std::fs::write(
        pdir.join("trusted.yaml"),
        team_exception("trusted", "kybern-exceptions"),
    )
    .unwrap();
    std::fs::write(pdir.join("rogue.yaml"), team_exception("rogue", "shop")).unwrap();
    let mut cfg = config(&pdir, &dir.join("certs"), Limits::default());
    cfg.exception_namespaces = vec!["kybern-exceptions".into()];
    let srv = serve_config(cfg, dir).await;

    let trusted = validate(&srv, &pod("trusted-1", "shop", json!({}))).await;
    assert_eq!(trusted["allowed"], true, "{trusted}");
    let rogue = validate(&srv, &pod("rogue-1", "shop", json!({}))).await;
    assert_eq!(
        rogue["allowed"], false,
        "an exception outside the allowed namespace counted: {rogue}"
    );
    let status = srv.running.store.status();
    assert!(
        status.errors.iter().any(|e| e.file.ends_with("rogue.yaml")
            && e.message.contains("shop/rogue")
            && e.message.contains("kybern-exceptions")),
        "{:?}",
        status.errors
    );

    // Without the restriction, both count, as in Kyverno by default.
    let open = serve(
        &[
            ("policy.yaml", &require_team("require-team", "")),
            ("rogue.yaml", &team_exception("rogue", "shop")),
        ],
        Limits::default(),
    )
    .await;
    let r = validate(&open, &pod("rogue-1", "shop", json!({}))).await;
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test]
async fn a_denial_asked_with_explain_carries_the_bounded_trace_and_others_do_not() {
    let configmaps = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: configmaps-only
spec:
  validationFailureAction: Enforce
  rules:
    - name: cm
      match:
        any:
          - resources:
              kinds: [ConfigMap]
      validate:
        message: "never"
        deny: {}
"#;
    let srv = serve(
        &[
            ("team.yaml", &require_team("require-team", "")),
            ("excluded.yaml", &require_team("require-team-but-shop", "").replace(
                "              kinds: [Pod]\n",
                "              kinds: [Pod]\n      exclude:\n        any:\n          - resources:\n              namespaces: [shop]\n",
            )),
            ("cm.yaml", configmaps),
        ],
        Limits::default(),
    )
    .await;
    let bad = pod("web", "shop", json!({}));
    let plain = srv
        .send("/validate", &review("CREATE", &bad, &Value::Null))
        .await;
    assert_eq!(plain["allowed"], false);
    assert!(plain["status"].get("details").is_none(), "{plain}");

    let explained = srv
        .send(
            "/validate?timeout=10s&explain",
            &review("CREATE", &bad, &Value::Null),
        )
        .await;
    assert_eq!(explained["allowed"], false);
    assert_eq!(explained["status"]["message"], plain["status"]["message"]);
    let causes: Vec<(String, String)> = explained["status"]["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["reason"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        causes.iter().any(|(r, m)| r == "RuleFailed"
            && m.starts_with("require-team/check-team: fail: ")
            && m.contains("every Pod needs a team label")),
        "{causes:?}"
    );
    assert!(
        causes.iter().any(|(r, m)| r == "RuleExcluded"
            && m.starts_with("require-team-but-shop/check-team: excluded by exclude.any[0]")),
        "{causes:?}"
    );
    // Policies for other kinds are not candidates for a Pod and stay out of the trace.
    assert!(
        !causes.iter().any(|(_, m)| m.contains("configmaps-only")),
        "{causes:?}"
    );
}
