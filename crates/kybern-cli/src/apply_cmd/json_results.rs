//! `kybern apply --output-format json` without `--policy-report`: every rule result as data, in
//! one JSON document written as results come (`{"results": [...], "summary": {...}}`), so a CI
//! system reads the run without parsing text and memory stays bounded.

use super::{Counts, result_of, title};
use crate::evaluation::ResponseMap;
use serde_json::{Value, json};
use std::io::Write;

/// The JSON elements of one batch's results, in resource order.
pub fn items(responses: &ResponseMap, audit_warn: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (key, resps) in responses {
        for resp in resps {
            for rule in &resp.rules {
                let item = json!({
                    "policy": resp.policy_name,
                    "policyKind": resp.policy_kind,
                    "rule": rule.name,
                    "ruleType": format!("{:?}", rule.rule_type),
                    "resource": {
                        "apiVersion": key.api_version,
                        "kind": key.kind,
                        "namespace": key.namespace,
                        "name": key.name,
                    },
                    "result": title(result_of(resp, rule, audit_warn)).to_ascii_lowercase(),
                    "message": rule.message,
                });
                out.push(item.to_string());
            }
        }
    }
    out
}

/// Writes the document's elements as batches arrive.
#[derive(Default)]
pub struct Writer {
    written: usize,
}

impl Writer {
    pub fn start(&self, out: &mut impl Write) -> std::io::Result<()> {
        write!(out, "{{\"results\": [")
    }

    pub fn add(&mut self, items: &[String], out: &mut impl Write) -> std::io::Result<()> {
        for item in items {
            let sep = if self.written == 0 { "\n  " } else { ",\n  " };
            write!(out, "{sep}{item}")?;
            self.written += 1;
        }
        Ok(())
    }

    pub fn finish(self, counts: &Counts, out: &mut impl Write) -> std::io::Result<()> {
        let summary: Value = json!({
            "pass": counts.pass,
            "fail": counts.fail,
            "warn": counts.warn,
            "error": counts.error,
            "skip": counts.skip,
        });
        let close = if self.written == 0 { "]" } else { "\n]" };
        writeln!(out, "{close}, \"summary\": {summary}}}")
    }
}
