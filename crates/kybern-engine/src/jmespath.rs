//! (being written)
#[derive(Clone)] pub struct Expression(String);
#[derive(Debug, Clone, thiserror::Error, PartialEq)] pub enum JmespathError { #[error("syntax {expr} {message}")] Syntax{expr:String, message:String}, #[error("Unknown key {key:?} in path")] NotFound{expr:String, key:String}, #[error("{message}")] Runtime{expr:String, message:String} }
impl Expression { pub fn as_str(&self) -> &str { &self.0 } pub fn search(&self, _d: &serde_json::Value) -> Result<serde_json::Value, JmespathError> { Ok(serde_json::Value::Null) } }
pub fn compile(e: &str) -> Result<Expression, JmespathError> { Ok(Expression(e.to_string())) }
pub struct FunctionDoc { pub name: &'static str, pub signature: String, pub description: &'static str }
pub fn functions() -> Vec<FunctionDoc> { vec![] }
pub fn parse_tree(e: &str) -> Result<String, JmespathError> { Ok(e.to_string()) }
