use super::*;
use serde_json::json;

#[derive(Debug)]
enum Want {
    Pass,
    Skip,
    Fail(&'static str),
}

fn check(name: &str, resource: Value, pattern: Value, want: Want) {
    let got = validate(&resource, &pattern);
    match (&want, &got) {
        (Want::Pass, Ok(())) => {}
        (Want::Skip, Err(e)) if e.kind == PatternErrorKind::Skip => {}
        (Want::Fail(path), Err(e)) if e.kind == PatternErrorKind::Fail && e.path == *path => {}
        _ => panic!("{name}: want {want:?}, got {got:?}"),
    }
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}},
           "spec": {"containers": containers}})
}

#[test]
fn conditional_anchor_table() {
    let image_rule = json!({"spec": {"containers": [{"(name)": "nginx*", "image": "!*:latest"}]}});
    let cases = vec![
        (
            "matching element is validated and passes",
            pod(json!([{"name": "nginx", "image": "nginx:1.2"}])),
            image_rule.clone(),
            Want::Pass,
        ),
        (
            "matching element is validated and fails at its path",
            pod(
                json!([{"name": "redis", "image": "redis:latest"}, {"name": "nginx", "image": "nginx:latest"}]),
            ),
            image_rule.clone(),
            Want::Fail("/spec/containers/1/image/"),
        ),
        (
            "non-matching elements are skipped while another element applies",
            pod(
                json!([{"name": "redis", "image": "redis:latest"}, {"name": "nginx", "image": "nginx:1"}]),
            ),
            image_rule.clone(),
            Want::Pass,
        ),
        (
            "all elements skipped means the rule is skipped",
            pod(json!([{"name": "redis", "image": "redis:latest"}])),
            image_rule.clone(),
            Want::Skip,
        ),
        (
            "top-level condition mismatch skips",
            json!({"spec": {"type": "ClusterIP"}}),
            json!({"spec": {"(type)": "ExternalName", "externalName": "!localhost"}}),
            Want::Skip,
        ),
        (
            "top-level condition holds and sibling fails",
            json!({"spec": {"type": "ExternalName", "externalName": "localhost"}}),
            json!({"spec": {"(type)": "ExternalName", "externalName": "!localhost"}}),
            Want::Fail("/spec/externalName/"),
        ),
        (
            "missing conditional key skips",
            json!({"spec": {}}),
            json!({"spec": {"(type)": "ExternalName", "externalName": "!localhost"}}),
            Want::Skip,
        ),
        (
            "condition mismatch takes priority over a failing equality sibling",
            json!({"spec": {"type": "ClusterIP", "ports": "x"}}),
            json!({"spec": {"(type)": "ExternalName", "=(ports)": "y"}}),
            Want::Skip,
        ),
        (
            "skipped map with anchors is reported before plain siblings",
            json!({"metadata": {"labels": {"key": "other"}}, "spec": {"serviceAccountName": "bad"}}),
            json!({"metadata": {"(labels)": {"key": "value"}, "annotations": {"key": "value"}},
                   "spec": {"serviceAccountName": "test"}}),
            Want::Skip,
        ),
        (
            "docker sock example: no volumes skips",
            pod(json!([{"name": "c", "image": "nginx"}])),
            json!({"metadata": {"labels": {"allow-docker": "true"}},
                   "(spec)": {"(volumes)": [{"(hostPath)": {"path": "/var/run/docker.sock"}}]}}),
            Want::Skip,
        ),
    ];
    for (name, resource, pattern, want) in cases {
        check(name, resource, pattern, want);
    }
}

#[test]
fn equality_anchor_table() {
    let pattern = json!({"spec": {"=(hostNetwork)": false}});
    check(
        "absent key passes",
        json!({"spec": {}}),
        pattern.clone(),
        Want::Pass,
    );
    check(
        "present and equal passes",
        json!({"spec": {"hostNetwork": false}}),
        pattern.clone(),
        Want::Pass,
    );
    check(
        "present and different fails",
        json!({"spec": {"hostNetwork": true}}),
        pattern,
        Want::Fail("/spec/hostNetwork/"),
    );
}

#[test]
fn existence_anchor_table() {
    let pattern = json!({"spec": {"^(containers)": [{"image": "nginx*"}]}});
    check(
        "one matching element is enough",
        pod(json!([{"image": "redis"}, {"image": "nginx:1"}])),
        pattern.clone(),
        Want::Pass,
    );
    check(
        "no matching element fails",
        pod(json!([{"image": "redis"}])),
        pattern.clone(),
        Want::Fail("/spec/containers/"),
    );
    check(
        "absent key passes",
        json!({"spec": {}}),
        pattern.clone(),
        Want::Pass,
    );
    check(
        "non-list resource fails",
        json!({"spec": {"containers": "x"}}),
        pattern,
        Want::Fail("/spec/containers/"),
    );
    // Kyverno's TestValidateMapElement_TwoElementsInArrayOnePass.
    check(
        "existence with nested conditional anchors",
        json!({"list": [{"name": "nirmata-1", "object": [{"key1": "value1", "key2": "value2"}]},
                        {"name": "nirmata-1", "object": [{"key1": "not_value", "key2": "not_value"}]}]}),
        json!({"^(list)": [{"(name)": "nirmata-*", "object": [{"(key1)": "value*", "key2": "value*"}]}]}),
        Want::Pass,
    );
}

