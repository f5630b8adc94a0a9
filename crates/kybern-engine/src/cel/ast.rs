//! Rewrites of parsed expressions before evaluation.
//!
//! The interpreter evaluates `a.?f` on a plain map `a` without the key `f` as an error instead
//! of `optional.none()`. Every optional selection is therefore rewritten into a call of
//! [`OPT_SELECT_FN`], which implements it as cel-go does. Struct construction
//! (`Object{...}`) becomes map construction, as the interpreter has no message types.
//! `cel.bind(name, init, body)` becomes the comprehension cel-go's macro expands it to.

use kube_cel::cel;
use kube_cel::cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, ListExpr, LiteralValue, MapEntryExpr, MapExpr,
};
use kube_cel::cel::objects::{Key, OptionalValue};
use std::sync::Arc;

/// The internal function implementing `a.?f`.
pub const OPT_SELECT_FN: &str = "__kybern_opt_select";
const OPT_SELECT: &str = "_?._";
const OPT_INDEX: &str = "_[?_]";

fn optional(v: Option<cel::Value>) -> cel::Value {
    cel::Value::Opaque(Arc::new(match v {
        Some(v) => OptionalValue::of(v),
        None => OptionalValue::none(),
    }))
}

/// `operand.?field`: the field of a map as an optional (none when absent); an optional operand
/// is unwrapped first (none stays none).
pub fn opt_select(operand: cel::Value, field: Arc<String>) -> cel::ResolveResult {
    let operand = match &operand {
        cel::Value::Opaque(o) if o.runtime_type_name() == "optional_type" => {
            match o
                .downcast_ref::<OptionalValue>()
                .and_then(OptionalValue::value)
            {
                Some(v) => v.clone(),
                None => return Ok(optional(None)),
            }
        }
        _ => operand,
    };
    Ok(match &operand {
        cel::Value::Map(m) => optional(m.map.get(&Key::from(field.as_str())).cloned()),
        _ => optional(None),
    })
}

/// Applies the rewrites to `e` and everything below it: `a.?f` becomes a call of
/// [`OPT_SELECT_FN`], and so does a plain `.f` applied to an optional chain (cel-go propagates
/// optionality along `a.?b.c`). Recursion is bounded by the parser's depth limit.
pub fn rewrite(e: &mut cel::IdedExpr) {
    rewrite_node(e);
}

/// `cel.bind(name, init, body)`: a comprehension over an empty list whose accumulator `name`
/// starts as `init` and whose result is `body` (cel-go's expansion of the macro).
fn bind_comprehension(call: &mut CallExpr) -> Option<Expr> {
    let is_bind = call.func_name == "bind"
        && call.args.len() == 3
        && matches!(call.target.as_deref(), Some(cel::IdedExpr { expr: Expr::Ident(t), .. }) if t == "cel");
    if !is_bind {
        return None;
    }
    let mut args = std::mem::take(&mut call.args).into_iter();
    let (Some(name), Some(init), Some(body)) = (args.next(), args.next(), args.next()) else {
        return None;
    };
    let Expr::Ident(var) = &name.expr else {
        // Not a variable name: leave the call for the interpreter to report.
        call.args = vec![name, init, body];
        return None;
    };
    Some(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range: cel::IdedExpr {
            id: name.id,
            expr: Expr::List(ListExpr {
                elements: Vec::new(),
                optional_indices: Vec::new(),
            }),
        },
        iter_var: "#unused".to_string(),
        iter_var2: None,
        accu_var: var.clone(),
        accu_init: init,
        loop_cond: cel::IdedExpr {
            id: name.id,
            expr: Expr::Literal(LiteralValue::Boolean(false.into())),
        },
        loop_step: cel::IdedExpr {
            id: name.id,
            expr: Expr::Ident(var.clone()),
        },
        result: body,
    })))
}

