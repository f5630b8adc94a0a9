//! `kybern apply --output-format json` without `--policy-report`: every rule result as data, in
//! one JSON document written as results come (`{"results": [...], "summary": {...}}`), so a CI
//! system reads the run without parsing text and memory stays bounded. With `--explain` the
//! document also has `"explain"`, one trace per resource; traces wait in a temporary file until
//! the results are written, so memory stays bounded too.

use super::{Counts, result_of, title};
use crate::evaluation::ResponseMap;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::PathBuf;

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
    /// Explanations so far, one JSON element per line.
    explained: Option<Spool>,
}

/// A temporary file removed when dropped.
struct Spool {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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

    /// Keeps explanation elements for the end of the document.
    pub fn add_explained(&mut self, items: &[String]) -> std::io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let spool = match &mut self.explained {
            Some(s) => s,
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let path = std::env::temp_dir()
                    .join(format!("kybern-explain-{}-{nanos}", std::process::id()));
                let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
                self.explained.insert(Spool { path, file })
            }
        };
        for item in items {
            // Serialized JSON has no raw newlines, so one element is one line.
            writeln!(spool.file, "{item}")?;
        }
        Ok(())
    }

    pub fn finish(mut self, counts: &Counts, out: &mut impl Write) -> std::io::Result<()> {
        let summary: Value = json!({
            "pass": counts.pass,
            "fail": counts.fail,
            "warn": counts.warn,
            "error": counts.error,
            "skip": counts.skip,
        });
        let close = if self.written == 0 { "]" } else { "\n]" };
        write!(out, "{close}")?;
        if let Some(mut spool) = self.explained.take() {
            spool.file.flush()?;
            let reader = std::io::BufReader::new(std::fs::File::open(&spool.path)?);
            write!(out, ", \"explain\": [")?;
            for (i, line) in reader.lines().enumerate() {
                let sep = if i == 0 { "\n  " } else { ",\n  " };
                write!(out, "{sep}{}", line?)?;
            }
            write!(out, "\n]")?;
        }
        writeln!(out, ", \"summary\": {summary}}}")
    }
}
