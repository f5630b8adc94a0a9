//! Kyverno's preprocessing of a strategic merge patch (`strategicPreprocessing.go`): anchors are
//! checked against the resource and turned into a plain patch.
//!
//! - `+(key)`: kept as `key` when the resource lacks it, dropped otherwise;
//! - `(key)` / `<(key)`: the resource must hold `key` with a matching value, else the enclosing
//!   map's patch does not apply (a condition error) or the whole patch does not (a global one);
//! - in a list of maps, an element holding anchors anywhere is tried against every resource
//!   element; for each one it holds for, a copy without anchors and with the resource
//!   element's `name` is appended so the merge pairs them; the anchored element is dropped;
//! - `=(key)`, `^(key)`, `X(key)` are conditions too here (equality, existence, negation as in
//!   validate patterns) and never reach the patch. Kyverno leaves them in the patch as literal
//!   keys, which no resource can want.
//!
//! Like Kyverno, one working copy of an anchored list element is reused for every resource
//! element, so an add-if-not-present resolved for the first element stays resolved.

use serde_json::{Map, Value};

use super::{MAX_DEPTH, PatchError, Path};
use crate::pattern::{self, AnchorKind};

/// Why preprocessing stopped.
#[derive(Debug)]
pub(crate) enum PreError {
    /// A conditional anchor did not hold: the enclosing map (or list element) does not apply.
    Condition(String),
    /// A global anchor did not hold: the whole patch does not apply.
    Global(String),
    Fatal(PatchError),
}

type PreResult = Result<(), PreError>;

fn fatal(path: &Path<'_>, message: String) -> PreError {
    PreError::Fatal(PatchError {
        path: path.render(),
        message,
    })
}

fn anchor_kind(key: &str) -> Option<AnchorKind> {
    pattern::parse_anchor(key).map(|a| a.kind)
}

/// Kyverno's `ContainsCondition`: conditional or global.
fn is_condition(kind: Option<AnchorKind>) -> bool {
    matches!(kind, Some(AnchorKind::Condition | AnchorKind::Global))
}

/// Anchors that only test the resource (kybern also counts `=`, `^`, `X` among them).
fn is_test(kind: Option<AnchorKind>) -> bool {
    matches!(
        kind,
        Some(
            AnchorKind::Condition
                | AnchorKind::Global
                | AnchorKind::Equality
                | AnchorKind::Existence
                | AnchorKind::Negation
        )
    )
}

fn is_extra_test(kind: Option<AnchorKind>) -> bool {
    matches!(
        kind,
        Some(AnchorKind::Equality | AnchorKind::Existence | AnchorKind::Negation)
    )
}

/// Kyverno's `hasAnchor`: any anchor that makes a list element conditional.
fn is_any_anchor(kind: Option<AnchorKind>) -> bool {
    is_test(kind) || kind == Some(AnchorKind::AddIfNotPresent)
}

/// Kyverno's `IsNilOrEmpty` for a field value.
fn is_nil_or_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether `node` holds a key anchor matching `pred` anywhere (Kyverno's `hasAnchors`; a string
/// scalar that reads as a conditional or global anchor counts too).
fn has_anchors(node: &Value, pred: fn(Option<AnchorKind>) -> bool) -> bool {
    // An explicit stack: overlays may be deep, recursion is not an option here.
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                for (key, value) in map {
                    if pred(anchor_kind(key)) {
                        return true;
                    }
                    if !is_nil_or_empty(value) {
                        stack.push(value);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            Value::String(s) if is_condition(anchor_kind(s)) => return true,
            _ => {}
        }
    }
    false
}

/// Rewrites `pattern` against `resource`; `resource` is `None` where the resource has nothing.
pub(crate) fn preprocess(
    pattern: &mut Value,
    resource: Option<&Value>,
    path: &Path<'_>,
    depth: usize,
) -> PreResult {
    if depth > MAX_DEPTH {
        return Err(fatal(path, format!("patch nested deeper than {MAX_DEPTH}")));
    }
    match pattern {
        Value::Object(map) => walk_map(map, resource, path, depth),
        Value::Array(items) => walk_list(items, resource, path, depth),
        _ => Ok(()),
    }
}

fn resource_field<'a>(resource: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    resource.and_then(Value::as_object).and_then(|m| m.get(key))
}

