use serde_json::{Value, json};

use super::*;

/// A container that satisfies every restricted check.
fn good_container(name: &str, image: &str) -> Value {
    json!({
        "name": name,
        "image": image,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
            "capabilities": {"drop": ["ALL"]}
        }
    })
}

fn pod_with(metadata: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

fn pod(spec: Value) -> Value {
    pod_with(json!({"name": "p", "namespace": "default"}), spec)
}

/// A restricted-compliant pod with `edit` applied to it.
fn good_pod_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut p = pod(json!({"containers": [good_container("app", "nginx")]}));
    edit(&mut p);
    p
}

fn rule(v: Value) -> PodSecurity {
    PodSecurity::from_json(&v).unwrap()
}

fn level(level: &str, version: &str) -> PodSecurity {
    rule(json!({"level": level, "version": version}))
}

fn ids(results: &[CheckResult]) -> Vec<&str> {
    results.iter().map(|r| r.id.as_str()).collect()
}

fn container_sc(p: &mut Value) -> &mut Value {
    &mut p["spec"]["containers"][0]["securityContext"]
}

#[test]
fn compliant_pod_passes_every_level() {
    let p = good_pod_with(|_| {});
    for lvl in ["privileged", "baseline", "restricted"] {
        assert!(evaluate(&level(lvl, "latest"), &p, &[]).is_empty(), "{lvl}");
    }
}

#[test]
fn each_control_fails_at_the_right_level() {
    type Edit = fn(&mut Value);
    // (case, edit, failing IDs at baseline, failing IDs at restricted)
    let cases: Vec<(&str, Edit, Vec<&str>, Vec<&str>)> = vec![
        (
            "hostProcess",
            |p| container_sc(p)["windowsOptions"] = json!({"hostProcess": true}),
            vec!["windowsHostProcess"],
            vec!["windowsHostProcess"],
        ),
        (
            "host namespaces",
            |p| p["spec"]["hostPID"] = json!(true),
            vec!["hostNamespaces"],
            vec!["hostNamespaces"],
        ),
        (
            "privileged",
            |p| container_sc(p)["privileged"] = json!(true),
            vec!["privileged"],
            vec!["privileged"],
        ),
        (
            "capabilities beyond the default set",
            |p| container_sc(p)["capabilities"]["add"] = json!(["SYS_ADMIN"]),
            vec!["capabilities_baseline"],
            vec!["capabilities_baseline", "capabilities_restricted"],
        ),
        (
            "default capability other than NET_BIND_SERVICE",
            |p| container_sc(p)["capabilities"]["add"] = json!(["CHOWN"]),
            vec![],
            vec!["capabilities_restricted"],
        ),
        (
            "capabilities not dropped",
            |p| container_sc(p)["capabilities"] = json!({"drop": ["NET_RAW"]}),
            vec![],
            vec!["capabilities_restricted"],
        ),
        (
            "hostPath volume",
            |p| p["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/etc"}}]),
            vec!["hostPathVolumes"],
            vec!["hostPathVolumes", "restrictedVolumes"],
        ),
        (
            "host port",
            |p| {
                p["spec"]["containers"][0]["ports"] =
                    json!([{"containerPort": 80, "hostPort": 8080}])
            },
            vec!["hostPorts"],
            vec!["hostPorts"],
        ),
        (
            "apparmor annotation",
            |p| {
                p["metadata"]["annotations"] =
                    json!({"container.apparmor.security.beta.kubernetes.io/app": "unconfined"})
            },
            vec!["appArmorProfile"],
            vec!["appArmorProfile"],
        ),
        (
            "apparmor profile field",
            |p| p["spec"]["securityContext"] = json!({"appArmorProfile": {"type": "Unconfined"}}),
            vec!["appArmorProfile"],
            vec!["appArmorProfile"],
        ),
        (
            "selinux type",
            |p| container_sc(p)["seLinuxOptions"] = json!({"type": "spc_t"}),
            vec!["seLinuxOptions"],
            vec!["seLinuxOptions"],
        ),
        (
            "selinux user",
            |p| p["spec"]["securityContext"] = json!({"seLinuxOptions": {"user": "root"}}),
            vec!["seLinuxOptions"],
            vec!["seLinuxOptions"],
        ),
        (
            "procMount",
            |p| container_sc(p)["procMount"] = json!("Unmasked"),
            vec!["procMount"],
            vec!["procMount"],
        ),
        (
            "seccomp unconfined",
            |p| container_sc(p)["seccompProfile"] = json!({"type": "Unconfined"}),
            vec!["seccompProfile_baseline"],
            vec!["seccompProfile_baseline", "seccompProfile_restricted"],
        ),
        (
            "seccomp unset",
            |p| {
                container_sc(p)
                    .as_object_mut()
                    .unwrap()
                    .remove("seccompProfile");
            },
            vec![],
            vec!["seccompProfile_restricted"],
        ),
        (
            "unsafe sysctl",
            |p| {
                p["spec"]["securityContext"] =
                    json!({"sysctls": [{"name": "kernel.msgmax", "value": "1"}]})
            },
            vec!["sysctls"],
            vec!["sysctls"],
        ),
        (
            "nfs volume",
            |p| p["spec"]["volumes"] = json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
            vec![],
            vec!["restrictedVolumes"],
        ),
        (
            "allowPrivilegeEscalation true",
            |p| container_sc(p)["allowPrivilegeEscalation"] = json!(true),
            vec![],
            vec!["allowPrivilegeEscalation"],
        ),
        (
            "runAsNonRoot false",
            |p| container_sc(p)["runAsNonRoot"] = json!(false),
            vec![],
            vec!["runAsNonRoot"],
        ),
        (
            "runAsUser 0",
            |p| container_sc(p)["runAsUser"] = json!(0),
            vec![],
            vec!["runAsUser"],
        ),
        (
            "probe host",
            |p| {
                p["spec"]["containers"][0]["livenessProbe"] =
                    json!({"httpGet": {"host": "localhost", "port": 80}})
            },
            vec!["hostProbesAndHostLifecycle"],
            vec!["hostProbesAndHostLifecycle"],
        ),
    ];
    for (case, edit, baseline, restricted) in cases {
        let p = good_pod_with(edit);
        let got_baseline = evaluate(&level("baseline", "latest"), &p, &[]);
        assert_eq!(ids(&got_baseline), baseline, "baseline: {case}");
        let got_restricted = evaluate(&level("restricted", "latest"), &p, &[]);
        assert_eq!(ids(&got_restricted), restricted, "restricted: {case}");
    }
}

