//! `kybern test`: discover kyverno-test.yaml files, run them, print Kyverno's tables and summary.

mod judge;
mod output;
mod run;

use crate::files;
use crate::spec::{Test, TestResult, decode_test};
use crate::table;
use anyhow::{Result, bail};
use judge::{Outcome, Row};
use output::{OutputFormat, SuiteReport};
use std::path::{Path, PathBuf};

/// Flags of `kybern test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Directories (searched recursively) or test files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Name of the test files to look for.
    #[arg(short = 'f', long = "file-name", default_value = "kyverno-test.yaml")]
    pub file_name: String,
    /// Filter results: `policy=<p>,rule=<r>,resource=<x>` with wildcards.
    #[arg(
        long = "test-case-selector",
        default_value = "policy=*,rule=*,resource=*"
    )]
    pub test_case_selector: String,
    /// Add the MESSAGE column.
    #[arg(long = "detailed-results")]
    pub detailed_results: bool,
    /// Print only failed rows, at the end.
    #[arg(long = "fail-only")]
    pub fail_only: bool,
    /// Fail when no test file is found.
    #[arg(long = "require-tests")]
    pub require_tests: bool,
    /// Accepted for compatibility; output has no colour.
    #[arg(long = "remove-color")]
    pub remove_color: bool,
    /// For each resource, every rule with what decided it: its result and message, the
    /// exception that applied, or why it did not select the resource.
    #[arg(long)]
    pub explain: bool,
    /// How to print the results: Kyverno's tables, or one document a CI system reads
    /// (progress lines then go to standard error).
    #[arg(short = 'o', long = "output-format", value_enum, default_value_t = OutputFormat::Table)]
    pub output_format: OutputFormat,
    #[command(flatten)]
    pub registry: crate::provider::RegistryArgs,
}

impl TestArgs {
    fn table(&self) -> bool {
        self.output_format == OutputFormat::Table
    }
}

/// A progress line: on standard output for the table, on standard error when standard output
/// carries a document.
macro_rules! progress {
    ($args:expr, $($fmt:tt)*) => {
        if $args.table() {
            println!($($fmt)*);
        } else {
            eprintln!($($fmt)*);
        }
    };
}

struct LoadedTest {
    path: PathBuf,
    index: usize,
    test: Test,
}

fn discover(path: &Path, file_name: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            discover(&p, file_name, out)?;
        } else if p.file_name().and_then(|n| n.to_str()) == Some(file_name) {
            out.push(p);
        }
    }
    Ok(())
}

/// The parsed `--test-case-selector`.
struct Selector {
    policy: String,
    rule: String,
    resource: String,
}

fn parse_selector(s: &str) -> Result<Selector> {
    let mut sel = Selector {
        policy: "*".into(),
        rule: "*".into(),
        resource: "*".into(),
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("policy", v)) => sel.policy = v.to_string(),
            Some(("rule", v)) => sel.rule = v.to_string(),
            Some(("resource", v)) => sel.resource = v.to_string(),
            _ => bail!("invalid test case selector {part:?}: expected policy=, rule= or resource="),
        }
    }
    Ok(sel)
}

fn select(results: &[TestResult], sel: &Selector) -> Vec<TestResult> {
    let m = kybern_engine::wildcard::matches;
    results
        .iter()
        .filter(|r| r.policy.is_empty() || m(&sel.policy, &r.policy))
        .filter(|r| r.rule.is_empty() || m(&sel.rule, &r.rule))
        .filter(|r| {
            r.resources
                .as_ref()
                .is_none_or(|list| list.is_empty() || list.iter().any(|x| m(&sel.resource, x)))
        })
        .cloned()
        .map(|mut r| {
            if sel.resource != "*" {
                r.resources = Some(vec![sel.resource.clone()]);
            }
            r
        })
        .collect()
}

/// Totals over the whole run.
#[derive(Default)]
pub struct Summary {
    pub pass: usize,
    pub skip: usize,
    pub fail: usize,
}

