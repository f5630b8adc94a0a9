//! Comparison of one resource value with one scalar pattern (Kyverno's `pattern.Validate`),
//! including the string operators `>`, `<`, `>=`, `<=`, `!`, `|`, `&` and ranges.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::quantity::Quantity;

/// A comparison operator at the start of a string pattern (Kyverno's `operator.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equal,
    NotEqual,
    More,
    Less,
    MoreEqual,
    LessEqual,
    InRange,
    NotInRange,
}

impl Operator {
    /// The prefix this operator occupies in a pattern (ranges have none).
    pub fn prefix(self) -> &'static str {
        match self {
            Operator::MoreEqual => ">=",
            Operator::LessEqual => "<=",
            Operator::More => ">",
            Operator::Less => "<",
            Operator::NotEqual => "!",
            Operator::Equal | Operator::InRange | Operator::NotInRange => "",
        }
    }
}

const RANGE_SIDE: &str = r"([-+]?[0-9]+(?:\.[0-9]+)?[A-Za-z]*)";

pub(crate) static NOT_IN_RANGE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(&format!("^{RANGE_SIDE}!-{RANGE_SIDE}$")).ok());
pub(crate) static IN_RANGE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(&format!("^{RANGE_SIDE}-{RANGE_SIDE}$")).ok());

pub(crate) fn range_sides<'a>(
    re: &LazyLock<Option<Regex>>,
    s: &'a str,
) -> Option<(&'a str, &'a str)> {
    let caps = re.as_ref()?.captures(s)?;
    Some((caps.get(1)?.as_str(), caps.get(2)?.as_str()))
}

/// Detects the operator of a string pattern (Kyverno's `GetOperatorFromStringPattern`).
pub fn operator_of(pattern: &str) -> Operator {
    if pattern.len() < 2 {
        return Operator::Equal;
    }
    for op in [
        Operator::MoreEqual,
        Operator::LessEqual,
        Operator::More,
        Operator::Less,
        Operator::NotEqual,
    ] {
        if pattern.starts_with(op.prefix()) {
            return op;
        }
    }
    // Both range forms need a `-` between their sides.
    if !pattern.contains('-') {
        return Operator::Equal;
    }
    if range_sides(&NOT_IN_RANGE, pattern).is_some() {
        return Operator::NotInRange;
    }
    if range_sides(&IN_RANGE, pattern).is_some() {
        return Operator::InRange;
    }
    Operator::Equal
}

/// Kyverno's value-with-pattern comparison of one value against one scalar pattern.
///
/// Pattern numbers are compared as Go `float64` (policies are decoded by `encoding/json`);
/// resource integers keep their integer type, as Kubernetes' unstructured decoding does.
pub fn value_matches(value: &Value, pattern: &Value) -> bool {
    match pattern {
        Value::Bool(p) => matches!(value, Value::Bool(v) if v == p),
        Value::Number(n) => n.as_f64().is_some_and(|p| float_pattern(value, p)),
        Value::Null => nil_pattern(value),
        Value::Object(_) => value.is_object(),
        // Arrays are not supported as scalar patterns.
        Value::Array(_) => false,
        Value::String(p) => string_patterns(value, p),
    }
}

fn float_pattern(value: &Value, pattern: f64) -> bool {
    match value {
        Value::Number(n) if n.is_f64() => n.as_f64() == Some(pattern),
        Value::Number(n) => pattern.trunc() == pattern && int_equals_float(n, pattern),
        Value::String(s) => parse_go_float(s) == Some(pattern),
        _ => false,
    }
}

fn int_equals_float(n: &serde_json::Number, f: f64) -> bool {
    if let Some(i) = n.as_i64() {
        // Go converts the float pattern to int64 before comparing.
        return go_f64_to_i64(f) == i;
    }
    n.as_u64().is_some_and(|u| f >= 0.0 && (f as u64) == u)
}

/// Go's float64 to int64 conversion for in-range values (truncation).
pub(crate) fn go_f64_to_i64(f: f64) -> i64 {
    f as i64
}

fn nil_pattern(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Object(_) | Value::Array(_) => false,
    }
}

fn string_patterns(value: &Value, pattern: &str) -> bool {
    if matches!(value, Value::String(s) if s == pattern) {
        return true;
    }
    pattern.split('|').any(|alternative| {
        alternative
            .trim_matches(' ')
            .split('&')
            .all(|part| string_pattern(value, part.trim_matches(' ')))
    })
}

