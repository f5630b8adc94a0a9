//! Strategic merge and JSON patch: the first document is the resource, the second the patch
//! (a sequence: JSON patch operations; otherwise a strategic merge overlay). No panic, and for
//! JSON patch the diff of the result applies back to the same result.
#![no_main]

use kybern_engine::{json_patch, strategic_merge};
use kybern_fuzz::{documents, find_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = documents(text);
    let (Some(resource), Some(second)) = (docs.first(), docs.get(1)) else {
        return;
    };
    // A whole policy as the second document: use its first patch.
    let patch = find_key(second, "patchStrategicMerge")
        .or_else(|| find_key(second, "patchesJson6902"))
        .unwrap_or(second);
    let ops = match patch {
        serde_json::Value::String(s) => documents(s).into_iter().next(),
        _ => Some(patch.clone()),
    };
    let Some(patch) = ops else { return };
    if patch.is_array() {
        let _ = json_patch::parse_operations(&patch);
        if let Ok(patched) = json_patch::apply(resource, &patch) {
            let diff = serde_json::Value::Array(json_patch::diff(resource, &patched));
            let again = json_patch::apply(resource, &diff);
            assert_eq!(
                again.ok().as_ref(),
                Some(&patched),
                "diff does not reproduce the patch"
            );
        }
    } else {
        let _ = strategic_merge::apply(resource, &patch);
        let _ = strategic_merge::apply_configuration(resource, &patch);
    }
});
