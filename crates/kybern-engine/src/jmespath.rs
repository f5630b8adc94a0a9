//! JMESPath with Kyverno's semantics: the standard language (via the `jmespath` crate), Kyverno's 51
//! custom functions, Go-style number output, and Kyverno's "Unknown key" error for plain paths.
//!
//! Expressions are compiled once against one shared runtime and are cheap to clone and share
//! between threads. Nothing here touches the file system or the network; only `time_now*` and
//! `random` are non-deterministic, as they are in Kyverno.

mod arithmetic;
mod direct;

pub(crate) use direct::{Resolved as DirectResolved, Source as DirectSource, Val as DirectValue};
mod functions;
mod go_time;
mod growth;
mod image;
mod semver_range;
mod strings;
mod time;
mod x509;
mod yaml;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use ::jmespath::ast::{Ast, Comparator};
use ::jmespath::{ErrorReason, Rcvar, Runtime, Variable};
use serde_json::Value;

/// Errors from compiling or evaluating an expression.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum JmespathError {
    /// The expression is not valid JMESPath.
    #[error("invalid JMESPath expression {expr:?}: {message}")]
    Syntax { expr: String, message: String },
    /// A plain path named a key that is absent (Kyverno's wording, which users match on).
    #[error("Unknown key \"{key}\" in path")]
    NotFound { expr: String, key: String },
    /// The expression may build values far larger than its input (see `growth`).
    #[error(
        "JMESPath expression {expr:?} may build values {growth} times the size of its input, over the bound of {}",
        growth::MAX_GROWTH
    )]
    TooCostly { expr: String, growth: u64 },
    /// Evaluation failed, e.g. a function got an argument of the wrong type.
    #[error("JMESPath query {expr:?} failed: {message}")]
    Runtime { expr: String, message: String },
}

/// A compiled JMESPath expression; cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Expression {
    inner: Arc<Compiled>,
}

struct Compiled {
    expr: ::jmespath::Expression<'static>,
    /// True when the expression is only fields, indexes and sub-expressions, the one shape for
    /// which Kyverno reports a missing key as an error instead of null.
    plain_path: bool,
    /// False when the expression provably never reads the context's top-level `images` key
    /// (it names other top-level fields only and never hands the whole context to anything).
    reads_images: bool,
    /// False when the expression provably never reads `request.object` or `request.oldObject`
    /// (e.g. `request.namespace`): the context converts the objects only for those that do.
    reads_request_objects: bool,
    /// The field paths below `request.object` and below `request.oldObject` whose subtrees are
    /// all the expression reads of them (`metadata.annotations` for
    /// `request.object.metadata.annotations.x || 'y'`), when it reads them only that way: the
    /// context then converts just those subtrees instead of the whole objects.
    object_paths: Option<ObjectPaths>,
    /// The top-level fields of the context the expression may read (`@` when it may hand the
    /// whole context on), for a context that must know whether a value it holds is read.
    root_fields: Vec<String>,
    /// The plan evaluated straight over the request's JSON, for expressions that read the
    /// context only through field chains into the request's objects (see `direct`).
    direct: Option<direct::Plan>,
}

/// Paths below `request.object` and `request.oldObject` (see `Compiled::object_paths`).
#[derive(Debug, Default)]
pub(crate) struct ObjectPaths {
    pub object: Vec<Vec<String>>,
    pub old_object: Vec<Vec<String>>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.as_str()).finish()
    }
}

/// The runtime with the standard functions and Kyverno's, built once.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    functions::register(&mut runtime);
    runtime
});

/// Compiles an expression; syntax errors become [`JmespathError::Syntax`].
pub fn compile(expr: &str) -> Result<Expression, JmespathError> {
    let parsed = RUNTIME.compile(expr).map_err(|e| syntax_error(expr, &e))?;
    let growth = growth::growth(parsed.as_ast());
    if growth > growth::MAX_GROWTH {
        return Err(JmespathError::TooCostly {
            expr: expr.to_string(),
            growth,
        });
    }
    let plain_path = is_plain_path(parsed.as_ast());
    let compiled =
        ::jmespath::Expression::new(expr, guard_functions(parsed.as_ast().clone()), &RUNTIME);
    let reads_images = reads_root_field(compiled.as_ast(), "images", true);
    let reads_request_objects = ["object", "oldObject"]
        .iter()
        .any(|field| reads_root_path(compiled.as_ast(), &["request", field], true));
    let object_paths = if reads_request_objects {
        let mut paths = ObjectPaths::default();
        let ok = subtree_reads(
            compiled.as_ast(),
            &["request", "object"],
            true,
            &mut paths.object,
        ) && subtree_reads(
            compiled.as_ast(),
            &["request", "oldObject"],
            true,
            &mut paths.old_object,
        );
        ok.then_some(paths)
    } else {
        None
    };
    let direct = direct::plan(compiled.as_ast());
    let mut facts = ExpressionFacts::default();
    collect_facts(compiled.as_ast(), true, &mut facts, 0);
    let mut root_fields = facts.roots;
    root_fields.sort();
    root_fields.dedup();
    Ok(Expression {
        inner: Arc::new(Compiled {
            expr: compiled,
            plain_path,
            reads_images,
            reads_request_objects,
            object_paths,
            root_fields,
            direct,
        }),
    })
}