#[test]
fn allowed_values_pass() {
    type Edit = fn(&mut Value);
    // (case, level, edit)
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("default capability at baseline", "baseline", |p| {
            container_sc(p)["capabilities"]["add"] = json!(["CHOWN", "NET_BIND_SERVICE"])
        }),
        ("NET_BIND_SERVICE at restricted", "restricted", |p| {
            container_sc(p)["capabilities"]["add"] = json!(["NET_BIND_SERVICE"])
        }),
        ("localhost apparmor annotation", "restricted", |p| {
            p["metadata"]["annotations"] =
                json!({"container.apparmor.security.beta.kubernetes.io/app": "localhost/x"})
        }),
        ("container_init_t selinux", "restricted", |p| {
            container_sc(p)["seLinuxOptions"] = json!({"type": "container_init_t"})
        }),
        ("Default procMount", "restricted", |p| {
            container_sc(p)["procMount"] = json!("Default")
        }),
        ("safe sysctl", "restricted", |p| {
            p["spec"]["securityContext"] = json!({"sysctls": [{"name": "net.ipv4.tcp_rmem"}]})
        }),
        ("hostPort 0", "restricted", |p| {
            p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 0}])
        }),
        ("image volume", "restricted", |p| {
            p["spec"]["volumes"] = json!([{"name": "i", "image": {"reference": "x"}}])
        }),
        ("pod-level seccomp and runAsNonRoot", "restricted", |p| {
            p["spec"]["securityContext"] =
                json!({"runAsNonRoot": true, "seccompProfile": {"type": "Localhost"}});
            p["spec"]["containers"][0]["securityContext"] =
                json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        }),
    ];
    for (case, lvl, edit) in cases {
        let p = good_pod_with(edit);
        assert!(
            evaluate(&level(lvl, "latest"), &p, &[]).is_empty(),
            "{case}"
        );
    }
}

