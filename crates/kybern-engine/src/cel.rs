//! CEL: the expression language of `validate.cel` rules and of the CEL policy kinds
//! (Validating, Mutating, Generating, Deleting and ImageValidating policies, Validating and
//! Mutating admission policies, and their PolicyExceptions).
//!
//! Built on the `cel` interpreter with the Kubernetes extension libraries from `kube-cel`
//! (strings, lists, sets, regex, url, ip/cidr, quantity, semver, format, math, encoders), plus the
//! Kyverno extras in [`library`]. Expressions are parsed once, when a policy is compiled; a parse
//! error is a load error naming the field path.
//!
//! Runtime bound: the interpreter has no cost budget, so evaluation is bounded by its inputs
//! instead. Every JSON input (object, oldObject, params, namespaceObject, request) is limited to
//! [`MAX_INPUT_NODES`] values and expressions to [`MAX_EXPRESSION_LEN`] characters with the
//! parser's recursion limit; the work of an expression is then polynomial in the input with a
//! degree given by its comprehension nesting, and an interpreted expression whose estimate
//! (`inputs^nesting`) is over [`INTERPRETER_BOUND`] is refused before it starts (planned ones
//! count their steps). Inputs over the limit make the policy an `error`.
//!
//! This module must not touch the file system or the network; outside data (resources for
//! `resource.Get`/`resource.List`) comes through [`crate::context::ContextProvider`].

mod ast;
pub mod deleting_policy;
pub mod exceptions;
pub mod generating_policy;
pub mod image_policy;
mod image_verify;
mod jwt;
pub mod library;
pub mod match_constraints;
pub mod mutate_existing;
pub mod mutating_policy;
pub mod plan;
pub mod policy_set;
pub mod request_inputs;
pub mod validate_cel;
pub mod validating_policy;
pub mod value;

#[cfg(test)]
mod tests;

use crate::context::ContextProvider;
use kube_cel::KubeCelExt;
use kube_cel::cel;
use serde_json::Value;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use validate_cel::{CelInput, CelOutcome, ValidateCel};

/// Labels of the request's namespace: from the request, else from the provider.
pub fn namespace_labels(
    req: &crate::request::AdmissionRequest,
    provider: &dyn ContextProvider,
) -> Option<crate::context::Labels> {
    req.namespace_labels
        .clone()
        .or_else(|| provider.namespace_labels(req.namespace()).ok().flatten())
}

/// `name`, or `namespace/name` for a namespaced policy: how an UpdateRequest's `spec.policy`
/// names a CEL policy.
pub fn policy_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// `metadata.name` of a policy document.
pub fn policy_name(doc: &Value) -> String {
    doc.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `metadata.namespace` of a namespaced policy (`default` when absent); empty for cluster-wide kinds.
pub fn policy_namespace(doc: &Value, namespaced: bool) -> String {
    if !namespaced {
        return String::new();
    }
    doc.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string()
}

/// Largest number of JSON values (objects, arrays and scalars) in one evaluation input.
pub const MAX_INPUT_NODES: usize = 1_000_000;

/// Steps an interpreted expression may take at most, by the estimate of
/// `Expression::within_interpreter_bound` (the planner counts its steps instead, against
/// [`plan::STEP_BUDGET`]); about a second of interpreter work.
pub const INTERPRETER_BOUND: u64 = 100_000_000;
/// Longest accepted expression, in characters (Kubernetes' own limit on VAP expressions is 5 KiB
/// per field; Kyverno policies are written well under this).
pub const MAX_EXPRESSION_LEN: usize = 64 * 1024;
/// Parser recursion limit (cel-go's default is 250; nested macros count several levels).
const MAX_RECURSION: u16 = 200;
/// Most provider lookups one expression may make.
const MAX_FETCHES: usize = 32;

/// A CEL policy or expression that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CelError {
    /// Field path of the offending value, e.g. `spec.validations[0].expression`.
    pub path: String,
    pub message: String,
}

