//! Policy documents from YAML: compiling never panics, and a compiled policy validates and
//! mutates any other document of the input (the resource) without panicking.
#![no_main]

use std::collections::BTreeMap;

use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::policy::compile_policy;
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_fuzz::documents;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = documents(text);
    let is_policy = |d: &serde_json::Value| {
        matches!(
            d.get("kind").and_then(|k| k.as_str()),
            Some("ClusterPolicy" | "Policy")
        )
    };
    let policies: Vec<_> = docs
        .iter()
        .filter(|d| is_policy(d))
        .filter_map(|d| compile_policy(d).ok())
        .collect();
    let provider = NoProvider;
    let engine = Engine::new(&provider);
    let values = BTreeMap::<String, RuleValues>::new();
    for resource in docs.iter().filter(|d| !is_policy(d) && d.is_object()) {
        let request = AdmissionRequest {
            operation: Operation::Create,
            object: resource.clone().into(),
            no_user_info: true,
            ..AdmissionRequest::default()
        };
        let pctx = PolicyContext::new(&request);
        for policy in &policies {
            let _ = engine.validate(policy, &pctx, &[], &values);
            let _ = engine.mutate(policy, &pctx, &[], &values);
        }
    }
});
