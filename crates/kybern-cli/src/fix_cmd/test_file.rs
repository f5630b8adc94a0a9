//! What `kybern fix test` changes in one kyverno-test.yaml document, as `kyverno fix test`
//! does: the `cli.kyverno.io/v1alpha1` Test shape, deprecated result fields moved to their
//! current place, duplicate resources dropped, rows sorted (and merged with `--compress`).

use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Fields that order result rows, as Kyverno sorts them; `resources` come last.
const SORT_FIELDS: [&str; 7] = [
    "policy",
    "rule",
    "result",
    "kind",
    "patchedResources",
    "generatedResource",
    "cloneSourceResource",
];

/// Whether the document is a Test (or an old test without `kind`).
pub fn is_test(doc: &Value) -> bool {
    doc.is_object()
        && doc
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(|k| k.is_empty() || k == "Test")
}

fn text<'a>(row: &'a Value, field: &str) -> &'a str {
    row.get(field).and_then(Value::as_str).unwrap_or("")
}

fn resources(row: &Value) -> Vec<&str> {
    row.get("resources")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn compare_rows(a: &Value, b: &Value) -> Ordering {
    for f in SORT_FIELDS {
        match text(a, f).cmp(text(b, f)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    let (ra, rb) = (resources(a), resources(b));
    ra.len().cmp(&rb.len()).then_with(|| ra.cmp(&rb))
}

fn set_field(map: &mut Map<String, Value>, key: &str, value: &str) -> bool {
    if map
        .get(key)
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty())
    {
        return false;
    }
    map.insert(key.to_string(), Value::from(value));
    true
}

/// Fixes one result row; an error for a row that cannot be fixed without guessing.
fn fix_row(
    row: &mut Map<String, Value>,
    at: &str,
    messages: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(single) = row.remove("resource") {
        let Value::String(single) = single else {
            return Err(format!("{at}.resource: expected a string"));
        };
        if row.contains_key("resources") {
            messages.push(format!("{at} uses both `resource` and `resources`"));
        }
        messages.push(format!(
            "{at} uses deprecated `resource`, moving it into `resources`"
        ));
        if let Value::Array(list) = row
            .entry("resources")
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(Value::String(single));
        }
    }
    if let Some(Value::Array(list)) = row.get_mut("resources") {
        let mut seen = Vec::with_capacity(list.len());
        let before = list.len();
        list.retain(|r| {
            let fresh = !seen.contains(r);
            if fresh {
                seen.push(r.clone());
            }
            fresh
        });
        if list.len() != before {
            messages.push(format!("{at} contains duplicate resources, removing them"));
        }
        let mut sorted = list.clone();
        sorted.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        if sorted != *list {
            messages.push(format!("{at} resources are not sorted, sorting them"));
            *list = sorted;
        }
    }
    if let Some(ns) = row
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        row.remove("namespace");
        if !ns.is_empty() {
            let policy = text(&Value::Object(row.clone()), "policy").to_string();
            messages.push(format!(
                "{at} uses deprecated `namespace`, writing the policy as `<namespace>/<name>`"
            ));
            row.insert("policy".into(), Value::from(format!("{ns}/{policy}")));
        } else {
            messages.push(format!("{at} has an empty `namespace`, removing it"));
        }
    }
    let status = row
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !status.is_empty() {
        if row
            .get("result")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            return Err(format!("{at} uses both `status` and `result`"));
        }
        messages.push(format!(
            "{at} uses deprecated `status`, moving it into `result`"
        ));
        row.remove("status");
        row.insert("result".into(), Value::String(status));
    }
    Ok(())
}

