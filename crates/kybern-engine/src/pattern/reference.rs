//! `$(path)` references inside a policy document, resolved against the document itself
//! (Kyverno's `substituteReferencesIfAny` / `resolveReference`).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::PatternError;
use super::value::{Operator, operator_of};

// Same shapes as Kyverno's RegexReferences and RegexEscpReferences.
static REFERENCES: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\$\(.[^ ]*\)|[^\\]\$\(.[^ ]*\)").ok());
static ESCAPED_REFERENCES: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\\\$\(.[^ ]*\)").ok());

/// Bound on nesting so hostile documents cannot exhaust the stack.
const MAX_DEPTH: usize = 256;

/// Resolves every `$(...)` reference in string leaves and keys of `document`.
pub fn resolve_references(document: &Value) -> Result<Value, PatternError> {
    if !contains_reference(document, 0) {
        return Ok(document.clone());
    }
    walk(document, document, "", 0)
}

fn contains_reference(value: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return true;
    }
    match value {
        Value::String(s) => s.contains("$("),
        Value::Array(items) => items.iter().any(|v| contains_reference(v, depth + 1)),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains("$(") || contains_reference(v, depth + 1)),
        _ => false,
    }
}

fn walk(document: &Value, value: &Value, path: &str, depth: usize) -> Result<Value, PatternError> {
    if depth > MAX_DEPTH {
        return Err(PatternError::fail(path, "maximum pattern depth exceeded"));
    }
    match value {
        Value::String(s) => substitute(document, s, path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| walk(document, v, &format!("{path}/{i}"), depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let child_path = format!("{path}/{k}");
                let key = match substitute(document, k, &child_path)? {
                    Value::String(s) => s,
                    other => crate::pattern::value::go_sprint(&other),
                };
                out.insert(key, walk(document, v, &child_path, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

fn substitute(document: &Value, original: &str, path: &str) -> Result<Value, PatternError> {
    let mut text = original.to_string();
    let found: Vec<String> = match REFERENCES.as_ref() {
        Some(re) => re
            .find_iter(original)
            .map(|m| m.as_str().to_string())
            .collect(),
        None => Vec::new(),
    };
    for matched in found {
        // A match not at the start carries the preceding character, which is kept.
        let (prefix, reference) = if matched.starts_with("$(") {
            ("", matched.as_str())
        } else {
            let split = matched.char_indices().nth(1).map_or(0, |(i, _)| i);
            (
                matched.get(..split).unwrap_or(""),
                matched.get(split..).unwrap_or(""),
            )
        };
        let resolved = resolve_one(document, reference, path)?;
        match resolved {
            Value::String(s) => {
                text = text.replacen(&matched, &format!("{prefix}{s}"), 1);
            }
            other => return Ok(other),
        }
    }
    if let Some(re) = ESCAPED_REFERENCES.as_ref() {
        let escaped: Vec<String> = re
            .find_iter(&text)
            .map(|m| m.as_str().to_string())
            .collect();
        for e in escaped {
            text = text.replace(&e, e.get(1..).unwrap_or(""));
        }
    }
    Ok(Value::String(text))
}

fn resolve_one(document: &Value, reference: &str, path: &str) -> Result<Value, PatternError> {
    let inner = reference.trim_matches(|c| c == '$' || c == '(' || c == ')');
    let op = operator_of(inner);
    let prefix = op.prefix();
    let target = inner.get(prefix.len()..).unwrap_or("");
    if target.is_empty() {
        return Err(PatternError::fail(
            path,
            "expected path, found empty reference",
        ));
    }
    let absolute = if target.starts_with('/') {
        clean_path(target)
    } else {
        clean_path(&format!("{path}/{target}"))
    };
    let mut found = None;
    find_leaf(document, "", &absolute, &mut found, 0);
    let Some(value) = found else {
        return Err(PatternError::fail(
            path,
            &format!("got nil resolved variable {reference} at path {path}"),
        ));
    };
    // Ranges are not operators of a reference; only the comparison prefixes are kept.
    if matches!(
        op,
        Operator::Equal | Operator::InRange | Operator::NotInRange
    ) {
        return Ok(value);
    }
    let text = match &value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => n.as_f64().map(|f| format!("{f:.6}")).unwrap_or_default(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(PatternError::fail(
                path,
                &format!(
                    "reference value must be a number or a string, found type {}",
                    crate::pattern::value::go_type(other)
                ),
            ));
        }
    };
    Ok(Value::String(format!("{prefix}{text}")))
}

fn find_leaf(value: &Value, path: &str, target: &str, found: &mut Option<Value>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find_leaf(v, &format!("{path}/{i}"), target, found, depth + 1);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                find_leaf(v, &format!("{path}/{k}"), target, found, depth + 1);
            }
        }
        leaf => {
            if super::anchor::remove_anchors_from_path(path) == target {
                *found = Some(leaf.clone());
            }
        }
    }
}

/// Go's `path.Clean` for slash-separated paths.
pub(crate) fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_relative_reference_with_operator() {
        let pattern = json!({"spec": {"containers": [{"resources": {
            "requests": {"memory": "$(<=./../../limits/memory)"},
            "limits": {"memory": "2048Mi"}}}]}});
        let out = resolve_references(&pattern).unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["requests"]["memory"],
            json!("<=2048Mi")
        );
    }

    #[test]
    fn resolves_absolute_reference_ignoring_anchors() {
        let pattern = json!({"(metadata)": {"name": "a"}, "spec": {"x": "$(/metadata/name)"}});
        let out = resolve_references(&pattern).unwrap();
        assert_eq!(out["spec"]["x"], json!("a"));
    }

    #[test]
    fn whole_reference_to_number_keeps_number() {
        let pattern = json!({"a": 3, "b": "$(./../a)"});
        let out = resolve_references(&pattern).unwrap();
        assert_eq!(out["b"], json!(3));
    }

    #[test]
    fn missing_reference_is_an_error_naming_the_path() {
        let pattern = json!({"spec": {"m": "$(./../nothere)"}});
        let err = resolve_references(&pattern).unwrap_err();
        assert_eq!(err.path, "/spec/m");
    }

    #[test]
    fn empty_reference_path_is_an_error() {
        assert!(resolve_references(&json!({"m": "$(<=)"})).is_err());
        // `$()` is not a reference at all for Kyverno's reference regex.
        let out = resolve_references(&json!({"m": "$()"})).unwrap();
        assert_eq!(out["m"], json!("$()"));
    }

    #[test]
    fn escaped_reference_is_kept_without_backslash() {
        let out = resolve_references(&json!({"m": "\\$(./x)"})).unwrap();
        assert_eq!(out["m"], json!("$(./x)"));
    }

    #[test]
    fn cleans_paths_like_go() {
        assert_eq!(clean_path("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("a/../.."), "..");
    }
}
