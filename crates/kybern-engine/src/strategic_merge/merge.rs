//! The merge itself, following kustomize's `merge2` walk with `ListIncreaseDirection: Prepend`
//! (what Kyverno's `patchstrategicmerge.Filter` uses):
//!
//! - maps merge key by key; a `null` in the patch removes the key; `null` values of the resource
//!   that the walk passes through are dropped too (kustomize clears fields whose value is null);
//! - lists with a merge key merge element by element; elements named by the patch come first,
//!   in patch order, then the resource's other elements; an element that merges to `{}` or is
//!   `$patch: delete`d is removed;
//! - merged lists of scalars (`finalizers`) take the patch's values first, then the others;
//! - every other list, and every scalar, is replaced by the patch's value;
//! - `$patch: replace|delete|merge` on a map, and `{$patch: replace}` as a list element;
//!   `$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are
//!   understood (the last only tolerated: order follows the rules above).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::schema::{self, Field, ListRule, Ty};

/// Where a merged list puts elements only the patch has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Before the resource's elements (kustomize's `Prepend`, what `patchStrategicMerge` uses).
    Prepend,
    /// After them (server-side apply, what MutatingPolicy apply configurations use).
    Append,
}

impl Direction {
    fn order<'a>(
        self,
        patch: &'a [&'a Value],
        base: &'a [&'a Value],
    ) -> impl Iterator<Item = &'a &'a Value> {
        let (first, second) = match self {
            Direction::Prepend => (patch, base),
            Direction::Append => (base, patch),
        };
        first.iter().chain(second.iter())
    }
}
use super::{MAX_DEPTH, PatchError, Path};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// What the schema knows about the value being walked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Schema {
    None,
    Type(Ty),
    List(ListRule),
}

impl Schema {
    fn field(self, name: &str) -> Schema {
        let Schema::Type(ty) = self else {
            return Schema::None;
        };
        match schema::field(ty, name) {
            Some(Field::Object(t)) => Schema::Type(t),
            Some(Field::MergeList(rule)) => Schema::List(rule),
            None => Schema::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Merge,
    Replace,
    Delete,
}

fn node_kind(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "MappingNode",
        Value::Array(_) => "SequenceNode",
        _ => "ScalarNode",
    }
}

fn err(path: &Path<'_>, message: String) -> PatchError {
    PatchError {
        path: path.render(),
        message,
    }
}

fn directive(patch: &Map<String, Value>, path: &Path<'_>) -> Result<Directive, PatchError> {
    match patch.get(DIRECTIVE) {
        None => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "merge" => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "replace" => Ok(Directive::Replace),
        Some(Value::String(s)) if s == "delete" => Ok(Directive::Delete),
        Some(other) => Err(err(
            path,
            format!(
                "unknown patch strategy '{}'",
                other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string)
            ),
        )),
    }
}

/// Merges `patch` into `dest`. `None` means the value is cleared (the caller drops the field).
pub(crate) fn walk(
    dest: Option<&Value>,
    patch: Option<&Value>,
    schema: Schema,
    path: &Path<'_>,
    depth: usize,
    dir: Direction,
) -> Result<Option<Value>, PatchError> {
    if depth > MAX_DEPTH {
        return Err(err(path, format!("patch nested deeper than {MAX_DEPTH}")));
    }
    // The kind of the walk is that of the first source holding a value.
    let first = [dest, patch].into_iter().flatten().find(|v| !v.is_null());
    let Some(first) = first else {
        // Nothing but nulls: a null in the patch clears, a null only in the resource is dropped.
        return Ok(None);
    };
    for v in [dest, patch].into_iter().flatten() {
        if !v.is_null() && node_kind(v) != node_kind(first) {
            return Err(err(
                path,
                format!(
                    "wrong node kind: expected {} but got {}",
                    node_kind(first),
                    node_kind(v)
                ),
            ));
        }
    }
    match first {
        Value::Object(_) => walk_map(dest, patch, schema, path, depth, dir),
        Value::Array(_) => match schema {
            Schema::List(rule) => walk_merge_list(dest, patch, rule, path, depth, dir),
            _ => Ok(patch.or(dest).cloned()),
        },
        // A present patch value wins, null included (it clears the field).
        _ => Ok(patch.or(dest).cloned()),
    }
}

