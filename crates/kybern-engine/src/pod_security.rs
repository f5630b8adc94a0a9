//! Pod Security Standards subrule (`validate.podSecurity`), as Kyverno evaluates it.
//!
//! Owns parsing and validating the subrule, running the upstream Pod Security Admission
//! checks on a Pod or a controller's pod template, Kyverno's exclusion algorithm (policy
//! `exclude` entries and PolicyException `podSecurity` entries) and Kyverno's failure message.
//! Kyverno's own behaviour is kept where it differs from upstream admission:
//! - `baseline` runs the baseline checks; every other level (also `privileged`) runs all checks,
//!   and restricted checks do not override their baseline counterparts;
//! - a pinned version runs every version of a check up to it (not only the newest), so a check
//!   can fail several times; `latest` runs only the newest version of each check;
//! - field paths of controllers are rewritten with a plain text replace before
//!   PolicyException exclusions are matched against them.

mod check_cache;
pub(crate) mod checks;
mod exclusion;

pub use check_cache::CheckCache;

use serde_json::Value;

use checks::{CHECKS, CheckLevel, PodView};

/// The Pod Security Standards level of a subrule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The level as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// One `exclude` entry of the subrule, or one `podSecurity` entry of a PolicyException.
#[derive(Debug, Clone, PartialEq)]
pub struct Exclude {
    pub control_name: String,
    pub images: Vec<String>,
    pub restricted_field: Option<String>,
    pub values: Vec<String>,
}

/// A parsed and validated `validate.podSecurity`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSecurity {
    pub level: Level,
    /// As written: `latest`, `v1.19` ... `v1.35`, or empty when the policy omits it (which
    /// means latest; kept empty because Kyverno prints it as written).
    pub version: String,
    pub exclude: Vec<Exclude>,
}

/// Why a `validate.podSecurity` block or a resource cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodSecurityError {
    #[error("{path}: expected {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    #[error("{path}: required value")]
    Required { path: String },
    #[error("{path}: unsupported value {value:?}")]
    Unsupported { path: String, value: String },
    #[error("{path}: invalid value {value:?}: {reason}")]
    Invalid {
        path: String,
        value: String,
        reason: &'static str,
    },
    #[error("{path}: forbidden: {reason}")]
    Forbidden { path: String, reason: &'static str },
    /// The resource is not a Pod or a supported controller (Kyverno's wording).
    #[error("could not find correct resource type")]
    UnsupportedKind { kind: String },
}

/// How a field error is classified upstream (`field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Forbidden,
    Required,
}

/// The offending value of a field error, typed as upstream sets it (the type decides how
/// Kyverno prints it and how `exclude.values` match it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadValue {
    /// No value (upstream's empty string).
    Empty,
    String(String),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
}

/// One field error of a failed check, e.g. `spec.containers[0].securityContext.privileged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    pub bad_value: BadValue,
}

impl FieldError {
    /// The error as Kyverno's failure message prints it.
    pub fn message(&self) -> String {
        match (&self.kind, &self.bad_value) {
            (FieldErrorKind::Forbidden, BadValue::Empty) => format!("{}: Forbidden", self.field),
            (FieldErrorKind::Forbidden, BadValue::String(s)) if s.is_empty() => {
                format!("{}: Forbidden", self.field)
            }
            (FieldErrorKind::Forbidden, value) => format!(
                "{} is forbidden, forbidden values found: {}",
                self.field,
                go_value(value)
            ),
            (FieldErrorKind::Required, _) => format!("{}: Required value", self.field),
        }
    }
}

/// A value printed with Go's `%+v`.
fn go_value(value: &BadValue) -> String {
    match value {
        BadValue::Empty => String::new(),
        BadValue::String(s) => s.clone(),
        BadValue::Bool(b) => b.to_string(),
        BadValue::Int(i) => i.to_string(),
        BadValue::List(items) => format!("[{}]", items.join(" ")),
    }
}

/// A failed check after exclusions.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// Upstream check ID, e.g. `privileged`.
    pub id: String,
    pub forbidden_reason: String,
    pub forbidden_detail: String,
    /// Field errors, with paths as Kyverno reports them (rewritten for controllers).
    pub field_errors: Vec<FieldError>,
    /// Images of the containers named in the detail (the container name when not found),
    /// for the report's `controlsJSON`.
    pub images: Vec<String>,
}

impl CheckResult {
    /// The control name of the check (`Privileged Containers` for `privileged`).
    pub fn control_name(&self) -> &'static str {
        control_name(&self.id)
    }
}