#[test]
fn init_and_ephemeral_containers_are_checked() {
    let bad = json!({"name": "x", "image": "busybox", "securityContext": {"privileged": true}});
    for list in ["initContainers", "ephemeralContainers"] {
        let p = good_pod_with(|p| p["spec"][list] = json!([bad.clone()]));
        let got = evaluate(&level("baseline", "latest"), &p, &[]);
        assert_eq!(
            got[0].field_errors[0].field,
            format!("spec.{list}[0].securityContext.privileged")
        );
    }
}

#[test]
fn privileged_level_runs_restricted_checks_like_kyverno() {
    let p = good_pod_with(|p| container_sc(p)["runAsUser"] = json!(0));
    assert_eq!(
        ids(&evaluate(&level("privileged", "latest"), &p, &[])),
        vec!["runAsUser"]
    );
}

#[test]
fn versions_select_checks_like_kyverno() {
    type Edit = fn(&mut Value);
    // (case, edit, level, version, failing IDs)
    let cases: Vec<(&str, Edit, &str, &str, Vec<&str>)> = vec![
        (
            "runAsUser starts at v1.23",
            |p| container_sc(p)["runAsUser"] = json!(0),
            "restricted",
            "v1.22",
            vec![],
        ),
        (
            "runAsUser at v1.23",
            |p| container_sc(p)["runAsUser"] = json!(0),
            "restricted",
            "v1.23",
            vec!["runAsUser"],
        ),
        (
            "capabilities_restricted starts at v1.22",
            |p| container_sc(p)["capabilities"] = json!({}),
            "restricted",
            "v1.21",
            vec![],
        ),
        (
            "reserved ports sysctl allowed at latest",
            |p| {
                p["spec"]["securityContext"] =
                    json!({"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports"}]})
            },
            "baseline",
            "latest",
            vec![],
        ),
        (
            "reserved ports sysctl forbidden before v1.27",
            |p| {
                p["spec"]["securityContext"] =
                    json!({"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports"}]})
            },
            "baseline",
            "v1.26",
            vec!["sysctls"],
        ),
        (
            "pinned version also runs the v1.0 sysctl check",
            |p| {
                p["spec"]["securityContext"] =
                    json!({"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports"}]})
            },
            "baseline",
            "v1.27",
            vec!["sysctls"],
        ),
        (
            "a forbidden sysctl fails every applied version",
            |p| p["spec"]["securityContext"] = json!({"sysctls": [{"name": "kernel.msgmax"}]}),
            "baseline",
            "v1.29",
            vec!["sysctls", "sysctls", "sysctls"],
        ),
        (
            "container_engine_t allowed at latest",
            |p| container_sc(p)["seLinuxOptions"] = json!({"type": "container_engine_t"}),
            "baseline",
            "latest",
            vec![],
        ),
        (
            "container_engine_t forbidden at v1.30",
            |p| container_sc(p)["seLinuxOptions"] = json!({"type": "container_engine_t"}),
            "baseline",
            "v1.30",
            vec!["seLinuxOptions"],
        ),
        (
            "seccomp annotation ignored at latest",
            |p| {
                p["metadata"]["annotations"] =
                    json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"})
            },
            "baseline",
            "latest",
            vec![],
        ),
        (
            "seccomp annotation checked by the v1.0 check at a pinned version",
            |p| {
                p["metadata"]["annotations"] =
                    json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"})
            },
            "baseline",
            "v1.24",
            vec!["seccompProfile_baseline"],
        ),
        (
            "windows pods skip restricted container checks from v1.25",
            |p| {
                p["spec"]["os"] = json!({"name": "windows"});
                p["spec"]["containers"][0]["securityContext"] = json!({"runAsNonRoot": true});
            },
            "restricted",
            "latest",
            vec![],
        ),
        (
            "windows pods checked before v1.25",
            |p| {
                p["spec"]["os"] = json!({"name": "windows"});
                p["spec"]["containers"][0]["securityContext"] = json!({"runAsNonRoot": true});
            },
            "restricted",
            "v1.24",
            vec![
                "allowPrivilegeEscalation",
                "capabilities_restricted",
                "seccompProfile_restricted",
            ],
        ),
        (
            "probe host allowed before v1.34",
            |p| {
                p["spec"]["containers"][0]["readinessProbe"] =
                    json!({"tcpSocket": {"host": "10.0.0.1", "port": 1}})
            },
            "baseline",
            "v1.33",
            vec![],
        ),
        (
            "probe host forbidden from v1.34",
            |p| {
                p["spec"]["containers"][0]["readinessProbe"] =
                    json!({"tcpSocket": {"host": "10.0.0.1", "port": 1}})
            },
            "baseline",
            "v1.34",
            vec!["hostProbesAndHostLifecycle"],
        ),
    ];
    for (case, edit, lvl, version, want) in cases {
        let p = good_pod_with(edit);
        assert_eq!(
            ids(&evaluate(&level(lvl, version), &p, &[])),
            want,
            "{case}"
        );
    }
}

