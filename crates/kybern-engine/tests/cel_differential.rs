//! Differential check of the CEL planner against the interpreter: every CEL expression of the
//! conformance corpus's policies (validations, variables, match conditions, message and
//! audit-annotation expressions) is evaluated both ways over the resources of its suite and
//! generated variations of them (fields removed, set to null, to a wrong type, emptied).
//! Whenever the planner produces a value, the interpreter must produce the same value.
//!
//! The corpus is `$KYBERN_CONFORMANCE_DIR` (default `../shared/conformance` beside the
//! repository); without it the check is skipped with a message (and fails under `CI`).

use kybern_engine::cel::validate_cel::{CelInput, base_scope};
use kybern_engine::cel::{Expression, Variable, VariableValues, compile_variables, plan};
use kybern_engine::request::{AdmissionRequest, Operation};
use serde_json::{Value, json};

mod support;
use support::corpus::{self, variations};

/// Every CEL expression source under `v`, and the `variables` lists.
fn expressions(v: &Value, exprs: &mut Vec<String>, vars: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expression" | "messageExpression" | "valueExpression", Value::String(s)) => {
                        exprs.push(s.clone());
                    }
                    ("variables", Value::Array(_)) => vars.push(x.clone()),
                    _ => {}
                }
                expressions(x, exprs, vars);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| expressions(x, exprs, vars)),
        _ => {}
    }
}

#[derive(Default)]
struct Tally {
    expressions: usize,
    planned: usize,
    evaluations: usize,
    planned_values: usize,
    mismatches: Vec<String>,
    fallbacks: Vec<(String, String)>,
    /// Planned expressions the planner handed to the interpreter although it found a value.
    handed_over: std::collections::BTreeMap<String, usize>,
}

fn check(tally: &mut Tally, e: &Expression, scope: &kybern_engine::cel::Scope, resource: &Value) {
    tally.evaluations += 1;
    let Some(planned) = e.eval_planned(scope) else {
        if e.fallback_reason().is_none() && e.interpret(scope).is_ok() {
            *tally.handed_over.entry(e.source.clone()).or_default() += 1;
        }
        return;
    };
    tally.planned_values += 1;
    let reference = e.interpret(scope);
    let same = match &reference {
        Ok(r) => *r == planned,
        Err(_) => false,
    };
    // `time.now()` differs between two evaluations.
    if !same && !e.source.contains("now()") && tally.mismatches.len() < 50 {
        tally.mismatches.push(format!(
            "{:?}\n  planner: {planned:?}\n  interpreter: {reference:?}\n  object: {}",
            e.source,
            serde_json::to_string(resource).unwrap_or_default()
        ));
    }
}

fn run_policy(tally: &mut Tally, doc: &Value, resources: &[Value]) {
    let mut sources = Vec::new();
    let mut var_lists = Vec::new();
    expressions(doc, &mut sources, &mut var_lists);
    let compiled: Vec<Expression> = sources
        .iter()
        .filter_map(|s| Expression::compile(s, "expression").ok())
        .collect();
    let c = plan::coverage(&compiled);
    tally.expressions += c.total;
    tally.planned += c.planned;
    tally.fallbacks.extend(c.fallbacks);
    let vars: Vec<Variable> = var_lists
        .iter()
        .filter_map(|l| compile_variables(Some(l), "variables").ok())
        .flatten()
        .collect();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "default", "labels": {"kubernetes.io/metadata.name": "default"}}});
    for resource in resources {
        for (i, object) in variations(resource, 25).iter().enumerate() {
            let update = i % 2 == 1;
            let req = AdmissionRequest {
                operation: if update {
                    Operation::Update
                } else {
                    Operation::Create
                },
                object: object.clone().into(),
                old_object: if update {
                    resource.clone().into()
                } else {
                    Value::Null.into()
                },
                ..AdmissionRequest::default()
            };
            let request = CelInput::request_json(&req);
            let input = CelInput {
                object: &req.object,
                old_object: &req.old_object,
                request: &request,
                namespace_object: Some(&ns),
                params: None,
                provider: None,
            };
            let Ok(mut scope) = base_scope(&input) else {
                continue;
            };
            // Variables in order, each checked, then set as the engine sets them.
            for (n, v) in vars.iter().enumerate() {
                VariableValues::evaluate(vars.get(..n).unwrap_or_default(), &mut scope);
                check(tally, &v.expression, &scope, object);
            }
            VariableValues::evaluate(&vars, &mut scope);
            for e in &compiled {
                check(tally, e, &scope, object);
            }
        }
    }
}

#[test]
fn planner_agrees_with_interpreter_on_the_corpus() {
    let Some(by_dir) = corpus::suites_or_skip("the differential check", |d| {
        let mut s = Vec::new();
        expressions(d, &mut s, &mut Vec::new());
        !s.is_empty()
    }) else {
        return;
    };
    let mut tally = Tally::default();
    for (policies, resources) in by_dir.values() {
        for p in policies {
            run_policy(&mut tally, p, resources);
        }
    }
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, r) in &tally.fallbacks {
        *reasons.entry(r.as_str()).or_default() += 1;
    }
    eprintln!(
        "plan coverage: {}/{} expressions planned ({:.1}%); {} evaluations, {} answered by the planner",
        tally.planned,
        tally.expressions,
        100.0 * tally.planned as f64 / tally.expressions.max(1) as f64,
        tally.evaluations,
        tally.planned_values
    );
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (r, n) in reasons.iter().take(40) {
        eprintln!("  fallback x{n}: {r}");
    }
    let handed: usize = tally.handed_over.values().sum();
    eprintln!(
        "planned evaluations handed to the interpreter that it answered with a value: {handed}"
    );
    let mut handed_over: Vec<_> = tally.handed_over.iter().collect();
    handed_over.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    for (src, n) in handed_over.iter().take(15) {
        eprintln!("  x{n}: {src:?}");
    }
    assert!(
        tally.mismatches.is_empty(),
        "{} planner results differ from the interpreter's:\n{}",
        tally.mismatches.len(),
        tally.mismatches.join("\n")
    );
}
