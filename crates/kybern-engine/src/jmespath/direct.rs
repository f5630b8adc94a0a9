//! Evaluation straight over JSON. An expression that reads the context only through field
//! chains into `request.object`, `request.oldObject` or other top-level keys (the usual shape of
//! policy variables: `request.object.spec.[containers, initContainers][].ports[].hostPort`,
//! `element.securityContext.capabilities.drop[]`) is planned at compile time and evaluated over
//! the borrowed JSON of those values when the context holds them as JSON (the request's objects,
//! foreach elements taken from them), so they are never converted to interpreter values for it.
//! When a value it reads is not held as JSON, the interpreter evaluates it. Values are borrowed until an operation builds a new
//! one; functions are called through the same runtime as the interpreter, with only their
//! arguments converted.
//!
//! The interpreter (`::jmespath::interpret`) stays the reference: every rule here mirrors it
//! (missing values are null, projections drop nulls, comparisons order numbers only, equality
//! of numbers within a relative epsilon), and `tests/jmespath_direct.rs` checks the two agree
//! over the conformance corpus.

use std::borrow::Cow;

use ::jmespath::ast::{Ast, Comparator};
use ::jmespath::{ErrorReason, Rcvar, RuntimeError, Variable};
use serde_json::Value;

use super::{JmespathError, RUNTIME, runtime_message, to_json_raw, to_variable};

/// Where a field chain from the context root starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Object,
    OldObject,
    /// Another top-level key (never `request`).
    Top(String),
    /// A field of `request` other than its objects (`request.operation`, `request.userInfo`):
    /// small values the context holds as interpreter values; the one a chain reaches is
    /// converted.
    Request,
}

/// What a source resolves to.
pub(crate) enum Resolved<'a> {
    Json(&'a Value),
    /// An interpreter value: the chain is followed in it and its end converted.
    Var(Rcvar),
}

/// A planned expression.
#[derive(Debug)]
pub(crate) enum Plan {
    /// A field chain from the context root: its source, then the fields in `path`.
    Root {
        source: Source,
        path: Vec<String>,
    },
    Field(String),
    Subexpr(Box<Plan>, Box<Plan>),
    Identity,
    Literal(Value),
    Index(i32),
    Slice {
        start: Option<i32>,
        stop: Option<i32>,
        step: i32,
    },
    Or(Box<Plan>, Box<Plan>),
    And(Box<Plan>, Box<Plan>),
    Not(Box<Plan>),
    Condition(Box<Plan>, Box<Plan>),
    Comparison(Comparator, Box<Plan>, Box<Plan>),
    ObjectValues(Box<Plan>),
    Projection(Box<Plan>, Box<Plan>),
    Flatten(Box<Plan>),
    MultiList(Vec<Plan>),
    MultiHash(Vec<(String, Plan)>),
    Function {
        name: String,
        args: Vec<Plan>,
        offset: usize,
    },
    /// An expression reference, handed to a function as the interpreter hands it.
    Expref(Ast),
}

/// Plans `ast` when every read of the context root is a field chain (into `request.object`,
/// `request.oldObject` or a top-level key other than `request`), and it reads at least one;
/// `None` otherwise (the interpreter evaluates it).
pub(crate) fn plan(ast: &Ast) -> Option<Plan> {
    let mut planner = Planner { reads_root: false };
    let plan = planner.node(ast, true)?;
    planner.reads_root.then_some(plan)
}

struct Planner {
    /// Some chain reads the context root.
    reads_root: bool,
}

impl Planner {
    fn boxed(&mut self, ast: &Ast, on_root: bool) -> Option<Box<Plan>> {
        self.node(ast, on_root).map(Box::new)
    }

