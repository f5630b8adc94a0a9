use super::*;
use serde_json::json;

#[derive(Debug)]
enum Want {
    Patched(Value),
    /// Skip whose message starts with this.
    Skip(&'static str),
    /// Error whose message contains this.
    Error(&'static str),
}

fn check(name: &str, resource: &Value, overlay: &Value, want: &Want) {
    let got = apply(resource, overlay);
    match (want, &got) {
        (Want::Patched(w), Ok(PatchOutcome::Patched(g))) if w == g => {}
        (Want::Skip(prefix), Ok(PatchOutcome::Skip(m))) if m.starts_with(prefix) => {}
        (Want::Error(part), Err(e)) if e.message.contains(part) => {}
        _ => panic!(
            "{name}:\n want {want:?}\n got  {}",
            match &got {
                Ok(PatchOutcome::Patched(v)) => format!("Patched({v})"),
                other => format!("{other:?}"),
            }
        ),
    }
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn deployment(pod_spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "a"}}, "spec": pod_spec}}})
}

#[test]
fn lists_with_merge_keys_merge_by_key_and_put_patched_elements_first() {
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        (
            "containers merge by name; patch elements come first, in patch order",
            pod(
                json!({"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}),
            ),
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}}),
            pod(
                json!({"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"},
                                      {"name": "a", "image": "a:1"}]}),
            ),
        ),
        (
            "initContainers merge by name",
            pod(json!({"initContainers": [{"name": "i", "image": "i:1", "args": ["x"]}]})),
            json!({"spec": {"initContainers": [{"name": "i", "image": "i:2"}]}}),
            pod(json!({"initContainers": [{"name": "i", "image": "i:2", "args": ["x"]}]})),
        ),
        (
            "ephemeralContainers merge by name",
            pod(json!({"ephemeralContainers": [{"name": "e", "image": "e:1"}]})),
            json!({"spec": {"ephemeralContainers": [{"name": "e", "tty": true}]}}),
            pod(json!({"ephemeralContainers": [{"name": "e", "image": "e:1", "tty": true}]})),
        ),
        (
            "volumes merge by name",
            pod(json!({"volumes": [{"name": "v", "configMap": {"name": "cm"}}]})),
            json!({"spec": {"volumes": [{"name": "v", "configMap": {"defaultMode": 420}}, {"name": "w", "secret": {"secretName": "s"}}]}}),
            pod(
                json!({"volumes": [{"name": "v", "configMap": {"name": "cm", "defaultMode": 420}},
                                   {"name": "w", "secret": {"secretName": "s"}}]}),
            ),
        ),
        (
            "volumeMounts merge by mountPath",
            pod(
                json!({"containers": [{"name": "a", "volumeMounts": [{"name": "v", "mountPath": "/data"}]}]}),
            ),
            json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "v2", "mountPath": "/data", "readOnly": true}]}]}}),
            pod(
                json!({"containers": [{"name": "a", "volumeMounts": [{"name": "v2", "mountPath": "/data", "readOnly": true}]}]}),
            ),
        ),
        (
            "env merges by name",
            pod(
                json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}),
            ),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}]}]}}),
            pod(
                json!({"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "X", "value": "1"}]}]}),
            ),
        ),
        (
            "ports merge by containerPort, numbers and strings pair by their text",
            pod(
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}),
            ),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}),
            pod(
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]}]}),
            ),
        ),
        (
            "imagePullSecrets merge by name",
            pod(json!({"imagePullSecrets": [{"name": "one"}]})),
            json!({"spec": {"imagePullSecrets": [{"name": "two"}, {"name": "one"}]}}),
            pod(json!({"imagePullSecrets": [{"name": "two"}, {"name": "one"}]})),
        ),
        (
            "hostAliases merge by ip",
            pod(json!({"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]})),
            json!({"spec": {"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}]}}),
            pod(json!({"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}]})),
        ),
        (
            "topologySpreadConstraints merge by topologyKey",
            pod(json!({"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]})),
            json!({"spec": {"topologySpreadConstraints": [{"topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}}),
            pod(
                json!({"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]}),
            ),
        ),
        (
            "tolerations have no merge key in the OpenAPI and are replaced",
            pod(json!({"tolerations": [{"key": "a", "operator": "Exists"}]})),
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            pod(json!({"tolerations": [{"key": "b", "operator": "Exists"}]})),
        ),
        (
            "lists without a merge key are replaced",
            pod(json!({"containers": [{"name": "a", "args": ["1", "2"]}]})),
            json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
            pod(json!({"containers": [{"name": "a", "args": ["3"]}]})),
        ),
        (
            "finalizers merge as a set, patch values first",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["b", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a", "b", "c"]}}),
        ),
        (
            "ownerReferences merge by uid",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"ownerReferences": [{"uid": "1", "name": "x"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}]}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"ownerReferences": [{"uid": "1", "name": "x", "controller": true}]}}),
        ),
        (
            "Service ports merge by port",
            json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}]}}),
        ),
        (
            "Deployment pod template containers merge by name",
            deployment(json!({"containers": [{"name": "a", "image": "a:1"}]})),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "imagePullPolicy": "Always"}]}}}}),
            deployment(
                json!({"containers": [{"name": "a", "image": "a:1", "imagePullPolicy": "Always"}]}),
            ),
        ),
        (
            "CronJob job template containers merge by name",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}}}),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "imagePullPolicy": "Always"}]}}}}}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1", "imagePullPolicy": "Always"}]}}}}}}),
        ),
        (
            "a patch list is added when the resource has none",
            pod(json!({})),
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]}}),
            pod(json!({"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]})),
        ),
    ];
    for (name, resource, overlay, want) in cases {
        check(name, &resource, &overlay, &Want::Patched(want));
    }
}

