//! Condition blocks (`preconditions`, `deny.conditions`, exception `conditions`): the any/all
//! structure, variable substitution of keys and values, and collected messages.

use crate::conditions;
use crate::json_context::JsonContext;
use crate::variables::{self, SubstituteOptions, Template};
use serde_json::Value;

/// The outcome of a condition block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockOutcome {
    pub met: bool,
    /// Messages of the conditions that did not hold, joined by the caller.
    pub messages: Vec<String>,
}

/// One condition prepared at load.
#[derive(Debug, Clone)]
struct Condition {
    /// Path below the block, e.g. `any/0`, `all/2` or `1` (legacy list).
    at: String,
    key: Template,
    value: Template,
    operator: String,
    message: Option<Value>,
}

impl Condition {
    fn compile(c: &Value, at: String) -> Self {
        let field = |k: &str| Template::compile(c.get(k).unwrap_or(&Value::Null));
        Condition {
            at,
            key: field("key"),
            value: field("value"),
            operator: c
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            message: c.get("message").cloned(),
        }
    }

    fn evaluate(
        &self,
        ctx: &JsonContext,
        opts: SubstituteOptions,
        path: &str,
    ) -> Result<(bool, Option<String>), String> {
        let here = || format!("{path}/{}", self.at);
        let key = self
            .key
            .substitute(ctx, opts, || format!("{}/key", here()))
            .map_err(|e| format!("failed to substitute variables in condition key: {e}"))?;
        let value = self
            .value
            .substitute(ctx, opts, || format!("{}/value", here()))
            .map_err(|e| format!("failed to substitute variables in condition value: {e}"))?;
        let held = conditions::evaluate(&self.operator, &key, &value).map_err(|e| e.to_string())?;
        let message = if held {
            None
        } else {
            self.message.as_ref().map(|m| {
                variables::substitute_all(m, ctx, opts, &format!("{}/message", here()))
                    .map(|v| variables::to_text(&v))
                    .unwrap_or_else(|_| variables::to_text(m))
            })
        };
        Ok((held, message))
    }
}

#[derive(Debug, Clone)]
enum Shape {
    /// No block: holds.
    Empty,
    /// A legacy list: all must hold.
    List(Vec<Condition>),
    /// `any` (when a non-empty list) and `all` (when a list).
    AnyAll {
        any: Option<Vec<Condition>>,
        all: Option<Vec<Condition>>,
    },
    /// Neither an object nor a list.
    Invalid,
}

/// A condition block (`preconditions`, `deny.conditions`, exception `conditions`) prepared at
/// policy load: each key and value is a [`Template`], so evaluation does not rescan the policy.
#[derive(Debug, Clone)]
pub struct ConditionBlock {
    shape: Shape,
}

fn compile_list(items: &[Value], prefix: &str) -> Vec<Condition> {
    items
        .iter()
        .enumerate()
        .map(|(i, c)| Condition::compile(c, format!("{prefix}{i}")))
        .collect()
}

impl ConditionBlock {
    /// Prepares a block; shapes that cannot be evaluated report their error when evaluated.
    pub fn compile(block: &Value) -> Self {
        let shape = match block {
            Value::Null => Shape::Empty,
            Value::Array(items) => Shape::List(compile_list(items, "")),
            Value::Object(map) => Shape::AnyAll {
                any: map
                    .get("any")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .map(|a| compile_list(a, "any/")),
                all: map
                    .get("all")
                    .and_then(Value::as_array)
                    .map(|a| compile_list(a, "all/")),
            },
            _ => Shape::Invalid,
        };
        ConditionBlock { shape }
    }

    /// Evaluates the block; `path` names it in messages (e.g. `preconditions`).
    pub fn evaluate(
        &self,
        ctx: &JsonContext,
        opts: SubstituteOptions,
        path: &str,
    ) -> Result<BlockOutcome, String> {
        let all_of = |items: &[Condition]| -> Result<BlockOutcome, String> {
            for c in items {
                let (held, msg) = c.evaluate(ctx, opts, path)?;
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
        };
        match &self.shape {
            Shape::Empty => Ok(BlockOutcome {
                met: true,
                messages: vec![],
            }),
            Shape::List(items) => all_of(items),
            Shape::AnyAll { any, all } => {
                let mut messages = Vec::new();
                let any_ok = match any {
                    Some(items) => {
                        let mut ok = false;
                        for c in items {
                            let (held, msg) = c.evaluate(ctx, opts, path)?;
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
                    None => true,
                };
                let all = match all {
                    Some(items) => all_of(items)?,
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
            Shape::Invalid => Err(format!("invalid conditions at {path}")),
        }
    }
}

/// Evaluates a condition block given as JSON: `{any: [...], all: [...]}` or a legacy list (all
/// must hold). An empty block holds. Errors (failed substitution, unknown operator) are returned
/// as text. Blocks of loaded policies are prepared once as [`ConditionBlock`]s instead.
pub fn evaluate_block(
    block: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<BlockOutcome, String> {
    ConditionBlock::compile(block).evaluate(ctx, opts, path)
}