    /// `on_root`: the node's input is the context root, which only `Root` chains may read.
    fn node(&mut self, ast: &Ast, on_root: bool) -> Option<Plan> {
        if on_root && let Some(chain) = super::field_chain(ast) {
            let (source, rest) = match chain.as_slice() {
                ["request", "object", rest @ ..] => (Source::Object, rest),
                ["request", "oldObject", rest @ ..] => (Source::OldObject, rest),
                ["request", rest @ ..] if !rest.is_empty() => (Source::Request, rest),
                ["request", ..] | [] => return None,
                [top, rest @ ..] => (Source::Top(top.to_string()), rest),
            };
            self.reads_root = true;
            return Some(Plan::Root {
                source,
                path: rest.iter().map(|s| s.to_string()).collect(),
            });
        }
        Some(match ast {
            // Anything else reading the root itself is left to the interpreter.
            Ast::Identity { .. } | Ast::Field { .. } | Ast::Index { .. } | Ast::Slice { .. }
                if on_root =>
            {
                return None;
            }
            Ast::Identity { .. } => Plan::Identity,
            Ast::Field { name, .. } => Plan::Field(name.clone()),
            Ast::Index { idx, .. } => Plan::Index(*idx),
            Ast::Slice {
                start, stop, step, ..
            } => {
                // A zero step is a runtime error; the interpreter reports it.
                if *step == 0 {
                    return None;
                }
                Plan::Slice {
                    start: *start,
                    stop: *stop,
                    step: *step,
                }
            }
            Ast::Literal { value, .. } => Plan::Literal(to_json_raw(value)),
            Ast::Subexpr { lhs, rhs, .. } => {
                Plan::Subexpr(self.boxed(lhs, on_root)?, self.boxed(rhs, false)?)
            }
            Ast::Projection { lhs, rhs, .. } => {
                Plan::Projection(self.boxed(lhs, on_root)?, self.boxed(rhs, false)?)
            }
            Ast::Or { lhs, rhs, .. } => {
                Plan::Or(self.boxed(lhs, on_root)?, self.boxed(rhs, on_root)?)
            }
            Ast::And { lhs, rhs, .. } => {
                Plan::And(self.boxed(lhs, on_root)?, self.boxed(rhs, on_root)?)
            }
            Ast::Comparison {
                comparator,
                lhs,
                rhs,
                ..
            } => Plan::Comparison(
                comparator.clone(),
                self.boxed(lhs, on_root)?,
                self.boxed(rhs, on_root)?,
            ),
            Ast::Condition {
                predicate, then, ..
            } => Plan::Condition(self.boxed(predicate, on_root)?, self.boxed(then, on_root)?),
            Ast::Not { node, .. } => Plan::Not(self.boxed(node, on_root)?),
            Ast::Flatten { node, .. } => Plan::Flatten(self.boxed(node, on_root)?),
            Ast::ObjectValues { node, .. } => Plan::ObjectValues(self.boxed(node, on_root)?),
            Ast::MultiList { elements, .. } => Plan::MultiList(
                elements
                    .iter()
                    .map(|e| self.node(e, on_root))
                    .collect::<Option<_>>()?,
            ),
            Ast::MultiHash { elements, .. } => Plan::MultiHash(
                elements
                    .iter()
                    .map(|kv| Some((kv.key.clone(), self.node(&kv.value, on_root)?)))
                    .collect::<Option<_>>()?,
            ),
            Ast::Function { name, args, offset } => Plan::Function {
                name: name.clone(),
                args: args
                    .iter()
                    .map(|a| match a {
                        // Applied by the function to values of its other arguments, never to the
                        // root.
                        Ast::Expref { ast, .. } => Some(Plan::Expref((**ast).clone())),
                        other => self.node(other, on_root),
                    })
                    .collect::<Option<_>>()?,
                offset: *offset,
            },
            // Anywhere else an expression reference is a value of its own (compared, returned).
            Ast::Expref { .. } => return None,
        })
    }
}

/// The JSON of a source, `None` when the context does not hold it as JSON.
pub(crate) type Sources<'s, 'a> = &'s dyn Fn(&Source) -> Option<Resolved<'a>>;

/// Why an evaluation stopped: an error, or a source not held as JSON (the interpreter then
/// evaluates the expression).
enum Halt {
    Error(JmespathError),
    Unavailable,
}

impl From<JmespathError> for Halt {
    fn from(e: JmespathError) -> Self {
        Halt::Error(e)
    }
}

/// Evaluation state: the sources, the expression text for error messages, and whether the
/// expression is a plain path (missing keys are then errors, as Kyverno reports them).
struct Eval<'s, 'e, 'a> {
    sources: Sources<'s, 'a>,
    expr: &'e str,
    plain_path: bool,
}

