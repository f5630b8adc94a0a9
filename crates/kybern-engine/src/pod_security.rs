//! (being written)
#[derive(Debug, Clone, PartialEq)] pub struct PodSecurity { pub exclude: Vec<Exclude> }
#[derive(Debug, Clone, PartialEq)] pub struct Exclude;
#[derive(Debug, Clone, PartialEq)] pub struct CheckResult;
#[derive(Debug, Clone, PartialEq, thiserror::Error)] #[error("x")] pub struct PodSecurityError;
impl PodSecurity { pub fn from_json(_v: &serde_json::Value) -> Result<PodSecurity, PodSecurityError> { Ok(PodSecurity{exclude: vec![]}) } }
pub fn evaluate(_s: &PodSecurity, _r: &serde_json::Value, _e: &[Exclude]) -> Vec<CheckResult> { vec![] }
pub fn failure_message(_r: &str, _s: &PodSecurity, _f: &[CheckResult]) -> String { String::new() }
