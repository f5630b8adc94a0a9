//! The JSON context that `{{ }}` variables and JMESPath read: `request`, `images`, values,
//! context entries and foreach elements. It is held as interpreter values so a request is
//! converted once, and rule or element variables are layered on by copying only the path to
//! the new key (children are shared).

use crate::jmespath::{self, Expression, JmespathError};
use ::jmespath::{Rcvar, Variable};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

mod budget;
mod json_tops;
pub use budget::{MAX_CONTEXT_BYTES, MAX_FOREACH_ELEMENTS, RequestBudget, json_len_within};
pub(crate) use json_tops::JsonRef;

/// An immutable-by-sharing JSON context; cloning is cheap.
#[derive(Clone)]
pub struct JsonContext {
    root: Rcvar,
    /// The `images` variable, built from the resource on first read: most expressions never
    /// look at it. `None` once it is part of `root` (or for contexts without it).
    images: Option<Arc<DeferredImages>>,
    /// `request.object` and `request.oldObject`, converted on first read: expressions such as
    /// `request.namespace` never need them. `None` once they are part of `root`.
    objects: Option<Arc<DeferredObjects>>,
    /// The request's objects as JSON, for expressions evaluated over them directly (see
    /// `Expression::is_direct`); kept after `objects` is converted, dropped once `request` is
    /// written.
    request_json: Option<Arc<DeferredObjects>>,
    /// Top-level keys whose values are places in the request's objects (foreach elements):
    /// expressions evaluated over JSON read them in place; for the interpreter they are
    /// converted into `tops_root`. They shadow keys of the same name in `root`.
    json_tops: Option<Arc<Vec<(String, JsonRef)>>>,
    /// `root` with `json_tops` converted in, built once for the interpreter's reads of them;
    /// replaced whenever `root` or `json_tops` change.
    tops_root: Arc<OnceLock<Rcvar>>,
    /// `root` with the deferred objects in place, built once for the expressions that read them;
    /// shared by the clones that have the same `root` (each rule works on a clone of the
    /// request's context), replaced whenever `root` changes.
    with_objects: Arc<OnceLock<Rcvar>>,
    /// Context entries declared but not loaded yet, innermost list first (see [`Deferred`]).
    deferred: Option<Arc<Deferred>>,
    /// The request's work so far; clones share it, so it sums over every rule.
    budget: Arc<RequestBudget>,
}

/// Context entries not loaded yet, as Kyverno defers them: an entry loads only once an
/// expression names it. Expressions are not interrupted; an expression that names a pending
/// entry records it here, and the caller loads it and evaluates again (see
/// `context_loader::run_deferred`). Clones of a context share the record.
#[derive(Debug)]
pub(crate) struct Deferred {
    /// Names of the pending entries with their positions in the entry list.
    pending: Vec<(String, usize)>,
    /// Position of the first pending entry an expression named; `NONE` if none.
    requested: AtomicUsize,
    /// The entries of the enclosing scope (the rule's, around a foreach element's).
    parent: Option<Arc<Deferred>>,
}

const NONE: usize = usize::MAX;

/// Kyverno's test for whether a query names an entry: the name not preceded by `.`, a letter or
/// a digit, and ending at a word boundary (`x` matches `x.y` and `f(x)`, not `y.x` or `xy`).
fn names_entry(query: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    query.match_indices(name).any(|(i, _)| {
        let before_ok = query
            .get(..i)
            .and_then(|b| b.chars().next_back())
            .is_none_or(|c| !(c == '.' || c.is_ascii_alphanumeric()));
        let after_ok = query
            .get(i + name.len()..)
            .and_then(|a| a.chars().next())
            .is_none_or(|c| !word(c));
        before_ok && after_ok
    })
}

