//! Machine-readable results of `kybern test` (`--output-format json|yaml|junit|markdown`): the
//! same rows and summary as the table, as data a CI system shows natively.

use super::Summary;
use super::judge::{Outcome, Row};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;

/// How `kybern test` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Kyverno's tables and progress lines.
    #[default]
    Table,
    /// One JSON document: every suite with its rows, and the summary.
    Json,
    /// The JSON document as YAML.
    Yaml,
    /// JUnit XML: a testsuite per test file, a testcase per row.
    Junit,
    /// A Markdown table per suite and the summary.
    Markdown,
}

/// The rows of one test document, or why it could not be judged.
pub struct SuiteReport {
    pub name: String,
    pub path: PathBuf,
    pub rows: Vec<Row>,
    /// Inputs that could not be read; every selected row then fails.
    pub errors: Vec<String>,
}

impl SuiteReport {
    fn failures(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .count()
    }
}

fn row_json(i: usize, r: &Row) -> Value {
    json!({
        "id": i + 1,
        "policy": r.policy,
        "rule": r.rule,
        "resource": r.resource,
        "result": r.outcome.as_str(),
        "reason": r.reason,
        "message": r.message,
    })
}

fn document(suites: &[SuiteReport], summary: &Summary) -> Value {
    let tests: Vec<Value> = suites
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "path": s.path.display().to_string(),
                "errors": s.errors,
                "results": s.rows.iter().enumerate().map(|(i, r)| row_json(i, r)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "tests": tests,
        "summary": {
            "pass": summary.pass,
            "skip": summary.skip,
            "fail": summary.fail,
            "total": summary.pass + summary.skip + summary.fail,
        },
    })
}

/// Text safe inside XML attributes and elements; characters XML 1.0 cannot carry are dropped.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

fn junit(suites: &[SuiteReport], summary: &Summary) -> String {
    let total = summary.pass + summary.skip + summary.fail;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"kybern test\" tests=\"{total}\" failures=\"{}\">",
        summary.fail
    );
    for s in suites {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" file=\"{}\" tests=\"{}\" failures=\"{}\">",
            xml_escape(&s.name),
            xml_escape(&s.path.display().to_string()),
            s.rows.len(),
            s.failures()
        );
        if !s.errors.is_empty() {
            let _ = writeln!(
                out,
                "    <system-err>{}</system-err>",
                xml_escape(&s.errors.join("\n"))
            );
        }
        for r in &s.rows {
            let name = [r.policy.as_str(), r.rule.as_str(), r.resource.as_str()]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml_escape(&r.policy),
                xml_escape(&name)
            );
            if r.outcome == Outcome::Fail {
                let _ = writeln!(
                    out,
                    "{open}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml_escape(&r.reason),
                    xml_escape(&r.message)
                );
            } else {
                let _ = writeln!(out, "{open}/>");
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A Markdown table cell: pipes escaped, one line.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn markdown(suites: &[SuiteReport], summary: &Summary) -> String {
    let mut out = String::new();
    for s in suites {
        let _ = writeln!(out, "### {} (`{}`)\n", md_cell(&s.name), s.path.display());
        for e in &s.errors {
            let _ = writeln!(out, "- error: {}", md_cell(e));
        }
        if !s.errors.is_empty() {
            out.push('\n');
        }
        out.push_str("| ID | POLICY | RULE | RESOURCE | RESULT | REASON | MESSAGE |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for (i, r) in s.rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                md_cell(&r.policy),
                md_cell(&r.rule),
                md_cell(&r.resource),
                r.outcome.as_str(),
                md_cell(&r.reason),
                md_cell(&r.message)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "**Test Summary:** {} tests passed and {} tests failed",
        summary.pass + summary.skip,
        summary.fail
    );
    out
}

/// The results in `format` (not [`OutputFormat::Table`], which prints as it goes).
pub fn render(format: OutputFormat, suites: &[SuiteReport], summary: &Summary) -> String {
    match format {
        OutputFormat::Table => String::new(),
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&document(suites, summary))
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            s.push('\n');
            s
        }
        OutputFormat::Yaml => kybern_engine::yaml::to_yaml_string(&document(suites, summary)),
        OutputFormat::Junit => junit(suites, summary),
        OutputFormat::Markdown => markdown(suites, summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(outcome: Outcome, message: &str) -> Row {
        Row {
            policy: "require-labels".into(),
            rule: "check-team".into(),
            resource: "default/Pod/web".into(),
            outcome,
            reason: if outcome == Outcome::Fail {
                "Want pass, got fail".into()
            } else {
                "Ok".into()
            },
            message: message.into(),
            counts_as_skip: false,
        }
    }

    fn suites() -> (Vec<SuiteReport>, Summary) {
        let suites = vec![SuiteReport {
            name: "labels".into(),
            path: PathBuf::from("suite/kyverno-test.yaml"),
            rows: vec![
                row(Outcome::Pass, ""),
                row(Outcome::Fail, "label <team> | missing & \"required\""),
            ],
            errors: Vec::new(),
        }];
        let summary = Summary {
            pass: 1,
            skip: 0,
            fail: 1,
        };
        (suites, summary)
    }

    #[test]
    fn json_carries_every_row_and_the_summary() {
        let (s, sum) = suites();
        let v: Value = serde_json::from_str(&render(OutputFormat::Json, &s, &sum)).unwrap();
        assert_eq!(
            v["summary"],
            json!({"pass": 1, "skip": 0, "fail": 1, "total": 2})
        );
        let rows = v["tests"][0]["results"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["result"], "Fail");
        assert_eq!(rows[1]["reason"], "Want pass, got fail");
        assert_eq!(v["tests"][0]["path"], "suite/kyverno-test.yaml");
    }

    #[test]
    fn junit_marks_failed_rows_and_escapes_text() {
        let (s, sum) = suites();
        let xml = render(OutputFormat::Junit, &s, &sum);
        assert!(xml.contains("<testsuites name=\"kybern test\" tests=\"2\" failures=\"1\">"));
        assert!(xml.contains("tests=\"2\" failures=\"1\">"));
        assert_eq!(xml.matches("<testcase ").count(), 2);
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert!(xml.contains("label &lt;team&gt; | missing &amp; &quot;required&quot;"));
        assert!(xml.contains("name=\"require-labels/check-team/default/Pod/web\""));
    }

    #[test]
    fn markdown_escapes_pipes_and_ends_with_the_summary() {
        let (s, sum) = suites();
        let md = render(OutputFormat::Markdown, &s, &sum);
        assert!(md.contains("label <team> \\| missing"));
        assert!(md.trim_end().ends_with("1 tests passed and 1 tests failed"));
        assert_eq!(md.matches("| require-labels |").count(), 2);
    }

    #[test]
    fn xml_text_drops_control_characters() {
        assert_eq!(xml_escape("a\u{1}b\tc"), "ab\tc");
    }
}
