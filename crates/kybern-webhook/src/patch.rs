//! The JSON patch of a mutation: the RFC 6902 difference between the object the API server sent
//! and the object after every policy. Kept in one function so the diff algorithm can change.

use serde_json::Value;

/// The patch from `original` to `patched`, or `None` when nothing changed.
pub fn diff(original: &Value, patched: &Value) -> Option<Value> {
    if original == patched {
        return None;
    }
    let patch = json_patch::diff(original, patched);
    if patch.0.is_empty() {
        return None;
    }
    serde_json::to_value(&patch).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_change_gives_no_patch() {
        let v = json!({"a": 1});
        assert_eq!(diff(&v, &v), None);
    }

    #[test]
    fn a_change_gives_an_applicable_patch() {
        let a = json!({"metadata": {"labels": {"x~y/z": "1"}}});
        let b = json!({"metadata": {"labels": {"x~y/z": "2", "new": "v"}}});
        let p = diff(&a, &b).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(p).unwrap();
        let mut doc = a.clone();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc, b);
    }
}
