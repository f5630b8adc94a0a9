//! (being written)
use serde_json::Value;
#[derive(Debug, Clone, PartialEq)] pub enum PatternErrorKind { Fail, Skip }
#[derive(Debug, Clone, PartialEq)] pub struct PatternError { pub kind: PatternErrorKind, pub path: String, pub message: String }
#[derive(Debug, Clone, PartialEq, thiserror::Error)] #[error("{path}: {message}")] pub struct PatternSyntaxError { pub path: String, pub message: String }
pub fn validate(_r: &Value, _p: &Value) -> Result<(), PatternError> { Ok(()) }
pub fn check_syntax(_p: &Value) -> Result<(), PatternSyntaxError> { Ok(()) }
pub fn resolve_references(p: &Value) -> Result<Value, PatternError> { Ok(p.clone()) }
