//! Kyverno's wildcards: the first line is the pattern, the rest the value. The matcher agrees
//! with the wildmatch crate (the same `*`/`?` language) and answers in linear-ish time.
#![no_main]

use kybern_engine::wildcard;
use kybern_fuzz::head_and_rest;
use libfuzzer_sys::fuzz_target;
use wildmatch::WildMatch;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, value) = head_and_rest(text);
    let got = wildcard::matches(pattern, value);
    let want = WildMatch::new(pattern).matches(value);
    assert_eq!(got, want, "pattern {pattern:?} value {value:?}");
    if !wildcard::contains_wildcard(pattern) {
        assert_eq!(got, pattern == value);
    }
});