fn walk_map(
    dest: Option<&Value>,
    patch: Option<&Value>,
    schema: Schema,
    path: &Path<'_>,
    depth: usize,
    dir: Direction,
) -> Result<Option<Value>, PatchError> {
    let patch_map = patch.and_then(Value::as_object);
    let (base, overlay): (&Map<String, Value>, Option<&Map<String, Value>>) =
        match (dest.and_then(Value::as_object), patch_map) {
            // Added: the patch merges with itself (drops its nulls, applies nested directives).
            (None, Some(p)) => {
                if directive(p, path)? == Directive::Delete {
                    return Ok(None);
                }
                (p, Some(p))
            }
            (None, None) => return Ok(None),
            (Some(_), None) if patch.is_some_and(Value::is_null) => return Ok(None),
            (Some(d), None) => (d, None),
            (Some(d), Some(p)) => match directive(p, path)? {
                Directive::Delete => return Ok(None),
                Directive::Replace => (p, Some(p)),
                Directive::Merge => (d, Some(p)),
            },
        };

    let mut out = Map::new();
    for key in union_of_keys(base, overlay) {
        if is_directive_key(key) {
            continue;
        }
        let child_schema = schema.field(key);
        let patch_child = overlay.and_then(|o| o.get(key));
        // A resource subtree the patch does not touch: copy it when the walk would not change it.
        if patch_child.is_none()
            && let Some(d) = base.get(key)
            && walk_is_identity(d, child_schema, depth + 1)
        {
            out.insert(key.clone(), d.clone());
            continue;
        }
        let child_path = path.key(key);
        let merged = walk(
            base.get(key),
            patch_child,
            child_schema,
            &child_path,
            depth + 1,
            dir,
        )?;
        match merged {
            None | Some(Value::Null) => {}
            Some(v) => {
                out.insert(key.clone(), v);
            }
        }
    }
    if let Some(o) = overlay {
        apply_map_directives(&mut out, o);
    }
    Ok(Some(Value::Object(out)))
}

/// The keys of both maps, in order, each once (both iterate sorted).
fn union_of_keys<'a>(
    base: &'a Map<String, Value>,
    overlay: Option<&'a Map<String, Value>>,
) -> impl Iterator<Item = &'a String> {
    let mut a = base.keys().peekable();
    let mut b = overlay.into_iter().flat_map(Map::keys).peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) => match x.cmp(y) {
            std::cmp::Ordering::Less => a.next(),
            std::cmp::Ordering::Greater => b.next(),
            std::cmp::Ordering::Equal => {
                b.next();
                a.next()
            }
        },
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// True when walking `v` with no patch returns it unchanged: no nulls (dropped), no directive
/// keys (skipped), and no merge lists (their duplicates and empty elements are dropped) below it.
fn walk_is_identity(v: &Value, schema: Schema, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match v {
        Value::Null => false,
        Value::Object(m) => m.iter().all(|(k, child)| {
            !is_directive_key(k) && walk_is_identity(child, schema.field(k), depth + 1)
        }),
        Value::Array(items) => match schema {
            Schema::List(rule) => merge_list_is_identity(items, rule, depth),
            // Lists without a merge strategy are copied whole.
            _ => true,
        },
        _ => true,
    }
}

/// A merge list walked without a patch stays as it is when nothing in it would be dropped or
/// moved: keyed lists of non-empty maps with distinct keys, or lists of distinct scalars.
fn merge_list_is_identity(items: &[Value], rule: ListRule, depth: usize) -> bool {
    let mut seen = HashSet::new();
    match rule.key {
        Some(key) => {
            let elem = rule.elem.map_or(Schema::None, Schema::Type);
            items.iter().all(|item| match item {
                Value::Object(m) if !m.is_empty() => {
                    key_of(item, key).is_some_and(|k| seen.insert(k))
                        && walk_is_identity(item, elem, depth + 1)
                }
                _ => false,
            })
        }
        // A keyless list holding maps or lists is copied whole.
        None if items.iter().any(|v| v.is_object() || v.is_array()) => true,
        None => items
            .iter()
            .all(|v| scalar_text(v).is_some_and(|t| seen.insert(t))),
    }
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(DELETE_FROM_PRIMITIVE)
        || key.starts_with(SET_ELEMENT_ORDER)
}

/// `$retainKeys` and `$deleteFromPrimitiveList/<field>` act on the merged map.
fn apply_map_directives(out: &mut Map<String, Value>, patch: &Map<String, Value>) {
    if let Some(Value::Array(retain)) = patch.get(RETAIN_KEYS) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE) else {
            continue;
        };
        let (Value::Array(remove), Some(Value::Array(list))) = (value, out.get_mut(field)) else {
            continue;
        };
        list.retain(|item| !remove.contains(item));
    }
}

/// The string form kustomize compares merge keys and scalar set members by.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn key_of(elem: &Value, key: &str) -> Option<String> {
    let v = elem.get(key)?;
    let text = scalar_text(v)?;
    // kyaml reads an empty scalar as a missing key.
    (!text.is_empty()).then_some(text)
}

fn is_replace_marker(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.len() == 1
        && m.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"))
}