impl CelError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        CelError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Brackets outside string literals and comments must pair up. Checked before parsing: the
/// `cel` parser overflows an internal counter on some unbalanced inputs (found by fuzzing).
fn check_brackets(source: &str) -> Result<(), String> {
    let mut open: Vec<char> = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                let rest = source.get(i..).unwrap_or_default();
                let triple: String = std::iter::repeat_n(c, 3).collect();
                if rest.starts_with(&triple) {
                    let end = rest
                        .get(3..)
                        .and_then(|r| r.find(&triple))
                        .ok_or("a string literal is not closed")?;
                    // Skip the opening quotes, the body and the closing quotes.
                    let stop = i + 3 + end + 3;
                    while chars.peek().is_some_and(|(j, _)| *j < stop) {
                        chars.next();
                    }
                    continue;
                }
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err("a string literal is not closed".into());
                }
            }
            '/' if chars.peek().is_some_and(|(_, d)| *d == '/') => {
                for (_, d) in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '(' => open.push(')'),
            '[' => open.push(']'),
            '{' => open.push('}'),
            ')' | ']' | '}' if open.pop() != Some(c) => {
                return Err(format!("unbalanced {c:?} at offset {i}"));
            }
            _ => {}
        }
    }
    match open.last() {
        Some(c) => Err(format!("a bracket is not closed (expected {c:?})")),
        None => Ok(()),
    }
}

/// One parsed CEL expression.
#[derive(Debug, Clone)]
pub struct Expression {
    pub source: String,
    /// The parsed program, or (for [`Expression::compile_deferred`]) why it did not compile.
    ast: Result<Arc<cel::IdedExpr>, String>,
    /// The planned form, or why the expression always runs in the interpreter.
    plan: Result<Arc<plan::Plan>, String>,
}