#[test]
fn negation_anchor_table() {
    let pattern = json!({"spec": {"volumes": [{"X(hostPath)": "null"}]}});
    check(
        "absent key passes",
        json!({"spec": {"volumes": [{"name": "a", "emptyDir": {}}]}}),
        pattern.clone(),
        Want::Pass,
    );
    check(
        "present key fails, not skips",
        json!({"spec": {"volumes": [{"name": "a", "hostPath": {"path": "/"}}]}}),
        pattern,
        Want::Fail("/spec/volumes/0/hostPath/"),
    );
}

#[test]
fn global_anchor_table() {
    let pattern =
        json!({"spec": {"containers": [{"<(image)": "*corp.com/*", "imagePullPolicy": "Always"}]}});
    check(
        "global mismatch skips the rule",
        pod(json!([{"image": "docker.io/nginx", "imagePullPolicy": "IfNotPresent"}])),
        pattern.clone(),
        Want::Skip,
    );
    check(
        "global match then sibling failure fails",
        pod(json!([{"image": "corp.com/app", "imagePullPolicy": "IfNotPresent"}])),
        pattern.clone(),
        Want::Fail("/spec/containers/0/imagePullPolicy/"),
    );
    check(
        "global absent is fine",
        pod(json!([{"name": "x", "imagePullPolicy": "Always"}])),
        pattern,
        Want::Pass,
    );
}

#[test]
fn add_anchor_is_a_plain_missing_key_in_validate() {
    // Kyverno looks up the literal key "+(a)", which is absent, i.e. nil.
    check(
        "nil pattern passes",
        json!({}),
        json!({"+(a)": null}),
        Want::Pass,
    );
    check(
        "string pattern fails",
        json!({"a": "x"}),
        json!({"+(a)": "x"}),
        Want::Fail("/+(a)/"),
    );
}

#[test]
fn maps_arrays_and_scalars_table() {
    let cases = vec![
        (
            "star requires non-nil key",
            json!({"a": {}}),
            json!({"a": {"b": "*"}}),
            Want::Fail("/a/"),
        ),
        (
            "star accepts any value",
            json!({"a": {"b": 0}}),
            json!({"a": {"b": "*"}}),
            Want::Pass,
        ),
        (
            "null pattern accepts missing key",
            json!({"a": {}}),
            json!({"a": {"b": null}}),
            Want::Pass,
        ),
        (
            "empty string pattern rejects missing key",
            json!({"a": {}}),
            json!({"a": {"b": ""}}),
            Want::Fail("/a/b/"),
        ),
        (
            "map pattern vs scalar fails",
            json!({"a": 1}),
            json!({"a": {"b": 1}}),
            Want::Fail("/a/"),
        ),
        (
            "array pattern vs scalar fails",
            json!({"a": 1}),
            json!({"a": [1]}),
            Want::Fail("/a/"),
        ),
        (
            "scalar pattern applies to every array element",
            json!({"args": ["--a", "--b"]}),
            json!({"args": "!--privileged"}),
            Want::Pass,
        ),
        (
            "scalar pattern fails on one array element",
            json!({"args": ["--a", "--privileged"]}),
            json!({"args": "!--privileged"}),
            Want::Fail("/args/"),
        ),
        (
            "array of scalar patterns uses the first",
            json!({"a": ["ab", "ac"]}),
            json!({"a": ["a*", "zzz"]}),
            Want::Pass,
        ),
        (
            "array of scalar patterns fails",
            json!({"a": ["ab", "b"]}),
            json!({"a": ["a*"]}),
            Want::Fail("/a/"),
        ),
        (
            "only the first map of a pattern array is used",
            json!({"a": [{"x": 1}]}),
            json!({"a": [{"x": 1}, {"y": 2}]}),
            Want::Pass,
        ),
        (
            "empty pattern array fails",
            json!({"a": [1]}),
            json!({"a": []}),
            Want::Fail("/a/"),
        ),
        (
            "empty resource array passes a map pattern",
            json!({"a": []}),
            json!({"a": [{"x": 1}]}),
            Want::Pass,
        ),
        (
            "nested arrays are positional",
            json!({"a": [[1], [2]]}),
            json!({"a": [[1], [2]]}),
            Want::Pass,
        ),
        (
            "nested arrays too short is an error without path",
            json!({"a": [[1]]}),
            json!({"a": [[1], [2]]}),
            Want::Fail(""),
        ),
        (
            "int resource vs float pattern",
            json!({"replicas": 3}),
            json!({"replicas": 3}),
            Want::Pass,
        ),
        (
            "quantity operator on nested value",
            json!({"r": {"memory": "512Mi"}}),
            json!({"r": {"memory": "<=1Gi"}}),
            Want::Pass,
        ),
    ];
    for (name, resource, pattern, want) in cases {
        check(name, resource, pattern, want);
    }
}

