//! The JSON context that `{{ }}` variables and JMESPath read: `request`, `images`, values,
//! context entries and foreach elements. It is held as interpreter values so a request is
//! converted once, and rule or element variables are layered on by copying only the path to
//! the new key (children are shared).

use crate::jmespath::{self, Expression, JmespathError};
use ::jmespath::{Rcvar, Variable};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// An immutable-by-sharing JSON context; cloning is cheap.
#[derive(Clone)]
pub struct JsonContext {
    root: Rcvar,
    /// The `images` variable, built from the resource on first read: most expressions never
    /// look at it. `None` once it is part of `root` (or for contexts without it).
    images: Option<Arc<DeferredImages>>,
}

/// The resource `images` is extracted from, and the extraction once done.
pub(crate) struct DeferredImages {
    resource: Arc<Value>,
    value: OnceLock<Rcvar>,
}

impl DeferredImages {
    pub(crate) fn new(resource: Arc<Value>) -> Self {
        DeferredImages {
            resource,
            value: OnceLock::new(),
        }
    }

    fn get(&self) -> Rcvar {
        self.value
            .get_or_init(|| jmespath::to_variable(&crate::images::extract(&self.resource)))
            .clone()
    }
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
            images: None,
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
            images: None,
        }
    }

    /// The root with the deferred `images` key in place.
    fn with_images(&self, images: &DeferredImages) -> Rcvar {
        let mut map = match &*self.root {
            Variable::Object(m) => m.clone(),
            _ => BTreeMap::new(),
        };
        map.insert("images".to_string(), images.get());
        Rcvar::new(Variable::Object(map))
    }

    /// Puts the deferred `images` key into the root for good (before the key is overwritten).
    fn materialize(&mut self) {
        if let Some(images) = self.images.take() {
            self.root = self.with_images(&images);
        }
    }

    /// The root an expression reads.
    fn root_for(&self, expr: &Expression) -> std::borrow::Cow<'_, Rcvar> {
        match &self.images {
            Some(images) if expr.reads_images() => {
                std::borrow::Cow::Owned(self.with_images(images))
            }
            _ => std::borrow::Cow::Borrowed(&self.root),
        }
    }

    /// A context whose root is an interpreter value built by the caller.
    pub(crate) fn from_variable(root: Rcvar, images: Option<DeferredImages>) -> Self {
        JsonContext {
            root,
            images: images.map(Arc::new),
        }
    }

    /// Sets several top-level keys at once (one copy of the root map).
    pub(crate) fn set_tops<const N: usize>(&mut self, entries: [(&str, Rcvar); N]) {
        if entries.iter().any(|(k, _)| *k == "images") {
            self.materialize();
        }
        let mut map = match &*self.root {
            Variable::Object(m) => m.clone(),
            _ => BTreeMap::new(),
        };
        for (k, v) in entries {
            map.insert(k.to_string(), v);
        }
        self.root = Rcvar::new(Variable::Object(map));
    }

    /// Evaluates an expression and returns the interpreter value (shared with the context).
    pub(crate) fn search_var(&self, expr: &Expression) -> Result<Rcvar, JmespathError> {
        expr.search_rc(&self.root_for(expr))
    }

    /// Sets `value` at a dotted path (`request.operation`, `a."b.c"`), creating objects on the way.
    pub fn set(&mut self, dotted: &str, value: &Value) {
        let segments = path_segments(dotted);
        if segments.first().is_some_and(|s| s == "images") {
            self.materialize();
        }
        self.root = set_in(&self.root, &segments, jmespath::to_variable(value));
    }

    /// True if a top-level key is present.
    pub fn contains(&self, key: &str) -> bool {
        (key == "images" && self.images.is_some())
            || self.root.as_object().is_some_and(|m| m.contains_key(key))
    }

    /// Evaluates an expression against the context.
    pub fn search(&self, expr: &Expression) -> Result<Value, JmespathError> {
        expr.search_var(&self.root_for(expr))
    }

    /// The whole context as JSON (for diagnostics and tests).
    pub fn to_value(&self) -> Value {
        match &self.images {
            Some(images) => jmespath::to_json(&self.with_images(images)),
            None => jmespath::to_json(&self.root),
        }
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