impl Expression {
    /// Parses `source`; `path` names the field for errors.
    pub fn compile(source: &str, path: &str) -> Result<Expression, CelError> {
        if source.trim().is_empty() {
            return Err(CelError::new(path, "expression is empty"));
        }
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(CelError::new(
                path,
                format!("expression is longer than {MAX_EXPRESSION_LEN} characters"),
            ));
        }
        check_brackets(source)
            .map_err(|e| CelError::new(path, format!("compilation failed: {e}")))?;
        let mut ast = cel::parser::Parser::new()
            .enable_optional_syntax(true)
            .max_recursion_depth(MAX_RECURSION)
            .parse(source)
            .map_err(|e| CelError::new(path, format!("compilation failed: {e}")))?;
        ast::rewrite(&mut ast);
        Ok(Expression {
            source: source.to_string(),
            plan: plan::plan(&ast).map(Arc::new),
            ast: Ok(Arc::new(ast)),
        })
    }

    /// Like [`Expression::compile`], but an expression that does not parse is kept and fails
    /// each evaluation with `compilation error: ...`, as the apiserver's CEL filter reports it:
    /// Kyverno compiles `validate.cel` when a rule runs, so a bad expression fails that rule
    /// and leaves the policy's other rules working. Empty or oversized sources are still
    /// refused.
    pub fn compile_deferred(source: &str, path: &str) -> Result<Expression, CelError> {
        match Expression::compile(source, path) {
            Ok(e) => Ok(e),
            Err(e) if source.trim().is_empty() || source.len() > MAX_EXPRESSION_LEN => Err(e),
            Err(e) => Ok(Expression {
                source: source.to_string(),
                ast: Err(format!("compilation error: {}", e.message)),
                plan: Err("does not compile".into()),
            }),
        }
    }

    /// Why this expression is not planned (it then always runs in the interpreter); `None`
    /// when it is planned.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.plan.as_ref().err().map(String::as_str)
    }

    /// Evaluates against `scope`, returning the CEL value or an error message: planned when it
    /// can be, else (and for every error) by the interpreter.
    pub fn eval(&self, scope: &Scope) -> Result<cel::Value, String> {
        self.eval_value(scope).map(|v| v.to_cel())
    }

    /// Turns the planner off for this expression: it then always runs in the interpreter (the
    /// reference, for comparisons).
    pub fn interpreter_only(&mut self) {
        self.plan = Err("planner switched off".into());
    }

    /// The planner's value alone: `None` when the expression is not planned or the planner
    /// left this evaluation to the interpreter. For checks against [`Expression::interpret`].
    pub fn eval_planned(&self, scope: &Scope) -> Option<cel::Value> {
        let plan = self.plan.as_ref().ok()?;
        plan.eval(scope).ok().map(|v| v.to_cel())
    }

    /// [`Expression::eval`] keeping the planner's representation (inputs stay borrowed).
    pub fn eval_value<'p>(&self, scope: &Scope<'p>) -> Result<plan::V<'p>, String> {
        self.eval_value_by(scope).0
    }

    /// [`Expression::eval_value`], and whether the planner gave the value (else the
    /// interpreter did, or it is an error).
    pub fn eval_value_by<'p>(&self, scope: &Scope<'p>) -> (Result<plan::V<'p>, String>, bool) {
        if let Ok(p) = &self.plan {
            match p.eval(scope) {
                Ok(v) => return (Ok(v), true),
                Err(plan::Fault::Budget) => return (Err(self.over_budget()), false),
                Err(plan::Fault::Unsupported) => {}
            }
        }
        (self.interpret(scope).map(plan::value::from_cel), false)
    }

    /// The [`plan::REQUEST_INPUTS`] the expression reads when they are all it reads
    /// ([`plan::Plan::request_inputs`]); `None` when it reads anything else or is not planned.
    pub fn request_inputs(&self) -> Option<u8> {
        self.plan.as_ref().ok().and_then(|p| p.request_inputs())
    }

    /// The interpreter counts no steps, so an expression it runs is refused when its loops could
    /// take more than [`INTERPRETER_BOUND`] steps: with comprehensions nested `d` deep over inputs
    /// of `n` values (a `lists.range` list counts as the largest input), up to `n^d`.
    fn within_interpreter_bound(&self, ast: &cel::IdedExpr, scope: &Scope) -> Result<(), String> {
        // Walked here rather than kept: this path is rare and an AST walk costs little next to
        // interpreting it.
        let (depth, ranged) = ast::loop_shape(ast);
        if depth == 0 {
            return Ok(());
        }
        let n = if ranged {
            MAX_INPUT_NODES as u64
        } else {
            scope.input_nodes(INTERPRETER_BOUND) as u64
        };
        let exponent = u32::try_from(depth).unwrap_or(u32::MAX);
        let steps = n.max(1).checked_pow(exponent).unwrap_or(u64::MAX);
        if steps <= INTERPRETER_BOUND {
            return Ok(());
        }
        Err(format!(
            "expression {:?} is not evaluated: it runs in the interpreter ({}), which counts no steps, and its comprehensions nest {depth} deep over {}, up to {n}^{} steps, over the bound of {INTERPRETER_BOUND}",
            self.source,
            self.fallback_reason()
                .unwrap_or("the planner left this evaluation to it"),
            if ranged {
                "a lists.range list".to_string()
            } else {
                format!("inputs of {n} values")
            },
            depth,
        ))
    }

    fn over_budget(&self) -> String {
        format!(
            "expression {:?} exceeded its evaluation budget of {} steps",
            self.source,
            plan::STEP_BUDGET
        )
    }

    /// Evaluates with the interpreter only (the reference the planner is checked against).
    /// Lookups of `resource.Get`/`resource.List` are served from the scope's provider between
    /// attempts.
    pub fn interpret(&self, scope: &Scope) -> Result<cel::Value, String> {
        let ast = self.ast.as_ref().map_err(Clone::clone)?;
        self.within_interpreter_bound(ast, scope)?;
        for _ in 0..MAX_FETCHES {
            // A failed attempt's `generator.Apply` calls do not count.
            if let Some(g) = scope.generated() {
                g.take();
            }
            // The scope's variables were converted into the interpreter's representation when
            // they were set; each evaluation only adds its own lookups in a child scope.
            let mut ctx = scope.interpreter().new_inner_scope();
            let fetched = scope.fetched.borrow().clone();
            if !fetched.is_empty() {
                ctx.add_variable_from_value(library::FETCHED_VAR, value::map(fetched));
            }
            let requests = Arc::new(library::FetchRequests::default());
            ctx.add_variable_from_value(
                library::REQUESTS_VAR,
                cel::Value::Opaque(requests.clone()),
            );
            let err = match cel::Value::resolve(ast, &ctx) {
                Ok(v) => return Ok(v),
                Err(e) => value::execution_error(&e),
            };
            let wanted: Vec<String> = requests
                .take()
                .into_iter()
                .filter(|k| !scope.fetched.borrow().contains_key(k))
                .collect();
            if wanted.is_empty() {
                return Err(err);
            }
            for key in wanted {
                let answer = scope.fetch(&key)?;
                scope.fetched.borrow_mut().insert(key, answer);
            }
        }
        Err(format!(
            "expression {:?} needs more than {MAX_FETCHES} resource lookups",
            self.source
        ))
    }

    /// Evaluates to a boolean; any other type is an error.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, String> {
        match self.eval_value(scope)? {
            plan::V::Bool(b) => Ok(b),
            other => Err(format!(
                "expression {:?} must evaluate to bool, got {}",
                self.source,
                value::type_name(&other.to_cel())
            )),
        }
    }

    /// Evaluates to a string (for `messageExpression`).
    pub fn eval_string(&self, scope: &Scope) -> Result<String, String> {
        match self.eval(scope)? {
            cel::Value::String(s) => Ok(s.to_string()),
            other => Err(format!(
                "messageExpression {:?} must evaluate to string, got {}",
                self.source,
                value::type_name(&other)
            )),
        }
    }
}

