//! The Pod Security Standards checks, ported from `k8s.io/pod-security-admission/policy` as
//! Kyverno vendors it (its fork adds field-error lists, which Kyverno's messages and exclusions
//! are built on).
//!
//! Each check keeps upstream's order of checks, versions, reasons, details and field errors,
//! because Kyverno prints them verbatim and matches exclusions on the field paths.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{BadValue, FieldError, FieldErrorKind};

/// Where a container sits in the pod spec; the order is upstream's visiting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

/// A container's field path (`spec.containers[0]`), written out only when a check reports it.
#[derive(Debug, Clone, Copy)]
struct ContainerPath {
    kind: ContainerKind,
    index: usize,
}

impl std::fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spec.{}[{}]", self.kind.field(), self.index)
    }
}

impl ContainerKind {
    pub(crate) const ALL: [ContainerKind; 3] = [
        ContainerKind::Init,
        ContainerKind::Regular,
        ContainerKind::Ephemeral,
    ];

    /// The pod spec field holding these containers.
    pub(crate) fn field(self) -> &'static str {
        match self {
            ContainerKind::Init => "initContainers",
            ContainerKind::Regular => "containers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }

    pub(crate) fn from_field(field: &str) -> Option<ContainerKind> {
        ContainerKind::ALL.into_iter().find(|k| k.field() == field)
    }
}

/// A read-only view of the pod the checks run on. Exclusions evaluate modified pods
/// (a dummy container, or only the matching containers), so the view owns its lists.
#[derive(Debug, Clone)]
pub(crate) struct PodView<'a> {
    /// `metadata.annotations` with string values, sorted by key (Go iterates a map here;
    /// sorting makes the output deterministic).
    pub(crate) annotations: Vec<(&'a str, &'a str)>,
    /// Pod-level spec fields; `None` for the container-only pods built for exclusions.
    pub(crate) spec: Option<&'a Map<String, Value>>,
    pub(crate) init_containers: Vec<&'a Value>,
    pub(crate) containers: Vec<&'a Value>,
    pub(crate) ephemeral_containers: Vec<&'a Value>,
}

