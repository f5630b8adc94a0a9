//! Background work end to end on the fake API server: admission queues generate work as
//! UpdateRequests, `kybern controller` writes the generated objects and keeps them in sync.

mod common;

use base64::Engine as _;
use common::*;
use kybern_cluster::names::{Names, Scheme};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ADD_DEFAULTS: &str = "add-namespace-defaults";

fn generate_policy() -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": ADD_DEFAULTS},
        "spec": {"rules": [
            {"name": "default-deny",
             "match": {"any": [{"resources": {"kinds": ["Namespace"], "selector": {"matchLabels": {"defaults": "yes"}}}}]},
             "generate": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "name": "default-deny", "namespace": "{{request.object.metadata.name}}", "synchronize": true,
                "data": {"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}}},
            {"name": "default-quota",
             "match": {"any": [{"resources": {"kinds": ["Namespace"], "selector": {"matchLabels": {"defaults": "yes"}}}}]},
             "generate": {"apiVersion": "v1", "kind": "ResourceQuota",
                "name": "default-resourcequota", "namespace": "{{request.object.metadata.name}}", "synchronize": true,
                "data": {"spec": {"hard": {"requests.cpu": "4", "requests.memory": "16Gi",
                    "limits.cpu": "4", "limits.memory": "16Gi"}}}}},
            {"name": "quota",
             "match": {"any": [{"resources": {"kinds": ["Namespace"], "selector": {"matchLabels": {"defaults": "yes"}}}}]},
             "generate": {"apiVersion": "v1", "kind": "ConfigMap",
                "name": "quota-settings", "namespace": "{{request.object.metadata.name}}", "synchronize": false,
                "data": {"data": {"cpu": "4"}}}}
        ]}
    })
}

fn namespace_review(ns: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("req-{}", ns["metadata"]["uid"].as_str().unwrap()),
            "kind": {"group": "", "version": "v1", "kind": "Namespace"},
            "resource": {"group": "", "version": "v1", "resource": "namespaces"},
            "name": ns["metadata"]["name"], "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": ns, "dryRun": false
        }
    })
}

/// The policy library's add-network-policy, as a GeneratingPolicy with `evaluation` as given.
fn network_policy_gpol(evaluation: Value) -> Value {
    json!({
        "apiVersion": "policies.kyverno.io/v1alpha1", "kind": "GeneratingPolicy",
        "metadata": {"name": "add-networkpolicy"},
        "spec": {
            "evaluation": evaluation,
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["namespaces"]}]},
            "variables": [
                {"name": "targetNs", "expression": "object.metadata.name"},
                {"name": "downstream", "expression": "[{\"kind\": dyn(\"NetworkPolicy\"), \"apiVersion\": dyn(\"networking.k8s.io/v1\"), \"metadata\": dyn({\"name\": \"default-deny\"}), \"spec\": dyn({\"podSelector\": dyn({}), \"policyTypes\": dyn([\"Ingress\", \"Egress\"])})}]"}
            ],
            "generate": [{"expression": "generator.Apply(variables.targetNs, variables.downstream)"}]
        }
    })
}

