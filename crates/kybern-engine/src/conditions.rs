//! Operators of `preconditions` and `deny.conditions` (Kyverno's `pkg/engine/variables/operator`).
//!
//! Only the comparison of one substituted key with one substituted value lives here; the
//! any/all logic and variable substitution belong to the caller. Numbers are compared as Go
//! `float64`, which is what Kyverno holds after JSON decoding and JMESPath evaluation.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::pattern::value::{go_f64_to_i64, parse_go_float};
use crate::pattern::{Operator as PatternOperator, go_sprint, operator_of, value_matches};
use crate::quantity::Quantity;
use crate::wildcard;

/// A condition that cannot be evaluated (unknown operator).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{message}")]
pub struct ConditionError {
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    AnyIn,
    AllIn,
    AnyNotIn,
    AllNotIn,
    Numeric(Cmp),
    Duration(Cmp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl Cmp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Cmp::Greater => ord == Ordering::Greater,
            Cmp::GreaterOrEqual => ord != Ordering::Less,
            Cmp::Less => ord == Ordering::Less,
            Cmp::LessOrEqual => ord != Ordering::Greater,
        }
    }

    fn floats(self, a: f64, b: f64) -> bool {
        a.partial_cmp(&b).is_some_and(|o| self.holds(o))
    }
}

fn parse_operator(name: &str) -> Option<Op> {
    Some(match name.to_ascii_lowercase().as_str() {
        "equal" | "equals" => Op::Equals,
        "notequal" | "notequals" => Op::NotEquals,
        "in" => Op::In,
        "notin" => Op::NotIn,
        "anyin" => Op::AnyIn,
        "allin" => Op::AllIn,
        "anynotin" => Op::AnyNotIn,
        "allnotin" => Op::AllNotIn,
        "greaterthan" => Op::Numeric(Cmp::Greater),
        "greaterthanorequals" => Op::Numeric(Cmp::GreaterOrEqual),
        "lessthan" => Op::Numeric(Cmp::Less),
        "lessthanorequals" => Op::Numeric(Cmp::LessOrEqual),
        "durationgreaterthan" => Op::Duration(Cmp::Greater),
        "durationgreaterthanorequals" => Op::Duration(Cmp::GreaterOrEqual),
        "durationlessthan" => Op::Duration(Cmp::Less),
        "durationlessthanorequals" => Op::Duration(Cmp::LessOrEqual),
        _ => return None,
    })
}

/// True if `operator` names a condition operator (case-insensitive).
pub fn is_known_operator(operator: &str) -> bool {
    parse_operator(operator).is_some()
}

/// Evaluates `key <operator> value`.
pub fn evaluate(operator: &str, key: &Value, value: &Value) -> Result<bool, ConditionError> {
    let op = parse_operator(operator).ok_or_else(|| ConditionError {
        message: format!("operator {operator} is not supported"),
    })?;
    Ok(match op {
        Op::Equals => equals(key, value),
        Op::NotEquals => not_equals(key, value),
        Op::In => legacy_in(key, value, false),
        Op::NotIn => legacy_in(key, value, true),
        Op::AnyIn => set_op(key, value, SetOp::AnyIn),
        Op::AllIn => set_op(key, value, SetOp::AllIn),
        Op::AnyNotIn => set_op(key, value, SetOp::AnyNotIn),
        Op::AllNotIn => set_op(key, value, SetOp::AllNotIn),
        Op::Numeric(cmp) => numeric(key, value, cmp),
        Op::Duration(cmp) => duration_op(key, value, cmp),
    })
}

// ---------- durations ----------

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Go `time.Duration(f) * time.Second`: the float is truncated to whole nanoseconds first.
fn seconds_as_duration(f: f64) -> i128 {
    i128::from(go_f64_to_i64(f)) * 1_000_000_000
}

/// Kyverno's `parseDuration`: at least one side must be a duration string other than "0";
/// a number on the other side is a count of seconds.
fn parse_duration_pair(key: &Value, value: &Value) -> Option<(i128, i128)> {
    let as_duration = |v: &Value| match v {
        Value::String(s) if s != "0" => crate::duration::parse(s),
        _ => None,
    };
    let (k, v) = (as_duration(key), as_duration(value));
    if k.is_none() && v.is_none() {
        return None;
    }
    let k = match k {
        Some(d) => d,
        None => seconds_as_duration(num(key)?),
    };
    let v = match v {
        Some(d) => d,
        None => seconds_as_duration(num(value)?),
    };
    Some((k, v))
}

fn secs(d: i128) -> f64 {
    d as f64 / 1e9
}

// ---------- Equals / NotEquals ----------