impl<'a> PodView<'a> {
    /// Build the view from a pod's metadata and spec (either may be missing).
    pub(crate) fn new(metadata: Option<&'a Value>, spec: Option<&'a Value>) -> PodView<'a> {
        let mut annotations: Vec<(&str, &str)> = metadata
            .and_then(|m| crate::objects::get(m, "annotations"))
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                    .collect()
            })
            .unwrap_or_default();
        annotations.sort();
        let spec = spec.and_then(Value::as_object);
        let list = |name: &str| -> Vec<&'a Value> {
            spec.and_then(|s| crate::objects::map_get(s, name))
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        };
        PodView {
            annotations,
            init_containers: list("initContainers"),
            containers: list("containers"),
            ephemeral_containers: list("ephemeralContainers"),
            spec,
        }
    }

    pub(crate) fn containers_of(&self, kind: ContainerKind) -> &[&'a Value] {
        match kind {
            ContainerKind::Init => &self.init_containers,
            ContainerKind::Regular => &self.containers,
            ContainerKind::Ephemeral => &self.ephemeral_containers,
        }
    }

    /// Every container in upstream's order with its field path, e.g. `spec.containers[0]`.
    fn visit(&self) -> impl Iterator<Item = (&'a Value, ContainerPath)> + '_ {
        ContainerKind::ALL.into_iter().flat_map(move |kind| {
            self.containers_of(kind)
                .iter()
                .enumerate()
                .map(move |(index, c)| (*c, ContainerPath { kind, index }))
        })
    }

    fn spec_field(&self, path: &[&str]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        let v = crate::objects::map_get(self.spec?, first)?;
        lookup(v, rest)
    }

    fn spec_bool(&self, name: &str) -> bool {
        self.spec_field(&[name])
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `spec.os.name == "windows"`: upstream exempts Windows pods from some checks from 1.25.
    fn is_windows(&self) -> bool {
        self.spec_field(&["os", "name"]).and_then(Value::as_str) == Some("windows")
    }
}

/// Follow `path` through objects; JSON `null` counts as absent, as a nil pointer does in Go.
pub(crate) fn lookup<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    let mut cur = v;
    for key in path {
        cur = crate::objects::get(cur, key)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

fn name_of(c: &Value) -> &str {
    crate::objects::get(c, "name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A string field read the way Go reads an optional string: absent is "".
fn str_or_empty<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    lookup(v, path).and_then(Value::as_str).unwrap_or("")
}

/// A failed check: upstream's `CheckResult` with its field error list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Violation {
    pub(crate) reason: String,
    pub(crate) detail: String,
    pub(crate) errors: Vec<FieldError>,
}

pub(crate) type CheckFn = fn(&PodView<'_>) -> Option<Violation>;

/// The level a check belongs to upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckLevel {
    Baseline,
    Restricted,
}

/// One upstream check with its versions (minimum Kubernetes minor version, check function),
/// oldest first.
pub(crate) struct Check {
    pub(crate) id: &'static str,
    pub(crate) level: CheckLevel,
    pub(crate) versions: &'static [(u32, CheckFn)],
}

/// `policy.DefaultChecks()` in registration order: Go runs the `init` functions of the
/// `check_*.go` files sorted by file name, and Kyverno reports failures in that order.
pub(crate) static CHECKS: &[Check] = &[
    Check {
        id: "allowPrivilegeEscalation",
        level: CheckLevel::Restricted,
        versions: &[
            (8, allow_privilege_escalation_1_8),
            (25, allow_privilege_escalation_1_25),
        ],
    },
    Check {
        id: "appArmorProfile",
        level: CheckLevel::Baseline,
        versions: &[(0, app_armor_profile)],
    },
    Check {
        id: "capabilities_baseline",
        level: CheckLevel::Baseline,
        versions: &[(0, capabilities_baseline)],
    },
    Check {
        id: "capabilities_restricted",
        level: CheckLevel::Restricted,
        versions: &[
            (22, capabilities_restricted_1_22),
            (25, capabilities_restricted_1_25),
        ],
    },
    Check {
        id: "hostNamespaces",
        level: CheckLevel::Baseline,
        versions: &[(0, host_namespaces)],
    },
    Check {
        id: "hostPathVolumes",
        level: CheckLevel::Baseline,
        versions: &[(0, host_path_volumes)],
    },
    Check {
        id: "hostPorts",
        level: CheckLevel::Baseline,
        versions: &[(0, host_ports)],
    },
    Check {
        id: "hostProbesAndHostLifecycle",
        level: CheckLevel::Baseline,
        versions: &[(34, host_probes_and_lifecycle)],
    },
    Check {
        id: "privileged",
        level: CheckLevel::Baseline,
        versions: &[(0, privileged)],
    },
    Check {
        id: "procMount",
        level: CheckLevel::Baseline,
        versions: &[(0, proc_mount)],
    },
    Check {
        id: "restrictedVolumes",
        level: CheckLevel::Restricted,
        versions: &[(0, restricted_volumes)],
    },
    Check {
        id: "runAsNonRoot",
        level: CheckLevel::Restricted,
        versions: &[(0, run_as_non_root)],
    },
    Check {
        id: "runAsUser",
        level: CheckLevel::Restricted,
        versions: &[(23, run_as_user)],
    },
    Check {
        id: "seLinuxOptions",
        level: CheckLevel::Baseline,
        versions: &[(0, se_linux_options_1_0), (31, se_linux_options_1_31)],
    },
    Check {
        id: "seccompProfile_baseline",
        level: CheckLevel::Baseline,
        versions: &[
            (0, seccomp_profile_baseline_1_0),
            (19, seccomp_profile_baseline_1_19),
        ],
    },
    Check {
        id: "seccompProfile_restricted",
        level: CheckLevel::Restricted,
        versions: &[
            (19, seccomp_profile_restricted_1_19),
            (25, seccomp_profile_restricted_1_25),
        ],
    },
    Check {
        id: "sysctls",
        level: CheckLevel::Baseline,
        versions: &[
            (0, sysctls_1_0),
            (27, sysctls_1_27),
            (29, sysctls_1_29),
            (32, sysctls_1_32),
        ],
    },
    Check {
        id: "windowsHostProcess",
        level: CheckLevel::Baseline,
        versions: &[(0, windows_host_process)],
    },
];

// --- formatting helpers (upstream's `pluralize`, `joinQuote`) ---------------------------

fn pluralize<'s>(singular: &'s str, plural: &'s str, count: usize) -> &'s str {
    if count == 1 { singular } else { plural }
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

/// Go's `%q` for a string: double-quoted with Go escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn forbidden(field: String, bad_value: BadValue) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Forbidden,
        field,
        bad_value,
    }
}

fn required(field: String) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Required,
        field,
        bad_value: BadValue::Empty,
    }
}