/// Rewrites `e` in place; returns true when `e` yields an optional chain.
fn rewrite_node(e: &mut cel::IdedExpr) -> bool {
    match &mut e.expr {
        Expr::Call(call) => {
            if let Some(t) = call.target.as_mut() {
                rewrite_node(t);
            }
            for a in call.args.iter_mut() {
                rewrite_node(a);
            }
            if let Some(bind) = bind_comprehension(call) {
                e.expr = bind;
                return false;
            }
            if call.func_name == OPT_SELECT {
                call.func_name = OPT_SELECT_FN.to_string();
            }
            call.func_name == OPT_SELECT_FN || call.func_name == OPT_INDEX
        }
        Expr::Select(sel) => {
            let optional_operand = rewrite_node(&mut sel.operand);
            if optional_operand && !sel.test {
                let operand = std::mem::take(sel.operand.as_mut());
                let field = std::mem::take(&mut sel.field);
                let field_id = operand.id;
                e.expr = Expr::Call(CallExpr {
                    func_name: OPT_SELECT_FN.to_string(),
                    target: None,
                    args: vec![
                        operand,
                        cel::IdedExpr {
                            id: field_id,
                            expr: Expr::Literal(LiteralValue::String(field.into())),
                        },
                    ],
                });
                true
            } else {
                false
            }
        }
        Expr::Comprehension(c) => {
            let c = c.as_mut();
            rewrite_node(&mut c.iter_range);
            rewrite_node(&mut c.accu_init);
            rewrite_node(&mut c.loop_cond);
            rewrite_node(&mut c.loop_step);
            rewrite_node(&mut c.result);
            false
        }
        Expr::List(l) => {
            for x in l.elements.iter_mut() {
                rewrite_node(x);
            }
            false
        }
        Expr::Map(m) => {
            for entry in m.entries.iter_mut() {
                if let EntryExpr::MapEntry(me) = &mut entry.expr {
                    rewrite_node(&mut me.key);
                    rewrite_node(&mut me.value);
                }
            }
            false
        }
        Expr::Struct(st) => {
            // `Object{spec: Object.spec{...}}` (apply configurations, `JSONPatch{...}`): the
            // interpreter has no message types, so a struct becomes the map of its fields.
            let mut entries = std::mem::take(&mut st.entries);
            for entry in entries.iter_mut() {
                let id = entry.id;
                if let EntryExpr::StructField(f) = &mut entry.expr {
                    let mut value = std::mem::take(&mut f.value);
                    rewrite_node(&mut value);
                    entry.expr = EntryExpr::MapEntry(MapEntryExpr {
                        key: cel::IdedExpr {
                            id,
                            expr: Expr::Literal(LiteralValue::String(
                                std::mem::take(&mut f.field).into(),
                            )),
                        },
                        value,
                        optional: f.optional,
                    });
                }
            }
            e.expr = Expr::Map(MapExpr { entries });
            false
        }
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => false,
    }
}

/// How deeply comprehensions (the macros `all`, `exists`, `map`, `filter`, ...) nest in `e`, not
/// counting `cel.bind`'s comprehension over an empty list; whether `lists.range` is called (a list
/// whose size comes from a number, not from the inputs).
pub fn loop_shape(e: &cel::IdedExpr) -> (usize, bool) {
    let max = |it: &mut dyn Iterator<Item = (usize, bool)>| {
        it.fold((0, false), |(d, r), (d2, r2)| (d.max(d2), r || r2))
    };
    match &e.expr {
        Expr::Call(call) => {
            let (d, r) = max(&mut call
                .target
                .iter()
                .map(|t| loop_shape(t))
                .chain(call.args.iter().map(loop_shape)));
            (
                d,
                r || call.func_name == "lists.range" || call.func_name == "range",
            )
        }
        Expr::Select(sel) => loop_shape(&sel.operand),
        Expr::Comprehension(c) => {
            let (range_d, range_r) = loop_shape(&c.iter_range);
            let (body_d, body_r) = max(&mut [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .map(loop_shape));
            let empty_range = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty());
            let own = usize::from(!empty_range);
            (range_d.max(body_d + own), range_r || body_r)
        }
        Expr::List(l) => max(&mut l.elements.iter().map(loop_shape)),
        Expr::Map(m) => max(&mut m.entries.iter().filter_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => {
                Some(max(&mut [&me.key, &me.value].into_iter().map(loop_shape)))
            }
            _ => None,
        })),
        _ => (0, false),
    }
}
