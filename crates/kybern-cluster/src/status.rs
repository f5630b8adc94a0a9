//! Policy status as Kyverno writes it, so `kubectl get cpol` and tools waiting on readiness see
//! the same fields: `status.conditions[Ready]` and `status.rulecount` on ClusterPolicy/Policy,
//! `status.conditionStatus` on the policies.kyverno.io kinds. Built purely here; the leader
//! writes them (only when they differ).

use serde_json::{Value, json};

/// What kybern knows about one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyState<'a> {
    /// The load error with its field path, when the policy does not compile.
    pub error: Option<&'a str>,
    /// Its webhook rules are in place.
    pub configured: bool,
}

/// True for kinds whose status kybern writes (the ones admission serves).
pub fn has_status(doc: &Value) -> bool {
    let group = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|a| a.split_once('/'))
        .map_or("", |(g, _)| g);
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    matches!(
        (group, kind),
        ("kyverno.io", "ClusterPolicy" | "Policy")
            | (
                "policies.kyverno.io",
                "ValidatingPolicy"
                    | "NamespacedValidatingPolicy"
                    | "MutatingPolicy"
                    | "NamespacedMutatingPolicy"
                    | "ImageValidatingPolicy"
                    | "NamespacedImageValidatingPolicy"
            )
    )
}

fn rule_count(doc: &Value) -> Value {
    let rules = doc
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let count = |key: &str| rules.iter().filter(|r| r.get(key).is_some()).count();
    json!({
        "validate": count("validate"),
        "mutate": count("mutate"),
        "generate": count("generate"),
        "verifyimages": count("verifyImages"),
    })
}

/// The condition type the background controller owns (admission's status keeps it as it is).
pub const BACKGROUND_PERMISSIONS: &str = "BackgroundPermissions";

/// The status `doc` should have, without timestamps (see [`with_times`]). Conditions of types
/// admission does not write (the background controller's) are kept as they are.
pub fn desired(doc: &Value, state: &PolicyState<'_>) -> Value {
    let mut out = admission_status(doc, state);
    let own: Vec<Value> = conditions(&out)
        .iter()
        .filter_map(|c| c.get("type").cloned())
        .collect();
    let foreign: Vec<Value> = doc
        .get("status")
        .map(conditions)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.get("type").is_some_and(|t| !own.contains(t)))
        .collect();
    if let Some(cs) = conditions_mut(&mut out) {
        cs.extend(foreign);
    }
    out
}

/// The merge patch that sets one condition of the background controller on `doc`'s status,
/// keeping its other conditions; `None` when the live status already says it (transition
/// times aside).
pub fn background_condition_patch(doc: &Value, condition: Value, now: &str) -> Option<Value> {
    let kind = condition.get("type").cloned();
    let live = doc.get("status");
    let mut list: Vec<Value> = live.map(conditions).unwrap_or_default();
    let at = list.iter().position(|c| c.get("type") == kind.as_ref());
    if let Some(i) = at
        && let Some(existing) = list.get(i)
    {
        let same = |k: &str| existing.get(k) == condition.get(k);
        if same("status") && same("reason") && same("message") {
            return None;
        }
    }
    let mut condition = condition;
    let kept = at
        .and_then(|i| list.get(i))
        .filter(|c| c.get("status") == condition.get("status"))
        .and_then(|c| c.get("lastTransitionTime"))
        .cloned();
    condition["lastTransitionTime"] = kept.unwrap_or_else(|| Value::String(now.to_string()));
    match at {
        Some(i) => list[i] = condition,
        None => list.push(condition),
    }
    let cel = live.is_some_and(|s| s.get("conditionStatus").is_some())
        || !doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("kyverno.io/"));
    Some(if cel {
        json!({"status": {"conditionStatus": {"conditions": list}}})
    } else {
        json!({"status": {"conditions": list}})
    })
}

fn admission_status(doc: &Value, state: &PolicyState<'_>) -> Value {
    let ready = state.error.is_none();
    let message = match state.error {
        Some(e) => e.to_string(),
        None if state.configured => "Ready".to_string(),
        None => "Ready (no admission webhook rules: nothing it matches is sent to admission)"
            .to_string(),
    };
    let kyverno = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|a| a.starts_with("kyverno.io/"));
    if kyverno {
        json!({
            "ready": ready,
            "conditions": [{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "reason": if ready { "Succeeded" } else { "Failed" },
                "message": message,
            }],
            "rulecount": rule_count(doc),
        })
    } else {
        json!({
            "conditionStatus": {
                "ready": ready,
                "conditions": [{
                    "type": "WebhookConfigured",
                    "status": if ready { "True" } else { "False" },
                    "reason": if ready { "Succeeded" } else { "Failed" },
                    "message": if ready { "Webhook configured." .to_string() } else { message },
                }],
            }
        })
    }
}

fn conditions_mut(status: &mut Value) -> Option<&mut Vec<Value>> {
    if status.get("conditions").is_some() {
        status.get_mut("conditions")?.as_array_mut()
    } else {
        status
            .pointer_mut("/conditionStatus/conditions")?
            .as_array_mut()
    }
}

