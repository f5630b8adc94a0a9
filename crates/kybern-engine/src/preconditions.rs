//! Condition blocks (`preconditions`, `deny.conditions`, exception `conditions`): the any/all
//! structure, variable substitution of keys and values, and collected messages.

use crate::conditions;
use crate::json_context::JsonContext;
use crate::variables::{self, SubstituteOptions};
use serde_json::Value;

/// The outcome of a condition block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockOutcome {
    pub met: bool,
    /// Messages of the conditions that did not hold, joined by the caller.
    pub messages: Vec<String>,
}

/// Evaluates a condition block: `{any: [...], all: [...]}` or a legacy list (all must hold).
/// An empty block holds. Errors (failed substitution, unknown operator) are returned as text.
pub fn evaluate_block(
    block: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<BlockOutcome, String> {
    match block {
        Value::Null => Ok(BlockOutcome {
            met: true,
            messages: vec![],
        }),
        Value::Array(items) => evaluate_all(items, ctx, opts, path),
        Value::Object(map) => {
            let mut messages = Vec::new();
            let any_ok = match map.get("any").and_then(Value::as_array) {
                Some(items) if !items.is_empty() => {
                    let mut ok = false;
                    for (i, c) in items.iter().enumerate() {
                        let (held, msg) = evaluate_one(c, ctx, opts, &format!("{path}/any/{i}"))?;
                        if held {
                            ok = true;
                            break;
                        }
                        messages.extend(msg);
                    }
                    if ok {
                        messages.clear();
                    }
                    ok
                }
                _ => true,
            };
            let all = match map.get("all").and_then(Value::as_array) {
                Some(items) => evaluate_all(items, ctx, opts, &format!("{path}/all"))?,
                None => BlockOutcome {
                    met: true,
                    messages: vec![],
                },
            };
            messages.extend(all.messages);
            Ok(BlockOutcome {
                met: any_ok && all.met,
                messages,
            })
        }
        _ => Err(format!("invalid conditions at {path}")),
    }
}

fn evaluate_all(
    items: &[Value],
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<BlockOutcome, String> {
    for (i, c) in items.iter().enumerate() {
        let (held, msg) = evaluate_one(c, ctx, opts, &format!("{path}/{i}"))?;
        if !held {
            return Ok(BlockOutcome {
                met: false,
                messages: msg.into_iter().collect(),
            });
        }
    }
    Ok(BlockOutcome {
        met: true,
        messages: vec![],
    })
}

fn evaluate_one(
    c: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<(bool, Option<String>), String> {
    let null = Value::Null;
    let key = variables::substitute_all(
        c.get("key").unwrap_or(&null),
        ctx,
        opts,
        &format!("{path}/key"),
    )
    .map_err(|e| format!("failed to substitute variables in condition key: {e}"))?;
    let value = variables::substitute_all(
        c.get("value").unwrap_or(&null),
        ctx,
        opts,
        &format!("{path}/value"),
    )
    .map_err(|e| format!("failed to substitute variables in condition value: {e}"))?;
    let operator = c
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let held = conditions::evaluate(operator, &key, &value).map_err(|e| e.to_string())?;
    let message = if held {
        None
    } else {
        c.get("message").map(|m| {
            variables::substitute_all(m, ctx, opts, &format!("{path}/message"))
                .map(|v| variables::to_text(&v))
                .unwrap_or_else(|_| variables::to_text(m))
        })
    };
    Ok((held, message))
}
