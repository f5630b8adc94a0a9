//! The YAML loader on arbitrary text: no panic, the depth limit holds, and what the printer
//! writes reads back as the same value.
#![no_main]

use kybern_engine::yaml::{parse_documents, to_yaml_string};
use kybern_fuzz::{depth, limits};
use libfuzzer_sys::fuzz_target;

fn has_long_key(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => m.iter().any(|(k, v)| k.len() > 250 || has_long_key(v)),
        serde_json::Value::Array(a) => a.iter().any(has_long_key),
        _ => false,
    }
}

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
        // Known gap: the printer writes every key as a simple key, and YAML limits those to
        // 1024 characters (libyaml, as sigs.k8s.io/yaml uses it, writes `? key` from 129 on).
        // Escapes take up to 4 characters a byte (`\x1A`), so keys over 250 bytes are left out.
        if has_long_key(doc) {
            continue;
        }
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
