//! `{{ }}` variable substitution: finding variables in strings and keys, evaluating them as
//! JMESPath against the JSON context, splicing typed or stringified results, escaping with `\{{`.

use crate::jmespath::{self, Expression, JmespathError};
use crate::json_context::JsonContext;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

/// A variable that could not be substituted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VariableError {
    #[error("failed to resolve {variable} at path {path}: {source}")]
    Resolve {
        variable: String,
        path: String,
        #[source]
        source: JmespathError,
    },
    #[error("variable substitution did not settle after {0} passes at path {1}")]
    TooDeep(usize, String),
}

/// How substitution treats the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubstituteOptions {
    /// DELETE requests have no new object: `request.object` reads `request.oldObject`.
    pub delete: bool,
}

// Kyverno's detection rule: a `{{` not preceded by a backslash, allowing one level of `{}` inside.
static VARIABLE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(^|[^\\])(\{\{(?:\{[^{}]*\}|[^{}])*\}\})").ok());

const MAX_PASSES: usize = 32;
const CACHE_LIMIT: usize = 4096;

// Expressions are compiled once and shared; the set of distinct expressions is bounded by policies.
static CACHE: LazyLock<RwLock<HashMap<String, Expression>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Compiles an expression, reusing an earlier compilation of the same text.
pub fn compiled(expr: &str) -> Result<Expression, JmespathError> {
    if let Ok(cache) = CACHE.read()
        && let Some(e) = cache.get(expr)
    {
        return Ok(e.clone());
    }
    let e = jmespath::compile(expr)?;
    if let Ok(mut cache) = CACHE.write() {
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(expr.to_string(), e.clone());
    }
    Ok(e)
}

/// True if the string holds an unescaped variable.
pub fn has_variables(s: &str) -> bool {
    s.contains("{{") && VARIABLE.as_ref().is_some_and(|re| re.is_match(s))
}

/// `s` with every unescaped variable replaced by `placeholder`, for checking the shape of text
/// that is only parsed after substitution (a `patchesJson6902` string).
pub fn replace_variables(s: &str, placeholder: &str) -> String {
    let Some(re) = VARIABLE.as_ref() else {
        return s.to_string();
    };
    // The match may start with the character before `{{`, which is kept.
    re.replace_all(s, |caps: &regex::Captures<'_>| {
        format!(
            "{}{placeholder}",
            caps.get(1).map(|m| m.as_str()).unwrap_or_default()
        )
    })
    .into_owned()
}

/// The expressions of the variables in `s`, innermost first: an outer variable is listed with
/// its inner variables read as the text `x` (they are substituted before it is evaluated).
/// A leading `-` (no re-substitution of the result) is dropped.
pub fn variable_expressions(s: &str) -> Vec<String> {
    let Some(re) = VARIABLE.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current = s.to_string();
    for _ in 0..MAX_PASSES {
        let mut found = false;
        for caps in re.captures_iter(&current) {
            let Some(var) = caps.get(2) else { continue };
            let raw = var.as_str();
            let inner = raw.get(2..raw.len().saturating_sub(2)).unwrap_or_default();
            let inner = inner.strip_prefix('-').unwrap_or(inner);
            out.push(inner.trim().to_string());
            found = true;
        }
        if !found {
            break;
        }
        current = replace_variables(&current, "x");
    }
    out
}

/// True if any string or key in the value holds a variable.
pub fn value_has_variables(v: &Value) -> bool {
    match v {
        Value::String(s) => has_variables(s),
        Value::Array(items) => items.iter().any(value_has_variables),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| has_variables(k) || value_has_variables(v)),
        _ => false,
    }
}

/// Evaluates one JMESPath expression against the context.
pub fn evaluate(
    expr: &str,
    ctx: &JsonContext,
    opts: SubstituteOptions,
) -> Result<Value, JmespathError> {
    ctx.search(&compiled_for(expr, opts)?)
}

/// A value found by [`evaluate_list`].
pub(crate) enum Found<'a> {
    /// Read straight from the request's JSON (see `Expression::is_direct`).
    Json(crate::jmespath::DirectValue<'a>),
    /// The interpreter's value, shared with the context.
    Var(::jmespath::Rcvar),
}

/// Evaluates a compiled expression (a foreach list), reading the request's JSON directly when
/// the expression allows.
pub(crate) fn evaluate_list<'a>(
    expr: &Expression,
    ctx: &'a JsonContext,
) -> Result<Found<'a>, JmespathError> {
    match ctx.search_json(expr) {
        Some(found) => found.map(Found::Json),
        None => ctx.search_var(expr).map(Found::Var),
    }
}

/// The compiled form of an expression as a request evaluates it (`request.object` read as
/// `request.oldObject` for DELETE).
pub(crate) fn compiled_for(
    expr: &str,
    opts: SubstituteOptions,
) -> Result<Expression, JmespathError> {
    let expr = expr.trim();
    if opts.delete && expr.contains("request.object") {
        return compiled(&expr.replace("request.object", "request.oldObject"));
    }
    compiled(expr)
}

