//! Input shapes shared by the fuzz targets: every target reads text, so seeds are plain files
//! taken from the conformance corpus and crashes are readable.

use kybern_engine::yaml::{Limits, parse_documents};
use serde_json::Value;

/// Bounds for fuzz inputs: small enough that one input never takes the fuzzer's time budget.
pub fn limits() -> Limits {
    Limits {
        max_bytes: 256 * 1024,
        max_depth: 64,
        max_alias_expansions: 2_000,
    }
}

/// The documents of a YAML stream (empty ones dropped); an unreadable tail is ignored.
pub fn documents(text: &str) -> Vec<Value> {
    parse_documents(text, &limits())
        .0
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
        .collect()
}

/// Splits at the first newline: a one-line head (an expression, a pattern) and the rest.
pub fn head_and_rest(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or((text, ""))
}

/// The first value under `key` anywhere in `v` (depth first), e.g. a rule's `pattern`, so a
/// whole policy file is a usable seed.
pub fn find_key<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|c| find_key(c, key))),
        Value::Array(a) => a.iter().find_map(|c| find_key(c, key)),
        _ => None,
    }
}

/// Nesting depth of a value: a scalar is 0, `{}` and `[]` are 1.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
