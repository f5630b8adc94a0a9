//! Behaviour of the public API, following Kyverno's `pkg/autogen` tests and sources.

use super::*;
use serde_json::json;

const SIX: [&str; 6] = [
    "apps/v1/DaemonSet",
    "apps/v1/Deployment",
    "batch/v1/Job",
    "apps/v1/ReplicaSet",
    "v1/ReplicationController",
    "apps/v1/StatefulSet",
];

fn policy(annotation: Option<&str>, rules: Value) -> Value {
    let mut metadata = json!({"name": "p"});
    if let Some(a) = annotation {
        metadata["annotations"] = json!({ ANNOTATION_AUTOGEN_CONTROLLERS: a });
    }
    json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": metadata, "spec": {"rules": rules}})
}

fn pod_pattern_rule() -> Value {
    json!({
        "name": "check-labels",
        "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
        "validate": {
            "failureAction": "Enforce",
            "message": "label 'app' is required",
            "pattern": {"metadata": {"labels": {"app": "?*"}}}
        }
    })
}

fn names(rules: &[Value]) -> Vec<&str> {
    rules.iter().map(rule_name).collect()
}

fn kinds(c: &[Controller]) -> Vec<&str> {
    c.iter().map(Controller::kind).collect()
}

#[test]
fn simple_pattern_rule_gets_controller_and_cronjob_rules() {
    let p = policy(None, json!([pod_pattern_rule()]));
    let rules = compute_rules(&p);
    assert_eq!(
        rules,
        vec![
            pod_pattern_rule(),
            json!({
                "name": "autogen-check-labels",
                "match": {"any": [{"resources": {"kinds": SIX}}]},
                "validate": {
                    "failureAction": "Enforce",
                    "message": "label 'app' is required",
                    "pattern": {"spec": {"template": {"metadata": {"labels": {"app": "?*"}}}}}
                }
            }),
            json!({
                "name": "autogen-cronjob-check-labels",
                "match": {"any": [{"resources": {"kinds": ["batch/v1/CronJob"]}}]},
                "validate": {
                    "failureAction": "Enforce",
                    "message": "label 'app' is required",
                    "pattern": {"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "?*"}}}}}}}
                }
            }),
        ]
    );
    let c = controllers(&p);
    assert_eq!(
        kinds(&c),
        [
            "DaemonSet",
            "Deployment",
            "Job",
            "ReplicaSet",
            "ReplicationController",
            "StatefulSet",
            "CronJob"
        ]
    );
    assert_eq!(c.iter().map(Controller::gvk).collect::<Vec<_>>()[..6], SIX);
    assert!(c.last().is_some_and(Controller::is_cron_job));
}

#[test]
fn inline_match_kinds_are_replaced() {
    let rule = json!({
        "name": "r",
        "match": {"resources": {"kinds": ["Pod"], "namespaces": ["prod"]}},
        "validate": {"pattern": {"spec": {"hostNetwork": false}}}
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(
        rules[1]["match"],
        json!({"resources": {"kinds": SIX, "namespaces": ["prod"]}})
    );
    assert_eq!(
        rules[2]["match"],
        json!({"resources": {"kinds": ["batch/v1/CronJob"], "namespaces": ["prod"]}})
    );
    // No message in, no message out.
    assert_eq!(
        rules[1]["validate"],
        json!({"pattern": {"spec": {"template": {"spec": {"hostNetwork": false}}}}})
    );
}

/// (case, annotation, wanted controllers, wanted rule names)
type AnnotationCase<'a> = (&'a str, Option<&'a str>, &'a [&'a str], &'a [&'a str]);

#[test]
fn annotation_chooses_controllers() {
    let cases: &[AnnotationCase] = &[
        (
            "absent means all",
            None,
            &[
                "DaemonSet",
                "Deployment",
                "Job",
                "ReplicaSet",
                "ReplicationController",
                "StatefulSet",
                "CronJob",
            ],
            &[
                "check-labels",
                "autogen-check-labels",
                "autogen-cronjob-check-labels",
            ],
        ),
        (
            "all",
            Some("all"),
            &[
                "DaemonSet",
                "Deployment",
                "Job",
                "ReplicaSet",
                "ReplicationController",
                "StatefulSet",
                "CronJob",
            ],
            &[
                "check-labels",
                "autogen-check-labels",
                "autogen-cronjob-check-labels",
            ],
        ),
        ("none", Some("none"), &[], &["check-labels"]),
        (
            "list with cronjob",
            Some("Deployment,CronJob"),
            &["Deployment", "CronJob"],
            &[
                "check-labels",
                "autogen-check-labels",
                "autogen-cronjob-check-labels",
            ],
        ),
        (
            "list without cronjob",
            Some("StatefulSet,Deployment"),
            &["Deployment", "StatefulSet"],
            &["check-labels", "autogen-check-labels"],
        ),
        (
            "cronjob only",
            Some("CronJob"),
            &["CronJob"],
            &["check-labels", "autogen-cronjob-check-labels"],
        ),
        // Unknown kinds are dropped when a known one is named…
        (
            "custom and known",
            Some("CloneSet,Deployment"),
            &["Deployment"],
            &["check-labels", "autogen-check-labels"],
        ),
        // …and used verbatim when none is.
        (
            "custom only",
            Some("CloneSet"),
            &["CloneSet"],
            &["check-labels", "autogen-check-labels"],
        ),
        // No trimming: " Deployment" is not Deployment, but " CronJob" still contains CronJob.
        (
            "spaces",
            Some("Job, Deployment, CronJob"),
            &["Job", "CronJob"],
            &[
                "check-labels",
                "autogen-check-labels",
                "autogen-cronjob-check-labels",
            ],
        ),
        (
            "empty annotation generates nothing",
            Some(""),
            &[],
            &["check-labels"],
        ),
    ];
    for (case, annotation, want_controllers, want_rules) in cases {
        let p = policy(*annotation, json!([pod_pattern_rule()]));
        assert_eq!(kinds(&controllers(&p)), *want_controllers, "{case}");
        assert_eq!(names(&compute_rules(&p)), *want_rules, "{case}");
    }
}

#[test]
fn annotation_list_sets_gvk_kinds() {
    let p = policy(
        Some("StatefulSet,Deployment,CloneSet"),
        json!([pod_pattern_rule()]),
    );
    let rules = compute_rules(&p);
    assert_eq!(
        rules[1]["match"]["any"][0]["resources"]["kinds"],
        json!(["apps/v1/Deployment", "apps/v1/StatefulSet"])
    );
    let custom = compute_rules(&policy(Some("CloneSet"), json!([pod_pattern_rule()])));
    assert_eq!(
        custom[1]["match"]["any"][0]["resources"]["kinds"],
        json!(["CloneSet"])
    );
}

#[test]
fn can_auto_gen_refusals_disable_the_whole_policy() {
    let validate = json!({"pattern": {"metadata": {"labels": {"a": "?*"}}}});
    let cases: Vec<(&str, Value)> = vec![
        (
            "match name",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"], "name": "x"}}, "validate": validate}),
        ),
        (
            "match names",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"], "names": ["x"]}}, "validate": validate}),
        ),
        (
            "match selector",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"], "selector": {"matchLabels": {"a": "b"}}}}, "validate": validate}),
        ),
        (
            "match annotations",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"], "annotations": {}}}, "validate": validate}),
        ),
        (
            "exclude name",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "exclude": {"resources": {"name": "test"}}, "validate": validate}),
        ),
        (
            "exclude names",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "exclude": {"resources": {"names": ["test"]}}, "validate": validate}),
        ),
        (
            "exclude selector",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "exclude": {"resources": {"selector": {"matchLabels": {"foo": "bar"}}}}, "validate": validate}),
        ),
        (
            "any filter name",
            json!({"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"], "name": "x"}}]}, "validate": validate}),
        ),
        (
            "exclude all filter selector",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "exclude": {"all": [{"resources": {"selector": {}}}]}, "validate": validate}),
        ),
        (
            "match mixes pod and controller",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod", "Deployment"]}}, "validate": validate}),
        ),
        (
            "exclude mixes pod and controller",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "exclude": {"resources": {"kinds": ["Pod", "Deployment"]}}, "validate": validate}),
        ),
        (
            "any filter mixes v1/Pod",
            json!({"name": "r", "match": {"any": [{"resources": {"kinds": ["v1/Pod", "Service"]}}]}, "validate": validate}),
        ),
        (
            "patchesJson6902",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "mutate": {"patchesJson6902": "- op: add\n  path: /metadata/labels/a\n  value: b"}}),
        ),
        (
            "foreach patchesJson6902",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "mutate": {"foreach": [{"list": "request.object.spec.containers", "patchesJson6902": "- op: add"}]}}),
        ),
        (
            "no pod or controller kind",
            json!({"name": "r", "match": {"resources": {"kinds": ["Service"]}}, "validate": validate}),
        ),
        // Kyverno's "needed" test compares exact strings, so a GVK-written Pod is not enough.
        (
            "only v1/Pod",
            json!({"name": "r", "match": {"resources": {"kinds": ["v1/Pod"]}}, "validate": validate}),
        ),
    ];
    for (case, rule) in cases {
        let p = policy(None, json!([rule]));
        assert_eq!(controllers(&p), vec![], "{case}");
        assert_eq!(compute_rules(&p), vec![rule], "{case}");
    }
}