/// Collects the paths below `prefix` whose subtrees `ast` reads, each a field chain from the
/// root that goes below `prefix`; false when `ast` may read `prefix` some other way (the value
/// at `prefix` or an ancestor handed on whole, `@` at the root). `on_root`: the node's input is
/// the data itself.
fn subtree_reads(ast: &Ast, prefix: &[&str], on_root: bool, out: &mut Vec<Vec<String>>) -> bool {
    let overlaps = |chain: &[&str]| chain.iter().zip(prefix).all(|(a, b)| a == b);
    let mut take = |chain: Vec<&str>| {
        if !overlaps(&chain) {
            return true;
        }
        match chain.get(prefix.len()..) {
            Some(below) if !below.is_empty() => {
                out.push(below.iter().map(|s| s.to_string()).collect());
                true
            }
            _ => false,
        }
    };
    if let Some(chain) = field_chain(ast) {
        return !on_root || take(chain);
    }
    match ast {
        Ast::Identity { .. } => !on_root,
        Ast::Field { .. } | Ast::Index { .. } | Ast::Slice { .. } | Ast::Literal { .. } => true,
        Ast::Subexpr { lhs, rhs: _, .. } | Ast::Projection { lhs, rhs: _, .. } => {
            // The right side reads only what the left side hands it.
            match field_chain(lhs) {
                Some(chain) => !on_root || take(chain),
                None => subtree_reads(lhs, prefix, on_root, out),
            }
        }
        Ast::Comparison { lhs, rhs, .. } | Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            subtree_reads(lhs, prefix, on_root, out) && subtree_reads(rhs, prefix, on_root, out)
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            subtree_reads(predicate, prefix, on_root, out)
                && subtree_reads(then, prefix, on_root, out)
        }
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            subtree_reads(node, prefix, on_root, out)
        }
        Ast::Expref { ast, .. } => subtree_reads(ast, prefix, false, out),
        Ast::Function { args, .. } => args.iter().all(|a| subtree_reads(a, prefix, on_root, out)),
        Ast::MultiList { elements, .. } => elements
            .iter()
            .all(|a| subtree_reads(a, prefix, on_root, out)),
        Ast::MultiHash { elements, .. } => elements
            .iter()
            .all(|kv| subtree_reads(&kv.value, prefix, on_root, out)),
    }
}

/// The fields of `ast` when it is a plain chain of field lookups (`a`, `a.b.c`).
fn field_chain(ast: &Ast) -> Option<Vec<&str>> {
    match ast {
        Ast::Field { name, .. } => Some(vec![name.as_str()]),
        Ast::Subexpr { lhs, rhs, .. } => {
            let Ast::Field { name, .. } = &**rhs else {
                return None;
            };
            let mut chain = field_chain(lhs)?;
            chain.push(name.as_str());
            Some(chain)
        }
        _ => None,
    }
}