const NULL: Value = Value::Null;

/// A value during evaluation: borrowed from the objects (or from the value a step reads), built
/// by the step, or a list built of such values (projections and multi-selects gather borrowed
/// values without copying them).
#[derive(Debug)]
pub(crate) enum Val<'b> {
    Ref(&'b Value),
    Own(Value),
    List(Vec<Val<'b>>),
}

impl<'b> Val<'b> {
    const NULL: Val<'static> = Val::Own(Value::Null);

    fn is_null(&self) -> bool {
        match self {
            Val::Ref(v) => v.is_null(),
            Val::Own(v) => v.is_null(),
            Val::List(_) => false,
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Val::Ref(v) => truthy(v),
            Val::Own(v) => truthy(v),
            Val::List(l) => !l.is_empty(),
        }
    }

    /// The value as JSON, built only for a list.
    fn as_json(&self) -> Cow<'_, Value> {
        match self {
            Val::Ref(v) => Cow::Borrowed(v),
            Val::Own(v) => Cow::Borrowed(v),
            Val::List(l) => Cow::Owned(Value::Array(l.iter().map(Val::to_json).collect())),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Val::Ref(v) => (*v).clone(),
            Val::Own(v) => v.clone(),
            Val::List(l) => Value::Array(l.iter().map(Val::to_json).collect()),
        }
    }

    /// The value as JSON, copying only what is borrowed.
    pub(crate) fn into_json(self) -> Value {
        match self {
            Val::Ref(v) => v.clone(),
            Val::Own(v) => v,
            Val::List(l) => Value::Array(l.into_iter().map(Val::into_json).collect()),
        }
    }

    /// The items of a list value (a single value is a list of one); `None` for null.
    pub(crate) fn into_items(self) -> Option<Vec<Cow<'b, Value>>> {
        let one = |v: Val<'b>| match v {
            Val::Ref(v) => Cow::Borrowed(v),
            other => Cow::Owned(other.into_json()),
        };
        Some(match self {
            Val::Ref(Value::Null) | Val::Own(Value::Null) => return None,
            Val::Ref(Value::Array(a)) => a.iter().map(Cow::Borrowed).collect(),
            Val::Own(Value::Array(a)) => a.into_iter().map(Cow::Owned).collect(),
            Val::List(items) => items.into_iter().map(one).collect(),
            other => vec![one(other)],
        })
    }

    /// The value as an interpreter value, converted straight from what it borrows.
    pub(crate) fn to_variable(&self) -> Rcvar {
        match self {
            Val::Ref(v) => to_variable(v),
            Val::Own(v) => to_variable(v),
            Val::List(l) => Rcvar::new(Variable::Array(l.iter().map(Val::to_variable).collect())),
        }
    }
}

/// Evaluates `plan` over the objects. The result keeps numbers as they are in the input (the
/// caller normalises them as it does the interpreter's results).
pub(crate) fn eval<'a>(
    plan: &Plan,
    sources: Sources<'_, 'a>,
    expr: &str,
    plain_path: bool,
) -> Option<Result<Val<'a>, JmespathError>> {
    let e = Eval {
        sources,
        expr,
        plain_path,
    };
    // The root value is never read directly (see `build`); `Null` stands in for it.
    match e.node(plan, &NULL, true) {
        Ok(v) => Some(Ok(v)),
        Err(Halt::Error(err)) => Some(Err(err)),
        Err(Halt::Unavailable) => None,
    }
}

