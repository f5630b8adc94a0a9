//! `preconditions` and `deny.conditions` as CEL: the JMESPath of `{{ }}` keys (paths from the
//! request, `||` defaults, lists of paths) and Kyverno's operators with their type rules.
//!
//! Kyverno compares a key of any JSON type with a literal: a string key is matched with
//! wildcards, a number with numbers, a quantity string only with quantities. The CEL written
//! here dispatches on the key's type so that each case decides as Kyverno's operator does;
//! literals whose meaning depends on more than that (durations, ranges) are not converted.

use super::cel_text::{json_literal, lit, optional_field, wildcard_regex};
use super::unsupported;
use crate::pattern::value::parse_go_float;
use crate::pattern::{Operator as PatternOperator, go_sprint, operator_of};
use crate::quantity::Quantity;
use crate::variables::has_variables;
use crate::wildcard;
use ::jmespath::ast::Ast;
use serde_json::Value;

/// Where `{{ element }}` points while converting the body of a `foreach`.
#[derive(Clone, Copy, Default)]
pub(super) struct Scope<'a> {
    /// The CEL variable bound to the current element.
    pub element: Option<&'a str>,
    /// Read a path alone as missing-is-null (foreach preconditions, where the engine leaves out
    /// an element whose condition cannot be evaluated, and every operator is false on null).
    pub lenient: bool,
}

/// What is known statically of an expression's value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ty {
    /// `request.operation`: always a string, never a number, quantity or duration.
    Operation,
    /// Any JSON value.
    Dyn,
}

/// A converted JMESPath expression.
#[derive(Debug, Clone)]
pub(super) struct Operand {
    pub cel: String,
    pub ty: Ty,
}

enum Segment<'a> {
    Field(&'a str),
    Index(i32),
}

fn segments<'a>(ast: &'a Ast, out: &mut Vec<Segment<'a>>) -> bool {
    match ast {
        Ast::Field { name, .. } => {
            out.push(Segment::Field(name));
            true
        }
        Ast::Index { idx, .. } => {
            out.push(Segment::Index(*idx));
            true
        }
        Ast::Subexpr { lhs, rhs, .. } => segments(lhs, out) && segments(rhs, out),
        _ => false,
    }
}

/// The CEL root of a path and the segments left after it.
fn root<'s, 'a>(
    segs: &'s [Segment<'a>],
    scope: Scope,
) -> Result<(String, Ty, &'s [Segment<'a>]), String> {
    use Segment::Field;
    Ok(match segs {
        [Field("request"), Field("object"), rest @ ..] => ("object".into(), Ty::Dyn, rest),
        [Field("request"), Field("oldObject"), rest @ ..] => ("oldObject".into(), Ty::Dyn, rest),
        [Field("request"), Field("operation")] => ("request.operation".into(), Ty::Operation, &[]),
        [Field("request"), Field(f @ ("namespace" | "name"))] => {
            (format!("request.{f}"), Ty::Dyn, &[])
        }
        [Field("request"), Field("userInfo"), Field("username")] => {
            ("request.userInfo.username".into(), Ty::Dyn, &[])
        }
        [Field("element"), rest @ ..] if scope.element.is_some() => {
            (scope.element.unwrap_or_default().to_string(), Ty::Dyn, rest)
        }
        [Field(first), ..] => {
            return unsupported(format!(
                "the variable `{first}` is not converted (request.object, request.oldObject, request.operation, request.namespace, request.name, request.userInfo.username and foreach elements are)"
            ));
        }
        _ => return unsupported("a path that does not start with a name is not converted"),
    })
}

/// A plain path read as Kyverno reads one alone: a missing key is an error (CEL's too).
fn strict_path(segs: &[Segment], scope: Scope) -> Result<Operand, String> {
    let (mut cel, ty, rest) = root(segs, scope)?;
    for s in rest {
        match s {
            Segment::Field(k) => cel = super::cel_text::field(&cel, k).0,
            Segment::Index(i) if *i >= 0 => cel = format!("{cel}[{i}]"),
            Segment::Index(_) => return unsupported("a negative index is not converted"),
        }
    }
    Ok(Operand { cel, ty })
}

