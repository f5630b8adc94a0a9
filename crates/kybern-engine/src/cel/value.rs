//! Converting between JSON and CEL values, and naming CEL types and errors.

use kube_cel::cel;
use kube_cel::cel::objects::{Key, Map};
use serde_json::{Number, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// JSON → CEL. Integral numbers become `int` (Kubernetes integer fields), others `double`.
pub fn from_json(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                let f = n.as_f64().unwrap_or_default();
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    #[allow(clippy::cast_possible_truncation)]
                    cel::Value::Int(f as i64)
                } else {
                    cel::Value::Float(f)
                }
            }
        }
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(from_json).collect())),
        Value::Object(m) => {
            let map: HashMap<Key, cel::Value> = m
                .iter()
                .map(|(k, v)| (Key::from(k.clone()), from_json(v)))
                .collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// CEL → JSON. Bytes become base64 text, durations and timestamps their CEL string forms.
pub fn to_json(v: &cel::Value) -> Value {
    match v {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::Number((*i).into()),
        cel::Value::UInt(u) => Value::Number((*u).into()),
        cel::Value::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        cel::Value::String(s) => Value::String(s.to_string()),
        cel::Value::Bytes(b) => {
            use base64::Engine;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_slice()))
        }
        cel::Value::List(l) => Value::Array(l.iter().map(to_json).collect()),
        cel::Value::Map(m) => {
            let mut entries: Vec<(String, Value)> = m
                .map
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        cel::Value::Duration(d) => Value::String(format!("{}s", d.num_seconds())),
        cel::Value::Timestamp(t) => Value::String(t.to_rfc3339()),
        cel::Value::Function(name, _) => Value::String(name.to_string()),
        cel::Value::Opaque(o) => Value::String(o.runtime_type_name().to_string()),
    }
}

fn key_text(k: &Key) -> String {
    match k {
        Key::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// The CEL type name of a value, for messages.
pub fn type_name(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::List(_) => "list",
        cel::Value::Map(_) => "map",
        cel::Value::Function(_, _) => "function",
        cel::Value::Int(_) => "int",
        cel::Value::UInt(_) => "uint",
        cel::Value::Float(_) => "double",
        cel::Value::String(_) => "string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Bool(_) => "bool",
        cel::Value::Duration(_) => "google.protobuf.Duration",
        cel::Value::Timestamp(_) => "google.protobuf.Timestamp",
        cel::Value::Opaque(_) => "opaque",
        cel::Value::Null => "null_type",
    }
}

/// An evaluation error as text.
pub fn execution_error(e: &cel::ExecutionError) -> String {
    e.to_string()
}

/// A CEL string value.
pub fn string(s: impl Into<String>) -> cel::Value {
    cel::Value::String(Arc::new(s.into()))
}

/// A CEL map with string keys.
pub fn map<I: IntoIterator<Item = (String, cel::Value)>>(entries: I) -> cel::Value {
    let map: HashMap<Key, cel::Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::from(k), v))
        .collect();
    cel::Value::Map(Map { map: Arc::new(map) })
}
