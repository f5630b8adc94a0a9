//! A rule's `match` and `exclude` as a ValidatingPolicy's `matchConstraints` (kinds,
//! operations, label selectors) and `matchConditions` (names, namespaces, annotations, labels
//! with wildcards, exclusions).

use super::cel_text::{lit, wildcard_regex};
use super::unsupported;
use crate::cel::match_constraints::{builtin_group, resource_for_kind};
use crate::matching::parse_kind;
use crate::wildcard;
use serde_json::{Map, Value, json};

/// What a rule's match and exclude became.
pub(super) struct Selection {
    pub constraints: Value,
    /// `matchConditions` entries.
    pub conditions: Vec<Value>,
}

/// The filters of a match/exclude block and whether all of them must hold.
fn filters<'a>(block: &'a Value, what: &str) -> Result<(Vec<&'a Value>, bool), String> {
    if let Some(any) = block.get("any").and_then(Value::as_array) {
        if block.get("all").is_some() {
            return unsupported(format!("{what} with both any and all is not converted"));
        }
        return Ok((any.iter().collect(), false));
    }
    if let Some(all) = block.get("all").and_then(Value::as_array) {
        return Ok((all.iter().collect(), true));
    }
    Ok((vec![block], false))
}

fn kinds(filter: &Value) -> Vec<&str> {
    filter
        .pointer("/resources/kinds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// One `resourceRules` entry per kind.
fn resource_rules(kinds: &[&str], operations: &Value) -> Result<Vec<Value>, String> {
    let mut rules = Vec::new();
    for kind in kinds {
        let sel = parse_kind(kind);
        if wildcard::contains_wildcard(sel.kind) {
            return unsupported(format!("the kind {kind:?} is not converted"));
        }
        // A kind without a group is matched in any group, as Kyverno matches it.
        let group = if sel.group != "*" {
            sel.group
        } else {
            builtin_group(sel.kind).unwrap_or("*")
        };
        let mut resource = resource_for_kind(group, sel.kind);
        if let Some(sub) = sel.subresource {
            resource = format!("{resource}/{sub}");
        }
        let version = if sel.version == "*" { "*" } else { sel.version };
        rules.push(json!({
            "apiGroups": [group],
            "apiVersions": [version],
            "operations": operations,
            "resources": [resource],
        }));
    }
    Ok(rules)
}

fn strings<'a>(v: Option<&'a Value>, path: &str) -> Result<Vec<&'a str>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .ok_or_else(|| format!("{path} holds a value that is not a string"))
            })
            .collect(),
        Some(_) => unsupported(format!("{path} is not a list")),
    }
}

/// CEL: `text` matches one of the wildcard patterns.
fn any_pattern(text: &str, patterns: &[&str]) -> String {
    let terms: Vec<String> = patterns
        .iter()
        .map(|p| {
            if wildcard::contains_wildcard(p) {
                format!("{text}.matches({})", lit(&wildcard_regex(p)))
            } else {
                format!("{text} == {}", lit(p))
            }
        })
        .collect();
    match terms.as_slice() {
        [] => "false".into(),
        [one] => one.clone(),
        _ => format!("({})", terms.join(" || ")),
    }
}

/// CEL: every entry of a wildcard map (`key: value` patterns) is matched by some entry of the
/// object's metadata map `field` (labels or annotations), as Kyverno matches them.
fn map_patterns(field: &str, patterns: &Map<String, Value>) -> Result<String, String> {
    let m = format!("object.metadata.{field}");
    let mut terms = Vec::new();
    for (k, v) in patterns {
        let Some(v) = v.as_str() else {
            return unsupported(format!("the {field} value of {k:?} is not a string"));
        };
        let key = any_pattern("k", &[k]);
        let value = any_pattern(&format!("{m}[k]"), &[v]);
        terms.push(format!("{m}.exists(k, {key} && {value})"));
    }
    Ok(format!(
        "(has(object.metadata.{field}) && {})",
        if terms.is_empty() {
            "true".to_string()
        } else {
            terms.join(" && ")
        }
    ))
}

/// A selector with only `matchLabels` as CEL over the object's labels (wildcards allowed).
fn selector_condition(sel: &Value) -> Result<String, String> {
    if sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return unsupported("a selector with matchExpressions here is not converted");
    }
    let labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    map_patterns("labels", &labels)
}

/// The CEL of a filter's constraints other than kinds and operations; `None` when it has none.
/// `match_kinds` stand for the filter's kinds when it names none (an exclude filter).
fn filter_condition(
    filter: &Value,
    what: &str,
    selectors_as_cel: bool,
    match_kinds: &[String],
) -> Result<Option<String>, String> {
    if ["subjects", "roles", "clusterRoles"]
        .iter()
        .any(|k| filter.get(k).is_some_and(|v| !v.is_null()))
    {
        return unsupported(format!(
            "{what} on subjects or roles is not converted (a ValidatingPolicy cannot read roles)"
        ));
    }
    let Some(res) = filter.get("resources").and_then(Value::as_object) else {
        return unsupported(format!(
            "a {what} filter without resources is not converted"
        ));
    };
    let mut terms = Vec::new();
    for (key, v) in res {
        match key.as_str() {
            "kinds" | "operations" => {}
            "names" | "name" => {
                let names: Vec<&str> = if key == "name" {
                    v.as_str().into_iter().collect()
                } else {
                    strings(Some(v), &format!("{what}.resources.names"))?
                };
                terms.push(any_pattern("request.name", &names));
            }
            "namespaces" => {
                let list = strings(Some(v), &format!("{what}.resources.namespaces"))?;
                let ks = kinds(filter);
                // Kyverno tests a Namespace's own name against `namespaces`.
                let namespace_kind = if ks.is_empty() {
                    match_kinds
                        .iter()
                        .any(|k| parse_kind(k).kind == "Namespace")
                } else {
                    ks.iter().any(|k| parse_kind(k).kind == "Namespace")
                };
                if namespace_kind {
                    return unsupported(format!(
                        "{what}.resources.namespaces on Namespaces (matched by name) is not converted"
                    ));
                }
                terms.push(any_pattern("request.namespace", &list));
            }
            "annotations" => match v.as_object() {
                Some(m) => terms.push(map_patterns("annotations", m)?),
                None => return unsupported(format!("{what}.resources.annotations is not a map")),
            },
            "selector" if selectors_as_cel => terms.push(selector_condition(v)?),
            "selector" | "namespaceSelector" => {}
            other => {
                return unsupported(format!("{what}.resources.{other} is not converted"));
            }
        }
    }
    Ok(if terms.is_empty() {
        None
    } else {
        Some(terms.join(" && "))
    })
}