/// Whether evaluating `ast` may read the value at `path` below the data (or hand on that value
/// or one of its ancestors whole). `on_root`: the node's input is the data itself.
fn reads_root_path(ast: &Ast, path: &[&str], on_root: bool) -> bool {
    // One is a prefix of the other: the chain reads into the path's value or hands on an
    // ancestor of it.
    let overlaps = |chain: &[&str], path: &[&str]| chain.iter().zip(path).all(|(a, b)| a == b);
    if let Some(chain) = field_chain(ast) {
        return on_root && overlaps(&chain, path);
    }
    match ast {
        Ast::Identity { .. } => on_root,
        Ast::Field { .. } | Ast::Index { .. } | Ast::Slice { .. } | Ast::Literal { .. } => false,
        Ast::Subexpr { lhs, rhs, .. } | Ast::Projection { lhs, rhs, .. } => {
            match field_chain(lhs) {
                Some(chain) if on_root => {
                    if !overlaps(&chain, path) {
                        false
                    } else if chain.len() >= path.len() {
                        true
                    } else {
                        // The left side is an ancestor: the right side reads below it.
                        reads_root_path(rhs, path.get(chain.len()..).unwrap_or_default(), true)
                    }
                }
                Some(_) => false,
                // The right side reads only what the left side hands it.
                None => reads_root_path(lhs, path, on_root),
            }
        }
        Ast::Comparison { lhs, rhs, .. } | Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            reads_root_path(lhs, path, on_root) || reads_root_path(rhs, path, on_root)
        }
        Ast::Condition {
            predicate, then, ..
        } => reads_root_path(predicate, path, on_root) || reads_root_path(then, path, on_root),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            reads_root_path(node, path, on_root)
        }
        Ast::Expref { ast, .. } => reads_root_path(ast, path, false),
        Ast::Function { args, .. } => args.iter().any(|a| reads_root_path(a, path, on_root)),
        Ast::MultiList { elements, .. } => {
            elements.iter().any(|a| reads_root_path(a, path, on_root))
        }
        Ast::MultiHash { elements, .. } => elements
            .iter()
            .any(|kv| reads_root_path(&kv.value, path, on_root)),
    }
}

/// Whether evaluating `ast` may read the top-level field `name` of the data. `on_root`: the
/// node's input is the root itself. Anything that could hand the root on (`@` at the root) counts.
fn reads_root_field(ast: &Ast, name: &str, on_root: bool) -> bool {
    match ast {
        Ast::Identity { .. } => on_root,
        Ast::Field { name: field, .. } => on_root && field == name,
        Ast::Index { .. } | Ast::Slice { .. } | Ast::Literal { .. } => false,
        Ast::Subexpr { lhs, rhs, .. } | Ast::Projection { lhs, rhs, .. } => {
            reads_root_field(lhs, name, on_root) || reads_root_field(rhs, name, false)
        }
        Ast::Comparison { lhs, rhs, .. } | Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            reads_root_field(lhs, name, on_root) || reads_root_field(rhs, name, on_root)
        }
        Ast::Condition {
            predicate, then, ..
        } => reads_root_field(predicate, name, on_root) || reads_root_field(then, name, on_root),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            reads_root_field(node, name, on_root)
        }
        // An expression reference is applied to values the other arguments produce.
        Ast::Expref { ast, .. } => reads_root_field(ast, name, false),
        Ast::Function { args, .. } => args.iter().any(|a| reads_root_field(a, name, on_root)),
        Ast::MultiList { elements, .. } => {
            elements.iter().any(|a| reads_root_field(a, name, on_root))
        }
        Ast::MultiHash { elements, .. } => elements
            .iter()
            .any(|kv| reads_root_field(&kv.value, name, on_root)),
    }
}

/// What a static check can tell of an expression without data: the top-level fields it reads
/// (`@` when it may hand on the whole root) and the functions it calls with their argument
/// counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExpressionFacts {
    pub roots: Vec<String>,
    pub calls: Vec<(String, usize)>,
    /// Patterns given as literals to the regex functions.
    pub regexes: Vec<String>,
}

/// Why a regex function would refuse `pattern` (Go RE2 syntax, kybern's size bounds).
pub fn regex_error(pattern: &str) -> Option<String> {
    strings::go_regex(pattern).err()
}

/// [`ExpressionFacts`] of `expr`, or its syntax error.
pub fn facts(expr: &str) -> Result<ExpressionFacts, JmespathError> {
    let ast = ::jmespath::parse(expr).map_err(|e| syntax_error(expr, &e))?;
    let mut facts = ExpressionFacts::default();
    collect_facts(&ast, true, &mut facts, 0);
    facts.roots.sort();
    facts.roots.dedup();
    Ok(facts)
}

/// How many arguments function `name` takes: `(min, max)`, `max` `None` when variadic; `None`
/// for a function that does not exist.
pub fn function_arity(name: &str) -> Option<(usize, Option<usize>)> {
    static ARITY: LazyLock<std::collections::HashMap<&'static str, (usize, Option<usize>)>> =
        LazyLock::new(|| {
            functions::docs()
                .into_iter()
                .map(|d| (d.name, arity_of_signature(&d.signature)))
                .collect()
        });
    ARITY.get(name).copied()
}

/// `(min, max)` argument counts of a signature such as `merge(object...) object`.
fn arity_of_signature(signature: &str) -> (usize, Option<usize>) {
    let params = signature
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(p, _)| p.trim())
        .unwrap_or_default();
    if params.is_empty() {
        return (0, Some(0));
    }
    let list: Vec<&str> = params.split(',').map(str::trim).collect();
    if list.last().is_some_and(|p| p.ends_with("...")) {
        (list.len(), None)
    } else {
        (list.len(), Some(list.len()))
    }
}