fn string_pattern(value: &Value, pattern: &str) -> bool {
    match operator_of(pattern) {
        Operator::InRange => range_sides(&IN_RANGE, pattern).is_some_and(|(l, r)| {
            string_pattern(value, &format!(">= {l}")) && string_pattern(value, &format!("<= {r}"))
        }),
        Operator::NotInRange => range_sides(&NOT_IN_RANGE, pattern).is_some_and(|(l, r)| {
            string_pattern(value, &format!("< {l}")) || string_pattern(value, &format!("> {r}"))
        }),
        op => {
            let operand = pattern.get(op.prefix().len()..).unwrap_or("").trim();
            compare(value, operand, op)
        }
    }
}

fn compare(value: &Value, operand: &str, op: Operator) -> bool {
    compare_parsed(
        value,
        operand,
        op,
        crate::duration::parse(operand),
        Quantity::parse(operand),
    )
}

/// [`compare`] with the operand's readings as a duration and as a quantity already made: a
/// duration comparison first, then a quantity comparison, then a wildcard string comparison.
pub(crate) fn compare_parsed(
    value: &Value,
    operand: &str,
    op: Operator,
    duration: Option<i128>,
    quantity: Option<Quantity>,
) -> bool {
    if let Some(pattern) = duration
        && let Some(text) = number_to_string(value)
        && let Some(value) = crate::duration::parse(&text)
        && let Some(result) = by_ordering(value.cmp(&pattern), op)
    {
        return result;
    }
    if let Some(pattern) = quantity
        && let Some(text) = number_to_string(value)
        && let Some(value) = Quantity::parse(&text)
        && let Some(result) = by_ordering(value.compare(&pattern), op)
    {
        return result;
    }
    compare_string(value, operand, op)
}

fn by_ordering(ord: Ordering, op: Operator) -> Option<bool> {
    Some(match op {
        Operator::Equal => ord == Ordering::Equal,
        Operator::NotEqual => ord != Ordering::Equal,
        Operator::More => ord == Ordering::Greater,
        Operator::Less => ord == Ordering::Less,
        Operator::MoreEqual => ord != Ordering::Less,
        Operator::LessEqual => ord != Ordering::Greater,
        Operator::InRange | Operator::NotInRange => return None,
    })
}

