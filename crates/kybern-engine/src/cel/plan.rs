//! The CEL planner: an expression is compiled once into a tree of [`Node`]s evaluated over the
//! request's inputs as borrowed JSON, without converting them into the interpreter's values.
//!
//! The interpreter stays the reference. An expression the planner cannot compile keeps the
//! reason ([`crate::cel::Expression::fallback_reason`]) and always runs in the interpreter; a
//! planned expression that meets a value it does not handle, or any error, is evaluated again
//! by the interpreter, so errors and their messages are always the interpreter's. Library
//! functions are reached through an adapter at the call boundary: the planned arguments are
//! converted and the call resolved by the interpreter with the same function registry.
//!
//! Work is bounded: the tree is as deep as the parsed expression, and each evaluation has a
//! budget of [`STEP_BUDGET`] steps (an element visited by a comprehension or `in`, a list or map
//! entry built, a library call; a list of literals is built once, when planning, and costs
//! nothing), Kubernetes' per-expression cost limit in spirit. Past it the
//! evaluation stops with [`Fault::Budget`], an error, never handed to the unbounded interpreter.

mod compile;
mod paths;
pub mod value;

use super::Scope;
use kube_cel::cel;
use std::sync::Arc;
pub use value::V;

/// Why a planned evaluation stopped; the interpreter then evaluates the whole expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A value or combination the planner leaves to the interpreter (including every error).
    Unsupported,
    /// The evaluation used up its step budget: an error of the expression.
    Budget,
}

/// Steps one evaluation may take (Kubernetes' `PerCallLimit` is 1,000,000 cost units).
pub const STEP_BUDGET: u64 = 1_000_000;

/// A planned expression.
#[derive(Debug)]
pub struct Plan {
    root: Node,
    slots: usize,
    /// Entries of the evaluation's cache of repeated paths ([`paths`]).
    caches: usize,
    /// See [`Plan::request_inputs`].
    request_inputs: Option<u8>,
}

/// The inputs that are the same for every policy evaluated on one admission request (when
/// their bindings are), in the order of [`Plan::request_inputs`]'s bits.
pub const REQUEST_INPUTS: [&str; 4] = ["object", "oldObject", "request", "namespaceObject"];

/// The variables every policy kind may set, at fixed places of a [`Scope`]; the first ones
/// are [`REQUEST_INPUTS`], in their order.
pub const KNOWN_VARS: [&str; 7] = [
    "object",
    "oldObject",
    "request",
    "namespaceObject",
    "params",
    "exceptions",
    "variables",
];
const OBJECT: usize = 0;
const OLD_OBJECT: usize = 1;
const REQUEST: usize = 2;

/// The place of `name` in [`KNOWN_VARS`].
pub fn known_var(name: &str) -> Option<usize> {
    Some(match name {
        "object" => 0,
        "oldObject" => 1,
        "request" => 2,
        "namespaceObject" => 3,
        "params" => 4,
        "exceptions" => 5,
        "variables" => 6,
        _ => return None,
    })
}

/// A variable of the scope as an expression names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Var {
    /// At this place of [`KNOWN_VARS`].
    Known(usize),
    Named(String),
}

impl Var {
    pub fn new(name: &str) -> Var {
        known_var(name).map_or_else(|| Var::Named(name.to_string()), Var::Known)
    }
}

/// Plans a parsed (and rewritten) expression, or says why it cannot be planned.
pub fn plan(ast: &cel::IdedExpr) -> Result<Plan, String> {
    let mut c = compile::Compiler::default();
    let mut root = c.node(ast)?;
    let caches = paths::cache_repeated(&mut root);
    let mut mask = 0;
    // `request.object` falls back to the `object` binding (see `Node::Select`).
    let request_inputs = reads_request_inputs_only(&root, &mut mask)
        .then_some(if mask & 0b100 != 0 { mask | 0b11 } else { mask });
    Ok(Plan {
        root,
        slots: c.slots,
        caches,
        request_inputs,
    })
}

