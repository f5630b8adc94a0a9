//! Rewrites of parsed expressions before evaluation.
//!
//! The interpreter evaluates `a.?f` on a plain map `a` without the key `f` as an error instead
//! of `optional.none()`. Every optional selection is therefore rewritten into a call of
//! [`OPT_SELECT_FN`], which implements it as cel-go does.

use kube_cel::cel;
use kube_cel::cel::common::ast::{EntryExpr, Expr};
use kube_cel::cel::objects::{Key, OptionalValue};
use std::sync::Arc;

/// The internal function implementing `a.?f`.
pub const OPT_SELECT_FN: &str = "__kybern_opt_select";
const OPT_SELECT: &str = "_?._";

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

/// Applies the rewrites to `e` and everything below it.
pub fn rewrite(e: &mut cel::IdedExpr) {
    let mut stack: Vec<&mut cel::IdedExpr> = vec![e];
    while let Some(node) = stack.pop() {
        match &mut node.expr {
            Expr::Call(call) => {
                if call.func_name == OPT_SELECT {
                    call.func_name = OPT_SELECT_FN.to_string();
                }
                if let Some(t) = call.target.as_mut() {
                    stack.push(t);
                }
                stack.extend(call.args.iter_mut());
            }
            Expr::Comprehension(c) => {
                let c = c.as_mut();
                stack.push(&mut c.iter_range);
                stack.push(&mut c.accu_init);
                stack.push(&mut c.loop_cond);
                stack.push(&mut c.loop_step);
                stack.push(&mut c.result);
            }
            Expr::List(l) => stack.extend(l.elements.iter_mut()),
            Expr::Map(m) => {
                for entry in m.entries.iter_mut() {
                    if let EntryExpr::MapEntry(me) = &mut entry.expr {
                        stack.push(&mut me.key);
                        stack.push(&mut me.value);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in s.entries.iter_mut() {
                    if let EntryExpr::StructField(f) = &mut entry.expr {
                        stack.push(&mut f.value);
                    }
                }
            }
            Expr::Select(s) => stack.push(&mut s.operand),
            Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
        }
    }
}