fn walk_map(
    pattern: &mut Map<String, Value>,
    resource: Option<&Value>,
    path: &Path<'_>,
    depth: usize,
) -> PreResult {
    handle_add_if_not_present(pattern, resource);
    validate_conditions(pattern, resource, depth)?;
    for (key, value) in pattern.iter_mut() {
        if is_any_anchor(anchor_kind(key)) {
            continue;
        }
        preprocess(
            value,
            resource_field(resource, key),
            &path.key(key),
            depth + 1,
        )?;
    }
    Ok(())
}

/// Resolves `+(key)` anchors of one map; returns how many there were.
fn handle_add_if_not_present(pattern: &mut Map<String, Value>, resource: Option<&Value>) -> usize {
    let anchors: Vec<(String, String)> = pattern
        .keys()
        .filter_map(|k| {
            let a = pattern::parse_anchor(k)?;
            (a.kind == AnchorKind::AddIfNotPresent).then(|| (k.clone(), a.key.to_string()))
        })
        .collect();
    for (raw, key) in &anchors {
        let Some(value) = pattern.remove(raw) else {
            continue;
        };
        if resource_field(resource, key).is_none() {
            pattern.insert(key.clone(), value);
        }
    }
    anchors.len()
}

fn validate_conditions(
    pattern: &mut Map<String, Value>,
    resource: Option<&Value>,
    depth: usize,
) -> PreResult {
    // Global anchors first: their failure outranks a plain condition's.
    let globals = anchored_keys(pattern, |k| k == Some(AnchorKind::Global));
    check_anchors(pattern, resource, &globals, depth).map_err(PreError::Global)?;
    let conditions = anchored_keys(pattern, |k| k == Some(AnchorKind::Condition));
    check_anchors(pattern, resource, &conditions, depth).map_err(PreError::Condition)?;
    let extras = anchored_keys(pattern, is_extra_test);
    for raw in &extras {
        let Some(value) = pattern.get(raw) else {
            continue;
        };
        let mut single = Map::new();
        single.insert(raw.clone(), value.clone());
        let empty = Value::Object(Map::new());
        let target = match resource {
            Some(r @ Value::Object(_)) => r,
            _ => &empty,
        };
        if let Err(e) = pattern::validate(target, &Value::Object(single)) {
            return Err(PreError::Condition(e.message));
        }
    }
    Ok(())
}

fn anchored_keys(
    pattern: &Map<String, Value>,
    pred: impl Fn(Option<AnchorKind>) -> bool,
) -> Vec<String> {
    pattern
        .keys()
        .filter(|k| pred(anchor_kind(k)))
        .cloned()
        .collect()
}

/// Kyverno's `validateConditionsInternal`: every anchored key must be in the resource and match.
fn check_anchors(
    pattern: &mut Map<String, Value>,
    resource: Option<&Value>,
    raws: &[String],
    depth: usize,
) -> Result<(), String> {
    for raw in raws {
        let Some(key) = pattern::parse_anchor(raw).map(|a| a.key.to_string()) else {
            continue;
        };
        let Some(resource_value) = resource_field(resource, &key) else {
            return Err(format!("could not found \"{key}\" key in the resource"));
        };
        let Some(pattern_value) = pattern.get_mut(raw) else {
            continue;
        };
        // A condition whose value adds fields is not checked (Kyverno's quirk, kept).
        if let Value::Object(inner) = pattern_value
            && handle_add_if_not_present(inner, Some(resource_value)) > 0
        {
            continue;
        }
        check_condition(pattern_value, resource_value, depth)?;
    }
    Ok(())
}

/// Kyverno passes scalar YAML nodes to the pattern matcher as their string text.
fn as_condition_operand(v: &Value) -> Value {
    match v {
        Value::String(_) | Value::Object(_) | Value::Array(_) => v.clone(),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Null => Value::String("null".to_string()),
    }
}

fn check_condition(
    pattern_value: &Value,
    resource_value: &Value,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("patch nested deeper than {MAX_DEPTH}"));
    }
    let p = as_condition_operand(pattern_value);
    let r = as_condition_operand(resource_value);
    pattern::validate(&r, &p).map_err(|e| e.message)
}

