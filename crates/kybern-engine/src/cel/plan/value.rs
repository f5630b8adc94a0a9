//! The planner's values: JSON inputs borrowed for the request, interpreter values shared by
//! reference count, scalars inline. Converting to the interpreter's representation happens only
//! at the boundaries (function adapter, results, fallback).

use super::Fault;
use crate::cel::value as cv;
use kube_cel::cel;
use kube_cel::cel::objects::{Key, OptionalValue};
use serde_json::Value as Json;
use std::sync::Arc;

/// A value during planned evaluation; `'p` is the lifetime of the request's inputs.
#[derive(Debug, Clone)]
pub enum V<'p> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    /// A string of an input.
    Str(&'p str),
    String(Arc<String>),
    /// An object or array of an input (scalars are read into the variants above).
    Json(&'p Json),
    List(Arc<Vec<V<'p>>>),
    /// A string-keyed map built by the engine (`variables`); later keys win.
    Map(Arc<Vec<(Arc<String>, V<'p>)>>),
    Opt(Option<Box<V<'p>>>),
    /// Any other interpreter value (maps, lists, bytes, timestamps, opaque values).
    Cel(cel::Value),
}

/// Values in `v` (itself, and every element and entry below it), counted up to `cap`.
pub fn nodes(v: &V<'_>, cap: usize) -> usize {
    fn json(v: &Json, cap: usize) -> usize {
        let mut stack = vec![v];
        let mut n = 0usize;
        while let Some(v) = stack.pop() {
            n += 1;
            if n >= cap {
                break;
            }
            match v {
                Json::Array(a) => stack.extend(a.iter()),
                Json::Object(m) => stack.extend(m.values()),
                _ => {}
            }
        }
        n
    }
    fn cel_value(v: &cel::Value, cap: usize, depth: usize) -> usize {
        if cap == 0 || depth > 256 {
            return 1;
        }
        match v {
            cel::Value::List(items) => {
                let mut n = 1usize;
                for i in items.iter() {
                    n = n.saturating_add(cel_value(i, cap.saturating_sub(n), depth + 1));
                    if n >= cap {
                        break;
                    }
                }
                n
            }
            cel::Value::Map(m) => {
                let mut n = 1usize;
                for i in m.map.values() {
                    n = n.saturating_add(cel_value(i, cap.saturating_sub(n), depth + 1));
                    if n >= cap {
                        break;
                    }
                }
                n
            }
            _ => 1,
        }
    }
    match v {
        V::Json(j) => json(j, cap),
        V::List(items) => {
            let mut n = 1usize;
            for i in items.iter() {
                n = n.saturating_add(nodes(i, cap.saturating_sub(n)));
                if n >= cap {
                    break;
                }
            }
            n
        }
        V::Map(entries) => {
            let mut n = 1usize;
            for (_, i) in entries.iter() {
                n = n.saturating_add(nodes(i, cap.saturating_sub(n)));
                if n >= cap {
                    break;
                }
            }
            n
        }
        V::Opt(Some(inner)) => nodes(inner, cap),
        V::Cel(c) => cel_value(c, cap, 0),
        _ => 1,
    }
}

/// A JSON value as the interpreter's `from_json` reads it: integral numbers are `int`.
pub fn from_json(v: &Json) -> V<'_> {
    match v {
        Json::Null => V::Null,
        Json::Bool(b) => V::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                V::Int(i)
            } else if let Some(u) = n.as_u64() {
                V::UInt(u)
            } else {
                let f = n.as_f64().unwrap_or_default();
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    #[allow(clippy::cast_possible_truncation)]
                    V::Int(f as i64)
                } else {
                    V::Double(f)
                }
            }
        }
        Json::String(s) => V::Str(s),
        Json::Array(_) | Json::Object(_) => V::Json(v),
    }
}

/// An interpreter value, scalars unpacked.
pub fn from_cel<'p>(v: cel::Value) -> V<'p> {
    match v {
        cel::Value::Null => V::Null,
        cel::Value::Bool(b) => V::Bool(b),
        cel::Value::Int(i) => V::Int(i),
        cel::Value::UInt(u) => V::UInt(u),
        cel::Value::Float(f) => V::Double(f),
        cel::Value::String(s) => V::String(s),
        other => V::Cel(other),
    }
}

fn optional(v: Option<cel::Value>) -> cel::Value {
    cel::Value::Opaque(Arc::new(match v {
        Some(v) => OptionalValue::of(v),
        None => OptionalValue::none(),
    }))
}

impl<'p> V<'p> {
    /// The interpreter's representation (a deep conversion for JSON containers).
    pub fn to_cel(&self) -> cel::Value {
        match self {
            V::Null => cel::Value::Null,
            V::Bool(b) => cel::Value::Bool(*b),
            V::Int(i) => cel::Value::Int(*i),
            V::UInt(u) => cel::Value::UInt(*u),
            V::Double(f) => cel::Value::Float(*f),
            V::Str(s) => cv::string(*s),
            V::String(s) => cel::Value::String(s.clone()),
            V::Json(j) => cv::from_json(j),
            V::List(l) => cel::Value::List(Arc::new(l.iter().map(V::to_cel).collect())),
            V::Map(m) => {
                let mut out = std::collections::HashMap::new();
                for (k, v) in m.iter() {
                    out.insert(Key::String(k.clone()), v.to_cel());
                }
                cel::Value::Map(cel::objects::Map { map: Arc::new(out) })
            }
            V::Opt(o) => optional(o.as_ref().map(|v| v.to_cel())),
            V::Cel(c) => c.clone(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// `self.field` on a map: `Ok(None)` when the key is absent, a fault on anything else.
    pub fn field(&self, key: &str) -> Result<Option<V<'p>>, Fault> {
        match self {
            V::Json(Json::Object(m)) => Ok(crate::objects::map_get(m, key).map(from_json)),
            V::Map(m) => Ok(m
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v.clone())),
            V::Cel(cel::Value::Map(m)) => Ok(m.map.get(&Key::from(key)).cloned().map(from_cel)),
            _ => Err(Fault::Unsupported),
        }
    }

    /// Whether the value is a map the planner can read.
    pub fn is_map(&self) -> bool {
        matches!(
            self,
            V::Json(Json::Object(_)) | V::Map(_) | V::Cel(cel::Value::Map(_))
        )
    }

    /// The elements of a list, or the keys of a map with `keys`.
    pub fn elements(&self, keys: bool) -> Result<Vec<V<'p>>, Fault> {
        match self {
            V::Json(Json::Array(a)) => Ok(a.iter().map(from_json).collect()),
            V::List(l) => Ok(l.as_ref().clone()),
            V::Cel(cel::Value::List(l)) => Ok(l.iter().cloned().map(from_cel).collect()),
            V::Json(Json::Object(m)) if keys => Ok(m.keys().map(|k| V::Str(k)).collect()),
            _ => Err(Fault::Unsupported),
        }
    }

    /// Length of a list, map or string (bytes, as the interpreter's `size`).
    pub fn size(&self) -> Result<i64, Fault> {
        let n = match self {
            V::Json(Json::Array(a)) => a.len(),
            V::Json(Json::Object(m)) => m.len(),
            V::List(l) => l.len(),
            V::Map(m) => m.len(),
            V::Str(s) => s.len(),
            V::String(s) => s.len(),
            V::Cel(cel::Value::List(l)) => l.len(),
            V::Cel(cel::Value::Map(m)) => m.map.len(),
            _ => return Err(Fault::Unsupported),
        };
        i64::try_from(n).map_err(|_| Fault::Unsupported)
    }

    /// A JSON-like value: scalar, string, list, or input container.
    pub fn is_plain(&self) -> bool {
        matches!(
            self,
            V::Null
                | V::Bool(_)
                | V::Int(_)
                | V::UInt(_)
                | V::Double(_)
                | V::Str(_)
                | V::String(_)
                | V::Json(_)
                | V::List(_)
        )
    }

    fn is_list(&self) -> bool {
        matches!(
            self,
            V::Json(Json::Array(_)) | V::List(_) | V::Cel(cel::Value::List(_))
        )
    }
}

/// CEL equality as the interpreter computes it: values of different types are unequal
/// (numbers included), lists element-wise, JSON maps key by key. Anything else is left to
/// the interpreter.
pub fn equals(a: &V<'_>, b: &V<'_>) -> Result<bool, Fault> {
    Ok(match (a, b) {
        (V::Null, V::Null) => true,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Int(x), V::Int(y)) => x == y,
        (V::UInt(x), V::UInt(y)) => x == y,
        (V::Double(x), V::Double(y)) => x == y,
        (x, y) if x.as_str().is_some() || y.as_str().is_some() => match (x.as_str(), y.as_str()) {
            (Some(x), Some(y)) => x == y,
            _ => scalar_vs_other(x, y)?,
        },
        (x, y) if x.is_list() && y.is_list() => {
            let (xs, ys) = (x.elements(false)?, y.elements(false)?);
            if xs.len() != ys.len() {
                return Ok(false);
            }
            for (x, y) in xs.iter().zip(ys.iter()) {
                if !equals(x, y)? {
                    return Ok(false);
                }
            }
            true
        }
        (V::Json(Json::Object(x)), V::Json(Json::Object(y))) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, xv) in x {
                match y.get(k) {
                    Some(yv) if equals(&from_json(xv), &from_json(yv))? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        (x, y) => scalar_vs_other(x, y)?,
    })
}

/// Equality of two values of which at least one is not a container handled above: unequal
/// when both are plain scalars or JSON values of different kinds, left to the interpreter
/// otherwise.
fn scalar_vs_other(a: &V<'_>, b: &V<'_>) -> Result<bool, Fault> {
    if a.is_plain() && b.is_plain() {
        Ok(false)
    } else {
        Err(Fault::Unsupported)
    }
}