#[test]
fn a_generate_rule_elsewhere_disables_autogen_even_with_annotation() {
    let generate = json!({
        "name": "gen",
        "match": {"resources": {"kinds": ["Namespace"]}},
        "generate": {"kind": "NetworkPolicy", "name": "deny", "namespace": "{{request.object.metadata.name}}", "data": {}}
    });
    let p = policy(Some("Deployment"), json!([pod_pattern_rule(), generate]));
    assert!(controllers(&p).is_empty());
    assert_eq!(names(&compute_rules(&p)), ["check-labels", "gen"]);
}

#[test]
fn deny_and_pod_security_rules_are_autogenerated() {
    let deny = json!({
        "name": "deny-foo",
        "match": {"resources": {"kinds": ["Pod"]}},
        "validate": {
            "message": "testpolicy",
            "allowExistingViolations": false,
            "deny": {"conditions": [{"key": "{{request.object.metadata.labels.foo}}", "operator": "Equals", "value": "bar"}]}
        }
    });
    let rules = compute_rules(&policy(None, json!([deny])));
    assert_eq!(
        rules[1]["validate"],
        json!({
            "message": "testpolicy",
            "allowExistingViolations": false,
            "deny": {"conditions": [{"key": "{{request.object.spec.template.metadata.labels.foo}}", "operator": "Equals", "value": "bar"}]}
        })
    );
    assert_eq!(
        rules[2]["validate"]["deny"]["conditions"][0]["key"],
        json!("{{request.object.spec.jobTemplate.spec.template.metadata.labels.foo}}")
    );

    let pss = json!({
        "name": "restricted",
        "match": {"all": [{"resources": {"kinds": ["Pod"]}}]},
        "validate": {
            "failureAction": "enforce",
            "podSecurity": {"level": "baseline", "version": "v1.24", "exclude": [{"controlName": "SELinux", "images": ["nginx"]}]}
        }
    });
    let rules = compute_rules(&policy(None, json!([pss.clone()])));
    assert_eq!(
        names(&rules),
        [
            "restricted",
            "autogen-restricted",
            "autogen-cronjob-restricted"
        ]
    );
    assert_eq!(rules[1]["validate"], pss["validate"]);
    assert_eq!(
        rules[1]["match"],
        json!({"all": [{"resources": {"kinds": SIX}}]})
    );
    assert_eq!(rules[2]["validate"], pss["validate"]);
}