/// A plain path read inside a larger expression: missing is null.
fn lenient_path(segs: &[Segment], scope: Scope) -> Result<Operand, String> {
    let (mut cel, ty, rest) = root(segs, scope)?;
    if rest.is_empty() {
        return Ok(Operand { cel, ty });
    }
    for s in rest {
        match s {
            Segment::Field(k) => cel = optional_field(&cel, k),
            Segment::Index(i) if *i >= 0 => cel = format!("{cel}[?{i}]"),
            Segment::Index(_) => return unsupported("a negative index is not converted"),
        }
    }
    Ok(Operand {
        cel: format!("{cel}.orValue(null)"),
        ty,
    })
}

/// JMESPath truthiness of CEL variable `v`.
fn truthy(v: &str) -> String {
    format!(
        "(type({v}) == null_type ? false : type({v}) == bool ? {v} : (type({v}) == string || type({v}) == list || type({v}) == map) ? size({v}) > 0 : true)"
    )
}

fn literal_of(ast: &Ast) -> Option<Value> {
    match ast {
        Ast::Literal { value, .. } => serde_json::to_value(&**value).ok(),
        _ => None,
    }
}

/// Kyverno's autogen rewrites `request.object.spec` (and `.metadata`, and the same of
/// `oldObject`) as text; a path spelled otherwise (`request."object".spec`) keeps reading the
/// controller, while a ValidatingPolicy's autogen always reads the Pod template.
fn autogen_spelling(src: &str, segs: &[Segment]) -> Result<(), String> {
    use Segment::Field;
    if let [
        Field("request"),
        Field(o @ ("object" | "oldObject")),
        Field(f @ ("spec" | "metadata")),
        ..,
    ] = segs
    {
        let text = format!("request.{o}.{f}");
        if !src.contains(&text) {
            return unsupported(format!(
                "the path `{}` is not spelled `{text}`, so Kyverno's autogen leaves it reading the controller; a ValidatingPolicy would read the Pod template",
                src.trim()
            ));
        }
    }
    Ok(())
}

/// Converts a `{{ }}` expression (without the braces).
pub(super) fn expression(src: &str, scope: Scope) -> Result<Operand, String> {
    let ast = ::jmespath::parse(src.trim())
        .map_err(|e| format!("the JMESPath expression `{src}` does not parse: {e}"))?;
    let mut segs = Vec::new();
    if segments(&ast, &mut segs) {
        autogen_spelling(src, &segs)?;
        return if scope.lenient {
            lenient_path(&segs, scope)
        } else {
            strict_path(&segs, scope)
        };
    }
    if let Ast::Or { lhs, rhs, .. } = &ast {
        let mut segs = Vec::new();
        if segments(lhs, &mut segs)
            && let Some(default) = literal_of(rhs)
            && let Some(d) = json_literal(&default)
        {
            autogen_spelling(src, &segs)?;
            let path = lenient_path(&segs, scope)?;
            if path.ty == Ty::Operation {
                let ty = if default.is_string() && is_plain_text(default.as_str().unwrap_or("")) {
                    Ty::Operation
                } else {
                    Ty::Dyn
                };
                return Ok(Operand {
                    cel: format!("({c} != '' ? {c} : {d})", c = path.cel),
                    ty,
                });
            }
            return Ok(Operand {
                cel: format!("[{}].map(v, {} ? v : {d})[0]", path.cel, truthy("v")),
                ty: Ty::Dyn,
            });
        }
    }
    unsupported(format!(
        "the JMESPath expression `{}` is not converted (paths from the request, optionally `|| default`, are)",
        src.trim()
    ))
}

/// A list expression of `foreach`: a path, or `path.[a, b, c][]`; missing or null parts give no
/// elements, a value that is not a list is one element (as the engine iterates them).
pub(super) fn list_expression(src: &str, scope: Scope) -> Result<String, String> {
    let ast = ::jmespath::parse(src.trim())
        .map_err(|e| format!("the foreach list `{src}` does not parse: {e}"))?;
    let as_list = |segs: &[Segment]| -> Result<String, String> {
        autogen_spelling(src, segs)?;
        let p = lenient_path(segs, scope)?;
        Ok(format!(
            "[{}].map(l, type(l) == list ? l : type(l) == null_type ? [] : [l])[0]",
            p.cel
        ))
    };
    let mut segs = Vec::new();
    if segments(&ast, &mut segs) {
        return as_list(&segs);
    }
    // `prefix.[a, b][]`: a projection over the flattened multi-select list.
    if let Ast::Projection { lhs, rhs, .. } = &ast
        && matches!(**rhs, Ast::Identity { .. })
        && let Ast::Flatten { node, .. } = &**lhs
        && let Ast::Subexpr {
            lhs: prefix,
            rhs: multi,
            ..
        } = &**node
        && let Ast::MultiList { elements, .. } = &**multi
    {
        let mut base = Vec::new();
        if segments(prefix, &mut base) {
            let mut parts = Vec::new();
            for e in elements {
                let mut tail = Vec::new();
                if !segments(e, &mut tail) {
                    return unsupported(format!("the foreach list `{src}` is not converted"));
                }
                let mut full: Vec<Segment> = base
                    .iter()
                    .map(|s| match s {
                        Segment::Field(f) => Segment::Field(f),
                        Segment::Index(i) => Segment::Index(*i),
                    })
                    .collect();
                full.extend(tail);
                parts.push(as_list(&full)?);
            }
            return Ok(format!("({})", parts.join(" + ")));
        }
    }
    unsupported(format!(
        "the foreach list `{}` is not converted (a path or `path.[a, b][]` is)",
        src.trim()
    ))
}