/// The result of evaluating a resource, before and after PolicyException exclusions.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Failing checks after the subrule's own `exclude` entries. Empty: the rule passes.
    pub checks_before_exceptions: Vec<CheckResult>,
    /// Failing checks after the PolicyException entries too. Empty while the list above is
    /// not: the exceptions exempt everything and the rule is skipped.
    pub checks: Vec<CheckResult>,
}

/// Control names and the check IDs they cover (`PSS_control_name_to_ids`).
const CONTROLS: &[(&str, &[&str])] = &[
    (
        "Capabilities",
        &["capabilities_baseline", "capabilities_restricted"],
    ),
    (
        "Seccomp",
        &["seccompProfile_baseline", "seccompProfile_restricted"],
    ),
    ("Privileged Containers", &["privileged"]),
    ("Host Ports", &["hostPorts"]),
    ("/proc Mount Type", &["procMount"]),
    (
        "Host Probes / Lifecycle Hooks",
        &["hostProbesAndHostLifecycle"],
    ),
    ("HostProcess", &["windowsHostProcess"]),
    ("SELinux", &["seLinuxOptions"]),
    ("Host Namespaces", &["hostNamespaces"]),
    ("HostPath Volumes", &["hostPathVolumes"]),
    ("Sysctls", &["sysctls"]),
    ("AppArmor", &["appArmorProfile"]),
    ("Privilege Escalation", &["allowPrivilegeEscalation"]),
    ("Running as Non-root", &["runAsNonRoot"]),
    ("Running as Non-root user", &["runAsUser"]),
    ("Volume Types", &["restrictedVolumes"]),
];

/// Controls that may only be excluded with `images`.
pub(crate) const CONTAINER_LEVEL_CONTROLS: &[&str] = &[
    "Capabilities",
    "Privileged Containers",
    "Host Ports",
    "/proc Mount Type",
    "Privilege Escalation",
    "Host Probes / Lifecycle Hooks",
];

/// Controls that may only be excluded without `images`.
pub(crate) const POD_LEVEL_CONTROLS: &[&str] = &[
    "Host Namespaces",
    "HostPath Volumes",
    "Sysctls",
    "Volume Types",
];

/// Controls that exist only at restricted level (Seccomp and Capabilities exist at both,
/// so they are allowed at baseline).
const RESTRICTED_ONLY_CONTROLS: &[&str] = &[
    "Volume Types",
    "Privilege Escalation",
    "Running as Non-root",
    "Running as Non-root user",
];

/// The newest Kubernetes minor version accepted in `version`.
const NEWEST_MINOR: u32 = 35;
/// The oldest Kubernetes minor version accepted in `version`.
const OLDEST_MINOR: u32 = 19;

/// The check IDs of a control name (empty for an unknown name).
pub(crate) fn control_ids(control_name: &str) -> &'static [&'static str] {
    CONTROLS
        .iter()
        .find(|(name, _)| *name == control_name)
        .map(|(_, ids)| *ids)
        .unwrap_or(&[])
}

/// The control name of a check ID (`PSSControlIDToName`), empty if unknown.
pub fn control_name(check_id: &str) -> &'static str {
    CONTROLS
        .iter()
        .find(|(_, ids)| ids.contains(&check_id))
        .map(|(name, _)| *name)
        .unwrap_or("")
}

/// A policy version: `latest` or Kubernetes `1.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Latest,
    Minor(u32),
}

pub(crate) fn parse_version(version: &str) -> Option<Version> {
    if version.is_empty() || version == "latest" {
        return Some(Version::Latest);
    }
    let minor: u32 = version.strip_prefix("v1.")?.parse().ok()?;
    (OLDEST_MINOR..=NEWEST_MINOR)
        .contains(&minor)
        .then_some(Version::Minor(minor))
}

/// A failed check before paths are rewritten and images attached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub(crate) id: &'static str,
    pub(crate) reason: String,
    pub(crate) detail: String,
    pub(crate) errors: Vec<FieldError>,
}

impl Finding {
    fn new(id: &'static str, v: checks::Violation) -> Self {
        Finding {
            id,
            reason: v.reason,
            detail: v.detail,
            errors: v.errors,
        }
    }
}

/// The checks of `level` at `version` as (check ID, minimum minor version, check) in
/// reporting order: `latest` runs each check's newest version, `v1.N` every version up to N
/// (a pod fails when any of them fails, as in Kyverno).
pub(crate) fn selected_checks(
    level: Level,
    version: Version,
) -> impl Iterator<Item = (&'static str, u32, checks::CheckFn)> {
    selected_checks_keyed(level, version).map(|(_, id, min, f)| (id, min, f))
}