fn controller_options(
    c: &Cluster,
    identity: &str,
) -> kybern_cluster::background::controller::ControllerOptions {
    kybern_cluster::background::controller::ControllerOptions {
        kubeconfig: Some(c.kubeconfig.clone()),
        names: Names::new(Scheme::Kybern, NS, None),
        identity: identity.to_string(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        exception_namespaces: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_namespace_gets_its_generated_objects_kept_in_sync() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "c1"))
        .await
        .unwrap();
    let store = c.api.store();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    store
        .create("kyverno.io/v1", "clusterpolicies", generate_policy())
        .unwrap();
    // The trigger's webhook rule is registered.
    wait_for(
        "the Namespace trigger's webhook rule",
        Duration::from_secs(15),
        || {
            let vwc = store
                .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
                .unwrap_or_default();
            vwc.to_string().contains("\"namespaces\"")
        },
    )
    .await;
    wait_for("the controller to lead", Duration::from_secs(20), || {
        *controller.leader.borrow()
    })
    .await;

    // The API server creates the Namespace after kybern admitted it.
    let ns = store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "team-a", "labels": {"defaults": "yes"}}}),
        )
        .unwrap();
    let created = Instant::now();
    // Until the policy is in the store, the request finds no generate rule: send it again.
    wait_for_async(Duration::from_secs(15), || async {
        let r = send(&client, &server, "/validate/fail", &namespace_review(&ns)).await;
        assert_eq!(r["allowed"], true);
        store
            .list("kyverno.io/v2", "updaterequests", Some(NS))
            .len()
            + store
                .list("networking.k8s.io/v1", "networkpolicies", Some("team-a"))
                .len()
            > 0
    })
    .await;
    wait_for(
        "the generated NetworkPolicy, ResourceQuota and ConfigMap",
        Duration::from_secs(20),
        || {
            store
                .get(
                    "networking.k8s.io/v1",
                    "networkpolicies",
                    Some("team-a"),
                    "default-deny",
                )
                .is_some()
                && store
                    .get(
                        "v1",
                        "resourcequotas",
                        Some("team-a"),
                        "default-resourcequota",
                    )
                    .is_some()
                && store
                    .get("v1", "configmaps", Some("team-a"), "quota-settings")
                    .is_some()
        },
    )
    .await;
    eprintln!(
        "Namespace admitted to generated objects: {:?}",
        created.elapsed()
    );
    let np = store
        .get(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("team-a"),
            "default-deny",
        )
        .unwrap();
    assert_eq!(
        np["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kyverno"
    );
    assert_eq!(
        np["metadata"]["labels"]["generate.kyverno.io/policy-name"],
        ADD_DEFAULTS
    );
    assert_eq!(
        np["metadata"]["labels"]["generate.kyverno.io/trigger-uid"],
        ns["metadata"]["uid"]
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    // Finished work leaves no UpdateRequest behind.
    wait_for(
        "the UpdateRequests to be deleted",
        Duration::from_secs(15),
        || {
            store
                .list("kyverno.io/v2", "updaterequests", Some(NS))
                .is_empty()
        },
    )
    .await;

    // synchronize: true puts back a deleted or edited object.
    store
        .delete(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("team-a"),
            "default-deny",
        )
        .unwrap();
    wait_for(
        "the deleted NetworkPolicy to come back",
        Duration::from_secs(15),
        || {
            store
                .get(
                    "networking.k8s.io/v1",
                    "networkpolicies",
                    Some("team-a"),
                    "default-deny",
                )
                .is_some()
        },
    )
    .await;
    store
        .merge_patch(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("team-a"),
            "default-deny",
            json!({"spec": {"policyTypes": ["Ingress"]}}),
        )
        .unwrap();
    wait_for(
        "the edited NetworkPolicy to be restored",
        Duration::from_secs(15),
        || {
            store
                .get(
                    "networking.k8s.io/v1",
                    "networkpolicies",
                    Some("team-a"),
                    "default-deny",
                )
                .is_some_and(|n| n["spec"]["policyTypes"] == json!(["Ingress", "Egress"]))
        },
    )
    .await;
    // The quota too: edited, it is put back.
    store
        .merge_patch(
            "v1",
            "resourcequotas",
            Some("team-a"),
            "default-resourcequota",
            json!({"spec": {"hard": {"requests.cpu": "400"}}}),
        )
        .unwrap();
    wait_for(
        "the edited ResourceQuota to be restored",
        Duration::from_secs(15),
        || {
            store
                .get(
                    "v1",
                    "resourcequotas",
                    Some("team-a"),
                    "default-resourcequota",
                )
                .is_some_and(|q| q["spec"]["hard"]["requests.cpu"] == "4")
        },
    )
    .await;
    // A put-back whose write fails is retried (queued as an UpdateRequest), not dropped.
    c.api.faults().fail(
        Some("PATCH"),
        "/resourcequotas/default-resourcequota",
        500,
        2,
    );
    store
        .merge_patch(
            "v1",
            "resourcequotas",
            Some("team-a"),
            "default-resourcequota",
            json!({"spec": {"hard": {"requests.cpu": "300"}}}),
        )
        .unwrap();
    wait_for(
        "the edited ResourceQuota to be restored after failed writes",
        Duration::from_secs(20),
        || {
            store
                .get(
                    "v1",
                    "resourcequotas",
                    Some("team-a"),
                    "default-resourcequota",
                )
                .is_some_and(|q| q["spec"]["hard"]["requests.cpu"] == "4")
        },
    )
    .await;
    assert!(
        c.api
            .faults()
            .requests()
            .iter()
            .filter(|(m, p)| m == "PATCH" && p.contains("/resourcequotas/default-resourcequota"))
            .count()
            >= 3,
        "the failed writes were not retried"
    );
    // The rule changes: what it wrote follows.
    let mut policy = store
        .get("kyverno.io/v1", "clusterpolicies", None, ADD_DEFAULTS)
        .unwrap();
    policy["spec"]["rules"][1]["generate"]["data"]["spec"]["hard"]["requests.cpu"] = json!("8");
    store
        .put("kyverno.io/v1", "clusterpolicies", policy)
        .unwrap();
    wait_for(
        "the ResourceQuota to follow its changed rule",
        Duration::from_secs(20),
        || {
            store
                .get(
                    "v1",
                    "resourcequotas",
                    Some("team-a"),
                    "default-resourcequota",
                )
                .is_some_and(|q| q["spec"]["hard"]["requests.cpu"] == "8")
        },
    )
    .await;
    // synchronize: false leaves its object alone.
    store
        .merge_patch(
            "v1",
            "configmaps",
            Some("team-a"),
            "quota-settings",
            json!({"data": {"cpu": "8"}}),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store
            .get("v1", "configmaps", Some("team-a"), "quota-settings")
            .unwrap()["data"]["cpu"],
        "8"
    );
    // A Namespace the rules do not select gets nothing.
    let other = store
        .create("v1", "namespaces", json!({"metadata": {"name": "plain"}}))
        .unwrap();
    send(
        &client,
        &server,
        "/validate/fail",
        &namespace_review(&other),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        store
            .list("networking.k8s.io/v1", "networkpolicies", Some("plain"))
            .is_empty()
    );

    controller.shutdown().await;
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_queued_while_no_controller_runs_is_done_by_the_next_one() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create("kyverno.io/v1", "clusterpolicies", generate_policy())
        .unwrap();
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let ns = store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "team-b", "labels": {"defaults": "yes"}}}),
        )
        .unwrap();
    wait_for_async(Duration::from_secs(15), || async {
        send(&client, &server, "/validate/fail", &namespace_review(&ns)).await;
        !store
            .list("kyverno.io/v2", "updaterequests", Some(NS))
            .is_empty()
    })
    .await;
    // The same request seen again (another webhook path, another replica) queues nothing more.
    send(&client, &server, "/validate/fail", &namespace_review(&ns)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = store.list("kyverno.io/v2", "updaterequests", Some(NS));
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["spec"]["policy"], ADD_DEFAULTS);
    assert!(
        store
            .list("networking.k8s.io/v1", "networkpolicies", Some("team-b"))
            .is_empty()
    );
    // A controller started later finishes the work; its metrics show the queue.
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "c2"))
        .await
        .unwrap();
    let endpoint = controller.endpoint.unwrap();
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("http://{endpoint}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kybern_update_requests_pending"),
        "{metrics}"
    );
    wait_for_async(Duration::from_secs(10), || async {
        http.get(format!("http://{endpoint}/health/readiness"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    wait_for(
        "the queued work to be done",
        Duration::from_secs(20),
        || {
            store
                .get(
                    "networking.k8s.io/v1",
                    "networkpolicies",
                    Some("team-b"),
                    "default-deny",
                )
                .is_some()
                && store
                    .list("kyverno.io/v2", "updaterequests", Some(NS))
                    .is_empty()
        },
    )
    .await;
    controller.shutdown().await;
    server.shutdown().await;
    c.api.shutdown().await;
}

async fn wait_for_async<F, Fut>(timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generate_existing_acts_on_triggers_that_were_there_first_and_a_policy_stays_in_its_namespace()
 {
    let c = cluster().await;
    let store = c.api.store();
    for name in ["old-1", "old-2"] {
        store
            .create(
                "v1",
                "namespaces",
                json!({"metadata": {"name": name, "labels": {"defaults": "yes"}}}),
            )
            .unwrap();
    }
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "c3"))
        .await
        .unwrap();
    let mut policy = generate_policy();
    policy["spec"]["rules"][0]["generate"]["generateExisting"] = json!(true);
    store
        .create("kyverno.io/v1", "clusterpolicies", policy)
        .unwrap();
    wait_for(
        "objects for the namespaces that existed first",
        Duration::from_secs(20),
        || {
            ["old-1", "old-2"].iter().all(|ns| {
                store
                    .get(
                        "networking.k8s.io/v1",
                        "networkpolicies",
                        Some(ns),
                        "default-deny",
                    )
                    .is_some()
            })
        },
    )
    .await;
    // Only the rule that asks for it: the other rules' objects are not generated.
    assert!(
        store
            .get("v1", "configmaps", Some("old-1"), "quota-settings")
            .is_none()
    );
    // The deprecated policy-wide spec.generateExisting, unless a rule says otherwise.
    let mut legacy = generate_policy();
    legacy["metadata"]["name"] = json!("legacy-defaults");
    legacy["spec"]["generateExisting"] = json!(true);
    let rules = legacy["spec"]["rules"].as_array().unwrap().clone();
    let mut config_map_rule = rules[2].clone();
    config_map_rule["generate"]["generateExisting"] = json!(false);
    legacy["spec"]["rules"] = json!([rules[1].clone(), config_map_rule]);
    store
        .create("kyverno.io/v1", "clusterpolicies", legacy)
        .unwrap();
    wait_for(
        "quotas for the namespaces that existed first",
        Duration::from_secs(20),
        || {
            ["old-1", "old-2"].iter().all(|ns| {
                store
                    .get("v1", "resourcequotas", Some(ns), "default-resourcequota")
                    .is_some()
            })
        },
    )
    .await;
    assert!(
        store
            .get("v1", "configmaps", Some("old-1"), "quota-settings")
            .is_none()
    );

    // A namespaced Policy that would generate into another namespace is refused at run time.
    store
        .create(
            "kyverno.io/v1",
            "policies",
            json!({"apiVersion": "kyverno.io/v1", "kind": "Policy",
                "metadata": {"name": "escape", "namespace": "team"},
                "spec": {"rules": [{"name": "out", "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
                    "generate": {"apiVersion": "v1", "kind": "ConfigMap", "name": "copy", "namespace": "old-1",
                        "generateExisting": true, "data": {"data": {"a": "b"}}}}]}}),
        )
        .unwrap();
    store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "seed", "namespace": "team"}}),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        store
            .get("v1", "configmaps", Some("old-1"), "copy")
            .is_none()
    );
    controller.shutdown().await;
    c.api.shutdown().await;
}