#[test]
fn failure_message_matches_kyverno_for_a_privileged_pod() {
    let spec = level("baseline", "latest");
    let p = pod(
        json!({"containers": [{"name": "nginx", "image": "nginx", "securityContext": {"privileged": true}}]}),
    );
    let failed = evaluate(&spec, &p, &[]);
    assert_eq!(
        failure_message("baseline", &spec, &failed),
        "Validation rule 'baseline' failed. It violates PodSecurity \"baseline:latest\": \
         (Forbidden reason: privileged, field error list: [spec.containers[0].securityContext.privileged \
         is forbidden, forbidden values found: true])"
    );
    assert_eq!(
        failed[0].forbidden_detail,
        "container \"nginx\" must not set securityContext.privileged=true"
    );
    assert_eq!(failed[0].images, vec!["nginx"]);
    assert_eq!(failed[0].control_name(), "Privileged Containers");
}

#[test]
fn failure_message_lists_checks_in_upstream_order() {
    // The pod behind the message in Kyverno's event tests.
    let spec = level("restricted", "latest");
    let p = pod(json!({
        "hostNetwork": true,
        "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}],
        "volumes": [
            {"name": "cm", "configMap": {"name": "x"}},
            {"name": "xt", "hostPath": {"path": "/run/xtables.lock"}},
            {"name": "mods", "hostPath": {"path": "/lib/modules"}}
        ]
    }));
    let failed = evaluate(&spec, &p, &[]);
    assert_eq!(
        failure_message("baseline", &spec, &failed),
        "Validation rule 'baseline' failed. It violates PodSecurity \"restricted:latest\": \
(Forbidden reason: allowPrivilegeEscalation != false, field error list: [spec.containers[0].securityContext.allowPrivilegeEscalation is forbidden, forbidden values found: nil])\
(Forbidden reason: unrestricted capabilities, field error list: [spec.containers[0].securityContext.capabilities.drop: Required value])\
(Forbidden reason: host namespaces, field error list: [spec.hostNetwork is forbidden, forbidden values found: true])\
(Forbidden reason: hostPath volumes, field error list: [spec.volumes[1].hostPath is forbidden, forbidden values found: /run/xtables.lock, spec.volumes[2].hostPath is forbidden, forbidden values found: /lib/modules])\
(Forbidden reason: privileged, field error list: [spec.containers[0].securityContext.privileged is forbidden, forbidden values found: true])\
(Forbidden reason: restricted volume types, field error list: [spec.volumes[1].hostPath: Forbidden, spec.volumes[2].hostPath: Forbidden])\
(Forbidden reason: runAsNonRoot != true, field error list: [spec.containers[0].securityContext.runAsNonRoot: Required value])\
(Forbidden reason: seccompProfile, field error list: [spec.containers[0].securityContext.seccompProfile.type: Required value])"
    );
}

