//! `mutate.patchesJson6902` and the JSON patch an admission response carries.
//!
//! [`apply`] follows RFC 6902 with the options Kyverno gives `evanphx/json-patch`
//! (`SupportNegativeIndices`, `AllowMissingPathOnRemove`, `EnsurePathExistsOnAdd`); [`diff`]
//! builds the patch between two documents the way `gomodules.xyz/jsonpatch` `CreatePatch` does,
//! with object keys visited in sorted order so the output is deterministic.
//!
//! ```
//! use kybern_engine::json_patch::{apply, diff};
//! use serde_json::json;
//! let doc = json!({"metadata": {"name": "p"}});
//! let ops = json!([{"op": "add", "path": "/metadata/labels/app", "value": "web"}]);
//! let out = apply(&doc, &ops).unwrap();
//! assert_eq!(out, json!({"metadata": {"name": "p", "labels": {"app": "web"}}}));
//! assert_eq!(diff(&doc, &out), vec![json!({"op": "add", "path": "/metadata/labels", "value": {"app": "web"}})]);
//! ```

use serde_json::{Map, Value, json};

pub use crate::strategic_merge::PatchError;

/// Deepest document nesting [`apply`] accepts (it copies the document).
const MAX_DEPTH: usize = 256;

fn error(path: &str, message: impl Into<String>) -> PatchError {
    PatchError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// The operations of `patchesJson6902`: a JSON array, or a string holding a YAML or JSON list.
pub fn parse_operations(v: &Value) -> Result<Vec<Value>, PatchError> {
    let list = match v {
        Value::Array(items) => items.clone(),
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => {
            let docs = crate::yaml::parse_all(s).map_err(|e| {
                error(
                    "",
                    format!("failed to convert patchesJson6902 to JSON: {e}"),
                )
            })?;
            match docs.as_slice() {
                [] => Vec::new(),
                [Value::Array(items)] => items.clone(),
                [Value::Null] => Vec::new(),
                _ => {
                    return Err(error(
                        "",
                        "failed to decode patches: patchesJson6902 must be one list of operations",
                    ));
                }
            }
        }
        Value::Null => Vec::new(),
        _ => {
            return Err(error(
                "",
                "failed to decode patches: patchesJson6902 must be a list or a string",
            ));
        }
    };
    for (i, op) in list.iter().enumerate() {
        if !op.is_object() {
            return Err(error(
                &format!("/{i}"),
                "failed to decode patches: an operation must be an object",
            ));
        }
    }
    Ok(list)
}

/// Applies RFC 6902 `operations` (a list, or a string as [`parse_operations`] accepts) with
/// Kyverno's leniency: `remove` of a missing path is ignored, `add` creates missing parents
/// (arrays when the next token is an index or `-`, objects otherwise), negative indices count
/// from the end, `-` appends. Paths are JSON Pointers (`~1` is `/`, `~0` is `~`).
pub fn apply(resource: &Value, operations: &Value) -> Result<Value, PatchError> {
    let ops = parse_operations(operations)?;
    if crate::strategic_merge::depth_exceeds(resource, MAX_DEPTH) {
        return Err(error(
            "",
            format!("document nested deeper than {MAX_DEPTH}"),
        ));
    }
    let mut doc = resource.clone();
    for op in &ops {
        apply_one(&mut doc, op)?;
    }
    Ok(doc)
}

fn field<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op.as_object().and_then(|m| m.get(name))
}

fn pointer_of(op: &Value, name: &str) -> Result<(String, Vec<String>), PatchError> {
    let Some(raw) = field(op, name) else {
        return Err(error("", format!("operation is missing '{name}'")));
    };
    let Some(raw) = raw.as_str() else {
        return Err(error("", format!("operation '{name}' must be a string")));
    };
    Ok((raw.to_string(), parse_pointer(raw)?))
}

fn value_of(op: &Value, path: &str, kind: &str) -> Result<Value, PatchError> {
    field(op, "value")
        .cloned()
        .ok_or_else(|| error(path, format!("{kind} operation is missing 'value'")))
}