/// Labels every Secret of the trigger ConfigMap's namespace with the ConfigMap's name.
fn refresh_policy(kind: &str, namespace: Option<&str>, on_policy_update: bool) -> Value {
    let mut metadata = json!({"name": "refresh-secrets"});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "kyverno.io/v1", "kind": kind, "metadata": metadata,
        "spec": {"mutateExistingOnPolicyUpdate": on_policy_update, "rules": [{"name": "stamp",
            "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "selector": {"matchLabels": {"refresh": "yes"}}}}]},
            "mutate": {
                "targets": [{"apiVersion": "v1", "kind": "Secret", "namespace": "{{request.object.metadata.namespace}}"}],
                "patchStrategicMerge": {"metadata": {"labels": {"refreshed-by": "{{request.object.metadata.name}}"}}}}}]}
    })
}

fn update_review(old: &Value, new: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("req-{}", new["metadata"]["resourceVersion"].as_str().unwrap()),
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": new["metadata"]["name"], "namespace": new["metadata"]["namespace"],
            "operation": "UPDATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": new, "oldObject": old, "dryRun": false
        }
    })
}

fn namespaces(store: &kybern_testkube::Store, names: &[&str]) {
    for name in names {
        if store.get("v1", "namespaces", None, name).is_none() {
            store
                .create("v1", "namespaces", json!({"metadata": {"name": name}}))
                .unwrap();
        }
    }
}

