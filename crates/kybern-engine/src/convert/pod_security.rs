//! `validate.podSecurity` as ValidatingPolicy validations: one CEL expression per Pod Security
//! check of the level, at the check versions the subrule's `version` runs (all of them up to
//! `v1.N`, as Kyverno does, or the newest for `latest`), and the exclusions CEL can state
//! exactly. The checks' tables (capabilities, volume sources, sysctls, SELinux types) are the
//! engine's own, so both forms read the same lists.

use super::cel_text::{lit, wildcard_regex};
use super::unsupported;
use super::validations::Validations;
use crate::pod_security::checks::{
    ALLOWED_VOLUME_SOURCES, APPARMOR_ANNOTATION_PREFIX, CAPABILITIES_ALLOWED_1_0,
    SECCOMP_CONTAINER_ANNOTATION_PREFIX, SECCOMP_POD_ANNOTATION, SELINUX_TYPES_1_0,
    SELINUX_TYPES_1_31, SYSCTLS_1_0, SYSCTLS_ADDED_1_27, SYSCTLS_ADDED_1_29, SYSCTLS_ADDED_1_32,
};
use crate::pod_security::{
    CONTAINER_LEVEL_CONTROLS, Level, POD_LEVEL_CONTROLS, PodSecurity, Version, control_ids,
    control_name, parse_version, selected_checks,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The map an optional field holds, `{}` when it is absent or null (YAML's `securityContext:`
/// with nothing under it is null, and Pod Security reads null as unset).
fn map_of(opt: &str) -> String {
    format!("cel.bind(m, {opt}.orValue({{}}), m == null ? {{}} : m)")
}

/// The list an optional field holds, `[]` when it is absent or null.
fn list_of(opt: &str) -> String {
    format!("cel.bind(l, {opt}.orValue([]), l == null ? [] : l)")
}

/// The converted policy's variables: the pod's containers (in the order Pod Security visits
/// them), its security context, volumes and annotations, each with null read as empty.
fn variables() -> Value {
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .map(|f| list_of(&format!("object.spec.?{f}")))
        .join(" + ");
    // None for a CronJob: Kyverno runs its checks with the jobTemplate's own metadata rather
    // than the pod template's (the autogen view holds only the latter).
    let annotations = format!(
        "request.kind.kind == 'CronJob' ? {{}} : {}",
        map_of("object.metadata.?annotations")
    );
    json!([
        {"name": "containers", "expression": containers},
        {"name": "podSecurityContext", "expression": map_of("object.spec.?securityContext")},
        {"name": "volumes", "expression": list_of("object.spec.?volumes")},
        {"name": "annotations", "expression": annotations},
    ])
}

const SECCOMP_TYPES: &str = "['RuntimeDefault', 'Localhost']";

fn windows() -> String {
    format!(
        "{}.?name.orValue('') == 'windows'",
        map_of("object.spec.?os")
    )
}

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| lit(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A pod-level security context field, as an optional.
fn pod_sc(field: &str) -> String {
    format!("variables.podSecurityContext.?{field}")
}

/// `body` holds for every container of `cs`, with `sc` bound to its security context.
fn each_container(cs: &str, body: &str) -> String {
    format!(
        "{cs}.all(c, cel.bind(sc, {}, {body}))",
        map_of("c.?securityContext")
    )
}

/// `profile` (an object with `type`, read through `opt`) is absent or of an allowed type.
fn profile_absent_or(opt: &str, profile: &str, types: &str) -> String {
    format!("({opt}.orValue(null) == null || {profile}.?type.orValue('') in {types})")
}

/// Unset, or a value Kyverno accepts, for a seccomp annotation read with `key` (CEL text).
fn seccomp_annotation_ok(key: &str) -> String {
    format!(
        "cel.bind(v, variables.annotations[?{key}].orValue('runtime/default'), \
         v in ['runtime/default', 'docker/default'] || v.startsWith('localhost/'))"
    )
}

fn se_linux_ok(opts: &str, types: &str) -> String {
    format!(
        "(cel.bind(t, {opts}.?type.orValue(''), t == null || t in {types}) && \
         {opts}.?user.orValue('') in ['', null] && {opts}.?role.orValue('') in ['', null])"
    )
}

fn sysctls(minor: u32) -> String {
    let mut allowed: Vec<&str> = SYSCTLS_1_0.to_vec();
    for (from, added) in [
        (27, &SYSCTLS_ADDED_1_27[..]),
        (29, &SYSCTLS_ADDED_1_29[..]),
        (32, &SYSCTLS_ADDED_1_32[..]),
    ] {
        if minor >= from {
            allowed.extend_from_slice(added);
        }
    }
    format!(
        "{}.all(s, s.?name.orValue('') in {})",
        list_of(&pod_sc("sysctls")),
        list(&allowed)
    )
}

/// The CEL for check `id` in its version from Kubernetes 1.`min`, over the container list `cs`;
/// `None` for a version this converter does not know (a newer engine table).
fn check_cel(id: &str, min: u32, cs: &str) -> Option<String> {
    let windows = windows();
    let escalation = each_container(cs, "sc.?allowPrivilegeEscalation.orValue(true) == false");
    let caps = map_of("sc.?capabilities");
    let caps_restricted = each_container(
        cs,
        &format!(
            "cel.bind(caps, {caps}, {drop}.exists(d, d == 'ALL') && \
             {add}.all(a, a == 'NET_BIND_SERVICE'))",
            drop = list_of("caps.?drop"),
            add = list_of("caps.?add"),
        ),
    );
    let seccomp_restricted = format!(
        "cel.bind(p, {pod}.orValue(null), (p == null || p.?type.orValue('') in {t}) && {each})",
        pod = pod_sc("seccompProfile"),
        t = SECCOMP_TYPES,
        each = each_container(
            cs,
            &format!(
                "sc.?seccompProfile.orValue(null) == null \
                 ? (p != null && p.?type.orValue('') in {t}) \
                 : sc.seccompProfile.?type.orValue('') in {t}",
                t = SECCOMP_TYPES
            )
        ),
    );
    let se_linux = |types: &[&str]| {
        let t = list(types);
        format!(
            "({pod}.orValue(null) == null || {pod_ok}) && {each}",
            pod = pod_sc("seLinuxOptions"),
            pod_ok = se_linux_ok("variables.podSecurityContext.seLinuxOptions", &t),
            each = each_container(
                cs,
                &format!(
                    "sc.?seLinuxOptions.orValue(null) == null || {}",
                    se_linux_ok("sc.seLinuxOptions", &t)
                )
            ),
        )
    };
    let host = |handler: &str| {
        ["httpGet", "tcpSocket"]
            .map(|action| {
                format!(
                    "{}.?host.orValue('') in ['', null]",
                    map_of(&format!("{}.?{action}", map_of(handler)))
                )
            })
            .join(" && ")
    };
    Some(match (id, min) {
        ("allowPrivilegeEscalation", 8) => escalation,
        ("allowPrivilegeEscalation", 25) => format!("{windows} || {escalation}"),
        ("appArmorProfile", 0) => {
            let types = "['RuntimeDefault', 'Localhost']";
            format!(
                "{pod} && {each} && variables.annotations.all(k, \
                 !k.startsWith({prefix}) || cel.bind(v, variables.annotations[k], \
                 type(v) != string || v in ['', 'runtime/default'] || v.startsWith('localhost/')))",
                pod = profile_absent_or(
                    &pod_sc("appArmorProfile"),
                    "variables.podSecurityContext.appArmorProfile",
                    types
                ),
                each = each_container(
                    cs,
                    &profile_absent_or("sc.?appArmorProfile", "sc.appArmorProfile", types)
                ),
                prefix = lit(APPARMOR_ANNOTATION_PREFIX),
            )
        }
        ("capabilities_baseline", 0) => each_container(
            cs,
            &format!(
                "{}.all(a, a in {})",
                list_of(&format!("{caps}.?add")),
                list(&CAPABILITIES_ALLOWED_1_0)
            ),
        ),
        ("capabilities_restricted", 22) => caps_restricted,
        ("capabilities_restricted", 25) => format!("{windows} || {caps_restricted}"),
        ("hostNamespaces", 0) => ["hostNetwork", "hostPID", "hostIPC"]
            .map(|f| format!("object.spec.?{f}.orValue(false) != true"))
            .join(" && "),
        ("hostPathVolumes", 0) => {
            "variables.volumes.all(v, v.?hostPath.orValue(null) == null)".into()
        }
        ("hostPorts", 0) => format!(
            "{cs}.all(c, {}.all(p, p.?hostPort.orValue(0) in [0, null]))",
            list_of("c.?ports")
        ),
        ("hostProbesAndHostLifecycle", 34) => format!(
            "{cs}.all(c, {})",
            [
                "c.?livenessProbe".to_string(),
                "c.?readinessProbe".to_string(),
                "c.?startupProbe".to_string(),
                format!("{}.?postStart", map_of("c.?lifecycle")),
                format!("{}.?preStop", map_of("c.?lifecycle")),
            ]
            .iter()
            .map(|h| host(h))
            .collect::<Vec<_>>()
            .join(" && ")
        ),
        ("privileged", 0) => each_container(cs, "sc.?privileged.orValue(false) != true"),
        ("procMount", 0) => {
            each_container(cs, "sc.?procMount.orValue('Default') in ['Default', null]")
        }
        ("restrictedVolumes", 0) => format!(
            "variables.volumes.all(v, {}.exists(s, s in v && v[s] != null))",
            list(&ALLOWED_VOLUME_SOURCES)
        ),
        ("runAsNonRoot", 0) => format!(
            "{pod}.orValue(true) != false && {each}",
            pod = pod_sc("runAsNonRoot"),
            each = each_container(
                cs,
                &format!(
                    "cel.bind(r, sc.?runAsNonRoot.orValue(null), \
                     r == null ? {}.orValue(false) == true : r == true)",
                    pod_sc("runAsNonRoot")
                )
            ),
        ),
        ("runAsUser", 23) => format!(
            "{}.orValue(1) != 0 && {}",
            pod_sc("runAsUser"),
            each_container(cs, "sc.?runAsUser.orValue(1) != 0")
        ),
        ("seLinuxOptions", 0) => se_linux(&SELINUX_TYPES_1_0),
        ("seLinuxOptions", 31) => se_linux(&SELINUX_TYPES_1_31),
        ("seccompProfile_baseline", 0) => format!(
            "{} && {cs}.all(c, {})",
            seccomp_annotation_ok(&lit(SECCOMP_POD_ANNOTATION)),
            seccomp_annotation_ok(&format!(
                "({} + c.?name.orValue(''))",
                lit(SECCOMP_CONTAINER_ANNOTATION_PREFIX)
            ))
        ),
        ("seccompProfile_baseline", 19) => format!(
            "{} && {}",
            profile_absent_or(
                &pod_sc("seccompProfile"),
                "variables.podSecurityContext.seccompProfile",
                SECCOMP_TYPES
            ),
            each_container(
                cs,
                &profile_absent_or("sc.?seccompProfile", "sc.seccompProfile", SECCOMP_TYPES)
            )
        ),
        ("seccompProfile_restricted", 19) => seccomp_restricted,
        ("seccompProfile_restricted", 25) => format!("{windows} || {seccomp_restricted}"),
        ("sysctls", minor) if [0, 27, 29, 32].contains(&minor) => sysctls(minor),
        ("windowsHostProcess", 0) => format!(
            "{}.?hostProcess.orValue(false) != true && {}",
            map_of(&pod_sc("windowsOptions")),
            each_container(
                cs,
                &format!(
                    "{}.?hostProcess.orValue(false) != true",
                    map_of("sc.?windowsOptions")
                )
            )
        ),
        _ => return None,
    })
}

/// What each check requires, for the validation's message.
fn requirement(id: &str) -> &'static str {
    match id {
        "allowPrivilegeEscalation" => {
            "containers must set securityContext.allowPrivilegeEscalation=false"
        }
        "appArmorProfile" => "AppArmor profiles may only be RuntimeDefault or Localhost",
        "capabilities_baseline" => "containers must not add capabilities beyond the baseline set",
        "capabilities_restricted" => {
            "containers must drop ALL capabilities and may add only NET_BIND_SERVICE"
        }
        "hostNamespaces" => "hostNetwork, hostPID and hostIPC must not be true",
        "hostPathVolumes" => "hostPath volumes are forbidden",
        "hostPorts" => "containers must not use hostPorts",
        "hostProbesAndHostLifecycle" => "probes and lifecycle hooks must not set a host",
        "privileged" => "containers must not set securityContext.privileged=true",
        "procMount" => "containers must not set securityContext.procMount other than Default",
        "restrictedVolumes" => "volumes must be of a type the restricted profile allows",
        "runAsNonRoot" => {
            "the pod or each container must set securityContext.runAsNonRoot=true, none false"
        }
        "runAsUser" => "the pod and containers must not set runAsUser=0",
        "seLinuxOptions" => "seLinuxOptions may set only an allowed type, no user or role",
        "seccompProfile_baseline" => {
            "a seccomp profile, when set, must be RuntimeDefault or Localhost"
        }
        "seccompProfile_restricted" => {
            "the pod or each container must set seccompProfile.type to RuntimeDefault or Localhost"
        }
        "sysctls" => "only safe sysctls may be set",
        "windowsHostProcess" => "windowsOptions.hostProcess must not be true",
        _ => "the check must pass",
    }
}

/// The validations of a podSecurity subrule; `rule` is read for the kinds it matches.
pub(super) fn validations(rule: &Value, block: &Value) -> Result<Validations, String> {
    pods_only(rule)?;
    let spec = PodSecurity::from_json(block).map_err(|e| format!("podSecurity: {e}"))?;
    if spec.level == Level::Privileged {
        return unsupported(
            "podSecurity level privileged checks nothing; there is nothing to convert",
        );
    }
    let version = parse_version(&spec.version)
        .ok_or_else(|| format!("podSecurity.version {:?} is not known", spec.version))?;
    // Controls left out entirely, and the image patterns exempted per check ID.
    let mut dropped: Vec<&str> = Vec::new();
    let mut images: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, ex) in spec.exclude.iter().enumerate() {
        let name = ex.control_name.as_str();
        if ex.restricted_field.is_some() {
            return unsupported(format!(
                "podSecurity.exclude[{i}] ({name}) names restrictedField/values, which Kyverno \
                 matches against the failures' field paths; not converted"
            ));
        }
        if POD_LEVEL_CONTROLS.contains(&name) {
            dropped.extend_from_slice(control_ids(name));
        } else if CONTAINER_LEVEL_CONTROLS.contains(&name) {
            for id in control_ids(name) {
                images
                    .entry(id)
                    .or_default()
                    .extend(ex.images.iter().map(String::as_str));
            }
        } else {
            return unsupported(format!(
                "podSecurity.exclude[{i}] ({name}): a control checked at pod and container level \
                 is exempted by Kyverno through field-path matching; not converted"
            ));
        }
    }
    let version_text = match version {
        Version::Latest => "latest".to_string(),
        Version::Minor(m) => format!("v1.{m}"),
    };
    let mut out = Validations {
        variables: Some(variables()),
        ..Validations::default()
    };
    for (id, min, _) in selected_checks(spec.level, version) {
        if dropped.contains(&id) {
            continue;
        }
        let containers = match images.get(id) {
            Some(patterns) => {
                let re: Vec<String> = patterns.iter().map(|p| wildcard_regex(p)).collect();
                format!(
                    "variables.containers.filter(c, !cel.bind(i, c.?image.orValue(''), \
                     i == null ? '' : i).matches({}))",
                    lit(&re.join("|"))
                )
            }
            None => "variables.containers".to_string(),
        };
        let Some(expression) = check_cel(id, min, &containers) else {
            return unsupported(format!(
                "podSecurity check {id} (from v1.{min}) has no CEL form here"
            ));
        };
        out.validations.push(json!({
            "expression": expression,
            "message": format!(
                "Pod Security {} ({version_text}), {}: {}",
                spec.level.as_str(),
                control_name(id),
                requirement(id)
            ),
        }));
    }
    Ok(out)
}

/// The CEL reads `object.spec` as a pod spec: rules on Pods only (autogen gives the converted
/// policy the controllers, as it gives them to the original).
fn pods_only(rule: &Value) -> Result<(), String> {
    let m = rule.get("match").unwrap_or(&Value::Null);
    let mut filters: Vec<&Value> = Vec::new();
    for key in ["any", "all"] {
        filters.extend(m.get(key).and_then(Value::as_array).into_iter().flatten());
    }
    if m.get("resources").is_some() {
        filters.push(m);
    }
    for f in filters {
        let kinds = f.pointer("/resources/kinds").and_then(Value::as_array);
        for kind in kinds.into_iter().flatten() {
            let k = kind.as_str().unwrap_or_default();
            if !matches!(k, "Pod" | "v1/Pod") {
                return unsupported(format!(
                    "podSecurity on {k:?} is not converted: only rules on Pods are (autogen \
                     extends the converted policy to the pod controllers)"
                ));
            }
        }
    }
    Ok(())
}