#[test]
fn only_filters_naming_pod_are_rewritten_for_controllers_but_all_for_cronjob() {
    let rule = json!({
        "name": "r",
        "match": {"any": [
            {"resources": {"kinds": ["Pod"], "namespaces": ["a"]}},
            {"resources": {"namespaces": ["b"]}}
        ]},
        "exclude": {"all": [
            {"resources": {"kinds": ["Pod"]}},
            {"subjects": [{"kind": "User", "name": "admin"}]}
        ]},
        "validate": {"pattern": {"metadata": {"name": "?*"}}}
    });
    let rules = compute_rules(&policy(Some("Deployment,CronJob"), json!([rule])));
    assert_eq!(
        rules[1]["match"],
        json!({"any": [
            {"resources": {"kinds": ["apps/v1/Deployment"], "namespaces": ["a"]}},
            {"resources": {"namespaces": ["b"]}}
        ]})
    );
    assert_eq!(
        rules[1]["exclude"],
        json!({"all": [
            {"resources": {"kinds": ["apps/v1/Deployment"]}},
            {"subjects": [{"kind": "User", "name": "admin"}]}
        ]})
    );
    assert_eq!(
        rules[2]["match"],
        json!({"any": [
            {"resources": {"kinds": ["batch/v1/CronJob"], "namespaces": ["a"]}},
            {"resources": {"kinds": ["batch/v1/CronJob"], "namespaces": ["b"]}}
        ]})
    );
    assert_eq!(
        rules[2]["exclude"],
        json!({"all": [
            {"resources": {"kinds": ["batch/v1/CronJob"]}},
            {"subjects": [{"kind": "User", "name": "admin"}], "resources": {"kinds": ["batch/v1/CronJob"]}}
        ]})
    );
}

