//! The tree walk of `validate.pattern` (Kyverno's `validate.MatchPattern` and the anchor handlers).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::anchor::AnchorKind;
use super::compiled::{self, Entry, MapNode, Node, Phase};
use super::value::{go_sprint, go_type};

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
    anchors_seen: Vec<(Arc<str>, bool)>,
}

impl Walker {
    /// True if some anchor key of the pattern never appeared in the resource.
    pub(crate) fn keys_are_missing(&self) -> bool {
        self.anchors_seen.iter().any(|(_, v)| !v)
    }

    fn note_anchors(&mut self, pattern: &MapNode, resource: &Map<String, Value>) {
        // A negation anchor's key is meant to be absent: Kyverno's `KeysAreMissing` does not
        // count it, so a satisfied `X(key)` does not turn another mismatch into an error.
        for entry in &pattern.entries {
            let Some(raw) = &entry.noted else {
                continue;
            };
            let present = resource.contains_key(&*entry.key);
            match self.anchors_seen.iter_mut().find(|(k, _)| k == raw) {
                Some((_, seen)) => *seen |= present,
                None => self.anchors_seen.push((raw.clone(), present)),
            }
        }
    }

    pub(crate) fn element(
        &mut self,
        resource: &Value,
        pattern: &Node,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        if depth > MAX_DEPTH {
            return Err(too_deep(path));
        }
        match pattern {
            Node::Map(pmap) => {
                let Value::Object(rmap) = resource else {
                    return Err(MatchErr::other(
                        path,
                        format!(
                            "pattern and resource have different structures. Path: {path}. Expected {}, found {}",
                            node_go_type(pattern),
                            go_type(resource)
                        ),
                    ));
                };
                self.map(rmap, pmap, path, depth)
            }
            Node::Array(parr) => {
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
            Node::Scalar(scalar) => {
                let ok = match resource {
                    Value::Array(items) => items.iter().all(|item| scalar.matches(item)),
                    other => scalar.matches(other),
                };
                if ok {
                    Ok(())
                } else {
                    Err(scalar_mismatch(&go_sprint(resource), scalar.value(), path))
                }
            }
            Node::TooDeep => Err(too_deep(path)),
        }
    }

    fn map(
        &mut self,
        resource: &Map<String, Value>,
        pattern: &MapNode,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        self.note_anchors(pattern, resource);
        // Wildcard metadata keys expanded against this resource replace the `metadata` entry's
        // pattern (the keys of this map stay the same).
        let expanded = pattern.metadata.as_ref().and_then(|m| {
            let value = m.expand(resource)?;
            let entry = pattern.entries.get(m.index)?;
            let (node, below) = compiled::compile(&value, depth + 1);
            let phase = match entry.phase {
                Phase::Anchors => Phase::Anchors,
                _ => compiled::phase_of(entry.anchor, below),
            };
            Some((m.index, node, phase))
        });
        // Phase 1: condition, existence, equality and negation anchors, in key order.
        let mut skips: Vec<MatchErr> = Vec::new();
        let mut applied = 0usize;
        for (i, entry) in pattern.entries.iter().enumerate() {
            let (phase, sub) = pick(&expanded, i, entry);
            let (Phase::Anchors, Some(kind)) = (phase, entry.anchor) else {
                continue;
            };
            match self.anchored(kind, &entry.key, sub, resource, path, depth) {
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
        for (i, entry) in pattern.entries.iter().enumerate().rev() {
            let (phase, sub) = pick(&expanded, i, entry);
            if phase == Phase::Front {
                self.handle(entry, sub, resource, path, depth)?;
            }
        }
        for (i, entry) in pattern.entries.iter().enumerate() {
            let (phase, sub) = pick(&expanded, i, entry);
            if phase == Phase::Rest {
                self.handle(entry, sub, resource, path, depth)?;
            }
        }
        Ok(())
    }

    fn handle(
        &mut self,
        entry: &Entry,
        sub: &Node,
        resource: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        match entry.anchor {
            Some(kind) => self.anchored(kind, &entry.key, sub, resource, path, depth),
            None => self.plain_key(&entry.key, sub, resource, path, depth),
        }
    }

    fn anchored(
        &mut self,
        kind: AnchorKind,
        key: &str,
        sub: &Node,
        resource: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        let current = Path::Key(path, key);
        let present = resource.get(key);
        match kind {
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
            // Compiled as a plain key.
            AnchorKind::AddIfNotPresent => Ok(()),
        }
    }

    fn plain_key(
        &mut self,
        key: &str,
        sub: &Node,
        resource: &Map<String, Value>,
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        let value = resource.get(key).unwrap_or(&Value::Null);
        if let Node::Scalar(s) = sub
            && s.value().as_str() == Some("*")
        {
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
        sub: &Node,
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
        let Node::Array(patterns) = sub else {
            return Err(MatchErr::other(
                current,
                format!(
                    "invalid pattern type {}: Pattern has to be of list to compare against resource",
                    node_go_type(sub)
                ),
            ));
        };
        for p in patterns {
            if !matches!(p, Node::Map(_)) {
                return Err(MatchErr::other(
                    current,
                    format!(
                        "invalid pattern type {}: Pattern has to be of type map to compare against items in resource",
                        node_go_type(sub)
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
        pattern: &[Node],
        path: &Path,
        depth: usize,
    ) -> MatchResult {
        let Some(first) = pattern.first() else {
            return Err(MatchErr::other(path, "pattern Array empty".to_string()));
        };
        match first {
            Node::Map(_) => {
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
            Node::Array(_) => {
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
            Node::Scalar(scalar) => {
                // The whole list against one scalar, without copying the list.
                if depth + 1 > MAX_DEPTH {
                    return Err(too_deep(path));
                }
                if resource.iter().all(|item| scalar.matches(item)) {
                    Ok(())
                } else {
                    let whole = Value::Array(resource.to_vec());
                    Err(scalar_mismatch(&go_sprint(&whole), scalar.value(), path))
                }
            }
            Node::TooDeep => Err(too_deep(path)),
        }
    }
}

/// The entry's phase and pattern, or those of its expansion against the resource.
fn pick<'n>(
    expanded: &'n Option<(usize, Node, Phase)>,
    i: usize,
    entry: &'n Entry,
) -> (Phase, &'n Node) {
    match expanded {
        Some((index, node, phase)) if *index == i => (*phase, node),
        _ => (entry.phase, &entry.node),
    }
}

/// Go's `%T` of the value a pattern node was compiled from.
fn node_go_type(node: &Node) -> &'static str {
    match node {
        Node::Map(_) | Node::TooDeep => "map[string]interface {}",
        Node::Array(_) => "[]interface {}",
        Node::Scalar(s) => go_type(s.value()),
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