fn apply_one(doc: &mut Value, op: &Value) -> Result<(), PatchError> {
    let kind = field(op, "op").and_then(Value::as_str).unwrap_or_default();
    let (path, tokens) = pointer_of(op, "path")?;
    match kind {
        "add" => {
            let value = value_of(op, &path, kind)?;
            add(doc, &tokens, value, true, &path)
        }
        "remove" => remove(doc, &tokens, &path).map(|_| ()),
        "replace" => {
            let value = value_of(op, &path, kind)?;
            replace(doc, &tokens, value, &path)
        }
        "move" => {
            let (from, from_tokens) = pointer_of(op, "from")?;
            if from_tokens.len() < tokens.len() && tokens.starts_with(&from_tokens) {
                return Err(error(
                    &path,
                    format!("cannot move {from} into its own child"),
                ));
            }
            let Some(value) = get(doc, &from_tokens).cloned() else {
                return Err(error(
                    &from,
                    "move operation does not apply: doc is missing from path",
                ));
            };
            remove(doc, &from_tokens, &from)?;
            add(doc, &tokens, value, false, &path)
        }
        "copy" => {
            let (from, from_tokens) = pointer_of(op, "from")?;
            let Some(value) = get(doc, &from_tokens).cloned() else {
                return Err(error(
                    &from,
                    "copy operation does not apply: doc is missing from path",
                ));
            };
            add(doc, &tokens, value, false, &path)
        }
        "test" => {
            let want = field(op, "value").cloned().unwrap_or(Value::Null);
            match get(doc, &tokens) {
                Some(got) if json_equal(got, &want) => Ok(()),
                None if want.is_null() => Ok(()),
                _ => Err(error(&path, "testing value failed")),
            }
        }
        other => Err(error(
            &path,
            format!("unexpected operation kind: {other:?}"),
        )),
    }
}

/// Splits a JSON Pointer into unescaped tokens.
fn parse_pointer(raw: &str) -> Result<Vec<String>, PatchError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(error(raw, "path must start with /"));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// Go's `strconv.Atoi` on an index token (sign allowed, digits only).
fn parse_index(token: &str) -> Option<i64> {
    let digits = token.strip_prefix(['+', '-']).unwrap_or(token);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<i64>().ok()
}