fn collect_facts(ast: &Ast, on_root: bool, facts: &mut ExpressionFacts, depth: usize) {
    if depth > 256 {
        // Too deep to follow: it may read anything.
        facts.roots.push("@".into());
        return;
    }
    let go = |a: &Ast, root: bool, facts: &mut ExpressionFacts| {
        collect_facts(a, root, facts, depth + 1);
    };
    match ast {
        Ast::Identity { .. } => {
            if on_root {
                facts.roots.push("@".into());
            }
        }
        Ast::Field { name, .. } => {
            if on_root {
                facts.roots.push(name.clone());
            }
        }
        Ast::Index { .. } | Ast::Slice { .. } | Ast::Literal { .. } => {}
        Ast::Subexpr { lhs, rhs, .. } | Ast::Projection { lhs, rhs, .. } => {
            go(lhs, on_root, facts);
            go(rhs, false, facts);
        }
        Ast::Comparison { lhs, rhs, .. } | Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            go(lhs, on_root, facts);
            go(rhs, on_root, facts);
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            go(predicate, on_root, facts);
            go(then, on_root, facts);
        }
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            go(node, on_root, facts);
        }
        Ast::Expref { ast, .. } => go(ast, false, facts),
        Ast::Function { name, args, .. } => {
            facts.calls.push((name.clone(), args.len()));
            if name.starts_with("regex_")
                && let Some(Ast::Literal { value, .. }) = args.first()
                && let Some(pattern) = value.as_string()
            {
                facts.regexes.push(pattern.clone());
            }
            for a in args {
                go(a, on_root, facts);
            }
        }
        Ast::MultiList { elements, .. } => {
            for a in elements {
                go(a, on_root, facts);
            }
        }
        Ast::MultiHash { elements, .. } => {
            for kv in elements {
                go(&kv.value, on_root, facts);
            }
        }
    }
}

fn syntax_error(expr: &str, e: &::jmespath::JmespathError) -> JmespathError {
    let message = match &e.reason {
        ErrorReason::Parse(m) => format!("{m} at column {}", e.column),
        ErrorReason::Runtime(r) => r.to_string(),
    };
    JmespathError::Syntax {
        expr: expr.to_string(),
        message,
    }
}

impl Expression {
    /// The source text of the expression.
    pub fn as_str(&self) -> &str {
        self.inner.expr.as_str()
    }

    /// Evaluates against data.
    ///
    /// When the whole expression is a plain field/sub-expression/index chain (`a.b[0].c`) and a
    /// key is missing from an object on the way, this returns [`JmespathError::NotFound`], as
    /// Kyverno does. Everything else (`||`, comparisons, functions, filters, projections) treats a
    /// missing key as null. A present key whose value is JSON null is not an error, and a key
    /// looked up under a non-object parent yields null.
    pub fn search(&self, data: &Value) -> Result<Value, JmespathError> {
        self.search_var(&to_variable(data))
    }

    /// False when the expression never reads the top-level `images` key of the context.
    pub(crate) fn reads_images(&self) -> bool {
        self.inner.reads_images
    }

    /// The subtrees of the request's objects the expression reads, when it reads them only
    /// through field paths (see `Compiled::object_paths`).
    pub(crate) fn object_paths(&self) -> Option<&ObjectPaths> {
        self.inner.object_paths.as_ref()
    }

    /// False when the expression provably never reads the top-level key `name` of the data.
    pub(crate) fn reads_root_field(&self, name: &str) -> bool {
        self.inner
            .root_fields
            .iter()
            .any(|field| field == name || field == "@")
    }

    /// False when the expression never reads `request.object` or `request.oldObject`.
    pub(crate) fn reads_request_objects(&self) -> bool {
        self.inner.reads_request_objects
    }

    /// True when the expression can be evaluated straight over JSON: it reads the context only
    /// through field chains into `request.object`, `request.oldObject` or top-level keys other
    /// than `request` (see `direct`).
    pub fn is_direct(&self) -> bool {
        self.inner.direct.is_some()
    }