#[test]
fn unknown_kinds_and_crds_merge_maps_and_replace_lists() {
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        (
            "a CRD list of named maps is replaced, maps merge",
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"containers": [{"name": "a", "image": "a"}], "size": {"w": 1}}}),
            json!({"spec": {"containers": [{"name": "b"}], "size": {"h": 2}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"containers": [{"name": "b"}], "size": {"w": 1, "h": 2}}}),
        ),
        (
            "a Pod controller of a removed API version has no schema",
            json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "b"}]}}}}),
            json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "b"}]}}}}),
        ),
        (
            "a resource without apiVersion has no schema",
            json!({"kind": "Pod", "spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": [{"name": "b"}]}}),
            json!({"kind": "Pod", "spec": {"containers": [{"name": "b"}]}}),
        ),
    ];
    for (name, resource, overlay, want) in cases {
        check(name, &resource, &overlay, &Want::Patched(want));
    }
}

#[test]
fn nulls_delete_keys() {
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        (
            "null in the overlay removes a label",
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null}}}),
            json!({"metadata": {"labels": {"b": "2"}}}),
        ),
        (
            "null removes a whole map or list",
            pod(json!({"containers": [{"name": "a"}], "securityContext": {"runAsUser": 1}})),
            json!({"spec": {"containers": null, "securityContext": null}}),
            pod(json!({})),
        ),
        (
            "null for a missing key adds nothing",
            json!({"metadata": {}}),
            json!({"metadata": {"labels": null}}),
            json!({"metadata": {}}),
        ),
        (
            "nulls inside an added map are dropped",
            json!({"metadata": {}}),
            json!({"metadata": {"labels": {"a": "1", "b": null}}}),
            json!({"metadata": {"labels": {"a": "1"}}}),
        ),
        (
            "null fields of the resource are dropped by the merge, as kustomize does",
            deployment(json!({"containers": [{"name": "a"}]})),
            json!({"spec": {"template": {"metadata": {"creationTimestamp": null}}}}),
            deployment(json!({"containers": [{"name": "a"}]})),
        ),
        (
            "null inside a merged list element removes the field",
            pod(json!({"containers": [{"name": "a", "image": "x", "command": ["sh"]}]})),
            json!({"spec": {"containers": [{"name": "a", "command": null}]}}),
            pod(json!({"containers": [{"name": "a", "image": "x"}]})),
        ),
    ];
    for (name, resource, overlay, want) in cases {
        check(name, &resource, &overlay, &Want::Patched(want));
    }
}