fn walk_list(
    items: &mut Vec<Value>,
    resource: Option<&Value>,
    path: &Path<'_>,
    depth: usize,
) -> PreResult {
    if !items.first().is_some_and(Value::is_object) {
        return Ok(());
    }
    let resource_elements: &[Value] = match resource {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(fatal(
                path,
                format!(
                    "wrong node kind: expected SequenceNode but got {}",
                    if other.is_object() {
                        "MappingNode"
                    } else {
                        "ScalarNode"
                    }
                ),
            ));
        }
    };
    // Elements appended below are copies for the merge, not patterns to process again.
    let original_len = items.len();
    for i in 0..original_len {
        let Some(element) = items.get(i) else {
            break;
        };
        if !has_anchors(element, is_any_anchor) {
            continue;
        }
        let has_global = has_anchors(element, |k| k == Some(AnchorKind::Global));
        let mut working = element.clone();
        let mut any_global_passed = false;
        let mut last_global: Option<String> = None;
        let child_path = path.index(i);
        for resource_element in resource_elements {
            match preprocess(&mut working, Some(resource_element), &child_path, depth + 1) {
                Ok(()) => {}
                Err(PreError::Condition(_)) => continue,
                Err(PreError::Global(m)) => {
                    last_global = Some(m);
                    continue;
                }
                Err(e @ PreError::Fatal(_)) => return Err(e),
            }
            if has_global {
                any_global_passed = true;
            } else if let Some(copy) = copy_for(&working, resource_element) {
                items.push(copy);
            }
        }
        if resource.is_none() {
            match preprocess(&mut working, None, &child_path, depth + 1) {
                Ok(()) => {
                    if has_global {
                        any_global_passed = true;
                    }
                }
                Err(PreError::Condition(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        if !any_global_passed && let Some(m) = last_global {
            return Err(PreError::Global(m));
        }
    }
    Ok(())
}

/// Kyverno's `handlePatternName`: the element's patch, without anchors, named after the
/// resource element it applies to. `None` when the resource element has no name or nothing
/// would be left to patch.
fn copy_for(working: &Value, resource_element: &Value) -> Option<Value> {
    let name = resource_field(Some(resource_element), "name")?;
    if is_nil_or_empty(name) {
        return None;
    }
    let mut copy = working.clone();
    if delete_anchors(&mut copy, true) {
        return None;
    }
    let Value::Object(map) = &mut copy else {
        return None;
    };
    map.insert("name".to_string(), name.clone());
    Some(copy)
}

/// Kyverno's `deleteConditionElements` on the top-level patch.
pub(crate) fn delete_condition_elements(pattern: &mut Map<String, Value>) {
    let mut renamed: Vec<String> = Vec::new();
    pattern.retain(|key, value| {
        let kind = anchor_kind(key);
        if is_extra_test(kind) || delete_anchors(value, is_condition(kind)) {
            return false;
        }
        if is_condition(kind) {
            renamed.push(key.clone());
        }
        true
    });
    for key in renamed {
        // Kyverno would leave a top-level `(key)` literal; its value is patch content.
        if let Some(plain) = pattern::parse_anchor(&key).map(|a| a.key.to_string())
            && let Some(value) = pattern.remove(&key)
        {
            pattern.insert(plain, value);
        }
    }
}

/// Kyverno's `deleteAnchors` (with `traverseMappingNodes` false): removes condition anchors
/// whose values are only conditions, strips the others to plain keys, and drops maps and lists
/// left empty. Returns true when `node` itself should be removed from its parent.
pub(crate) fn delete_anchors(node: &mut Value, delete_scalar: bool) -> bool {
    // Recursion is bounded: `apply` rejects overlays nested deeper than MAX_DEPTH up front.
    match node {
        Value::Object(map) => delete_anchors_in_map(map),
        Value::Array(items) => {
            let was_empty = items.is_empty();
            items.retain_mut(|element| {
                let delete = if has_anchors(element, is_any_anchor) {
                    true
                } else {
                    delete_anchors(element, false)
                };
                !delete
            });
            items.is_empty() && !was_empty
        }
        _ => delete_scalar,
    }
}

fn delete_anchors_in_map(map: &mut Map<String, Value>) -> bool {
    map.retain(|k, _| !is_extra_test(anchor_kind(k)));
    let conditions = anchored_keys(map, is_condition);
    let mut anchors_left = false;
    for raw in &conditions {
        let Some(value) = map.get_mut(raw) else {
            continue;
        };
        if delete_anchors(value, true) {
            map.remove(raw);
        } else {
            anchors_left = true;
        }
    }
    if anchors_left {
        for raw in anchored_keys(map, is_condition) {
            let Some(plain) = pattern::parse_anchor(&raw).map(|a| a.key.to_string()) else {
                continue;
            };
            if let Some(value) = map.remove(&raw) {
                map.insert(plain, value);
            }
        }
    }
    let mut delete_me = true;
    map.retain(|_, value| {
        let delete = delete_anchors(value, false);
        delete_me &= delete;
        !delete
    });
    delete_me
}
