//! Kyverno's exclusion algorithm (`ApplyPodSecurityExclusion` / `exemptExclusions` in
//! `pkg/pss/evaluate.go`), kept bug-for-bug: decisions depend on its quirks.
//!
//! An exclude evaluates a second pod (one dummy container without `images`, only the
//! matching containers with `images`) and removes from the original results the field errors
//! that the second evaluation also reports for the excluded control, compared by field path
//! with indexes replaced by `*` (and, for container fields, by container name).

use serde_json::{Value, json};

use super::checks::{ContainerKind, PodView};
use super::{BadValue, Exclude, FieldError, Finding, Level, Version, control_ids, run_checks_of};

/// Apply `excludes` one after another to `findings`, evaluated against `pod`.
pub(crate) fn apply(
    level: Level,
    version: Version,
    excludes: &[Exclude],
    mut findings: Vec<Finding>,
    pod: &PodView<'_>,
) -> Vec<Finding> {
    // The dummy container of pod-level exclusions (`{Name: "fake"}` upstream).
    let fake = json!({"name": "fake"});
    for exclude in excludes {
        // Only the excluded control's findings are read (see `exempt`).
        let only = Some(control_ids(&exclude.control_name));
        if exclude.images.is_empty() {
            let mut pod_only = pod.clone();
            pod_only.containers = vec![&fake];
            pod_only.init_containers = Vec::new();
            pod_only.ephemeral_containers = Vec::new();
            let excluded = run_checks_of(level, version, &pod_only, only);
            findings = exempt(findings, &excluded, exclude, pod, None);
        } else {
            let matching = matching_pod(pod, &exclude.images);
            let excluded = run_checks_of(level, version, &matching, only);
            findings = exempt(findings, &excluded, exclude, pod, Some(&matching));
        }
    }
    findings
}

/// The pod Kyverno builds for an exclusion with images: no metadata besides name and
/// namespace, no pod-level fields, only the containers whose image matches.
fn matching_pod<'a>(pod: &PodView<'a>, images: &[String]) -> PodView<'a> {
    let select = |list: &[&'a Value]| -> Vec<&'a Value> {
        list.iter()
            .copied()
            .filter(|c| {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                images.iter().any(|p| crate::wildcard::matches(p, image))
            })
            .collect()
    };
    PodView {
        annotations: Vec::new(),
        spec: None,
        init_containers: select(&pod.init_containers),
        containers: select(&pod.containers),
        ephemeral_containers: select(&pod.ephemeral_containers),
    }
}

/// A field path read the way `parseField` reads it.
struct ParsedField {
    /// The path with every run of digits replaced by `*`.
    field: String,
    /// The name of the container the path points into, when it is a container field.
    container: Option<String>,
}

/// `parseField` + `getContainerInfo` for container-level exclusions; plain index
/// replacement otherwise.
fn parse(field: &str, container_level: bool, pod: &PodView<'_>) -> ParsedField {
    let replaced = replace_digits(field);
    if !container_level {
        return ParsedField {
            field: replaced,
            container: None,
        };
    }
    // The second alphabetic word names the container list (`spec.containers[0]...`).
    let kind = alpha_words(field)
        .nth(1)
        .and_then(ContainerKind::from_field);
    let index = first_number(field);
    let container = match (kind, index) {
        (Some(kind), Some(index)) => Some(
            pod.containers_of(kind)
                .get(index)
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        _ => None,
    };
    ParsedField {
        field: replaced,
        container,
    }
}

fn replace_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('*');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(ch);
        }
    }
    out
}

fn alpha_words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
}

fn first_number(s: &str) -> Option<usize> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let rest = s.get(start..)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

/// `extractBadValues`: the values a `values` list must cover.
fn bad_values(error: &FieldError) -> Vec<String> {
    match &error.bad_value {
        BadValue::Empty => Vec::new(),
        BadValue::String(s) if s.is_empty() => Vec::new(),
        BadValue::String(s) => vec![s.clone()],
        BadValue::Bool(b) => vec![b.to_string()],
        BadValue::Int(i) => vec![i.to_string()],
        BadValue::List(items) => items.clone(),
    }
}

/// `exemptExclusions`. Results are keyed by check ID, so duplicate IDs (several check
/// versions failing) collapse to the last one, as Go's map does.
fn exempt(
    findings: Vec<Finding>,
    excluded: &[Finding],
    exclude: &Exclude,
    pod: &PodView<'_>,
    matching: Option<&PodView<'_>>,
) -> Vec<Finding> {
    let mut by_id: Vec<Finding> = Vec::new();
    for finding in findings {
        match by_id.iter_mut().find(|f| f.id == finding.id) {
            Some(slot) => *slot = finding,
            None => by_id.push(finding),
        }
    }
    let ids = control_ids(&exclude.control_name);
    let container_level = matching.is_some();
    for excluded_result in excluded.iter().filter(|r| ids.contains(&r.id)) {
        for excluded_error in &excluded_result.errors {
            let ex = parse(
                &excluded_error.field,
                container_level,
                matching.unwrap_or(pod),
            );
            let field_selected = exclude.restricted_field.is_none()
                || exclude.restricted_field.as_deref() == Some(&ex.field);
            if !field_selected {
                continue;
            }
            let values_cover = exclude.values.is_empty()
                || bad_values(excluded_error).iter().all(|v| {
                    exclude
                        .values
                        .iter()
                        .any(|p| crate::wildcard::matches(p, v))
                });
            if !values_cover {
                continue;
            }
            let Some(pos) = by_id.iter().position(|f| f.id == excluded_result.id) else {
                continue;
            };
            let Some(target) = by_id.get_mut(pos) else {
                continue;
            };
            let hit = target.errors.iter().position(|e| {
                let def = parse(&e.field, container_level, pod);
                match &def.container {
                    Some(name) => {
                        def.field == ex.field && ex.container.as_deref().unwrap_or("") == name
                    }
                    None => def.field == ex.field,
                }
            });
            if let Some(i) = hit {
                // Go's `remove` moves the last error into the gap.
                target.errors.swap_remove(i);
            }
            if target.errors.is_empty() {
                by_id.remove(pos);
            }
        }
    }
    by_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_become_stars_and_container_names_resolve() {
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let pod = PodView::new(None, Some(&spec));
        let parsed = parse("spec.containers[1].ports[0].hostPort", true, &pod);
        assert_eq!(parsed.field, "spec.containers[*].ports[*].hostPort");
        assert_eq!(parsed.container.as_deref(), Some("b"));
        let pod_field = parse("spec.securityContext.runAsUser", true, &pod);
        assert_eq!(pod_field.container, None);
        // Paths rewritten for controllers are no longer read as container fields.
        let controller = parse("spec.template.spec.containers[0].x", true, &pod);
        assert_eq!(controller.container, None);
    }

    #[test]
    fn bad_values_follow_go_types() {
        let e = |bad_value| FieldError {
            kind: super::super::FieldErrorKind::Forbidden,
            field: String::new(),
            bad_value,
        };
        assert!(bad_values(&e(BadValue::String(String::new()))).is_empty());
        assert_eq!(bad_values(&e(BadValue::Int(80))), vec!["80"]);
        assert_eq!(bad_values(&e(BadValue::Bool(true))), vec!["true"]);
        assert_eq!(
            bad_values(&e(BadValue::List(vec!["A".into(), "B".into()]))),
            vec!["A", "B"]
        );
    }
}