#[test]
fn patch_directives() {
    let cases: Vec<(&str, Value, Value, Want)> = vec![
        (
            "$patch: delete removes a map",
            pod(json!({"securityContext": {"runAsUser": 1}, "hostNetwork": true})),
            json!({"spec": {"securityContext": {"$patch": "delete"}}}),
            Want::Patched(pod(json!({"hostNetwork": true}))),
        ),
        (
            "$patch: delete in a list element removes that element",
            pod(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            Want::Patched(pod(json!({"containers": [{"name": "b"}]}))),
        ),
        (
            "$patch: replace replaces a map",
            pod(json!({"securityContext": {"runAsUser": 1, "fsGroup": 2}})),
            json!({"spec": {"securityContext": {"$patch": "replace", "runAsNonRoot": true}}}),
            Want::Patched(pod(json!({"securityContext": {"runAsNonRoot": true}}))),
        ),
        (
            "$patch: merge is the default",
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}),
            Want::Patched(json!({"metadata": {"labels": {"a": "1", "b": "2"}}})),
        ),
        (
            "a {$patch: replace} element replaces the whole merged list",
            pod(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}),
            Want::Patched(pod(json!({"containers": [{"name": "c"}]}))),
        ),
        (
            "$setElementOrder is tolerated and never lands in the resource",
            pod(json!({"containers": [{"name": "a"}]})),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "image": "x"}]}}),
            Want::Patched(pod(json!({"containers": [{"name": "a", "image": "x"}]}))),
        ),
        (
            "$retainKeys keeps only the listed keys",
            pod(json!({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]})),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {"medium": "Memory"}}]}}),
            Want::Patched(pod(
                json!({"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]}),
            )),
        ),
        (
            "$deleteFromPrimitiveList removes values",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            Want::Patched(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"finalizers": ["b"]}}),
            ),
        ),
        (
            "an unknown $patch value is an error",
            json!({"metadata": {"labels": {}}}),
            json!({"metadata": {"labels": {"$patch": "explode"}}}),
            Want::Error("unknown patch strategy"),
        ),
    ];
    for (name, resource, overlay, want) in cases {
        check(name, &resource, &overlay, &want);
    }
}

