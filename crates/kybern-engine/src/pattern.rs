//! Kyverno's pattern language for `validate.pattern` / `anyPattern`: anchors, value operators,
//! wildcards, quantities and durations, and `$(...)` references within a pattern.
//!
//! The walk follows Kyverno's `validate.MatchPattern`: anchors of a map are evaluated first (in
//! sorted key order), then its other keys; a conditional or global anchor that does not hold
//! makes the result a skip, every other mismatch a failure with the path where it happened.

mod anchor;
mod compiled;
mod matcher;
mod reference;
mod scalar;
pub(crate) mod value;

use serde_json::Value;

pub use anchor::{Anchor, AnchorKind, parse as parse_anchor};
pub use value::{Operator, format_float_e, go_sprint, operator_of, value_matches};

/// Whether a pattern mismatch fails the rule or means the rule does not apply.
#[derive(Debug, Clone, PartialEq)]
pub enum PatternErrorKind {
    Fail,
    Skip,
}

/// A pattern that did not match the resource.
///
/// `path` is Kyverno-style (`/spec/containers/0/image/`). A `Fail` with an empty path is what
/// Kyverno reports as a rule *error* (e.g. an anchor key absent from the resource elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct PatternError {
    pub kind: PatternErrorKind,
    pub path: String,
    pub message: String,
}

impl PatternError {
    pub(crate) fn fail(path: &str, message: &str) -> Self {
        PatternError {
            kind: PatternErrorKind::Fail,
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PatternError {}

/// A pattern rejected when the policy is loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid pattern at {path}: {message}")]
pub struct PatternSyntaxError {
    pub path: String,
    pub message: String,
}

/// Matches `resource` against `pattern` (variables and references already substituted).
pub fn validate(resource: &Value, pattern: &Value) -> Result<(), PatternError> {
    CompiledPattern::new(pattern).validate(resource)
}

/// A pattern compiled once (anchors parsed, key order decided, scalar operators read), to be
/// matched against many resources.
#[derive(Debug, Clone)]
pub struct CompiledPattern {
    root: compiled::Node,
}

impl CompiledPattern {
    /// Compiles a pattern whose variables and references are already substituted.
    pub fn new(pattern: &Value) -> Self {
        CompiledPattern {
            root: compiled::compile(pattern, 0).0,
        }
    }

    /// Matches `resource` against the pattern.
    pub fn validate(&self, resource: &Value) -> Result<(), PatternError> {
        let mut walker = matcher::Walker::default();
        let Err(err) = walker.element(resource, &self.root, &matcher::Path::Root, 0) else {
            return Ok(());
        };
        if err.is_skip() {
            return Err(PatternError {
                kind: PatternErrorKind::Skip,
                path: String::new(),
                message: err.message,
            });
        }
        let path = if err.kind == matcher::ErrKind::Negation || !walker.keys_are_missing() {
            err.path
        } else {
            // An anchor of the pattern never met its key in the resource: Kyverno drops the path.
            String::new()
        };
        Err(PatternError {
            kind: PatternErrorKind::Fail,
            path,
            message: err.message,
        })
    }
}

/// Resolves `$(./../path)` references inside a pattern against the pattern itself.
pub fn resolve_references(pattern: &Value) -> Result<Value, PatternError> {
    reference::resolve_references(pattern)
}

/// Load-time check of a pattern: malformed or unknown anchors and misused existence anchors.
/// Accepts every anchor, including the mutate-only `+(key)`.
pub fn check_syntax(pattern: &Value) -> Result<(), PatternSyntaxError> {
    check_node(pattern, "", 0, true)
}

/// Like [`check_syntax`], but rejects `+(key)` as Kyverno does for validate patterns.
pub fn check_validate_syntax(pattern: &Value) -> Result<(), PatternSyntaxError> {
    check_node(pattern, "", 0, false)
}

fn check_node(
    pattern: &Value,
    path: &str,
    depth: usize,
    allow_add: bool,
) -> Result<(), PatternSyntaxError> {
    let err = |path: String, message: &str| PatternSyntaxError {
        path,
        message: message.to_string(),
    };
    if depth > matcher::MAX_DEPTH {
        return Err(err(path.to_string(), "pattern nested too deeply"));
    }
    match pattern {
        Value::Object(map) => {
            for (key, sub) in map {
                let child = format!("{path}/{key}");
                match anchor::parse(key) {
                    Some(a) => {
                        if a.kind == AnchorKind::AddIfNotPresent && !allow_add {
                            return Err(err(child, &format!("unsupported anchor {key}")));
                        }
                        if a.key.contains('(') || a.key.contains(')') {
                            return Err(err(child, &format!("malformed anchor {key}")));
                        }
                        if a.kind == AnchorKind::Existence {
                            match sub {
                                Value::Array(items) if items.is_empty() => {
                                    return Err(err(
                                        child,
                                        "existence anchor: should have atleast one value",
                                    ));
                                }
                                Value::Array(_) => {}
                                _ => {
                                    return Err(err(
                                        child,
                                        "existence anchor should have value of type list",
                                    ));
                                }
                            }
                        }
                    }
                    None => {
                        if let Some(message) = malformed_anchor(key) {
                            return Err(err(child, &message));
                        }
                    }
                }
                check_node(sub, &child, depth + 1, allow_add)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_node(item, &format!("{path}/{i}"), depth + 1, allow_add)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Explains why a key that looks like an anchor is not one, if it looks like one.
fn malformed_anchor(key: &str) -> Option<String> {
    let k = key.trim_matches(' ');
    let mut chars = k.chars();
    let first = chars.next()?;
    let rest = chars.as_str();
    let known = matches!(first, '<' | '^' | '=' | 'X' | '+');
    if first == '(' {
        return Some(format!(
            "malformed anchor {key}: missing closing parenthesis or key"
        ));
    }
    if known && rest.starts_with('(') {
        return Some(format!("malformed anchor {key}: expected {first}(key)"));
    }
    // A lone symbol before a parenthesised key reads as an anchor Kyverno does not have.
    if !first.is_alphanumeric()
        && !matches!(first, '_' | '.' | '/' | '-' | '*' | '?' | '$' | '{')
        && rest.starts_with('(')
        && rest.ends_with(')')
    {
        return Some(format!("unknown anchor {key}"));
    }
    None
}

#[cfg(test)]
mod tests;