fn equals(key: &Value, value: &Value) -> bool {
    match key {
        Value::Bool(k) => value.as_bool() == Some(*k),
        Value::Number(_) => float_equals(num(key).unwrap_or(f64::NAN), value).unwrap_or(false),
        Value::String(k) => string_equals(k, value).unwrap_or(false),
        Value::Object(_) | Value::Array(_) => {
            (value.is_object() || value.is_array()) && deep_equal(key, value, 0)
        }
        Value::Null => false,
    }
}

fn not_equals(key: &Value, value: &Value) -> bool {
    match key {
        Value::Bool(k) => value.as_bool() != Some(*k),
        Value::Number(_) => float_equals(num(key).unwrap_or(f64::NAN), value).is_none_or(|eq| !eq),
        Value::String(k) => match string_equals(k, value) {
            Some(eq) => !eq,
            None => !matches!(quantity_mismatch(k, value), Some(true)),
        },
        Value::Object(_) | Value::Array(_) => !deep_equal(key, value, 0),
        Value::Null => false,
    }
}

/// `Some(equal)` when comparable; `None` when Kyverno logs a type mismatch.
fn float_equals(key: f64, value: &Value) -> Option<bool> {
    match value {
        Value::Number(_) => Some(num(value) == Some(key)),
        Value::String(s) => parse_go_float(s).map(|f| f == key),
        _ => None,
    }
}

/// True when the key is a quantity and the value a string that is not: Kyverno answers false
/// for both Equals and NotEquals then.
fn quantity_mismatch(key: &str, value: &Value) -> Option<bool> {
    Quantity::parse(key)?;
    let Value::String(v) = value else {
        return None;
    };
    Some(Quantity::parse(v).is_none())
}

fn string_equals(key: &str, value: &Value) -> Option<bool> {
    let key_value = Value::String(key.to_string());
    if let Some((k, v)) = parse_duration_pair(&key_value, value) {
        return Some(secs(k) == secs(v));
    }
    if let Some(kq) = Quantity::parse(key)
        && let Value::String(v) = value
    {
        // A quantity key needs a quantity value; anything else is unequal (and not "not equal").
        let vq = Quantity::parse(v)?;
        return Some(kq.compare(&vq) == Ordering::Equal);
    }
    match value {
        Value::String(pattern) => Some(wildcard::matches(pattern, key)),
        _ => None,
    }
}

/// `reflect.DeepEqual` over decoded JSON, where every number is a float64.
fn deep_equal(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > 256 {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_equal(p, q, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w, depth + 1)))
        }
        _ => a == b,
    }
}

// ---------- In / NotIn (deprecated) ----------

fn legacy_in(key: &Value, value: &Value, negate: bool) -> bool {
    match key {
        Value::String(_) | Value::Number(_) => match scalar_in(&sprint(key), value, false) {
            Some(found) => found != negate,
            None => false,
        },
        Value::Array(items) => {
            // Kyverno asserts string elements here; anything else cannot match.
            let Some(keys) = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
            else {
                return false;
            };
            let set: Vec<String> = match value {
                Value::Array(vals) => {
                    match vals
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect()
                    {
                        Some(s) => s,
                        None => return false,
                    }
                }
                Value::String(s) => {
                    if keys.len() == 1 && keys.first().is_some_and(|k| k == s) {
                        return !negate;
                    }
                    match serde_json::from_str::<Vec<String>>(s) {
                        Ok(arr) => arr,
                        Err(_) => return false,
                    }
                }
                _ => return false,
            };
            let all_in = keys.iter().all(|k| set.contains(k));
            if negate { !all_in } else { all_in }
        }
        _ => false,
    }
}

// ---------- AnyIn / AllIn / AnyNotIn / AllNotIn ----------

// Named after Kyverno's operators, which share the suffix.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    AnyIn,
    AllIn,
    AnyNotIn,
    AllNotIn,
}

fn wild_either(a: &str, b: &str) -> bool {
    wildcard::matches(a, b) || wildcard::matches(b, a)
}

/// Whether a single key is in `value`; `None` when the value has an unusable type.
/// `lenient_string` treats a non-JSON string as a one-element list (the newer operators).
fn scalar_in(key: &str, value: &Value, lenient_string: bool) -> Option<bool> {
    match value {
        Value::Array(items) => Some(items.iter().any(|v| wild_either(&sprint(v), key))),
        Value::String(s) => {
            if wildcard::matches(s, key) {
                return Some(true);
            }
            if lenient_string && operator_of(s) == PatternOperator::InRange {
                return Some(in_range(key, s));
            }
            let arr = string_list(s, lenient_string)?;
            Some(arr.iter().any(|v| v == key))
        }
        _ => None,
    }
}

/// A value string as a list: a JSON array of strings, or (when lenient and not JSON) itself.
fn string_list(s: &str, lenient: bool) -> Option<Vec<String>> {
    match serde_json::from_str::<Value>(s) {
        Ok(_) => serde_json::from_str::<Vec<String>>(s).ok(),
        Err(_) if lenient => Some(vec![s.to_string()]),
        Err(_) => None,
    }
}

