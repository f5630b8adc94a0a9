//! Per-request cost of the Pod Security Standards restricted profile written as
//! ValidatingPolicies (benches/vpol/restricted.yaml), next to the same profile as ClusterPolicy
//! patterns in the `evaluate` bench.
//!
//! Policies are compiled once (expressions parsed), outside the timing loop. Each iteration
//! evaluates every ValidatingPolicy on one CREATE request and collects the results.
//!
//! Run: `cargo bench -p kybern-engine --bench cel_policies`.

use criterion::{Criterion, criterion_group, criterion_main};
use kybern_engine::cel::validating_policy::{CelPolicyResult, ValidatingPolicy};
use kybern_engine::context::NoProvider;
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::yaml;
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

fn evaluate(policies: &[ValidatingPolicy], req: &AdmissionRequest) -> Vec<CelPolicyResult> {
    policies
        .iter()
        .map(|p| p.evaluate(req, &NoProvider))
        .collect()
}

fn bench(c: &mut Criterion) {
    let policies = policies();
    let mut group = c.benchmark_group("restricted-validating-policies");
    for (name, text, compliant) in RESOURCES {
        let req = request(text);
        let results = evaluate(&policies, &req);
        let all_pass = results.iter().all(|r| *r == CelPolicyResult::Pass);
        assert_eq!(all_pass, compliant, "{name}: {results:?}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(evaluate(&policies, black_box(&req))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