#[test]
fn exclude_without_kinds_is_kept_and_exclude_kinds_are_replaced() {
    let rule = json!({
        "name": "validate-hostPath",
        "match": {"resources": {"kinds": ["Pod"]}},
        "exclude": {"resources": {"namespaces": ["fake-namespace"]}},
        "validate": {"message": "Host path volumes are not allowed", "pattern": {"spec": {"=(volumes)": [{"X(hostPath)": "null"}]}}}
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(
        rules[1]["exclude"],
        json!({"resources": {"namespaces": ["fake-namespace"]}})
    );
    assert_eq!(
        rules[2],
        json!({
            "name": "autogen-cronjob-validate-hostPath",
            "match": {"resources": {"kinds": ["batch/v1/CronJob"]}},
            "exclude": {"resources": {"namespaces": ["fake-namespace"]}},
            "validate": {
                "message": "Host path volumes are not allowed",
                "pattern": {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"=(volumes)": [{"X(hostPath)": "null"}]}}}}}}
            }
        })
    );

    let with_kinds = json!({
        "name": "r",
        "match": {"resources": {"kinds": ["Pod"]}},
        "exclude": {"resources": {"kinds": ["Pod"], "namespaces": ["test"]}},
        "validate": {"pattern": {"metadata": {"labels": {"foo": "bar"}}}}
    });
    let rules = compute_rules(&policy(Some("Job"), json!([with_kinds])));
    assert_eq!(
        rules[1]["exclude"],
        json!({"resources": {"kinds": ["batch/v1/Job"], "namespaces": ["test"]}})
    );
}

#[test]
fn rules_that_are_not_autogenerated() {
    let validate = json!({"pattern": {"metadata": {"labels": {"a": "?*"}}}});
    let cases: Vec<(&str, Value)> = vec![
        // Autogen is on for the policy (a Deployment kind is "needed"), but this rule has no Pod.
        (
            "matches a controller only",
            json!({"name": "r", "match": {"resources": {"kinds": ["Deployment"]}}, "validate": validate}),
        ),
        // Exclude names kinds, none of them Pod.
        (
            "excludes other kinds",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "exclude": {"resources": {"kinds": ["Deployment"]}}, "validate": validate}),
        ),
        // Nothing autogen carries over.
        (
            "manifests only",
            json!({"name": "r", "match": {"resources": {"kinds": ["Pod"]}}, "validate": {"manifests": {"attestors": []}}}),
        ),
        // Already a generated rule.
        (
            "autogen name",
            json!({"name": "autogen-r", "match": {"resources": {"kinds": ["Pod"]}}, "validate": validate}),
        ),
    ];
    for (case, rule) in cases {
        let p = policy(None, json!([rule]));
        assert_eq!(compute_rules(&p), vec![rule], "{case}");
    }
}

#[test]
fn stale_autogen_rules_are_dropped_when_new_ones_are_generated() {
    let stale = json!({"name": "autogen-check-labels", "match": {"resources": {"kinds": ["Deployment"]}}, "validate": {"pattern": {}}});
    let rules = compute_rules(&policy(None, json!([pod_pattern_rule(), stale])));
    assert_eq!(
        names(&rules),
        [
            "check-labels",
            "autogen-check-labels",
            "autogen-cronjob-check-labels"
        ]
    );
    assert_eq!(
        rules[1]["match"]["any"][0]["resources"]["kinds"],
        json!(SIX)
    );
}