/// A value prepared at policy load for substitution: most condition keys and values are either
/// free of variables or exactly one `{{ expression }}`, and those skip the per-request scan and
/// expression lookup.
#[derive(Debug, Clone)]
pub enum Template {
    /// No variables: used as it is.
    Literal(Value),
    /// A string that is exactly one variable; its typed value replaces it.
    Whole {
        raw: String,
        expr: Expression,
        /// The expression with `request.object` read as `request.oldObject`, for DELETE.
        delete_expr: Expression,
    },
    /// Anything else: substituted per request as [`substitute_all`] does.
    Dynamic(Value),
}

impl Template {
    /// Prepares a value. Never fails: an expression that does not compile stays dynamic and
    /// reports its error when it is evaluated, as before.
    pub fn compile(value: &Value) -> Template {
        if !value_has_variables(value) {
            return Template::Literal(value.clone());
        }
        if let Value::String(s) = value
            && let Some(t) = Self::whole(s)
        {
            return t;
        }
        Template::Dynamic(value.clone())
    }

    fn whole(s: &str) -> Option<Template> {
        let re = VARIABLE.as_ref()?;
        let mut caps = re.captures_iter(s);
        let var = caps.next()?.get(2)?;
        if caps.next().is_some() || var.as_str() != s {
            return None;
        }
        let inner = s.get(2..s.len().saturating_sub(2))?.trim();
        if inner.starts_with('-') || inner == "@" {
            return None;
        }
        let expr = compiled(inner).ok()?;
        let delete_expr = if inner.contains("request.object") {
            compiled(&inner.replace("request.object", "request.oldObject")).ok()?
        } else {
            expr.clone()
        };
        Some(Template::Whole {
            raw: s.to_string(),
            expr,
            delete_expr,
        })
    }

    /// The substituted value; `path` (the value's JSON path in the rule) is built only when it
    /// is needed, for `{{@}}` and errors.
    pub fn substitute(
        &self,
        ctx: &JsonContext,
        opts: SubstituteOptions,
        path: impl Fn() -> String,
    ) -> Result<std::borrow::Cow<'_, Value>, VariableError> {
        use std::borrow::Cow;
        match self {
            Template::Literal(v) => Ok(Cow::Borrowed(v)),
            Template::Whole {
                raw,
                expr,
                delete_expr,
            } => {
                let expr = if opts.delete { delete_expr } else { expr };
                let value = ctx.search(expr).map_err(|source| VariableError::Resolve {
                    variable: raw.clone(),
                    path: path(),
                    source,
                })?;
                // A value that itself carries variables is resolved further.
                match &value {
                    Value::String(next) if has_variables(next) => {
                        substitute_string(next, ctx, opts, &path()).map(Cow::Owned)
                    }
                    _ => Ok(Cow::Owned(value)),
                }
            }
            Template::Dynamic(v) => {
                substitute_walk(v, ctx, opts, &At::Path(&path())).map(Cow::Owned)
            }
        }
    }
}

