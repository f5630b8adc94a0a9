//! Auto-generation of rules for pod controllers (Kyverno's `pkg/autogen/v1`).
//!
//! A `kyverno.io/v1` policy written for `Pod` also applies to the workloads that create pods:
//! Kyverno derives an `autogen-<rule>` rule for DaemonSet, Deployment, Job, StatefulSet,
//! ReplicaSet and ReplicationController (pod template at `spec.template`) and an
//! `autogen-cronjob-<rule>` rule for CronJob (pod template at `spec.jobTemplate.spec.template`).
//!
//! This module works on the raw policy JSON, before rules are compiled, and reproduces Kyverno's
//! answers including its quirks (textual path rewriting, annotation parsing without trimming,
//! fields that the generated rules drop). It owns no evaluation.

mod kinds;
mod rule;
mod text;

use serde_json::Value;

use self::kinds::{contains_kind, gvk_for_kind};

/// Policy annotation that chooses the controllers (`all`, `none` or a comma list of kinds).
pub const ANNOTATION_AUTOGEN_CONTROLLERS: &str = "pod-policies.kyverno.io/autogen-controllers";

/// Prefix of every generated rule name; original rules carrying it are never autogen'd.
pub const AUTOGEN_RULE_PREFIX: &str = "autogen-";

/// Kind of the one controller that gets its own rule (its pod template is nested deeper).
pub const CRON_JOB: &str = "CronJob";

/// The pod controllers other than CronJob, sorted as Kyverno lists them in generated rules.
const POD_CONTROLLERS_BUT_CRON_JOB: [&str; 6] = [
    "DaemonSet",
    "Deployment",
    "Job",
    "ReplicaSet",
    "ReplicationController",
    "StatefulSet",
];

/// A workload kind autogen writes rules for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Controller {
    kind: String,
    gvk: String,
}

impl Controller {
    fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            gvk: gvk_for_kind(kind).to_string(),
        }
    }

    /// The plain kind, e.g. `Deployment`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The kind as written into generated rules, e.g. `apps/v1/Deployment`; a kind Kyverno has no
    /// group/version for (a custom controller named in the annotation) stays as it is.
    pub fn gvk(&self) -> &str {
        &self.gvk
    }

    /// True for CronJob, whose rule is `autogen-cronjob-<rule>`.
    pub fn is_cron_job(&self) -> bool {
        self.kind == CRON_JOB
    }
}

/// The controllers `compute_rules` generates rules for ("none" => empty).
///
/// Honours the annotation [`ANNOTATION_AUTOGEN_CONTROLLERS`] (absent => all seven controllers;
/// `all`; `none`; a comma list, split without trimming) but only when Kyverno's `CanAutoGen`
/// allows autogen at all: no generate rule, no `mutate.patchesJson6902` (top level or in foreach),
/// no match/exclude resource description with `name`, `names`, `selector` or `annotations`, no
/// `Pod` mixed with other kinds, and some kind is `Pod` or a pod controller.
///
/// The non-CronJob controllers come first in the order of the generated `kinds`, then CronJob.
/// Like `compute_rules`, a list naming none of the six known non-CronJob controllers keeps its
/// entries as kinds (Kyverno generates rules for custom controllers that way). Kyverno's
/// `status.autogen` view differs in edge cases (it intersects with the supported set); this
/// follows the rules the engine evaluates.
pub fn controllers(policy: &Value) -> Vec<Controller> {
    let Some(plan) = Plan::for_policy(policy) else {
        return Vec::new();
    };
    let mut out: Vec<Controller> = plan
        .pod_rule_kinds()
        .unwrap_or_default()
        .iter()
        .map(|k| Controller::new(k))
        .collect();
    if plan.has_cron_job() {
        out.push(Controller::new(CRON_JOB));
    }
    out
}