#[test]
fn anchors_decide_what_applies() {
    let two = pod(json!({"containers": [
        {"name": "web", "image": "nginx:latest"},
        {"name": "db", "image": "postgres:16"}]}));
    let cases: Vec<(&str, Value, Value, Want)> = vec![
        (
            "conditional anchor at map level holds: the patch applies",
            json!({"metadata": {"annotations": {"inject": "true"}}}),
            json!({"metadata": {"annotations": {"(inject)": "true"}, "labels": {"x": "y"}}}),
            Want::Patched(
                json!({"metadata": {"annotations": {"inject": "true"}, "labels": {"x": "y"}}}),
            ),
        ),
        (
            "conditional anchor at map level fails: the whole overlay is skipped",
            json!({"metadata": {"annotations": {"inject": "false"}}}),
            json!({"metadata": {"annotations": {"(inject)": "true"}, "labels": {"x": "y"}}}),
            Want::Skip("condition failed"),
        ),
        (
            "conditional anchor on a missing key skips",
            json!({"metadata": {}}),
            json!({"metadata": {"(labels)": {"a": "b"}, "annotations": {"x": "y"}}}),
            Want::Skip("condition failed: could not found \"labels\""),
        ),
        (
            "conditional anchor in a list element patches only matching elements",
            two.clone(),
            json!({"spec": {"containers": [{"(image)": "*:latest", "imagePullPolicy": "Always"}]}}),
            Want::Patched(pod(json!({"containers": [
                {"name": "web", "image": "nginx:latest", "imagePullPolicy": "Always"},
                {"name": "db", "image": "postgres:16"}]}))),
        ),
        (
            "conditional anchor in a list element matching nothing changes nothing",
            two.clone(),
            json!({"spec": {"containers": [{"(image)": "*:1.0", "imagePullPolicy": "Always"}]}}),
            Want::Patched(two.clone()),
        ),
        (
            "conditional anchor with a wildcard applies to every element",
            two.clone(),
            json!({"spec": {"containers": [{"(name)": "*", "securityContext": {"+(runAsNonRoot)": true}}]}}),
            Want::Patched(pod(json!({"containers": [
                {"name": "web", "image": "nginx:latest", "securityContext": {"runAsNonRoot": true}},
                {"name": "db", "image": "postgres:16", "securityContext": {"runAsNonRoot": true}}]}))),
        ),
        (
            "nested condition inside an element skips that element only",
            pod(json!({"containers": [
                {"name": "a", "securityContext": {"privileged": true}},
                {"name": "b", "securityContext": {"privileged": false}}]})),
            json!({"spec": {"containers": [{"(securityContext)": {"(privileged)": true}, "image": "locked"}]}}),
            Want::Patched(pod(json!({"containers": [
                {"name": "a", "image": "locked", "securityContext": {"privileged": true}},
                {"name": "b", "securityContext": {"privileged": false}}]}))),
        ),
        (
            "add-if-not-present adds a missing key",
            json!({"metadata": {"annotations": {}}}),
            json!({"metadata": {"annotations": {"+(safe-to-evict)": "true"}}}),
            Want::Patched(json!({"metadata": {"annotations": {"safe-to-evict": "true"}}})),
        ),
        (
            "add-if-not-present keeps an existing value",
            json!({"metadata": {"annotations": {"safe-to-evict": "false"}}}),
            json!({"metadata": {"annotations": {"+(safe-to-evict)": "true"}}}),
            Want::Patched(json!({"metadata": {"annotations": {"safe-to-evict": "false"}}})),
        ),
        (
            "add-if-not-present adds a whole subtree when the parent is missing",
            pod(json!({"containers": [{"name": "a"}]})),
            json!({"spec": {"+(securityContext)": {"runAsNonRoot": true}}}),
            Want::Patched(pod(
                json!({"containers": [{"name": "a"}], "securityContext": {"runAsNonRoot": true}}),
            )),
        ),
        (
            "global anchor holds: the patch applies",
            pod(json!({"volumes": [{"name": "v", "emptyDir": {}}]})),
            json!({"metadata": {"annotations": {"+(safe-to-evict)": "true"}}, "spec": {"volumes": [{"<(emptyDir)": {}}]}}),
            Want::Patched(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": {"safe-to-evict": "true"}},
                "spec": {"volumes": [{"name": "v", "emptyDir": {}}]}})),
        ),
        (
            "global anchor in a list matched by no element skips the whole patch",
            pod(json!({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]})),
            json!({"metadata": {"annotations": {"+(safe-to-evict)": "true"}}, "spec": {"volumes": [{"<(emptyDir)": {}}]}}),
            Want::Skip("global condition failed"),
        ),
        (
            "global anchor on a map that does not match skips the whole patch",
            pod(json!({"hostNetwork": false})),
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"<(hostNetwork)": true}}),
            Want::Skip("global condition failed"),
        ),
        (
            "equality anchor on a matching value applies",
            json!({"metadata": {"labels": {"tier": "web"}}}),
            json!({"metadata": {"labels": {"=(tier)": "web", "x": "y"}}}),
            Want::Patched(json!({"metadata": {"labels": {"tier": "web", "x": "y"}}})),
        ),
        (
            "equality anchor on an absent key applies",
            json!({"metadata": {"labels": {}}}),
            json!({"metadata": {"labels": {"=(tier)": "web", "x": "y"}}}),
            Want::Patched(json!({"metadata": {"labels": {"x": "y"}}})),
        ),
        (
            "equality anchor on a different value skips",
            json!({"metadata": {"labels": {"tier": "db"}}}),
            json!({"metadata": {"labels": {"=(tier)": "web", "x": "y"}}}),
            Want::Skip("condition failed"),
        ),
        (
            "existence anchor with a matching element applies",
            two.clone(),
            json!({"spec": {"^(containers)": [{"name": "db"}], "hostNetwork": false}}),
            Want::Patched({
                let mut p = two.clone();
                p["spec"]["hostNetwork"] = json!(false);
                p
            }),
        ),
        (
            "existence anchor without a matching element skips",
            two.clone(),
            json!({"spec": {"^(containers)": [{"name": "cache"}], "hostNetwork": false}}),
            Want::Skip("condition failed"),
        ),
        (
            "negation anchor on an absent key applies",
            pod(json!({})),
            json!({"spec": {"X(hostPID)": null, "hostNetwork": false}}),
            Want::Patched(pod(json!({"hostNetwork": false}))),
        ),
        (
            "negation anchor on a present key skips",
            pod(json!({"hostPID": true})),
            json!({"spec": {"X(hostPID)": null, "hostNetwork": false}}),
            Want::Skip("condition failed"),
        ),
        (
            "scalar conditions compare as text, as Kyverno's YAML nodes do",
            json!({"spec": {"replicas": 3}}),
            json!({"spec": {"(replicas)": "3", "paused": true}}),
            Want::Patched(json!({"spec": {"replicas": 3, "paused": true}})),
        ),
        (
            "anchored element named after each resource element it applies to",
            pod(json!({"containers": [{"name": "a", "image": "x:latest"}]})),
            json!({"spec": {"containers": [{"name": "ignored", "(image)": "*:latest", "imagePullPolicy": "Always"}]}}),
            Want::Patched(pod(
                json!({"containers": [{"name": "a", "image": "x:latest", "imagePullPolicy": "Always"}]}),
            )),
        ),
    ];
    for (name, resource, overlay, want) in cases {
        check(name, &resource, &overlay, &want);
    }
}

