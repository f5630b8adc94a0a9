//! Event stream → `serde_json::Value` documents, with an explicit stack (no recursion), depth and
//! alias-expansion budgets, go-yaml v2 merge-key semantics and Go's key stringification.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};
use serde_json::{Map, Value};

use super::resolve::{Scalar, float_to_json, go_format_g, resolve_scalar};
use super::{Limits, YamlError};

/// A finished node: scalars stay unresolved to JSON until we know whether they are a key or a
/// value (keys keep Go's float-to-string rules).
#[derive(Debug, Clone)]
pub(super) enum NodeData {
    Scalar(Scalar),
    Value(Value),
}

#[derive(Debug, Clone)]
struct Node {
    data: NodeData,
    /// Nodes in the subtree, the cost of copying it for an alias.
    count: usize,
    /// Container nesting of the subtree (0 for a scalar).
    height: usize,
}

pub(super) enum MapKey {
    Str(String),
    Merge,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        count: usize,
        height: usize,
    },
    Map {
        map: Map<String, Value>,
        anchor: usize,
        key: Option<MapKey>,
        count: usize,
        height: usize,
    },
}

/// Problems found while converting, before the position and document are attached.
pub(super) enum Problem {
    Invalid(String),
    TooDeep,
    AliasLimit,
}

struct Builder<'l> {
    limits: &'l Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    /// Alias expansions charged so far in the whole stream.
    expanded: usize,
    root: Option<Value>,
}

impl Builder<'_> {
    /// Field path of the node currently being built, like `spec.containers[0].image`.
    fn path(&self) -> String {
        let mut out = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => out.push_str(&format!("[{}]", items.len())),
                Frame::Map { key, .. } => {
                    let segment = match key {
                        Some(MapKey::Str(k)) => k.as_str(),
                        Some(MapKey::Merge) => "<<",
                        None => continue,
                    };
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(segment);
                }
            }
        }
        if out.is_empty() {
            out.push_str("(root)");
        }
        out
    }

    fn open(&mut self, frame: Frame) -> Result<(), Problem> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(Problem::TooDeep);
        }
        self.stack.push(frame);
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    fn alias(&mut self, anchor: usize) -> Result<(), Problem> {
        let node = self
            .anchors
            .get(&anchor)
            .cloned()
            .ok_or_else(|| Problem::Invalid("unknown anchor".to_owned()))?;
        self.expanded = self.expanded.saturating_add(node.count);
        if self.expanded > self.limits.max_alias_expansions {
            return Err(Problem::AliasLimit);
        }
        if self.stack.len() + node.height > self.limits.max_depth {
            return Err(Problem::TooDeep);
        }
        self.attach(node)
    }

    fn close(&mut self) -> Result<(), Problem> {
        let Some(frame) = self.stack.pop() else {
            return Err(Problem::Invalid("unbalanced collection end".to_owned()));
        };
        let (value, anchor, count, height) = match frame {
            Frame::Seq {
                items,
                anchor,
                count,
                height,
            } => (Value::Array(items), anchor, count, height),
            Frame::Map {
                map,
                anchor,
                key,
                count,
                height,
            } => {
                if key.is_some() {
                    return Err(Problem::Invalid("mapping key without a value".to_owned()));
                }
                (Value::Object(map), anchor, count, height)
            }
        };
        let node = Node {
            data: NodeData::Value(value),
            count,
            height: height + 1,
        };
        self.remember(anchor, &node);
        self.attach(node)
    }

    /// Places a finished node into its parent (or as the document root).
    fn attach(&mut self, node: Node) -> Result<(), Problem> {
        let Node {
            data,
            count,
            height,
        } = node;
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node_value(data)?);
            return Ok(());
        };
        match parent {
            Frame::Seq {
                items,
                count: c,
                height: h,
                ..
            } => {
                items.push(node_value(data)?);
                *c = c.saturating_add(count);
                *h = (*h).max(height);
            }
            Frame::Map {
                map,
                key,
                count: c,
                height: h,
                ..
            } => {
                *c = c.saturating_add(count);
                *h = (*h).max(height);
                match key.take() {
                    None => *key = Some(map_key(data)?),
                    Some(MapKey::Str(k)) => {
                        // Duplicate keys: the last one wins, as in sigs.k8s.io/yaml's
                        // non-strict Unmarshal (what `kubectl apply` and Kyverno's loader use).
                        map.insert(k, node_value(data)?);
                    }
                    Some(MapKey::Merge) => merge_into(map, node_value(data)?)?,
                }
            }
        }
        Ok(())
    }
}

fn node_value(data: NodeData) -> Result<Value, Problem> {
    match data {
        NodeData::Value(v) => Ok(v),
        NodeData::Scalar(s) => scalar_value(s),
    }
}

pub(super) fn scalar_value(s: Scalar) -> Result<Value, Problem> {
    Ok(match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => Value::from(u),
        Scalar::Float(f) => float_to_json(f).ok_or_else(|| {
            Problem::Invalid(format!(
                "unsupported value {}: json cannot represent infinity or nan",
                go_format_g(f, false)
            ))
        })?,
        Scalar::Str(s) => Value::String(s),
        Scalar::Merge => Value::String("<<".to_owned()),
    })
}