fn sorted(set: BTreeSet<String>) -> Vec<String> {
    set.into_iter().collect()
}

// --- allowPrivilegeEscalation ------------------------------------------------------------

fn allow_privilege_escalation_1_8(pod: &PodView<'_>) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for (c, path) in pod.visit() {
        let field = || format!("{path}.securityContext.allowPrivilegeEscalation");
        match lookup(c, &["securityContext"]) {
            None => {
                names.push(name_of(c));
                errors.push(required(field()));
            }
            Some(sc) => match lookup(sc, &["allowPrivilegeEscalation"]).and_then(Value::as_bool) {
                // Upstream reports an unset field as the string "nil".
                None => {
                    names.push(name_of(c));
                    errors.push(forbidden(field(), BadValue::String("nil".into())));
                }
                Some(true) => {
                    names.push(name_of(c));
                    errors.push(forbidden(field(), BadValue::Bool(true)));
                }
                Some(false) => {}
            },
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "allowPrivilegeEscalation != false".into(),
        detail: format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&names)
        ),
        errors,
    })
}

fn allow_privilege_escalation_1_25(pod: &PodView<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    allow_privilege_escalation_1_8(pod)
}

// --- appArmorProfile ---------------------------------------------------------------------

pub(crate) const APPARMOR_ANNOTATION_PREFIX: &str =
    "container.apparmor.security.beta.kubernetes.io/";

fn app_armor_type_allowed(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn app_armor_annotation_allowed(v: &str) -> bool {
    v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")
}

fn app_armor_profile(pod: &PodView<'_>) -> Option<Violation> {
    let mut setters: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let mut bad_values = BTreeSet::new();

    if let Some(profile) = pod.spec_field(&["securityContext", "appArmorProfile"]) {
        let t = str_or_empty(profile, &["type"]);
        if !app_armor_type_allowed(t) {
            setters.push("pod".into());
            errors.push(forbidden(
                "spec.securityContext.appArmorProfile.type".into(),
                BadValue::String(t.into()),
            ));
            bad_values.insert(t.to_string());
        }
    }

    let mut bad_containers = Vec::new();
    for (c, path) in pod.visit() {
        if let Some(profile) = lookup(c, &["securityContext", "appArmorProfile"]) {
            let t = str_or_empty(profile, &["type"]);
            if !app_armor_type_allowed(t) {
                bad_containers.push(name_of(c));
                errors.push(forbidden(
                    format!("{path}.securityContext.appArmorProfile.type"),
                    BadValue::String(t.into()),
                ));
                bad_values.insert(t.to_string());
            }
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }

    let mut bad_value_list = sorted(bad_values);
    let mut annotations = Vec::new();
    for (k, v) in &pod.annotations {
        if k.starts_with(APPARMOR_ANNOTATION_PREFIX) && !app_armor_annotation_allowed(v) {
            annotations.push(format!("{k}={}", go_quote(v)));
            errors.push(forbidden(
                format!("metadata.annotations[{k}]"),
                BadValue::String((*v).into()),
            ));
        }
    }
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).into());
        bad_value_list.extend(annotations);
    }

    if setters.is_empty() {
        return None;
    }
    Some(Violation {
        reason: pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad_value_list.len(),
        )
        .into(),
        detail: format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&bad_value_list)
        ),
        errors,
    })
}

// --- capabilities ------------------------------------------------------------------------