/// One side of a condition.
enum Side {
    Literal(Value),
    Expr(Operand),
}

fn side(v: &Value, scope: Scope) -> Result<Side, String> {
    match v {
        Value::String(s) if has_variables(s) => {
            let t = s.trim();
            let inner = t
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .filter(|i| !i.contains("{{") && !i.contains("}}") && !i.starts_with('-'));
            match inner {
                Some(i) => Ok(Side::Expr(expression(i, scope)?)),
                None => unsupported(format!("the text `{s}` mixing variables is not converted")),
            }
        }
        v if crate::variables::value_has_variables(v) => {
            unsupported("a value holding variables is not converted")
        }
        v => Ok(Side::Literal(v.clone())),
    }
}

/// A string Kyverno compares as text only: not a number, quantity or duration.
fn is_plain_text(s: &str) -> bool {
    parse_go_float(s).is_none()
        && Quantity::parse(s).is_none()
        && crate::duration::parse(s).is_none()
}

/// CEL: `k` is a number.
fn is_number(k: &str) -> String {
    format!("(type({k}) == int || type({k}) == uint || type({k}) == double)")
}

/// `K` matched with a wildcard pattern (or compared, without wildcards).
fn text_match(k: &str, pattern: &str) -> String {
    if wildcard::contains_wildcard(pattern) {
        format!("{k}.matches({})", lit(&wildcard_regex(pattern)))
    } else {
        format!("{k} == {}", lit(pattern))
    }
}

/// `x` is in `values` as Kyverno's set operators see it (each value a wildcard pattern).
fn contained(x: &str, values: &[String]) -> String {
    let plain: Vec<String> = values
        .iter()
        .filter(|v| !wildcard::contains_wildcard(v))
        .map(|v| lit(v))
        .collect();
    let mut terms = Vec::new();
    if !plain.is_empty() {
        terms.push(format!("{x} in [{}]", plain.join(", ")));
    }
    for v in values.iter().filter(|v| wildcard::contains_wildcard(v)) {
        terms.push(text_match(x, v));
    }
    if terms.is_empty() {
        "false".into()
    } else {
        format!("({})", terms.join(" || "))
    }
}

/// The values of a set operator's literal, as Kyverno reads them.
fn set_values(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(go_sprint(i)),
                _ => unsupported("a list value holding maps, lists or null is not converted"),
            })
            .collect(),
        Value::String(s) => {
            if operator_of(s) == PatternOperator::InRange {
                return unsupported(format!("the range {s:?} is not converted"));
            }
            if serde_json::from_str::<Value>(s).is_ok() {
                return unsupported(format!("the JSON text {s:?} as a value is not converted"));
            }
            Ok(vec![s.clone()])
        }
        Value::Number(_) => unsupported("a number value of a set operator is not converted"),
        _ => unsupported("the value of a set operator must be a list or a string"),
    }
}

// Named after Kyverno's operators, which share the suffix.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy)]
enum SetOp {
    AnyIn,
    AllIn,
    AnyNotIn,
    AllNotIn,
}

