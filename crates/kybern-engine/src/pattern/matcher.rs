//! The tree walk of `validate.pattern` (Kyverno's `validate.MatchPattern` and the anchor handlers).

use serde_json::{Map, Value};

use super::anchor::{self, AnchorKind};
use super::value::{go_sprint, go_type, value_matches};

/// Deepest pattern nesting we follow before failing.
pub(crate) const MAX_DEPTH: usize = 256;

/// Which anchor produced an error; it decides skip versus fail at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrKind {
    Conditional,
    Global,
    Negation,
    Other,
}

/// An error inside the walk. `wrapped` marks Kyverno's aggregated `PatternError` (skips collected
/// from several siblings) as opposed to an error raised directly by an anchor handler.
#[derive(Debug, Clone)]
pub(crate) struct MatchErr {
    pub kind: ErrKind,
    pub wrapped: bool,
    pub path: String,
    pub message: String,
}

impl MatchErr {
    fn other(path: &Path, message: String) -> Self {
        MatchErr {
            kind: ErrKind::Other,
            wrapped: false,
            path: path.to_string(),
            message,
        }
    }

    pub(crate) fn is_skip(&self) -> bool {
        matches!(self.kind, ErrKind::Conditional | ErrKind::Global)
    }

    fn combine(path: &Path, errors: &[MatchErr]) -> Self {
        let kind = errors.first().map_or(ErrKind::Conditional, |e| e.kind);
        let message = errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        MatchErr {
            kind,
            wrapped: true,
            path: path.to_string(),
            message,
        }
    }
}

type MatchResult = Result<(), MatchErr>;

/// Where the walk is, as a chain of borrowed segments: rendered to Kyverno's
/// `/spec/containers/0/` form only when an error needs it.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn write_to(&self, out: &mut String) {
        match self {
            Path::Root => out.push('/'),
            Path::Key(parent, key) => {
                parent.write_to(out);
                out.push_str(key);
                out.push('/');
            }
            Path::Index(parent, i) => {
                parent.write_to(out);
                out.push_str(&i.to_string());
                out.push('/');
            }
        }
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

/// Walk state shared across the whole pattern (Kyverno's `AnchorMap`).
#[derive(Default)]
pub(crate) struct Walker {
    /// For each condition/existence anchor seen: did any resource map hold its key?
    /// A short list: patterns hold few anchors, and a linear scan beats hashing them.
    anchors_seen: Vec<(String, bool)>,
}

impl Walker {
    /// True if some anchor key of the pattern never appeared in the resource.
    pub(crate) fn keys_are_missing(&self) -> bool {
        self.anchors_seen.iter().any(|(_, v)| !v)
    }

    fn note_anchors(
        &mut self,
        pattern: &Map<String, Value>,
        anchors: &[Option<anchor::Anchor>],
        resource: &Map<String, Value>,
    ) {
        for (key, a) in pattern.keys().zip(anchors) {
            let Some(a) = a else {
                continue;
            };
            // A negation anchor's key is meant to be absent: Kyverno's `KeysAreMissing` does not
            // count it, so a satisfied `X(key)` does not turn another mismatch into an error.
            if !matches!(a.kind, AnchorKind::Condition | AnchorKind::Existence) {
                continue;
            }
            let present = resource.contains_key(a.key);
            match self.anchors_seen.iter_mut().find(|(k, _)| k == key) {
                Some((_, seen)) => *seen |= present,
                None => self.anchors_seen.push((key.clone(), present)),
            }
        }
    }

    pub(crate) fn element(
        &mut self,
        resource: &Value,
        pattern: &Value,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        if depth > MAX_DEPTH {
            return Err(too_deep(path));
        }
        match pattern {
            Value::Object(pmap) => {
                let Value::Object(rmap) = resource else {
                    return Err(MatchErr::other(
                        path,
                        format!(
                            "pattern and resource have different structures. Path: {path}. Expected {}, found {}",
                            go_type(pattern),
                            go_type(resource)
                        ),
                    ));
                };
                self.map(rmap, pmap, path, depth)
            }
            Value::Array(parr) => {
                let Value::Array(rarr) = resource else {
                    return Err(MatchErr::other(
                        path,
                        format!(
                            "validation rule failed at path {path}, resource does not satisfy the expected overlay pattern"
                        ),
                    ));
                };
                self.array(rarr, parr, path, depth)
            }
            scalar => {
                let ok = match resource {
                    Value::Array(items) => items.iter().all(|item| value_matches(item, scalar)),
                    other => value_matches(other, scalar),
                };
                if ok {
                    Ok(())
                } else {
                    Err(scalar_mismatch(&go_sprint(resource), scalar, path))
                }
            }
        }
    }

