//! Textual rewrites Kyverno applies to generated rules: the `request.object.spec` path
//! replacement over the whole rule, and the shift of `$(…)` references in messages.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

/// Where the pod template sits in the controller the generated rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `spec.template` (Deployment, DaemonSet, Job, …).
    PodTemplate,
    /// `spec.jobTemplate.spec.template` (CronJob).
    CronJobTemplate,
}

const POD_JMESPATH: [(&str, &str); 4] = [
    ("request.object.spec", "request.object.spec.template.spec"),
    (
        "request.oldObject.spec",
        "request.oldObject.spec.template.spec",
    ),
    (
        "request.object.metadata",
        "request.object.spec.template.metadata",
    ),
    (
        "request.oldObject.metadata",
        "request.oldObject.spec.template.metadata",
    ),
];

const POD_CEL: [(&str, &str); 4] = [
    ("object.spec", "object.spec.template.spec"),
    ("oldObject.spec", "oldObject.spec.template.spec"),
    ("object.metadata", "object.spec.template.metadata"),
    ("oldObject.metadata", "oldObject.spec.template.metadata"),
];

const CRON_JOB_JMESPATH: [(&str, &str); 4] = [
    (
        "request.object.spec",
        "request.object.spec.jobTemplate.spec.template.spec",
    ),
    (
        "request.oldObject.spec",
        "request.oldObject.spec.jobTemplate.spec.template.spec",
    ),
    (
        "request.object.metadata",
        "request.object.spec.jobTemplate.spec.template.metadata",
    ),
    (
        "request.oldObject.metadata",
        "request.oldObject.spec.jobTemplate.spec.template.metadata",
    ),
];

const CRON_JOB_CEL: [(&str, &str); 4] = [
    ("object.spec", "object.spec.jobTemplate.spec.template.spec"),
    (
        "oldObject.spec",
        "oldObject.spec.jobTemplate.spec.template.spec",
    ),
    (
        "object.metadata",
        "object.spec.jobTemplate.spec.template.metadata",
    ),
    (
        "oldObject.metadata",
        "oldObject.spec.jobTemplate.spec.template.metadata",
    ),
];

/// Kyverno rewrites the serialized rule bytes. None of the searched texts can span JSON syntax,
/// so rewriting every string and every object key is the same operation.
pub(crate) fn rewrite_paths(rule: Value, target: Target, cel: bool) -> Value {
    let table: &[(&str, &str)] = match (target, cel) {
        (Target::PodTemplate, false) => &POD_JMESPATH,
        (Target::PodTemplate, true) => &POD_CEL,
        (Target::CronJobTemplate, false) => &CRON_JOB_JMESPATH,
        (Target::CronJobTemplate, true) => &CRON_JOB_CEL,
    };
    rewrite_value(rule, table)
}