fn secret_label(store: &kybern_testkube::Store, ns: &str, name: &str) -> Value {
    store
        .get("v1", "secrets", Some(ns), name)
        .map(|s| s["metadata"]["labels"]["refreshed-by"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_labelled_trigger_gets_its_targets_patched() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            refresh_policy("ClusterPolicy", None, false),
        )
        .unwrap();
    namespaces(store, &["app", "other"]);
    for (ns, name) in [("app", "db"), ("app", "api"), ("other", "db")] {
        store
            .create(
                "v1",
                "secrets",
                json!({"metadata": {"name": name, "namespace": ns}}),
            )
            .unwrap();
    }
    let old = store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "settings", "namespace": "app"}}),
        )
        .unwrap();
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "m1"))
        .await
        .unwrap();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    // Not labelled yet: the rule does not select the trigger, nothing is queued.
    let r = send(
        &client,
        &server,
        "/validate/fail",
        &update_review(&old, &old),
    )
    .await;
    assert_eq!(r["allowed"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        store
            .list("kyverno.io/v2", "updaterequests", Some(NS))
            .is_empty()
    );

    let new = store
        .merge_patch(
            "v1",
            "configmaps",
            Some("app"),
            "settings",
            json!({"metadata": {"labels": {"refresh": "yes"}}}),
        )
        .unwrap();
    wait_for_async(Duration::from_secs(15), || async {
        send(
            &client,
            &server,
            "/validate/fail",
            &update_review(&old, &new),
        )
        .await;
        let queued = store.list("kyverno.io/v2", "updaterequests", Some(NS));
        queued.iter().any(|u| u["spec"]["requestType"] == "mutate")
            || secret_label(store, "app", "db") == "settings"
    })
    .await;
    wait_for(
        "the Secrets of the trigger's namespace to be patched",
        Duration::from_secs(20),
        || {
            secret_label(store, "app", "db") == "settings"
                && secret_label(store, "app", "api") == "settings"
        },
    )
    .await;
    // Only the targets: the Secret of another namespace and the trigger are left alone.
    assert_eq!(secret_label(store, "other", "db"), Value::Null);
    assert!(
        store
            .get("v1", "configmaps", Some("app"), "settings")
            .unwrap()["metadata"]["labels"]
            .get("refreshed-by")
            .is_none()
    );
    wait_for(
        "the UpdateRequest to be deleted",
        Duration::from_secs(15),
        || {
            store
                .list("kyverno.io/v2", "updaterequests", Some(NS))
                .is_empty()
        },
    )
    .await;
    controller.shutdown().await;
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutate_existing_on_policy_update_patches_targets_that_exist_and_a_policy_stays_in_its_namespace()
 {
    let c = cluster().await;
    let store = c.api.store();
    namespaces(store, &["app", "team", "plain"]);
    for (ns, name) in [("app", "db"), ("team", "db"), ("plain", "db")] {
        store
            .create(
                "v1",
                "secrets",
                json!({"metadata": {"name": name, "namespace": ns}}),
            )
            .unwrap();
    }
    for ns in ["app", "team"] {
        store
            .create(
                "v1",
                "configmaps",
                json!({"metadata": {"name": "settings", "namespace": ns, "labels": {"refresh": "yes"}}}),
            )
            .unwrap();
    }
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "m2"))
        .await
        .unwrap();
    wait_for("the controller to lead", Duration::from_secs(20), || {
        *controller.leader.borrow()
    })
    .await;
    // Without mutateExistingOnPolicyUpdate a new policy patches nothing by itself.
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            refresh_policy("ClusterPolicy", None, false),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(secret_label(store, "app", "db"), Value::Null);
    // Turned on: the targets of every existing trigger are patched.
    store
        .merge_patch(
            "kyverno.io/v1",
            "clusterpolicies",
            None,
            "refresh-secrets",
            json!({"spec": {"mutateExistingOnPolicyUpdate": true}}),
        )
        .unwrap();
    wait_for(
        "the existing targets to be patched",
        Duration::from_secs(20),
        || {
            secret_label(store, "app", "db") == "settings"
                && secret_label(store, "team", "db") == "settings"
        },
    )
    .await;
    // A namespace without a labelled trigger is left alone.
    assert_eq!(secret_label(store, "plain", "db"), Value::Null);

    // A namespaced Policy whose target names another namespace patches only its own.
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, "refresh-secrets")
        .unwrap();
    let mut confined = refresh_policy("Policy", Some("team"), true);
    confined["metadata"]["name"] = json!("confined");
    confined["spec"]["rules"][0]["mutate"]["targets"][0]["namespace"] = json!("plain");
    confined["spec"]["rules"][0]["mutate"]["patchStrategicMerge"]["metadata"]["labels"]["refreshed-by"] =
        json!("confined");
    store.create("kyverno.io/v1", "policies", confined).unwrap();
    wait_for(
        "the namespaced policy's own target to be patched",
        Duration::from_secs(20),
        || secret_label(store, "team", "db") == "confined",
    )
    .await;
    assert_eq!(secret_label(store, "plain", "db"), Value::Null);
    assert_eq!(secret_label(store, "app", "db"), "settings");
    controller.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_policy_deletes_its_synchronized_objects_unless_they_are_orphaned() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "team-d", "labels": {"defaults": "yes"}}}),
        )
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "d1"))
        .await
        .unwrap();
    // Every rule synchronizes; the ConfigMap's says to orphan it.
    let mut policy = generate_policy();
    for rule in 0..3 {
        policy["spec"]["rules"][rule]["generate"]["generateExisting"] = json!(true);
        policy["spec"]["rules"][rule]["generate"]["synchronize"] = json!(true);
    }
    policy["spec"]["rules"][2]["generate"]["orphanDownstreamOnPolicyDelete"] = json!(true);
    store
        .create("kyverno.io/v1", "clusterpolicies", policy)
        .unwrap();
    let netpol = || {
        store.get(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("team-d"),
            "default-deny",
        )
    };
    let config_map = || store.get("v1", "configmaps", Some("team-d"), "quota-settings");
    wait_for("the generated objects", Duration::from_secs(20), || {
        netpol().is_some() && config_map().is_some()
    })
    .await;
    // An object of the same name that the policy did not generate is not touched.
    store
        .create(
            "networking.k8s.io/v1",
            "networkpolicies",
            json!({"metadata": {"name": "default-deny", "namespace": "default"}, "spec": {"podSelector": {}}}),
        )
        .unwrap();
    store
        .delete("kyverno.io/v1", "clusterpolicies", None, ADD_DEFAULTS)
        .unwrap();
    wait_for(
        "the synchronized NetworkPolicy and ResourceQuota to go with their policy",
        Duration::from_secs(20),
        || {
            netpol().is_none()
                && store
                    .get(
                        "v1",
                        "resourcequotas",
                        Some("team-d"),
                        "default-resourcequota",
                    )
                    .is_none()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(config_map().is_some(), "the orphaned ConfigMap stays");
    assert!(
        store
            .get(
                "networking.k8s.io/v1",
                "networkpolicies",
                Some("default"),
                "default-deny"
            )
            .is_some()
    );
    controller.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutate_existing_rules_do_not_run_or_decide_at_admission() {
    let c = cluster().await;
    let store = c.api.store();
    // Its targets are of a kind the cluster does not serve: evaluated at admission, the rule
    // would be an error and, with failurePolicy Fail, deny the trigger.
    let mut policy = refresh_policy("ClusterPolicy", None, false);
    policy["spec"]["rules"][0]["mutate"]["targets"][0]["apiVersion"] = json!("example.com/v1");
    policy["spec"]["rules"][0]["mutate"]["targets"][0]["kind"] = json!("Widget");
    store
        .create("kyverno.io/v1", "clusterpolicies", policy)
        .unwrap();
    namespaces(store, &["app"]);
    let old = store
        .create(
            "v1",
            "configmaps",
            json!({"metadata": {"name": "settings", "namespace": "app"}}),
        )
        .unwrap();
    let new = store
        .merge_patch(
            "v1",
            "configmaps",
            Some("app"),
            "settings",
            json!({"metadata": {"labels": {"refresh": "yes"}}}),
        )
        .unwrap();
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    wait_for_async(Duration::from_secs(15), || async {
        let r = send(&client, &server, "/mutate/fail", &update_review(&old, &new)).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert!(r.get("patch").is_none(), "{r}");
        store
            .list("kyverno.io/v2", "updaterequests", Some(NS))
            .iter()
            .any(|u| u["spec"]["requestType"] == "mutate")
    })
    .await;
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_work_is_retried_with_events_on_the_update_request() {
    let c = cluster().await;
    let store = c.api.store();
    // Work for a policy that does not exist (deleted after admission queued it).
    let trigger = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-x", "uid": "u-x"}});
    let request = kybern_engine::request::AdmissionRequest {
        operation: kybern_engine::request::Operation::Create,
        object: std::sync::Arc::new(trigger),
        ..Default::default()
    };
    let ur = kybern_cluster::background::update_request::object(
        &kybern_cluster::background::update_request::GenerateWork {
            request_type: kybern_cluster::background::update_request::RequestType::Generate,
            policy: "gone",
            policy_key: "ClusterPolicy.kyverno.io/gone",
            rules: vec!["r".into()],
            synchronize: false,
            delete_downstream: false,
            request_uid: "req-x",
            request: &request,
            namespace: NS,
        },
    );
    let name = ur["metadata"]["name"].as_str().unwrap().to_string();
    store.create("kyverno.io/v2", "updaterequests", ur).unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "e1"))
        .await
        .unwrap();
    wait_for(
        "a Warning Event on the UpdateRequest",
        Duration::from_secs(30),
        || {
            store.list("v1", "events", Some(NS)).iter().any(|e| {
                e["involvedObject"]["name"] == name.as_str()
                    && e["type"] == "Warning"
                    && e["message"]
                        .as_str()
                        .unwrap()
                        .contains("policy gone is not loaded")
            })
        },
    )
    .await;
    let ur = store
        .get("kyverno.io/v2", "updaterequests", Some(NS), &name)
        .unwrap();
    assert!(ur["status"]["retryCount"].as_u64().unwrap() >= 1, "{ur}");
    assert_eq!(ur["status"]["state"], "Pending");
    controller.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generating_policy_creates_its_objects_for_a_new_namespace() {
    let c = cluster().await;
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "c1"))
        .await
        .unwrap();
    let store = c.api.store();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    // The policy library's add-network-policy, as a GeneratingPolicy.
    store
        .create(
            "policies.kyverno.io/v1alpha1",
            "generatingpolicies",
            network_policy_gpol(json!({"synchronize": {"enabled": true}})),
        )
        .unwrap();
    // Its triggers are registered on a gpol webhook, whose path admits at once.
    let mut path = String::new();
    wait_for(
        "the GeneratingPolicy's webhook",
        Duration::from_secs(15),
        || {
            let vwc = store
                .get(ADMISSION, "validatingwebhookconfigurations", None, VWC)
                .unwrap_or_default();
            let hook = vwc["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["name"].as_str().is_some_and(|n| n.starts_with("gpol.")));
            if let Some(h) = hook {
                path = h["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert_eq!(h["rules"][0]["resources"], json!(["namespaces"]));
                // Synchronized: its triggers' deletions are heard too.
                assert!(
                    h["rules"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r["operations"]
                            .as_array()
                            .unwrap()
                            .contains(&json!("DELETE"))),
                    "{h}"
                );
            }
            !path.is_empty()
        },
    )
    .await;
    assert!(
        path.starts_with("/gpol/") && path.ends_with("/add-networkpolicy"),
        "{path}"
    );
    wait_for("the controller to lead", Duration::from_secs(20), || {
        *controller.leader.borrow()
    })
    .await;

    let ns = store
        .create("v1", "namespaces", json!({"metadata": {"name": "team-g"}}))
        .unwrap();
    wait_for_async(Duration::from_secs(15), || async {
        let r = send(&client, &server, &path, &namespace_review(&ns)).await;
        assert_eq!(r["allowed"], true);
        store
            .list("kyverno.io/v2", "updaterequests", Some(NS))
            .iter()
            .any(|u| u["spec"]["requestType"] == "cel-generate")
            || store
                .get(
                    "networking.k8s.io/v1",
                    "networkpolicies",
                    Some("team-g"),
                    "default-deny",
                )
                .is_some()
    })
    .await;
    let mut np = Value::Null;
    wait_for(
        "the generated NetworkPolicy",
        Duration::from_secs(20),
        || {
            np = store
                .get(
                    "networking.k8s.io/v1",
                    "networkpolicies",
                    Some("team-g"),
                    "default-deny",
                )
                .unwrap_or_default();
            !np.is_null()
        },
    )
    .await;
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let labels = &np["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kyverno");
    assert_eq!(
        labels["generate.kyverno.io/policy-name"],
        "add-networkpolicy"
    );
    assert_eq!(labels["generate.kyverno.io/trigger-kind"], "Namespace");
    // The work is done: the UpdateRequest is gone.
    wait_for("the UpdateRequest deleted", Duration::from_secs(20), || {
        store
            .list("kyverno.io/v2", "updaterequests", Some(NS))
            .is_empty()
    })
    .await;

    // Synchronized: an edit is put back, and so is a deletion.
    let netpol = || {
        store.get(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("team-g"),
            "default-deny",
        )
    };
    let mut edited = np.clone();
    edited["spec"]["policyTypes"] = json!(["Ingress"]);
    store
        .put("networking.k8s.io/v1", "networkpolicies", edited)
        .unwrap();
    wait_for("the edit put back", Duration::from_secs(20), || {
        netpol().is_some_and(|n| n["spec"]["policyTypes"] == json!(["Ingress", "Egress"]))
    })
    .await;
    store
        .delete(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("team-g"),
            "default-deny",
        )
        .unwrap();
    wait_for(
        "the deleted object put back",
        Duration::from_secs(20),
        || netpol().is_some(),
    )
    .await;
    // A controller started after the objects were written keeps them in sync too (the kinds a
    // GeneratingPolicy writes come out of CEL: the new leader looks for them).
    controller.shutdown().await;
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "c2"))
        .await
        .unwrap();
    wait_for(
        "the new controller to lead",
        Duration::from_secs(30),
        || *controller.leader.borrow(),
    )
    .await;
    // Its first pass looks for the kinds and starts their watches.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut edited = netpol().unwrap();
    edited["spec"]["policyTypes"] = json!(["Egress"]);
    store
        .put("networking.k8s.io/v1", "networkpolicies", edited)
        .unwrap();
    wait_for(
        "the edit put back by the new controller",
        Duration::from_secs(20),
        || netpol().is_some_and(|n| n["spec"]["policyTypes"] == json!(["Ingress", "Egress"])),
    )
    .await;
    // A deleted trigger takes what the policy wrote for it, and only that.
    let other = store
        .create("v1", "namespaces", json!({"metadata": {"name": "team-h"}}))
        .unwrap();
    let other_netpol = || {
        store.get(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("team-h"),
            "default-deny",
        )
    };
    wait_for_async(Duration::from_secs(20), || async {
        send(&client, &server, &path, &namespace_review(&other)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        other_netpol().is_some()
    })
    .await;
    store.delete("v1", "namespaces", None, "team-h").unwrap();
    let mut deletion = namespace_review(&other);
    deletion["request"]["operation"] = json!("DELETE");
    deletion["request"]["uid"] = json!("req-delete-team-h");
    deletion["request"]["oldObject"] = other.clone();
    deletion["request"]["object"] = Value::Null;
    let r = send(&client, &server, &path, &deletion).await;
    assert_eq!(r["allowed"], true);
    wait_for(
        "the deleted trigger's NetworkPolicy to go",
        Duration::from_secs(20),
        || other_netpol().is_none(),
    )
    .await;
    assert!(netpol().is_some());
    // Deleting the policy deletes what it keeps in sync (no orphanDownstreamOnPolicyDelete).
    store
        .delete(
            "policies.kyverno.io/v1alpha1",
            "generatingpolicies",
            None,
            "add-networkpolicy",
        )
        .unwrap();
    wait_for(
        "the NetworkPolicy to go with its policy",
        Duration::from_secs(20),
        || netpol().is_none(),
    )
    .await;
    controller.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generating_policy_with_generate_existing_acts_on_namespaces_that_were_there_first() {
    let c = cluster().await;
    let store = c.api.store();
    let older = store
        .create("v1", "namespaces", json!({"metadata": {"name": "older"}}))
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "e1"))
        .await
        .unwrap();
    store
        .create(
            "policies.kyverno.io/v1alpha1",
            "generatingpolicies",
            network_policy_gpol(json!({"generateExisting": {"enabled": true}})),
        )
        .unwrap();
    let netpol = |ns: &str| {
        store.get(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some(ns),
            "default-deny",
        )
    };
    // Every Namespace that exists (the fixture's too) gets its NetworkPolicy, with no request.
    wait_for(
        "the existing namespaces' NetworkPolicies",
        Duration::from_secs(20),
        || netpol("older").is_some() && netpol("team").is_some(),
    )
    .await;
    let np = netpol("older").unwrap();
    let labels = &np["metadata"]["labels"];
    assert_eq!(labels["generate.kyverno.io/trigger-kind"], "Namespace");
    assert_eq!(
        labels["generate.kyverno.io/trigger-uid"],
        older["metadata"]["uid"]
    );
    controller.shutdown().await;
    c.api.shutdown().await;
}