impl Deferred {
    /// Records the first pending entry `query` names, unless an evaluation already asked for one
    /// (in this scope or an inner one): what follows such a request is discarded anyway.
    fn note(layer: &Arc<Deferred>, query: &str) {
        let mut current = Some(layer);
        while let Some(d) = current {
            if d.requested.load(Ordering::Relaxed) != NONE {
                return;
            }
            if let Some(pos) = d
                .pending
                .iter()
                .filter(|(name, _)| names_entry(query, name))
                .map(|(_, pos)| *pos)
                .min()
            {
                let _ =
                    d.requested
                        .compare_exchange(NONE, pos, Ordering::Relaxed, Ordering::Relaxed);
                return;
            }
            current = d.parent.as_ref();
        }
    }
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

/// The request's objects, and their conversion once done.
pub(crate) struct DeferredObjects {
    object: Arc<Value>,
    old_object: Arc<Value>,
    value: OnceLock<(Rcvar, Rcvar)>,
    /// Reads served by converting subtrees only; past `MAX_PARTIAL_READS` the objects are
    /// converted whole once, which is cheaper than converting subtrees again and again.
    partial_reads: AtomicUsize,
}

/// See `DeferredObjects::partial_reads`.
const MAX_PARTIAL_READS: usize = 8;

impl DeferredObjects {
    pub(crate) fn new(object: Arc<Value>, old_object: Arc<Value>) -> Self {
        DeferredObjects {
            object,
            old_object,
            value: OnceLock::new(),
            partial_reads: AtomicUsize::new(0),
        }
    }

    fn get(&self) -> &(Rcvar, Rcvar) {
        self.value.get_or_init(|| {
            (
                jmespath::to_variable(&self.object),
                jmespath::to_variable(&self.old_object),
            )
        })
    }

    /// `root` with the subtrees of `request.object` and `request.oldObject` at `paths` put in
    /// (and the objects on the way to them, holding only those keys).
    fn insert_partial_into(&self, root: &Rcvar, paths: &jmespath::ObjectPaths) -> Rcvar {
        let object = partial_variable(&self.object, &paths.object);
        let old_object = partial_variable(&self.old_object, &paths.old_object);
        insert_objects(root, object, old_object)
    }

    /// `root` with `request.object` and `request.oldObject` put in.
    fn insert_into(&self, root: &Rcvar) -> Rcvar {
        let (object, old_object) = self.get();
        insert_objects(root, object.clone(), old_object.clone())
    }
}

/// The interpreter value of `value` holding only the subtrees at `paths` (field paths):
/// objects on the way keep just the keys leading to them; a value that is not an object where
/// a path goes on is kept whole, so reads of it give what they give on the whole value.
fn partial_variable(value: &Value, paths: &[Vec<String>]) -> Rcvar {
    fn build(value: &Value, paths: &[&[String]]) -> Rcvar {
        let Value::Object(map) = value else {
            return jmespath::to_variable(value);
        };
        if paths.iter().any(|p| p.is_empty()) {
            return jmespath::to_variable(value);
        }
        let mut out = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let Some((key, _)) = path.split_first() else {
                continue;
            };
            // Each key once: the first path through it gathers the others.
            if paths
                .get(..i)
                .is_some_and(|before| before.iter().any(|p| p.first() == Some(key)))
            {
                continue;
            }
            let Some(child) = map.get(key) else {
                continue;
            };
            let below: Vec<&[String]> = paths
                .iter()
                .filter(|p| p.first() == Some(key))
                .map(|p| p.get(1..).unwrap_or_default())
                .collect();
            out.insert(key.clone(), build(child, &below));
        }
        Rcvar::new(Variable::Object(out))
    }
    if paths.is_empty() {
        return Rcvar::new(Variable::Null);
    }
    let paths: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
    build(value, &paths)
}

fn null_var() -> Rcvar {
    Rcvar::new(Variable::Null)
}

/// `root` with the JSON tops converted in.
fn insert_tops(root: &Rcvar, tops: &[(String, JsonRef)]) -> Rcvar {
    let mut map = match &**root {
        Variable::Object(m) => m.clone(),
        _ => BTreeMap::new(),
    };
    for (name, value) in tops {
        let converted = value.get().map_or_else(null_var, jmespath::to_variable);
        map.insert(name.clone(), converted);
    }
    Rcvar::new(Variable::Object(map))
}