#[test]
fn details_follow_upstream_wording() {
    // (case, level, pod spec, metadata, want detail of the first failure)
    let cases: Vec<(&str, &str, Value, Value, &str)> = vec![
        (
            "host ports",
            "baseline",
            json!({"containers": [{"name": "a", "ports": [{"hostPort": 9090}, {"hostPort": 80}]}]}),
            json!({}),
            "container \"a\" uses hostPorts 80, 9090",
        ),
        (
            "capabilities",
            "baseline",
            json!({"containers": [
                {"name": "a", "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]}}},
                {"name": "b", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}
            ]}),
            json!({}),
            "containers \"a\", \"b\" must not include \"NET_RAW\", \"SYS_ADMIN\" in securityContext.capabilities.add",
        ),
        (
            "runAsNonRoot implicit",
            "restricted",
            json!({"containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}]}),
            json!({}),
            "pod or container \"a\" must set securityContext.runAsNonRoot=true",
        ),
        (
            "selinux",
            "baseline",
            json!({"securityContext": {"seLinuxOptions": {"type": "spc_t", "role": "r"}},
                   "containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"user": "u"}}}]}),
            json!({}),
            "pod and container \"a\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set; role may not be set",
        ),
        (
            "apparmor",
            "baseline",
            json!({"containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]}),
            json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}}),
            "container \"a\" and annotation must not set AppArmor profile type to \"Unconfined\", \"container.apparmor.security.beta.kubernetes.io/a=\"unconfined\"\"",
        ),
        (
            "restricted volumes",
            "restricted",
            json!({"containers": [], "volumes": [{"name": "n", "nfs": {}}, {"name": "u"}]}),
            json!({}),
            "volumes \"n\", \"u\" use restricted volume types \"nfs\", \"unknown\"",
        ),
        (
            "windows host process",
            "baseline",
            json!({"securityContext": {"windowsOptions": {"hostProcess": true}}, "containers": [{"name": "a"}]}),
            json!({}),
            "pod must not set securityContext.windowsOptions.hostProcess=true",
        ),
    ];
    for (case, lvl, spec, meta, want) in cases {
        let p = pod_with(meta, spec);
        let got = evaluate(&level(lvl, "latest"), &p, &[]);
        assert_eq!(got[0].forbidden_detail, want, "{case}");
    }
}

#[test]
fn controller_paths_are_rewritten_like_kyverno() {
    let spec = level("baseline", "latest");
    let template = json!({
        "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}},
        "spec": {"containers": [{"name": "a", "image": "nginx", "securityContext": {"privileged": true}}]}
    });
    let deployment = json!({"kind": "Deployment", "spec": {"template": template.clone()}});
    let got = evaluate(&spec, &deployment, &[]);
    let fields: Vec<&str> = got
        .iter()
        .flat_map(|c| c.field_errors.iter().map(|e| e.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/a]",
            "spec.template.spec.containers[0].securityContext.privileged",
        ]
    );

    // CronJob: the pod template's spec, but the jobTemplate's metadata (annotations on the pod
    // template are not seen).
    let cronjob =
        json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template}}}});
    let got = evaluate(&spec, &cronjob, &[]);
    assert_eq!(ids(&got), vec!["privileged"]);
    assert_eq!(
        got[0].field_errors[0].field,
        "spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged"
    );

    // Pods get the metadata rewrite too.
    let p = pod_with(
        json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}}),
        json!({"containers": [{"name": "a"}]}),
    );
    assert_eq!(
        evaluate(&spec, &p, &[])[0].field_errors[0].field,
        "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/a]"
    );
}

#[test]
fn unsupported_kind_is_an_error() {
    let spec = level("baseline", "latest");
    let err = evaluate_detailed(&spec, &json!({"kind": "Service", "spec": {}}), &[]).unwrap_err();
    assert_eq!(err.to_string(), "could not find correct resource type");
    assert!(evaluate(&spec, &json!({"kind": "Service"}), &[]).is_empty());
}