/// Resolves an index into an array of `len` elements; negative indices count from the end.
fn resolve_index(token: &str, len: usize) -> Option<usize> {
    let idx = parse_index(token)?;
    let len = i64::try_from(len).ok()?;
    let idx = if idx < 0 { idx + len } else { idx };
    if (0..len).contains(&idx) {
        usize::try_from(idx).ok()
    } else {
        None
    }
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for token in tokens {
        cur = match cur {
            Value::Object(m) => m.get(token)?,
            Value::Array(a) => a.get(resolve_index(token, a.len())?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for token in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(token)?,
            Value::Array(a) => {
                let i = resolve_index(token, a.len())?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// The container for `tokens[i]`, created (with null padding in arrays) when missing.
fn ensure_parents<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    let Some((_, parents)) = tokens.split_last() else {
        return Ok(cur);
    };
    for (i, token) in parents.iter().enumerate() {
        let next_is_index = tokens
            .get(i + 1)
            .is_some_and(|t| t == "-" || parse_index(t).is_some());
        let fresh = || {
            if next_is_index {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            }
        };
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        cur = match cur {
            Value::Object(m) => {
                let slot = m.entry(token.clone()).or_insert_with(fresh);
                if slot.is_null() {
                    *slot = fresh();
                }
                slot
            }
            Value::Array(a) => {
                let invalid = || error(path, format!("unable to access invalid index: {token}"));
                let idx = match resolve_index(token, a.len()) {
                    Some(existing) => existing,
                    None if token == "-" => {
                        a.push(fresh());
                        a.len() - 1
                    }
                    None => {
                        let raw = parse_index(token).ok_or_else(invalid)?;
                        let len = i64::try_from(a.len()).map_err(|_| invalid())?;
                        if raw >= 0 {
                            // Past the end: pad with nulls up to the index, as evanphx does.
                            let idx = usize::try_from(raw).map_err(|_| invalid())?;
                            if idx > a.len().saturating_add(MAX_PADDING) {
                                return Err(error(
                                    path,
                                    format!("index {token} is too far past the end"),
                                ));
                            }
                            a.resize(idx, Value::Null);
                            a.push(fresh());
                            idx
                        } else {
                            // A negative index names an insertion point (-1 is the end).
                            let idx = usize::try_from(raw + len + 1).map_err(|_| invalid())?;
                            a.insert(idx, fresh());
                            idx
                        }
                    }
                };
                let Some(slot) = a.get_mut(idx) else {
                    return Err(invalid());
                };
                if slot.is_null() {
                    *slot = fresh();
                }
                slot
            }
            _ => {
                return Err(error(
                    path,
                    "add operation does not apply: a parent is not a container",
                ));
            }
        };
    }
    Ok(cur)
}

/// How many nulls `add` may pad an array with when it creates a parent path.
const MAX_PADDING: usize = 10_000;

fn add(
    doc: &mut Value,
    tokens: &[String],
    value: Value,
    create_parents: bool,
    path: &str,
) -> Result<(), PatchError> {
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = if create_parents {
        ensure_parents(doc, tokens, path)?
    } else {
        get_mut(doc, parents).ok_or_else(|| {
            error(
                path,
                "operation does not apply: doc is missing destination path",
            )
        })?
    };
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let invalid = || error(path, format!("unable to access invalid index: {last}"));
            let raw = parse_index(last).ok_or_else(invalid)?;
            // An insertion point ranges over len + 1 positions; -1 is the end.
            let slots = i64::try_from(a.len()).unwrap_or(i64::MAX).saturating_add(1);
            let idx = if raw < 0 { raw + slots } else { raw };
            if !(0..slots).contains(&idx) {
                return Err(invalid());
            }
            let idx = usize::try_from(idx).map_err(|_| invalid())?;
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(error(
            path,
            "add operation does not apply: parent is not a container",
        )),
    }
}

/// Removes the value at `tokens`; a missing path is not an error. Returns what was removed.
fn remove(doc: &mut Value, tokens: &[String], path: &str) -> Result<Option<Value>, PatchError> {
    let Some((last, parents)) = tokens.split_last() else {
        return Err(error(path, "cannot remove the whole document"));
    };
    let Some(parent) = get_mut(doc, parents) else {
        return Ok(None);
    };
    match parent {
        Value::Object(m) => Ok(m.remove(last)),
        Value::Array(a) => {
            if parse_index(last).is_none() {
                return Err(error(
                    path,
                    format!("unable to access invalid index: {last}"),
                ));
            }
            Ok(resolve_index(last, a.len()).map(|i| a.remove(i)))
        }
        _ => Ok(None),
    }
}

fn replace(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<(), PatchError> {
    match get_mut(doc, tokens) {
        Some(slot) => {
            *slot = value;
            Ok(())
        }
        None => Err(error(
            path,
            "replace operation does not apply: doc is missing key",
        )),
    }
}

/// Equality for `test`: numbers compare by value (`1` equals `1.0`), as Go's decoding makes them.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The RFC 6902 patch turning `original` into `patched`: object keys in sorted order (adds and
/// changes, then removals); a list whose named (or scalar) items were only inserted or only
/// removed gets one operation per such item and its other items diffed where they are; other
/// lists are compared index by index with surplus items removed from or added at the end; a
/// changed type is replaced whole.
pub fn diff(original: &Value, patched: &Value) -> Vec<Value> {
    /// One step of a path: a parent (index into `steps`) and the key or index below it. Paths
    /// are kept as steps and only written out for an operation.
    enum Step<'a> {
        Root,
        Key(usize, &'a str),
        Index(usize, usize),
    }
    /// Pending work, processed depth first so nested changes come out where the walk meets them.
    enum Task<'a> {
        Diff(&'a Value, &'a Value, usize),
        Add(usize, &'a Value),
        Remove(usize),
    }
    fn render(steps: &[Step], mut at: usize) -> String {
        use std::fmt::Write as _;
        let mut chain = Vec::with_capacity(8);
        while let Some(step @ (Step::Key(parent, _) | Step::Index(parent, _))) = steps.get(at) {
            chain.push(step);
            at = *parent;
        }
        let mut out = String::with_capacity(chain.len() * 12);
        for step in chain.iter().rev() {
            out.push('/');
            match step {
                Step::Key(_, key) => out.push_str(&escape(key)),
                Step::Index(_, i) => {
                    let _ = write!(out, "{i}");
                }
                Step::Root => {}
            }
        }
        out
    }
    let mut ops = Vec::new();
    let mut steps = vec![Step::Root];
    // An explicit stack: documents of any depth are diffed without recursion.
    let mut stack = vec![Task::Diff(original, patched, 0)];
    while let Some(task) = stack.pop() {
        let (a, b, at) = match task {
            Task::Add(at, value) => {
                ops.push(json!({"op": "add", "path": render(&steps, at), "value": value}));
                continue;
            }
            Task::Remove(at) => {
                ops.push(json!({"op": "remove", "path": render(&steps, at)}));
                continue;
            }
            Task::Diff(a, b, at) => (a, b, at),
        };
        // No whole-tree `==` here: it would recurse; equal subtrees simply yield no operations.
        // Children are pushed in reverse so that they are handled in order.
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for key in x.keys().rev().filter(|k| !y.contains_key(*k)) {
                    steps.push(Step::Key(at, key));
                    stack.push(Task::Remove(steps.len() - 1));
                }
                for (key, bv) in y.iter().rev() {
                    steps.push(Step::Key(at, key));
                    let child = steps.len() - 1;
                    stack.push(match x.get(key) {
                        None => Task::Add(child, bv),
                        Some(av) => Task::Diff(av, bv, child),
                    });
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() != y.len() && aligned(x, y).is_some() => {
                // Items inserted or removed among named items (a sidecar prepended to the
                // containers): one operation per such item, the others diffed where they moved.
                let pairs = aligned(x, y).unwrap_or_default();
                let mut tasks = Vec::with_capacity(pairs.len());
                let mut index = 0;
                for (old, new) in pairs {
                    let (a, b) = (old.and_then(|i| x.get(i)), new.and_then(|j| y.get(j)));
                    match (a, b, new) {
                        (Some(a), Some(b), Some(j)) => {
                            steps.push(Step::Index(at, j));
                            tasks.push(Task::Diff(a, b, steps.len() - 1));
                            index += 1;
                        }
                        (None, Some(b), Some(j)) => {
                            steps.push(Step::Index(at, j));
                            tasks.push(Task::Add(steps.len() - 1, b));
                            index += 1;
                        }
                        // A removed item sits after the items already kept or added.
                        _ => {
                            steps.push(Step::Index(at, index));
                            tasks.push(Task::Remove(steps.len() - 1));
                        }
                    }
                }
                stack.extend(tasks.into_iter().rev());
            }
            (Value::Array(x), Value::Array(y)) => {
                let common = x.len().min(y.len());
                for (i, (av, bv)) in x.iter().zip(y.iter()).enumerate().rev() {
                    steps.push(Step::Index(at, i));
                    stack.push(Task::Diff(av, bv, steps.len() - 1));
                }
                for (i, bv) in y.iter().enumerate().skip(common).rev() {
                    steps.push(Step::Index(at, i));
                    stack.push(Task::Add(steps.len() - 1, bv));
                }
                for i in common..x.len() {
                    steps.push(Step::Index(at, i));
                    stack.push(Task::Remove(steps.len() - 1));
                }
            }
            (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
                ops.push(json!({"op": "replace", "path": render(&steps, at), "value": b}));
            }
            _ if a == b => {}
            _ => ops.push(json!({"op": "replace", "path": render(&steps, at), "value": b})),
        }
    }
    ops
}

/// What identifies a list item across a change: an object's `name`, or a scalar itself.
fn identity(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(m) => m.get("name").filter(|n| n.is_string()),
        Value::Array(_) | Value::Null => None,
        scalar => Some(scalar),
    }
}

/// When one list is the other with items only inserted or only removed (matched by
/// [`identity`], in order), the alignment in application order: `(Some(i), Some(j))` for item
/// `i` kept at `j`, `(None, Some(j))` for an insertion at `j`, `(Some(i), None)` for a removal.
fn aligned(x: &[Value], y: &[Value]) -> Option<Vec<(Option<usize>, Option<usize>)>> {
    let (short, long, inserted) = if x.len() < y.len() {
        (x, y, true)
    } else {
        (y, x, false)
    };
    let mut pairs = Vec::with_capacity(long.len());
    let mut next = 0;
    for (l, item) in long.iter().enumerate() {
        let key = identity(item)?;
        let matched = short.get(next).and_then(identity).is_some_and(|k| k == key);
        let s = matched.then_some(next);
        if matched {
            next += 1;
        }
        pairs.push(if inserted { (s, Some(l)) } else { (Some(l), s) });
    }
    (next == short.len()).then_some(pairs)
}

fn escape(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains(['~', '/']) {
        key.replace('~', "~0").replace('/', "~1").into()
    } else {
        key.into()
    }
}

#[cfg(test)]
mod tests;
