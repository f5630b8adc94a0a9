//! Turning a parsed expression into a [`Node`] tree, or saying why it cannot be planned.

use super::Node;
use crate::cel::ast::OPT_SELECT_FN;
use kube_cel::cel;
use kube_cel::cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue, operators};
use std::sync::Arc;

/// Names whose calls must run in the interpreter's own scope: they record side effects there
/// (a planned evaluation that faults would record them twice).
const SCOPED_FUNCTION_PREFIXES: [&str; 1] = ["generator."];

/// Functions answered from the scope's fetched resources (a lookup not fetched yet faults, and
/// the interpreter fetches it).
pub const FETCH_FUNCTION_PREFIXES: [&str; 8] = [
    "resource.",
    "http.Get",
    "http.Post",
    "globalContext.",
    "image.GetMetadata",
    "verifyImageSignatures",
    "verifyAttestationSignatures",
    "extractPayload",
];

/// Prefix of the adapter's argument variables.
pub const ARG_VAR: &str = "__kybern_plan_arg";

/// Compile-time state: the comprehension variables in scope, innermost last.
#[derive(Default)]
pub struct Compiler {
    locals: Vec<(String, usize)>,
    pub slots: usize,
}

impl Compiler {
    fn local(&self, name: &str) -> Option<usize> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    fn new_slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    pub fn node(&mut self, e: &cel::IdedExpr) -> Result<Node, String> {
        match &e.expr {
            Expr::Literal(l) => literal(l),
            Expr::Ident(name) => Ok(match self.local(name) {
                Some(slot) => Node::Local(slot),
                None => Node::Var(super::Var::new(name)),
            }),
            Expr::Select(sel) => {
                // `request.object` reads the `object` binding when the request map lacks it.
                let operand = self.node(&sel.operand)?;
                Ok(Node::Select {
                    operand: Box::new(operand),
                    field: sel.field.clone(),
                    test: sel.test,
                })
            }
            Expr::List(l) => {
                if !l.optional_indices.is_empty() {
                    return Err("optional list elements".into());
                }
                let items = l
                    .elements
                    .iter()
                    .map(|x| self.node(x))
                    .collect::<Result<Vec<_>, _>>()?;
                // A list of literals is built once, here (`x in ['a', 'b']`).
                if items.iter().all(|i| matches!(i, Node::Lit(_))) {
                    let values = items
                        .into_iter()
                        .filter_map(|i| match i {
                            Node::Lit(v) => Some(v),
                            _ => None,
                        })
                        .collect();
                    return Ok(Node::Lit(super::V::List(Arc::new(values))));
                }
                Ok(Node::List(items))
            }
            Expr::Map(m) => {
                let mut entries = Vec::with_capacity(m.entries.len());
                for entry in &m.entries {
                    let EntryExpr::MapEntry(me) = &entry.expr else {
                        return Err("struct field in a map".into());
                    };
                    if me.optional {
                        return Err("optional map entry".into());
                    }
                    let key = match &me.key.expr {
                        Expr::Literal(LiteralValue::String(k)) => {
                            super::MapKey::Lit(Arc::new(k.inner().to_string()))
                        }
                        _ => super::MapKey::Computed(self.node(&me.key)?),
                    };
                    entries.push((key, self.node(&me.value)?));
                }
                Ok(Node::Map(entries))
            }
            Expr::Struct(_) => Err("struct literal".into()),
            Expr::Unspecified => Err("unspecified expression".into()),
            Expr::Comprehension(c) => {
                if c.iter_var2.is_some() {
                    return Err("two-variable comprehension".into());
                }
                let range = self.node(&c.iter_range)?;
                let init = self.node(&c.accu_init)?;
                let iter = self.new_slot();
                let accu = self.new_slot();
                self.locals.push((c.accu_var.clone(), accu));
                self.locals.push((c.iter_var.clone(), iter));
                let cond = self.node(&c.loop_cond);
                let step = self.node(&c.loop_step).map(|s| append_step(s, accu));
                self.locals.pop();
                // The result sees the accumulator but not the element.
                let result = self.node(&c.result);
                self.locals.pop();
                Ok(Node::Comprehension(Box::new(super::Comprehension {
                    range,
                    init,
                    iter,
                    accu,
                    cond: cond?,
                    step: step?,
                    result: result?,
                    element_caches: Vec::new(),
                })))
            }
            Expr::Call(call) => self.call(e, call),
        }
    }