#[test]
fn kyverno_inject_sidecar_example_puts_the_sidecar_first() {
    let resource = deployment(json!({"containers": [{"image": "nginx:latest", "name": "nginx"}]}));
    let mut resource = resource;
    resource["spec"]["template"]["metadata"]["annotations"] =
        json!({"vault.hashicorp.com/agent-inject": "true"});
    let overlay = json!({"spec": {"template": {
        "metadata": {"annotations": {"(vault.hashicorp.com/agent-inject)": "true"}},
        "spec": {
            "containers": [{"name": "vault-agent", "image": "vault:1.5.4",
                "volumeMounts": [{"mountPath": "/vault/secrets", "name": "vault-secret"}]}],
            "volumes": [{"name": "vault-secret", "emptyDir": {"medium": "Memory"}}]}}}});
    let PatchOutcome::Patched(out) = apply(&resource, &overlay).unwrap() else {
        panic!("skipped")
    };
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["name"], "vault-agent");
    assert_eq!(spec["containers"][1]["name"], "nginx");
    assert_eq!(
        spec["volumes"],
        json!([{"name": "vault-secret", "emptyDir": {"medium": "Memory"}}])
    );
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"],
        json!({"vault.hashicorp.com/agent-inject": "true"})
    );
}

#[test]
fn empty_maps_in_the_overlay_are_dropped_like_kyverno() {
    // Kyverno's anchor cleanup removes maps left empty, `emptyDir: {}` included.
    check(
        "emptyDir: {} is not sent",
        &pod(json!({})),
        &json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
        &Want::Patched(pod(json!({"volumes": [{"name": "v"}]}))),
    );
}

#[test]
fn shape_conflicts_and_limits_are_errors() {
    check(
        "a map where the resource has a list",
        &pod(json!({"containers": [{"name": "a"}]})),
        &json!({"spec": {"containers": {"name": "a"}}}),
        &Want::Error("wrong node kind"),
    );
    check(
        "an overlay that is not a map",
        &pod(json!({})),
        &json!([1]),
        &Want::Error("must be an object"),
    );
    let mut deep = json!("leaf");
    for _ in 0..400 {
        deep = Value::Object(serde_json::Map::from_iter([("a".to_string(), deep)]));
    }
    check(
        "overlay nested too deeply",
        &pod(json!({})),
        &deep,
        &Want::Error("deeper than"),
    );
}

#[test]
fn huge_lists_merge_in_linear_time() {
    let containers: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
        .collect();
    let resource = pod(json!({ "containers": containers }));
    let overlay = json!({"spec": {"containers": [{"name": "c19999", "image": "y"}]}});
    let PatchOutcome::Patched(out) = apply(&resource, &overlay).unwrap() else {
        panic!("skipped")
    };
    let list = out["spec"]["containers"].as_array().unwrap();
    assert_eq!(list.len(), 20_000);
    assert_eq!(list[0], json!({"name": "c19999", "image": "y"}));
}