fn two_privileged_containers() -> Value {
    pod(json!({"containers": [
        {"name": "web", "image": "ghcr.io/kyverno/test-nginx:1", "securityContext": {"privileged": true}},
        {"name": "side", "image": "busybox", "securityContext": {"privileged": true}}
    ]}))
}

#[test]
fn exclusions_follow_kyverno() {
    let hostpath_pod = |path: &str| {
        pod(json!({"containers": [{"name": "a", "image": "nginx"}],
                   "volumes": [{"name": "h", "hostPath": {"path": path}}]}))
    };
    let caps_pod = |add: Value| {
        pod(json!({"containers": [{"name": "a", "image": "nginx",
                   "securityContext": {"capabilities": {"add": add}}}]}))
    };
    // (case, rule, resource, failing IDs)
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "pod-level control without images",
            json!({"level": "baseline", "exclude": [{"controlName": "Host Namespaces"}]}),
            pod(json!({"hostNetwork": true, "hostIPC": true, "containers": [{"name": "a"}]})),
            vec![],
        ),
        (
            "images exempt every matching container",
            json!({"level": "baseline", "exclude": [{"controlName": "Privileged Containers", "images": ["ghcr.io/kyverno/test-nginx*", "busy*"]}]}),
            two_privileged_containers(),
            vec![],
        ),
        (
            "images do not exempt other containers",
            json!({"level": "baseline", "exclude": [{"controlName": "Privileged Containers", "images": ["ghcr.io/kyverno/test-nginx*"]}]}),
            two_privileged_containers(),
            vec!["privileged"],
        ),
        (
            "an exclusion of another control does not exempt",
            json!({"level": "baseline", "exclude": [{"controlName": "Host Ports", "images": ["*"]}]}),
            two_privileged_containers(),
            vec!["privileged"],
        ),
        (
            "restrictedField with covering values",
            json!({"level": "baseline", "exclude": [{"controlName": "HostPath Volumes", "restrictedField": "spec.volumes[*].hostPath", "values": ["/var/lib*"]}]}),
            hostpath_pod("/var/lib1"),
            vec![],
        ),
        (
            "restrictedField with values not covering the bad value",
            json!({"level": "baseline", "exclude": [{"controlName": "HostPath Volumes", "restrictedField": "spec.volumes[*].hostPath", "values": ["/var/lib*"]}]}),
            hostpath_pod("/etc"),
            vec!["hostPathVolumes"],
        ),
        (
            "every bad value must be covered",
            json!({"level": "baseline", "exclude": [{"controlName": "Capabilities", "images": ["*"], "restrictedField": "spec.containers[*].securityContext.capabilities.add", "values": ["SYS_ADMIN"]}]}),
            caps_pod(json!(["SYS_ADMIN", "NET_RAW"])),
            vec!["capabilities_baseline"],
        ),
        (
            "covered values exempt",
            json!({"level": "baseline", "exclude": [{"controlName": "Capabilities", "images": ["*"], "restrictedField": "spec.containers[*].securityContext.capabilities.add", "values": ["SYS_ADMIN", "NET_*"]}]}),
            caps_pod(json!(["SYS_ADMIN", "NET_RAW"])),
            vec![],
        ),
        (
            "restrictedField naming another field does not exempt",
            json!({"level": "baseline", "exclude": [{"controlName": "Capabilities", "images": ["*"], "restrictedField": "spec.initContainers[*].securityContext.capabilities.add", "values": ["*"]}]}),
            caps_pod(json!(["SYS_ADMIN"])),
            vec!["capabilities_baseline"],
        ),
        (
            "seccomp exempted at pod and container level",
            json!({"level": "restricted", "exclude": [{"controlName": "Seccomp"}, {"controlName": "Seccomp", "images": ["*"]}]}),
            good_pod_with(|p| {
                container_sc(p)
                    .as_object_mut()
                    .unwrap()
                    .remove("seccompProfile");
            }),
            vec![],
        ),
        (
            "apparmor annotations exempted without images",
            json!({"level": "baseline", "exclude": [{"controlName": "AppArmor"}]}),
            pod_with(
                json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}}),
                json!({"containers": [{"name": "a"}]}),
            ),
            vec![],
        ),
        (
            "a pod-level exclusion removes one container error per dummy error",
            json!({"level": "restricted", "exclude": [{"controlName": "Running as Non-root"}]}),
            pod(json!({"containers": [
                {"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}},
                {"name": "b", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}
            ]})),
            vec!["runAsNonRoot"],
        ),
    ];
    for (case, rule_json, resource, want) in cases {
        let got = evaluate(&rule(rule_json), &resource, &[]);
        assert_eq!(ids(&got), want, "{case}");
    }
}