    fn map(
        &mut self,
        resource: &Map<String, Value>,
        pattern: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        // Each key's anchor, parsed once for this map (the keys stay the same when metadata
        // wildcards are expanded below: only the value under `metadata` changes).
        let mut small: [Option<anchor::Anchor>; 16] = Default::default();
        let mut large: Vec<Option<anchor::Anchor>> = Vec::new();
        let parsed: &[Option<anchor::Anchor>] = if pattern.len() <= small.len() {
            for (slot, key) in small.iter_mut().zip(pattern.keys()) {
                *slot = anchor::parse(key);
            }
            small.get(..pattern.len()).unwrap_or_default()
        } else {
            large.extend(pattern.keys().map(|k| anchor::parse(k)));
            &large
        };
        self.note_anchors(pattern, parsed, resource);
        let mentions_metadata = pattern
            .keys()
            .zip(parsed)
            .any(|(k, a)| a.map_or(k.as_str(), |a| a.key) == "metadata");
        let expanded = if mentions_metadata {
            expand_metadata_wildcards(pattern, resource)
        } else {
            None
        };
        let pattern = expanded.as_ref().unwrap_or(pattern);

        // The map's keys iterate sorted, which is Go's `sort.Strings` order.
        // Phase 1: condition, existence, equality and negation anchors.
        let mut skips: Vec<MatchErr> = Vec::new();
        let mut applied = 0usize;
        for (sub, a) in pattern.values().zip(parsed) {
            let Some(a) = a.filter(|a| anchor::is_phase_one(a.kind)) else {
                continue;
            };
            match self.anchored(&a, sub, resource, path, depth) {
                Ok(()) => applied += 1,
                Err(e) if e.is_skip() => skips.push(e),
                Err(e) => {
                    // A failing sibling anchor does not count once a condition was not met.
                    if !skips.iter().any(|s| !s.wrapped) {
                        return Err(e);
                    }
                }
            }
        }
        if !skips.is_empty() && (applied == 0 || skips.iter().any(|s| !s.wrapped)) {
            return Err(MatchErr::combine(path, &skips));
        }

        // Phase 2: global anchors and keys holding nested anchors first (in reverse key
        // order), then the rest (in key order).
        let mut small_front = [false; 32];
        let mut large_front = Vec::new();
        let front: &mut [bool] = if pattern.len() <= small_front.len() {
            small_front.get_mut(..pattern.len()).unwrap_or_default()
        } else {
            large_front.resize(pattern.len(), false);
            &mut large_front
        };
        for ((sub, a), slot) in pattern.values().zip(parsed).zip(front.iter_mut()) {
            *slot = match a {
                Some(a) if anchor::is_phase_one(a.kind) => continue,
                Some(a) if a.kind == AnchorKind::Global => true,
                _ => has_nested_anchors(sub, 0),
            };
        }
        let entries = pattern.iter().zip(parsed).zip(front.iter());
        for (((key, sub), a), first) in entries.clone().rev() {
            if *first {
                self.handle(key, a, sub, resource, path, depth)?;
            }
        }
        for (((key, sub), a), first) in entries {
            if !*first && !a.is_some_and(|a| anchor::is_phase_one(a.kind)) {
                self.handle(key, a, sub, resource, path, depth)?;
            }
        }
        Ok(())
    }

    fn handle(
        &mut self,
        key: &str,
        parsed: &Option<anchor::Anchor>,
        sub: &Value,
        resource: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        match parsed.filter(|a| a.kind != AnchorKind::AddIfNotPresent) {
            Some(a) => self.anchored(&a, sub, resource, path, depth),
            None => self.plain_key(key, sub, resource, path, depth),
        }
    }