/// A MutatingPolicy that labels ConfigMaps with `key: value` (an expression over the trigger
/// gives `value` when `value_expression`); its targets are the labelled ConfigMaps, named by
/// `targets` (target constraints, or a CEL expression).
fn stamp_mpol(name: &str, targets: Value, label: &str, value_expression: &str) -> Value {
    json!({
        "apiVersion": "policies.kyverno.io/v1beta1", "kind": "MutatingPolicy",
        "metadata": {"name": name},
        "spec": {
            "evaluation": {"mutateExisting": {"enabled": true}},
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["secrets"]}]},
            "targetMatchConstraints": targets,
            "targetMatchConditions": [{"name": "stamped-only",
                "expression": "has(object.metadata.labels) && 'stamp' in object.metadata.labels"}],
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                format!("Object{{metadata: Object.metadata{{labels: {{'{label}': {value_expression}}}}}}}")}}]
        }
    })
}

fn configmap_label(store: &kybern_testkube::Store, ns: &str, name: &str, key: &str) -> Value {
    store
        .get("v1", "configmaps", Some(ns), name)
        .map(|c| c["metadata"]["labels"][key].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mutating_policy_patches_existing_targets_when_created_and_when_triggered() {
    let c = cluster().await;
    let store = c.api.store();
    namespaces(store, &["app", "other"]);
    for (ns, name, labels) in [
        ("app", "settings", json!({"stamp": "yes"})),
        ("other", "settings", json!({"stamp": "yes"})),
        ("app", "plain", json!({})),
    ] {
        store
            .create(
                "v1",
                "configmaps",
                json!({"metadata": {"name": name, "namespace": ns, "labels": labels}}),
            )
            .unwrap();
    }
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "mp"))
        .await
        .unwrap();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    wait_for("the controller to lead", Duration::from_secs(20), || {
        *controller.leader.borrow()
    })
    .await;

    // Targets by kind: created, the policy patches the ConfigMaps that exist and pass its
    // target conditions, in every namespace.
    let by_kind = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
        "operations": ["CREATE"], "resources": ["configmaps"]}]});
    store
        .create(
            "policies.kyverno.io/v1beta1",
            "mutatingpolicies",
            stamp_mpol("stamp-all", by_kind, "stamped", "'policy'"),
        )
        .unwrap();
    wait_for(
        "the existing targets to be patched",
        Duration::from_secs(20),
        || {
            configmap_label(store, "app", "settings", "stamped") == "policy"
                && configmap_label(store, "other", "settings", "stamped") == "policy"
        },
    )
    .await;
    assert_eq!(
        configmap_label(store, "app", "plain", "stamped"),
        Value::Null
    );

    // Targets by expression, per trigger: a new Secret stamps its own namespace's ConfigMaps
    // with its name.
    let by_expression =
        json!({"expression": "resource.List('v1', 'configmaps', object.metadata.namespace)"});
    store
        .create(
            "policies.kyverno.io/v1beta1",
            "mutatingpolicies",
            stamp_mpol(
                "stamp-by-secret",
                by_expression,
                "secret",
                "request.object.metadata.name",
            ),
        )
        .unwrap();
    let mut path = String::new();
    wait_for(
        "the MutatingPolicy's webhook",
        Duration::from_secs(15),
        || {
            let mwc = store
                .get(
                    ADMISSION,
                    "mutatingwebhookconfigurations",
                    None,
                    "kybern-resource-mutating-webhook-cfg",
                )
                .unwrap_or_default();
            let hook = mwc["webhooks"].as_array().into_iter().flatten().find(|h| {
                h["clientConfig"]["service"]["path"]
                    .as_str()
                    .is_some_and(|p| p.split('/').any(|s| s == "stamp-by-secret"))
            });
            if let Some(h) = hook {
                path = h["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
            !path.is_empty()
        },
    )
    .await;
    let secret = store
        .create(
            "v1",
            "secrets",
            json!({"metadata": {"name": "db", "namespace": "app"}}),
        )
        .unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "req-secret-db",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": "db", "namespace": "app", "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": secret, "dryRun": false
        }
    });
    wait_for_async(Duration::from_secs(15), || async {
        let r = send(&client, &server, &path, &review).await;
        assert_eq!(r["allowed"], true);
        store
            .list("kyverno.io/v2", "updaterequests", Some(NS))
            .iter()
            .any(|u| u["spec"]["requestType"] == "cel-mutate")
            || configmap_label(store, "app", "settings", "secret") == "db"
    })
    .await;
    wait_for(
        "the trigger's targets to be patched",
        Duration::from_secs(20),
        || configmap_label(store, "app", "settings", "secret") == "db",
    )
    .await;
    // Another namespace's ConfigMap, and one the target conditions leave out, are untouched;
    // the first policy's label stays.
    assert_eq!(
        configmap_label(store, "other", "settings", "secret"),
        Value::Null
    );
    assert_eq!(
        configmap_label(store, "app", "plain", "secret"),
        Value::Null
    );
    assert_eq!(
        configmap_label(store, "app", "settings", "stamped"),
        "policy"
    );
    wait_for(
        "the UpdateRequest to be deleted",
        Duration::from_secs(15),
        || {
            store
                .list("kyverno.io/v2", "updaterequests", Some(NS))
                .is_empty()
        },
    )
    .await;
    controller.shutdown().await;
    server.shutdown().await;
    c.api.shutdown().await;
}