#[test]
fn realistic_overlays_are_idempotent() {
    let resource = deployment(json!({
        "containers": [{"name": "app", "image": "app:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}]}));
    let overlays = [
        (
            "add labels",
            json!({"metadata": {"labels": {"team": "core"}}, "spec": {"template": {"metadata": {"labels": {"team": "core"}}}}}),
        ),
        (
            "default securityContext with +()",
            json!({"spec": {"template": {"spec": {
                "+(securityContext)": {"runAsNonRoot": true},
                "containers": [{"(name)": "*", "securityContext": {"+(allowPrivilegeEscalation)": false}}]}}}}),
        ),
        (
            "inject a sidecar",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1", "ports": [{"containerPort": 15001}]}]}}}}),
        ),
        (
            "add a volume and a volumeMount",
            json!({"spec": {"template": {"spec": {
                "volumes": [{"name": "certs", "secret": {"secretName": "certs"}}],
                "containers": [{"(name)": "app", "volumeMounts": [{"name": "certs", "mountPath": "/certs"}]}]}}}}),
        ),
    ];
    for (name, overlay) in overlays {
        let PatchOutcome::Patched(once) = apply(&resource, &overlay).unwrap() else {
            panic!("{name}: skipped")
        };
        assert_ne!(once, resource, "{name}: nothing changed");
        let PatchOutcome::Patched(twice) = apply(&once, &overlay).unwrap() else {
            panic!("{name}: skipped the second time")
        };
        assert_eq!(once, twice, "{name}: not idempotent");
    }
}

#[test]
fn volume_and_mount_overlay_patches_the_named_container() {
    let resource = deployment(json!({
        "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}, {"name": "other"}]}));
    let overlay = json!({"spec": {"template": {"spec": {
        "volumes": [{"name": "certs", "secret": {"secretName": "certs"}}],
        "containers": [{"(name)": "app", "volumeMounts": [{"name": "certs", "mountPath": "/certs"}]}]}}}});
    let PatchOutcome::Patched(out) = apply(&resource, &overlay).unwrap() else {
        panic!("skipped")
    };
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([
            {"name": "app", "volumeMounts": [{"name": "certs", "mountPath": "/certs"}, {"name": "data", "mountPath": "/data"}]},
            {"name": "other"}
        ])
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "certs", "secret": {"secretName": "certs"}}])
    );
}

#[test]
fn apply_configurations_append_new_list_elements_after_the_resources() {
    let resource = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
    let overlay = json!({"spec": {"containers": [
        {"name": "sidecar", "image": "side:1"},
        {"name": "app", "image": "app:2"}]}});
    let names = |v: &Value| -> Vec<String> {
        v["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["image"].as_str().unwrap()
                )
            })
            .collect()
    };
    let PatchOutcome::Patched(applied) = super::apply_configuration(&resource, &overlay).unwrap()
    else {
        panic!("skipped")
    };
    assert_eq!(names(&applied), ["app=app:2", "sidecar=side:1"]);
    let PatchOutcome::Patched(strategic) = super::apply(&resource, &overlay).unwrap() else {
        panic!("skipped")
    };
    assert_eq!(names(&strategic), ["sidecar=side:1", "app=app:2"]);
}

/// A resource nested past the bound is an error from the walk (no stack is exhausted), whether
/// the patch reaches the deep part or not; a resource just under it still merges.
#[test]
fn a_resource_nested_past_the_bound_is_an_error_not_a_crash() {
    let nested = |levels: usize| {
        let mut v = json!("leaf");
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": v})
    };
    let overlay = json!({"metadata": {"labels": {"k": "v"}}});
    let deep = apply(&nested(MAX_DEPTH * 4), &overlay);
    assert!(
        deep.as_ref()
            .is_err_and(|e| e.message.contains("nested deeper")),
        "{deep:?}"
    );
    let fine = apply(&nested(MAX_DEPTH - 8), &overlay).unwrap();
    let PatchOutcome::Patched(out) = fine else {
        panic!("not patched: {fine:?}");
    };
    assert_eq!(out["metadata"]["labels"]["k"], "v");
}