impl<'a> Eval<'_, '_, 'a> {
    /// Evaluates `plan` on `data`; the result may borrow from `data` or from the sources.
    fn node<'b>(&self, plan: &Plan, data: &'b Value, on_root: bool) -> Result<Val<'b>, Halt>
    where
        'a: 'b,
    {
        Ok(match plan {
            Plan::Root { source, path } => {
                let mut cur: &'b Value = match (self.sources)(source) {
                    Some(Resolved::Json(v)) => v,
                    Some(Resolved::Var(var)) => return self.var_chain(var, path),
                    None => return Err(Halt::Unavailable),
                };
                for key in path {
                    match self.field(cur, key)? {
                        Some(v) => cur = v,
                        None => return Ok(Val::NULL),
                    }
                }
                Val::Ref(cur)
            }
            Plan::Field(name) => match self.field(data, name)? {
                Some(v) => Val::Ref(v),
                None => Val::NULL,
            },
            Plan::Subexpr(lhs, rhs) => self.then(self.node(lhs, data, on_root)?, rhs)?,
            Plan::Identity => Val::Ref(data),
            Plan::Literal(v) => Val::Own(v.clone()),
            Plan::Index(idx) => match data {
                Value::Array(a) => match index(a.len(), *idx).and_then(|i| a.get(i)) {
                    Some(v) => Val::Ref(v),
                    None => Val::NULL,
                },
                _ => Val::NULL,
            },
            Plan::Slice { start, stop, step } => match data {
                Value::Array(a) => Val::List(
                    slice(a, *start, *stop, *step)
                        .into_iter()
                        .map(Val::Ref)
                        .collect(),
                ),
                _ => Val::NULL,
            },
            Plan::Or(lhs, rhs) => {
                let left = self.node(lhs, data, on_root)?;
                if left.truthy() {
                    left
                } else {
                    self.node(rhs, data, on_root)?
                }
            }
            Plan::And(lhs, rhs) => {
                let left = self.node(lhs, data, on_root)?;
                if !left.truthy() {
                    left
                } else {
                    self.node(rhs, data, on_root)?
                }
            }
            Plan::Not(node) => Val::Own(Value::Bool(!self.node(node, data, on_root)?.truthy())),
            Plan::Condition(predicate, then) => {
                if self.node(predicate, data, on_root)?.truthy() {
                    self.node(then, data, on_root)?
                } else {
                    Val::NULL
                }
            }
            Plan::Comparison(cmp, lhs, rhs) => {
                let left = self.node(lhs, data, on_root)?;
                let right = self.node(rhs, data, on_root)?;
                Val::Own(
                    compare(cmp, &left.as_json(), &right.as_json())
                        .map_or(Value::Null, Value::Bool),
                )
            }
            Plan::ObjectValues(node) => match self.node(node, data, on_root)? {
                Val::Ref(Value::Object(m)) => Val::List(m.values().map(Val::Ref).collect()),
                Val::Own(Value::Object(m)) => {
                    Val::Own(Value::Array(m.into_iter().map(|(_, v)| v).collect()))
                }
                _ => Val::NULL,
            },
            Plan::Projection(lhs, rhs) => {
                let mut collected = Vec::new();
                for element in self.elements(self.node(lhs, data, on_root)?) {
                    let Some(element) = element else {
                        return Ok(Val::NULL);
                    };
                    let v = self.then(element, rhs)?;
                    if !v.is_null() {
                        collected.push(v);
                    }
                }
                Val::List(collected)
            }
            Plan::Flatten(node) => {
                let mut collected = Vec::new();
                for element in self.elements(self.node(node, data, on_root)?) {
                    let Some(element) = element else {
                        return Ok(Val::NULL);
                    };
                    match element {
                        Val::Ref(Value::Array(inner)) => {
                            collected.extend(inner.iter().map(Val::Ref))
                        }
                        Val::Own(Value::Array(inner)) => {
                            collected.extend(inner.into_iter().map(Val::Own))
                        }
                        Val::List(inner) => collected.extend(inner),
                        other => collected.push(other),
                    }
                }
                Val::List(collected)
            }
            Plan::MultiList(elements) => {
                // The root is an object, never null.
                if !on_root && data.is_null() {
                    return Ok(Val::NULL);
                }
                let mut collected = Vec::with_capacity(elements.len());
                for node in elements {
                    collected.push(self.node(node, data, on_root)?);
                }
                Val::List(collected)
            }
            Plan::MultiHash(elements) => {
                if !on_root && data.is_null() {
                    return Ok(Val::NULL);
                }
                let mut collected = serde_json::Map::new();
                for (key, node) in elements {
                    let v = self.node(node, data, on_root)?.into_json();
                    collected.insert(key.clone(), v);
                }
                Val::Own(Value::Object(collected))
            }
            Plan::Function { name, args, offset } => {
                if let [arg] = args.as_slice()
                    && !matches!(arg, Plan::Expref(_))
                    && is_native(name)
                {
                    let v = self.node(arg, data, on_root)?;
                    return Ok(Val::Own(match native(name, &v) {
                        Some(out) => out,
                        // Wrong argument types: the runtime gives its own error.
                        None => self.call(name, &[v.to_variable()], *offset)?,
                    }));
                }
                let mut fn_args: Vec<Rcvar> = Vec::with_capacity(args.len());
                for arg in args {
                    fn_args.push(match arg {
                        Plan::Expref(ast) => Rcvar::new(Variable::Expref(ast.clone())),
                        other => self.node(other, data, on_root)?.to_variable(),
                    });
                }
                Val::Own(self.call(name, &fn_args, *offset)?)
            }
            // Planned only as a function argument (see `build`).
            Plan::Expref(_) => Val::NULL,
        })
    }

    /// Follows `path` in an interpreter value and converts where it ends (a missing key or a
    /// value that is not an object gives null, as the interpreter's field access does; a plain
    /// path, whose missing keys are errors, is left to the interpreter).
    fn var_chain<'b>(&self, var: Rcvar, path: &[String]) -> Result<Val<'b>, Halt> {
        if self.plain_path {
            return Err(Halt::Unavailable);
        }
        let mut cur = var;
        for key in path {
            cur = cur.get_field(key);
        }
        Ok(Val::Own(to_json_raw(&cur)))
    }

    /// Applies `rhs` to a value computed by the left side of a sub-expression or projection.
    fn then<'b>(&self, left: Val<'b>, rhs: &Plan) -> Result<Val<'b>, Halt>
    where
        'a: 'b,
    {
        match left {
            Val::Ref(l) => self.node(rhs, l, false),
            Val::Own(l) => Ok(Val::Own(self.node(rhs, &l, false)?.into_json())),
            list @ Val::List(_) => {
                let l = list.into_json();
                Ok(Val::Own(self.node(rhs, &l, false)?.into_json()))
            }
        }
    }

    /// The elements of a list value, each `Some`; one `None` when the value is not a list.
    fn elements<'b>(&self, v: Val<'b>) -> Vec<Option<Val<'b>>> {
        match v {
            Val::Ref(Value::Array(a)) => a.iter().map(|x| Some(Val::Ref(x))).collect(),
            Val::Own(Value::Array(a)) => a.into_iter().map(|x| Some(Val::Own(x))).collect(),
            Val::List(l) => l.into_iter().map(Some).collect(),
            _ => vec![None],
        }
    }

    /// The value at `name` in `data`: `None` when `data` is not an object or lacks the key (an
    /// error for a missing key in a plain path).
    fn field<'b>(&self, data: &'b Value, name: &str) -> Result<Option<&'b Value>, JmespathError> {
        match data {
            Value::Object(m) => match m.get(name) {
                Some(v) => Ok(Some(v)),
                None if self.plain_path => Err(JmespathError::NotFound {
                    expr: self.expr.to_string(),
                    key: name.to_string(),
                }),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn call(&self, name: &str, args: &[Rcvar], offset: usize) -> Result<Value, JmespathError> {
        let mut ctx = ::jmespath::Context::new(self.expr, &RUNTIME);
        ctx.offset = offset;
        let result = match RUNTIME.get_function(name) {
            Some(f) => f.evaluate(args, &mut ctx),
            None => Err(::jmespath::JmespathError::from_ctx(
                &ctx,
                ErrorReason::Runtime(RuntimeError::UnknownFunction(name.to_owned())),
            )),
        };
        result
            .map(|v| to_json_raw(&v))
            .map_err(|e| JmespathError::Runtime {
                expr: self.expr.to_string(),
                message: runtime_message(&e),
            })
    }
}

/// Functions of one argument computed over JSON here, as the runtime computes them, so their
/// argument is not converted (`volumes[].keys(@)`, `length(containers)`).
fn is_native(name: &str) -> bool {
    matches!(name, "keys" | "length")
}

/// A native function's result; `None` for an argument of a type it does not take.
fn native(name: &str, v: &Val) -> Option<Value> {
    let json = match v {
        Val::Ref(j) => Some(*j),
        Val::Own(j) => Some(j),
        Val::List(_) => None,
    };
    match (name, json) {
        ("keys", Some(Value::Object(m))) => {
            // The runtime's objects are ordered maps: keys come sorted.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            Some(Value::Array(
                keys.into_iter().map(|k| Value::String(k.clone())).collect(),
            ))
        }
        ("length", Some(Value::Object(m))) => Some(Value::from(m.len())),
        ("length", Some(Value::Array(a))) => Some(Value::from(a.len())),
        // Code points, as the runtime counts them.
        ("length", Some(Value::String(s))) => Some(Value::from(s.chars().count())),
        ("length", None) => match v {
            Val::List(l) => Some(Value::from(l.len())),
            _ => None,
        },
        _ => None,
    }
}