/// True when a label selector uses Kyverno's wildcards in its values (Kubernetes has none).
fn selector_has_wildcards(sel: &Value) -> bool {
    let labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_some_and(|m| {
            m.iter().any(|(k, v)| {
                wildcard::contains_wildcard(k)
                    || v.as_str().is_some_and(wildcard::contains_wildcard)
            })
        });
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| {
            e.get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .any(|v| v.as_str().is_some_and(wildcard::contains_wildcard));
    labels || exprs
}

fn match_part(
    rule: &Value,
    sel: &mut Selection,
    all_kinds: &mut Vec<String>,
) -> Result<(), String> {
    let m = rule.get("match").unwrap_or(&Value::Null);
    let (list, all) = filters(m, "match")?;
    if all && list.len() > 1 {
        return unsupported("match.all with several filters is not converted");
    }
    let mut rules = Vec::new();
    let mut cond: Option<Option<String>> = None;
    for f in &list {
        let operations = f
            .pointer("/resources/operations")
            .cloned()
            .unwrap_or_else(|| json!(["CREATE", "UPDATE"]));
        let ks = kinds(f);
        rules.extend(resource_rules(&ks, &operations)?);
        all_kinds.extend(ks.iter().map(|k| k.to_string()));
        let c = filter_condition(f, "match", false, &[])?;
        match &cond {
            None => cond = Some(c),
            Some(prev) if *prev == c => {}
            Some(_) => {
                return unsupported(
                    "match filters with different names, namespaces or annotations are not converted",
                );
            }
        }
        for (key, field) in [
            ("selector", "objectSelector"),
            ("namespaceSelector", "namespaceSelector"),
        ] {
            if let Some(s) = f
                .pointer(&format!("/resources/{key}"))
                .filter(|v| !v.is_null())
            {
                if list.len() > 1 {
                    return unsupported(format!(
                        "match.resources.{key} in one of several filters is not converted"
                    ));
                }
                if selector_has_wildcards(s) {
                    return unsupported(format!(
                        "match.resources.{key} with wildcards is not converted"
                    ));
                }
                if let Value::Object(c) = &mut sel.constraints {
                    c.insert(field.into(), s.clone());
                }
            }
        }
    }
    if rules.is_empty() {
        return unsupported("match names no kinds");
    }
    if let Value::Object(c) = &mut sel.constraints {
        c.insert("resourceRules".into(), Value::Array(rules));
    }
    if let Some(Some(c)) = cond {
        sel.conditions
            .push(json!({"name": "match", "expression": c}));
    }
    Ok(())
}

fn exclude_part(rule: &Value, sel: &mut Selection, match_kinds: &[String]) -> Result<(), String> {
    let Some(x) = rule.get("exclude").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let (list, all) = filters(x, "exclude")?;
    let mut excluded_rules = Vec::new();
    let mut terms = Vec::new();
    for f in &list {
        let ks = kinds(f);
        // Kinds that cover every matched kind add nothing to the other constraints.
        let covers = ks.is_empty()
            || match_kinds.iter().all(|m| {
                ks.iter()
                    .any(|k| parse_kind(k).kind == parse_kind(m).kind && !k.contains('/'))
            });
        if f.pointer("/resources/operations").is_some() {
            return unsupported("exclude.resources.operations is not converted");
        }
        if f.pointer("/resources/namespaceSelector").is_some() {
            return unsupported("exclude.resources.namespaceSelector is not converted");
        }
        let c = filter_condition(f, "exclude", true, match_kinds)?;
        match (covers, c) {
            (true, Some(c)) => terms.push(c),
            (true, None) => terms.push("true".into()),
            (false, None) if !all => {
                excluded_rules.extend(resource_rules(&ks, &json!(["*"]))?);
            }
            _ => {
                return unsupported(
                    "an exclude filter naming some of the matched kinds with other constraints is not converted",
                );
            }
        }
    }
    if !excluded_rules.is_empty() {
        if all {
            return unsupported("exclude.all over kinds is not converted");
        }
        if let Value::Object(c) = &mut sel.constraints {
            c.insert("excludeResourceRules".into(), Value::Array(excluded_rules));
        }
    }
    if !terms.is_empty() {
        let op = if all { " && " } else { " || " };
        sel.conditions.push(json!({
            "name": "exclude",
            "expression": format!("!({})", terms.join(op)),
        }));
    }
    Ok(())
}

/// The rule's match and exclude blocks.
pub(super) fn selection(rule: &Value) -> Result<Selection, String> {
    let mut sel = Selection {
        constraints: json!({}),
        conditions: Vec::new(),
    };
    let mut match_kinds = Vec::new();
    match_part(rule, &mut sel, &mut match_kinds)?;
    exclude_part(rule, &mut sel, &match_kinds)?;
    Ok(sel)
}