fn walk_merge_list(
    dest: Option<&Value>,
    patch: Option<&Value>,
    rule: ListRule,
    path: &Path<'_>,
    depth: usize,
    dir: Direction,
) -> Result<Option<Value>, PatchError> {
    if patch.is_some_and(Value::is_null) {
        return Ok(None);
    }
    let empty = Vec::new();
    let patch_items = patch.and_then(Value::as_array);
    let mut base_items = dest.and_then(Value::as_array).unwrap_or(&empty);
    // An added list merges with itself, as kustomize does.
    if dest.is_none_or(Value::is_null) {
        base_items = patch_items.unwrap_or(&empty);
    }
    let mut patch_items: Vec<&Value> = patch_items.map(|p| p.iter().collect()).unwrap_or_default();
    // `- $patch: replace` as an element: the list becomes the patch's other elements.
    if patch_items.iter().any(|v| is_replace_marker(v)) {
        patch_items.retain(|v| !is_replace_marker(v));
        base_items = &empty;
    }
    let base_items: Vec<&Value> = base_items.iter().collect();
    let merged = match rule.key {
        Some(key) => merge_keyed(&base_items, &patch_items, key, rule, path, depth, dir)?,
        None => {
            let all_scalars = base_items
                .iter()
                .chain(patch_items.iter())
                .all(|v| !v.is_object() && !v.is_array());
            if !all_scalars {
                // A merged list without a key holding maps: nothing to pair them by.
                return Ok(patch.or(dest).cloned());
            }
            merge_scalars(&base_items, &patch_items, dir)
        }
    };
    Ok(Some(Value::Array(merged)))
}

fn merge_keyed(
    base: &[&Value],
    patch: &[&Value],
    key: &str,
    rule: ListRule,
    path: &Path<'_>,
    depth: usize,
    dir: Direction,
) -> Result<Vec<Value>, PatchError> {
    let elem_schema = rule.elem.map_or(Schema::None, Schema::Type);
    // First element of each key value on either side (a map keeps huge lists linear).
    let index = |items: &[&Value]| -> HashMap<String, usize> {
        let mut map = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(k) = key_of(item, key) {
                map.entry(k).or_insert(i);
            }
        }
        map
    };
    let base_index = index(base);
    let patch_index = index(patch);
    // Key values in merge order: the patch's first (prepend), then the resource's; or the
    // resource's first (append).
    let mut order: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for item in dir.order(patch, base) {
        if let Some(k) = key_of(item, key)
            && seen.insert(k.clone())
        {
            order.push(k);
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for k in &order {
        let d = base_index.get(k).and_then(|i| base.get(*i)).copied();
        let p = patch_index.get(k).and_then(|i| patch.get(*i)).copied();
        // An element the patch does not name, which the walk would leave as it is.
        if p.is_none()
            && let Some(d) = d
            && d.as_object().is_some_and(|m| !m.is_empty())
            && walk_is_identity(d, elem_schema, depth + 1)
        {
            out.push(d.clone());
            continue;
        }
        let child_path = path.key(k);
        let Some(mut merged) = walk(d, p, elem_schema, &child_path, depth + 1, dir)? else {
            continue;
        };
        match &mut merged {
            Value::Null => continue,
            Value::Object(m) if m.is_empty() => continue,
            Value::Object(m) if !m.contains_key(key) => {
                // Keep the element addressable by its key.
                if let Some(v) = d.or(p).and_then(|v| v.get(key)) {
                    m.insert(key.to_string(), v.clone());
                }
            }
            _ => {}
        }
        out.push(merged);
    }
    // Elements without the key cannot be paired: the resource's stay, the patch's are added.
    let child_path = path.key("-");
    for item in base.iter().filter(|v| key_of(v, key).is_none()) {
        if let Some(v) = walk(Some(item), None, elem_schema, &child_path, depth + 1, dir)?
            && !v.is_null()
        {
            out.push(v);
        }
    }
    for item in patch.iter().filter(|v| key_of(v, key).is_none()) {
        // An added list is merged with itself: its unkeyed elements were kept just above.
        if base.iter().any(|b| std::ptr::eq(*b, *item)) {
            continue;
        }
        if let Some(v) = walk(
            Some(item),
            Some(item),
            elem_schema,
            &child_path,
            depth + 1,
            dir,
        )? && !v.is_null()
        {
            out.push(v);
        }
    }
    Ok(out)
}

fn merge_scalars(base: &[&Value], patch: &[&Value], dir: Direction) -> Vec<Value> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for item in dir.order(patch, base) {
        let Some(text) = scalar_text(item) else {
            continue;
        };
        if seen.insert(text) {
            out.push((*item).clone());
        }
    }
    out
}
