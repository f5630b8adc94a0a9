//! CEL: the first line is an expression, the rest YAML bound as `object` (and `oldObject`).
//! Compiling and evaluating never panic, planned or interpreted, and both agree on success.
#![no_main]

use kybern_engine::cel::{Expression, Scope};
use kybern_fuzz::{documents, head_and_rest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, rest) = head_and_rest(text);
    let Ok(expr) = Expression::compile(source, "expression") else {
        return;
    };
    let object = documents(rest).into_iter().next().unwrap_or_default();
    let mut scope = Scope::default();
    scope.set_json("object", &object);
    scope.set_json("oldObject", &serde_json::Value::Null);
    let _ = expr.eval(&scope);
    let _ = expr.interpret(&scope);
    let _ = expr.eval_bool(&scope);
});
