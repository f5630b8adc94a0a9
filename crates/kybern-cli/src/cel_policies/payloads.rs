//! Test payloads that are not Kubernetes resources: `jsonPayloads` (for JSON-mode
//! ValidatingPolicies and DeletingPolicies), `httpPayloads` and `envoyPayloads` (for
//! ValidatingPolicies of the HTTP and Envoy authorization modes). Responses are keyed as the
//! kyverno CLI keys them: JSON payloads by their cleaned path as written in the test, HTTP and
//! Envoy payloads by the path joined with the test directory.

use super::CelPolicies;
use crate::evaluation::ResponseMap;
use crate::resources::ResourceKey;
use kybern_engine::context::ContextProvider;
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// `path.Clean` of a relative payload path: `./a/../b.json` → `b.json`.
pub fn clean_path(p: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.last().is_some_and(|l| l != "..") {
                    out.pop();
                } else {
                    out.push("..".into());
                }
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::RootDir => out.push(String::new()),
            Component::Prefix(_) => {}
        }
    }
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

fn key(name: String) -> ResourceKey {
    ResourceKey {
        api_version: String::new(),
        kind: String::new(),
        namespace: String::new(),
        name,
    }
}

/// Reads every JSON (or YAML) document of a payload file.
fn read_payloads(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read payload file {}: {e}", path.display()))?;
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return Ok(vec![v]);
    }
    let stream: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect();
    if let Ok(docs) = stream {
        return Ok(docs);
    }
    kybern_engine::yaml::parse_all(&text)
        .map_err(|e| format!("failed to decode payload file {}: {e}", path.display()))
}

/// Which payloads a test names.
pub struct PayloadFiles<'a> {
    pub json: Vec<&'a str>,
    pub http: &'a [String],
    pub envoy: &'a [String],
}

impl CelPolicies {
    /// Evaluates the test's payloads and appends their responses to `out`. A payload that
    /// cannot be read aborts the test, as in the kyverno CLI.
    pub fn evaluate_payloads(
        &self,
        files: &PayloadFiles,
        dir: &Path,
        provider: &dyn ContextProvider,
        out: &mut ResponseMap,
    ) -> Result<(), String> {
        for f in &files.json {
            let name = clean_path(f);
            let mut responses = Vec::new();
            for payload in read_payloads(&dir.join(f))? {
                responses.extend(self.set.evaluate_json(&payload, provider));
            }
            out.push((key(name), responses));
        }
        for (list, mode) in [(files.http, "HTTP"), (files.envoy, "Envoy")] {
            for f in list {
                let path: PathBuf = dir.join(f);
                let mut responses = Vec::new();
                for payload in read_payloads(&path)? {
                    responses.extend(self.set.evaluate_authz(mode, &payload, provider));
                }
                out.push((key(path.display().to_string()), responses));
            }
        }
        Ok(())
    }
}

/// Evaluates the payloads a test names into `trigger`.
pub fn evaluate_test_payloads(
    test: &crate::spec::Test,
    dir: &Path,
    inputs: &crate::evaluation::Inputs,
    trigger: &mut ResponseMap,
) -> Result<(), String> {
    let mut json: Vec<&str> = test.json_payloads.iter().map(String::as_str).collect();
    if let Some(one) = &test.json_payload
        && !json.contains(&one.as_str())
    {
        json.push(one);
    }
    if json.is_empty() && test.http_payloads.is_empty() && test.envoy_payloads.is_empty() {
        return Ok(());
    }
    let provider = super::WithNamespaces {
        inner: inputs.provider,
        namespaces: &inputs.values.namespaces,
    };
    let files = PayloadFiles {
        json,
        http: &test.http_payloads,
        envoy: &test.envoy_payloads,
    };
    inputs
        .set
        .cel
        .evaluate_payloads(&files, dir, &provider, trigger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_paths_are_cleaned_like_go() {
        let cases = [
            ("payload.json", "payload.json"),
            ("./payload.json", "payload.json"),
            ("a/../b.json", "b.json"),
            ("../x/./y.json", "../x/y.json"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_path(input), want, "{input}");
        }
    }
}