/// The policy's rules plus the generated `autogen-<rule>` and `autogen-cronjob-<rule>` rules,
/// in Kyverno's order, as JSON rule objects ready to be compiled like any other rule.
///
/// Order: when at least one rule is generated, the original rules not named `autogen-*`, then for
/// each original rule its `autogen-` rule followed by its `autogen-cronjob-` rule. When nothing is
/// generated the original rules come back unchanged (including any named `autogen-*`).
pub fn compute_rules(policy: &Value) -> Vec<Value> {
    let rules = policy_rules(policy);
    let Some(plan) = Plan::for_policy(policy) else {
        return rules.to_vec();
    };
    let pod_kinds = plan.pod_rule_kinds();
    let cron_intermediate_kinds = plan.cron_intermediate_kinds();
    let mut generated = Vec::new();
    for original in rules {
        if let Some(kinds) = &pod_kinds
            && let Some(r) = rule::generate_for_controllers(original, kinds)
        {
            generated.push(rule::finish(r, text::Target::PodTemplate));
        }
        if plan.has_cron_job()
            && let Some(kinds) = &cron_intermediate_kinds
            && let Some(intermediate) = rule::generate_for_controllers(original, kinds)
            && let Some(r) = rule::generate_for_cron_job(&intermediate, original)
        {
            generated.push(rule::finish(r, text::Target::CronJobTemplate));
        }
    }
    if generated.is_empty() {
        return rules.to_vec();
    }
    let mut out: Vec<Value> = rules
        .iter()
        .filter(|r| !is_autogen_rule_name(rule_name(r)))
        .cloned()
        .collect();
    out.extend(generated);
    out
}

/// True for names Kyverno treats as generated (`autogen-` prefix).
pub fn is_autogen_rule_name(name: &str) -> bool {
    name.starts_with(AUTOGEN_RULE_PREFIX)
}

/// `<prefix>-<name>` cut to 63 bytes, Kyverno's rule-name limit.
fn autogen_rule_name(prefix: &str, name: &str) -> String {
    let mut full = format!("{prefix}-{name}");
    if full.len() > 63 {
        // Kyverno slices bytes; back off to a char boundary so the result stays valid UTF-8.
        let mut cut = 63;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        full.truncate(cut);
    }
    full
}

fn policy_rules(policy: &Value) -> &[Value] {
    policy
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn rule_name(rule: &Value) -> &str {
    rule.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// Which controllers a policy's autogen targets, as Kyverno's `computeRules` derives them.
///
/// Kyverno joins a Go set in random order and then sorts or substring-searches it; every use is
/// order-independent, so a sorted, de-duplicated list stands in for that string.
#[derive(Debug)]
struct Plan {
    /// Entries of the requested controller set, sorted and de-duplicated.
    requested: Vec<String>,
}

impl Plan {
    /// `None` when autogen is off for the policy (CanAutoGen refuses, or the set is `none`).
    fn for_policy(policy: &Value) -> Option<Self> {
        if !can_auto_gen(policy_rules(policy)) {
            return None;
        }
        let annotation = policy
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ANNOTATION_AUTOGEN_CONTROLLERS))
            .and_then(Value::as_str);
        let mut requested: Vec<String> = match annotation {
            // Kyverno splits on commas with no trimming; " CronJob" is a different entry.
            Some(list) => list.split(',').map(str::to_string).collect(),
            None => POD_CONTROLLERS_BUT_CRON_JOB
                .iter()
                .chain(std::iter::once(&CRON_JOB))
                .map(|s| s.to_string())
                .collect(),
        };
        requested.sort();
        requested.dedup();
        if requested == ["none"] {
            return None;
        }
        Some(Self { requested })
    }

    /// Kinds of the `autogen-<rule>` rules: the requested set without CronJob entries.
    fn pod_rule_kinds(&self) -> Option<Vec<String>> {
        let stripped: Vec<&str> = self
            .requested
            .iter()
            .map(String::as_str)
            .filter(|c| *c != CRON_JOB)
            .collect();
        resolve_controller_kinds(&stripped)
    }

    /// Kinds of the intermediate rule the CronJob rule is derived from (only its shape matters).
    fn cron_intermediate_kinds(&self) -> Option<Vec<String>> {
        let all: Vec<&str> = self.requested.iter().map(String::as_str).collect();
        resolve_controller_kinds(&all)
    }

    /// Kyverno checks the joined list for the substrings `CronJob` or `all`; neither contains a
    /// comma, so checking each entry is the same test.
    fn has_cron_job(&self) -> bool {
        self.requested
            .iter()
            .any(|c| c.contains(CRON_JOB) || c.contains("all"))
    }
}

