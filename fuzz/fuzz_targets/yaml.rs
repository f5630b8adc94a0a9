//! The YAML loader on arbitrary text: no panic, the depth limit holds, and what the printer
//! writes reads back as the same value.
#![no_main]

use kybern_engine::yaml::{parse_documents, to_yaml_string};
use kybern_fuzz::{depth, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = limits();
    let (docs, _) = parse_documents(text, &limits);
    for (_, doc) in &docs {
        assert!(
            depth(doc) <= limits.max_depth,
            "document nested deeper than the limit"
        );
        let printed = to_yaml_string(doc);
        let (again, err) = parse_documents(&printed, &limits);
        assert!(
            err.is_none(),
            "printed YAML does not parse: {err:?}\n{printed}"
        );
        let again: Vec<_> = again.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            again.as_slice(),
            std::slice::from_ref(doc),
            "round trip:\n{printed}"
        );
    }
});