pub(crate) const CAPABILITIES_ALLOWED_1_0: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn string_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn capabilities_baseline(pod: &PodView<'_>) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    let mut non_default = BTreeSet::new();
    for (c, path) in pod.visit() {
        let Some(caps) = lookup(c, &["securityContext", "capabilities"]) else {
            continue;
        };
        let bad: BTreeSet<String> = string_list(lookup(caps, &["add"]))
            .into_iter()
            .filter(|cap| !CAPABILITIES_ALLOWED_1_0.contains(cap))
            .map(str::to_string)
            .collect();
        if !bad.is_empty() {
            non_default.extend(bad.iter().cloned());
            names.push(name_of(c));
            errors.push(forbidden(
                format!("{path}.securityContext.capabilities.add"),
                BadValue::List(sorted(bad)),
            ));
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "non-default capabilities".into(),
        detail: format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&names),
            join_quote(&sorted(non_default))
        ),
        errors,
    })
}

fn capabilities_restricted_1_22(pod: &PodView<'_>) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut missing_drop_errors = Vec::new();
    let mut adding = Vec::new();
    let mut adding_errors = Vec::new();
    let mut forbidden_caps = BTreeSet::new();
    for (c, path) in pod.visit() {
        let drop_field = || format!("{path}.securityContext.capabilities.drop");
        let Some(caps) = lookup(c, &["securityContext", "capabilities"]) else {
            missing_drop.push(name_of(c));
            missing_drop_errors.push(required(drop_field()));
            continue;
        };
        let drop = string_list(lookup(caps, &["drop"]));
        if !drop.contains(&"ALL") {
            missing_drop.push(name_of(c));
            if drop.is_empty() {
                missing_drop_errors.push(required(drop_field()));
            } else {
                let values: BTreeSet<String> = drop.iter().map(|d| d.to_string()).collect();
                missing_drop_errors.push(forbidden(drop_field(), BadValue::List(sorted(values))));
            }
        }
        let bad: BTreeSet<String> = string_list(lookup(caps, &["add"]))
            .into_iter()
            .filter(|cap| *cap != "NET_BIND_SERVICE")
            .map(str::to_string)
            .collect();
        if !bad.is_empty() {
            forbidden_caps.extend(bad.iter().cloned());
            adding.push(name_of(c));
            adding_errors.push(forbidden(
                format!("{path}.securityContext.capabilities.add"),
                BadValue::List(sorted(bad)),
            ));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&sorted(forbidden_caps))
        ));
    }
    if details.is_empty() {
        return None;
    }
    missing_drop_errors.extend(adding_errors);
    Some(Violation {
        reason: "unrestricted capabilities".into(),
        detail: details.join("; "),
        errors: missing_drop_errors,
    })
}

fn capabilities_restricted_1_25(pod: &PodView<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    capabilities_restricted_1_22(pod)
}

// --- hostNamespaces, hostPathVolumes, hostPorts ------------------------------------------

fn host_namespaces(pod: &PodView<'_>) -> Option<Violation> {
    let mut data = Vec::new();
    let mut errors = Vec::new();
    for name in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod.spec_bool(name) {
            data.push(format!("{name}=true"));
            errors.push(forbidden(format!("spec.{name}"), BadValue::Bool(true)));
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "host namespaces".into(),
        detail: data.join(", "),
        errors,
    })
}

fn volumes<'a>(pod: &PodView<'a>) -> Vec<&'a Value> {
    pod.spec_field(&["volumes"])
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn host_path_volumes(pod: &PodView<'_>) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for (i, volume) in volumes(pod).into_iter().enumerate() {
        if let Some(host_path) = lookup(volume, &["hostPath"]) {
            names.push(name_of(volume));
            errors.push(forbidden(
                format!("spec.volumes[{i}].hostPath"),
                BadValue::String(str_or_empty(host_path, &["path"]).into()),
            ));
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "hostPath volumes".into(),
        detail: format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
        errors,
    })
}