fn set_operator(k: &Operand, values: &[String], op: SetOp) -> String {
    let scalar = |x: &str| match op {
        SetOp::AnyIn | SetOp::AllIn => contained(x, values),
        SetOp::AnyNotIn | SetOp::AllNotIn => format!("!{}", contained(x, values)),
    };
    if k.ty == Ty::Operation {
        return scalar(&k.cel);
    }
    let key = k.cel.as_str();
    let num = is_number(key);
    let each = contained("string(y)", values);
    let list = match op {
        SetOp::AnyIn => format!("{key}.exists(y, {each})"),
        SetOp::AllIn => format!("{key}.all(y, {each})"),
        SetOp::AnyNotIn => format!("{key}.exists(y, !{each})"),
        SetOp::AllNotIn => format!("!{key}.exists(y, {each})"),
    };
    format!(
        "(type({key}) == string ? {} : type({key}) == list ? {list} : (type({key}) == bool || {num}) ? {} : false)",
        scalar(key),
        scalar(&format!("string({key})"))
    )
}

/// Kyverno's deprecated `In`/`NotIn`: a scalar key is matched as by `AnyIn`; a list key must be
/// all strings, each equal to a value.
fn legacy_in(k: &Operand, values: &Value, negate: bool) -> Result<String, String> {
    let Value::Array(items) = values else {
        return unsupported("In/NotIn with a value that is not a list is not converted");
    };
    let strings: Vec<String> = items
        .iter()
        .map(|i| i.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            "In/NotIn with values that are not all strings is not converted".to_string()
        })?;
    let found = |x: &str| contained(x, &strings);
    let neg = if negate { "!" } else { "" };
    if k.ty == Ty::Operation {
        return Ok(format!("{neg}{}", found(&k.cel)));
    }
    let key = k.cel.as_str();
    let num = is_number(key);
    let all: Vec<String> = strings.iter().map(|s| lit(s)).collect();
    let list = format!(
        "({key}.all(y, type(y) == string) && {neg}{key}.all(y, y in [{}]))",
        all.join(", ")
    );
    Ok(format!(
        "(type({key}) == string ? {neg}{} : {num} ? {neg}{} : type({key}) == list ? {list} : false)",
        found(key),
        found(&format!("string({key})"))
    ))
}

fn equals(k: &Operand, v: &Value, negate: bool) -> Result<String, String> {
    let key = k.cel.as_str();
    let num = is_number(key);
    let out = match v {
        Value::String(s) => {
            if !is_plain_text(s) {
                return unsupported(format!(
                    "comparing with {s:?} (a number, quantity or duration as text) is not converted"
                ));
            }
            if k.ty == Ty::Operation {
                let m = text_match(&k.cel, s);
                return Ok(if negate { format!("!({m})") } else { m });
            }
            let m = text_match(key, s);
            if negate {
                // A quantity key is neither equal nor unequal to text (Kyverno's rule).
                format!(
                    "(type({key}) == null_type ? false : type({key}) == string ? (!isQuantity({key}) && !({m})) : true)"
                )
            } else {
                format!("(type({key}) == string && {m})")
            }
        }
        Value::Bool(b) => {
            if negate {
                format!(
                    "(type({key}) == null_type ? false : type({key}) == bool ? {key} != {b} : true)"
                )
            } else {
                format!("(type({key}) == bool && {key} == {b})")
            }
        }
        Value::Number(n) => {
            let Some(x) = n.as_f64().filter(|x| x.is_finite()) else {
                return unsupported(format!("the number {n} is not converted"));
            };
            if negate {
                format!(
                    "(type({key}) == null_type ? false : {num} ? double({key}) != {x:?} : true)"
                )
            } else {
                format!("({num} && double({key}) == {x:?})")
            }
        }
        Value::Null => {
            if negate {
                format!("type({key}) != null_type")
            } else {
                "false".into()
            }
        }
        _ => return unsupported("comparing with a list or map is not converted"),
    };
    Ok(out)
}

