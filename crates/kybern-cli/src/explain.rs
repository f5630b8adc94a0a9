//! `--explain` of `kybern apply` and `kybern test`: for each resource, every rule of every
//! policy with what decided it: the result and its message, the exception that applied, or why the rule did not select
//! the resource (`match` filter by filter, the `exclude` filter, another namespace).

use crate::evaluation::{Inputs, ResponseMap, request_for_explain};
use kybern_engine::explain::{self, Selection};
use kybern_engine::response::EngineResponse;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

fn resource_title(v: &Value) -> String {
    let get = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let ns = get("/metadata/namespace");
    let name = get("/metadata/name");
    if ns.is_empty() {
        format!("{} {name}", get("/kind"))
    } else {
        format!("{} {ns}/{name}", get("/kind"))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The explanation of one batch, resource by resource (`originals` in the order of
/// `responses`).
pub fn render(inputs: &Inputs, originals: &[Value], responses: &ResponseMap, out: &mut String) {
    for (original, (_, resps)) in originals.iter().zip(responses) {
        let resource = Arc::new(original.clone());
        let request = request_for_explain(inputs, &resource);
        let _ = writeln!(out, "\nexplain {}:", resource_title(original));
        let result_of = |policy: &str, rule: &str| {
            resps
                .iter()
                .filter(|r| r.policy_name == policy)
                .flat_map(|r| r.rules.iter())
                .find(|r| r.name == rule)
        };
        for policy in &inputs.set.policies {
            for rule in &policy.rules {
                let line = match result_of(&policy.name, &rule.name) {
                    Some(r) => {
                        let mut line = format!(
                            "{}: {}",
                            format!("{:?}", r.status).to_ascii_lowercase(),
                            one_line(&r.message)
                        );
                        if !r.exceptions.is_empty() {
                            let _ = write!(line, " (exception {})", r.exceptions.join(", "));
                        }
                        line
                    }
                    None => match explain::selection(policy, rule, &request) {
                        Selection::NotMatched(why) => format!("not matched: {why}"),
                        Selection::Excluded(by) => format!("excluded by {by}"),
                        Selection::OtherNamespace(why) => format!("not evaluated: {why}"),
                        Selection::Selected(by) => {
                            format!("selected by {by}, no result in the phases run")
                        }
                    },
                };
                let _ = writeln!(out, "  {}/{}: {line}", policy.name, rule.name);
            }
        }
        // The CEL kinds answer per policy.
        for r in resps.iter().filter(|r| !is_rule_policy(r)) {
            for rule in &r.rules {
                let name = if rule.name.is_empty() {
                    r.policy_name.clone()
                } else {
                    format!("{}/{}", r.policy_name, rule.name)
                };
                let _ = writeln!(
                    out,
                    "  {name} ({}): {}: {}",
                    r.policy_kind,
                    format!("{:?}", rule.status).to_ascii_lowercase(),
                    one_line(&rule.message)
                );
            }
        }
    }
}

fn is_rule_policy(r: &EngineResponse) -> bool {
    matches!(r.policy_kind.as_str(), "ClusterPolicy" | "Policy")
}
