//! What `kybern fix policy` changes in one ClusterPolicy/Policy document, as `kyverno fix
//! policy` does: deprecated spellings rewritten to the current ones, with the same meaning.

use serde_json::{Map, Value};

/// The user-info fields that the old match/exclude syntax put beside `resources`.
const OLD_FILTER_KEYS: [&str; 4] = ["resources", "subjects", "roles", "clusterRoles"];

/// Operators Kyverno renamed, with their current names.
const OLD_OPERATORS: [(&str, &str); 4] = kybern_engine::lint::DEPRECATED_OPERATORS;

/// Whether the document is a Kyverno policy of the kinds `fix policy` rewrites.
pub fn is_policy(doc: &Value) -> bool {
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    api.starts_with("kyverno.io/") && matches!(kind, "ClusterPolicy" | "Policy")
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `Enforce`/`Audit` for any spelling of them Kyverno accepts.
fn canonical_action(action: &str) -> Option<&'static str> {
    if action.eq_ignore_ascii_case("enforce") {
        Some("Enforce")
    } else if action.eq_ignore_ascii_case("audit") {
        Some("Audit")
    } else {
        None
    }
}

fn fix_action(holder: &mut Map<String, Value>, key: &str, at: &str, messages: &mut Vec<String>) {
    let Some(Value::String(action)) = holder.get_mut(key) else {
        return;
    };
    if let Some(canonical) = canonical_action(action)
        && action != canonical
    {
        messages.push(format!(
            "{at} `{action}` is deprecated, setting `{canonical}`"
        ));
        *action = canonical.to_string();
    }
}

/// Moves `match.resources`/`subjects`/`roles`/`clusterRoles` into a new `any` entry.
fn fix_filter_block(
    rule: &mut Map<String, Value>,
    block: &str,
    at: &str,
    messages: &mut Vec<String>,
) {
    let Some(Value::Object(filter)) = rule.get_mut(block) else {
        return;
    };
    if !OLD_FILTER_KEYS.iter().any(|k| filter.contains_key(*k)) {
        return;
    }
    if filter.get("any").is_some_and(|a| !a.is_array()) {
        return;
    }
    let mut entry = Map::new();
    for key in OLD_FILTER_KEYS {
        if let Some(v) = filter.remove(key)
            && !is_empty(&v)
        {
            entry.insert(key.to_string(), v);
        }
    }
    if entry.is_empty() {
        messages.push(format!(
            "{at}.{block} has only empty old-syntax fields, removing them"
        ));
        return;
    }
    messages.push(format!("{at}.{block} uses old syntax, moving to any"));
    if let Value::Array(any) = filter
        .entry("any")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        any.push(Value::Object(entry));
    }
}

/// Drops `resources: {}` from the entries of `any`/`all`.
fn prune_filter_entries(rule: &mut Map<String, Value>, at: &str, messages: &mut Vec<String>) {
    for block in ["match", "exclude"] {
        let Some(Value::Object(filter)) = rule.get_mut(block) else {
            continue;
        };
        for list in ["any", "all"] {
            let Some(Value::Array(entries)) = filter.get_mut(list) else {
                continue;
            };
            for (i, entry) in entries.iter_mut().enumerate() {
                if let Value::Object(e) = entry
                    && e.get("resources").is_some_and(is_empty)
                {
                    e.remove("resources");
                    messages.push(format!(
                        "{at}.{block}.{list}[{i}] has empty resources, removing"
                    ));
                }
            }
        }
    }
    if rule.get("exclude").is_some_and(is_empty) {
        rule.remove("exclude");
        messages.push(format!("{at}.exclude is empty, removing"));
    }
}

fn fix_operators(conditions: &mut Value, at: &str, messages: &mut Vec<String>) {
    let Value::Object(blocks) = conditions else {
        return;
    };
    for list in ["any", "all"] {
        let Some(Value::Array(items)) = blocks.get_mut(list) else {
            continue;
        };
        for (i, c) in items.iter_mut().enumerate() {
            let Some(Value::String(op)) = c.get_mut("operator") else {
                continue;
            };
            if let Some((old, new)) = OLD_OPERATORS.iter().find(|(old, _)| op == old) {
                messages.push(format!(
                    "{at}.{list}[{i}] uses old operator `{old}`, updating to `{new}`"
                ));
                *op = (*new).to_string();
            }
        }
    }
}

fn fix_preconditions(rule: &mut Map<String, Value>, at: &str, messages: &mut Vec<String>) {
    let at = format!("{at}.preconditions");
    let Some(pre) = rule.get_mut("preconditions") else {
        return;
    };
    if let Value::Array(list) = pre {
        if list.is_empty() {
            rule.remove("preconditions");
            messages.push(format!("{at} is empty, removing"));
            return;
        }
        messages.push(format!("{at} is a bare list, moving it into `all`"));
        let list = std::mem::take(list);
        *pre = Value::Object(Map::from_iter([("all".to_string(), Value::Array(list))]));
    } else if pre.as_object().is_some_and(Map::is_empty) {
        rule.remove("preconditions");
        messages.push(format!("{at} is empty, removing"));
        return;
    }
    fix_operators(pre, &at, messages);
}

