//! Per-request cost of the Pod Security Standards restricted profile written as
//! ValidatingPolicies (benches/vpol/restricted.yaml), next to the same profile as ClusterPolicy
//! patterns in the `evaluate` bench.
//!
//! Policies are compiled once (expressions parsed and planned), outside the timing loop. Each
//! iteration evaluates every ValidatingPolicy on one CREATE request and collects the results.
//! Groups, measured in the same run:
//! - `restricted-validating-policies`: as the engine runs them (planned, interpreter fallback);
//! - `restricted-validating-policies-interpreter`: the same with the planner switched off;
//! - `restricted-patterns-baseline`: the same checks as pattern ClusterPolicies
//!   (`benches/policies/`, as in the `evaluate` bench), the cost to compare with.
//!
//! Run: `cargo bench -p kybern-engine --bench cel_policies`.

#[path = "support/fixed.rs"]
mod fixed;

use criterion::{Criterion, criterion_group, criterion_main};
use kybern_engine::cel::request_inputs::{RequestInputs, SharedVariables};
use kybern_engine::cel::validating_policy::{CelPolicyResult, ValidatingPolicy};
use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::policy::{Policy, compile_policy};
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::{EngineResponse, RuleStatus};
use kybern_engine::yaml;
use std::collections::BTreeMap;
use std::hint::black_box;

/// (case name, resource, whether every policy should pass)
const RESOURCES: [(&str, &str, bool); 3] = [
    (
        "pod-compliant",
        include_str!("resources/pod-compliant.yaml"),
        true,
    ),
    (
        "pod-noncompliant",
        include_str!("resources/pod-noncompliant.yaml"),
        false,
    ),
    (
        "deployment-compliant",
        include_str!("resources/deployment-compliant.yaml"),
        true,
    ),
];

fn policies() -> Vec<ValidatingPolicy> {
    yaml::parse_all(include_str!("vpol/restricted.yaml"))
        .unwrap_or_else(|e| panic!("vpol/restricted.yaml: {e}"))
        .iter()
        .map(|d| ValidatingPolicy::compile(d).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The policies with every expression left to the interpreter.
fn interpreter_only(mut policies: Vec<ValidatingPolicy>) -> Vec<ValidatingPolicy> {
    for p in &mut policies {
        for c in &mut p.match_conditions {
            c.expression.interpreter_only();
        }
        for v in &mut p.variables {
            v.expression.interpreter_only();
        }
        for v in &mut p.validations {
            v.expression.interpreter_only();
            if let Some(m) = &mut v.message_expression {
                m.interpreter_only();
            }
        }
    }
    policies
}

const PATTERN_POLICIES: [&str; 3] = [
    include_str!("policies/baseline.yaml"),
    include_str!("policies/restricted.yaml"),
    include_str!("policies/workload.yaml"),
];

fn pattern_policies() -> Vec<Policy> {
    PATTERN_POLICIES
        .iter()
        .flat_map(|text| yaml::parse_all(text).unwrap_or_else(|e| panic!("{e}")))
        .map(|doc| compile_policy(&doc).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// As the `evaluate` bench: a context for the request, then every policy.
fn evaluate_patterns(
    engine: &Engine,
    policies: &[Policy],
    req: &AdmissionRequest,
) -> Vec<EngineResponse> {
    let no_values = BTreeMap::<String, RuleValues>::new();
    let pctx = PolicyContext::new(req);
    policies
        .iter()
        .map(|p| engine.validate(p, &pctx, &[], &no_values))
        .collect()
}

fn request(text: &str) -> AdmissionRequest {
    let object = yaml::parse_all(text)
        .ok()
        .and_then(|d| d.into_iter().next())
        .unwrap_or_else(|| panic!("resource does not parse"));
    AdmissionRequest {
        operation: Operation::Create,
        object: object.into(),
        ..AdmissionRequest::default()
    }
}

/// What one admission request costs: its CEL inputs and request-wide variable values (built
/// once, shared), then every policy.
fn evaluate(policies: &[ValidatingPolicy], req: &AdmissionRequest) -> Vec<CelPolicyResult> {
    let inputs = RequestInputs::new(req);
    let shared = SharedVariables::default();
    policies
        .iter()
        .map(|p| p.evaluate_in(&inputs, &shared, &NoProvider))
        .collect()
}

fn bench(c: &mut Criterion) {
    let planned = policies();
    let interpreted = interpreter_only(policies());
    for (group_name, policies) in [
        ("restricted-validating-policies", &planned),
        ("restricted-validating-policies-interpreter", &interpreted),
    ] {
        let mut group = c.benchmark_group(group_name);
        for (name, text, compliant) in RESOURCES {
            let req = request(text);
            let results = evaluate(policies, &req);
            let all_pass = results.iter().all(|r| *r == CelPolicyResult::Pass);
            assert_eq!(all_pass, compliant, "{name}: {results:?}");
            // Both ways decide alike, and alike with inputs built per policy.
            assert_eq!(results, evaluate(&interpreted, &req), "{name}");
            let per_policy: Vec<_> = policies
                .iter()
                .map(|p| p.evaluate(&req, &NoProvider))
                .collect();
            assert_eq!(results, per_policy, "{name}");
            if fixed::run_fixed(&format!("{group_name}/{name}"), || {
                evaluate(policies, black_box(&req))
            }) {
                continue;
            }
            group.bench_function(name, |b| {
                b.iter(|| black_box(evaluate(policies, black_box(&req))));
            });
        }
        group.finish();
    }
    let patterns = pattern_policies();
    let engine = Engine::new(&NoProvider);
    let mut group = c.benchmark_group("restricted-patterns-baseline");
    for (name, text, compliant) in RESOURCES {
        let mut req = request(text);
        req.no_user_info = true;
        let responses = evaluate_patterns(&engine, &patterns, &req);
        let bad = responses
            .iter()
            .flat_map(|r| &r.rules)
            .any(|r| matches!(r.status, RuleStatus::Fail | RuleStatus::Error));
        assert_eq!(!bad, compliant, "{name}: patterns");
        if fixed::run_fixed(&format!("restricted-patterns-baseline/{name}"), || {
            evaluate_patterns(&engine, &patterns, black_box(&req))
        }) {
            continue;
        }
        group.bench_function(name, |b| {
            b.iter(|| black_box(evaluate_patterns(&engine, &patterns, black_box(&req))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