/// [`selected_checks`], each with a key unique to its check and version: the version's place
/// in the table's checks and versions counted in order.
pub(crate) fn selected_checks_keyed(
    level: Level,
    version: Version,
) -> impl Iterator<Item = (usize, &'static str, u32, checks::CheckFn)> {
    CHECKS
        .iter()
        .scan(0usize, |next, check| {
            let first_key = *next;
            *next += check.versions.len();
            Some((first_key, check))
        })
        .filter(move |(_, check)| level != Level::Baseline || check.level == CheckLevel::Baseline)
        .flat_map(move |(first_key, check)| {
            let first = match version {
                Version::Latest => check.versions.len().saturating_sub(1),
                Version::Minor(_) => 0,
            };
            check
                .versions
                .iter()
                .enumerate()
                .skip(first)
                .filter(move |(_, (min, _))| match version {
                    Version::Latest => true,
                    Version::Minor(minor) => *min <= minor,
                })
                .map(move |(j, (min, f))| (first_key + j, check.id, *min, *f))
        })
}

/// `evaluatePSS`: run the checks of `level` at `version` (only those whose IDs `only` lists,
/// when given) and collect the failures.
pub(crate) fn run_checks_of(
    level: Level,
    version: Version,
    pod: &PodView<'_>,
    only: Option<&[&str]>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (id, _, check_fn) in selected_checks(level, version) {
        if only.is_some_and(|ids| !ids.contains(&id)) {
            continue;
        }
        if let Some(v) = check_fn(pod) {
            findings.push(Finding::new(id, v));
        }
    }
    findings
}

impl PodSecurity {
    /// Parse `validate.podSecurity` JSON; errors (thiserror `PodSecurityError`) name the field
    /// path, e.g. `exclude[1].controlName`, and enforce Kyverno's validation: unknown
    /// level/version/controlName, images required/forbidden per control kind, restrictedField
    /// and values together, restricted-only controls not allowed at baseline.
    pub fn from_json(v: &Value) -> Result<PodSecurity, PodSecurityError> {
        let obj = v.as_object().ok_or_else(|| PodSecurityError::WrongType {
            path: String::new(),
            expected: "an object",
        })?;
        let level = match obj.get("level") {
            None | Some(Value::Null) => {
                return Err(PodSecurityError::Required {
                    path: "level".into(),
                });
            }
            Some(Value::String(s)) => match s.as_str() {
                "privileged" => Level::Privileged,
                "baseline" => Level::Baseline,
                "restricted" => Level::Restricted,
                _ => {
                    return Err(PodSecurityError::Unsupported {
                        path: "level".into(),
                        value: s.clone(),
                    });
                }
            },
            Some(_) => {
                return Err(PodSecurityError::WrongType {
                    path: "level".into(),
                    expected: "a string",
                });
            }
        };
        let version = match obj.get("version") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => {
                if parse_version(s).is_none() {
                    return Err(PodSecurityError::Unsupported {
                        path: "version".into(),
                        value: s.clone(),
                    });
                }
                s.clone()
            }
            Some(_) => {
                return Err(PodSecurityError::WrongType {
                    path: "version".into(),
                    expected: "a string",
                });
            }
        };
        let exclude = match obj.get("exclude") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_exclude(item, &format!("exclude[{i}]"), Some(level)))
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(PodSecurityError::WrongType {
                    path: "exclude".into(),
                    expected: "an array",
                });
            }
        };
        Ok(PodSecurity {
            level,
            version,
            exclude,
        })
    }
}

impl Exclude {
    /// Parse one PolicyException `spec.podSecurity[]` entry (`path` names it in errors), with
    /// Kyverno's checks on images and restrictedField/values.
    pub fn from_json(v: &Value, path: &str) -> Result<Exclude, PodSecurityError> {
        parse_exclude(v, path, None)
    }
}

fn string_list(v: Option<&Value>, path: &str) -> Result<Vec<String>, PodSecurityError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| PodSecurityError::WrongType {
                        path: format!("{path}[{i}]"),
                        expected: "a string",
                    })
            })
            .collect(),
        Some(_) => Err(PodSecurityError::WrongType {
            path: path.to_string(),
            expected: "an array of strings",
        }),
    }
}