/// Whether `n` reads nothing but [`REQUEST_INPUTS`] (bits set in `mask`) and calls no library
/// function (a call may read the scope's fetched resources or the clock).
fn reads_request_inputs_only(n: &Node, mask: &mut u8) -> bool {
    match n {
        Node::Var(Var::Known(bit)) if *bit < REQUEST_INPUTS.len() => {
            *mask |= 1 << bit;
            true
        }
        Node::Var(_) => false,
        Node::Call(_) => false,
        other => paths::children(other)
            .into_iter()
            .all(|c| reads_request_inputs_only(c, mask)),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl Op {
    /// An equality or ordering operator (its result is a boolean).
    fn is_relation(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug)]
pub struct Comprehension {
    range: Node,
    init: Node,
    iter: usize,
    accu: usize,
    cond: Node,
    step: Node,
    result: Node,
    /// Cache entries of paths that start from this comprehension's element.
    element_caches: Vec<usize>,
}

/// A library call through the adapter: `shape` is the call with its planned arguments
/// replaced by variables.
#[derive(Debug)]
pub struct Call {
    /// Reads the scope's fetched resources.
    fetches: bool,
    args: Vec<Node>,
    shape: Arc<cel::IdedExpr>,
}

/// The key of a map literal entry.
#[derive(Debug)]
pub enum MapKey {
    Lit(Arc<String>),
    Computed(Node),
}

#[derive(Debug)]
pub enum Node {
    Lit(V<'static>),
    /// A variable of the scope (`object`, `variables`, ...).
    Var(Var),
    /// A comprehension variable.
    Local(usize),
    Select {
        operand: Box<Node>,
        field: String,
        test: bool,
    },
    OptSelect(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    /// A map literal with string keys (any other key faults).
    Map(Vec<(MapKey, Node)>),
    OptIndex(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    NotStrictlyFalse(Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Binary(Op, Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    Size(Box<Node>),
    OrValue(Box<Node>, Box<Node>),
    HasValue(Box<Node>),
    OptValue(Box<Node>),
    Str(StrFn, Box<Node>, Box<Node>),
    /// `accu + [x]` as a comprehension step.
    Append(usize, Box<Node>),
    Comprehension(Box<Comprehension>),
    Call(Box<Call>),
    /// A path read more than once: its value is kept in the evaluation's cache entry.
    Cached(usize, Box<Node>),
}

type R<'p> = Result<V<'p>, Fault>;

struct Frame<'s, 'p> {
    scope: &'s Scope<'p>,
    slots: Vec<V<'p>>,
    /// Values of repeated paths read so far ([`Node::Cached`]).
    cache: Vec<Option<V<'p>>>,
    /// Steps left ([`STEP_BUDGET`] at the start).
    steps: u64,
}

/// Takes `n` steps from the budget.
fn tick(f: &mut Frame<'_, '_>, n: u64) -> Result<(), Fault> {
    f.steps = f.steps.checked_sub(n).ok_or(Fault::Budget)?;
    Ok(())
}

impl Plan {
    /// The [`REQUEST_INPUTS`] the plan reads, one bit each, when they are all it reads: its
    /// value then depends on those bindings alone. `None` for any other plan.
    pub fn request_inputs(&self) -> Option<u8> {
        self.request_inputs
    }

    /// Evaluates over `scope`; a fault means the interpreter must evaluate the expression.
    pub fn eval<'p>(&self, scope: &Scope<'p>) -> R<'p> {
        self.eval_with_budget(scope, STEP_BUDGET)
    }

    /// [`Plan::eval`] with a budget of `steps`.
    pub fn eval_with_budget<'p>(&self, scope: &Scope<'p>, steps: u64) -> R<'p> {
        let mut f = Frame {
            scope,
            slots: vec![V::Null; self.slots],
            cache: vec![None; self.caches],
            steps,
        };
        eval(&self.root, &mut f)
    }
}

fn boolean(v: &V<'_>) -> Result<bool, Fault> {
    match v {
        V::Bool(b) => Ok(*b),
        _ => Err(Fault::Unsupported),
    }
}

/// The place of the binding the interpreter's `request` carries as `request.<field>` when the
/// request map lacks it (`object`, `oldObject`), for a selection of `field` from `operand`.
fn request_object(operand: &Node, field: &str) -> Option<usize> {
    if !matches!(operand, Node::Var(Var::Known(REQUEST))) {
        return None;
    }
    match field {
        "object" => Some(OBJECT),
        "oldObject" => Some(OLD_OBJECT),
        _ => None,
    }
}

/// The value of a scope variable, borrowed.
fn binding<'a, 'p>(f: &'a Frame<'_, 'p>, v: &Var) -> Result<&'a V<'p>, Fault> {
    match v {
        Var::Known(i) => f.scope.known_binding(*i),
        Var::Named(name) => f.scope.named_binding(name),
    }
    .ok_or(Fault::Unsupported)
}

/// The JSON `n` reads, found in place when it is an input, a comprehension variable or a
/// cached value holding JSON, or a field path from one through JSON objects: the operand of
/// a selection is then read without building (and dropping) a value for each step. `None`
/// for anything else, which is evaluated as usual (nothing here has effects but filling the
/// cache of a repeated path with the value its evaluation gives).
fn in_place<'p>(n: &Node, f: &mut Frame<'_, 'p>) -> Option<&'p serde_json::Value> {
    fn json<'p>(v: Option<&V<'p>>) -> Option<&'p serde_json::Value> {
        match v? {
            V::Json(j) => Some(*j),
            _ => None,
        }
    }
    match n {
        Node::Var(v) => json(binding(f, v).ok()),
        Node::Local(i) => json(f.slots.get(*i)),
        Node::Cached(i, inner) => match f.cache.get(*i)? {
            Some(v) => json(Some(v)),
            None => {
                let found = in_place(inner, f)?;
                if let Some(entry) = f.cache.get_mut(*i) {
                    *entry = Some(value::from_json(found));
                }
                Some(found)
            }
        },
        Node::Select {
            operand,
            field,
            test: false,
        } => match in_place(operand, f)? {
            serde_json::Value::Object(m) => crate::objects::map_get(m, field),
            _ => None,
        },
        _ => None,
    }
}

fn slot<'p>(f: &Frame<'_, 'p>, i: usize) -> R<'p> {
    f.slots.get(i).cloned().ok_or(Fault::Unsupported)
}

fn eval<'p>(n: &Node, f: &mut Frame<'_, 'p>) -> R<'p> {
    match n {
        Node::Lit(v) => Ok(v.clone()),
        Node::Var(v) => binding(f, v).cloned(),
        Node::Local(i) => slot(f, *i),
        Node::Select {
            operand,
            field,
            test,
        } => {
            if let Some(serde_json::Value::Object(m)) = in_place(operand, f)
                && let Some(v) = crate::objects::map_get(m, field)
            {
                return Ok(if *test {
                    V::Bool(true)
                } else {
                    value::from_json(v)
                });
            }
            let o = eval(operand, f)?;
            // The interpreter (cel 0.13) reads a field of a scalar, list or null as `false`,
            // for `has()` and plain selection alike; kept so that decisions do not change.
            if !o.is_map() && o.is_plain() {
                return Ok(V::Bool(false));
            }
            let got = o.field(field)?;
            match (got, request_object(operand, field)) {
                (Some(_), _) if *test => Ok(V::Bool(true)),
                (Some(v), _) => Ok(v),
                // The interpreter's `request` carries `object` and `oldObject`.
                (None, Some(i)) if *test => Ok(V::Bool(f.scope.known_binding(i).is_some())),
                (None, Some(i)) => f.scope.known_binding(i).cloned().ok_or(Fault::Unsupported),
                (None, None) if *test => Ok(V::Bool(false)),
                (None, None) => Err(Fault::Unsupported),
            }
        }
        Node::OptSelect(operand, field) => {
            if let Some(serde_json::Value::Object(m)) = in_place(operand, f)
                && let Some(v) = crate::objects::map_get(m, field)
            {
                return Ok(V::Opt(Some(Box::new(value::from_json(v)))));
            }
            if let Some(i) = request_object(operand, field)
                && let Some(V::Json(serde_json::Value::Object(m))) =
                    binding(f, &Var::Known(REQUEST)).ok()
                && !m.contains_key(field.as_str())
            {
                let carried = f.scope.known_binding(i).cloned();
                return Ok(V::Opt(carried.map(Box::new)));
            }
            let o = eval(operand, f)?;
            let o = match o {
                V::Opt(None) => return Ok(V::Opt(None)),
                V::Opt(Some(v)) => *v,
                other => other,
            };
            if !o.is_map() {
                return Ok(V::Opt(None));
            }
            Ok(V::Opt(o.field(field)?.map(Box::new)))
        }
        Node::Index(a, i) => {
            let a = eval(a, f)?;
            let i = eval(i, f)?;
            match a {
                // Indexing an optional is an optional index.
                V::Opt(None) => Ok(V::Opt(None)),
                V::Opt(Some(a)) => opt_index(*a, &i),
                a => index(&a, &i),
            }
        }
        Node::List(items) => {
            tick(f, items.len() as u64)?;
            let mut out = Vec::with_capacity(items.len());
            for x in items {
                out.push(eval(x, f)?);
            }
            Ok(V::List(Arc::new(out)))
        }
        Node::Map(entries) => {
            tick(f, entries.len() as u64)?;
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let k = match k {
                    MapKey::Lit(k) => k.clone(),
                    MapKey::Computed(n) => match eval(n, f)? {
                        V::Str(s) => Arc::new(s.to_string()),
                        V::String(s) => s,
                        _ => return Err(Fault::Unsupported),
                    },
                };
                out.push((k, eval(v, f)?));
            }
            Ok(V::Map(Arc::new(out)))
        }
        Node::OptIndex(a, i) => {
            let a = match eval(a, f)? {
                V::Opt(None) => return Ok(V::Opt(None)),
                V::Opt(Some(v)) => *v,
                other => other,
            };
            let i = eval(i, f)?;
            opt_index(a, &i)
        }
        Node::And(..)
        | Node::Or(..)
        | Node::Not(_)
        | Node::NotStrictlyFalse(_)
        | Node::In(..)
        | Node::Str(..) => eval_bool(n, f).map(V::Bool),
        Node::Cond(c, a, b) => {
            if eval_bool(c, f)? {
                eval(a, f)
            } else {
                eval(b, f)
            }
        }
        Node::Neg(a) => match eval(a, f)? {
            V::Int(i) => i.checked_neg().map(V::Int).ok_or(Fault::Unsupported),
            V::Double(d) => Ok(V::Double(-d)),
            _ => Err(Fault::Unsupported),
        },
        Node::Binary(op, a, b) => {
            let a = eval(a, f)?;
            let b = eval(b, f)?;
            if !matches!(op, Op::Add) {
                return binary(*op, a, b);
            }
            let out = binary(*op, a, b)?;
            // Concatenation copies: strings and lists built up in a loop cost by their size.
            match &out {
                V::String(s) => tick(f, s.len() as u64 / 64)?,
                V::List(l) => tick(f, l.len() as u64)?,
                _ => {}
            }
            Ok(out)
        }
        Node::Size(a) => eval(a, f)?.size().map(V::Int),
        Node::OrValue(t, d) => match eval(t, f)? {
            V::Opt(Some(v)) => Ok(*v),
            V::Opt(None) => eval(d, f),
            V::Cel(_) => Err(Fault::Unsupported),
            other => Ok(other),
        },
        Node::HasValue(t) => match eval(t, f)? {
            V::Opt(o) => Ok(V::Bool(o.is_some())),
            _ => Err(Fault::Unsupported),
        },
        Node::OptValue(t) => match eval(t, f)? {
            V::Opt(Some(v)) => Ok(*v),
            _ => Err(Fault::Unsupported),
        },
        Node::Append(accu, x) => {
            let x = eval(x, f)?;
            let acc = f.slots.get_mut(*accu).ok_or(Fault::Unsupported)?;
            match std::mem::replace(acc, V::Null) {
                V::List(mut l) => {
                    Arc::make_mut(&mut l).push(x);
                    Ok(V::List(l))
                }
                V::Json(serde_json::Value::Array(a)) => {
                    let mut l: Vec<V<'p>> = a.iter().map(value::from_json).collect();
                    l.push(x);
                    Ok(V::List(Arc::new(l)))
                }
                _ => Err(Fault::Unsupported),
            }
        }
        Node::Comprehension(c) => comprehension(c, f),
        Node::Call(c) => call(c, f),
        Node::Cached(i, inner) => {
            if let Some(Some(v)) = f.cache.get(*i) {
                return Ok(v.clone());
            }
            let v = eval(inner, f)?;
            if let Some(entry) = f.cache.get_mut(*i) {
                *entry = Some(v.clone());
            }
            Ok(v)
        }
    }
}

