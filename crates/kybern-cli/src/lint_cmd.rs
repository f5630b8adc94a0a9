//! `kybern lint PATH...`: static checks of policy files without resources, one line per finding
//! with file and line (the checks are the engine's `lint`; this file reads files, finds lines
//! and prints).

use crate::files::{self, Issue};
use anyhow::Result;
use kybern_engine::lint::{self, Finding, Severity};
use kybern_engine::yaml::{Limits, RawDocument};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Flags of `kybern lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Policy files or directories (searched recursively for .yaml, .yml and .json files, outside
    /// hidden folders).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Exit 1 when there are warnings (errors always exit 2).
    #[arg(long)]
    pub strict: bool,
    /// `text`: one line per finding; `json`: one document with every finding.
    #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
}

/// A finding located in a file.
struct Located {
    file: PathBuf,
    line: usize,
    document: usize,
    finding: Finding,
}

/// 1-based line in `raw` of `needle`, searched from the document's start; `None` if absent.
fn line_of_text(raw: &RawDocument, needle: &str) -> Option<usize> {
    let text = std::str::from_utf8(&raw.text).ok()?;
    let at = text.find(needle)?;
    Some(raw.first_line + text.get(..at)?.matches('\n').count())
}

/// 1-based line of a field path (`spec.rules[0].validate.message`): each key is looked for as
/// `key:` after the previous one, so the line is that of the last key found.
fn line_of_path(raw: &RawDocument, path: &str) -> usize {
    let Ok(text) = std::str::from_utf8(&raw.text) else {
        return raw.first_line;
    };
    let mut offset = 0usize;
    for key in path
        .split('.')
        .map(|seg| seg.split('[').next().unwrap_or_default())
        .filter(|k| !k.is_empty())
    {
        let pattern = format!("{key}:");
        let found = text.get(offset..).and_then(|rest| {
            rest.match_indices(&pattern)
                .map(|(i, _)| offset + i)
                .find(|&i| {
                    // A key starts a line (after indentation or a sequence dash) or follows `{`.
                    let before = text.get(..i).unwrap_or_default();
                    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
                    let lead = before.get(line_start..).unwrap_or_default();
                    lead.chars()
                        .all(|c| c == ' ' || c == '-' || c == '"' || c == '\'')
                        || lead.trim_end().ends_with(['{', ','])
                })
        });
        match found {
            Some(i) => offset = i,
            None => break,
        }
    }
    raw.first_line + text.get(..offset).unwrap_or_default().matches('\n').count()
}

fn lint_file(file: &Path, out: &mut Vec<Located>, issues: &mut Vec<Issue>, policies: &mut usize) {
    let limits = Limits::default();
    let streamed = files::stream_raw_documents(file, &limits, |raw| {
        match files::parse_raw(file, &raw, &limits) {
            Err(issue) => issues.push(issue),
            Ok(docs) => {
                for doc in docs {
                    let kind = doc.value.get("kind").and_then(|k| k.as_str());
                    if kind.is_some_and(is_policy_kind) {
                        *policies += 1;
                    }
                    for finding in lint::lint_document(&doc.value) {
                        let line = finding
                            .text
                            .as_deref()
                            .and_then(|t| line_of_text(&raw, t))
                            .unwrap_or_else(|| line_of_path(&raw, &finding.path));
                        out.push(Located {
                            file: file.to_path_buf(),
                            line,
                            document: doc.index,
                            finding,
                        });
                    }
                }
            }
        }
    });
    if let Err(issue) = streamed {
        issues.push(issue);
    }
}

fn is_policy_kind(kind: &str) -> bool {
    matches!(kind, "ClusterPolicy" | "Policy")
        || kybern_engine::cel::policy_set::is_ruleless_kind(kind)
}

/// Runs the command; returns the exit code: 0 clean, 1 warnings with `--strict`, 2 errors.
pub fn execute(args: &LintArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut issues = files::missing_paths(&args.paths);
    let mut policies = 0usize;
    for p in args.paths.iter().filter(|p| p.exists()) {
        match files::manifest_files(p) {
            Ok(list) => {
                // Hidden folders under a given directory hold test fixtures (`.kyverno-test`,
                // `.chainsaw-test`), not policies.
                let hidden = |f: &PathBuf| {
                    f.strip_prefix(p).is_ok_and(|rel| {
                        rel.components()
                            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                    })
                };
                for f in list.into_iter().filter(|f| !hidden(f)) {
                    lint_file(&f, &mut found, &mut issues, &mut policies);
                }
            }
            Err(e) => issues.push(Issue {
                file: p.clone(),
                index: None,
                message: format!("{e:#}"),
            }),
        }
    }
    found.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let errors = issues.len()
        + found
            .iter()
            .filter(|l| l.finding.severity == Severity::Error)
            .count();
    let warnings = found.len() + issues.len() - errors;
    if args.output == "json" {
        let items: Vec<_> = issues
            .iter()
            .map(|i| {
                json!({
                    "file": i.file.display().to_string(),
                    "document": i.index.map(|d| d + 1),
                    "severity": "error",
                    "check": "read",
                    "message": i.message,
                })
            })
            .chain(found.iter().map(|l| {
                json!({
                    "file": l.file.display().to_string(),
                    "line": l.line,
                    "document": l.document + 1,
                    "severity": l.finding.severity.as_str(),
                    "check": l.finding.check,
                    "path": l.finding.path,
                    "message": l.finding.message,
                })
            }))
            .collect();
        let doc = json!({
            "findings": items,
            "summary": {"policies": policies, "errors": errors, "warnings": warnings},
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for i in &issues {
            println!("{i}: error[read]");
        }
        for l in &found {
            let path = if l.finding.path.is_empty() {
                String::new()
            } else {
                format!(" {}:", l.finding.path)
            };
            println!(
                "{}:{}: {}[{}]{path} {}",
                l.file.display(),
                l.line,
                l.finding.severity.as_str(),
                l.finding.check,
                l.finding.message
            );
        }
        println!(
            "{policies} {} checked: {errors} error(s), {warnings} warning(s)",
            if policies == 1 { "policy" } else { "policies" }
        );
    }
    Ok(if errors > 0 {
        2
    } else if warnings > 0 && args.strict {
        1
    } else {
        0
    })
}