/// Go's `convertToJSONableObject` key rules.
pub(super) fn map_key(data: NodeData) -> Result<MapKey, Problem> {
    let scalar = match data {
        NodeData::Scalar(s) => s,
        NodeData::Value(_) => {
            return Err(Problem::Invalid(
                "invalid map key: a mapping or sequence cannot be a key".to_owned(),
            ));
        }
    };
    Ok(MapKey::Str(match scalar {
        Scalar::Merge => return Ok(MapKey::Merge),
        Scalar::Str(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Float(f) => match go_format_g(f, true).as_str() {
            "+Inf" => ".inf".to_owned(),
            "-Inf" => "-.inf".to_owned(),
            "NaN" => ".nan".to_owned(),
            other => other.to_owned(),
        },
        Scalar::Null => return Err(Problem::Invalid("unsupported map key: null".to_owned())),
        Scalar::Uint(u) => {
            return Err(Problem::Invalid(format!(
                "unsupported map key: unsigned integer {u}"
            )));
        }
    }))
}

/// go-yaml v2 merges in place: keys from `<<` overwrite keys already set in the mapping, and
/// later keys overwrite merged ones. In a sequence, earlier mappings take precedence.
fn merge_into(map: &mut Map<String, Value>, value: Value) -> Result<(), Problem> {
    let bad =
        || Problem::Invalid("map merge requires map or sequence of maps as the value".to_owned());
    match value {
        Value::Object(m) => map.extend(m),
        Value::Array(items) => {
            if !items.iter().all(Value::is_object) {
                return Err(bad());
            }
            for item in items.into_iter().rev() {
                if let Value::Object(m) = item {
                    map.extend(m);
                }
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// Runs the parser over the whole stream. When it refuses the indentation of a line, the
/// stream is read again with the continuation lines of quoted scalars and flow collections
/// indented ([`super::relax`]), as go-yaml does not check those; the second reading is kept
/// when it gets further.
pub(crate) fn load(input: &str, limits: &Limits) -> (Vec<(usize, Value)>, Option<YamlError>) {
    let first = load_once(input, limits);
    if let (_, Some(YamlError::Syntax { line, message, .. })) = &first
        && message.contains("indentation")
        && let Some(relaxed) = super::relax::relax(input)
    {
        let second = load_once(&relaxed, limits);
        let further = match &second.1 {
            None => true,
            Some(e) => error_line(e) > *line,
        };
        if further {
            return second;
        }
    }
    first
}

fn error_line(e: &YamlError) -> usize {
    match e {
        YamlError::TooLarge { .. } => 0,
        YamlError::Syntax { line, .. }
        | YamlError::TooDeep { line, .. }
        | YamlError::AliasLimit { line, .. }
        | YamlError::Invalid { line, .. } => *line,
    }
}

fn load_once(input: &str, limits: &Limits) -> (Vec<(usize, Value)>, Option<YamlError>) {
    let mut docs = Vec::new();
    let mut parser = Parser::new_from_str(input);
    let mut builder = Builder {
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        expanded: 0,
        root: None,
    };
    // Index of the document being read: the number of documents already finished.
    let mut document = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(ev) => ev,
            Err(e) => {
                let mark = e.marker();
                let err = YamlError::Syntax {
                    document,
                    line: mark.line(),
                    column: mark.col() + 1,
                    message: e.info().to_owned(),
                };
                return (docs, Some(err));
            }
        };
        let result = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentStart(_) => Ok(()),
            Event::StreamEnd => break,
            Event::DocumentEnd => {
                if let Some(root) = builder.root.take() {
                    // Empty documents (`---` alone, `~`) are skipped; their index is kept.
                    if !root.is_null() {
                        docs.push((document, root));
                    }
                }
                builder.stack.clear();
                builder.anchors.clear();
                document += 1;
                Ok(())
            }
            Event::Alias(id) => builder.alias(id),
            Event::Scalar(value, style, anchor, tag) => {
                match resolve_scalar(&value, style, tag.as_deref()) {
                    Ok(scalar) => {
                        let node = Node {
                            data: NodeData::Scalar(scalar),
                            count: 1,
                            height: 0,
                        };
                        builder.remember(anchor, &node);
                        builder.attach(node)
                    }
                    Err(message) => Err(Problem::Invalid(message)),
                }
            }
            Event::SequenceStart(anchor, _) => builder.open(Frame::Seq {
                items: Vec::new(),
                anchor,
                count: 1,
                height: 0,
            }),
            Event::MappingStart(anchor, _) => builder.open(Frame::Map {
                map: Map::new(),
                anchor,
                key: None,
                count: 1,
                height: 0,
            }),
            Event::SequenceEnd | Event::MappingEnd => builder.close(),
        };
        if let Err(problem) = result {
            return (docs, Some(to_error(problem, &builder, document, span)));
        }
    }
    (docs, None)
}

fn to_error(problem: Problem, builder: &Builder<'_>, document: usize, span: Span) -> YamlError {
    let line = span.start.line();
    let column = span.start.col() + 1;
    let path = builder.path();
    match problem {
        Problem::Invalid(message) => YamlError::Invalid {
            document,
            line,
            column,
            path,
            message,
        },
        Problem::TooDeep => YamlError::TooDeep {
            document,
            line,
            column,
            path,
            limit: builder.limits.max_depth,
        },
        Problem::AliasLimit => YamlError::AliasLimit {
            document,
            line,
            column,
            limit: builder.limits.max_alias_expansions,
        },
    }
}