fn host_ports(pod: &PodView<'_>) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    // Upstream keeps the ports in a string set, so they sort as strings.
    let mut ports = BTreeSet::new();
    for (c, path) in pod.visit() {
        let mut bad = false;
        let container_ports = lookup(c, &["ports"]).and_then(Value::as_array);
        for (i, port) in container_ports.into_iter().flatten().enumerate() {
            let host_port = lookup(port, &["hostPort"])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if host_port != 0 {
                bad = true;
                ports.insert(host_port.to_string());
                errors.push(forbidden(
                    format!("{path}.ports[{i}].hostPort"),
                    BadValue::Int(host_port),
                ));
            }
        }
        if bad {
            names.push(name_of(c));
        }
    }
    if names.is_empty() {
        return None;
    }
    let ports = sorted(ports);
    Some(Violation {
        reason: "hostPort".into(),
        detail: format!(
            "{} {} {} {}",
            containers_phrase(&names),
            pluralize("uses", "use", names.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
        errors,
    })
}

// --- hostProbesAndHostLifecycle ----------------------------------------------------------

fn host_probes_and_lifecycle(pod: &PodView<'_>) -> Option<Violation> {
    const HANDLERS: [&[&str]; 5] = [
        &["livenessProbe"],
        &["readinessProbe"],
        &["startupProbe"],
        &["lifecycle", "postStart"],
        &["lifecycle", "preStop"],
    ];
    let mut containers = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut errors = Vec::new();
    for (c, path) in pod.visit() {
        for handler in HANDLERS {
            let Some(h) = lookup(c, handler) else {
                continue;
            };
            for action in ["httpGet", "tcpSocket"] {
                let host = lookup(h, &[action]).map(|a| str_or_empty(a, &["host"]));
                if let Some(host) = host.filter(|h| !h.is_empty()) {
                    containers.insert(name_of(c).to_string());
                    hosts.insert(host.to_string());
                    errors.push(forbidden(
                        format!("{path}.{}.{action}.host", handler.join(".")),
                        BadValue::String(host.into()),
                    ));
                }
            }
        }
    }
    if containers.is_empty() {
        return None;
    }
    let containers = sorted(containers);
    let hosts = sorted(hosts);
    Some(Violation {
        reason: "probe or lifecycle host".into(),
        detail: format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", containers.len()),
            join_quote(&containers),
            pluralize("uses", "use", containers.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
        errors,
    })
}

// --- privileged, procMount ---------------------------------------------------------------

fn privileged(pod: &PodView<'_>) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for (c, path) in pod.visit() {
        if lookup(c, &["securityContext", "privileged"]).and_then(Value::as_bool) == Some(true) {
            names.push(name_of(c));
            errors.push(forbidden(
                format!("{path}.securityContext.privileged"),
                BadValue::Bool(true),
            ));
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "privileged".into(),
        detail: format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&names)
        ),
        errors,
    })
}

fn proc_mount(pod: &PodView<'_>) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    let mut types = BTreeSet::new();
    for (c, path) in pod.visit() {
        let Some(value) = lookup(c, &["securityContext", "procMount"]).and_then(Value::as_str)
        else {
            continue;
        };
        if value != "Default" {
            names.push(name_of(c));
            errors.push(forbidden(
                format!("{path}.securityContext.procMount"),
                BadValue::String(value.into()),
            ));
            types.insert(value.to_string());
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "procMount".into(),
        detail: format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&names),
            join_quote(&sorted(types))
        ),
        errors,
    })
}

// --- restrictedVolumes -------------------------------------------------------------------

pub(crate) const ALLOWED_VOLUME_SOURCES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The restricted volume sources in upstream's switch order (the first one set is reported).
const RESTRICTED_VOLUME_SOURCES: [&str; 21] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(pod: &PodView<'_>) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    let mut types = BTreeSet::new();
    for (i, volume) in volumes(pod).into_iter().enumerate() {
        let set = |source: &str| lookup(volume, &[source]).is_some();
        if ALLOWED_VOLUME_SOURCES.into_iter().any(set) {
            continue;
        }
        let source = RESTRICTED_VOLUME_SOURCES
            .into_iter()
            .find(|s| set(s))
            .unwrap_or("unknown");
        names.push(name_of(volume));
        types.insert(source.to_string());
        errors.push(forbidden(
            format!("spec.volumes[{i}].{source}"),
            BadValue::Empty,
        ));
    }
    if names.is_empty() {
        return None;
    }
    let types = sorted(types);
    Some(Violation {
        reason: "restricted volume types".into(),
        detail: format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
        errors,
    })
}

// --- runAsNonRoot, runAsUser -------------------------------------------------------------

