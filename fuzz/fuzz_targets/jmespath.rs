//! JMESPath with Kyverno's functions: the first line is an expression, the rest YAML data.
//! Compiling and evaluating never panic; the fuzzer's timeout catches unbounded work.
#![no_main]

use kybern_engine::jmespath;
use kybern_fuzz::{documents, head_and_rest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expr, rest) = head_and_rest(text);
    let _ = jmespath::facts(expr);
    let Ok(compiled) = jmespath::compile(expr) else {
        return;
    };
    let data = documents(rest).into_iter().next().unwrap_or_default();
    let _ = compiled.search(&data);
});
