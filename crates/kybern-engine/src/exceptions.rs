//! `kyverno.io` PolicyExceptions (v2, v2beta1): which policy rules they exempt, for which
//! resources and under which conditions.

use crate::matching::{self, MatchSubject};
use crate::pod_security::{Exclude, PodSecurity};
use crate::policy::{MatchResources, PolicyLoadError, PolicyLoadErrorKind};
use crate::wildcard;
use serde_json::{Value, json};

/// A compiled PolicyException.
#[derive(Debug, Clone)]
pub struct PolicyException {
    pub name: String,
    pub namespace: String,
    /// `(policy key, rule name patterns)`.
    pub exceptions: Vec<(String, Vec<String>)>,
    pub match_resources: MatchResources,
    pub conditions: Option<crate::preconditions::ConditionBlock>,
    pub pod_security: Vec<Exclude>,
}

fn invalid(path: &str, message: impl Into<String>) -> PolicyLoadError {
    PolicyLoadError {
        kind: PolicyLoadErrorKind::Invalid,
        path: path.to_string(),
        message: message.into(),
    }
}

impl PolicyException {
    /// `namespace/name`, as results record it.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// Compiles a `kyverno.io/v2` or `v2beta1` PolicyException document.
    pub fn compile(doc: &Value) -> Result<PolicyException, PolicyLoadError> {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if doc.get("kind").and_then(Value::as_str) != Some("PolicyException")
            || !api_version.starts_with("kyverno.io/")
        {
            return Err(PolicyLoadError {
                kind: PolicyLoadErrorKind::UnknownKind,
                path: "kind".into(),
                message: "not a kyverno.io PolicyException".into(),
            });
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
        let mut exceptions = Vec::new();
        for (i, e) in spec
            .get("exceptions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let policy = e
                .get("policyName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if policy.is_empty() {
                return Err(invalid(
                    &format!("spec.exceptions[{i}].policyName"),
                    "policyName is required",
                ));
            }
            let rules = e
                .get("ruleNames")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            exceptions.push((policy.to_string(), rules));
        }
        let match_resources: MatchResources = match spec.get("match") {
            Some(m) => serde_path_to_error::deserialize(m).map_err(|e| {
                invalid(
                    &format!("spec.match.{}", e.path()),
                    e.into_inner().to_string(),
                )
            })?,
            None => return Err(invalid("spec.match", "match is required")),
        };
        let conditions = spec
            .get("conditions")
            .filter(|c| !c.is_null())
            .map(crate::preconditions::ConditionBlock::compile);
        let mut pod_security = Vec::new();
        if let Some(list) = spec.get("podSecurity").and_then(Value::as_array) {
            // Reuse the podSecurity parser so both places validate exclusions the same way.
            let wrapped = json!({"level": "restricted", "version": "latest", "exclude": list});
            let ps = PodSecurity::from_json(&wrapped)
                .map_err(|e| invalid("spec.podSecurity", e.to_string()))?;
            pod_security = ps.exclude;
        }
        Ok(PolicyException {
            name,
            namespace,
            exceptions,
            match_resources,
            conditions,
            pod_security,
        })
    }

    /// Does this exception name the policy and rule?
    pub fn covers(&self, policy_key: &str, rule: &str) -> bool {
        self.exceptions
            .iter()
            .any(|(p, rules)| p == policy_key && rules.iter().any(|r| wildcard::matches(r, rule)))
    }

    /// Does the exception's `match` select the request?
    pub fn matches_resource(&self, subject: &MatchSubject) -> bool {
        matching::matches(&self.match_resources, subject)
    }
}