/// Empty `generate.clone`, `generate.cloneList` and `validate.manifests.dryRun` say nothing.
fn prune_empty_leaves(rule: &mut Map<String, Value>, at: &str, messages: &mut Vec<String>) {
    for path in [
        &["generate", "clone"][..],
        &["generate", "cloneList"],
        &["validate", "manifests", "dryRun"],
    ] {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut holder = Some(&mut *rule);
        for p in parents {
            holder = holder
                .and_then(|h| h.get_mut(*p))
                .and_then(Value::as_object_mut);
        }
        if let Some(h) = holder
            && h.get(*last)
                .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
        {
            h.remove(*last);
            messages.push(format!("{at}.{} is empty, removing", path.join(".")));
        }
    }
}

/// Rewrites one policy document in place; one message per change.
pub fn fix_policy(doc: &mut Value) -> Vec<String> {
    let mut messages = Vec::new();
    if !is_policy(doc) {
        return messages;
    }
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) else {
        return messages;
    };
    fix_action(
        spec,
        "validationFailureAction",
        "spec.validationFailureAction",
        &mut messages,
    );
    if let Some(Value::Array(overrides)) = spec.get_mut("validationFailureActionOverrides") {
        for (i, o) in overrides.iter_mut().enumerate() {
            if let Value::Object(o) = o {
                let at = format!("spec.validationFailureActionOverrides[{i}].action");
                fix_action(o, "action", &at, &mut messages);
            }
        }
    }
    let Some(Value::Array(rules)) = spec.get_mut("rules") else {
        return messages;
    };
    for (i, rule) in rules.iter_mut().enumerate() {
        let Value::Object(rule) = rule else {
            continue;
        };
        let name = rule.get("name").and_then(Value::as_str).unwrap_or("");
        let at = if name.is_empty() {
            format!("spec.rules[{i}]")
        } else {
            format!("rule {name}")
        };
        fix_filter_block(rule, "match", &at, &mut messages);
        fix_filter_block(rule, "exclude", &at, &mut messages);
        prune_filter_entries(rule, &at, &mut messages);
        fix_preconditions(rule, &at, &mut messages);
        prune_empty_leaves(rule, &at, &mut messages);
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(spec: Value) -> Value {
        json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn lowercase_failure_actions_are_capitalised() {
        let mut p = policy(json!({"validationFailureAction": "enforce",
            "validationFailureActionOverrides": [{"action": "audit", "namespaces": ["a"]}]}));
        let m = fix_policy(&mut p);
        assert_eq!(p["spec"]["validationFailureAction"], "Enforce");
        assert_eq!(
            p["spec"]["validationFailureActionOverrides"][0]["action"],
            "Audit"
        );
        assert_eq!(m.len(), 2, "{m:?}");
    }

    #[test]
    fn old_match_and_exclude_move_into_a_new_any_entry() {
        let mut p = policy(json!({"rules": [{"name": "r",
            "match": {"resources": {"kinds": ["Pod"]}, "subjects": [{"kind": "User", "name": "u"}], "roles": []},
            "exclude": {"resources": {"namespaces": ["kube-system"]}},
            "validate": {"pattern": {}}}]}));
        let m = fix_policy(&mut p);
        let rule = &p["spec"]["rules"][0];
        assert_eq!(
            rule["match"],
            json!({"any": [{"resources": {"kinds": ["Pod"]}, "subjects": [{"kind": "User", "name": "u"}]}]})
        );
        assert_eq!(
            rule["exclude"],
            json!({"any": [{"resources": {"namespaces": ["kube-system"]}}]})
        );
        assert_eq!(
            m,
            vec![
                "rule r.match uses old syntax, moving to any",
                "rule r.exclude uses old syntax, moving to any"
            ]
        );
    }

    #[test]
    fn bare_list_preconditions_become_all_and_old_operators_are_renamed() {
        let mut p = policy(
            json!({"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "preconditions": [{"key": "a", "operator": "Equal", "value": "b"}, {"key": "a", "operator": "NotIn", "value": ["b"]}]}]}),
        );
        let m = fix_policy(&mut p);
        assert_eq!(
            p["spec"]["rules"][0]["preconditions"],
            json!({"all": [
            {"key": "a", "operator": "Equals", "value": "b"}, {"key": "a", "operator": "AnyNotIn", "value": ["b"]}]})
        );
        assert_eq!(m.len(), 3, "{m:?}");
    }

    #[test]
    fn empty_blocks_are_pruned() {
        let mut p = policy(json!({"rules": [{"name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}], "all": [{"resources": {}, "subjects": [{"kind": "User", "name": "u"}]}]},
            "exclude": {}, "preconditions": {}, "generate": {"clone": {}, "data": {"x": 1}}}]}));
        let m = fix_policy(&mut p);
        let rule = &p["spec"]["rules"][0];
        assert_eq!(
            rule["match"]["all"],
            json!([{"subjects": [{"kind": "User", "name": "u"}]}])
        );
        assert!(rule.get("exclude").is_none() && rule.get("preconditions").is_none());
        assert_eq!(rule["generate"], json!({"data": {"x": 1}}));
        assert_eq!(m.len(), 4, "{m:?}");
    }

    #[test]
    fn current_policies_and_other_documents_are_not_touched() {
        let current = policy(
            json!({"validationFailureAction": "Audit", "rules": [{"name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "preconditions": {"all": [{"key": "a", "operator": "Equals", "value": "a"}]},
            "validate": {"pattern": {"metadata": {"labels": {"a": "?*"}}}}}]}),
        );
        for doc in [
            current,
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"rules": [{"preconditions": []}]}}),
        ] {
            let mut fixed = doc.clone();
            assert!(fix_policy(&mut fixed).is_empty());
            assert_eq!(fixed, doc);
        }
    }
}