/// Answers a CEL HTTP call (`METHOD|url|body-json`, from [`library::http_key`]) through the
/// provider: a map response gets its `statusCode` merged in, anything else is wrapped as
/// `{body, statusCode}`, as Kyverno's http library returns it.
fn http_fetch(provider: &dyn ContextProvider, key: &str) -> Result<cel::Value, String> {
    let mut parts = key.splitn(3, '|');
    let (method, url, body) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let call = crate::context::ApiCall {
        url: url.to_string(),
        is_service: true,
        method: method.to_string(),
        body: (!body.is_null()).then_some(body),
        cel_http: true,
    };
    let response = provider
        .api_call(&call)
        .map_err(|e| format!("http.{}: {e}", if method == "GET" { "Get" } else { "Post" }))?;
    let response = match response {
        Value::Object(mut m) => {
            m.entry("statusCode").or_insert(Value::from(200));
            Value::Object(m)
        }
        other => serde_json::json!({"body": other, "statusCode": 200}),
    };
    Ok(value::from_json(&response))
}

/// The variables visible to an expression, and where resource lookups go.
///
/// Variables are kept in the planner's representation: inputs set with [`Scope::set_json_ref`]
/// stay borrowed JSON. The interpreter's context is built from them only when an expression
/// first needs the interpreter (its own representation is a deep copy), and kept up to date
/// from then on. The variables every policy kind sets ([`plan::KNOWN_VARS`]) have fixed places,
/// which planned expressions read without a search by name.
pub struct Scope<'p> {
    known: [Option<plan::V<'p>>; plan::KNOWN_VARS.len()],
    others: Vec<(&'static str, plan::V<'p>)>,
    /// Boxed: most scopes never build it, and a scope is made for every policy.
    ctx: OnceCell<Box<cel::Context<'static>>>,
    provider: Option<&'p dyn ContextProvider>,
    fetched: RefCell<HashMap<String, cel::Value>>,
}