/// Substitutes every variable in string leaves and keys of `value`.
/// `path` is the JSON path of `value` in the rule, used in errors and by `{{@}}`.
pub fn substitute_all(
    value: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<Value, VariableError> {
    if !value_has_variables(value) {
        return Ok(value.clone());
    }
    substitute_walk(value, ctx, opts, &At::Path(path))
}

/// Where [`substitute_walk`] is, as borrowed steps: the path text is only written for a string
/// that holds variables (for `{{@}}` and errors).
enum At<'a> {
    Path(&'a str),
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn render(&self) -> String {
        match self {
            At::Path(p) => (*p).to_string(),
            At::Key(parent, key) => format!("{}/{}", parent.render(), escape_segment(key)),
            At::Index(parent, i) => format!("{}/{i}", parent.render()),
        }
    }
}

fn substitute_walk(
    value: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    at: &At<'_>,
) -> Result<Value, VariableError> {
    match value {
        // Text without `{{` has nothing to substitute.
        Value::String(s) if !s.contains("{{") => Ok(value.clone()),
        Value::String(s) => substitute_string(s, ctx, opts, &at.render()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| substitute_walk(v, ctx, opts, &At::Index(at, i)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let child = At::Key(at, k);
                let key = if has_variables(k) {
                    match substitute_string(k, ctx, opts, &child.render())? {
                        Value::String(s) => s,
                        other => to_text(&other),
                    }
                } else {
                    k.clone()
                };
                out.insert(key, substitute_walk(v, ctx, opts, &child)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// The text Kyverno splices into a string for a non-string result.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A key as a JSON Pointer segment (RFC 6901), so keys holding `/` such as
/// `corp.com/retention` stay one segment when [`at_expression`] splits the path.
fn escape_segment(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains(['~', '/']) {
        std::borrow::Cow::Owned(key.replace('~', "~0").replace('/', "~1"))
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

/// `{{@}}`: the resource value at the same place as the pattern key being substituted. The
/// rule prefix of `path` (`mutate/patchStrategicMerge`, `validate/pattern`,
/// `validate/anyPattern/<i>`) is skipped; the value is read under `target` when a mutate-existing
/// target is in the context, else under `request.object`.
fn at_expression(path: &str, ctx: &JsonContext) -> String {
    let root = if ctx.contains("target") {
        "target"
    } else {
        "request.object"
    };
    let mut expr = String::from(root);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let skip = match segments.as_slice() {
        ["validate", "anyPattern", ..] => 3,
        ["mutate" | "validate", ..] => 2,
        _ => 0,
    };
    for seg in segments.into_iter().skip(skip) {
        if seg.chars().all(|c| c.is_ascii_digit()) {
            expr.push_str(&format!("[{seg}]"));
        } else {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            // Anchored keys like `(name)` refer to the plain key.
            let key = seg
                .trim_start_matches(['(', '=', '^', 'X', '<', '+'])
                .trim_start_matches('(')
                .trim_end_matches(')');
            expr.push_str(&format!(
                ".\"{}\"",
                key.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    expr
}

/// Substitutes the variables of one string; a string that is exactly one variable becomes its typed value.
pub fn substitute_string(
    s: &str,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<Value, VariableError> {
    let Some(re) = VARIABLE.as_ref() else {
        return Ok(Value::String(s.to_string()));
    };
    let mut current = s.to_string();
    for _ in 0..MAX_PASSES {
        let mut replaced_any = false;
        let mut out = String::with_capacity(current.len());
        let mut last = 0;
        for caps in re.captures_iter(&current) {
            let Some(var) = caps.get(2) else { continue };
            let raw = var.as_str();
            let inner = raw.get(2..raw.len().saturating_sub(2)).unwrap_or_default();
            let (shallow, inner) = match inner.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, inner),
            };
            let expr_text = inner.trim();
            let value = if expr_text == "@" {
                evaluate(&at_expression(path, ctx), ctx, opts)
            } else {
                evaluate(expr_text, ctx, opts)
            }
            .map_err(|source| VariableError::Resolve {
                variable: raw.to_string(),
                path: path.to_string(),
                source,
            })?;
            if raw == current && !shallow {
                // The whole string is one variable: keep the typed value, but resolve
                // variables the value itself may carry.
                if let Value::String(next) = &value
                    && has_variables(next)
                {
                    current = next.clone();
                    replaced_any = true;
                    break;
                }
                return Ok(value);
            }
            let mut text = to_text(&value);
            if shallow {
                text = text.replace("{{", "\\{{");
            }
            out.push_str(current.get(last..var.start()).unwrap_or_default());
            out.push_str(&text);
            last = var.end();
            replaced_any = true;
        }
        if !replaced_any {
            return Ok(Value::String(current.replace("\\{{", "{{")));
        }
        if last > 0 {
            out.push_str(current.get(last..).unwrap_or_default());
            current = out;
        }
    }
    Err(VariableError::TooDeep(MAX_PASSES, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_expressions_lists_inner_variables_first() {
        assert_eq!(
            variable_expressions("a {{ to_upper('{{ @ }}') }} b {{- request.name }}"),
            vec!["@", "request.name", "to_upper('x')"]
        );
        assert!(variable_expressions("no \\{{ variable }}").is_empty());
    }

    #[test]
    fn detects_unescaped_variables_only() {
        assert!(has_variables("a {{ b }}"));
        assert!(!has_variables("a \\{{ b }}"));
        assert!(!has_variables("plain"));
    }

    #[test]
    fn at_expression_uses_plain_keys() {
        let trigger = JsonContext::default();
        let mut with_target = JsonContext::default();
        with_target.set("target", &serde_json::json!({}));
        let cases = [
            (
                "/spec/(name)/0",
                &trigger,
                "request.object.\"spec\".\"name\"[0]",
            ),
            (
                "mutate/patchStrategicMerge/metadata",
                &trigger,
                "request.object.\"metadata\"",
            ),
            (
                "validate/anyPattern/1/spec",
                &trigger,
                "request.object.\"spec\"",
            ),
            (
                "mutate/patchStrategicMerge/metadata",
                &with_target,
                "target.\"metadata\"",
            ),
        ];
        for (path, ctx, want) in cases {
            assert_eq!(at_expression(path, ctx), want, "{path}");
        }
    }

    #[test]
    fn at_reads_keys_holding_dots_and_slashes() {
        let mut ctx = JsonContext::default();
        ctx.set(
            "request",
            &serde_json::json!({"object": {"metadata": {"labels": {"corp.com/retention": "short", "a~b": "x"}}}}),
        );
        let patch = serde_json::json!({"metadata": {"labels": {
            "corp.com/retention": "{{ to_upper('{{ @ }}') }}",
            "a~b": "{{@}}",
        }}});
        let out = substitute_all(
            &patch,
            &ctx,
            SubstituteOptions::default(),
            "mutate/patchStrategicMerge",
        )
        .unwrap();
        assert_eq!(
            out,
            serde_json::json!({"metadata": {"labels": {"corp.com/retention": "SHORT", "a~b": "x"}}})
        );
    }
}