#[test]
fn generated_rules_follow_each_original_in_order() {
    let mut second = pod_pattern_rule();
    second["name"] = json!("second");
    let rules = compute_rules(&policy(None, json!([pod_pattern_rule(), second])));
    assert_eq!(
        names(&rules),
        [
            "check-labels",
            "second",
            "autogen-check-labels",
            "autogen-cronjob-check-labels",
            "autogen-second",
            "autogen-cronjob-second"
        ]
    );
}

#[test]
fn long_names_are_truncated_to_63_characters() {
    let cases = [
        ("autogen", "valid-rule-name", "autogen-valid-rule-name"),
        (
            "autogen",
            "too-long-this-rule-name-will-be-truncated-to-63-characters",
            "autogen-too-long-this-rule-name-will-be-truncated-to-63-charact",
        ),
        (
            "autogen-cronjob",
            "valid-rule-name",
            "autogen-cronjob-valid-rule-name",
        ),
        (
            "autogen-cronjob",
            "too-long-this-rule-name-will-be-truncated-to-63-characters",
            "autogen-cronjob-too-long-this-rule-name-will-be-truncated-to-63",
        ),
    ];
    for (prefix, name, want) in cases {
        assert_eq!(autogen_rule_name(prefix, name), want);
    }
    let mut rule = pod_pattern_rule();
    rule["name"] = json!("too-long-this-rule-name-will-be-truncated-to-63-characters");
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(
        names(&rules)[1..],
        [
            "autogen-too-long-this-rule-name-will-be-truncated-to-63-charact",
            "autogen-cronjob-too-long-this-rule-name-will-be-truncated-to-63"
        ]
    );
}

#[test]
fn autogen_names_are_recognised() {
    let cases = [
        ("valid-rule-name", false),
        ("autogen-simple", true),
        ("autogen-cronjob-simple", true),
        (
            "autogen-too-long-this-rule-name-will-be-truncated-to-63-charact",
            true,
        ),
        ("autogenx", false),
    ];
    for (name, want) in cases {
        assert_eq!(is_autogen_rule_name(name), want, "{name}");
    }
}

