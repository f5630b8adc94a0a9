//! The JSON context that `{{ }}` variables and JMESPath read: `request`, `images`, values,
//! context entries and foreach elements. It is held as interpreter values so a request is
//! converted once, and rule or element variables are layered on by copying only the path to
//! the new key (children are shared).

use crate::jmespath::{self, Expression, JmespathError};
use ::jmespath::{Rcvar, Variable};
use serde_json::Value;
use std::collections::BTreeMap;

/// An immutable-by-sharing JSON context; cloning is cheap.
#[derive(Clone)]
pub struct JsonContext {
    root: Rcvar,
}

impl std::fmt::Debug for JsonContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonContext")
    }
}

impl Default for JsonContext {
    fn default() -> Self {
        JsonContext {
            root: Rcvar::new(Variable::Object(BTreeMap::new())),
        }
    }
}

/// Splits a dotted path into keys; `"quoted.keys"` keep their dots.
fn path_segments(dotted: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in dotted.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn set_in(node: &Rcvar, segments: &[String], value: Rcvar) -> Rcvar {
    let Some((first, rest)) = segments.split_first() else {
        return value;
    };
    let mut map = match &**node {
        Variable::Object(m) => m.clone(),
        _ => BTreeMap::new(),
    };
    let child = if rest.is_empty() {
        value
    } else {
        let existing = map
            .get(first)
            .cloned()
            .unwrap_or_else(|| Rcvar::new(Variable::Null));
        set_in(&existing, rest, value)
    };
    map.insert(first.clone(), child);
    Rcvar::new(Variable::Object(map))
}

impl JsonContext {
    /// A context holding the given JSON object.
    pub fn new(root: &Value) -> Self {
        JsonContext {
            root: jmespath::to_variable(root),
        }
    }

    /// A context whose root is an interpreter value built by the caller.
    pub(crate) fn from_variable(root: Rcvar) -> Self {
        JsonContext { root }
    }

    /// Sets a top-level key (no dotted-path parsing) to an interpreter value, shared as is.
    pub(crate) fn set_top(&mut self, key: &str, value: Rcvar) {
        let mut map = match &*self.root {
            Variable::Object(m) => m.clone(),
            _ => BTreeMap::new(),
        };
        map.insert(key.to_string(), value);
        self.root = Rcvar::new(Variable::Object(map));
    }

    /// Evaluates an expression and returns the interpreter value (shared with the context).
    pub(crate) fn search_var(&self, expr: &Expression) -> Result<Rcvar, JmespathError> {
        expr.search_rc(&self.root)
    }

    /// Sets `value` at a dotted path (`request.operation`, `a."b.c"`), creating objects on the way.
    pub fn set(&mut self, dotted: &str, value: &Value) {
        let segments = path_segments(dotted);
        self.root = set_in(&self.root, &segments, jmespath::to_variable(value));
    }

    /// True if a top-level key is present.
    pub fn contains(&self, key: &str) -> bool {
        self.root.as_object().is_some_and(|m| m.contains_key(key))
    }

    /// Evaluates an expression against the context.
    pub fn search(&self, expr: &Expression) -> Result<Value, JmespathError> {
        expr.search_var(&self.root)
    }

    /// The whole context as JSON (for diagnostics and tests).
    pub fn to_value(&self) -> Value {
        jmespath::to_json(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_keeps_siblings_and_quoted_dots() {
        let mut ctx = JsonContext::new(&json!({"a": {"x": 1}}));
        ctx.set("a.\"b.c/d\"", &json!("v"));
        ctx.set("request.operation", &json!("UPDATE"));
        assert_eq!(
            ctx.to_value(),
            json!({"a": {"x": 1, "b.c/d": "v"}, "request": {"operation": "UPDATE"}})
        );
    }

    #[test]
    fn clones_are_independent() {
        let base = JsonContext::new(&json!({"a": 1}));
        let mut layered = base.clone();
        layered.set("element", &json!({"name": "c"}));
        assert_eq!(base.to_value(), json!({"a": 1}));
        let e = crate::jmespath::compile("element.name").unwrap();
        assert_eq!(layered.search(&e).unwrap(), json!("c"));
    }
}