impl Default for Scope<'_> {
    fn default() -> Self {
        Scope {
            known: Default::default(),
            others: Vec::new(),
            ctx: OnceCell::new(),
            provider: None,
            fetched: RefCell::default(),
        }
    }
}

impl Clone for Scope<'_> {
    fn clone(&self) -> Self {
        Scope {
            known: self.known.clone(),
            others: self.others.clone(),
            ctx: OnceCell::new(),
            provider: self.provider,
            fetched: self.fetched.clone(),
        }
    }
}

impl<'p> Scope<'p> {
    /// Every variable with its name.
    fn variables(&self) -> impl Iterator<Item = (&'static str, &plan::V<'p>)> {
        plan::KNOWN_VARS
            .iter()
            .zip(&self.known)
            .filter_map(|(name, v)| Some((*name, v.as_ref()?)))
            .chain(self.others.iter().map(|(name, v)| (*name, v)))
    }

    /// Values in the scope's variables, counted up to `cap`.
    pub fn input_nodes(&self, cap: u64) -> usize {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let mut n = 0usize;
        for (_, v) in self.variables() {
            n = n.saturating_add(plan::value::nodes(v, cap.saturating_sub(n)));
            if n >= cap {
                break;
            }
        }
        n
    }

    /// A scope whose `resource.*` lookups go to `provider`.
    pub fn with_provider(provider: Option<&'p dyn ContextProvider>) -> Self {
        Scope {
            provider,
            ..Scope::default()
        }
    }

    /// A scope with `resource.*` lookups going to `provider` and these borrowed inputs, in the
    /// order of [`plan::KNOWN_VARS`] (`variables` is set later).
    pub fn with_inputs(
        provider: Option<&'p dyn ContextProvider>,
        inputs: [&'p Value; plan::KNOWN_VARS.len() - 1],
    ) -> Self {
        let mut scope = Scope::with_provider(provider);
        for (slot, v) in scope.known.iter_mut().zip(inputs) {
            *slot = Some(plan::value::from_json(v));
        }
        scope
    }

    /// Records `generator.Apply` calls from now on; read them with [`Scope::generated`].
    pub fn collect_generated(&mut self) {
        self.set(
            library::GENERATED_VAR,
            cel::Value::Opaque(Arc::new(library::Generated::default())),
        );
    }

    /// The `generator.Apply` collector, when [`Scope::collect_generated`] set one.
    pub fn generated(&self) -> Option<&library::Generated> {
        self.others.iter().find_map(|(name, v)| match v {
            plan::V::Cel(cel::Value::Opaque(o)) if *name == library::GENERATED_VAR => {
                o.downcast_ref()
            }
            _ => None,
        })
    }

    /// Sets (or replaces) a top-level variable from JSON.
    pub fn set_json(&mut self, name: &'static str, v: &Value) {
        self.set(name, value::from_json(v));
    }

    /// Sets (or replaces) a top-level variable from JSON that outlives the scope: read in
    /// place, converted for the interpreter only if an expression needs it.
    pub fn set_json_ref(&mut self, name: &'static str, v: &'p Value) {
        self.set_value(name, plan::value::from_json(v));
    }

    /// Sets (or replaces) a top-level variable.
    pub fn set(&mut self, name: &'static str, v: cel::Value) {
        if let Some(ctx) = self.ctx.get_mut() {
            ctx.add_variable_from_value(name.to_string(), v.clone());
        }
        self.put(name, plan::value::from_cel(v));
    }

    /// Sets (or replaces) a top-level variable in the planner's representation.
    pub fn set_value(&mut self, name: &'static str, v: plan::V<'p>) {
        if let Some(ctx) = self.ctx.get_mut() {
            ctx.add_variable_from_value(name.to_string(), v.to_cel());
        }
        self.put(name, v);
    }

    fn put(&mut self, name: &'static str, v: plan::V<'p>) {
        if let Some(slot) = plan::known_var(name).and_then(|i| self.known.get_mut(i)) {
            *slot = Some(v);
        } else if let Some(slot) = self.others.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = v;
        } else {
            self.others.push((name, v));
        }
    }

