//! `serve --cluster` end to end against the in-repo fake API server: the real kube client,
//! watches, server-side applies and Lease; admission requests over real TLS with the caBundle
//! the leader published as the only root.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_policy_applied_through_the_api_decides_admission() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();

    // Secrets in kybern's namespace; the published caBundle verifies the serving certificate.
    assert!(
        store
            .get(
                "v1",
                "secrets",
                Some(NS),
                "kybern-svc.kybern.svc.kybern-tls-ca"
            )
            .is_some()
    );
    assert!(
        store
            .get(
                "v1",
                "secrets",
                Some(NS),
                "kybern-svc.kybern.svc.kybern-tls-pair"
            )
            .is_some()
    );
    let vwc = live_vwc(&c).await;
    assert_eq!(
        vwc["metadata"]["labels"]["webhook.kybern.io/managed-by"],
        "kybern"
    );
    let bundle = server.ca_bundle.borrow().clone();
    let client = client_from_ca_bundle(
        &base64::engine::general_purpose::STANDARD.encode(&bundle),
        &server,
    );
    ready(&client, &server).await;

    // A policy created through the API: webhook rules and decisions follow within a second.
    let created = Instant::now();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("require-team", "Enforce"),
        )
        .unwrap();
    let mut vwc = Value::Null;
    wait_for("the policy's webhook rules", Duration::from_secs(5), || {
        vwc = store
            .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
            .unwrap_or_default();
        webhook(&vwc, "validate.kybern.svc-fail").is_some()
    })
    .await;
    let hook = webhook(&vwc, "validate.kybern.svc-fail").unwrap().clone();
    assert_eq!(hook["clientConfig"]["service"]["path"], "/validate/fail");
    assert_eq!(hook["clientConfig"]["service"]["namespace"], NS);
    assert_eq!(hook["rules"][0]["resources"], json!(["configmaps"]));
    assert!(hook["namespaceSelector"].to_string().contains(NS));
    // The client built from the live configuration's caBundle reaches the server.
    let client = client_from_ca_bundle(hook["clientConfig"]["caBundle"].as_str().unwrap(), &server);
    let path = "/validate/fail";
    loop {
        let r = send(&client, &server, path, &review("u1", "bad", json!({}))).await;
        if r["allowed"] == false {
            assert_eq!(r["uid"], "u1");
            assert!(
                r["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("team label required")
            );
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(5),
            "the policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = created.elapsed();
    eprintln!("policy created through the API decided admission after {took:?}");
    let ok = send(
        &client,
        &server,
        path,
        &review("u2", "good", json!({"team": "a"})),
    )
    .await;
    assert_eq!(ok["allowed"], true);

    // Status: Ready as Kyverno writes it.
    wait_for("Ready status", Duration::from_secs(5), || {
        store
            .get("kyverno.io/v1", "clusterpolicies", None, "require-team")
            .is_some_and(|p| p["status"]["conditions"][0]["status"] == "True")
    })
    .await;

    // An update changes the decision: Audit admits with a warning.
    let mut audit = require_label("require-team", "Audit");
    audit["metadata"]["resourceVersion"] = store
        .get("kyverno.io/v1", "clusterpolicies", None, "require-team")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    store
        .put("kyverno.io/v1", "clusterpolicies", audit)
        .unwrap();
    let start = Instant::now();
    loop {
        let r = send(&client, &server, path, &review("u3", "bad", json!({}))).await;
        if r["allowed"] == true {
            assert!(
                r["warnings"].to_string().contains("team label required"),
                "{r}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the update never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A broken policy reports its error on its own object and leaves the others working.
    let mut broken = require_label("broken", "Enforce");
    broken["spec"]["rules"][0]["match"]["all"] = json!([{"resources": {"kinds": ["Pod"]}}]);
    store
        .create("kyverno.io/v1", "clusterpolicies", broken)
        .unwrap();
    wait_for("the broken policy's status", Duration::from_secs(5), || {
        store
            .get("kyverno.io/v1", "clusterpolicies", None, "broken")
            .is_some_and(|p| p["status"]["conditions"][0]["status"] == "False")
    })
    .await;
    let p = store
        .get("kyverno.io/v1", "clusterpolicies", None, "broken")
        .unwrap();
    assert!(
        p["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.rules[0]"),
        "{p}"
    );
    let r = send(&client, &server, path, &review("u4", "bad", json!({}))).await;
    assert_eq!(r["allowed"], true, "the broken policy must not decide: {r}");

    // A webhook configuration whose caBundle someone changed (every call would fail TLS) is
    // written back within seconds, not at the next 30 s resync.
    // (Quiet first: a policy event would also rewrite it.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let good_bundle = hook["clientConfig"]["caBundle"].clone();
    let mut edited = store
        .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
        .unwrap();
    for w in edited["webhooks"].as_array_mut().unwrap() {
        w["clientConfig"]["caBundle"] = json!("bm90IHRoZSBDQQ==");
    }
    store
        .put(ADMISSION, "validatingwebhookconfigurations", edited)
        .unwrap();
    let edited_at = Instant::now();
    wait_for(
        "the caBundle to be written back",
        Duration::from_secs(5),
        || {
            store
                .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
                .and_then(|v| webhook(&v, "validate.kybern.svc-fail").cloned())
                .is_some_and(|h| h["clientConfig"]["caBundle"] == good_bundle)
        },
    )
    .await;
    eprintln!(
        "edited caBundle written back after {:?}",
        edited_at.elapsed()
    );

    // Deleting the policies removes their webhook rules.
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "broken")
        .unwrap();
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "require-team")
        .unwrap();
    wait_for("the rules to go", Duration::from_secs(5), || {
        let vwc = store
            .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
            .unwrap_or_default();
        webhook(&vwc, "validate.kybern.svc-fail").is_none()
    })
    .await;
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_exception_applied_through_the_api_takes_effect() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("require-team", "Enforce"),
        )
        .unwrap();
    live_vwc(&c).await;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let path = "/validate/fail";
    let start = Instant::now();
    while send(&client, &server, path, &review("u1", "legacy", json!({}))).await["allowed"] != false
    {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store
        .create(
            "kyverno.io/v2",
            "policyexceptions",
            json!({"apiVersion": "kyverno.io/v2", "kind": "PolicyException",
                "metadata": {"name": "legacy", "namespace": "team"},
                "spec": {"exceptions": [{"policyName": "require-team", "ruleNames": ["check-team"]}],
                    "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "names": ["legacy"]}}]}}}),
        )
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u2", "legacy", json!({}))).await["allowed"] != true
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the exception never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only the excepted resource.
    let other = send(&client, &server, path, &review("u3", "other", json!({}))).await;
    assert_eq!(other["allowed"], false);
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_elect_one_leader_and_fail_over() {
    let c = cluster().await;
    let a = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let b = kybern_cluster::serve::start(options(&c, "b"))
        .await
        .unwrap();
    let (la, lb) = (a.leader.clone(), b.leader.clone());
    wait_for("a leader", Duration::from_secs(20), || {
        *la.borrow() || *lb.borrow()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(*la.borrow() != *lb.borrow(), "exactly one leader");
    let lease = c
        .api
        .store()
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "kybern-admission",
        )
        .unwrap();
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let a_leads = *la.borrow();
    assert_eq!(
        holder,
        if a_leads { "a" } else { "b" },
        "the Lease names the leader"
    );
    // Every receiver of the leader's election must go for its Lease to be released.
    let (leader, follower, follower_rx) = if a_leads {
        drop(la);
        (a, b, lb)
    } else {
        drop(lb);
        (b, a, la)
    };
    // Both serve admission with the same certificate.
    let bundle = leader.ca_bundle.borrow().clone();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bundle);
    for s in [&leader, &follower] {
        ready(&client_from_ca_bundle(&encoded, s), s).await;
    }
    leader.shutdown().await;
    let start = Instant::now();
    wait_for("fail-over", Duration::from_secs(40), || {
        *follower_rx.borrow()
    })
    .await;
    eprintln!("the follower took over after {:?}", start.elapsed());
    // The new leader does leader work: a new policy reaches the webhook configuration.
    c.api
        .store()
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("after-failover", "Enforce"),
        )
        .unwrap();
    let store = c.api.store();
    wait_for(
        "webhook rules from the new leader",
        Duration::from_secs(10),
        || {
            let vwc = store
                .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
                .unwrap_or_default();
            webhook(&vwc, "validate.kybern.svc-fail").is_some()
        },
    )
    .await;
    follower.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_and_expired_watches_recover_without_losing_an_update() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let path = "/validate/fail";
    // A policy created while every watch is down is seen once they come back.
    c.api.faults().drop_watches();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            require_label("p1", "Enforce"),
        )
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u1", "x", json!({}))).await["allowed"] != false {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "update lost after a dropped watch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Expired resource versions (410 Gone) make the watcher list again.
    c.api.faults().expire_watches();
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "p1")
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u2", "x", json!({}))).await["allowed"] != true {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "update lost after 410 Gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_labels_and_config_map_filters_come_from_the_api() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    // A policy selecting namespaces by label: only `tier: prod` namespaces are checked.
    let mut p = require_label("prod-only", "Enforce");
    p["spec"]["rules"][0]["match"]["any"][0]["resources"]["namespaceSelector"] =
        json!({"matchLabels": {"tier": "prod"}});
    store.create("kyverno.io/v1", "clusterpolicies", p).unwrap();
    let path = "/validate/fail";
    let start = Instant::now();
    while send(&client, &server, path, &review("u1", "x", json!({}))).await["allowed"] != false {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "namespace labels not read from the API"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The Kyverno-format ConfigMap: a resourceFilters entry admits without evaluation.
    store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "kybern", "namespace": NS},
                "data": {"resourceFilters": "[ConfigMap,team,*]",
                    "webhooks": r#"[{"objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}]"#}}),
        )
        .unwrap();
    let start = Instant::now();
    while send(&client, &server, path, &review("u2", "x", json!({}))).await["allowed"] != true {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "ConfigMap filters not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its `webhooks` selectors reach the webhook configuration; kybern's namespace stays out.
    wait_for(
        "the ConfigMap's objectSelector",
        Duration::from_secs(5),
        || {
            let vwc = store
                .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
                .unwrap_or_default();
            webhook(&vwc, "validate.kybern.svc-fail").is_some_and(|w| {
                w["objectSelector"]["matchExpressions"][0]["key"] == "skip"
                    && w["namespaceSelector"].to_string().contains("\"kybern\"")
            })
        },
    )
    .await;
    server.shutdown().await;
    c.api.shutdown().await;
}

/// A Namespace created a moment ago may not have reached the watch cache: its labels are asked
/// from the API server, and a lookup that fails is an error left to the webhook's failurePolicy,
/// never an empty set of labels that a `namespaceSelector` would quietly not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_namespace_missing_from_the_cache_is_read_from_the_api_and_a_failed_read_is_an_error() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let store = c.api.store();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let mut p = require_label("prod-only", "Enforce");
    p["spec"]["rules"][0]["match"]["any"][0]["resources"]["namespaceSelector"] =
        json!({"matchLabels": {"tier": "prod"}});
    store.create("kyverno.io/v1", "clusterpolicies", p).unwrap();
    let in_namespace = |uid: &str, ns: &str| {
        let mut r = review(uid, "x", json!({}));
        r["request"]["namespace"] = json!(ns);
        r["request"]["object"]["metadata"]["namespace"] = json!(ns);
        r
    };
    // The policy is loaded once a labelled, cached namespace denies.
    let mut team = store.get("v1", "namespaces", None, "team").unwrap();
    team["metadata"]["labels"] = json!({"tier": "prod"});
    store.put("v1", "namespaces", team).unwrap();
    let path = "/validate/fail";
    let start = Instant::now();
    while send(&client, &server, path, &in_namespace("u0", "team")).await["allowed"] != false {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "policy not loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The Namespace watch lags: `fresh` exists on the API server only.
    c.api.faults().hold_watch_events("namespaces");
    store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "fresh", "labels": {"tier": "prod"}}}),
        )
        .unwrap();
    let answer = send(&client, &server, path, &in_namespace("u1", "fresh")).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    assert!(
        c.api
            .faults()
            .requests()
            .iter()
            .any(|(m, p)| m == "GET" && p.starts_with("/api/v1/namespaces/fresh")),
        "the namespace was not asked for"
    );

    // Reading it fails: an error status (the API server applies the failurePolicy), not a pass.
    store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "broken", "labels": {"tier": "prod"}}}),
        )
        .unwrap();
    c.api
        .faults()
        .fail(Some("GET"), "/api/v1/namespaces/broken", 500, 100);
    let resp = client
        .post(url(&server, path))
        .json(&in_namespace("u2", "broken"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("namespace \"broken\" could not be read"),
        "{body}"
    );

    // Once the watch catches up, the cache answers: reading the namespace still fails.
    c.api.faults().release_watch_events("namespaces");
    let start = Instant::now();
    loop {
        let resp = client
            .post(url(&server, path))
            .json(&in_namespace("u3", "broken"))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(answer["response"]["allowed"], false, "{answer}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "watch not caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
    c.api.shutdown().await;
}

/// Every CEL policy reads its request's `namespaceObject`: it comes from the Namespace watch,
/// whole (annotations too), with no API call per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_objects_of_cel_policies_come_from_the_watch_not_from_api_calls() {
    let c = cluster().await;
    let store = c.api.store();
    let mut team = store.get("v1", "namespaces", None, "team").unwrap();
    team["metadata"]["annotations"] = json!({"owner": "platform"});
    store.put("v1", "namespaces", team).unwrap();
    store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "other", "annotations": {"owner": "someone"}}}),
        )
        .unwrap();
    store
        .create(
            "policies.kyverno.io/v1",
            "validatingpolicies",
            json!({
                "apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy",
                "metadata": {"name": "platform-namespaces"},
                "spec": {
                    "validationActions": ["Deny"],
                    "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                        "operations": ["CREATE"], "resources": ["configmaps"]}]},
                    "validations": [{
                        "expression": "namespaceObject.metadata.?annotations.owner.orValue('') == 'platform'",
                        "message": "only in namespaces the platform team owns"
                    }]
                }
            }),
        )
        .unwrap();
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    live_vwc(&c).await;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let in_ns = |uid: &str, ns: &str| {
        let mut r = review(uid, "cm", json!({}));
        r["request"]["namespace"] = json!(ns);
        r["request"]["object"]["metadata"]["namespace"] = json!(ns);
        r
    };
    // The policy loads asynchronously: wait for its first denial.
    let start = Instant::now();
    while send(&client, &server, "/validate", &in_ns("u0", "other")).await["allowed"] != false {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the policy never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.api.faults().reset();
    let allowed = send(&client, &server, "/validate", &in_ns("u1", "team")).await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
    let denied = send(&client, &server, "/validate", &in_ns("u2", "other")).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(
        denied["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("only in namespaces the platform team owns"),
        "{denied}"
    );
    let namespace_gets: Vec<_> = c
        .api
        .faults()
        .requests()
        .into_iter()
        .filter(|(m, p)| {
            m == "GET" && p.starts_with("/api/v1/namespaces/") && !p.contains("/configmaps")
        })
        .collect();
    assert!(namespace_gets.is_empty(), "{namespace_gets:?}");
    server.shutdown().await;
    c.api.shutdown().await;
}