#[test]
fn request_paths_are_rewritten_in_context_preconditions_and_bodies() {
    let rule = json!({
        "name": "r",
        "match": {"resources": {"kinds": ["Pod"]}},
        "context": [{"name": "ns", "apiCall": {"urlPath": "/api/v1/namespaces/{{request.object.metadata.namespace}}"}}],
        "preconditions": {"all": [{"key": "{{request.oldObject.spec.nodeName || ''}}", "operator": "Equals", "value": ""}]},
        "celPreconditions": [{"name": "c", "expression": "object.spec.x"}],
        "validate": {
            "message": "name {{request.object.metadata.name}}",
            "deny": {"conditions": {"any": [{"key": "{{request.object.spec.hostPID}}", "operator": "Equals", "value": true}]}}
        }
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    let pod = &rules[1];
    assert_eq!(
        pod["context"][0]["apiCall"]["urlPath"],
        json!("/api/v1/namespaces/{{request.object.spec.template.metadata.namespace}}")
    );
    assert_eq!(
        pod["preconditions"]["all"][0]["key"],
        json!("{{request.oldObject.spec.template.spec.nodeName || ''}}")
    );
    assert_eq!(
        pod["validate"]["message"],
        json!("name {{request.object.spec.template.metadata.name}}")
    );
    assert_eq!(
        pod["validate"]["deny"]["conditions"]["any"][0]["key"],
        json!("{{request.object.spec.template.spec.hostPID}}")
    );
    // CEL names are only rewritten for validate.cel rules.
    assert_eq!(
        pod["celPreconditions"][0]["expression"],
        json!("object.spec.x")
    );
    let cron = &rules[2];
    assert_eq!(
        cron["context"][0]["apiCall"]["urlPath"],
        json!(
            "/api/v1/namespaces/{{request.object.spec.jobTemplate.spec.template.metadata.namespace}}"
        )
    );
    assert_eq!(
        cron["preconditions"]["all"][0]["key"],
        json!("{{request.oldObject.spec.jobTemplate.spec.template.spec.nodeName || ''}}")
    );
}

#[test]
fn foreach_validation_is_copied_and_its_paths_rewritten() {
    let rule = json!({
        "name": "images",
        "match": {"resources": {"kinds": ["Pod"]}},
        "validate": {
            "message": "bad image",
            "foreach": [{
                "list": "request.object.spec.containers",
                "preconditions": {"all": [{"key": "{{element.name}}", "operator": "NotEquals", "value": "x"}]},
                "pattern": {"image": "!*:latest"}
            }]
        }
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(
        rules[1]["validate"],
        json!({
            "message": "bad image",
            "foreach": [{
                "list": "request.object.spec.template.spec.containers",
                "preconditions": {"all": [{"key": "{{element.name}}", "operator": "NotEquals", "value": "x"}]},
                "pattern": {"image": "!*:latest"}
            }]
        })
    );
    assert_eq!(
        rules[2]["validate"]["foreach"][0]["list"],
        json!("request.object.spec.jobTemplate.spec.template.spec.containers")
    );
}

#[test]
fn foreach_mutation_wraps_patches_and_keeps_list_context_preconditions() {
    let rule = json!({
        "name": "m",
        "match": {"resources": {"kinds": ["Pod"]}},
        "mutate": {"foreach": [{
            "list": "request.object.spec.containers",
            "order": "Descending",
            "context": [{"name": "x", "variable": {"value": 1}}],
            "preconditions": {"any": [{"key": "{{element.name}}", "operator": "Equals", "value": "a"}]},
            "patchStrategicMerge": {"spec": {"containers": [{"(name)": "{{element.name}}", "imagePullPolicy": "Always"}]}}
        }]}
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(
        rules[1]["mutate"],
        json!({"foreach": [{
            "list": "request.object.spec.template.spec.containers",
            "context": [{"name": "x", "variable": {"value": 1}}],
            "preconditions": {"any": [{"key": "{{element.name}}", "operator": "Equals", "value": "a"}]},
            "patchStrategicMerge": {"spec": {"template": {"spec": {"containers": [{"(name)": "{{element.name}}", "imagePullPolicy": "Always"}]}}}}
        }]})
    );
    assert_eq!(
        rules[2]["mutate"]["foreach"][0]["patchStrategicMerge"],
        json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"(name)": "{{element.name}}", "imagePullPolicy": "Always"}]}}}}}})
    );
}