fn run_as_non_root(pod: &PodView<'_>) -> Option<Violation> {
    let mut setters: Vec<String> = Vec::new();
    let mut setter_errors = Vec::new();
    let mut pod_non_root = false;
    match pod
        .spec_field(&["securityContext", "runAsNonRoot"])
        .and_then(Value::as_bool)
    {
        Some(false) => {
            setters.push("pod".into());
            setter_errors.push(forbidden(
                "spec.securityContext.runAsNonRoot".into(),
                BadValue::Bool(false),
            ));
        }
        Some(true) => pod_non_root = true,
        None => {}
    }

    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    let mut implicit_errors = Vec::new();
    for (c, path) in pod.visit() {
        let field = || format!("{path}.securityContext.runAsNonRoot");
        match lookup(c, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool) {
            Some(false) => {
                explicit.push(name_of(c));
                setter_errors.push(forbidden(field(), BadValue::Bool(false)));
            }
            Some(true) => {}
            None => {
                if !pod_non_root {
                    implicit.push(name_of(c));
                    implicit_errors.push(required(field()));
                }
            }
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    // Kyverno's pod-security-admission fork reports both kinds of offender, each with its
    // fields: an exception for the containers that set `false` leaves those that set nothing.
    let mut details = Vec::new();
    if !setters.is_empty() {
        details.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            setters.join(" and ")
        ));
    }
    if !implicit.is_empty() {
        details.push(format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ));
    }
    if details.is_empty() {
        return None;
    }
    let mut errors = setter_errors;
    errors.extend(implicit_errors);
    Some(Violation {
        reason: "runAsNonRoot != true".into(),
        detail: details.join("\n"),
        errors,
    })
}

fn run_as_user(pod: &PodView<'_>) -> Option<Violation> {
    let mut setters: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let is_root = |v: Option<&Value>| v.and_then(Value::as_i64) == Some(0);
    if is_root(pod.spec_field(&["securityContext", "runAsUser"])) {
        setters.push("pod".into());
        errors.push(forbidden(
            "spec.securityContext.runAsUser".into(),
            BadValue::Int(0),
        ));
    }
    let mut explicit = Vec::new();
    for (c, path) in pod.visit() {
        if is_root(lookup(c, &["securityContext", "runAsUser"])) {
            explicit.push(name_of(c));
            errors.push(forbidden(
                format!("{path}.securityContext.runAsUser"),
                BadValue::Int(0),
            ));
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "runAsUser=0".into(),
        detail: format!("{} must not set runAsUser=0", setters.join(" and ")),
        errors,
    })
}

// --- seLinuxOptions ----------------------------------------------------------------------

pub(crate) const SELINUX_TYPES_1_0: [&str; 4] =
    ["", "container_t", "container_init_t", "container_kvm_t"];
pub(crate) const SELINUX_TYPES_1_31: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options_1_0(pod: &PodView<'_>) -> Option<Violation> {
    se_linux_options(pod, &SELINUX_TYPES_1_0)
}

fn se_linux_options_1_31(pod: &PodView<'_>) -> Option<Violation> {
    se_linux_options(pod, &SELINUX_TYPES_1_31)
}

#[derive(Default)]
struct SeLinuxFindings {
    bad_types: BTreeSet<String>,
    set_user: bool,
    set_role: bool,
}

impl SeLinuxFindings {
    /// Check one `seLinuxOptions` object; `prefix` is the path of its securityContext.
    fn check(
        &mut self,
        opts: &Value,
        prefix: &str,
        allowed: &[&str],
        errors: &mut Vec<FieldError>,
    ) -> bool {
        let mut valid = true;
        let t = str_or_empty(opts, &["type"]);
        if !allowed.contains(&t) {
            valid = false;
            self.bad_types.insert(t.to_string());
            errors.push(forbidden(
                format!("{prefix}.seLinuxOptions.type"),
                BadValue::String(t.into()),
            ));
        }
        let user = str_or_empty(opts, &["user"]);
        if !user.is_empty() {
            valid = false;
            self.set_user = true;
            errors.push(forbidden(
                format!("{prefix}.seLinuxOptions.user"),
                BadValue::String(user.into()),
            ));
        }
        let role = str_or_empty(opts, &["role"]);
        if !role.is_empty() {
            valid = false;
            self.set_role = true;
            errors.push(forbidden(
                format!("{prefix}.seLinuxOptions.role"),
                BadValue::String(role.into()),
            ));
        }
        valid
    }
}

