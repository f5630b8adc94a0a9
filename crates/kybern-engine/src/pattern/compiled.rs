//! A pattern compiled once: each map's anchors parsed and its keys put in the phase the walk
//! checks them in, scalars read once (`scalar.rs`). A request then walks only the resource.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::anchor::{self, AnchorKind};
use super::matcher::MAX_DEPTH;
use super::scalar::ScalarPattern;

/// Deepest pattern level compiled. The walk fails past depth `MAX_DEPTH`, and it descends at
/// most two pattern levels per step of depth (an existence anchor's list and its item), so no
/// walk reaches a node below this.
const MAX_NESTING: usize = 2 * MAX_DEPTH + 2;

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Map(MapNode),
    Array(Vec<Node>),
    Scalar(ScalarPattern),
    /// Deeper than any walk reaches.
    TooDeep,
}

/// When the walk checks an entry of a map (Kyverno's two phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Condition, existence, equality and negation anchors, in key order.
    Anchors,
    /// Global anchors and keys holding nested anchors, in reverse key order.
    Front,
    /// Every other key, in key order.
    Rest,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The key's anchor; `+(key)` is walked as a plain key, so it has none here.
    pub anchor: Option<AnchorKind>,
    /// What is looked up in the resource: the anchor's inner key, else the key as written.
    pub key: Box<str>,
    /// The key as written, for condition and existence anchors: the walk notes whether any
    /// resource map held them.
    pub noted: Option<Arc<str>>,
    pub phase: Phase,
    pub node: Node,
}

#[derive(Debug, Clone)]
pub(crate) struct MapNode {
    /// In key order (Go's `sort.Strings`, which a JSON map's order already is).
    pub entries: Vec<Entry>,
    /// Set when wildcard keys under `metadata.labels` or `metadata.annotations` are expanded
    /// against each resource.
    pub metadata: Option<Box<MetadataWildcards>>,
}

#[derive(Debug, Clone)]
pub(crate) struct MetadataWildcards {
    /// The entry holding `metadata`.
    pub index: usize,
    /// Its map as written.
    pub pattern: Map<String, Value>,
}

/// Compiles `value` found `nesting` levels deep; also returns how deep below it the
/// shallowest anchor key is (0: a key of this map), which decides a parent entry's phase.
pub(crate) fn compile(value: &Value, nesting: usize) -> (Node, Option<usize>) {
    if nesting > MAX_NESTING {
        return (Node::TooDeep, None);
    }
    match value {
        Value::Object(map) => {
            let mut anchor_depth: Option<usize> = None;
            let mut entries = Vec::with_capacity(map.len());
            for (raw, sub) in map {
                let parsed = anchor::parse(raw);
                let (node, below) = compile(sub, nesting + 1);
                if parsed.is_some_and(|a| a.kind != AnchorKind::AddIfNotPresent) {
                    anchor_depth = Some(0);
                }
                if let Some(d) = below {
                    anchor_depth = Some(anchor_depth.map_or(d + 1, |a| a.min(d + 1)));
                }
                let anchor = parsed.filter(|a| a.kind != AnchorKind::AddIfNotPresent);
                entries.push(Entry {
                    anchor: anchor.map(|a| a.kind),
                    key: anchor.map_or(raw.as_str(), |a| a.key).into(),
                    noted: parsed
                        .filter(|a| matches!(a.kind, AnchorKind::Condition | AnchorKind::Existence))
                        .map(|_| Arc::from(raw.as_str())),
                    phase: phase_of(anchor.map(|a| a.kind), below),
                    node,
                });
            }
            let metadata = metadata_wildcards(map).map(Box::new);
            (Node::Map(MapNode { entries, metadata }), anchor_depth)
        }
        Value::Array(items) => {
            let mut anchor_depth: Option<usize> = None;
            let nodes = items
                .iter()
                .map(|item| {
                    let (node, below) = compile(item, nesting + 1);
                    if let Some(d) = below {
                        anchor_depth = Some(anchor_depth.map_or(d + 1, |a| a.min(d + 1)));
                    }
                    node
                })
                .collect();
            (Node::Array(nodes), anchor_depth)
        }
        scalar => (Node::Scalar(ScalarPattern::new(scalar.clone())), None),
    }
}

/// The phase of an entry from its anchor and the depth of the shallowest anchor below it.
pub(crate) fn phase_of(anchor: Option<AnchorKind>, anchor_below: Option<usize>) -> Phase {
    match anchor {
        Some(kind) if anchor::is_phase_one(kind) => Phase::Anchors,
        Some(AnchorKind::Global) => Phase::Front,
        // Kyverno looks for nested anchors down to the walk's depth bound.
        _ if anchor_below.is_some_and(|d| d <= MAX_DEPTH) => Phase::Front,
        _ => Phase::Rest,
    }
}

/// The pattern's `metadata` entry, when wildcard keys under its labels or annotations will be
/// expanded against each resource.
fn metadata_wildcards(pattern: &Map<String, Value>) -> Option<MetadataWildcards> {
    let index = pattern
        .keys()
        .position(|k| anchor::parse(k).map_or(k.as_str(), |a| a.key) == "metadata")?;
    let (_, Value::Object(pmeta)) = tagged(pattern, "metadata")? else {
        return None;
    };
    let wild = ["labels", "annotations"].into_iter().any(|tag| {
        matches!(tagged(pmeta, tag), Some((_, Value::Object(data)))
            if data.keys().any(|k| crate::wildcard::contains_wildcard(k)))
    });
    wild.then(|| MetadataWildcards {
        index,
        pattern: pmeta.clone(),
    })
}

impl MetadataWildcards {
    /// The metadata pattern with its wildcard label and annotation keys replaced by the
    /// resource's keys they match (Kyverno's `wildcards.ExpandInMetadata`); `None` when
    /// nothing changes.
    pub(crate) fn expand(&self, resource: &Map<String, Value>) -> Option<Value> {
        let Value::Object(rmeta) = resource.get("metadata")? else {
            return None;
        };
        let mut new_meta = self.pattern.clone();
        let mut changed = false;
        for tag in ["labels", "annotations"] {
            let Some((tag_key, Value::Object(pdata))) = tagged(&self.pattern, tag) else {
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
        changed.then_some(Value::Object(new_meta))
    }
}

/// The entry for `tag`, written plainly or behind an anchor.
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