/// Evaluates `n`, which must give a boolean: logic, `in` and string tests answer without
/// building a value, comparisons without keeping one.
fn eval_bool(n: &Node, f: &mut Frame<'_, '_>) -> Result<bool, Fault> {
    match n {
        Node::Lit(V::Bool(b)) => Ok(*b),
        Node::Local(i) => match f.slots.get(*i) {
            Some(V::Bool(b)) => Ok(*b),
            _ => Err(Fault::Unsupported),
        },
        Node::Select {
            operand,
            field,
            test: true,
        } => match in_place(operand, f) {
            Some(serde_json::Value::Object(m)) => Ok(crate::objects::map_get(m, field).is_some()
                // `request` without `object`: the interpreter's carries the binding.
                || request_object(operand, field).is_some_and(|i| f.scope.known_binding(i).is_some())),
            _ => boolean(&eval(n, f)?),
        },
        Node::And(a, b) => junction(a, b, false, f),
        Node::Or(a, b) => junction(a, b, true, f),
        Node::Not(a) => Ok(!eval_bool(a, f)?),
        Node::NotStrictlyFalse(a) => match eval_bool(a, f) {
            Err(Fault::Budget) => Err(Fault::Budget),
            r => Ok(r.unwrap_or(true)),
        },
        Node::Binary(op, a, b) if op.is_relation() => {
            let a = eval(a, f)?;
            let b = eval(b, f)?;
            relation(*op, &a, &b)
        }
        Node::In(a, b_node) => {
            let a = eval(a, f)?;
            let b = eval(b_node, f)?;
            if b.is_map() {
                let key = a.as_str().ok_or(Fault::Unsupported)?;
                // `request` without `object`: the interpreter's carries the binding.
                return Ok(b.field(key)?.is_some()
                    || request_object(b_node, key)
                        .is_some_and(|i| f.scope.known_binding(i).is_some()));
            }
            let mut found = |x: &V<'_>| -> Result<bool, Fault> {
                tick(f, 1)?;
                value::equals(&a, x)
            };
            // Lists are searched in place; other values are gathered first.
            match &b {
                V::Json(serde_json::Value::Array(items)) => {
                    for x in items {
                        if found(&value::from_json(x))? {
                            return Ok(true);
                        }
                    }
                }
                V::List(items) => {
                    for x in items.iter() {
                        if found(x)? {
                            return Ok(true);
                        }
                    }
                }
                other => {
                    for x in other.elements(false)? {
                        if found(&x)? {
                            return Ok(true);
                        }
                    }
                }
            }
            Ok(false)
        }
        Node::Str(func, t, a) => {
            let t = eval(t, f)?;
            let a = eval(a, f)?;
            let (Some(t), Some(a)) = (t.as_str(), a.as_str()) else {
                return Err(Fault::Unsupported);
            };
            Ok(match func {
                StrFn::StartsWith => t.starts_with(a),
                StrFn::EndsWith => t.ends_with(a),
                StrFn::Contains => t.contains(a),
            })
        }
        other => boolean(&eval(other, f)?),
    }
}