fn se_linux_options(pod: &PodView<'_>, allowed: &[&str]) -> Option<Violation> {
    let mut findings = SeLinuxFindings::default();
    let mut setters: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    if let Some(opts) = pod.spec_field(&["securityContext", "seLinuxOptions"])
        && !findings.check(opts, "spec.securityContext", allowed, &mut errors)
    {
        setters.push("pod".into());
    }
    let mut bad_containers = Vec::new();
    for (c, path) in pod.visit() {
        if let Some(opts) = lookup(c, &["securityContext", "seLinuxOptions"]) {
            let prefix = format!("{path}.securityContext");
            if !findings.check(opts, &prefix, allowed, &mut errors) {
                bad_containers.push(name_of(c));
            }
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    let mut bad_data = Vec::new();
    if !findings.bad_types.is_empty() {
        let types = sorted(findings.bad_types);
        bad_data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if findings.set_user {
        bad_data.push("user may not be set".to_string());
    }
    if findings.set_role {
        bad_data.push("role may not be set".to_string());
    }
    Some(Violation {
        reason: "seLinuxOptions".into(),
        detail: format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            bad_data.join("; ")
        ),
        errors,
    })
}

// --- seccompProfile ----------------------------------------------------------------------

pub(crate) const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
pub(crate) const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str =
    "container.seccomp.security.alpha.kubernetes.io/";

fn seccomp_type_valid(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn seccomp_annotation_valid(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

/// v1.0-v1.18 checked the alpha seccomp annotations.
fn seccomp_profile_baseline_1_0(pod: &PodView<'_>) -> Option<Violation> {
    let annotation = |key: &str| {
        pod.annotations
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    };
    // Keyed by the reported `key="value"` text, like upstream's map.
    let mut bad: std::collections::BTreeMap<String, Vec<FieldError>> = Default::default();
    let mut record = |key: &str, value: &str| {
        bad.entry(format!("{key}={}", go_quote(value)))
            .or_default()
            .push(forbidden(
                format!("metadata.annotations[{key}]"),
                BadValue::String(value.into()),
            ));
    };
    if let Some(v) = annotation(SECCOMP_POD_ANNOTATION)
        && !seccomp_annotation_valid(v)
    {
        record(SECCOMP_POD_ANNOTATION, v);
    }
    for (c, _) in pod.visit() {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", name_of(c));
        if let Some(v) = annotation(&key)
            && !seccomp_annotation_valid(v)
        {
            record(&key, v);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let values: Vec<String> = bad.keys().cloned().collect();
    Some(Violation {
        reason: "seccompProfile".into(),
        detail: format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", values.len()),
            values.join(", ")
        ),
        errors: bad.into_values().flatten().collect(),
    })
}

fn seccomp_profile_baseline_1_19(pod: &PodView<'_>) -> Option<Violation> {
    let mut setters: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(profile) = pod.spec_field(&["securityContext", "seccompProfile"]) {
        let t = str_or_empty(profile, &["type"]);
        if !seccomp_type_valid(t) {
            setters.push("pod".into());
            errors.push(forbidden(
                "spec.securityContext.seccompProfile.type".into(),
                BadValue::String(t.into()),
            ));
            bad_values.insert(t.to_string());
        }
    }
    let mut explicit = Vec::new();
    for (c, path) in pod.visit() {
        if let Some(profile) = lookup(c, &["securityContext", "seccompProfile"]) {
            let t = str_or_empty(profile, &["type"]);
            if !seccomp_type_valid(t) {
                explicit.push(name_of(c));
                errors.push(forbidden(
                    format!("{path}.securityContext.seccompProfile.type"),
                    BadValue::String(t.into()),
                ));
                bad_values.insert(t.to_string());
            }
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "seccompProfile".into(),
        detail: format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&sorted(bad_values))
        ),
        errors,
    })
}

fn seccomp_profile_restricted_1_19(pod: &PodView<'_>) -> Option<Violation> {
    let mut setters: Vec<String> = Vec::new();
    let mut setter_errors = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(profile) = pod.spec_field(&["securityContext", "seccompProfile"]) {
        let t = str_or_empty(profile, &["type"]);
        if seccomp_type_valid(t) {
            pod_set = true;
        } else {
            setters.push("pod".into());
            setter_errors.push(forbidden(
                "spec.securityContext.seccompProfile.type".into(),
                BadValue::String(t.into()),
            ));
            bad_values.insert(t.to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    let mut implicit_errors = Vec::new();
    for (c, path) in pod.visit() {
        let field = || format!("{path}.securityContext.seccompProfile.type");
        match lookup(c, &["securityContext", "seccompProfile"]) {
            Some(profile) => {
                let t = str_or_empty(profile, &["type"]);
                if !seccomp_type_valid(t) {
                    explicit.push(name_of(c));
                    setter_errors.push(forbidden(field(), BadValue::String(t.into())));
                    bad_values.insert(t.to_string());
                }
            }
            None => {
                if !pod_set {
                    implicit.push(name_of(c));
                    implicit_errors.push(required(field()));
                }
            }
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return Some(Violation {
            reason: "seccompProfile".into(),
            detail: format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&sorted(bad_values))
            ),
            errors: setter_errors,
        });
    }
    if !implicit.is_empty() {
        return Some(Violation {
            reason: "seccompProfile".into(),
            detail: format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
            errors: implicit_errors,
        });
    }
    None
}

fn seccomp_profile_restricted_1_25(pod: &PodView<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    seccomp_profile_restricted_1_19(pod)
}

// --- sysctls -----------------------------------------------------------------------------

pub(crate) const SYSCTLS_1_0: [&str; 5] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
pub(crate) const SYSCTLS_ADDED_1_27: [&str; 1] = ["net.ipv4.ip_local_reserved_ports"];
pub(crate) const SYSCTLS_ADDED_1_29: [&str; 4] = [
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
pub(crate) const SYSCTLS_ADDED_1_32: [&str; 2] = ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

/// The sysctls allowed by the check version for Kubernetes `1.<minor>`.
pub(crate) fn sysctl_allowed(name: &str, minor: u32) -> bool {
    SYSCTLS_1_0.contains(&name)
        || (minor >= 27 && SYSCTLS_ADDED_1_27.contains(&name))
        || (minor >= 29 && SYSCTLS_ADDED_1_29.contains(&name))
        || (minor >= 32 && SYSCTLS_ADDED_1_32.contains(&name))
}

fn sysctls_1_0(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(pod, 0)
}

fn sysctls_1_27(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(pod, 27)
}

fn sysctls_1_29(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(pod, 29)
}

fn sysctls_1_32(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(pod, 32)
}

fn sysctls(pod: &PodView<'_>, minor: u32) -> Option<Violation> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    let list = pod
        .spec_field(&["securityContext", "sysctls"])
        .and_then(Value::as_array);
    for (i, sysctl) in list.into_iter().flatten().enumerate() {
        let name = str_or_empty(sysctl, &["name"]);
        if !sysctl_allowed(name, minor) {
            names.push(name);
            errors.push(forbidden(
                format!("spec.securityContext.sysctls[{i}].name"),
                BadValue::String(name.into()),
            ));
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "forbidden sysctls".into(),
        detail: names.join(", "),
        errors,
    })
}

// --- windowsHostProcess ------------------------------------------------------------------

fn windows_host_process(pod: &PodView<'_>) -> Option<Violation> {
    let host_process = |v: Option<&Value>| v.and_then(Value::as_bool) == Some(true);
    let mut setters: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    if host_process(pod.spec_field(&["securityContext", "windowsOptions", "hostProcess"])) {
        setters.push("pod".into());
        errors.push(forbidden(
            "spec.securityContext.windowsOptions.hostProcess".into(),
            BadValue::Bool(true),
        ));
    }
    let mut names = Vec::new();
    for (c, path) in pod.visit() {
        if host_process(lookup(
            c,
            &["securityContext", "windowsOptions", "hostProcess"],
        )) {
            names.push(name_of(c));
            errors.push(forbidden(
                format!("{path}.securityContext.windowsOptions.hostProcess"),
                BadValue::Bool(true),
            ));
        }
    }
    if !names.is_empty() {
        setters.push(containers_phrase(&names));
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation {
        reason: "hostProcess".into(),
        detail: format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
        errors,
    })
}