/// Merges rows that differ only by their resources. Rows without `resources` (which select
/// every resource) are kept apart, since merging them would narrow what they check.
fn compress(rows: Vec<Value>, messages: &mut Vec<String>) -> Vec<Value> {
    let mut out: Vec<(Option<String>, Value)> = Vec::new();
    let mut merged = 0;
    for row in rows {
        let key = match (&row, row.get("resources")) {
            (Value::Object(m), Some(Value::Array(_))) => {
                let mut rest = m.clone();
                rest.remove("resources");
                Some(Value::Object(rest).to_string())
            }
            _ => None,
        };
        let target = key
            .as_ref()
            .and_then(|k| out.iter_mut().find(|(ok, _)| ok.as_ref() == Some(k)));
        match target {
            Some((_, kept)) => {
                let more = row
                    .get("resources")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if let Some(Value::Array(list)) = kept.get_mut("resources") {
                    for r in more {
                        if !list.contains(&r) {
                            list.push(r);
                        }
                    }
                    list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
                merged += 1;
            }
            None => out.push((key, row)),
        }
    }
    if merged > 0 {
        messages.push(format!(
            "{merged} result(s) differing only by their resources merged into others"
        ));
    }
    out.into_iter().map(|(_, r)| r).collect()
}

/// Rewrites one test document in place. Returns one message per change or warning; an error
/// when the document contradicts itself.
pub fn fix_test(
    doc: &mut Value,
    default_name: &str,
    compress_rows: bool,
) -> Result<Vec<String>, String> {
    let mut messages = Vec::new();
    let Value::Object(test) = doc else {
        return Ok(messages);
    };
    if set_field(test, "apiVersion", "cli.kyverno.io/v1alpha1") {
        messages.push("api version is not set, setting `cli.kyverno.io/v1alpha1`".into());
    }
    if set_field(test, "kind", "Test") {
        messages.push("kind is not set, setting `Test`".into());
    }
    let old_name = test.remove("name");
    if !test.get("metadata").is_some_and(Value::is_object) {
        test.insert("metadata".into(), Value::Object(Map::new()));
    }
    if let Some(Value::Object(meta)) = test.get_mut("metadata") {
        match old_name {
            Some(Value::String(name)) if !name.is_empty() => {
                messages.push("name is deprecated, moving it into `metadata.name`".into());
                meta.insert("name".into(), Value::String(name));
            }
            Some(_) => messages.push("empty `name` removed".into()),
            None => {}
        }
        if set_field(meta, "name", default_name) {
            messages.push(format!("name is not set, naming the test `{default_name}`"));
        }
    }
    for (field, what) in [("policies", "policies"), ("resources", "resources")] {
        if test
            .get(field)
            .is_none_or(|v| v.as_array().is_none_or(Vec::is_empty))
        {
            messages.push(format!("test has no {what}"));
        }
    }
    let Some(Value::Array(rows)) = test.get_mut("results") else {
        return Ok(messages);
    };
    for (i, row) in rows.iter_mut().enumerate() {
        if let Value::Object(row) = row {
            fix_row(row, &format!("results[{i}]"), &mut messages)?;
        }
    }
    let mut fixed = std::mem::take(rows);
    if compress_rows {
        fixed = compress(fixed, &mut messages);
    }
    let mut sorted = fixed.clone();
    sorted.sort_by(compare_rows);
    if sorted != fixed {
        messages.push("results are not sorted, sorting them".into());
    }
    *rows = sorted;
    Ok(messages)
}

/// A values or user info file a test names: `apiVersion` and `kind` set when missing, as
/// `kyverno fix test` does for them.
pub fn fix_typed(doc: &mut Value, kind: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let Value::Object(map) = doc else {
        return messages;
    };
    if set_field(map, "apiVersion", "cli.kyverno.io/v1alpha1") {
        messages.push("api version is not set, setting `cli.kyverno.io/v1alpha1`".into());
    }
    if set_field(map, "kind", kind) {
        messages.push(format!("kind is not set, setting `{kind}`"));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_old_test_gets_the_current_shape() {
        let mut t = json!({"name": "old", "policies": ["p.yaml"], "resources": ["r.yaml"], "results": [
            {"policy": "p", "rule": "r", "resource": "b", "namespace": "ns", "status": "pass", "kind": "Pod"}]});
        let m = fix_test(&mut t, "dir", false).unwrap();
        assert_eq!(
            t,
            json!({"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test", "metadata": {"name": "old"},
            "policies": ["p.yaml"], "resources": ["r.yaml"], "results": [
            {"policy": "ns/p", "rule": "r", "resources": ["b"], "result": "pass", "kind": "Pod"}]})
        );
        assert_eq!(m.len(), 6, "{m:?}");
    }

    #[test]
    fn duplicates_are_dropped_rows_sorted_and_compressed_on_request() {
        let doc = json!({"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test", "metadata": {"name": "t"},
            "policies": ["p.yaml"], "resources": ["r.yaml"], "results": [
            {"policy": "p", "rule": "r2", "resources": ["a"], "result": "pass"},
            {"policy": "p", "rule": "r1", "resources": ["c", "b", "b"], "result": "pass"},
            {"policy": "p", "rule": "r1", "resources": ["a"], "result": "pass"},
            {"policy": "p", "rule": "r1", "result": "pass"}]});
        let mut plain = doc.clone();
        let m = fix_test(&mut plain, "dir", false).unwrap();
        assert_eq!(
            plain["results"],
            json!([
            {"policy": "p", "rule": "r1", "result": "pass"},
            {"policy": "p", "rule": "r1", "resources": ["a"], "result": "pass"},
            {"policy": "p", "rule": "r1", "resources": ["b", "c"], "result": "pass"},
            {"policy": "p", "rule": "r2", "resources": ["a"], "result": "pass"}])
        );
        assert_eq!(m.len(), 3, "{m:?}");
        let mut compressed = doc;
        fix_test(&mut compressed, "dir", true).unwrap();
        assert_eq!(
            compressed["results"],
            json!([
            {"policy": "p", "rule": "r1", "result": "pass"},
            {"policy": "p", "rule": "r1", "resources": ["a", "b", "c"], "result": "pass"},
            {"policy": "p", "rule": "r2", "resources": ["a"], "result": "pass"}])
        );
    }

    #[test]
    fn missing_inputs_and_names_are_reported() {
        let mut t = json!({"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test", "results": []});
        let m = fix_test(&mut t, "suite-dir", false).unwrap();
        assert_eq!(t["metadata"]["name"], "suite-dir");
        assert!(
            m.contains(&"test has no policies".to_string())
                && m.contains(&"test has no resources".to_string()),
            "{m:?}"
        );
    }

    #[test]
    fn values_and_user_info_files_get_their_type() {
        let mut v = json!({"globalValues": {"a": 1}});
        assert_eq!(fix_typed(&mut v, "Values").len(), 2);
        assert_eq!(
            v,
            json!({"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Values", "globalValues": {"a": 1}})
        );
        assert!(fix_typed(&mut v, "Values").is_empty());
    }

    #[test]
    fn status_and_result_together_are_an_error() {
        let mut t = json!({"results": [{"policy": "p", "status": "pass", "result": "fail"}]});
        assert!(
            fix_test(&mut t, "d", false)
                .unwrap_err()
                .contains("both `status` and `result`")
        );
    }

    #[test]
    fn a_current_test_is_not_touched() {
        let doc = json!({"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test", "metadata": {"name": "t"},
            "policies": ["p.yaml"], "resources": ["r.yaml"], "results": [
            {"policy": "p", "rule": "r1", "resources": ["a", "b"], "result": "fail"},
            {"policy": "p", "rule": "r1", "resources": ["c"], "result": "pass"}]});
        let mut fixed = doc.clone();
        assert!(fix_test(&mut fixed, "d", false).unwrap().is_empty());
        assert_eq!(fixed, doc);
    }
}