/// `a && b` (`decisive` false) or `a || b` (`decisive` true), with CEL's commutative error
/// handling: a side that gives the decisive value absorbs the other's error; a budget fault is
/// never absorbed.
fn junction(a: &Node, b: &Node, decisive: bool, f: &mut Frame<'_, '_>) -> Result<bool, Fault> {
    let l = eval_bool(a, f);
    if l == Ok(decisive) {
        return Ok(decisive);
    }
    if l == Err(Fault::Budget) {
        return Err(Fault::Budget);
    }
    let r = eval_bool(b, f)?;
    match l {
        Ok(_) => Ok(r),
        Err(_) if r == decisive => Ok(decisive),
        Err(_) => Err(Fault::Unsupported),
    }
}

fn comprehension<'p>(c: &Comprehension, f: &mut Frame<'_, 'p>) -> R<'p> {
    let init = eval(&c.init, f)?;
    let range = eval(&c.range, f)?;
    // Map keys come in the interpreter's hash order there: only order-free results here.
    let keys_ok = matches!(init, V::Bool(_) | V::Int(_));
    // Lists are walked in place; other ranges (map keys) are gathered first.
    let gathered = match &range {
        V::Json(serde_json::Value::Array(_)) | V::List(_) => None,
        other => Some(other.elements(keys_ok)?),
    };
    set(f, c.accu, init)?;
    match (&range, gathered) {
        (_, Some(items)) => {
            for item in items {
                if !step(c, f, item)? {
                    break;
                }
            }
        }
        (V::List(l), None) => {
            for item in l.iter() {
                if !step(c, f, item.clone())? {
                    break;
                }
            }
        }
        (V::Json(j), None) => {
            let j: &'p serde_json::Value = j;
            for item in j.as_array().into_iter().flatten() {
                if !step(c, f, value::from_json(item))? {
                    break;
                }
            }
        }
        (_, None) => return Err(Fault::Unsupported),
    }
    eval(&c.result, f)
}