/// Runs the command; returns the process exit code.
pub fn execute(args: &TestArgs) -> Result<i32> {
    let registry = args.registry.build()?;
    let selector = parse_selector(&args.test_case_selector)?;
    let mut paths = Vec::new();
    for p in &args.paths {
        discover(p, &args.file_name, &mut paths)?;
    }
    let mut tests = Vec::new();
    let mut errors = Vec::new();
    for path in &paths {
        let (docs, issues) = files::read_documents(path);
        errors.extend(issues.iter().map(|i| (path.clone(), i.message.clone())));
        for d in docs {
            match decode_test(d.value) {
                Ok(test) => tests.push(LoadedTest {
                    path: path.clone(),
                    index: d.index,
                    test,
                }),
                Err(e) => errors.push((path.clone(), e)),
            }
        }
    }
    if !errors.is_empty() {
        progress!(args, "Test errors:");
        for (p, e) in &errors {
            progress!(args, "  Path: {}", p.display());
            progress!(args, "    Error: {e}");
        }
        bail!("found {} errors after loading tests", errors.len());
    }
    if tests.is_empty() {
        progress!(args, "No test yamls available");
        if args.require_tests {
            bail!("no tests found");
        }
        return Ok(0);
    }
    let mut summary = Summary::default();
    let mut failed_rows: Vec<Row> = Vec::new();
    let mut reports: Vec<SuiteReport> = Vec::new();
    for lt in &tests {
        let selected = select(&lt.test.results, &selector);
        if selected.is_empty() {
            continue;
        }
        if lt.test.api_version.is_empty() || lt.test.kind.is_empty() || lt.test.name.is_some() {
            progress!(
                args,
                "WARNING: test file ({}) uses a deprecated schema that will be removed in 1.13",
                lt.path.display()
            );
            bail!(
                "test file {} uses a deprecated schema (document {})",
                lt.path.display(),
                lt.index + 1
            );
        }
        let dir = lt.path.parent().unwrap_or(Path::new("."));
        let report = run_one(lt, dir, &selected, args, registry.as_ref())?;
        for r in &report.rows {
            match (r.outcome, r.counts_as_skip) {
                (Outcome::Fail, _) => {
                    summary.fail += 1;
                    failed_rows.push(r.clone());
                }
                (_, true) => summary.skip += 1,
                _ => summary.pass += 1,
            }
        }
        reports.push(report);
    }
    if !args.table() {
        print!("{}", output::render(args.output_format, &reports, &summary));
    } else if args.fail_only {
        if !failed_rows.is_empty() {
            println!("Aggregated Failed Test Cases : ");
            print_rows(&failed_rows, args.detailed_results);
        }
        println!();
        println!(
            "Test Summary: {} out of {} tests failed",
            summary.fail,
            summary.pass + summary.skip + summary.fail
        );
    } else {
        println!();
        println!(
            "Test Summary: {} tests passed and {} tests failed",
            summary.pass + summary.skip,
            summary.fail
        );
    }
    if args.table() {
        println!();
    }
    if summary.fail > 0 {
        eprintln!("Error: {} tests failed", summary.fail);
        return Ok(1);
    }
    Ok(0)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn run_one(
    lt: &LoadedTest,
    dir: &Path,
    selected: &[TestResult],
    args: &TestArgs,
    registry: Option<&std::sync::Arc<kybern_registry::Registry>>,
) -> Result<SuiteReport> {
    let name = lt
        .test
        .metadata
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    progress!(args, "Loading test {name} ( {} ) ...", lt.path.display());
    progress!(args, "  Loading values/variables ...");
    if lt.test.userinfo.is_some() {
        progress!(args, "  Loading user infos ...");
    }
    progress!(args, "  Loading policies ...");
    progress!(args, "  Loading resources ...");
    progress!(args, "  Loading exceptions ...");
    let report = |rows: Vec<Row>, errors: Vec<String>| SuiteReport {
        name: name.to_string(),
        path: lt.path.clone(),
        rows,
        errors,
    };
    let run = match run::run_test(&lt.test, dir, registry, args.explain) {
        Ok(r) => r,
        Err(e) => bail!("failed to run test ({e})"),
    };
    for note in &run.notes {
        progress!(args, "  {note}");
    }
    if !run.load_errors.is_empty() {
        // The test cannot be judged on part of its inputs: every selected result fails.
        for e in &run.load_errors {
            progress!(args, "  Error: {e}");
        }
        let rows: Vec<Row> = selected
            .iter()
            .map(|t| Row {
                policy: t.policy.clone(),
                rule: t.rule.clone(),
                resource: t.resources.as_deref().unwrap_or_default().join(","),
                outcome: Outcome::Fail,
                reason: "Load error".into(),
                message: format!("{} input(s) could not be read", run.load_errors.len()),
                counts_as_skip: false,
            })
            .collect();
        if !args.fail_only && args.table() {
            println!();
            print_rows(&rows, args.detailed_results);
        }
        return Ok(report(rows, run.load_errors.clone()));
    }
    progress!(
        args,
        "  Applying {} to {} with {} ...",
        plural(run.policy_set.policies.len(), "policy", "policies"),
        plural(run.resource_count, "resource", "resources"),
        plural(run.policy_set.exceptions.len(), "exception", "exceptions"),
    );
    if let Some(text) = &run.explain {
        progress!(args, "{}", text.trim_end());
    }
    progress!(args, "  Checking results ...");
    let mut rows = Vec::new();
    for t in selected {
        rows.extend(judge::rows_for(t, &run, dir));
    }
    if !args.fail_only && args.table() {
        println!();
        print_rows(&rows, args.detailed_results);
    }
    Ok(report(rows, Vec::new()))
}

fn print_rows(rows: &[Row], detailed: bool) {
    let mut header = vec!["ID", "POLICY", "RULE", "RESOURCE", "RESULT", "REASON"];
    if detailed {
        header.push("MESSAGE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut c = vec![
                (i + 1).to_string(),
                r.policy.clone(),
                r.rule.clone(),
                r.resource.clone(),
                r.outcome.as_str().to_string(),
                r.reason.clone(),
            ];
            if detailed {
                c.push(r.message.replace('\n', " "));
            }
            c
        })
        .collect();
    print!("{}", table::render(&header, &cells));
}
