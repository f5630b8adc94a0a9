//! Validate patterns (anchors, wildcards, operators) as CEL over the value they are applied to.

use super::cel_text::{field, lit, number, wildcard_regex};
use super::unsupported;
use crate::wildcard;
use serde_json::{Map, Value};

const MAX_DEPTH: usize = 32;

/// One alternative of a string pattern (no `|`).
fn string_alternative(p: &str, f: &str) -> Result<String, String> {
    let p = p.trim();
    if let Some(rest) = p.strip_prefix('!') {
        return Ok(format!("!({})", string_alternative(rest, f)?));
    }
    for op in [">=", "<=", ">", "<"] {
        if let Some(rest) = p.strip_prefix(op) {
            let Some(n) = number(rest) else {
                return unsupported(format!(
                    "the comparison {p:?} is not with a plain number (quantities and durations are not converted)"
                ));
            };
            return Ok(format!("double({f}) {op} {n:?}"));
        }
    }
    if p == "*" {
        return Ok("true".into());
    }
    if p == "?*" {
        return Ok(format!("size(string({f})) > 0"));
    }
    if p.contains("-") && p.split('-').count() == 2 && p.split('-').all(|x| number(x).is_some()) {
        return unsupported(format!("the range {p:?} is not converted"));
    }
    if wildcard::contains_wildcard(p) {
        return Ok(format!("string({f}).matches({})", lit(&wildcard_regex(p))));
    }
    Ok(format!("string({f}) == {}", lit(p)))
}

pub(super) fn scalar(p: &Value, f: &str) -> Result<String, String> {
    match p {
        Value::Bool(b) => Ok(format!("{f} == {b}")),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(format!("double({f}) == {x:?}")),
            _ => unsupported(format!("the number {n} is not converted")),
        },
        Value::String(s) => {
            if s.contains("{{") {
                return unsupported("variables in a pattern are not converted");
            }
            // `|` separates alternatives, each a conjunction of `&` parts, as Kyverno reads them.
            let mut alts = Vec::new();
            for alt in s.split('|') {
                let parts: Result<Vec<String>, String> = alt
                    .trim_matches(' ')
                    .split('&')
                    .map(|part| string_alternative(part.trim_matches(' '), f))
                    .collect();
                let parts = parts?;
                alts.push(if parts.len() == 1 {
                    parts.into_iter().next().unwrap_or_default()
                } else {
                    format!("({})", parts.join(" && "))
                });
            }
            Ok(if alts.len() == 1 {
                alts.into_iter().next().unwrap_or_default()
            } else {
                format!("({})", alts.join(" || "))
            })
        }
        Value::Null => unsupported("a null pattern value is not converted"),
        _ => unsupported("internal: not a scalar"),
    }
}

/// CEL that holds when the value at expression `f` matches pattern `p`.
pub(super) fn pattern(p: &Value, f: &str, depth: usize, var: usize) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return unsupported("the pattern is nested too deep");
    }
    match p {
        Value::Object(map) => map_pattern(map, f, depth, var),
        Value::Array(items) => match items.as_slice() {
            [one] => {
                let x = format!("x{var}");
                let inner = pattern(one, &x, depth + 1, var + 1)?;
                Ok(format!("{f}.all({x}, {inner})"))
            }
            _ => unsupported("a list pattern with other than one element is not converted"),
        },
        // A scalar pattern holds for a list when it holds for every item, as in Kyverno.
        _ => {
            let v = format!("v{var}");
            let each = scalar(p, &v)?;
            let whole = scalar(p, f)?;
            Ok(format!(
                "(type({f}) == list ? {f}.all({v}, {each}) : {whole})"
            ))
        }
    }
}

fn map_pattern(
    map: &Map<String, Value>,
    e: &str,
    depth: usize,
    var: usize,
) -> Result<String, String> {
    let mut terms = Vec::new();
    for (k, pv) in map {
        let (key, anchor) = match (k.find('('), k.ends_with(')')) {
            (Some(i), true) => (
                k.get(i + 1..k.len() - 1).unwrap_or_default(),
                k.get(..i).unwrap_or_default(),
            ),
            _ => (k.as_str(), "-"),
        };
        let (access, present) = field(e, key);
        match anchor {
            // A plain key must be there and match.
            "-" => {
                let inner = pattern(pv, &access, depth + 1, var)?;
                terms.push(format!("{present} && {inner}"));
            }
            // Equality anchor: when the key is there, it must match.
            "=" => {
                let inner = pattern(pv, &access, depth + 1, var)?;
                terms.push(format!("(!({present}) || {inner})"));
            }
            // Negation anchor: the key must not be there.
            "X" => terms.push(format!("!({present})")),
            "" => {
                return unsupported(format!("the condition anchor ({key}) is not converted"));
            }
            other => {
                return unsupported(format!("the anchor {other}({key}) is not converted"));
            }
        }
    }
    Ok(if terms.is_empty() {
        "true".into()
    } else {
        terms.join(" && ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_patterns_cover_wildcards_comparisons_and_alternatives() {
        let f = "object.x";
        assert_eq!(
            scalar(&json!("?*"), f).unwrap(),
            "size(string(object.x)) > 0"
        );
        assert_eq!(scalar(&json!(">=2"), f).unwrap(), "double(object.x) >= 2.0");
        assert_eq!(
            scalar(&json!("a | b"), f).unwrap(),
            "(string(object.x) == 'a' || string(object.x) == 'b')"
        );
        assert!(scalar(&json!(">1Gi"), f).is_err());
        assert_eq!(scalar(&json!(true), f).unwrap(), "object.x == true");
    }
}