/// One iteration of a comprehension; false once its condition ends the loop.
fn step<'p>(c: &Comprehension, f: &mut Frame<'_, 'p>, item: V<'p>) -> Result<bool, Fault> {
    if !eval_bool(&c.cond, f)? {
        return Ok(false);
    }
    tick(f, 1)?;
    set(f, c.iter, item)?;
    for &i in &c.element_caches {
        if let Some(entry) = f.cache.get_mut(i) {
            *entry = None;
        }
    }
    let next = eval(&c.step, f)?;
    set(f, c.accu, next)?;
    Ok(true)
}

fn set<'p>(f: &mut Frame<'_, 'p>, i: usize, v: V<'p>) -> Result<(), Fault> {
    *f.slots.get_mut(i).ok_or(Fault::Unsupported)? = v;
    Ok(())
}

fn call<'p>(c: &Call, f: &mut Frame<'_, 'p>) -> R<'p> {
    tick(f, 1 + c.args.len() as u64)?;
    let mut ctx = super::root().new_inner_scope();
    if c.fetches {
        let fetched = f.scope.fetched.borrow().clone();
        if !fetched.is_empty() {
            ctx.add_variable_from_value(super::library::FETCHED_VAR, super::value::map(fetched));
        }
    }
    for (i, a) in c.args.iter().enumerate() {
        let v = eval(a, f)?;
        ctx.add_variable_from_value(format!("{}{i}", compile::ARG_VAR), v.to_cel());
    }
    match cel::Value::resolve(&c.shape, &ctx) {
        Ok(v) => Ok(value::from_cel(v)),
        Err(_) => Err(Fault::Unsupported),
    }
}

