//! (being written)
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{message}")]
pub struct ConditionError { pub message: String }
pub fn is_known_operator(_op: &str) -> bool { true }
pub fn evaluate(_operator: &str, key: &serde_json::Value, value: &serde_json::Value) -> Result<bool, ConditionError> { Ok(key == value) }