/// The position an index picks in a list of `len` (negative from the end, `-0` the last).
fn index(len: usize, idx: i32) -> Option<usize> {
    if idx >= 0 {
        Some(idx.unsigned_abs() as usize).filter(|i| *i < len)
    } else {
        len.checked_sub((idx.unsigned_abs() as usize).max(1))
    }
}

/// The interpreter's slice (Python's rules), over JSON.
fn slice(array: &[Value], start: Option<i32>, stop: Option<i32>, step: i32) -> Vec<&Value> {
    let mut result: Vec<&Value> = Vec::new();
    let Ok(len) = i32::try_from(array.len()) else {
        return result;
    };
    if len == 0 {
        return result;
    }
    let adjust = |endpoint: i32| -> i32 {
        if endpoint < 0 {
            let e = endpoint.saturating_add(len);
            if e >= 0 {
                e
            } else if step < 0 {
                -1
            } else {
                0
            }
        } else if endpoint < len {
            endpoint
        } else if step < 0 {
            len - 1
        } else {
            len
        }
    };
    let a = match start {
        Some(s) => adjust(s),
        None if step < 0 => len - 1,
        None => 0,
    };
    let b = match stop {
        Some(s) => adjust(s),
        None if step < 0 => -1,
        None => len,
    };
    let mut i = a;
    let at = |i: i32| usize::try_from(i).ok().and_then(|i| array.get(i));
    if step > 0 {
        while i < b {
            result.extend(at(i));
            i = i.saturating_add(step);
        }
    } else {
        while i > b {
            result.extend(at(i));
            i = i.saturating_add(step);
        }
    }
    result
}

