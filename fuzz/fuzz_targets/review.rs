//! AdmissionReview bodies as the server reads them: decoding never panics and refuses what it
//! cannot use with an error; a decoded review becomes an engine request, which the example
//! policies validate and mutate without panicking.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::policy::{Policy, compile_policy};
use kybern_webhook::admission::{decode, to_engine_request};
use libfuzzer_sys::fuzz_target;

static POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    [
        include_str!("../../examples/policies/pod-security-restricted.yaml"),
        include_str!("../../examples/policies/default-labels.yaml"),
        include_str!("../../examples/policies/require-team-label.yaml"),
        include_str!("../../examples/policies/resource-limits.yaml"),
    ]
    .iter()
    .flat_map(|text| kybern_engine::yaml::parse_all(text).unwrap_or_default())
    .filter_map(|d| compile_policy(&d).ok())
    .collect()
});

fuzz_target!(|data: &[u8]| {
    // The server's default bound on object nesting.
    let Ok((wire, uid)) = decode(data, 128) else {
        return;
    };
    assert!(!uid.is_empty(), "a decoded review always has a uid");
    let Ok(request) = to_engine_request(wire, |_| None) else {
        return;
    };
    let provider = NoProvider;
    let engine = Engine::new(&provider);
    let values = BTreeMap::<String, RuleValues>::new();
    let pctx = PolicyContext::new(&request);
    for policy in POLICIES.iter() {
        let _ = engine.validate(policy, &pctx, &[], &values);
        let _ = engine.mutate(policy, &pctx, &[], &values);
    }
});