/// Parse and validate an exclude entry; `level` is the subrule's level (None for exceptions,
/// which have no level to check restricted-only controls against).
fn parse_exclude(v: &Value, path: &str, level: Option<Level>) -> Result<Exclude, PodSecurityError> {
    let obj = v.as_object().ok_or_else(|| PodSecurityError::WrongType {
        path: path.to_string(),
        expected: "an object",
    })?;
    let name_path = format!("{path}.controlName");
    let control_name = match obj.get("controlName") {
        None | Some(Value::Null) => return Err(PodSecurityError::Required { path: name_path }),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(PodSecurityError::WrongType {
                path: name_path,
                expected: "a string",
            });
        }
    };
    if control_ids(&control_name).is_empty() {
        return Err(PodSecurityError::Unsupported {
            path: name_path,
            value: control_name,
        });
    }
    let images = string_list(obj.get("images"), &format!("{path}.images"))?;
    let restricted_field = match obj.get("restrictedField") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(PodSecurityError::WrongType {
                path: format!("{path}.restrictedField"),
                expected: "a string",
            });
        }
    };
    let values = string_list(obj.get("values"), &format!("{path}.values"))?;

    let name = control_name.as_str();
    if CONTAINER_LEVEL_CONTROLS.contains(&name) && images.is_empty() {
        return Err(PodSecurityError::Invalid {
            path: name_path,
            value: control_name,
            reason: "exclude.images must be specified for the container level control",
        });
    }
    if POD_LEVEL_CONTROLS.contains(&name) && !images.is_empty() {
        return Err(PodSecurityError::Invalid {
            path: name_path,
            value: control_name,
            reason: "exclude.images must not be specified for the pod level control",
        });
    }
    if restricted_field.is_some() && values.is_empty() {
        return Err(PodSecurityError::Forbidden {
            path: format!("{path}.values"),
            reason: "values is required",
        });
    }
    if restricted_field.is_none() && !values.is_empty() {
        return Err(PodSecurityError::Forbidden {
            path: format!("{path}.restrictedField"),
            reason: "restrictedField is required",
        });
    }
    if level == Some(Level::Baseline) && RESTRICTED_ONLY_CONTROLS.contains(&name) {
        return Err(PodSecurityError::Invalid {
            path: name_path,
            value: control_name,
            reason: "Invalid control name defined at the given level",
        });
    }
    Ok(Exclude {
        control_name,
        images,
        restricted_field,
        values,
    })
}

/// Kinds whose pod template is at `spec.template`.
const TEMPLATE_KINDS: &[&str] = &[
    "DaemonSet",
    "Deployment",
    "Job",
    "StatefulSet",
    "ReplicaSet",
    "ReplicationController",
];

/// `getSpec`: the pod metadata and spec of a Pod, a controller or a CronJob.
fn pod_parts(resource: &Value) -> Result<(&str, Option<&Value>, Option<&Value>), PodSecurityError> {
    let kind = resource.get("kind").and_then(Value::as_str).unwrap_or("");
    let at = |path: &[&str]| checks::lookup(resource, path);
    match kind {
        "Pod" => Ok((kind, at(&["metadata"]), at(&["spec"]))),
        k if TEMPLATE_KINDS.contains(&k) => Ok((
            kind,
            at(&["spec", "template", "metadata"]),
            at(&["spec", "template", "spec"]),
        )),
        // Kyverno reads the jobTemplate's own metadata, not the pod template's.
        "CronJob" => Ok((
            kind,
            at(&["spec", "jobTemplate", "metadata"]),
            at(&["spec", "jobTemplate", "spec", "template", "spec"]),
        )),
        _ => Err(PodSecurityError::UnsupportedKind {
            kind: kind.to_string(),
        }),
    }
}

/// `convertChecks`: Kyverno rewrites field paths with a plain text replace of every
/// `spec` (controllers) and every `metadata` (all kinds, Pods included).
fn convert_paths(findings: &mut [Finding], kind: &str) {
    let spec_target = if TEMPLATE_KINDS.contains(&kind) {
        Some("spec.template.spec")
    } else if kind == "CronJob" {
        Some("spec.jobTemplate.spec.template.spec")
    } else {
        None
    };
    for error in findings.iter_mut().flat_map(|f| f.errors.iter_mut()) {
        if let Some(target) = spec_target {
            error.field = error.field.replace("spec", target);
        }
        error.field = error.field.replace("metadata", "spec.template.metadata");
    }
}

