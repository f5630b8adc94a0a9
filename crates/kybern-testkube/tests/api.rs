//! The fake through a real `kube::Client` over HTTP: CRUD, selectors, paging, conflicts,
//! patches, the status subresource, CRDs and discovery.

mod common;

use std::collections::BTreeMap;

use common::api_error;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use serde_json::json;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
        "data": {"k": "v"},
    }))
    .unwrap()
}

fn names(list: &kube::api::ObjectList<ConfigMap>) -> Vec<String> {
    list.items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn create_get_list_with_selectors_and_paging() {
    let (server, client) = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    api.create(&pp, &cm("c", &[("app", "web"), ("tier", "front")]))
        .await
        .unwrap();
    api.create(&pp, &cm("a", &[("app", "web")])).await.unwrap();
    let b = api.create(&pp, &cm("b", &[("app", "db")])).await.unwrap();
    assert_eq!(b.metadata.generation, Some(1));
    assert!(b.metadata.uid.is_some() && b.metadata.creation_timestamp.is_some());

    assert_eq!(
        api_error(api.create(&pp, &cm("a", &[])).await),
        (409, "AlreadyExists".into())
    );
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&dry, &cm("dry", &[])).await.unwrap();
    assert_eq!(
        api_error(api.get("dry").await).0,
        404,
        "a dry run stores nothing"
    );
    assert_eq!(api_error(api.get("nope").await), (404, "NotFound".into()));
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "v");

    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&all), ["a", "b", "c"]);
    let rv: u64 = all.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(rv, server.store().resource_version());

    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(&api.list(&sel("app=web")).await.unwrap()), ["a", "c"]);
    assert_eq!(names(&api.list(&sel("app!=web")).await.unwrap()), ["b"]);
    assert_eq!(
        names(&api.list(&sel("app in (db,web),!tier")).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(names(&api.list(&sel("tier")).await.unwrap()), ["c"]);
    let by_name = ListParams::default().fields("metadata.name!=b");
    assert_eq!(names(&api.list(&by_name).await.unwrap()), ["a", "c"]);
    assert_eq!(api_error(api.list(&sel("app in web")).await).0, 400);

    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first), ["a", "b"]);
    let token = first.metadata.continue_.clone().unwrap();
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&second), ["c"]);
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));

    // Namespaced kinds list across namespaces at the cluster path; other namespaces need to exist.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    assert_eq!(api_error(other.create(&pp, &cm("x", &[])).await).0, 404);
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &pp,
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .unwrap();
    other.create(&pp, &cm("x", &[])).await.unwrap();
    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    // Deleting the namespace takes its objects with it.
    ns.delete("other", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    server.shutdown().await;
}

