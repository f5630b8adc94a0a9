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

/// The text a template was written as (for explanations).
fn written(t: &Template) -> String {
    match t {
        Template::Literal(v) | Template::Dynamic(v) => variables::to_text(v),
        Template::Whole { raw, .. } => raw.clone(),
    }
}

/// A value for an explanation, bounded so one large object does not flood a trace.
fn shown(v: &Value) -> String {
    const MAX: usize = 120;
    let s = v.to_string();
    if s.len() <= MAX {
        return s;
    }
    let cut = (0..=MAX)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}...", s.get(..cut).unwrap_or_default())
}

impl Condition {
    /// `key` with its value, the operator and the value, and whether it held (or why it could
    /// not be evaluated), e.g. `` `{{ request.object.kind }}` = "Pod" AnyIn ["Pod"]: holds ``.
    fn explain(&self, ctx: &JsonContext, opts: SubstituteOptions) -> String {
        let key = self.key.substitute(ctx, opts, String::new);
        let value = self.value.substitute(ctx, opts, String::new);
        let shown_key = match (&self.key, &key) {
            (Template::Literal(v), _) => shown(v),
            (_, Ok(v)) => format!("`{}` = {}", written(&self.key), shown(v)),
            (_, Err(_)) => format!("`{}` (not known here)", written(&self.key)),
        };
        let shown_value = match &value {
            Ok(v) => shown(v),
            Err(_) => format!("`{}` (not known here)", written(&self.value)),
        };
        let verdict = match (key, value) {
            (Ok(k), Ok(v)) => match conditions::evaluate(&self.operator, &k, &v) {
                Ok(true) => "holds".to_string(),
                Ok(false) => "does not hold".to_string(),
                Err(e) => format!("error: {e}"),
            },
            _ => "not decided here".to_string(),
        };
        format!("{shown_key} {} {shown_value}: {verdict}", self.operator)
    }
}

impl ConditionBlock {
    /// Each condition with its values and whether it held, in order, labelled `any[i]`, `all[i]`
    /// or `[i]`: what a decision trace shows of a block. Evaluation never calls it.
    pub fn explain(&self, ctx: &JsonContext, opts: SubstituteOptions) -> Vec<String> {
        let label = |c: &Condition| match c.at.split_once('/') {
            Some((group, i)) => format!("{group}[{i}]"),
            None => format!("[{}]", c.at),
        };
        let items: Vec<&Condition> = match &self.shape {
            Shape::List(items) => items.iter().collect(),
            Shape::AnyAll { any, all } => any.iter().chain(all.iter()).flatten().collect(),
            Shape::Empty | Shape::Invalid => Vec::new(),
        };
        items
            .into_iter()
            .map(|c| format!("{}: {}", label(c), c.explain(ctx, opts)))
            .collect()
    }

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