    /// A variable not in [`plan::KNOWN_VARS`], borrowed.
    pub fn named_binding(&self, name: &str) -> Option<&plan::V<'p>> {
        self.others.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The variable at place `i` of [`plan::KNOWN_VARS`], borrowed.
    pub fn known_binding(&self, i: usize) -> Option<&plan::V<'p>> {
        self.known.get(i)?.as_ref()
    }

    /// The interpreter's context with every variable converted, built on first use.
    fn interpreter(&self) -> &cel::Context<'static> {
        self.ctx.get_or_init(|| {
            let mut ctx = root().new_inner_scope();
            let converted: Vec<(&str, cel::Value)> = self
                .variables()
                .map(|(name, v)| (name, v.to_cel()))
                .collect();
            // `request` is the whole AdmissionRequest: when it was set without them, it
            // carries the `object` and `oldObject` values (shared, not converted twice).
            let find = |n: &str| {
                converted
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.clone())
            };
            let (object, old_object) = (find("object"), find("oldObject"));
            for (name, mut v) in converted {
                if name == "request"
                    && let cel::Value::Map(m) = &mut v
                {
                    let entries = Arc::make_mut(&mut m.map);
                    for (key, val) in [("object", &object), ("oldObject", &old_object)] {
                        if let Some(val) = val {
                            entries
                                .entry(key.to_string().into())
                                .or_insert_with(|| val.clone());
                        }
                    }
                }
                ctx.add_variable_from_value(name.to_string(), v);
            }
            Box::new(ctx)
        })
    }

    /// Answers one `resource.Get`/`resource.List` lookup (key from [`library::fetch_key`]).
    fn fetch(&self, key: &str) -> Result<cel::Value, String> {
        let provider = self
            .provider
            .ok_or_else(|| "resource lookups are not available here".to_string())?;
        if let Some(rest) = key.strip_prefix("Http|") {
            return http_fetch(provider, rest);
        }
        if let Some(rest) = key.strip_prefix(library::VERIFY_KEY) {
            return image_verify::answer(provider, rest);
        }
        let mut parts = key.split('|');
        let (op, api_version, resource, namespace, name) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = match_constraints::kind_for_resource(group, resource);
        if op == "Global" {
            // The namespace slot of the key carries the projection.
            let entry = provider
                .global_context(name)
                .map_err(|e| format!("globalContext.Get: {e}"))?
                .ok_or_else(|| format!("globalContext.Get: entry {name:?} not found"))?;
            let projected = if namespace.is_empty() {
                Some(&entry)
            } else {
                entry.get(namespace)
            };
            return projected.map(value::from_json).ok_or_else(|| {
                format!("globalContext.Get: entry {name:?} has no projection {namespace:?}")
            });
        }
        if op == "Image" {
            return provider
                .image_data(name)
                .map(|d| value::from_json(&d.data))
                .map_err(|e| format!("image.GetMetadata: {e}"));
        }
        if op == "Get" {
            match provider.resource(api_version, &kind, namespace, name) {
                Ok(Some(v)) => Ok(value::from_json(&v)),
                Ok(None) => Err(format!(
                    "resource.Get: {resource} {namespace:?}/{name:?} not found"
                )),
                Err(e) => Err(format!("resource.Get: {e}")),
            }
        } else {
            let items = provider
                .list(api_version, &kind, namespace)
                .map_err(|e| format!("resource.List: {e}"))?;
            Ok(value::from_json(&serde_json::json!({
                "apiVersion": api_version,
                "kind": format!("{kind}List"),
                "items": items,
            })))
        }
    }
}