    fn anchored(
        &mut self,
        a: &anchor::Anchor,
        sub: &Value,
        resource: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        let current = Path::Key(path, a.key);
        let present = resource.get(a.key);
        match a.kind {
            AnchorKind::Condition => match present {
                Some(value) => self.element(value, sub, &current, depth + 1).map_err(|e| MatchErr {
                    kind: ErrKind::Conditional,
                    wrapped: false,
                    path: e.path,
                    message: format!("conditional anchor mismatch: {}", e.message),
                }),
                None => Err(MatchErr {
                    kind: ErrKind::Conditional,
                    wrapped: false,
                    path: current.to_string(),
                    message: "conditional anchor mismatch: conditional anchor key doesn't exist in the resource"
                        .to_string(),
                }),
            },
            AnchorKind::Global => match present {
                Some(value) => self.element(value, sub, &current, depth + 1).map_err(|e| MatchErr {
                    kind: ErrKind::Global,
                    wrapped: false,
                    path: e.path,
                    message: format!("global anchor mismatch: {}", e.message),
                }),
                None => Ok(()),
            },
            AnchorKind::Equality => match present {
                Some(value) => self.element(value, sub, &current, depth + 1),
                None => Ok(()),
            },
            AnchorKind::Negation => match present {
                Some(_) => {
                    let current = current.to_string();
                    Err(MatchErr {
                        kind: ErrKind::Negation,
                        wrapped: false,
                        message: format!(
                            "negation anchor matched in resource: {current} is not allowed"
                        ),
                        path: current,
                    })
                }
                None => Ok(()),
            },
            AnchorKind::Existence => match present {
                Some(value) => self.existence(value, sub, &current, depth),
                None => Ok(()),
            },
            // Handled as a plain key by the caller.
            AnchorKind::AddIfNotPresent => Ok(()),
        }
    }

    fn plain_key(
        &mut self,
        key: &str,
        sub: &Value,
        resource: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        let value = resource.get(key).unwrap_or(&Value::Null);
        if sub.as_str() == Some("*") {
            // `*` means the key must exist with a non-nil value.
            if value.is_null() {
                return Err(MatchErr::other(path, format!("{path}/{key} not found")));
            }
            return Ok(());
        }
        self.element(value, sub, &Path::Key(path, key), depth + 1)
    }

    fn existence(
        &mut self,
        value: &Value,
        sub: &Value,
        current: &Path,
        depth: usize,
    ) -> MatchResult {
        let Value::Array(items) = value else {
            return Err(MatchErr::other(
                current,
                format!(
                    "invalid resource type {}: Existence ^ () anchor can be used only on list/array type resource",
                    go_type(value)
                ),
            ));
        };
        let Value::Array(patterns) = sub else {
            return Err(MatchErr::other(
                current,
                format!(
                    "invalid pattern type {}: Pattern has to be of list to compare against resource",
                    go_type(sub)
                ),
            ));
        };
        for p in patterns {
            if !p.is_object() {
                return Err(MatchErr::other(
                    current,
                    format!(
                        "invalid pattern type {}: Pattern has to be of type map to compare against items in resource",
                        go_type(sub)
                    ),
                ));
            }
            // Each pattern element needs at least one matching resource element.
            let mut satisfied = false;
            for (i, item) in items.iter().enumerate() {
                if self
                    .element(item, p, &Path::Index(current, i), depth + 1)
                    .is_ok()
                {
                    satisfied = true;
                    break;
                }
            }
            if !satisfied {
                return Err(MatchErr::other(
                    current,
                    format!("existence anchor validation failed at path {current}"),
                ));
            }
        }
        Ok(())
    }

    fn array(
        &mut self,
        resource: &[Value],
        pattern: &[Value],
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        let Some(first) = pattern.first() else {
            return Err(MatchErr::other(path, "pattern Array empty".to_string()));
        };
        match first {
            Value::Object(_) => {
                // Only the first pattern map is used; every resource element must match it.
                let mut skips = Vec::new();
                let mut applied = 0usize;
                for (i, item) in resource.iter().enumerate() {
                    match self.element(item, first, &Path::Index(path, i), depth + 1) {
                        Ok(()) => applied += 1,
                        Err(e) if e.is_skip() => skips.push(e),
                        Err(e) => return Err(e),
                    }
                }
                if applied == 0 && !skips.is_empty() {
                    return Err(MatchErr::combine(path, &skips));
                }
                Ok(())
            }
            Value::Array(_) => {
                if resource.len() < pattern.len() {
                    // Kyverno reports this without a path, which makes the rule an error.
                    return Err(MatchErr {
                        kind: ErrKind::Other,
                        wrapped: false,
                        path: String::new(),
                        message: format!(
                            "validate Array failed, array length mismatch, resource Array len is {} and pattern Array len is {}",
                            resource.len(),
                            pattern.len()
                        ),
                    });
                }
                let mut skips = Vec::new();
                let mut applied = 0usize;
                for (i, (item, p)) in resource.iter().zip(pattern).enumerate() {
                    match self.element(item, p, &Path::Index(path, i), depth + 1) {
                        Ok(()) => applied += 1,
                        Err(e) if e.is_skip() => skips.push(e),
                        Err(e) => return Err(e),
                    }
                }
                if applied == 0 && !skips.is_empty() {
                    return Err(MatchErr::combine(path, &skips));
                }
                Ok(())
            }
            scalar => {
                // The whole list against one scalar, without copying the list.
                if depth + 1 > MAX_DEPTH {
                    return Err(too_deep(path));
                }
                if resource.iter().all(|item| value_matches(item, scalar)) {
                    Ok(())
                } else {
                    let whole = Value::Array(resource.to_vec());
                    Err(scalar_mismatch(&go_sprint(&whole), scalar, path))
                }
            }
        }
    }
}