#[tokio::test]
async fn update_with_stale_resource_version_conflicts() {
    let (_server, client) = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some(BTreeMap::from([("k".to_string(), "first".to_string())]));
    let updated = api
        .replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("k".to_string(), "stale".to_string())]));
    assert_eq!(
        api_error(api.replace("c", &PostParams::default(), &stale).await),
        (409, "Conflict".into())
    );
    // Without a resourceVersion the write is unconditional.
    stale.metadata.resource_version = None;
    assert_eq!(
        api.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap()
            .data
            .unwrap()["k"],
        "stale"
    );
    assert_eq!(
        api_error(
            api.replace("nope", &PostParams::default(), &cm("nope", &[]))
                .await
        )
        .0,
        404
    );
    // A merge patch carrying an old resourceVersion conflicts too.
    let p = json!({"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"k": "x"}});
    assert_eq!(
        api_error(
            api.patch("c", &PatchParams::default(), &Patch::Merge(&p))
                .await
        )
        .0,
        409
    );
    // Delete preconditions.
    let dp = DeleteParams::default().preconditions(kube::api::Preconditions {
        resource_version: Some("1".to_string()),
        uid: None,
    });
    assert_eq!(api_error(api.delete("c", &dp).await).0, 409);
    api.delete("c", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(api.get("c").await).0, 404);
}

#[tokio::test]
async fn merge_json_strategic_and_apply_patches() {
    let (server, client) = common::start().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}}, "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}, {"name": "side", "image": "busybox"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &deploy).await.unwrap();

    let merge = json!({"metadata": {"labels": {"a": null}}, "spec": {"replicas": 2}});
    let d = api
        .patch("d", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    assert_eq!(
        d.metadata.labels.clone().unwrap(),
        BTreeMap::from([("b".to_string(), "2".to_string())])
    );
    assert_eq!(d.metadata.generation, Some(2));

    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]))
            .unwrap();
    let d = api
        .patch("d", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));

    let strategic = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "alpine"}]}}}});
    let d = api
        .patch("d", &PatchParams::default(), &Patch::Strategic(&strategic))
        .await
        .unwrap();
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2, "containers merge by name");
    assert_eq!(containers[1].image.as_deref(), Some("alpine"));

    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"c": "3"}}, "spec": {"replicas": 5}});
    // `replicas` belongs to the manager of the earlier updates (named after the user agent), so
    // a new apply manager conflicts on it, as `kubectl apply --server-side` after a scale does.
    let conflict = api
        .patch("d", &PatchParams::apply("tests"), &Patch::Apply(&applied))
        .await;
    match conflict {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains(".spec.replicas"), "{}", s.message);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let d = api
        .patch(
            "d",
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(5));
    assert_eq!(d.metadata.labels.unwrap().len(), 2);
    // Apply needs a field manager, and creates what is missing.
    let missing = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "new"}, "spec": {"replicas": 1}});
    assert_eq!(
        api_error(
            api.patch("new", &PatchParams::default(), &Patch::Apply(&missing))
                .await
        )
        .0,
        400
    );
    let created = api
        .patch("new", &PatchParams::apply("tests"), &Patch::Apply(&missing))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        api_error(
            api.patch("gone", &PatchParams::default(), &Patch::Merge(&merge))
                .await
        )
        .0,
        404
    );

    let patches: Vec<_> = server
        .faults()
        .requests()
        .into_iter()
        .filter(|(m, _)| m == "PATCH")
        .collect();
    assert_eq!(patches.len(), 8);
    assert!(
        patches
            .iter()
            .any(|(_, p)| p.contains("fieldManager=tests"))
    );
}