/// `root` with `request.object` and `request.oldObject` set to the given values.
fn insert_objects(root: &Rcvar, object: Rcvar, old_object: Rcvar) -> Rcvar {
    let mut map = match &**root {
        Variable::Object(m) => m.clone(),
        _ => BTreeMap::new(),
    };
    let mut request = match map.get("request").map(|r| &**r) {
        Some(Variable::Object(r)) => r.clone(),
        _ => BTreeMap::new(),
    };
    request.insert("object".to_string(), object);
    request.insert("oldObject".to_string(), old_object);
    map.insert("request".to_string(), Rcvar::new(Variable::Object(request)));
    Rcvar::new(Variable::Object(map))
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
            objects: None,
            request_json: None,
            json_tops: None,
            tops_root: Arc::default(),
            with_objects: Arc::default(),
            deferred: None,
            budget: Arc::default(),
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
            objects: None,
            request_json: None,
            json_tops: None,
            tops_root: Arc::default(),
            with_objects: Arc::default(),
            deferred: None,
            budget: Arc::default(),
        }
    }

    /// The root with the deferred `images` key in place.
    fn with_images(&self, images: &DeferredImages) -> Rcvar {
        self.with_images_in(&self.root, images)
    }

    fn with_images_in(&self, root: &Rcvar, images: &DeferredImages) -> Rcvar {
        let mut map = match &**root {
            Variable::Object(m) => m.clone(),
            _ => BTreeMap::new(),
        };
        map.insert("images".to_string(), images.get());
        Rcvar::new(Variable::Object(map))
    }

    /// Puts the deferred `images` key into the root for good (before the key is overwritten).
    fn materialize(&mut self) {
        if let Some(images) = self.images.take() {
            self.set_root(self.with_images(&images));
        }
    }

    /// Puts the deferred request objects into the root for good (before `request` is written).
    fn materialize_objects(&mut self) {
        if let Some(objects) = self.objects.take() {
            let root = objects.insert_into(&self.root);
            self.set_root(root);
        }
    }

    fn set_root(&mut self, root: Rcvar) {
        self.root = root;
        if self.json_tops.is_some() {
            self.tops_root = Arc::default();
        }
        // Only read while objects are deferred (see `root_for` and `settle_objects`).
        if self.objects.is_some() {
            self.with_objects = Arc::default();
        }
    }

    /// Once an expression has read the deferred objects they are converted: the root that holds
    /// them becomes the root, before it is changed (so later reads need no copy of it).
    fn settle_objects(&mut self) {
        if self.objects.is_some()
            && let Some(full) = self.with_objects.get().cloned()
        {
            self.set_root(full);
            self.objects = None;
        }
    }

    /// The root an expression reads.
    fn root_for(&self, expr: &Expression) -> std::borrow::Cow<'_, Rcvar> {
        use std::borrow::Cow;
        let root = match &self.objects {
            Some(objects) if expr.reads_request_objects() => {
                match (self.with_objects.get(), expr.object_paths()) {
                    // Only some subtrees are read, and the whole objects are not converted yet:
                    // those subtrees alone.
                    (None, Some(paths))
                        if objects.partial_reads.fetch_add(1, Ordering::Relaxed)
                            < MAX_PARTIAL_READS =>
                    {
                        Cow::Owned(objects.insert_partial_into(&self.root, paths))
                    }
                    _ => Cow::Borrowed(
                        self.with_objects
                            .get_or_init(|| objects.insert_into(&self.root)),
                    ),
                }
            }
            _ => Cow::Borrowed(&self.root),
        };
        let root = self.with_tops(root, expr);
        match &self.images {
            Some(images) if expr.reads_images() => Cow::Owned(self.with_images_in(&root, images)),
            _ => root,
        }
    }

    /// A context whose root is an interpreter value built by the caller, with `images` and the
    /// request's objects left to be built on first read when given.
    pub(crate) fn from_variable(
        root: Rcvar,
        images: Option<DeferredImages>,
        objects: Option<DeferredObjects>,
    ) -> Self {
        let objects = objects.map(Arc::new);
        JsonContext {
            root,
            images: images.map(Arc::new),
            request_json: objects.clone(),
            json_tops: None,
            tops_root: Arc::default(),
            objects,
            with_objects: Arc::default(),
            deferred: None,
            budget: Arc::default(),
        }
    }

    /// The request's work bounds (context data loaded, foreach elements visited).
    pub fn budget(&self) -> &RequestBudget {
        &self.budget
    }

    /// Sets top-level keys to a place in the request's objects (see `json_tops`).
    pub(crate) fn set_json_top(&mut self, names: &[&str], value: JsonRef) {
        let mut tops: Vec<(String, JsonRef)> = self
            .json_tops
            .as_deref()
            .map(|t| {
                t.iter()
                    .filter(|(n, _)| !names.contains(&n.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        tops.extend(names.iter().map(|n| (n.to_string(), value.clone())));
        self.json_tops = Some(Arc::new(tops));
        self.tops_root = Arc::default();
    }

    /// The places of `targets` (found by address) in the request's objects, when the context
    /// holds them as JSON.
    pub(crate) fn locate_in_request(&self, targets: &[&Value]) -> Vec<Option<JsonRef>> {
        match &self.request_json {
            Some(objects) => json_tops::locate(objects, targets),
            None => vec![None; targets.len()],
        }
    }

    /// Before `name` is written: a JSON top of that name is dropped (`whole`: the key is
    /// replaced) or converted into the root (a key below it is set).
    fn release_top(&mut self, name: &str, whole: bool) {
        let Some(tops) = &self.json_tops else {
            return;
        };
        let Some(pos) = tops.iter().position(|(n, _)| n == name) else {
            return;
        };
        let mut tops = tops.as_ref().clone();
        let (_, value) = tops.remove(pos);
        self.json_tops = (!tops.is_empty()).then(|| Arc::new(tops));
        self.tops_root = Arc::default();
        if !whole {
            let converted = value.get().map_or_else(null_var, jmespath::to_variable);
            let mut map = match &*self.root {
                Variable::Object(m) => m.clone(),
                _ => BTreeMap::new(),
            };
            map.insert(name.to_string(), converted);
            self.set_root(Rcvar::new(Variable::Object(map)));
        }
    }

    /// `root` with the JSON tops converted in, when `expr` may read one of them.
    fn with_tops<'r>(
        &'r self,
        root: std::borrow::Cow<'r, Rcvar>,
        expr: &Expression,
    ) -> std::borrow::Cow<'r, Rcvar> {
        use std::borrow::Cow;
        let Some(tops) = &self.json_tops else {
            return root;
        };
        if !tops.iter().any(|(n, _)| expr.reads_root_field(n)) {
            return root;
        }
        match root {
            Cow::Borrowed(r) if std::ptr::eq(r, &self.root) => {
                Cow::Borrowed(self.tops_root.get_or_init(|| insert_tops(&self.root, tops)))
            }
            other => Cow::Owned(insert_tops(&other, tops)),
        }
    }

    /// Sets several top-level keys at once (one copy of the root map).
    pub(crate) fn set_tops<const N: usize>(&mut self, entries: [(&str, Rcvar); N]) {
        for (k, _) in &entries {
            self.release_top(k, true);
        }
        self.settle_objects();
        if entries.iter().any(|(k, _)| *k == "images") {
            self.materialize();
        }
        if entries.iter().any(|(k, _)| *k == "request") {
            self.materialize_objects();
            self.request_json = None;
        }
        let mut map = match &*self.root {
            Variable::Object(m) => m.clone(),
            _ => BTreeMap::new(),
        };
        for (k, v) in entries {
            map.insert(k.to_string(), v);
        }
        self.set_root(Rcvar::new(Variable::Object(map)));
    }

    /// Evaluates an expression and returns the interpreter value (shared with the context).
    pub(crate) fn search_var(&self, expr: &Expression) -> Result<Rcvar, JmespathError> {
        self.note_query(expr);
        if let Some(found) = self.search_direct(expr) {
            return found.map(|v| v.to_variable());
        }
        expr.search_rc(&self.root_for(expr))
    }

    /// Sets `value` at a dotted path (`request.operation`, `a."b.c"`), creating objects on the way.
    pub fn set(&mut self, dotted: &str, value: &Value) {
        self.settle_objects();
        let segments = path_segments(dotted);
        if let Some(first) = segments.first() {
            self.release_top(first, segments.len() == 1);
        }
        if segments.first().is_some_and(|s| s == "images") {
            self.materialize();
        }
        if segments.first().is_some_and(|s| s == "request") {
            self.materialize_objects();
            self.request_json = None;
        }
        let root = set_in(&self.root, &segments, jmespath::to_variable(value));
        self.set_root(root);
    }

    /// True if a top-level key is present.
    pub fn contains(&self, key: &str) -> bool {
        (key == "images" && self.images.is_some())
            || self
                .json_tops
                .as_ref()
                .is_some_and(|t| t.iter().any(|(n, _)| n == key))
            || self.root.as_object().is_some_and(|m| m.contains_key(key))
    }

    /// Evaluates an expression against the context.
    pub fn search(&self, expr: &Expression) -> Result<Value, JmespathError> {
        self.note_query(expr);
        if let Some(found) = self.search_direct(expr) {
            return found.map(|v| jmespath::normalized(std::borrow::Cow::Owned(v.into_json())));
        }
        expr.search_var(&self.root_for(expr))
    }

    /// Evaluates over the request's JSON when the expression is planned for it and the request
    /// has not been rewritten (`None` otherwise: [`JsonContext::search_var`] then evaluates it).
    pub(crate) fn search_json<'a>(
        &'a self,
        expr: &Expression,
    ) -> Option<Result<jmespath::DirectValue<'a>, JmespathError>> {
        if !expr.is_direct() {
            return None;
        }
        self.note_query(expr);
        self.search_direct(expr)
    }

    /// Evaluates over the request's JSON when the expression is planned for it and the
    /// request has not been rewritten.
    fn search_direct<'a>(
        &'a self,
        expr: &Expression,
    ) -> Option<Result<jmespath::DirectValue<'a>, JmespathError>> {
        use jmespath::{DirectResolved as Resolved, DirectSource as Source};
        let sources = |s: &Source| -> Option<Resolved<'_>> {
            match s {
                Source::Object => self
                    .request_json
                    .as_ref()
                    .map(|o| Resolved::Json(&o.object)),
                Source::OldObject => self
                    .request_json
                    .as_ref()
                    .map(|o| Resolved::Json(&o.old_object)),
                Source::Top(name) => self
                    .json_tops
                    .as_ref()?
                    .iter()
                    .find(|(n, _)| n == name)?
                    .1
                    .get()
                    .map(Resolved::Json),
                // The request's other fields are small; the objects are never read this way.
                Source::Request => Some(Resolved::Var(self.root.get_field("request"))),
            }
        };
        expr.search_sources(&sources)
    }

    fn note_query(&self, expr: &Expression) {
        if let Some(d) = &self.deferred {
            Deferred::note(d, expr.as_str());
        }
    }

    /// Declares entries (name, position) as pending in a new innermost scope.
    pub(crate) fn push_deferred(&mut self, pending: Vec<(String, usize)>) {
        self.deferred = Some(Arc::new(Deferred {
            pending,
            requested: AtomicUsize::new(NONE),
            parent: self.deferred.take(),
        }));
    }

    /// Leaves the innermost scope of pending entries.
    pub(crate) fn pop_deferred(&mut self) {
        self.deferred = self.deferred.take().and_then(|d| d.parent.clone());
    }

    /// The position of the first pending entry of the innermost scope that an expression named
    /// since the scope was (re)built.
    pub(crate) fn requested_entry(&self) -> Option<usize> {
        self.deferred
            .as_ref()
            .map(|d| d.requested.load(Ordering::Relaxed))
            .filter(|p| *p != NONE)
    }

    /// Rebuilds the innermost scope keeping only the pending entries `keep` accepts, with no
    /// request recorded.
    pub(crate) fn retain_deferred(&mut self, keep: impl Fn(usize) -> bool) {
        if let Some(d) = self.deferred.take() {
            self.deferred = Some(Arc::new(Deferred {
                pending: d
                    .pending
                    .iter()
                    .filter(|(_, pos)| keep(*pos))
                    .cloned()
                    .collect(),
                requested: AtomicUsize::new(NONE),
                parent: d.parent.clone(),
            }));
        }
    }

    /// The whole context as JSON (for diagnostics and tests).
    pub fn to_value(&self) -> Value {
        let mut root = match &self.objects {
            Some(objects) => std::borrow::Cow::Owned(objects.insert_into(&self.root)),
            None => std::borrow::Cow::Borrowed(&self.root),
        };
        if let Some(tops) = &self.json_tops {
            root = std::borrow::Cow::Owned(insert_tops(&root, tops));
        }
        match &self.images {
            Some(images) => jmespath::to_json(&self.with_images_in(&root, images)),
            None => jmespath::to_json(&root),
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
    fn entry_names_match_on_word_boundaries_not_after_a_dot() {
        let cases = [
            ("cm.data.x", "cm", true),
            ("length(cm)", "cm", true),
            ("request.object.cm", "cm", false),
            ("cmx.data", "cm", false),
            ("xcm", "cm", false),
            ("a || cm", "cm", true),
            ("cm_2.x", "cm", false),
            ("cm", "", false),
        ];
        for (query, name, want) in cases {
            assert_eq!(names_entry(query, name), want, "{query} / {name}");
        }
    }

    #[test]
    fn a_query_naming_a_pending_entry_records_the_first_one() {
        let mut ctx = JsonContext::default();
        ctx.push_deferred(vec![("a".into(), 0), ("b".into(), 1)]);
        let q = |s: &str| crate::jmespath::compile(s).unwrap();
        let _ = ctx.search(&q("request.a"));
        assert_eq!(ctx.requested_entry(), None);
        let _ = ctx.search(&q("b.x"));
        let _ = ctx.search(&q("a"));
        assert_eq!(ctx.requested_entry(), Some(1));
        ctx.retain_deferred(|p| p != 1);
        assert_eq!(ctx.requested_entry(), None);
        // An inner scope shadows the outer one; its request keeps the outer one clear.
        ctx.push_deferred(vec![("a".into(), 0)]);
        let _ = ctx.search(&q("a"));
        assert_eq!(ctx.requested_entry(), Some(0));
        ctx.pop_deferred();
        assert_eq!(ctx.requested_entry(), None);
    }

    #[test]
    fn subtrees_read_alone_give_what_the_whole_objects_give() {
        let object = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"},
            "annotations": {"a.b/c": "x", "n": null}},
            "spec": {"containers": [{"name": "c", "image": "i"}], "host": "s"}});
        let old = json!({"metadata": {"name": "old"}});
        let whole = JsonContext::new(&json!({"request": {"namespace": "ns",
            "object": object.clone(), "oldObject": old.clone()}}));
        let deferred = || {
            JsonContext::from_variable(
                jmespath::to_variable(&json!({"request": {"namespace": "ns"}})),
                None,
                Some(DeferredObjects::new(
                    Arc::new(object.clone()),
                    Arc::new(old.clone()),
                )),
            )
        };
        let partial = [
            (
                "request.object.metadata.annotations.\"a.b/c\" || 'true'",
                Some(1),
            ),
            (
                "request.object.metadata.annotations.missing || 'true'",
                Some(1),
            ),
            ("request.object.metadata.name", Some(1)),
            ("request.object.metadata.nope", Some(1)),
            ("request.object.spec.containers[0].image", Some(1)),
            ("request.object.spec.containers[].name", Some(1)),
            ("request.object.spec.host.deeper", Some(1)),
            ("length(request.object.metadata.labels)", Some(1)),
            (
                "request.object.metadata.name == request.oldObject.metadata.name",
                Some(2),
            ),
            (
                "request.object.metadata.labels.app && request.namespace",
                Some(1),
            ),
            ("keys(request.object.metadata)", Some(1)),
            ("request.object", None),
            ("request.object || request.oldObject", None),
            ("request", None),
            ("@.request.object.kind", None),
            ("[request.object][0].kind", None),
        ];
        for (query, paths) in partial {
            let expr = crate::jmespath::compile(query).unwrap();
            let found = expr
                .object_paths()
                .map(|p| p.object.len() + p.old_object.len());
            assert_eq!(found, paths, "{query}");
            let ctx = deferred();
            assert_eq!(
                format!("{:?}", ctx.search(&expr)),
                format!("{:?}", whole.search(&expr)),
                "{query}"
            );
            // Nothing was converted whole for the ones read by subtree or over the JSON.
            assert_eq!(
                ctx.with_objects.get().is_none(),
                paths.is_some() || expr.is_direct(),
                "{query}"
            );
        }
        // Read by subtree again and again, the objects end up converted whole once.
        let ctx = deferred();
        // (An index of the root is left to the interpreter.)
        let expr = crate::jmespath::compile("[0] || request.object.metadata.name").unwrap();
        assert!(!expr.is_direct());
        for _ in 0..MAX_PARTIAL_READS {
            assert_eq!(ctx.search(&expr).unwrap(), json!("p"));
        }
        assert!(ctx.with_objects.get().is_none());
        assert_eq!(ctx.search(&expr).unwrap(), json!("p"));
        assert!(ctx.with_objects.get().is_some());
        // Over the JSON, the objects are never converted, and a rewritten request is read
        // from the context again.
        let mut ctx = deferred();
        let expr = crate::jmespath::compile("request.object.metadata.name").unwrap();
        assert!(expr.is_direct());
        for _ in 0..=MAX_PARTIAL_READS {
            assert_eq!(ctx.search(&expr).unwrap(), json!("p"));
        }
        assert!(ctx.with_objects.get().is_none());
        ctx.set("request.object.metadata.name", &json!("q"));
        assert_eq!(ctx.search(&expr).unwrap(), json!("q"));
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
