//! The pattern language with anchors: the first document is a pattern (or a policy, whose first
//! `pattern` is used), the second the resource. No panic, whatever the two hold.
#![no_main]

use kybern_engine::pattern;
use kybern_fuzz::{documents, find_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = documents(text);
    let Some(first) = docs.first() else {
        return;
    };
    let pat = find_key(first, "pattern").unwrap_or(first);
    let _ = pattern::check_syntax(pat);
    let _ = pattern::check_validate_syntax(pat);
    let _ = pattern::resolve_references(pat);
    let resource = docs.get(1).unwrap_or(first);
    let _ = pattern::validate(resource, pat);
    // A resource always matches a pattern that is itself with no anchors or operators in it?
    // Not in general (strings are patterns), so only the absence of panics is checked.
});