#[tokio::test]
async fn apply_conflicts_between_managers_unless_forced() {
    let (_server, client) = common::start().await;
    let api: Api<Lease> = Api::namespaced(client, "default");
    let lease = |holder: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 5}});
    api.patch("l", &PatchParams::apply("a"), &Patch::Apply(&lease("a")))
        .await
        .unwrap();
    // Same values: shared ownership, no conflict. Different values: conflict.
    api.patch("l", &PatchParams::apply("b"), &Patch::Apply(&lease("a")))
        .await
        .unwrap();
    let (code, reason) = api_error(
        api.patch("l", &PatchParams::apply("c"), &Patch::Apply(&lease("c")))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let forced = api
        .patch(
            "l",
            &PatchParams::apply("c").force(),
            &Patch::Apply(&lease("c")),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().holder_identity.as_deref(), Some("c"));
    // Non-apply patches never conflict and take the field over.
    let clear = json!({"spec": {"holderIdentity": null}});
    api.patch("l", &PatchParams::default(), &Patch::Strategic(&clear))
        .await
        .unwrap();
    api.patch("l", &PatchParams::apply("a"), &Patch::Apply(&lease("a")))
        .await
        .unwrap();
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let (_server, client) = common::start().await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Running"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &pod).await.unwrap();
    assert!(created.status.is_none(), "create ignores status");

    let status = json!({"status": {"phase": "Running"}, "spec": {"nodeName": "ignored"}});
    let p = api
        .patch_status("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(p.status.clone().unwrap().phase.as_deref(), Some("Running"));
    assert!(
        p.spec.as_ref().unwrap().node_name.is_none(),
        "status writes change only status"
    );
    assert_eq!(p.metadata.generation, Some(1));

    let main = json!({"status": {"phase": "Failed"}, "metadata": {"labels": {"x": "y"}}});
    let p = api
        .patch("p", &PatchParams::default(), &Patch::Merge(&main))
        .await
        .unwrap();
    assert_eq!(
        p.status.unwrap().phase.as_deref(),
        Some("Running"),
        "main writes ignore status"
    );
    assert_eq!(
        p.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );

    let spec = json!({"spec": {"activeDeadlineSeconds": 5}});
    let p = api
        .patch("p", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    // A no-op write keeps the resource version.
    let again = api
        .patch("p", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, p.metadata.resource_version);

    let mut replaced = api.get_status("p").await.unwrap();
    replaced.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let r = api
        .replace_status("p", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().phase.as_deref(), Some("Succeeded"));
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let (server, client) = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut c = cm("f", &[]);
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    let deleted = api.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = deleted
        .left()
        .expect("the object comes back while finalizers remain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(api.get("f").await.is_ok());
    let release = json!({"metadata": {"finalizers": null}});
    api.patch("f", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    assert_eq!(api_error(api.get("f").await).0, 404);

    // deletecollection by label.
    api.create(&PostParams::default(), &cm("x1", &[("gone", "yes")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("x2", &[("gone", "yes")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("keep", &[]))
        .await
        .unwrap();
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("gone=yes"),
    )
    .await
    .unwrap();
    assert_eq!(
        server
            .store()
            .list("v1", "configmaps", Some("default"))
            .len(),
        1
    );
}

#[tokio::test]
async fn injected_failures_reach_the_client_as_api_errors() {
    let (server, client) = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    server.faults().fail(Some("GET"), "/configmaps/a", 500, 1);
    assert_eq!(api_error(api.get("a").await), (500, "InternalError".into()));
    assert_eq!(api_error(api.get("a").await).0, 404, "only once");
    // kube 5 clients retry 429, 503 and 504 by themselves: one 503 is invisible to the caller.
    server.faults().fail(None, "/configmaps/b", 503, 1);
    assert_eq!(api_error(api.get("b").await).0, 404);
    let tries = server
        .faults()
        .requests()
        .iter()
        .filter(|(_, p)| p.ends_with("/configmaps/b"))
        .count();
    assert_eq!(tries, 2);
    server.faults().conflict_next("/configmaps", 1);
    assert_eq!(
        api_error(api.create(&PostParams::default(), &cm("a", &[])).await),
        (409, "Conflict".into())
    );
    api.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    server
        .faults()
        .latency(std::time::Duration::from_millis(200));
    let start = std::time::Instant::now();
    api.get("a").await.unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_millis(200));
}

#[tokio::test]
async fn crds_register_custom_kinds_for_clients_and_discovery() {
    let (server, client) = common::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    let created = crds
        .patch(
            "widgets.example.com",
            &PatchParams::apply("tests"),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    let established = created.status.unwrap().conditions.unwrap();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("resolves");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));

    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let mut w = DynamicObject::new("w1", &ar).within("default");
    w.data = json!({"spec": {"size": 1}, "status": {"ready": true}});
    let w = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(w.types.unwrap().kind, "Widget");
    assert!(w.data.get("status").is_none(), "status is a subresource");
    // Custom resources take merge patches, not strategic ones.
    let p = json!({"spec": {"size": 2}});
    assert_eq!(
        api_error(
            widgets
                .patch("w1", &PatchParams::default(), &Patch::Strategic(&p))
                .await
        )
        .0,
        415
    );
    let w = widgets
        .patch("w1", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(
        server.store().list("example.com/v1", "widgets", None).len(),
        1
    );

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(widgets.get("w1").await).0, 404);
    let gone = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    assert_eq!(gone.plural, "widgets");
    let discovery = Discovery::new(client).run().await.unwrap();
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
            .is_none()
    );
}