/// A `variables` entry: a name and its expression.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Shared with every evaluation's `variables` map.
    pub name: Arc<String>,
    pub expression: Expression,
    /// Set when the value depends on the request's inputs alone: other policies evaluated on
    /// the same request reuse it ([`request_inputs::SharedVariables`]).
    pub shared: Option<request_inputs::SharedKey>,
    /// No expression of the policy can read this variable ([`mark_unused_variables`]): it is
    /// not evaluated (Kyverno evaluates variables lazily, so its errors would not show either).
    pub unused: bool,
    /// The expression may read `variables` (its text names it).
    pub reads_variables: bool,
}

/// Marks the variables that no expression among `sources` (every expression of the policy,
/// variables included) can read: their name appears nowhere, and no expression reads the
/// `variables` map as a whole.
pub fn mark_unused_variables<'s>(
    vars: &mut [Variable],
    sources: impl IntoIterator<Item = &'s str>,
) {
    let own: Vec<String> = vars.iter().map(|v| v.expression.source.clone()).collect();
    let mut sources: Vec<&str> = sources.into_iter().collect();
    sources.extend(own.iter().map(String::as_str));
    let whole_map = sources.iter().any(|s| {
        s.match_indices("variables").any(|(i, m)| {
            !matches!(
                s.get(i + m.len()..).and_then(|rest| rest.chars().next()),
                Some('.' | '[')
            )
        })
    });
    if whole_map {
        return;
    }
    let names: Vec<String> = vars.iter().map(|v| v.name.to_string()).collect();
    for (v, name) in vars.iter_mut().zip(names) {
        v.unused = !sources.iter().any(|s| s.contains(name.as_str()));
    }
}

/// The errors of the variables that failed (reported only when an expression reads them, as
/// Kyverno evaluates variables lazily); their values are in the scope as `variables`.
#[derive(Debug, Clone, Default)]
pub struct VariableValues {
    errors: Vec<(String, String)>,
}

impl VariableValues {
    /// Evaluates `vars` in order; each sees the ones before it as `variables.<name>`. The
    /// values stay in the scope, in the planner's representation (borrowing the inputs).
    pub fn evaluate(vars: &[Variable], scope: &mut Scope) -> VariableValues {
        VariableValues::evaluate_shared(vars, scope, None)
    }

    /// [`VariableValues::evaluate`], taking the values of variables that read only the
    /// request's inputs from `shared` when another policy computed them on the same inputs.
    pub fn evaluate_shared<'p>(
        vars: &[Variable],
        scope: &mut Scope<'p>,
        shared: Option<&request_inputs::SharedVariables<'p>>,
    ) -> VariableValues {
        let mut out = VariableValues::default();
        let mut values: Vec<(Arc<String>, plan::V)> = Vec::new();
        // `variables` is (re)set only when an expression about to run can read it.
        let mut stale = true;
        for v in vars {
            if v.unused {
                continue;
            }
            if stale && v.reads_variables {
                scope.set_value("variables", plan::V::Map(Arc::new(values.clone())));
                stale = false;
            }
            let value = match (shared, &v.shared) {
                (Some(memo), Some(key)) => memo.value(key, &v.expression, scope),
                _ => v.expression.eval_value(scope),
            };
            match value {
                Ok(val) => {
                    values.push((Arc::clone(&v.name), val));
                    stale = true;
                }
                Err(e) => out.errors.push((v.name.to_string(), e)),
            }
        }
        if stale {
            scope.set_value("variables", plan::V::Map(Arc::new(values)));
        }
        out
    }

    /// Rewrites an evaluation error caused by reading a variable that failed into that
    /// variable's own error.
    pub fn explain(&self, error: String) -> String {
        for (name, e) in &self.errors {
            if error.contains(&format!("No such key: {name}")) {
                return format!("variable {name:?}: {e}");
            }
        }
        error
    }
}