fn in_range(key: &str, range: &str) -> bool {
    value_matches(
        &Value::String(key.to_string()),
        &Value::String(range.to_string()),
    )
}

/// Go's `fmt.Sprint` of a value, borrowed when it is a string.
fn sprint(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(go_sprint(other)),
    }
}

fn set_op(key: &Value, value: &Value, op: SetOp) -> bool {
    let keys: Vec<Cow<str>> = match key {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            return match scalar_in(&sprint(key), value, true) {
                Some(found) => match op {
                    SetOp::AnyIn | SetOp::AllIn => found,
                    SetOp::AnyNotIn | SetOp::AllNotIn => !found,
                },
                None => false,
            };
        }
        Value::Array(items) => items.iter().map(sprint).collect(),
        _ => return false,
    };
    let values: Vec<Cow<str>> = match value {
        Value::Array(items) => items.iter().map(sprint).collect(),
        Value::Number(_) => vec![sprint(value)],
        Value::String(s) => {
            if keys.len() == 1 && keys.first().is_some_and(|k| k == s) {
                return matches!(op, SetOp::AnyIn | SetOp::AllIn);
            }
            if operator_of(s) == PatternOperator::InRange {
                return match op {
                    SetOp::AnyIn => keys.iter().any(|k| in_range(k, s)),
                    SetOp::AllIn => keys.iter().all(|k| in_range(k, s)),
                    // Kyverno evaluates the range as `a!-b` for AnyNotIn.
                    SetOp::AnyNotIn => {
                        let outside = s.replacen('-', "!-", 1);
                        keys.iter().any(|k| in_range(k, &outside))
                    }
                    SetOp::AllNotIn => keys.iter().all(|k| !in_range(k, s)),
                };
            }
            match string_list(s, true) {
                Some(list) => list.into_iter().map(Cow::Owned).collect(),
                None => return false,
            }
        }
        _ => return false,
    };
    let contained = |k: &Cow<str>| values.iter().any(|v| wild_either(k, v));
    match op {
        SetOp::AnyIn => keys.iter().any(contained),
        SetOp::AllIn => keys.iter().all(contained),
        SetOp::AnyNotIn => keys.iter().any(|k| !contained(k)),
        SetOp::AllNotIn => !keys.iter().any(contained),
    }
}

// ---------- GreaterThan family ----------

fn numeric(key: &Value, value: &Value, cmp: Cmp) -> bool {
    match key {
        Value::Number(_) => numeric_float(num(key).unwrap_or(f64::NAN), value, cmp),
        Value::String(k) => numeric_string(k, value, cmp),
        _ => false,
    }
}

fn numeric_float(key: f64, value: &Value, cmp: Cmp) -> bool {
    match value {
        Value::Number(_) => cmp.floats(key, num(value).unwrap_or(f64::NAN)),
        Value::String(s) => {
            if let Some((k, v)) = parse_duration_pair(&json_f64(key), value) {
                return cmp.floats(secs(k), secs(v));
            }
            if let Some(f) = parse_go_float(s) {
                return cmp.floats(key, f);
            }
            s.parse::<i64>().is_ok_and(|i| cmp.floats(key, i as f64))
        }
        _ => false,
    }
}

fn json_f64(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn numeric_string(key: &str, value: &Value, cmp: Cmp) -> bool {
    let key_value = Value::String(key.to_string());
    if let Some((k, v)) = parse_duration_pair(&key_value, value) {
        return cmp.floats(secs(k), secs(v));
    }
    if let (Some(kq), Value::String(v)) = (Quantity::parse(key), value)
        && let Some(vq) = Quantity::parse(v)
    {
        return cmp.holds(kq.compare(&vq));
    }
    if let Some(f) = parse_go_float(key) {
        return numeric_float(f, value, cmp);
    }
    if let Ok(i) = key.parse::<i64>() {
        return numeric_float(i as f64, value, cmp);
    }
    if let Ok(kv) = semver::Version::parse(key) {
        return match value {
            Value::String(v) => {
                semver::Version::parse(v).is_ok_and(|vv| cmp.holds(kv.cmp_precedence(&vv)))
            }
            _ => false,
        };
    }
    false
}

// ---------- Duration* (deprecated) ----------

fn duration_op(key: &Value, value: &Value, cmp: Cmp) -> bool {
    let side = |v: &Value| match v {
        Value::Number(_) => num(v).map(seconds_as_duration),
        Value::String(s) => crate::duration::parse(s),
        _ => None,
    };
    if !matches!(key, Value::Number(_) | Value::String(_)) {
        return false;
    }
    match (side(key), side(value)) {
        (Some(k), Some(v)) => cmp.holds(k.cmp(&v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