/// `addImages`: container names from the detail (`container(s) "a", "b" ... must`), mapped
/// to their images.
fn images_of(detail: &str, pod: &PodView<'_>) -> Vec<String> {
    let Some(start) = detail.find("container") else {
        return Vec::new();
    };
    let rest = detail.get(start + "container".len()..).unwrap_or("");
    let rest = rest.strip_prefix('s').unwrap_or(rest);
    let Some(end) = rest.find("must") else {
        return Vec::new();
    };
    let names: String = rest
        .get(..end)
        .unwrap_or("")
        .chars()
        .filter(|c| *c != '"' && *c != ' ')
        .collect();
    names
        .split(',')
        .map(|name| {
            checks::ContainerKind::ALL
                .into_iter()
                .flat_map(|k| pod.containers_of(k).iter())
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|c| c.get("image").and_then(Value::as_str))
                .unwrap_or(name)
                .to_string()
        })
        .collect()
}

fn to_results(findings: Vec<Finding>, pod: &PodView<'_>) -> Vec<CheckResult> {
    findings
        .into_iter()
        .map(|f| CheckResult {
            id: f.id.to_string(),
            images: images_of(&f.detail, pod),
            forbidden_reason: f.reason,
            forbidden_detail: f.detail,
            field_errors: f.errors,
        })
        .collect()
}

/// Evaluate a resource (Pod, the pod template of a controller, or a CronJob's) against the
/// subrule, then apply `extra_excludes` from PolicyExceptions' `podSecurity` entries.
/// Errors when the resource kind is not supported or the version cannot be parsed; Kyverno
/// reports those as a rule error.
pub fn evaluate_detailed(
    spec: &PodSecurity,
    resource: &Value,
    extra_excludes: &[Exclude],
) -> Result<Evaluation, PodSecurityError> {
    evaluate_shared(spec, resource, extra_excludes, &CheckCache::default())
}

/// [`evaluate_detailed`] with check results shared through `cache` by the rules of a request.
pub fn evaluate_shared(
    spec: &PodSecurity,
    resource: &Value,
    extra_excludes: &[Exclude],
    cache: &CheckCache,
) -> Result<Evaluation, PodSecurityError> {
    let version = parse_version(&spec.version).ok_or_else(|| PodSecurityError::Unsupported {
        path: "version".into(),
        value: spec.version.clone(),
    })?;
    let (kind, metadata, pod_spec) = pod_parts(resource)?;
    let pod = PodView::new(metadata, pod_spec);
    let mut findings = cache.run(spec.level, version, &pod, resource);
    if !spec.exclude.is_empty() {
        findings = exclusion::apply(spec.level, version, &spec.exclude, findings, &pod);
    }
    convert_paths(&mut findings, kind);
    let before = findings.clone();
    // Exceptions only matter for a failing rule, and run on the rewritten paths.
    if !findings.is_empty() && !extra_excludes.is_empty() {
        findings = exclusion::apply(spec.level, version, extra_excludes, findings, &pod);
    }
    Ok(Evaluation {
        checks_before_exceptions: to_results(before, &pod),
        checks: to_results(findings, &pod),
    })
}

/// Evaluate a resource: Pod, or the pod template of Deployment/DaemonSet/StatefulSet/
/// ReplicaSet/ReplicationController/Job, or CronJob (jobTemplate). `extra_excludes` are from
/// PolicyExceptions' `podSecurity` entries. Returns the failing checks after exclusions
/// (empty = allowed). An unsupported kind yields no checks; use [`evaluate_detailed`] to
/// tell it apart.
pub fn evaluate(
    spec: &PodSecurity,
    resource: &Value,
    extra_excludes: &[Exclude],
) -> Vec<CheckResult> {
    evaluate_detailed(spec, resource, extra_excludes)
        .map(|e| e.checks)
        .unwrap_or_default()
}

/// Kyverno's failure message: `Validation rule '<rule>' failed. It violates PodSecurity
/// "<level>:<version>": (Forbidden reason: <reason>, field error list: [<errors>])...`,
/// one parenthesised block per failed check, with no separator between blocks.
pub fn failure_message(rule_name: &str, spec: &PodSecurity, failed: &[CheckResult]) -> String {
    let mut checks = String::new();
    for check in failed {
        let errors: Vec<String> = check.field_errors.iter().map(FieldError::message).collect();
        checks.push_str(&format!(
            "(Forbidden reason: {}, field error list: [{}])",
            check.forbidden_reason,
            errors.join(", ")
        ));
    }
    format!(
        "Validation rule '{rule_name}' failed. It violates PodSecurity \"{}:{}\": {checks}",
        spec.level.as_str(),
        spec.version
    )
}

#[cfg(test)]
mod tests;