/// `a[?i]`: the element or entry as an optional, none when absent.
fn opt_index<'p>(a: V<'p>, i: &V<'p>) -> R<'p> {
    if a.is_map() {
        let key = i.as_str().ok_or(Fault::Unsupported)?;
        return Ok(V::Opt(a.field(key)?.map(Box::new)));
    }
    if !matches!(i, V::Int(_)) || a.size().is_err() || a.as_str().is_some() {
        return Err(Fault::Unsupported);
    }
    Ok(V::Opt(index(&a, i).ok().map(Box::new)))
}

fn index<'p>(a: &V<'p>, i: &V<'p>) -> R<'p> {
    if a.is_map() {
        let key = i.as_str().ok_or(Fault::Unsupported)?;
        return a.field(key)?.ok_or(Fault::Unsupported);
    }
    let V::Int(i) = i else {
        return Err(Fault::Unsupported);
    };
    let i = usize::try_from(*i).map_err(|_| Fault::Unsupported)?;
    match a {
        V::Json(serde_json::Value::Array(x)) => x.get(i).map(value::from_json),
        V::List(l) => l.get(i).cloned(),
        V::Cel(cel::Value::List(l)) => l.get(i).cloned().map(value::from_cel),
        _ => None,
    }
    .ok_or(Fault::Unsupported)
}

fn compare(a: &V<'_>, b: &V<'_>) -> Result<std::cmp::Ordering, Fault> {
    use std::cmp::Ordering;
    Ok(match (a, b) {
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::UInt(x), V::UInt(y)) => x.cmp(y),
        (V::Double(x), V::Double(y)) => x.partial_cmp(y).ok_or(Fault::Unsupported)?,
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::Int(x), V::UInt(y)) => u64::try_from(*x).map_or(Ordering::Less, |x| x.cmp(y)),
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => x.cmp(y),
            _ => return Err(Fault::Unsupported),
        },
    })
}

/// `a op b` for an equality or ordering operator.
fn relation(op: Op, a: &V<'_>, b: &V<'_>) -> Result<bool, Fault> {
    use std::cmp::Ordering::{Greater, Less};
    Ok(match op {
        Op::Eq => value::equals(a, b)?,
        Op::Ne => !value::equals(a, b)?,
        Op::Lt => compare(a, b)? == Less,
        Op::Le => compare(a, b)? != Greater,
        Op::Gt => compare(a, b)? == Greater,
        Op::Ge => compare(a, b)? != Less,
        _ => return Err(Fault::Unsupported),
    })
}