fn background_condition(store: &kybern_testkube::Store) -> Value {
    store
        .get("kyverno.io/v1", "clusterpolicies", None, ADD_DEFAULTS)
        .and_then(|p| {
            p["status"]["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "BackgroundPermissions")
                    .cloned()
            })
        })
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_generating_kinds_the_controller_may_not_write_says_so_in_its_status() {
    let c = cluster().await;
    let store = c.api.store();
    c.api
        .faults()
        .deny("*", "networking.k8s.io", "networkpolicies");
    store
        .create("kyverno.io/v1", "clusterpolicies", generate_policy())
        .unwrap();
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "p1"))
        .await
        .unwrap();
    let mut condition = Value::Null;
    wait_for(
        "the BackgroundPermissions condition",
        Duration::from_secs(20),
        || {
            condition = background_condition(store);
            condition["status"] == "False"
        },
    )
    .await;
    let message = condition["message"].as_str().unwrap_or_default();
    assert_eq!(condition["reason"], "Forbidden");
    assert!(
        message.contains("create") && message.contains("networkpolicies.networking.k8s.io"),
        "{message}"
    );
    assert!(message.contains("rule default-deny"), "{message}");
    // The ConfigMap rule's kind may be written: it is not named.
    assert!(!message.contains("configmaps"), "{message}");
    // Admission writes its Ready condition beside it, and keeps it.
    wait_for("the Ready condition", Duration::from_secs(20), || {
        store
            .get("kyverno.io/v1", "clusterpolicies", None, ADD_DEFAULTS)
            .is_some_and(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready"))
            })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(background_condition(store)["status"], "False");

    // Granted, and the policy changed: checked again.
    c.api.faults().allow_all();
    store
        .merge_patch(
            "kyverno.io/v1",
            "clusterpolicies",
            None,
            ADD_DEFAULTS,
            json!({"metadata": {"annotations": {"touched": "yes"}}}),
        )
        .unwrap();
    wait_for(
        "the permissions to be granted",
        Duration::from_secs(20),
        || background_condition(store)["status"] == "True",
    )
    .await;
    assert_eq!(background_condition(store)["reason"], "Granted");
    controller.shutdown().await;
    server.shutdown().await;
    c.api.shutdown().await;
}