/// Counts the JSON values in `v`, stopping once `limit` is passed.
pub fn json_size_within(v: &Value, limit: usize) -> bool {
    let mut stack = vec![v];
    let mut n = 0usize;
    while let Some(v) = stack.pop() {
        n += 1;
        if n > limit {
            return false;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    true
}

/// The environment every expression runs in: the CEL standard functions, the Kubernetes
/// libraries and the Kyverno extras. Built once.
fn root() -> &'static cel::Context<'static> {
    static ROOT: OnceLock<cel::Context<'static>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut ctx = cel::Context::default().with_all();
        library::register(&mut ctx);
        ctx.add_function(ast::OPT_SELECT_FN, ast::opt_select);
        ctx
    })
}

/// Compiles a list of `{name, expression}` variables at `path`.
pub fn compile_variables(list: Option<&Value>, path: &str) -> Result<Vec<Variable>, CelError> {
    compile_variables_with(list, path, Expression::compile)
}

/// How an expression source becomes an [`Expression`]: [`Expression::compile`] or
/// [`Expression::compile_deferred`].
pub type Compile = fn(&str, &str) -> Result<Expression, CelError>;

/// [`compile_variables`] with the given way to compile each expression.
pub fn compile_variables_with(
    list: Option<&Value>,
    path: &str,
    compile: Compile,
) -> Result<Vec<Variable>, CelError> {
    let mut out = Vec::new();
    let Some(list) = list else {
        return Ok(out);
    };
    let items = list
        .as_array()
        .ok_or_else(|| CelError::new(path, "must be a list"))?;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CelError::new(format!("{p}.name"), "is required"))?;
        let src = item
            .get("expression")
            .and_then(Value::as_str)
            .ok_or_else(|| CelError::new(format!("{p}.expression"), "is required"))?;
        let expression = compile(src, &format!("{p}.expression"))?;
        out.push(Variable {
            name: Arc::new(name.to_string()),
            shared: request_inputs::SharedKey::of(&expression),
            reads_variables: src.contains("variables"),
            expression,
            unused: false,
        });
    }
    Ok(out)
}

/// A named boolean condition (`matchConditions`, `celPreconditions`).
#[derive(Debug, Clone)]
pub struct Condition {
    pub name: String,
    pub expression: Expression,
}

/// Compiles a list of `{name, expression}` conditions at `path`.
pub fn compile_conditions(list: Option<&Value>, path: &str) -> Result<Vec<Condition>, CelError> {
    compile_conditions_with(list, path, Expression::compile)
}

/// [`compile_conditions`] with the given way to compile each expression.
pub fn compile_conditions_with(
    list: Option<&Value>,
    path: &str,
    compile: Compile,
) -> Result<Vec<Condition>, CelError> {
    Ok(compile_variables_with(list, path, compile)?
        .into_iter()
        .map(|v| Condition {
            name: v.name.to_string(),
            expression: v.expression,
        })
        .collect())
}

/// How a list of conditions came out.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionsOutcome {
    /// All true.
    Met,
    /// The first false condition, by name.
    NotMet(String),
    Error(String),
}

/// Evaluates conditions as the apiserver does: any false → not met (even if another errored);
/// otherwise any error → error; otherwise met.
pub fn evaluate_conditions(conds: &[Condition], scope: &Scope) -> ConditionsOutcome {
    let mut error = None;
    for c in conds {
        match c.expression.eval_bool(scope) {
            Ok(true) => {}
            Ok(false) => return ConditionsOutcome::NotMet(c.name.clone()),
            Err(e) => {
                if error.is_none() {
                    error = Some(format!("condition {:?}: {e}", c.name));
                }
            }
        }
    }
    match error {
        Some(e) => ConditionsOutcome::Error(e),
        None => ConditionsOutcome::Met,
    }
}