    /// Evaluates over a request's objects and top-level values given as JSON, without
    /// converting them, when the expression is planned for that (see [`Expression::is_direct`])
    /// and reads nothing else; `None` otherwise. A `request` entry of `tops` gives the
    /// request's other fields. The result is what [`Expression::search`] gives on a context
    /// holding just those values.
    pub fn search_json(
        &self,
        object: &Value,
        old_object: &Value,
        tops: &[(&str, &Value)],
    ) -> Option<Result<Value, JmespathError>> {
        let sources = |s: &direct::Source| match s {
            direct::Source::Object => Some(direct::Resolved::Json(object)),
            direct::Source::OldObject => Some(direct::Resolved::Json(old_object)),
            direct::Source::Top(name) => tops
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| direct::Resolved::Json(v)),
            // Given as JSON here: `tops` may hold the request's other fields as `request`.
            direct::Source::Request => tops
                .iter()
                .find(|(n, _)| *n == "request")
                .map(|(_, v)| direct::Resolved::Json(v)),
        };
        Some(
            self.search_sources(&sources)?
                .map(|v| normalized(Cow::Owned(v.into_json()))),
        )
    }

    /// Evaluates over the JSON `sources` give, numbers left as the input has them (as the
    /// interpreter's values keep them); `None` when not planned or a source is not given.
    pub(crate) fn search_sources<'a>(
        &self,
        sources: direct::Sources<'_, 'a>,
    ) -> Option<Result<direct::Val<'a>, JmespathError>> {
        let plan = self.inner.direct.as_ref()?;
        direct::eval(plan, sources, self.as_str(), self.inner.plain_path)
    }

    /// Evaluates against data already converted to interpreter values (see [`crate::json_context`]).
    pub fn search_var(&self, root: &Rcvar) -> Result<Value, JmespathError> {
        self.search_rc(root).map(|v| to_json(&v))
    }

    /// Like [`Expression::search_var`], returning the interpreter value (shared with `root`).
    pub(crate) fn search_rc(&self, root: &Rcvar) -> Result<Rcvar, JmespathError> {
        if self.inner.plain_path {
            return walk_path(self.inner.expr.as_ast(), root).map_err(|key| {
                JmespathError::NotFound {
                    expr: self.as_str().to_string(),
                    key,
                }
            });
        }
        // Interpret the shared tree directly: `Expression::search` would first copy the whole
        // context through serde.
        let expr = &self.inner.expr;
        let mut ctx = ::jmespath::Context::new(expr.as_str(), &RUNTIME);
        ::jmespath::interpret(root, expr.as_ast(), &mut ctx).map_err(|e| JmespathError::Runtime {
            expr: self.as_str().to_string(),
            message: runtime_message(&e),
        })
    }
}

fn runtime_message(e: &::jmespath::JmespathError) -> String {
    match &e.reason {
        // Custom functions report their own messages through `Parse`, the crate's only free-text reason.
        ErrorReason::Parse(m) => m.clone(),
        ErrorReason::Runtime(r) => r.to_string(),
    }
}

/// Kyverno's JMESPath gives null when a function is applied to a value that is missing
/// (`metadata.annotations.values(@)` on an object without annotations; projections then drop it)
/// instead of failing the type check. `a.f(..)` becomes `a != null ? a.f(..) : null`.
fn guard_functions(ast: Ast) -> Ast {
    let b = |a: Box<Ast>| Box::new(guard_functions(*a));
    match ast {
        Ast::Subexpr { offset, lhs, rhs } => {
            let lhs = b(lhs);
            let rhs = b(rhs);
            if matches!(*rhs, Ast::Function { .. }) {
                let predicate = Ast::Comparison {
                    offset,
                    comparator: Comparator::NotEqual,
                    lhs: lhs.clone(),
                    rhs: Box::new(Ast::Literal {
                        offset,
                        value: null(),
                    }),
                };
                Ast::Condition {
                    offset,
                    predicate: Box::new(predicate),
                    then: Box::new(Ast::Subexpr { offset, lhs, rhs }),
                }
            } else {
                Ast::Subexpr { offset, lhs, rhs }
            }
        }
        Ast::Comparison {
            offset,
            comparator,
            lhs,
            rhs,
        } => Ast::Comparison {
            offset,
            comparator,
            lhs: b(lhs),
            rhs: b(rhs),
        },
        Ast::Condition {
            offset,
            predicate,
            then,
        } => Ast::Condition {
            offset,
            predicate: b(predicate),
            then: b(then),
        },
        Ast::Expref { offset, ast } => Ast::Expref {
            offset,
            ast: b(ast),
        },
        Ast::Flatten { offset, node } => Ast::Flatten {
            offset,
            node: b(node),
        },
        Ast::Function { offset, name, args } => Ast::Function {
            offset,
            name,
            args: args.into_iter().map(guard_functions).collect(),
        },
        Ast::MultiList { offset, elements } => Ast::MultiList {
            offset,
            elements: elements.into_iter().map(guard_functions).collect(),
        },
        Ast::MultiHash { offset, elements } => Ast::MultiHash {
            offset,
            elements: elements
                .into_iter()
                .map(|kv| ::jmespath::ast::KeyValuePair {
                    key: kv.key,
                    value: guard_functions(kv.value),
                })
                .collect(),
        },
        Ast::Not { offset, node } => Ast::Not {
            offset,
            node: b(node),
        },
        Ast::Projection { offset, lhs, rhs } => Ast::Projection {
            offset,
            lhs: b(lhs),
            rhs: b(rhs),
        },
        Ast::ObjectValues { offset, node } => Ast::ObjectValues {
            offset,
            node: b(node),
        },
        Ast::And { offset, lhs, rhs } => Ast::And {
            offset,
            lhs: b(lhs),
            rhs: b(rhs),
        },
        Ast::Or { offset, lhs, rhs } => Ast::Or {
            offset,
            lhs: b(lhs),
            rhs: b(rhs),
        },
        other => other,
    }
}

