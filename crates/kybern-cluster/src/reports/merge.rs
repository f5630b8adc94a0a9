//! One report per resource holds results from two writers: the background scan (the reports
//! controller) and admission (every `serve --cluster` replica, for policies that do not run in
//! the background). Each result says which in `properties.process`, as Kyverno's do; each writer
//! replaces only its own part and keeps the other's.

use kybern_engine::report::Summary;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// `properties.process` of a result written by the background scan.
pub const BACKGROUND_SCAN: &str = "background scan";
/// `properties.process` of a result written at admission.
pub const ADMISSION_REVIEW: &str = "admission review";

/// Marks a result with the process that produced it.
pub fn mark(result: &mut Map<String, Value>, process: &str) {
    let properties = result
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(p) = properties.as_object_mut() {
        p.insert("process".into(), json!(process));
    }
}

fn process(result: &Value) -> Option<&str> {
    result
        .pointer("/properties/process")
        .and_then(Value::as_str)
}

fn policy(result: &Value) -> &str {
    result
        .get("policy")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// What a write replaces in a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// The background results, all of them. Admission results stay when their policy is still
    /// among `admission_policies` (a policy removed, or now run in the background, takes its
    /// admission results with it).
    Background {
        admission_policies: Arc<BTreeSet<String>>,
    },
    /// The admission results of `policies` (those evaluated by the request); the rest stay,
    /// except admission results of policies no longer among `known`.
    Admission {
        policies: BTreeSet<String>,
        known: Arc<BTreeSet<String>>,
    },
}

/// The results of a report after a write of `incoming` for `part` over `existing`.
pub fn merge(existing: &[Value], incoming: &[Value], part: &Part) -> Vec<Value> {
    let keep = |r: &&Value| match part {
        Part::Background { admission_policies } => {
            process(r) == Some(ADMISSION_REVIEW) && admission_policies.contains(policy(r))
        }
        Part::Admission { policies, known } => {
            if process(r) == Some(ADMISSION_REVIEW) {
                !policies.contains(policy(r)) && known.contains(policy(r))
            } else {
                true
            }
        }
    };
    let mut results: Vec<Value> = existing.iter().filter(keep).cloned().collect();
    results.extend(incoming.iter().cloned());
    results.sort_by(|a, b| {
        (policy(a), a.get("rule").and_then(Value::as_str))
            .cmp(&(policy(b), b.get("rule").and_then(Value::as_str)))
    });
    results
}

/// The `summary` of `results`.
pub fn summary(results: &[Value]) -> Value {
    let mut s = Summary::default();
    for r in results {
        if let Some(word) = r.get("result").and_then(Value::as_str) {
            s.count(word);
        }
    }
    s.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(policy: &str, rule: &str, word: &str, process: &str) -> Value {
        let mut m = Map::new();
        m.insert("policy".into(), json!(policy));
        m.insert("rule".into(), json!(rule));
        m.insert("result".into(), json!(word));
        mark(&mut m, process);
        Value::Object(m)
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_background_write_replaces_background_results_and_keeps_admission_ones_of_live_policies() {
        let existing = vec![
            result("bg", "r", "fail", BACKGROUND_SCAN),
            result("adm", "r", "fail", ADMISSION_REVIEW),
            result("removed", "r", "fail", ADMISSION_REVIEW),
        ];
        let incoming = vec![result("bg", "r", "pass", BACKGROUND_SCAN)];
        let merged = merge(
            &existing,
            &incoming,
            &Part::Background {
                admission_policies: Arc::new(set(&["adm"])),
            },
        );
        assert_eq!(
            merged,
            vec![
                result("adm", "r", "fail", ADMISSION_REVIEW),
                result("bg", "r", "pass", BACKGROUND_SCAN),
            ]
        );
        assert_eq!(summary(&merged)["fail"], 1);
        assert_eq!(summary(&merged)["pass"], 1);
    }

    #[test]
    fn an_admission_write_replaces_its_policies_results_and_keeps_the_rest() {
        let existing = vec![
            result("bg", "r", "fail", BACKGROUND_SCAN),
            result("adm", "r", "fail", ADMISSION_REVIEW),
            result("other", "r", "pass", ADMISSION_REVIEW),
            result("gone", "r", "pass", ADMISSION_REVIEW),
        ];
        let incoming = vec![result("adm", "r", "pass", ADMISSION_REVIEW)];
        let merged = merge(
            &existing,
            &incoming,
            &Part::Admission {
                policies: set(&["adm"]),
                known: Arc::new(set(&["adm", "other", "bg"])),
            },
        );
        assert_eq!(
            merged,
            vec![
                result("adm", "r", "pass", ADMISSION_REVIEW),
                result("bg", "r", "fail", BACKGROUND_SCAN),
                result("other", "r", "pass", ADMISSION_REVIEW),
            ]
        );
    }

    #[test]
    fn an_admission_write_without_results_removes_its_policies_old_ones() {
        let existing = vec![result("adm", "r", "fail", ADMISSION_REVIEW)];
        let merged = merge(
            &existing,
            &[],
            &Part::Admission {
                policies: set(&["adm"]),
                known: Arc::new(set(&["adm"])),
            },
        );
        assert!(merged.is_empty());
    }
}