fn binary<'p>(op: Op, a: V<'p>, b: V<'p>) -> R<'p> {
    let u = Fault::Unsupported;
    Ok(match op {
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => V::Bool(relation(op, &a, &b)?),
        Op::Add => match (&a, &b) {
            (V::Int(x), V::Int(y)) => V::Int(x.checked_add(*y).ok_or(u)?),
            (V::UInt(x), V::UInt(y)) => V::UInt(x.checked_add(*y).ok_or(u)?),
            (V::Double(x), V::Double(y)) => V::Double(x + y),
            _ => match (a.as_str(), b.as_str()) {
                (Some(x), Some(y)) => V::String(Arc::new(format!("{x}{y}"))),
                _ => {
                    let mut l = a.elements(false)?;
                    l.extend(b.elements(false)?);
                    V::List(Arc::new(l))
                }
            },
        },
        Op::Sub => match (a, b) {
            (V::Int(x), V::Int(y)) => V::Int(x.checked_sub(y).ok_or(u)?),
            (V::UInt(x), V::UInt(y)) => V::UInt(x.checked_sub(y).ok_or(u)?),
            (V::Double(x), V::Double(y)) => V::Double(x - y),
            _ => return Err(u),
        },
        Op::Mul => match (a, b) {
            (V::Int(x), V::Int(y)) => V::Int(x.checked_mul(y).ok_or(u)?),
            (V::UInt(x), V::UInt(y)) => V::UInt(x.checked_mul(y).ok_or(u)?),
            (V::Double(x), V::Double(y)) => V::Double(x * y),
            _ => return Err(u),
        },
        Op::Div => match (a, b) {
            (V::Int(x), V::Int(y)) => V::Int(x.checked_div(y).ok_or(u)?),
            (V::UInt(x), V::UInt(y)) => V::UInt(x.checked_div(y).ok_or(u)?),
            (V::Double(x), V::Double(y)) => V::Double(x / y),
            _ => return Err(u),
        },
        Op::Rem => match (a, b) {
            (V::Int(x), V::Int(y)) => V::Int(x.checked_rem(y).ok_or(u)?),
            (V::UInt(x), V::UInt(y)) => V::UInt(x.checked_rem(y).ok_or(u)?),
            _ => return Err(u),
        },
    })
}

/// How many of a set of expressions are planned, and why the others are not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    pub planned: usize,
    pub total: usize,
    /// `(source, reason)` of each expression that always runs in the interpreter.
    pub fallbacks: Vec<(String, String)>,
}

impl Coverage {
    /// Share of planned expressions, 1.0 for none.
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let r = self.planned as f64 / self.total as f64;
        r
    }
}