fn too_deep(path: &Path) -> MatchErr {
    MatchErr::other(
        path,
        format!("pattern nesting deeper than {MAX_DEPTH} at {path}"),
    )
}

fn scalar_mismatch(resource: &str, scalar: &Value, path: &Path) -> MatchErr {
    MatchErr::other(
        path,
        format!(
            "resource value '{resource}' does not match '{}' at path {path}",
            go_sprint(scalar)
        ),
    )
}

/// True if the pattern holds a condition, existence, equality, negation or global anchor anywhere.
fn has_nested_anchors(pattern: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match pattern {
        Value::Object(map) => {
            map.keys()
                .any(|k| anchor::parse(k).is_some_and(|a| a.kind != AnchorKind::AddIfNotPresent))
                || map.values().any(|v| has_nested_anchors(v, depth + 1))
        }
        Value::Array(items) => items.iter().any(|v| has_nested_anchors(v, depth + 1)),
        _ => false,
    }
}

/// Expands wildcard keys under `metadata.labels` and `metadata.annotations` against the resource's
/// keys (Kyverno's `wildcards.ExpandInMetadata`). Returns `None` when nothing changes.
fn expand_metadata_wildcards(
    pattern: &Map<String, Value>,
    resource: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let (meta_key, Value::Object(pmeta)) = tagged(pattern, "metadata")? else {
        return None;
    };
    let Value::Object(rmeta) = resource.get("metadata")? else {
        return None;
    };
    let mut new_meta = pmeta.clone();
    let mut changed = false;
    for tag in ["labels", "annotations"] {
        let Some((tag_key, Value::Object(pdata))) = tagged(pmeta, tag) else {
            continue;
        };
        let Some((_, Value::Object(rdata))) = tagged(rmeta, tag) else {
            continue;
        };
        if !pdata.keys().any(|k| crate::wildcard::contains_wildcard(k)) {
            continue;
        }
        let mut expanded = Map::new();
        for (k, v) in pdata {
            let new_key = if crate::wildcard::contains_wildcard(k) {
                match anchor::parse(k) {
                    Some(a) => anchor::format(a.kind, &first_matching_key(a.key, rdata)),
                    None => first_matching_key(k, rdata),
                }
            } else {
                k.clone()
            };
            expanded.insert(new_key, v.clone());
        }
        new_meta.insert(tag_key.to_string(), Value::Object(expanded));
        changed = true;
    }
    if !changed {
        return None;
    }
    let mut out = pattern.clone();
    out.insert(meta_key.to_string(), Value::Object(new_meta));
    Some(out)
}

/// The pattern entry for `tag`, written plainly or behind an anchor.
fn tagged<'a>(map: &'a Map<String, Value>, tag: &str) -> Option<(&'a str, &'a Value)> {
    map.iter()
        .find(|(k, _)| k.as_str() == tag || anchor::parse(k).is_some_and(|a| a.key == tag))
        .map(|(k, v)| (k.as_str(), v))
}

fn first_matching_key(pattern_key: &str, resource: &Map<String, Value>) -> String {
    // Go ranges over a map in random order; the first sorted match keeps us deterministic.
    let mut keys: Vec<&String> = resource.keys().collect();
    keys.sort();
    keys.into_iter()
        .find(|k| crate::wildcard::matches(pattern_key, k))
        .cloned()
        .unwrap_or_else(|| pattern_key.to_string())
}