/// Kyverno's `convertNumberToString`: nil is "0", floats use `%f`.
fn number_to_string(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => Some(Cow::Borrowed("0")),
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) if n.is_f64() => n.as_f64().map(|f| Cow::Owned(format!("{f:.6}"))),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn compare_string(value: &Value, operand: &str, op: Operator) -> bool {
    if !matches!(op, Operator::Equal | Operator::NotEqual) {
        return false;
    }
    let text: Option<Cow<str>> = match value {
        Value::Number(n) if n.is_f64() => n.as_f64().map(|f| format_float_e(f).into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::String(s) => Some(s.as_str().into()),
        Value::Bool(b) => Some(b.to_string().into()),
        // nil never matches a string operand, not even with `!`.
        _ => None,
    };
    let Some(text) = text else {
        return false;
    };
    let matched = crate::wildcard::matches(operand, &text);
    if op == Operator::NotEqual {
        !matched
    } else {
        matched
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for the inputs that matter here.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    // Go rejects surrounding spaces and Rust-only spellings such as "infinity" are rare enough.
    if s.is_empty() || s.trim() != s {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`, e.g. `1.5E+00`.
pub fn format_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let formatted = format!("{v:E}");
    let (mantissa, exp) = split_exp(&formatted);
    format!("{mantissa}E{}", go_exponent(exp))
}

fn split_exp(s: &str) -> (&str, i32) {
    match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

fn go_exponent(exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{:02}", exp.unsigned_abs())
}

/// Go's `%v` formatting of a float64 (`strconv.FormatFloat(v, 'g', -1, 64)` with the `%v` exponent rule).
pub fn format_float_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let formatted = format!("{v:e}");
    let (mantissa, exp) = split_exp(&formatted);
    if !(-4..21).contains(&exp) {
        format!("{mantissa}e{}", go_exponent(exp))
    } else {
        // Shortest round-trip digits in plain notation.
        format!("{v}")
    }
}

/// Go's `fmt.Sprint` of a decoded JSON value.
pub fn go_sprint(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => n.as_f64().map(format_float_v).unwrap_or_default(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_sprint).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", map.get(k).map(go_sprint).unwrap_or_default()))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%T` of a decoded JSON value, for error messages.
pub fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operator_detection_follows_kyverno_order() {
        let cases = [
            (">=1", Operator::MoreEqual),
            ("<=1", Operator::LessEqual),
            (">1", Operator::More),
            ("<1", Operator::Less),
            ("!a", Operator::NotEqual),
            ("1-5", Operator::InRange),
            ("1Gi-2Gi", Operator::InRange),
            ("-5--1", Operator::InRange),
            ("1!-5", Operator::NotInRange),
            ("a-b", Operator::Equal),
            (">", Operator::Equal),
            ("abc", Operator::Equal),
        ];
        for (p, want) in cases {
            assert_eq!(operator_of(p), want, "{p}");
        }
    }

    #[test]
    fn scalar_patterns_table() {
        let cases: Vec<(&str, Value, Value, bool)> = vec![
            ("bool equal", json!(true), json!(true), true),
            ("bool vs string", json!("true"), json!(true), false),
            ("int resource, float pattern", json!(80), json!(80.0), true),
            (
                "int resource, fractional pattern",
                json!(80),
                json!(80.5),
                false,
            ),
            ("float equal", json!(1.5), json!(1.5), true),
            ("numeric string", json!("80"), json!(80), true),
            ("non numeric string", json!("eighty"), json!(80), false),
            ("nil pattern missing", Value::Null, Value::Null, true),
            ("nil pattern empty string", json!(""), Value::Null, true),
            ("nil pattern zero", json!(0), Value::Null, true),
            ("nil pattern false", json!(false), Value::Null, true),
            ("nil pattern non-empty", json!("x"), Value::Null, false),
            ("nil pattern map", json!({}), Value::Null, false),
            (
                "map pattern needs map",
                json!({"a": 1}),
                json!({"b": 2}),
                true,
            ),
            ("map pattern vs string", json!("a"), json!({}), false),
            ("array pattern unsupported", json!([1]), json!([1]), false),
            ("empty string pattern vs nil", Value::Null, json!(""), false),
            ("empty string pattern vs empty", json!(""), json!(""), true),
            ("wildcard star", json!("nginx:1.2"), json!("nginx:*"), true),
            (
                "wildcard question needs one char",
                json!(""),
                json!("?*"),
                false,
            ),
            ("wildcard non-empty", json!("a"), json!("?*"), true),
            ("star vs nil", Value::Null, json!("*"), false),
            ("negation", json!("nginx:latest"), json!("!*:latest"), false),
            (
                "negation passes",
                json!("nginx:1"),
                json!("!*:latest"),
                true,
            ),
            (
                "negation never matches nil",
                Value::Null,
                json!("!foo"),
                false,
            ),
            ("greater than number", json!(15), json!(">10"), true),
            ("greater than fails", json!(5), json!(">10"), false),
            ("less-equal quantity", json!("1Gi"), json!("<=1024Mi"), true),
            ("quantity greater", json!("2Gi"), json!("<=1024Mi"), false),
            ("duration compare", json!("90m"), json!(">1h"), true),
            ("duration compare fails", json!("30m"), json!(">1h"), false),
            ("nil is zero for durations", Value::Null, json!("<1h"), true),
            ("greater on plain strings", json!("b"), json!(">a"), false),
            ("or alternatives", json!("b"), json!("a | b"), true),
            ("or alternatives fail", json!("c"), json!("a|b"), false),
            ("and parts", json!(5), json!(">1 & <10"), true),
            ("and parts fail", json!(50), json!(">1&<10"), false),
            ("in range", json!(5), json!("1-10"), true),
            ("in range inclusive", json!(10), json!("1-10"), true),
            ("out of range", json!(11), json!("1-10"), false),
            ("range with units", json!("1500Mi"), json!("1Gi-2Gi"), true),
            ("not in range", json!(11), json!("1!-10"), true),
            ("not in range fails inside", json!(5), json!("1!-10"), false),
            (
                "float wildcard uses E format",
                json!(1.5),
                json!("1.5E+00"),
                true,
            ),
            (
                "float equal through quantities",
                json!(1.5),
                json!("1.5"),
                true,
            ),
            ("bool stringified", json!(true), json!("true"), true),
            (
                "int stringified for wildcard",
                json!(8080),
                json!("80*"),
                true,
            ),
        ];
        for (name, value, pattern, want) in cases {
            assert_eq!(value_matches(&value, &pattern), want, "{name}");
        }
    }

    #[test]
    fn go_float_formats() {
        assert_eq!(format_float_e(1.5), "1.5E+00");
        assert_eq!(format_float_e(100.0), "1E+02");
        assert_eq!(format_float_e(0.001), "1E-03");
        assert_eq!(format_float_v(1.0), "1");
        assert_eq!(format_float_v(1.5), "1.5");
        assert_eq!(format_float_v(1e21), "1e+21");
        assert_eq!(format_float_v(0.00001), "1e-05");
        assert_eq!(go_sprint(&json!([1, "a", true])), "[1 a true]");
    }
}
