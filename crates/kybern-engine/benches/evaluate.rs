//! Per-request evaluation cost of a realistic policy set.
//!
//! Policies are compiled once, outside the timing loop, as a server would hold them. Each
//! iteration evaluates every policy of the set on one admission request (CREATE) and collects the
//! responses, which is the work the webhook does per request once the request is decoded.
//!
//! Groups:
//! - `restricted-patterns`: the Pod Security Standards restricted profile (with the baseline
//!   controls) written as `pattern`/`anyPattern`/`deny`/`foreach` rules, plus label and image
//!   rules (benches/policies/).
//! - `restricted-podsecurity`: the same profile as one `validate.podSecurity` rule
//!   (benches/podsecurity/).
//!
//! Run: `cargo bench -p kybern-engine --bench evaluate`.

#[path = "support/fixed.rs"]
mod fixed;

use criterion::{Criterion, criterion_group, criterion_main};
use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::policy::{Policy, compile_policy};
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::{EngineResponse, RuleStatus};
use kybern_engine::yaml;
use std::collections::BTreeMap;
use std::hint::black_box;

const PATTERN_POLICIES: [(&str, &str); 3] = [
    ("baseline.yaml", include_str!("policies/baseline.yaml")),
    ("restricted.yaml", include_str!("policies/restricted.yaml")),
    ("workload.yaml", include_str!("policies/workload.yaml")),
];

const POD_SECURITY_POLICIES: [(&str, &str); 1] = [(
    "restricted.yaml",
    include_str!("podsecurity/restricted.yaml"),
)];

/// (case name, resource, whether every rule should pass)
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

fn compile_all(files: &[(&str, &str)]) -> Vec<Policy> {
    let mut policies = Vec::new();
    for (file, text) in files {
        let docs = yaml::parse_all(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for doc in docs {
            policies.push(compile_policy(&doc).unwrap_or_else(|e| panic!("{file}: {e}")));
        }
    }
    policies
}

fn request(name: &str, text: &str) -> AdmissionRequest {
    let mut docs = yaml::parse_all(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document expected");
    AdmissionRequest {
        operation: Operation::Create,
        object: docs.remove(0).into(),
        no_user_info: true,
        ..AdmissionRequest::default()
    }
}

/// What one admission request costs: a context for the request, then every policy.
fn evaluate(
    engine: &Engine,
    policies: &[Policy],
    request: &AdmissionRequest,
) -> Vec<EngineResponse> {
    let no_values = BTreeMap::<String, RuleValues>::new();
    let pctx = PolicyContext::new(request);
    policies
        .iter()
        .map(|p| engine.validate(p, &pctx, &[], &no_values))
        .collect()
}

/// Makes sure the bench measures real work: rules apply, and the outcome is the expected one.
fn check_outcome(group: &str, case: &str, responses: &[EngineResponse], compliant: bool) {
    let results: Vec<_> = responses.iter().flat_map(|r| &r.rules).collect();
    assert!(!results.is_empty(), "{group}/{case}: no rule applied");
    let bad: Vec<_> = results
        .iter()
        .filter(|r| matches!(r.status, RuleStatus::Fail | RuleStatus::Error))
        .map(|r| format!("{} {:?}: {}", r.name, r.status, r.message))
        .collect();
    if compliant {
        assert!(
            bad.is_empty(),
            "{group}/{case}: unexpected failures: {bad:#?}"
        );
    } else {
        assert!(!bad.is_empty(), "{group}/{case}: expected failures");
    }
}

fn bench_group(c: &mut Criterion, group: &str, files: &[(&str, &str)]) {
    let policies = compile_all(files);
    let provider = NoProvider;
    let engine = Engine::new(&provider);
    let mut g = c.benchmark_group(group);
    for (case, text, compliant) in RESOURCES {
        let req = request(case, text);
        check_outcome(group, case, &evaluate(&engine, &policies, &req), compliant);
        if fixed::run_fixed(&format!("{group}/{case}"), || {
            evaluate(&engine, black_box(&policies), black_box(&req))
        }) {
            continue;
        }
        g.bench_function(case, |b| {
            b.iter(|| evaluate(&engine, black_box(&policies), black_box(&req)));
        });
    }
    g.finish();
}

fn restricted_patterns(c: &mut Criterion) {
    bench_group(c, "restricted-patterns", &PATTERN_POLICIES);
}

fn restricted_podsecurity(c: &mut Criterion) {
    bench_group(c, "restricted-podsecurity", &POD_SECURITY_POLICIES);
}

criterion_group!(benches, restricted_patterns, restricted_podsecurity);
criterion_main!(benches);