/// The plan coverage of `exprs`.
pub fn coverage<'e>(exprs: impl IntoIterator<Item = &'e super::Expression>) -> Coverage {
    let mut c = Coverage::default();
    for e in exprs {
        c.total += 1;
        match e.fallback_reason() {
            None => c.planned += 1,
            Some(r) => c.fallbacks.push((e.source.clone(), r.to_string())),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use crate::cel::{Expression, Scope};
    use serde_json::json;

    fn scope(object: &serde_json::Value) -> Scope<'_> {
        let mut s = Scope::default();
        s.set_json_ref("object", object);
        s
    }

    /// (expression, whether the planner answers it on the object below)
    const CASES: &[(&str, bool)] = &[
        ("object.spec.n + 1", true),
        ("object.spec.n * 9223372036854775807", false), // overflow: the interpreter's error
        ("object.spec.n == 2.0", true),                 // int and double are not equal
        ("object.spec.n < 3 && object.spec.s.startsWith('we')", true),
        ("object.spec.s + '-x' == 'web-x'", true),
        ("size(object.spec.list + [4]) == 4", true),
        (
            "!has(object.spec.missing) || object.spec.missing == 1",
            true,
        ),
        ("object.spec.missing == 1 || true", true), // an error absorbed by `||`
        ("object.spec.missing == 1", false),        // no such key: the interpreter's error
        ("object.spec.?missing.orValue('d')", true),
        ("object.spec.?list[?7].orValue(0)", true),
        ("object.spec.list.exists_one(x, x == 2)", true),
        ("object.spec.list.map(x, x * 2).filter(y, y > 2)", true),
        ("object.spec.list.all(x, x in [1, 2, 3])", true),
        ("'b' in object.spec.m && !('z' in object.spec.m)", true),
        ("{'a': object.spec.n}.a", true),
        ("object.spec.s.lowerAscii() == 'web'", true), // through the adapter
        ("cel.bind(x, object.spec.n, x + x)", true),
        ("object.spec.m.all(k, k != 'c')", true),
        ("object.spec.n / 0", false),
        ("object.spec.n > object.spec.s", false),
        // The interpreter reads a field of a non-map as `false`.
        ("object.spec.s.name", true),
        ("has(object.spec.n.x)", true),
        ("object.spec.?m['zz'].orValue('none') == 'none'", true),
        // Repeated paths are read once per element: each element's own value.
        ("object.spec.items.exists(i, i.n > 5 && i.n < 30)", true),
        ("object.spec.items.map(i, i.n + i.n) == [2, 40]", true),
        (
            "object.spec.items.all(o, object.spec.items.exists(i, i.n > o.n || i.n == o.n))",
            true,
        ),
        (
            "object.spec.m.a + object.spec.m.b == 3 && has(object.spec.m.a)",
            true,
        ),
    ];

    #[test]
    fn planned_values_match_the_interpreter() {
        let object = json!({"spec": {"n": 2, "s": "web", "list": [1, 2, 3], "m": {"a": 1, "b": 2},
                    "items": [{"n": 1}, {"n": 20}]}});
        let s = scope(&object);
        for (src, answered) in CASES {
            let e = Expression::compile(src, "test").unwrap();
            assert_eq!(e.fallback_reason(), None, "{src} should be planned");
            let planned = e.eval_planned(&s);
            assert_eq!(planned.is_some(), *answered, "{src}: {planned:?}");
            if let Some(v) = planned {
                assert_eq!(Ok(v), e.interpret(&s), "{src}");
            }
            // The engine's path gives the interpreter's answer either way.
            assert_eq!(e.eval(&s), e.interpret(&s), "{src}");
        }
    }

    /// The interpreter's `request` carries `object` and `oldObject` when the request map lacks
    /// them; planned reads of `request.object` agree, with `has()` and optional selection too.
    #[test]
    fn request_carries_the_objects_as_in_the_interpreter() {
        let object = json!({"metadata": {"name": "web"}});
        let request = json!({"operation": "CREATE"});
        let mut s = Scope::default();
        s.set_json_ref("object", &object);
        s.set_json_ref("request", &request);
        for src in [
            "request.object.metadata.name == 'web'",
            "has(request.object)",
            "has(request.object.metadata)",
            "request.?object.hasValue()",
            "request.?object.metadata.name.orValue('') == 'web'",
            "has(request.oldObject)",
            "request.?oldObject.hasValue()",
            "has(request.operation) && !has(request.name)",
            "'object' in request && !('oldObject' in request)",
        ] {
            let e = Expression::compile(src, "test").unwrap();
            let planned = e.eval_planned(&s);
            assert!(planned.is_some(), "{src} is answered by the planner");
            assert_eq!(planned.map(Ok), Some(e.interpret(&s)), "{src}");
        }
    }

    #[test]
    fn known_variables_have_their_places() {
        for (i, name) in super::KNOWN_VARS.iter().enumerate() {
            assert_eq!(super::known_var(name), Some(i), "{name}");
        }
        assert_eq!(super::known_var("objects"), None);
        // `Scope::with_inputs` fills every place but the last.
        assert_eq!(super::KNOWN_VARS.last(), Some(&"variables"));
        assert_eq!(super::KNOWN_VARS[..4], super::REQUEST_INPUTS);
        assert_eq!(super::KNOWN_VARS[super::OBJECT], "object");
        assert_eq!(super::KNOWN_VARS[super::OLD_OBJECT], "oldObject");
        assert_eq!(super::KNOWN_VARS[super::REQUEST], "request");
    }

    #[test]
    fn side_effecting_calls_are_not_planned() {
        let e = Expression::compile("generator.Apply('ns', [])", "test").unwrap();
        assert!(e.fallback_reason().unwrap().contains("generator.Apply"));
    }

    #[test]
    fn coverage_counts_fallbacks() {
        let exprs = [
            Expression::compile("object.a == 1", "t").unwrap(),
            Expression::compile("generator.Apply('ns', [])", "t").unwrap(),
        ];
        let c = super::coverage(&exprs);
        assert_eq!((c.planned, c.total, c.fallbacks.len()), (1, 2, 1));
    }
}