    fn boxed(&mut self, e: &cel::IdedExpr) -> Result<Box<Node>, String> {
        self.node(e).map(Box::new)
    }

    fn call(&mut self, whole: &cel::IdedExpr, call: &CallExpr) -> Result<Node, String> {
        let name = call.func_name.as_str();
        let args = &call.args;
        match (name, call.target.as_deref(), args.as_slice()) {
            (operators::CONDITIONAL, None, [c, a, b]) => {
                Ok(Node::Cond(self.boxed(c)?, self.boxed(a)?, self.boxed(b)?))
            }
            (operators::LOGICAL_AND, None, [a, b]) => Ok(Node::And(self.boxed(a)?, self.boxed(b)?)),
            (operators::LOGICAL_OR, None, [a, b]) => Ok(Node::Or(self.boxed(a)?, self.boxed(b)?)),
            (operators::LOGICAL_NOT, None, [a]) => Ok(Node::Not(self.boxed(a)?)),
            (operators::NOT_STRICTLY_FALSE, None, [a]) => {
                Ok(Node::NotStrictlyFalse(self.boxed(a)?))
            }
            (operators::NEGATE, None, [a]) => Ok(Node::Neg(self.boxed(a)?)),
            (operators::INDEX, None, [a, i]) => Ok(Node::Index(self.boxed(a)?, self.boxed(i)?)),
            (operators::OPT_INDEX, None, [a, i]) => {
                Ok(Node::OptIndex(self.boxed(a)?, self.boxed(i)?))
            }
            (OPT_SELECT_FN, None, [a, f]) => match &f.expr {
                Expr::Literal(LiteralValue::String(s)) => {
                    Ok(Node::OptSelect(self.boxed(a)?, s.inner().to_string()))
                }
                _ => Err("optional selection of a computed field".into()),
            },
            (operators::IN, None, [a, b]) => Ok(Node::In(self.boxed(a)?, self.boxed(b)?)),
            (op, None, [a, b]) if binary(op).is_some() => {
                let op = binary(op).ok_or("operator")?;
                Ok(Node::Binary(op, self.boxed(a)?, self.boxed(b)?))
            }
            ("size", None, [a]) | ("size", Some(a), []) => Ok(Node::Size(self.boxed(a)?)),
            ("orValue", Some(t), [d]) => Ok(Node::OrValue(self.boxed(t)?, self.boxed(d)?)),
            ("hasValue", Some(t), []) => Ok(Node::HasValue(self.boxed(t)?)),
            ("value", Some(t), []) => Ok(Node::OptValue(self.boxed(t)?)),
            ("startsWith" | "endsWith" | "contains", Some(t), [a]) => {
                let f = match name {
                    "startsWith" => super::StrFn::StartsWith,
                    "endsWith" => super::StrFn::EndsWith,
                    _ => super::StrFn::Contains,
                };
                Ok(Node::Str(f, self.boxed(t)?, self.boxed(a)?))
            }
            _ => self.adapter(whole, call),
        }
    }