fn conditions(status: &Value) -> Vec<Value> {
    status
        .get("conditions")
        .or_else(|| status.pointer("/conditionStatus/conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// True when `live` already says what `wanted` says (transition times aside).
pub fn up_to_date(live: Option<&Value>, wanted: &Value) -> bool {
    let Some(live) = live else { return false };
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = conditions_mut(&mut v) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    crate::webhooks::up_to_date(&strip(live), &strip(wanted))
}

/// `wanted` with `lastTransitionTime` set: kept from `live` where the condition's status did
/// not change, `now` where it did.
pub fn with_times(live: Option<&Value>, mut wanted: Value, now: &str) -> Value {
    let before = live.map(conditions).unwrap_or_default();
    if let Some(cs) = conditions_mut(&mut wanted) {
        for c in cs {
            let kept = before
                .iter()
                .find(|b| b.get("type") == c.get("type") && b.get("status") == c.get("status"))
                .and_then(|b| b.get("lastTransitionTime"))
                .cloned();
            c["lastTransitionTime"] = kept.unwrap_or_else(|| Value::String(now.to_string()));
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpol() -> Value {
        json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
            "spec": {"rules": [{"name": "a", "validate": {}}, {"name": "b", "mutate": {}}]}})
    }

    #[test]
    fn a_compiled_policy_is_ready_with_its_rule_counts() {
        let s = desired(
            &cpol(),
            &PolicyState {
                error: None,
                configured: true,
            },
        );
        assert_eq!(s["conditions"][0]["status"], "True");
        assert_eq!(s["conditions"][0]["reason"], "Succeeded");
        assert_eq!(s["rulecount"]["validate"], 1);
        assert_eq!(s["rulecount"]["mutate"], 1);
        assert_eq!(s["ready"], true);
    }

    #[test]
    fn a_broken_policy_reports_its_error() {
        let s = desired(
            &cpol(),
            &PolicyState {
                error: Some("spec.rules[0].validate: bad"),
                configured: false,
            },
        );
        assert_eq!(s["conditions"][0]["status"], "False");
        assert_eq!(s["conditions"][0]["message"], "spec.rules[0].validate: bad");
    }

    #[test]
    fn cel_kinds_get_condition_status() {
        let vpol = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy"});
        let s = desired(
            &vpol,
            &PolicyState {
                error: None,
                configured: true,
            },
        );
        assert_eq!(s["conditionStatus"]["ready"], true);
        assert_eq!(
            s["conditionStatus"]["conditions"][0]["type"],
            "WebhookConfigured"
        );
        assert!(has_status(&vpol));
        assert!(!has_status(
            &json!({"apiVersion": "policies.kyverno.io/v1", "kind": "GeneratingPolicy"})
        ));
    }

    #[test]
    fn admission_keeps_the_background_condition_and_the_background_keeps_admissions() {
        let ok = PolicyState {
            error: None,
            configured: true,
        };
        let mut doc = cpol();
        doc["status"] = with_times(None, desired(&doc, &ok), "T1");
        let denied = json!({"type": BACKGROUND_PERMISSIONS, "status": "False",
            "reason": "Forbidden", "message": "may not create networkpolicies"});
        let patch = background_condition_patch(&doc, denied.clone(), "T2").unwrap();
        let list = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["type"], "Ready");
        assert_eq!(list[1]["lastTransitionTime"], "T2");
        doc["status"]["conditions"] = patch["status"]["conditions"].clone();
        // Said already: nothing to write; admission's status now includes it as it is.
        assert!(background_condition_patch(&doc, denied, "T3").is_none());
        let wanted = desired(&doc, &ok);
        assert!(up_to_date(doc.get("status"), &wanted));
        assert_eq!(wanted["conditions"][1]["reason"], "Forbidden");
        // CEL kinds keep theirs under conditionStatus.
        let mpol = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "MutatingPolicy"});
        let granted = json!({"type": BACKGROUND_PERMISSIONS, "status": "True",
            "reason": "Granted", "message": "ok"});
        let patch = background_condition_patch(&mpol, granted, "T1").unwrap();
        assert_eq!(
            patch["status"]["conditionStatus"]["conditions"][0]["reason"],
            "Granted"
        );
    }

    #[test]
    fn transition_times_are_kept_until_the_status_changes() {
        let ok = desired(
            &cpol(),
            &PolicyState {
                error: None,
                configured: true,
            },
        );
        let first = with_times(None, ok.clone(), "T1");
        assert!(up_to_date(Some(&first), &ok));
        let again = with_times(Some(&first), ok.clone(), "T2");
        assert_eq!(again["conditions"][0]["lastTransitionTime"], "T1");
        let broken = desired(
            &cpol(),
            &PolicyState {
                error: Some("x"),
                configured: false,
            },
        );
        assert!(!up_to_date(Some(&first), &broken));
        let changed = with_times(Some(&first), broken, "T3");
        assert_eq!(changed["conditions"][0]["lastTransitionTime"], "T3");
    }
}