fn rewrite_value(value: Value, table: &[(&str, &str)]) -> Value {
    match value {
        Value::String(s) => Value::String(rewrite_str(s, table)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| rewrite_value(v, table)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (rewrite_str(k, table), rewrite_value(v, table)))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

/// Each replacement runs over the output of the previous one, as Kyverno's sequence of
/// `bytes.ReplaceAll` does.
fn rewrite_str(mut s: String, table: &[(&str, &str)]) -> String {
    for (from, to) in table {
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    s
}

/// `$(…)` at the start of the text, or after any character but a backslash (which escapes it).
static REFERENCE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\$\(.[^ ]*\)|[^\\]\$\(.[^ ]*\)").ok());

/// Kyverno's `FindAndShiftReferences`: inside each `$(…)` reference of `message`, every
/// occurrence of `pivot` becomes `pivot/shift` (for `anyPattern`, the pivot grows to
/// `anyPattern/<index>` and keeps growing across references, as Kyverno's does).
pub(crate) fn shift_references(message: &str, shift: &str, pivot: &str) -> String {
    let Some(re) = REFERENCE.as_ref() else {
        return message.to_string();
    };
    let mut pivot = pivot.to_string();
    let mut value = message.to_string();
    for found in re.find_iter(message) {
        let old_reference = found.as_str();
        let initial = old_reference.starts_with("$(");
        // A match that is not at the start carries the character before `$(`.
        let (prefix, reference) = if initial {
            ("", old_reference)
        } else {
            let cut = old_reference
                .char_indices()
                .nth(1)
                .map_or(old_reference.len(), |(i, _)| i);
            old_reference.split_at(cut)
        };
        if pivot == "anyPattern" {
            // Kyverno reads the index after `anyPattern/`, from where it expects the pivot.
            // A missing pivot counts as index -1, so reading starts at `pivot.len()`.
            let start = reference
                .find(&pivot)
                .map_or(pivot.len(), |i| i + pivot.len() + 1);
            let rule_index = reference
                .get(start..)
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default();
            pivot = format!("{pivot}/{rule_index}");
        }
        let shifted = reference.replace(&pivot, &format!("{pivot}/{shift}"));
        value = value.replacen(old_reference, &format!("{prefix}{shifted}"), 1);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jmespath_paths_point_into_the_pod_template() {
        let cases = [
            (
                "request.object.spec",
                Target::PodTemplate,
                "request.object.spec.template.spec",
            ),
            (
                "request.oldObject.spec",
                Target::PodTemplate,
                "request.oldObject.spec.template.spec",
            ),
            (
                "request.object.metadata",
                Target::PodTemplate,
                "request.object.spec.template.metadata",
            ),
            (
                "request.oldObject.metadata",
                Target::PodTemplate,
                "request.oldObject.spec.template.metadata",
            ),
            (
                "request.object.spec",
                Target::CronJobTemplate,
                "request.object.spec.jobTemplate.spec.template.spec",
            ),
            (
                "request.oldObject.spec",
                Target::CronJobTemplate,
                "request.oldObject.spec.jobTemplate.spec.template.spec",
            ),
            (
                "request.object.metadata",
                Target::CronJobTemplate,
                "request.object.spec.jobTemplate.spec.template.metadata",
            ),
            (
                "{{ request.object.metadata.labels.app }}",
                Target::PodTemplate,
                "{{ request.object.spec.template.metadata.labels.app }}",
            ),
            // Not a request path: untouched by the JMESPath table.
            (
                "object.spec.containers",
                Target::PodTemplate,
                "object.spec.containers",
            ),
        ];
        for (input, target, want) in cases {
            assert_eq!(
                rewrite_paths(json!(input), target, false),
                json!(want),
                "{input}"
            );
        }
    }

    #[test]
    fn cel_paths_point_into_the_pod_template() {
        let cases = [
            (
                "object.spec",
                Target::PodTemplate,
                "object.spec.template.spec",
            ),
            (
                "oldObject.spec",
                Target::PodTemplate,
                "oldObject.spec.template.spec",
            ),
            (
                "object.metadata",
                Target::PodTemplate,
                "object.spec.template.metadata",
            ),
            (
                "oldObject.metadata",
                Target::PodTemplate,
                "oldObject.spec.template.metadata",
            ),
            (
                "object.spec",
                Target::CronJobTemplate,
                "object.spec.jobTemplate.spec.template.spec",
            ),
            (
                "oldObject.spec",
                Target::CronJobTemplate,
                "oldObject.spec.jobTemplate.spec.template.spec",
            ),
            (
                "request.object.spec.x",
                Target::PodTemplate,
                "request.object.spec.template.spec.x",
            ),
            (
                "!has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.hostPath))",
                Target::PodTemplate,
                "!has(object.spec.template.spec.volumes) || object.spec.template.spec.volumes.all(v, !has(v.hostPath))",
            ),
        ];
        for (input, target, want) in cases {
            assert_eq!(
                rewrite_paths(json!(input), target, true),
                json!(want),
                "{input}"
            );
        }
    }

    #[test]
    fn rewrite_reaches_keys_and_nested_values() {
        let got = rewrite_paths(
            json!({"a": [{"request.object.metadata.name": "x"}, "request.object.spec.y"], "n": 1}),
            Target::PodTemplate,
            false,
        );
        assert_eq!(
            got,
            json!({"a": [{"request.object.spec.template.metadata.name": "x"}, "request.object.spec.template.spec.y"], "n": 1})
        );
    }

    #[test]
    fn message_references_shift_after_the_pivot() {
        let cases = [
            ("plain message", "spec/template", "pattern", "plain message"),
            (
                "$(./../../pattern/spec/containers/0/name) is bad",
                "spec/template",
                "pattern",
                "$(./../../pattern/spec/template/spec/containers/0/name) is bad",
            ),
            (
                "image $(./../../pattern/spec/containers/0/image) is bad",
                "spec/template",
                "pattern",
                "image $(./../../pattern/spec/template/spec/containers/0/image) is bad",
            ),
            // An escaped reference is left alone.
            (
                "x \\$(./../../pattern/spec/a)",
                "spec/template",
                "pattern",
                "x \\$(./../../pattern/spec/a)",
            ),
            (
                "$(./../../anyPattern/0/spec/a)",
                "spec/template",
                "anyPattern",
                "$(./../../anyPattern/0/spec/template/spec/a)",
            ),
            // The CronJob rule is shifted again, on top of the first shift.
            (
                "$(./../../pattern/spec/template/spec/a)",
                "spec/jobTemplate/spec/template",
                "pattern",
                "$(./../../pattern/spec/jobTemplate/spec/template/spec/template/spec/a)",
            ),
        ];
        for (message, shift, pivot, want) in cases {
            assert_eq!(shift_references(message, shift, pivot), want, "{message}");
        }
    }

    #[test]
    fn short_reference_without_pivot_does_not_panic() {
        assert_eq!(
            shift_references("$(a)", "spec/template", "anyPattern"),
            "$(a)"
        );
    }
}
