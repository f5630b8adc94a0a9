//! `--explain` of `kybern apply` and `kybern test`: for each resource, every rule of every
//! policy with what decided it: the result and its message, the exception that applied, or why the rule did not select
//! the resource (`match` filter by filter, the `exclude` filter, another namespace).

use crate::evaluation::{Inputs, ResponseMap, request_for_explain, rule_values_for_explain};
use kybern_engine::explain;
use kybern_engine::policy::Policy;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;

fn resource_title(v: &Value) -> String {
    let get = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let ns = get("/metadata/namespace");
    let name = get("/metadata/name");
    if ns.is_empty() {
        format!("{} {name}", get("/kind"))
    } else {
        format!("{} {ns}/{name}", get("/kind"))
    }
}

/// The trace of one resource, with its rules' context entries loaded as evaluation loaded them.
fn trace_of(
    inputs: &Inputs,
    original: &Value,
    responses: &[kybern_engine::response::EngineResponse],
) -> Vec<explain::TraceEntry> {
    let resource = Arc::new(original.clone());
    let request = request_for_explain(inputs, &resource);
    let name = original
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values = |p: &Policy, rule: &str| rule_values_for_explain(inputs, &p.name, name, rule);
    let sources = explain::TraceSources {
        provider: inputs.provider,
        rule_values: &values,
    };
    explain::trace(&inputs.set.policies, responses, &request, Some(sources))
}

/// The explanation of one batch, resource by resource (`originals` in the order of
/// `responses`).
pub fn render(inputs: &Inputs, originals: &[Value], responses: &ResponseMap, out: &mut String) {
    for (original, (_, resps)) in originals.iter().zip(responses) {
        let _ = writeln!(out, "\nexplain {}:", resource_title(original));
        for e in trace_of(inputs, original, resps) {
            let _ = writeln!(out, "  {}: {}", e.name(), e.outcome);
        }
    }
}

/// The explanation of one batch as JSON elements, one per resource:
/// `{"resource": {apiVersion, kind, namespace, name}, "trace": [{policy, kind, rule, outcome}]}`.
pub fn items(inputs: &Inputs, originals: &[Value], responses: &ResponseMap) -> Vec<String> {
    let mut out = Vec::with_capacity(originals.len());
    for (original, (_, resps)) in originals.iter().zip(responses) {
        let get = |p: &str| {
            original
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let trace: Vec<Value> = trace_of(inputs, original, resps)
            .into_iter()
            .map(|e| json!({"policy": e.policy, "kind": e.kind, "rule": e.rule, "outcome": e.outcome}))
            .collect();
        out.push(
            json!({
                "resource": {
                    "apiVersion": get("/apiVersion"),
                    "kind": get("/kind"),
                    "namespace": get("/metadata/namespace"),
                    "name": get("/metadata/name"),
                },
                "trace": trace,
            })
            .to_string(),
        );
    }
    out
}