/// `GreaterThan` and its kin: numbers, numeric text and quantities.
fn numeric(k: &Operand, v: &Value, op: &str) -> Result<String, String> {
    const FLOAT: &str = "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$";
    let key = k.cel.as_str();
    let num = is_number(key);
    let by_float = |x: f64| {
        format!(
            "({num} ? double({key}) {op} {x:?} : type({key}) == string && {key}.matches({}) ? double({key}) {op} {x:?} : false)",
            lit(FLOAT)
        )
    };
    let out = match v {
        Value::Number(n) => match n.as_f64().filter(|x| x.is_finite()) {
            Some(x) => by_float(x),
            None => return unsupported(format!("the number {n} is not converted")),
        },
        Value::String(s) if crate::duration::parse(s).is_some() => {
            return unsupported(format!("the duration {s:?} is not converted"));
        }
        Value::String(s) => {
            let q = Quantity::parse(s).is_some();
            match parse_go_float(s) {
                Some(x) if q => format!(
                    "(type({key}) == string && isQuantity({key}) ? quantity({key}).compareTo(quantity({})) {op} 0 : {})",
                    lit(s),
                    by_float(x)
                ),
                Some(x) => by_float(x),
                None if q => format!(
                    "(type({key}) == string && isQuantity({key}) ? quantity({key}).compareTo(quantity({})) {op} 0 : false)",
                    lit(s)
                ),
                None => {
                    return unsupported(format!("comparing with {s:?} by size is not converted"));
                }
            }
        }
        _ => return unsupported("a size comparison with a value that is not a number"),
    };
    Ok(out)
}

/// One `{key, operator, value}` condition as a CEL boolean.
fn condition(c: &Value, scope: Scope) -> Result<String, String> {
    let operator = c
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = side(c.get("key").unwrap_or(&Value::Null), scope)?;
    let value = side(c.get("value").unwrap_or(&Value::Null), scope)?;
    let (key, value) = match (key, value) {
        (Side::Literal(k), Side::Literal(v)) => {
            // Both sides are known: decide now, as the engine would.
            return crate::conditions::evaluate(operator, &k, &v)
                .map(|b| b.to_string())
                .map_err(|e| e.to_string());
        }
        (Side::Expr(k), Side::Literal(v)) => (k, v),
        _ => return unsupported("a condition whose value holds variables is not converted"),
    };
    // A key that is more than a path is computed once and bound to `key`.
    let bound = key
        .cel
        .contains('(')
        .then(|| match key.cel.strip_suffix("[0]") {
            Some(l) if l.starts_with('[') && l.contains("].map(") => l.to_string(),
            _ => format!("[{}]", key.cel),
        });
    let key = match bound {
        Some(_) => Operand {
            cel: "key".into(),
            ty: key.ty,
        },
        None => key,
    };
    let body = operator_expression(operator, &key, &value)?;
    Ok(match bound {
        Some(list) => format!("{list}.all(key, {body})"),
        None => body,
    })
}

fn operator_expression(operator: &str, key: &Operand, value: &Value) -> Result<String, String> {
    let (key, value) = (key.clone(), value.clone());
    match operator.to_ascii_lowercase().as_str() {
        "equals" | "equal" => equals(&key, &value, false),
        "notequals" | "notequal" => equals(&key, &value, true),
        "in" => legacy_in(&key, &value, false),
        "notin" => legacy_in(&key, &value, true),
        "anyin" => Ok(set_operator(&key, &set_values(&value)?, SetOp::AnyIn)),
        "allin" => Ok(set_operator(&key, &set_values(&value)?, SetOp::AllIn)),
        "anynotin" => Ok(set_operator(&key, &set_values(&value)?, SetOp::AnyNotIn)),
        "allnotin" => Ok(set_operator(&key, &set_values(&value)?, SetOp::AllNotIn)),
        "greaterthan" => numeric(&key, &value, ">"),
        "greaterthanorequals" => numeric(&key, &value, ">="),
        "lessthan" => numeric(&key, &value, "<"),
        "lessthanorequals" => numeric(&key, &value, "<="),
        other => unsupported(format!("the operator {other:?} is not converted")),
    }
}

fn joined(parts: &[String], op: &str, empty: &str) -> String {
    match parts {
        [] => empty.into(),
        [one] => one.clone(),
        many => format!("({})", many.join(&format!(" {op} "))),
    }
}

/// A conditions block (`{any, all}` or a list, which is `all`) as one CEL boolean: true when the
/// conditions hold.
pub(super) fn conditions(block: &Value, scope: Scope) -> Result<String, String> {
    let list = |v: Option<&Value>| -> Result<Vec<String>, String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| condition(c, scope))
            .collect()
    };
    if block.is_array() {
        return Ok(joined(&list(Some(block))?, "&&", "true"));
    }
    let all = list(block.get("all"))?;
    let any = list(block.get("any"))?;
    let mut parts = Vec::new();
    if !all.is_empty() {
        parts.push(joined(&all, "&&", "true"));
    }
    if !any.is_empty() {
        parts.push(joined(&any, "||", "false"));
    }
    Ok(joined(&parts, "&&", "true"))
}