#[test]
fn partial_exclusion_keeps_the_other_containers_errors() {
    let spec = rule(
        json!({"level": "baseline", "version": "latest", "exclude": [
            {"controlName": "Privileged Containers", "images": ["ghcr.io/kyverno/test-nginx*"]}
        ]}),
    );
    let got = evaluate(&spec, &two_privileged_containers(), &[]);
    assert_eq!(got[0].field_errors.len(), 1);
    assert_eq!(
        got[0].field_errors[0].field,
        "spec.containers[1].securityContext.privileged"
    );
}

#[test]
fn exception_entries_exempt_after_the_rule_fails() {
    let spec = level("baseline", "latest");
    let p = pod(json!({"containers": [{"name": "nginx", "image": "nginx"}],
                       "volumes": [{"name": "host", "hostPath": {"path": "/var/lib1"}}]}));
    let exception = Exclude::from_json(
        &json!({"controlName": "HostPath Volumes", "restrictedField": "spec.volumes[*].hostPath", "values": ["/var/lib1"]}),
        "spec.podSecurity[0]",
    )
    .unwrap();
    let eval = evaluate_detailed(&spec, &p, std::slice::from_ref(&exception)).unwrap();
    assert_eq!(ids(&eval.checks_before_exceptions), vec!["hostPathVolumes"]);
    assert!(eval.checks.is_empty());
}

#[test]
fn exception_on_a_controller_container_field_does_not_exempt() {
    // Kyverno matches exception entries against the rewritten `spec.template.spec...` paths,
    // which never equal the paths of the exclusion pod.
    let spec = level("baseline", "latest");
    let template = json!({"spec": {"containers": [{"name": "a", "image": "nginx", "securityContext": {"privileged": true}}]}});
    let deployment = json!({"kind": "Deployment", "spec": {"template": template.clone()}});
    let exception = Exclude {
        control_name: "Privileged Containers".into(),
        images: vec!["nginx".into()],
        restricted_field: None,
        values: vec![],
    };
    assert_eq!(
        ids(&evaluate(
            &spec,
            &deployment,
            std::slice::from_ref(&exception)
        )),
        vec!["privileged"]
    );
    let p = pod(template["spec"].clone());
    assert!(evaluate(&spec, &p, std::slice::from_ref(&exception)).is_empty());
}

#[test]
fn from_json_validates_like_kyverno() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown level",
            json!({"level": "strict"}),
            "level: unsupported value \"strict\"",
        ),
        ("missing level", json!({}), "level: required value"),
        (
            "unknown version",
            json!({"level": "baseline", "version": "v1.18"}),
            "version: unsupported value \"v1.18\"",
        ),
        (
            "unknown control name",
            json!({"level": "baseline", "exclude": [{"controlName": "Sysctls"}, {"controlName": "Foo"}]}),
            "exclude[1].controlName: unsupported value \"Foo\"",
        ),
        (
            "container-level control needs images",
            json!({"level": "baseline", "exclude": [{"controlName": "Host Ports"}]}),
            "exclude[0].controlName: invalid value \"Host Ports\": exclude.images must be specified for the container level control",
        ),
        (
            "pod-level control forbids images",
            json!({"level": "baseline", "exclude": [{"controlName": "Sysctls", "images": ["*"]}]}),
            "exclude[0].controlName: invalid value \"Sysctls\": exclude.images must not be specified for the pod level control",
        ),
        (
            "restrictedField needs values",
            json!({"level": "baseline", "exclude": [{"controlName": "Sysctls", "restrictedField": "spec.securityContext.sysctls[*].name"}]}),
            "exclude[0].values: forbidden: values is required",
        ),
        (
            "values need restrictedField",
            json!({"level": "baseline", "exclude": [{"controlName": "Sysctls", "values": ["a"]}]}),
            "exclude[0].restrictedField: forbidden: restrictedField is required",
        ),
        (
            "restricted-only control at baseline",
            json!({"level": "baseline", "exclude": [{"controlName": "Running as Non-root"}]}),
            "exclude[0].controlName: invalid value \"Running as Non-root\": Invalid control name defined at the given level",
        ),
        (
            "images must be strings",
            json!({"level": "baseline", "exclude": [{"controlName": "Seccomp", "images": [1]}]}),
            "exclude[0].images[0]: expected a string",
        ),
    ];
    for (case, v, want) in cases {
        let err = PodSecurity::from_json(&v).unwrap_err();
        assert_eq!(err.to_string(), want, "{case}");
    }
}