#[test]
fn strategic_merge_patch_is_wrapped_and_other_mutate_fields_dropped() {
    let rule = json!({
        "name": "add-label",
        "match": {"resources": {"kinds": ["Pod"]}},
        "mutate": {
            "mutateExistingOnPolicyUpdate": false,
            "patchStrategicMerge": {"metadata": {"labels": {"+(app)": "{{request.object.metadata.name}}"}}}
        }
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(
        rules[1]["mutate"],
        json!({"patchStrategicMerge": {"spec": {"template": {"metadata": {"labels": {"+(app)": "{{request.object.spec.template.metadata.name}}"}}}}}})
    );
    assert_eq!(
        rules[2]["mutate"],
        json!({"patchStrategicMerge": {"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"+(app)": "{{request.object.spec.jobTemplate.spec.template.metadata.name}}"}}}}}}}})
    );
}

#[test]
fn any_pattern_wraps_each_pattern_and_shifts_message_references() {
    let rule = json!({
        "name": "r",
        "match": {"resources": {"kinds": ["Pod"]}},
        "validate": {
            "message": "bad $(./../../anyPattern/0/spec/x)",
            "anyPattern": [{"spec": {"x": "a"}}, {"spec": {"x": "b"}}]
        }
    });
    let rules = compute_rules(&policy(Some("Deployment"), json!([rule])));
    assert_eq!(
        rules[1]["validate"],
        json!({
            "message": "bad $(./../../anyPattern/0/spec/template/spec/x)",
            "anyPattern": [{"spec": {"template": {"spec": {"x": "a"}}}}, {"spec": {"template": {"spec": {"x": "b"}}}}]
        })
    );
}

#[test]
fn cronjob_message_references_are_shifted_twice() {
    let rule = json!({
        "name": "r",
        "match": {"resources": {"kinds": ["Pod"]}},
        "validate": {
            "message": "image $(./../../pattern/spec/containers/0/image) is not allowed",
            "pattern": {"spec": {"containers": [{"image": "!*:latest"}]}}
        }
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(
        rules[1]["validate"]["message"],
        json!("image $(./../../pattern/spec/template/spec/containers/0/image) is not allowed")
    );
    assert_eq!(
        rules[2]["validate"]["message"],
        json!(
            "image $(./../../pattern/spec/jobTemplate/spec/template/spec/template/spec/containers/0/image) is not allowed"
        )
    );
}

#[test]
fn cel_validation_is_copied_with_cel_paths_rewritten() {
    let rule = json!({
        "name": "host-path",
        "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
        "validate": {
            "failureAction": "Enforce",
            "cel": {"expressions": [{
                "expression": "!has(object.spec.volumes) || object.spec.volumes.all(volume, !has(volume.hostPath))",
                "message": "HostPath volumes are forbidden."
            }]}
        }
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules[1]["validate"]["cel"]["expressions"][0]["expression"],
        json!(
            "!has(object.spec.template.spec.volumes) || object.spec.template.spec.volumes.all(volume, !has(volume.hostPath))"
        )
    );
    assert_eq!(
        rules[2]["validate"]["cel"]["expressions"][0]["expression"],
        json!(
            "!has(object.spec.jobTemplate.spec.template.spec.volumes) || object.spec.jobTemplate.spec.template.spec.volumes.all(volume, !has(volume.hostPath))"
        )
    );
    assert_eq!(rules[1]["validate"]["failureAction"], json!("Enforce"));
}

#[test]
fn assertion_objects_move_under_the_template() {
    let rule = json!({
        "name": "default-sa",
        "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
        "validate": {"assert": {"object": {"spec": {"(serviceAccountName == 'default')": false}}}}
    });
    let rules = compute_rules(&policy(None, json!([rule])));
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules[1]["validate"]["assert"],
        json!({"object": {"spec": {"template": {"spec": {"(serviceAccountName == 'default')": false}}}}})
    );
    assert_eq!(
        rules[2]["validate"]["assert"],
        json!({"object": {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"(serviceAccountName == 'default')": false}}}}}}})
    );
}

#[test]
fn verify_images_rules_are_copied_without_image_extractors() {
    let rule = json!({
        "name": "check-image",
        "match": {"resources": {"kinds": ["Pod"]}},
        "imageExtractors": {"Pod": [{"path": "/spec/x"}]},
        "verifyImages": [{"imageReferences": ["*"], "attestors": [{"count": 1, "entries": [{"keys": {"publicKeys": "k"}}]}]}]
    });
    let rules = compute_rules(&policy(Some("CronJob"), json!([rule.clone()])));
    assert_eq!(
        rules,
        vec![
            rule.clone(),
            json!({
                "name": "autogen-cronjob-check-image",
                "match": {"resources": {"kinds": ["batch/v1/CronJob"]}},
                "verifyImages": rule["verifyImages"]
            })
        ]
    );
}

#[test]
fn missing_or_malformed_rules_yield_nothing() {
    assert!(compute_rules(&json!({})).is_empty());
    assert!(controllers(&json!({"spec": {"rules": "x"}})).is_empty());
}

#[test]
fn a_pattern_made_only_of_null_leaves_is_kept_in_generated_rules() {
    let p = policy(
        None,
        json!([{
            "name": "no-host-ipc",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"pattern": {"spec": {"hostIPC": null}}}
        }]),
    );
    let rules = compute_rules(&p);
    assert_eq!(
        names(&rules),
        [
            "no-host-ipc",
            "autogen-no-host-ipc",
            "autogen-cronjob-no-host-ipc"
        ]
    );
    assert_eq!(
        rules[1]["validate"],
        json!({"pattern": {"spec": {"template": {"spec": {"hostIPC": null}}}}})
    );
    assert_eq!(
        rules[2]["validate"]["pattern"]["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        json!({"hostIPC": null})
    );
}