/// Kyverno's `generateRuleForControllers` kind resolution for a sorted controller list:
/// nothing for an empty list, the six controllers for `all`, the known controllers named,
/// or (when none is known) the entries verbatim.
fn resolve_controller_kinds(sorted: &[&str]) -> Option<Vec<String>> {
    // Kyverno tests the joined string against "": an empty list or a single empty entry.
    if sorted.is_empty() || sorted == [""] {
        return None;
    }
    if sorted == ["all"] {
        return Some(
            POD_CONTROLLERS_BUT_CRON_JOB
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
    }
    let known: Vec<String> = sorted
        .iter()
        .filter(|c| POD_CONTROLLERS_BUT_CRON_JOB.contains(c))
        .map(|s| s.to_string())
        .collect();
    if known.is_empty() {
        Some(sorted.iter().map(|s| s.to_string()).collect())
    } else {
        Some(known)
    }
}

/// Why no rule of a policy that matches Pods is extended to pod controllers, when that is so and
/// not asked for (the autogen annotation is not `none`): the field path that stops Kyverno's
/// `CanAutoGen`, which decides for the whole policy, and the reason.
pub fn autogen_blocker(policy: &Value) -> Option<(String, String)> {
    let annotation = policy
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_AUTOGEN_CONTROLLERS))
        .and_then(Value::as_str);
    let rules = policy_rules(policy);
    let matches_pods = rules.iter().any(|r| {
        rule::resource_descriptions(r.get("match")).any(|d| kinds::kinds_of(d).contains(&"Pod"))
    });
    if annotation == Some("none") || !matches_pods || can_auto_gen(rules) {
        return None;
    }
    let whole = "so Kyverno extends no rule of this policy to pod controllers (Deployments, \
                 CronJobs, ...): their Pod templates are not covered, only the Pods once \
                 created; move that rule to a policy of its own, or set the annotation \
                 pod-policies.kyverno.io/autogen-controllers: none to say it is meant";
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if rule::has_generate(rule) {
            return Some((
                format!("{at}.generate"),
                format!("a generate rule, {whole}"),
            ));
        }
        if rule::has_json6902(rule) {
            return Some((
                format!("{at}.mutate"),
                format!("a patchesJson6902 mutation, {whole}"),
            ));
        }
        for block in ["match", "exclude"] {
            let b = non_null(rule.get(block));
            let mut paths = vec![(
                format!("{at}.{block}.resources"),
                b.and_then(|b| non_null(b.get("resources"))),
            )];
            for group in ["any", "all"] {
                for (j, f) in b
                    .and_then(|b| b.get(group))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    paths.push((
                        format!("{at}.{block}.{group}[{j}].resources"),
                        non_null(f.get("resources")),
                    ));
                }
            }
            for (path, d) in paths {
                let Some(d) = d else { continue };
                for field in ["name", "names", "selector", "annotations"] {
                    let set = non_null(d.get(field)).is_some_and(|v| {
                        v.as_str().is_none_or(|s| !s.is_empty())
                            && v.as_array().is_none_or(|a| !a.is_empty())
                    });
                    if set {
                        return Some((
                            format!("{path}.{field}"),
                            format!("selecting by `{field}`, {whole}"),
                        ));
                    }
                }
                let kinds = kinds::kinds_of(Some(d));
                if kinds.len() > 1 && contains_kind(&kinds, "Pod") {
                    return Some((
                        format!("{path}.kinds"),
                        format!("Pod named with other kinds in one description, {whole}"),
                    ));
                }
            }
        }
    }
    None
}

/// Kyverno's `CanAutoGen` over all rules of the policy.
fn can_auto_gen(rules: &[Value]) -> bool {
    let mut needed = false;
    for rule in rules {
        if rule::has_generate(rule) || rule::has_json6902(rule) {
            return false;
        }
        let descriptions = rule::resource_descriptions(rule.get("match"))
            .chain(rule::resource_descriptions(non_null(rule.get("exclude"))));
        for description in descriptions {
            if !supports_autogen(description, &mut needed) {
                return false;
            }
        }
    }
    needed
}

/// Kyverno's `checkAutogenSupport` for one resource description.
fn supports_autogen(description: Option<&Value>, needed: &mut bool) -> bool {
    let field = |k: &str| description.and_then(|d| non_null(d.get(k)));
    let has_name = field("name")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let has_names = field("names")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let kinds = kinds::kinds_of(description);
    let mixes_pod = kinds.len() > 1 && contains_kind(&kinds, "Pod");
    if has_name || has_names || field("selector").is_some() || field("annotations").is_some() {
        return false;
    }
    if mixes_pod {
        return false;
    }
    // Exact strings here (unlike contains_kind): `v1/Pod` alone does not make autogen needed.
    *needed = *needed
        || kinds
            .iter()
            .any(|k| *k == "Pod" || *k == CRON_JOB || POD_CONTROLLERS_BUT_CRON_JOB.contains(k));
    true
}

/// `Some` only for a present, non-null value (Go's nil pointer/map test on decoded JSON).
fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests;