fn is_plain_path(ast: &Ast) -> bool {
    match ast {
        Ast::Field { .. } | Ast::Index { .. } | Ast::Identity { .. } => true,
        Ast::Subexpr { lhs, rhs, .. } => is_plain_path(lhs) && is_plain_path(rhs),
        _ => false,
    }
}

/// Evaluates a plain path; `Err(key)` names the first key missing from an object.
fn walk_path(ast: &Ast, data: &Rcvar) -> Result<Rcvar, String> {
    match ast {
        Ast::Field { name, .. } => match data.as_object() {
            Some(map) => map.get(name).cloned().ok_or_else(|| name.clone()),
            None => Ok(null()),
        },
        Ast::Index { idx, .. } => Ok(if *idx >= 0 {
            data.get_index(idx.unsigned_abs() as usize)
        } else {
            data.get_negative_index(idx.unsigned_abs() as usize)
        }),
        Ast::Subexpr { lhs, rhs, .. } => walk_path(rhs, &walk_path(lhs, data)?),
        _ => Ok(data.clone()),
    }
}

fn null() -> Rcvar {
    Rcvar::new(Variable::Null)
}

/// Converts JSON into the interpreter's value type.
pub(crate) fn to_variable(v: &Value) -> Rcvar {
    Rcvar::new(match v {
        Value::Null => Variable::Null,
        Value::Bool(b) => Variable::Bool(*b),
        Value::Number(n) => Variable::Number(n.clone()),
        Value::String(s) => Variable::String(s.clone()),
        Value::Array(a) => Variable::Array(a.iter().map(to_variable).collect()),
        Value::Object(m) => Variable::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_variable(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    })
}

/// Converts an interpreter value to JSON. Whole floats become integers, as Go prints `3` for 3.0.
pub(crate) fn to_json(v: &Variable) -> Value {
    to_json_with(v, normalize_number)
}

/// Like [`to_json`], numbers as they are (as the interpreter's values keep them).
pub(crate) fn to_json_raw(v: &Variable) -> Value {
    to_json_with(v, serde_json::Number::clone)
}

/// An interpreter value as JSON (an expression reference becomes null), `number` writing
/// each number.
fn to_json_with(v: &Variable, number: fn(&serde_json::Number) -> serde_json::Number) -> Value {
    match v {
        Variable::Null | Variable::Expref(_) => Value::Null,
        Variable::Bool(b) => Value::Bool(*b),
        Variable::Number(n) => Value::Number(number(n)),
        Variable::String(s) => Value::String(s.clone()),
        Variable::Array(a) => Value::Array(a.iter().map(|x| to_json_with(x, number)).collect()),
        Variable::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_json_with(v, number)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

/// `v` with whole floats as integers, as [`to_json`] gives them.
pub(crate) fn normalized(v: Cow<'_, Value>) -> Value {
    normalized_cow(v).into_owned()
}

/// Like [`normalized`], borrowing still when there is nothing to change.
pub(crate) fn normalized_cow(v: Cow<'_, Value>) -> Cow<'_, Value> {
    fn has_whole_float(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_f64() && normalize_number(n) != *n,
            Value::Array(a) => a.iter().any(has_whole_float),
            Value::Object(m) => m.values().any(has_whole_float),
            _ => false,
        }
    }
    fn normalize(v: &mut Value) {
        match v {
            Value::Number(n) => *n = normalize_number(n),
            Value::Array(a) => a.iter_mut().for_each(normalize),
            Value::Object(m) => m.values_mut().for_each(normalize),
            _ => {}
        }
    }
    if !has_whole_float(&v) {
        return v;
    }
    let mut v = v.into_owned();
    normalize(&mut v);
    Cow::Owned(v)
}

fn normalize_number(n: &serde_json::Number) -> serde_json::Number {
    if n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && f.abs() < 9.007_199_254_740_992e15
    {
        // Exact: |f| < 2^53 so the cast loses nothing.
        return serde_json::Number::from(f as i64);
    }
    n.clone()
}

/// Documentation of one available function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDoc {
    pub name: &'static str,
    /// E.g. `regex_match(string, string|number) bool`.
    pub signature: String,
    pub description: &'static str,
}

/// Every available function (Kyverno's custom ones and the standard built-ins), sorted by name.
pub fn functions() -> Vec<FunctionDoc> {
    functions::docs()
}

/// A readable dump of the syntax tree, for `kybern jp parse`.
pub fn parse_tree(expr: &str) -> Result<String, JmespathError> {
    let ast = ::jmespath::parse(expr).map_err(|e| syntax_error(expr, &e))?;
    let mut out = String::new();
    dump(&ast, 0, &mut out);
    Ok(out)
}

fn dump(ast: &Ast, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let (name, value, children): (&str, Option<String>, Vec<&Ast>) = match ast {
        Ast::Comparison {
            comparator,
            lhs,
            rhs,
            ..
        } => (
            "Comparator",
            Some(
                match comparator {
                    Comparator::Equal => "==",
                    Comparator::NotEqual => "!=",
                    Comparator::LessThan => "<",
                    Comparator::LessThanEqual => "<=",
                    Comparator::GreaterThan => ">",
                    Comparator::GreaterThanEqual => ">=",
                }
                .to_string(),
            ),
            vec![lhs, rhs],
        ),
        Ast::Condition {
            predicate, then, ..
        } => ("Condition", None, vec![predicate, then]),
        Ast::Identity { .. } => ("CurrentNode", None, vec![]),
        Ast::Expref { ast, .. } => ("ExpRef", None, vec![ast]),
        Ast::Flatten { node, .. } => ("Flatten", None, vec![node]),
        Ast::Function { name, args, .. } => (
            "FunctionExpression",
            Some(name.clone()),
            args.iter().collect(),
        ),
        Ast::Field { name, .. } => ("Field", Some(format!("{name:?}")), vec![]),
        Ast::Index { idx, .. } => ("Index", Some(idx.to_string()), vec![]),
        Ast::Literal { value, .. } => ("Literal", Some(to_json(value).to_string()), vec![]),
        Ast::MultiList { elements, .. } => ("MultiSelectList", None, elements.iter().collect()),
        Ast::MultiHash { elements, .. } => {
            let _ = writeln!(out, "{pad}MultiSelectHash {{");
            for kv in elements {
                let _ = writeln!(out, "{pad}  KeyValPair {:?} {{", kv.key);
                dump(&kv.value, depth + 2, out);
                let _ = writeln!(out, "{pad}  }}");
            }
            let _ = writeln!(out, "{pad}}}");
            return;
        }
        Ast::Not { node, .. } => ("NotExpression", None, vec![node]),
        Ast::Projection { lhs, rhs, .. } => ("Projection", None, vec![lhs, rhs]),
        Ast::ObjectValues { node, .. } => ("ValueProjection", None, vec![node]),
        Ast::And { lhs, rhs, .. } => ("AndExpression", None, vec![lhs, rhs]),
        Ast::Or { lhs, rhs, .. } => ("OrExpression", None, vec![lhs, rhs]),
        Ast::Slice {
            start, stop, step, ..
        } => (
            "Slice",
            Some(format!(
                "[{}:{}:{step}]",
                start.map(|s| s.to_string()).unwrap_or_default(),
                stop.map(|s| s.to_string()).unwrap_or_default()
            )),
            vec![],
        ),
        Ast::Subexpr { lhs, rhs, .. } => ("Subexpression", None, vec![lhs, rhs]),
    };
    let _ = write!(out, "{pad}{name}");
    if let Some(v) = value {
        let _ = write!(out, " {v}");
    }
    if children.is_empty() {
        out.push('\n');
        return;
    }
    out.push_str(" {\n");
    for child in children {
        dump(child, depth + 1, out);
    }
    let _ = writeln!(out, "{pad}}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, data: &Value) -> Result<Value, JmespathError> {
        compile(expr)?.search(data)
    }

    #[test]
    fn functions_on_missing_values_give_null_and_projections_drop_them() {
        let data = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {}}},
            {"name": "b"}
        ]}, "metadata": {}});
        assert_eq!(
            eval("metadata.annotations.values(@)[]", &data),
            Ok(Value::Null)
        );
        assert_eq!(
            eval("spec.containers[].resources.keys(@)[]", &data),
            Ok(json!(["limits"]))
        );
        // A present value of the wrong type is still an error.
        assert!(eval("spec.containers.keys(@)", &data).is_err());
    }

    #[test]
    fn plain_paths_report_missing_keys() {
        let data = json!({"request": {"object": {"metadata": {"name": "x", "labels": null}, "spec": {"list": [{"a": 1}]}}}});
        let cases: &[(&str, Result<Value, &str>)] = &[
            ("request.object.metadata.name", Ok(json!("x"))),
            ("request.object.metadata.namespace", Err("namespace")),
            ("request.object.spec.foo.bar", Err("foo")),
            ("missing", Err("missing")),
            // A present null is a value, and a key under a null/non-object parent is null.
            ("request.object.metadata.labels", Ok(json!(null))),
            ("request.object.metadata.labels.app", Ok(json!(null))),
            ("request.object.metadata.name.x", Ok(json!(null))),
            ("request.object.spec.list[0].a", Ok(json!(1))),
            ("request.object.spec.list[5].a", Ok(json!(null))),
            ("request.object.spec.list[-1].a", Ok(json!(1))),
            ("request.object.spec.list[0].b", Err("b")),
            // Not plain paths: missing is null.
            (
                "request.object.metadata.namespace || 'none'",
                Ok(json!("none")),
            ),
            ("request.object.spec.list[*].b", Ok(json!([]))),
            ("request.object.metadata.namespace == null", Ok(json!(true))),
            (
                "to_string(request.object.metadata.namespace)",
                Ok(json!("null")),
            ),
        ];
        for (expr, want) in cases {
            let got = eval(expr, &data);
            match want {
                Ok(v) => assert_eq!(got.as_ref().ok(), Some(v), "{expr}: {got:?}"),
                Err(key) => assert_eq!(
                    got,
                    Err(JmespathError::NotFound {
                        expr: expr.to_string(),
                        key: key.to_string()
                    }),
                    "{expr}"
                ),
            }
        }
        let err = eval("a.b", &json!({})).unwrap_err();
        assert_eq!(err.to_string(), "Unknown key \"a\" in path");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(compile("a.["), Err(JmespathError::Syntax { .. })));
        assert!(matches!(
            parse_tree("a.["),
            Err(JmespathError::Syntax { .. })
        ));
    }

    #[test]
    fn whole_floats_print_as_integers() {
        assert_eq!(eval("`3.0`", &json!({})).unwrap().to_string(), "3");
        assert_eq!(eval("`2.5`", &json!({})).unwrap().to_string(), "2.5");
        assert_eq!(eval("avg(@)", &json!([1, 2, 3])).unwrap().to_string(), "2");
    }

    #[test]
    fn runtime_errors_are_reported() {
        let err = eval("to_upper(`1`)", &json!({})).unwrap_err();
        assert!(matches!(err, JmespathError::Runtime { .. }), "{err:?}");
        let err = eval("nope(@)", &json!({})).unwrap_err();
        assert!(matches!(err, JmespathError::Runtime { .. }), "{err:?}");
    }

    #[test]
    fn expressions_are_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Expression>();
        let e = compile("a").unwrap();
        assert_eq!(e.clone().as_str(), "a");
    }

    #[test]
    fn parse_tree_dumps_nodes() {
        let tree = parse_tree("request.object.metadata.name | truncate(@, `9`)").unwrap();
        assert!(tree.contains("FunctionExpression truncate"), "{tree}");
        assert!(tree.contains("Field \"request\""), "{tree}");
        assert!(tree.contains("Literal 9"), "{tree}");
    }

    #[test]
    fn function_list_is_complete_and_sorted() {
        let docs = functions();
        let names: Vec<&str> = docs.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 51 + 25, "{names:?}");
        let regex = docs.iter().find(|d| d.name == "regex_match").unwrap();
        assert_eq!(regex.signature, "regex_match(string, string|number) bool");
        // Every documented function is callable (unknown functions fail with a distinct message).
        for d in &docs {
            let err = eval(&format!("{}()", d.name), &json!({}));
            if let Err(JmespathError::Runtime { message, .. }) = err {
                assert!(
                    !message.contains("undefined function"),
                    "{}: {message}",
                    d.name
                );
            }
        }
    }
}