    /// A call of a library function: its arguments are planned, the call itself runs in the
    /// interpreter over the converted arguments.
    fn adapter(&mut self, whole: &cel::IdedExpr, call: &CallExpr) -> Result<Node, String> {
        let name = call.func_name.as_str();
        if name.starts_with('_') || name.starts_with('@') || name == operators::OPT_INDEX {
            return Err(format!("operator {name}"));
        }
        let qualified = match call.target.as_deref() {
            Some(cel::IdedExpr {
                expr: Expr::Ident(prefix),
                ..
            }) if self.local(prefix).is_none() && !is_binding(prefix) => {
                Some(format!("{prefix}.{name}"))
            }
            _ => None,
        };
        let full = qualified.as_deref().unwrap_or(name);
        if SCOPED_FUNCTION_PREFIXES.iter().any(|p| full.starts_with(p)) {
            return Err(format!("function {full} reads the evaluation scope"));
        }
        let mut values = Vec::new();
        let mut shape = cel::IdedExpr {
            id: whole.id,
            expr: Expr::Call(CallExpr {
                func_name: call.func_name.clone(),
                target: None,
                args: Vec::new(),
            }),
        };
        let mut arg = |c: &mut Compiler, e: &cel::IdedExpr| -> Result<cel::IdedExpr, String> {
            let i = values.len();
            values.push(c.node(e)?);
            Ok(cel::IdedExpr {
                id: e.id,
                expr: Expr::Ident(format!("{ARG_VAR}{i}")),
            })
        };
        let target = match (call.target.as_deref(), &qualified) {
            (Some(t), Some(_)) => Some(Box::new(t.clone())),
            (Some(t), None) => Some(Box::new(arg(self, t)?)),
            (None, _) => None,
        };
        let mut new_args = Vec::new();
        for a in &call.args {
            new_args.push(arg(self, a)?);
        }
        if let Expr::Call(c) = &mut shape.expr {
            c.target = target;
            c.args = new_args;
        }
        Ok(Node::Call(Box::new(super::Call {
            fetches: FETCH_FUNCTION_PREFIXES.iter().any(|p| full.starts_with(p)),
            args: values,
            shape: Arc::new(shape),
        })))
    }
}

/// Inputs an expression may read (an identifier prefix naming one is not a namespace).
fn is_binding(name: &str) -> bool {
    matches!(
        name,
        "object"
            | "oldObject"
            | "request"
            | "namespaceObject"
            | "params"
            | "variables"
            | "exceptions"
            | "authorizer"
    )
}

fn binary(op: &str) -> Option<super::Op> {
    use super::Op;
    Some(match op {
        operators::EQUALS => Op::Eq,
        operators::NOT_EQUALS => Op::Ne,
        operators::LESS => Op::Lt,
        operators::LESS_EQUALS => Op::Le,
        operators::GREATER => Op::Gt,
        operators::GREATER_EQUALS => Op::Ge,
        operators::ADD => Op::Add,
        operators::SUBSTRACT => Op::Sub,
        operators::MULTIPLY => Op::Mul,
        operators::DIVIDE => Op::Div,
        operators::MODULO => Op::Rem,
        _ => return None,
    })
}

/// `accu + [x]` in a comprehension step (the expansion of `map` and `filter`) appends in
/// place instead of copying the accumulator each step.
fn append_step(step: Node, accu: usize) -> Node {
    match step {
        Node::Binary(super::Op::Add, a, b) => match (*a, *b) {
            (Node::Local(s), Node::List(mut items)) if s == accu && items.len() == 1 => {
                match items.pop() {
                    Some(x) => Node::Append(accu, Box::new(x)),
                    None => Node::Binary(
                        super::Op::Add,
                        Box::new(Node::Local(s)),
                        Box::new(Node::List(items)),
                    ),
                }
            }
            // `[x]` of a literal was folded into one.
            (Node::Local(s), Node::Lit(super::V::List(l))) if s == accu && l.len() == 1 => {
                match l.first() {
                    Some(x) => Node::Append(accu, Box::new(Node::Lit(x.clone()))),
                    None => Node::Binary(
                        super::Op::Add,
                        Box::new(Node::Local(s)),
                        Box::new(Node::Lit(super::V::List(l))),
                    ),
                }
            }
            (a, b) => Node::Binary(super::Op::Add, Box::new(a), Box::new(b)),
        },
        Node::Cond(c, a, b) => Node::Cond(c, Box::new(append_step(*a, accu)), b),
        other => other,
    }
}

fn literal(l: &LiteralValue) -> Result<Node, String> {
    use super::value::V;
    Ok(Node::Lit(match l {
        LiteralValue::Boolean(b) => V::Bool(*b.inner()),
        LiteralValue::Int(i) => V::Int(*i.inner()),
        LiteralValue::UInt(u) => V::UInt(*u.inner()),
        LiteralValue::Double(d) => V::Double(*d.inner()),
        LiteralValue::Null => V::Null,
        LiteralValue::String(s) => V::String(Arc::new(s.inner().to_string())),
        LiteralValue::Bytes(_) => return Err("bytes literal".into()),
    }))
}
