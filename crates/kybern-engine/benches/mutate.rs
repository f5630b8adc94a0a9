//! Per-request cost of a realistic mutation set, including the RFC 6902 patch the webhook returns.
//!
//! Policies (benches/mutation/policies.yaml) are compiled once, outside the timing loop: add
//! labels (with `+()` anchors and a variable), default the Pod and container securityContext with
//! add-if-not-present anchors, inject a logging sidecar (behind a precondition), and add volumes.
//! Autogen gives the Deployment rules. Each iteration prepares the request, chains every policy's
//! mutate rules (each policy sees the previous one's output, as admission does) and computes the
//! JSON patch from the original object with `json_patch::diff`.
//!
//! Run: `cargo bench -p kybern-engine --bench mutate`.

#[path = "support/fixed.rs"]
mod fixed;

use criterion::{Criterion, criterion_group, criterion_main};
use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::json_patch;
use kybern_engine::policy::{Policy, compile_policy};
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::RuleStatus;
use kybern_engine::yaml;
use serde_json::Value;
use std::collections::BTreeMap;
use std::hint::black_box;

const POLICIES: &str = include_str!("mutation/policies.yaml");

/// (case name, resource, rule results that must pass)
const RESOURCES: [(&str, &str, usize); 2] = [
    ("pod", include_str!("mutation/pod.yaml"), 4),
    ("deployment", include_str!("mutation/deployment.yaml"), 4),
];

fn compile_all() -> Vec<Policy> {
    yaml::parse_all(POLICIES)
        .expect("policies parse")
        .iter()
        .map(|d| compile_policy(d).expect("policy compiles"))
        .collect()
}

fn request(name: &str, text: &str) -> AdmissionRequest {
    let mut docs = yaml::parse_all(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    AdmissionRequest {
        operation: Operation::Create,
        object: docs.remove(0).into(),
        no_user_info: true,
        ..AdmissionRequest::default()
    }
}

/// What one admission request costs on /mutate: every policy chained, then the patch.
/// Returns the patch and the number of rules that mutated the object.
fn mutate(engine: &Engine, policies: &[Policy], request: &AdmissionRequest) -> (Vec<Value>, usize) {
    let no_values = BTreeMap::<String, RuleValues>::new();
    let mut current: Option<AdmissionRequest> = None;
    let mut passed = 0;
    for policy in policies {
        let req = current.as_ref().unwrap_or(request);
        let resp = engine.mutate(policy, &PolicyContext::new(req), &[], &no_values);
        passed += resp
            .rules
            .iter()
            .filter(|r| r.status == RuleStatus::Pass)
            .count();
        if !std::sync::Arc::ptr_eq(&resp.patched_resource, &resp.resource) {
            let mut next = current.take().unwrap_or_else(|| request.clone());
            next.object = resp.patched_resource;
            current = Some(next);
        }
    }
    let patched = current.as_ref().map_or(&request.object, |r| &r.object);
    (json_patch::diff(&request.object, patched), passed)
}

fn bench_mutation(c: &mut Criterion) {
    let policies = compile_all();
    let provider = NoProvider;
    let engine = Engine::new(&provider);
    let mut g = c.benchmark_group("mutation");
    for (case, text, want_passed) in RESOURCES {
        let req = request(case, text);
        let (patch, passed) = mutate(&engine, &policies, &req);
        if passed != want_passed {
            for p in &policies {
                let r = engine.mutate(p, &PolicyContext::new(&req), &[], &BTreeMap::new());
                for rule in &r.rules {
                    eprintln!("{case}: {} {:?} {}", rule.name, rule.status, rule.message);
                }
            }
            panic!("{case}: {passed} of {want_passed} mutate rules applied");
        }
        assert!(
            patch.len() >= 6,
            "{case}: a real patch expected, got {patch:#?}"
        );
        eprintln!("{case}: {} patch operations", patch.len());
        // A second pass over the mutated object changes nothing.
        let again = AdmissionRequest {
            object: json_patch::apply(&req.object, &Value::Array(patch))
                .expect("patch applies")
                .into(),
            ..req.clone()
        };
        let second = mutate(&engine, &policies, &again).0;
        assert!(second.is_empty(), "{case}: not idempotent: {second:#?}");
        if fixed::run_fixed(&format!("mutation/{case}"), || {
            mutate(&engine, black_box(&policies), black_box(&req))
        }) {
            continue;
        }
        g.bench_function(case, |b| {
            b.iter(|| mutate(&engine, black_box(&policies), black_box(&req)));
        });
    }
    g.finish();
}

criterion_group!(benches, bench_mutation);
criterion_main!(benches);