/// Copies each shared ConfigMap of `src` into `dst` as a Secret, kept in sync.
fn copy_policy() -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "copy-shared"},
        "spec": {"rules": [{"name": "copy",
            "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "namespaces": ["src"],
                "selector": {"matchLabels": {"share": "yes"}}}}]},
            "generate": {"apiVersion": "v1", "kind": "Secret", "synchronize": true,
                "name": "{{request.object.metadata.name}}-copy", "namespace": "dst",
                "data": {"stringData": {"from": "{{request.object.metadata.name}}"}}}}]}
    })
}

fn configmap_review(operation: &str, cm: &Value) -> Value {
    let (object, old) = if operation == "DELETE" {
        (Value::Null, cm.clone())
    } else {
        (cm.clone(), Value::Null)
    };
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("req-{operation}-{}", cm["metadata"]["uid"].as_str().unwrap()),
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": cm["metadata"]["name"], "namespace": cm["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_trigger_takes_its_synchronized_objects_with_it() {
    let c = cluster().await;
    let store = c.api.store();
    namespaces(store, &["src", "dst"]);
    store
        .create("kyverno.io/v1", "clusterpolicies", copy_policy())
        .unwrap();
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "t1"))
        .await
        .unwrap();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let copy = |name: &str| store.get("v1", "secrets", Some("dst"), &format!("{name}-copy"));
    let mut cms = Vec::new();
    for name in ["a", "b"] {
        let cm = store
            .create(
                "v1",
                "configmaps",
                json!({"metadata": {"name": name, "namespace": "src", "labels": {"share": "yes"}}}),
            )
            .unwrap();
        wait_for_async(Duration::from_secs(20), || async {
            send(
                &client,
                &server,
                "/validate/fail",
                &configmap_review("CREATE", &cm),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            copy(name).is_some()
        })
        .await;
        cms.push(cm);
    }
    // `a` is deleted: its copy goes, `b`'s stays.
    store.delete("v1", "configmaps", Some("src"), "a").unwrap();
    let r = send(
        &client,
        &server,
        "/validate/fail",
        &configmap_review("DELETE", &cms[0]),
    )
    .await;
    assert_eq!(r["allowed"], true);
    wait_for(
        "the deleted trigger's copy to go",
        Duration::from_secs(20),
        || copy("a").is_none(),
    )
    .await;
    assert!(copy("b").is_some());
    // A deletion that did not happen (refused further on) leaves the copy in place.
    send(
        &client,
        &server,
        "/validate/fail",
        &configmap_review("DELETE", &cms[1]),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(copy("b").is_some());
    let pending = store.list("kyverno.io/v2", "updaterequests", Some(NS));
    assert!(
        pending.iter().any(|u| u["spec"]["deleteDownstream"] == true
            && u["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("not deleted"))),
        "{pending:?}"
    );
    controller.shutdown().await;
    server.shutdown().await;
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronized_clone_follows_its_source() {
    let c = cluster().await;
    let store = c.api.store();
    namespaces(store, &["default"]);
    store
        .create(
            "v1",
            "secrets",
            json!({"metadata": {"name": "regcred", "namespace": "default"}, "data": {"token": "b25l"}}),
        )
        .unwrap();
    store
        .create(
            "kyverno.io/v1",
            "clusterpolicies",
            json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "sync-regcred"},
                "spec": {"rules": [{"name": "regcred",
                    "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
                    "generate": {"apiVersion": "v1", "kind": "Secret", "name": "regcred",
                        "namespace": "{{request.object.metadata.name}}", "synchronize": true,
                        "clone": {"namespace": "default", "name": "regcred"}}}]}}),
        )
        .unwrap();
    let server = kybern_cluster::serve::start(options(&c, "a"))
        .await
        .unwrap();
    let controller = kybern_cluster::background::controller::start(controller_options(&c, "s1"))
        .await
        .unwrap();
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;
    let ns = store
        .create("v1", "namespaces", json!({"metadata": {"name": "team-c"}}))
        .unwrap();
    let copy = || store.get("v1", "secrets", Some("team-c"), "regcred");
    wait_for_async(Duration::from_secs(20), || async {
        send(&client, &server, "/validate/fail", &namespace_review(&ns)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        copy().is_some()
    })
    .await;
    assert_eq!(copy().unwrap()["data"]["token"], "b25l");
    // The source changes: the clone follows.
    store
        .merge_patch(
            "v1",
            "secrets",
            Some("default"),
            "regcred",
            json!({"data": {"token": "dHdv"}}),
        )
        .unwrap();
    wait_for(
        "the clone to follow its source",
        Duration::from_secs(20),
        || copy().is_some_and(|s| s["data"]["token"] == "dHdv"),
    )
    .await;
    controller.shutdown().await;
    server.shutdown().await;
    c.api.shutdown().await;
}
