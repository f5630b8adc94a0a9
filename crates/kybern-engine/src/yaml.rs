//! (being written)
#[derive(Debug, Clone, thiserror::Error, PartialEq)] #[error("{0}")] pub struct YamlError(String);
#[derive(Default)] pub struct Limits;
pub fn parse_documents(input: &str, _l: &Limits) -> (Vec<(usize, serde_json::Value)>, Option<YamlError>) { match serde_json::from_str(input) { Ok(v) => (vec![(0, v)], None), Err(e) => (vec![], Some(YamlError(e.to_string()))) } }
pub fn parse_all(input: &str) -> Result<Vec<serde_json::Value>, YamlError> { let (d, e) = parse_documents(input, &Limits); match e { Some(e) => Err(e), None => Ok(d.into_iter().map(|x| x.1).collect()) } }
pub fn to_yaml_string(v: &serde_json::Value) -> String { v.to_string() }