#[test]
fn kyverno_asterisk_and_null_examples() {
    let resource = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginxo", "livenessProbe": null}]}}}});
    check(
        "star with null value fails at the element",
        resource.clone(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "*", "livenessProbe": "*"}]}}}}),
        Want::Fail("/spec/template/spec/containers/0/"),
    );
    check(
        "null pattern with null value passes",
        resource,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "*", "livenessProbe": null}]}}}}),
        Want::Pass,
    );
}

#[test]
fn missing_anchor_key_drops_the_failure_path() {
    check(
        "existence key never seen and a plain mismatch",
        json!({"b": 3}),
        json!({"^(list)": [{"a": 1}], "b": 2}),
        Want::Fail(""),
    );
}

#[test]
fn metadata_label_wildcard_keys_are_expanded() {
    let pattern = json!({"metadata": {"labels": {"app.kubernetes.io/*": "?*"}}});
    check(
        "expanded key with value passes",
        json!({"metadata": {"labels": {"app.kubernetes.io/name": "x"}}}),
        pattern.clone(),
        Want::Pass,
    );
    check(
        "expanded key with empty value fails",
        json!({"metadata": {"labels": {"app.kubernetes.io/name": ""}}}),
        pattern,
        Want::Fail("/metadata/labels/app.kubernetes.io/name/"),
    );
}

#[test]
fn unresolved_reference_fails_like_kyverno() {
    let pattern = json!({"spec": {"containers": [{"name": "*", "resources": {
        "requests": {"memory": "$(./../somekey/somekey2/memory)"}, "limits": {"memory": "2048Mi"}}}]}});
    let resource = json!({"spec": {"containers": [{"name": "n", "resources": {
        "requests": {"memory": "1024Mi"}, "limits": {"memory": "2048Mi"}}}]}});
    check(
        "literal reference text does not match",
        resource,
        pattern,
        Want::Fail("/spec/containers/0/resources/requests/memory/"),
    );
}

#[test]
fn resolved_reference_validates() {
    let pattern = json!({"spec": {"containers": [{"name": "*", "resources": {
        "requests": {"memory": "$(<=./../../limits/memory)"}, "limits": {"memory": "2048Mi"}}}]}});
    let resolved = resolve_references(&pattern).unwrap();
    let ok = json!({"spec": {"containers": [{"name": "n", "resources": {
        "requests": {"memory": "1024Mi"}, "limits": {"memory": "2048Mi"}}}]}});
    check(
        "request under limit passes",
        ok,
        resolved.clone(),
        Want::Pass,
    );
    let bad = json!({"spec": {"containers": [{"name": "n", "resources": {
        "requests": {"memory": "4Gi"}, "limits": {"memory": "2048Mi"}}}]}});
    check(
        "request over limit fails",
        bad,
        resolved,
        Want::Fail("/spec/containers/0/resources/requests/memory/"),
    );
}

#[test]
fn deep_patterns_fail_instead_of_overflowing() {
    let mut pattern = json!("x");
    let mut resource = json!("x");
    for _ in 0..600 {
        pattern = json!({ "a": pattern });
        resource = json!({ "a": resource });
    }
    let got = validate(&resource, &pattern);
    assert!(matches!(
        got,
        Err(PatternError {
            kind: PatternErrorKind::Fail,
            ..
        })
    ));
    assert!(check_syntax(&pattern).is_err());
}

#[test]
fn check_syntax_table() {
    let ok = [
        json!({"spec": {"(name)": "a", "=(x)": 1, "X(y)": null, "<(z)": "b", "+(w)": 1}}),
        json!({"^(list)": [{"a": 1}]}),
        json!({"metadata": {"labels": {"app.kubernetes.io/*": "?*"}}}),
        json!({"name": "f(x)"}),
    ];
    for p in ok {
        assert!(check_syntax(&p).is_ok(), "{p}");
    }
    let bad = [
        (json!({"spec": {"(name": 1}}), "/spec/(name"),
        (json!({"spec": {"X(": 1}}), "/spec/X("),
        (json!({"^(list)": {"a": 1}}), "/^(list)"),
        (json!({"^(list)": []}), "/^(list)"),
        (json!({"a": [{"!(b)": 1}]}), "/a/0/!(b)"),
        (json!({"((a))": 1}), "/((a))"),
    ];
    for (p, path) in bad {
        let err = check_syntax(&p).unwrap_err();
        assert_eq!(err.path, path, "{p}");
    }
    assert!(check_validate_syntax(&json!({"+(a)": 1})).is_err());
}