/// JMESPath truthiness: false, null and empty strings, lists and objects are false.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(_) => true,
        Value::Null => false,
    }
}

/// The interpreter's comparison: equality on any values, ordering on numbers only (`None`,
/// i.e. null, otherwise).
fn compare(cmp: &Comparator, a: &Value, b: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    match cmp {
        Comparator::Equal => return Some(equal(a, b)),
        Comparator::NotEqual => return Some(!equal(a, b)),
        _ => {}
    }
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return None;
    };
    let ord = x.partial_cmp(&y).unwrap_or(Ordering::Less);
    Some(match cmp {
        Comparator::LessThan => ord == Ordering::Less,
        Comparator::LessThanEqual => ord != Ordering::Greater,
        Comparator::GreaterThan => ord == Ordering::Greater,
        Comparator::GreaterThanEqual => ord != Ordering::Less,
        Comparator::Equal | Comparator::NotEqual => false,
    })
}

/// The interpreter's equality: same type, numbers within a relative epsilon, lists and objects
/// element by element.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => float_eq(x, y),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
        }
        // Both maps are sorted by key, as the interpreter's are.
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && equal(vx, vy))
        }
        _ => false,
    }
}

/// The interpreter's float equality (relative error, with a floor near zero).
fn float_eq(a: f64, b: f64) -> bool {
    let diff = (a - b).abs();
    if a == b {
        true
    } else if !a.is_normal() || !b.is_normal() {
        diff < (f64::EPSILON * f64::MIN_POSITIVE)
    } else {
        diff / (a.abs() + b.abs()) < f64::EPSILON
    }
}
