//! Label and field selectors, parsed from query strings and matched against objects.

use serde_json::Value;

use crate::error::StoreError;

/// A parsed `labelSelector` or `fieldSelector`: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
    /// Field selectors look up dotted paths; label selectors look up `metadata.labels` keys.
    fields: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    /// Parses a label selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
    /// joined by commas.
    pub(crate) fn labels(text: &str) -> Result<Selector, StoreError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_label_requirement(part)?);
        }
        Ok(Selector {
            requirements,
            fields: false,
        })
    }

    /// Parses a field selector: `path=value`, `path==value`, `path!=value`, joined by commas.
    ///
    /// Any dotted path is accepted (the real server allows only a few per type).
    pub(crate) fn fields(text: &str) -> Result<Selector, StoreError> {
        let mut requirements = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Eq(k.trim().to_string(), v.trim().to_string())
            } else {
                return Err(StoreError::BadRequest(format!(
                    "invalid field selector: {part:?}"
                )));
            };
            requirements.push(req);
        }
        Ok(Selector {
            requirements,
            fields: true,
        })
    }

    /// True if `object` satisfies every requirement.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let lookup = |key: &str| -> Option<String> {
                if self.fields {
                    field_value(object, key)
                } else {
                    object
                        .pointer("/metadata/labels")
                        .and_then(|l| l.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }
            };
            match r {
                Requirement::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
                Requirement::NotEq(k, v) => lookup(k).as_deref() != Some(v.as_str()),
                Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
                Requirement::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
                Requirement::Exists(k) => lookup(k).is_some(),
                Requirement::NotExists(k) => lookup(k).is_none(),
            }
        })
    }
}

/// A field's value as the field selector compares it: strings as they are, other scalars
/// printed, an absent `metadata.namespace` as empty.
fn field_value(object: &Value, path: &str) -> Option<String> {
    let mut cur = object;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(next) => cur = next,
            None if path == "metadata.namespace" => return Some(String::new()),
            None => return None,
        }
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Bool(_) | Value::Number(_) => Some(cur.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_label_requirement(part: &str) -> Result<Requirement, StoreError> {
    let bad = || StoreError::BadRequest(format!("unable to parse requirement: {part:?}"));
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(
            valid_key(key.trim()).ok_or_else(bad)?,
        ));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEq(
            valid_key(k.trim()).ok_or_else(bad)?,
            v.trim().to_string(),
        ));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Eq(
            valid_key(k.trim()).ok_or_else(bad)?,
            v.trim().to_string(),
        ));
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return Ok(Requirement::Exists(valid_key(key).ok_or_else(bad)?));
    }
    let (op, list) = if let Some(l) = rest.strip_prefix("notin") {
        ("notin", l)
    } else if let Some(l) = rest.strip_prefix("in") {
        ("in", l)
    } else {
        return Err(bad());
    };
    let inner = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(bad)?;
    let values = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    let key = valid_key(key).ok_or_else(bad)?;
    Ok(if op == "in" {
        Requirement::In(key, values)
    } else {
        Requirement::NotIn(key, values)
    })
}

fn valid_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n1", "namespace": "ns1", "labels": labels}, "spec": {"x": 3}})
    }

    #[test]
    fn label_selector_operators() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db, web)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app in (web),!missing", true),
            ("", true),
        ];
        for (sel, want) in cases {
            assert_eq!(Selector::labels(sel).unwrap().matches(&o), want, "{sel}");
        }
    }

    #[test]
    fn bad_label_selectors_are_rejected() {
        for sel in ["app in web", "a b c", "!", "app in (x"] {
            assert!(Selector::labels(sel).is_err(), "{sel}");
        }
    }

    #[test]
    fn field_selector_on_name_namespace_and_paths() {
        let o = obj(json!({}));
        let cases = [
            ("metadata.name=n1", true),
            ("metadata.name!=n1", false),
            ("metadata.namespace==ns1,metadata.name=n1", true),
            ("metadata.namespace=other", false),
            ("spec.x=3", true),
        ];
        for (sel, want) in cases {
            assert_eq!(Selector::fields(sel).unwrap().matches(&o), want, "{sel}");
        }
        let cluster = json!({"metadata": {"name": "c"}});
        assert!(
            Selector::fields("metadata.namespace=")
                .unwrap()
                .matches(&cluster)
        );
        assert!(Selector::fields("nonsense").is_err());
    }
}