#[test]
fn from_json_accepts_valid_subrules() {
    let got = rule(json!({"level": "baseline", "exclude": [
        {"controlName": "Seccomp"},
        {"controlName": "Capabilities", "images": ["nginx*"], "restrictedField": "spec.containers[*].securityContext.capabilities.add", "values": ["NET_RAW"]}
    ]}));
    assert_eq!(got.level, Level::Baseline);
    assert_eq!(got.version, "");
    assert_eq!(got.exclude.len(), 2);
    assert_eq!(
        got.exclude[1].restricted_field.as_deref(),
        Some("spec.containers[*].securityContext.capabilities.add")
    );
    // An omitted version evaluates as latest and prints as written.
    let p = good_pod_with(|p| container_sc(p)["privileged"] = json!(true));
    let failed = evaluate(&got, &p, &[]);
    assert!(failure_message("r", &got, &failed).contains("PodSecurity \"baseline:\""));
    for version in ["latest", "v1.19", "v1.35"] {
        assert!(
            PodSecurity::from_json(&json!({"level": "restricted", "version": version})).is_ok()
        );
    }
}

#[test]
fn shared_check_results_equal_a_fresh_evaluation_per_rule_and_per_resource() {
    let bad = good_pod_with(|p| {
        container_sc(p)["privileged"] = json!(true);
        container_sc(p)["capabilities"] = json!({"add": ["NET_RAW"]});
        p["spec"]["hostNetwork"] = json!(true);
    });
    let good = good_pod_with(|_| {});
    let rules = [
        level("baseline", "latest"),
        level("restricted", "latest"),
        level("restricted", "v1.24"),
        rule(json!({"level": "restricted", "version": "latest",
            "exclude": [{"controlName": "Capabilities", "images": ["nginx"]}]})),
        level("baseline", "v1.19"),
    ];
    let cache = CheckCache::default();
    // The rules of one request share the cache; the next resource must not see its results.
    for resource in [&bad, &good, &bad] {
        for spec in &rules {
            let shared = evaluate_shared(spec, resource, &[], &cache).unwrap();
            let fresh = evaluate_detailed(spec, resource, &[]).unwrap();
            assert_eq!(
                ids(&shared.checks_before_exceptions),
                ids(&fresh.checks_before_exceptions),
                "{spec:?}"
            );
            assert_eq!(ids(&shared.checks), ids(&fresh.checks), "{spec:?}");
        }
    }
    assert!(!evaluate(&level("baseline", "latest"), &bad, &[]).is_empty());
}

#[test]
fn check_keys_name_one_check_version_each() {
    let mut seen: Vec<(usize, &str, u32)> = Vec::new();
    for lvl in [Level::Baseline, Level::Restricted] {
        for version in [Version::Latest, Version::Minor(19), Version::Minor(31)] {
            for (key, id, min, _) in selected_checks_keyed(lvl, version) {
                for (k, i, m) in &seen {
                    assert_eq!(*k == key, (*i, *m) == (id, min), "{key} {id} {min}");
                }
                seen.push((key, id, min));
            }
        }
    }
    assert!(
        seen.iter().any(|(_, _, m)| *m > 0),
        "pinned versions select older checks"
    );
}
