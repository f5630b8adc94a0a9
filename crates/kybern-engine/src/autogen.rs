//! (being written)
pub fn compute_rules(policy: &serde_json::Value) -> Vec<serde_json::Value> {
    policy.pointer("/spec/rules").and_then(|r| r.as_array()).cloned().unwrap_or_default()
}
