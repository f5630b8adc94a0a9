//! `kybern apply`: evaluate policies on resource files and print per-rule outcomes, a results
//! table, or a PolicyReport, with the kyverno CLI's summary line and exit codes. Mutated and
//! generated resources are printed (or written with `-o`) as the kyverno CLI does.

use crate::evaluation::{Inputs, ResponseMap, evaluate};
use crate::files::{self, Document, Issue};
use crate::policy_set::PolicySet;
use crate::provider::FileProvider;
use crate::resources::{ResourceKey, default_namespace};
use crate::spec::{UserInfoSpec, ValuesSpec};
use crate::table;
use anyhow::{Context, Result, bail};
use kybern_engine::response::{EngineResponse, FailureAction, RuleResult, RuleStatus, RuleType};
use kybern_engine::yaml::{self, Limits};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Flags of `kybern apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Policy files or directories.
    #[arg(required = true)]
    pub policies: Vec<PathBuf>,
    /// Resource files or directories.
    #[arg(short = 'r', long = "resource", alias = "resources", required = true)]
    pub resources: Vec<PathBuf>,
    /// A `Values` file with variables, namespace labels and per-policy values.
    #[arg(short = 'f', long = "values-file")]
    pub values_file: Option<PathBuf>,
    /// Variables as `key=value`, comma separated; they win over the values file.
    #[arg(short = 's', long = "set", value_delimiter = ',')]
    pub set: Vec<String>,
    /// A `UserInfo` file: the requester for subjects/roles matching and `request.userInfo`.
    #[arg(short = 'u', long = "userinfo")]
    pub userinfo: Option<PathBuf>,
    /// PolicyException files or directories.
    #[arg(short = 'e', long = "exception", alias = "exceptions")]
    pub exceptions: Vec<PathBuf>,
    /// Print a PolicyReport/ClusterPolicyReport instead of the text output.
    #[arg(short = 'p', long = "policy-report")]
    pub policy_report: bool,
    /// Format of the policy report.
    #[arg(long = "output-format", default_value = "yaml", value_parser = ["yaml", "json"])]
    pub output_format: String,
    /// Print results as a table.
    #[arg(short = 't', long = "table")]
    pub table: bool,
    /// Report failures of Audit rules as warnings.
    #[arg(long = "audit-warn")]
    pub audit_warn: bool,
    /// Add the MESSAGE column to the table.
    #[arg(long = "detailed-results")]
    pub detailed_results: bool,
    /// Exit code to use when there are warnings.
    #[arg(long = "warn-exit-code", default_value_t = 0)]
    pub warn_exit_code: i32,
    /// Accepted for compatibility; output has no colour.
    #[arg(long = "remove-color")]
    pub remove_color: bool,
    /// Write mutated and generated resources to this file, or to this directory (a path without
    /// an extension, or an existing directory) as `<resource>-mutated.yaml` and
    /// `<policy>-generated.yaml`, instead of printing them.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Existing resources that mutate rules with `targets` patch.
    #[arg(long = "target-resource", alias = "target-resources")]
    pub target_resources: Vec<PathBuf>,
}

#[derive(Default, Debug)]
struct Counts {
    pass: usize,
    fail: usize,
    warn: usize,
    error: usize,
    skip: usize,
}

/// The result word for a rule, after `scored: "false"` and `--audit-warn`.
fn result_of(resp: &EngineResponse, rule: &RuleResult, audit_warn: bool) -> RuleStatus {
    if rule.status != RuleStatus::Fail {
        return rule.status;
    }
    let audit = resp
        .failure_actions
        .iter()
        .any(|(n, a)| n == &rule.name && *a == FailureAction::Audit);
    if resp.unscored || (audit_warn && audit) {
        RuleStatus::Warn
    } else {
        RuleStatus::Fail
    }
}

fn read_values(args: &ApplyArgs) -> Result<ValuesSpec> {
    let mut values = match &args.values_file {
        Some(p) => {
            let (docs, issues) = files::read_documents(p);
            if let Some(i) = issues.first() {
                bail!("{i}");
            }
            let doc = docs
                .into_iter()
                .next()
                .with_context(|| format!("values file {} is empty", p.display()))?;
            serde_path_to_error::deserialize(doc.value)
                .map_err(|e| anyhow::anyhow!("{}: {} at {}", p.display(), e.inner(), e.path()))?
        }
        None => ValuesSpec::default(),
    };
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected key=value"))?;
        values
            .global_values
            .insert(k.trim().to_string(), Value::String(v.trim().to_string()));
    }
    Ok(values)
}

fn read_user(args: &ApplyArgs) -> Result<Option<UserInfoSpec>> {
    let Some(p) = &args.userinfo else {
        return Ok(None);
    };
    let (docs, issues) = files::read_documents(p);
    if let Some(i) = issues.first() {
        bail!("{i}");
    }
    let doc = docs
        .into_iter()
        .next()
        .with_context(|| format!("user info file {} is empty", p.display()))?;
    let u = serde_path_to_error::deserialize(doc.value)
        .map_err(|e| anyhow::anyhow!("{}: {} at {}", p.display(), e.inner(), e.path()))?;
    Ok(Some(u))
}

fn report_issues(issues: &[Issue]) {
    for i in issues {
        eprintln!("warning: {i}");
    }
}

/// Inputs that could not be read: each is printed as an error when found and the run goes on
/// with the rest, then exits 1 (the kyverno CLI exits 1 on load errors too).
#[derive(Default)]
struct LoadErrors {
    count: usize,
}

impl LoadErrors {
    fn report(&mut self, issues: &[Issue]) {
        for i in issues {
            eprintln!("error: {i}");
        }
        self.count += issues.len();
    }
}

/// Every input path named on the command line; a path that does not exist stops the run before
/// anything is evaluated.
fn check_paths_exist(args: &ApplyArgs) -> Result<()> {
    let singles: Vec<PathBuf> = args
        .values_file
        .iter()
        .chain(args.userinfo.iter())
        .cloned()
        .collect();
    let mut missing = Vec::new();
    for paths in [
        &args.policies,
        &args.resources,
        &args.exceptions,
        &args.target_resources,
        &singles,
    ] {
        missing.extend(files::missing_paths(paths));
    }
    if missing.is_empty() {
        return Ok(());
    }
    for i in &missing {
        eprintln!("error: {i}");
    }
    bail!(
        "{} input path(s) do not exist: {}",
        missing.len(),
        missing
            .iter()
            .map(|i| i.file.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Runs the command; returns the process exit code.
pub fn execute(args: &ApplyArgs) -> Result<i32> {
    check_paths_exist(args)?;
    let values = read_values(args)?;
    let user = read_user(args)?;
    let mut errors = LoadErrors::default();
    let mut set = PolicySet::default();
    let (docs, issues) = files::read_paths(&args.policies);
    errors.report(&issues);
    set.add_policies(&docs, true);
    let (docs, issues) = files::read_paths(&args.exceptions);
    errors.report(&issues);
    for d in &docs {
        set.add_exception(d);
    }
    report_issues(&set.issues);
    if set.policies.is_empty() && set.cel.is_empty() {
        bail!("no valid policies were loaded");
    }
    let mut resource_files = Vec::new();
    for p in &args.resources {
        match files::manifest_files(p) {
            Ok(list) => resource_files.extend(list),
            Err(e) => errors.report(&[files::Issue {
                file: p.clone(),
                index: None,
                message: format!("{e:#}"),
            }]),
        }
    }
    let mut provider = FileProvider::default();
    provider.add_namespace_labels(&values);
    let (docs, issues) = files::read_paths(&args.target_resources);
    errors.report(&issues);
    provider.targets = files::expand_lists(docs)
        .into_iter()
        .map(|d| default_namespace(d.value))
        .collect();
    let output = Output::open(args.output.as_deref())?;
    let inputs = Inputs {
        values: &values,
        user: user.as_ref(),
        provider: &provider,
        set: &set,
    };
    let limits = Limits::default();
    let rule_count: usize = set.policies.iter().map(|p| p.rules.len()).sum();
    if !args.policy_report {
        // The header names the number of resources: counting needs a first reading of the files
        // (its problems are reported by the second).
        let mut total = 0usize;
        for f in &resource_files {
            let _ = files::stream_raw_documents(f, &limits, |raw| {
                if let Ok(docs) = files::parse_raw(f, &raw, &limits) {
                    total += files::expand_lists(docs).len();
                }
            });
        }
        println!(
            "\nApplying {rule_count} policy rule(s) to {total} resource(s){}...",
            if set.exceptions.is_empty() {
                String::new()
            } else {
                format!(" with {} exception(s)", set.exceptions.len())
            }
        );
    }
    // Resources are read document by document and evaluated in chunks; only what is printed at
    // the end is kept, so memory does not grow with the size of the files.
    let mut sink = Sink {
        args,
        output: &output,
        counts: Counts::default(),
        table_rows: Vec::new(),
        report: Report::default(),
    };
    for f in &resource_files {
        let mut batch: Vec<Document> = Vec::new();
        let mut failed: Result<()> = Ok(());
        let streamed = files::stream_raw_documents(f, &limits, |raw| {
            if failed.is_err() {
                return;
            }
            match files::parse_raw(f, &raw, &limits) {
                Ok(docs) => batch.extend(resources_of(docs)),
                Err(i) => errors.report(&[i]),
            }
            if batch.len() >= CHUNK {
                failed = sink.take(&evaluate(&inputs, &batch, None));
                batch.clear();
            }
        });
        failed?;
        if let Err(i) = streamed {
            errors.report(&[i]);
        }
        sink.take(&evaluate(&inputs, &batch, None))?;
    }
    let Sink {
        counts,
        table_rows,
        report,
        ..
    } = sink;
    if args.policy_report {
        print_report(report, args);
    } else {
        if args.table {
            print_table(&table_rows, args);
        }
        println!(
            "\npass: {}, fail: {}, warn: {}, error: {}, skip: {}",
            counts.pass, counts.fail, counts.warn, counts.error, counts.skip
        );
    }
    if errors.count > 0 {
        bail!(
            "{} input file(s) or document(s) could not be read (see the errors above)",
            errors.count
        );
    }
    if counts.fail > 0 || counts.error > 0 {
        return Ok(1);
    }
    if counts.warn > 0 && args.warn_exit_code != 0 {
        return Ok(args.warn_exit_code);
    }
    Ok(0)
}

/// The resources of a file's documents: lists expanded, namespaces defaulted.
fn resources_of(docs: Vec<Document>) -> impl Iterator<Item = Document> {
    files::expand_lists(docs).into_iter().map(|mut d| {
        d.value = default_namespace(d.value);
        d
    })
}

/// Where evaluated chunks go: counters, printed failures and resources, table rows or report
/// entries.
struct Sink<'a> {
    args: &'a ApplyArgs,
    output: &'a Output,
    counts: Counts,
    table_rows: Vec<Vec<String>>,
    report: Report,
}

impl Sink<'_> {
    fn take(&mut self, responses: &ResponseMap) -> Result<()> {
        let args = self.args;
        count(responses, args.audit_warn, &mut self.counts);
        if !args.policy_report || args.output.is_some() {
            emit_resources(responses, self.output)?;
        }
        if args.policy_report {
            self.report.add(responses, args.audit_warn);
        } else if args.table {
            add_table_rows(responses, args, &mut self.table_rows);
        } else {
            print_failures(responses, args.audit_warn);
        }
        Ok(())
    }
}

const CHUNK: usize = 256;

/// Counts rule results as the kyverno CLI does: validate results after `scored` and
/// `--audit-warn`; mutate results by status; a ClusterPolicy/Policy generate result is a pass or,
/// whatever else it is, a fail.
fn count(responses: &ResponseMap, audit_warn: bool, c: &mut Counts) {
    for (_, resps) in responses {
        for resp in resps {
            let kyverno_policy = matches!(resp.policy_kind.as_str(), "ClusterPolicy" | "Policy");
            for rule in &resp.rules {
                let status = match rule.rule_type {
                    RuleType::Generation if kyverno_policy => match rule.status {
                        RuleStatus::Pass => RuleStatus::Pass,
                        _ => RuleStatus::Fail,
                    },
                    _ => result_of(resp, rule, audit_warn),
                };
                match status {
                    RuleStatus::Pass => c.pass += 1,
                    RuleStatus::Fail => c.fail += 1,
                    RuleStatus::Warn => c.warn += 1,
                    RuleStatus::Error => c.error += 1,
                    RuleStatus::Skip => c.skip += 1,
                }
            }
        }
    }
}

/// Where mutated and generated resources go.
enum Output {
    Stdout,
    /// One file for everything (truncated when the run starts).
    File(PathBuf),
    /// One file per mutated resource and per generating policy.
    Dir(PathBuf),
}

impl Output {
    fn open(path: Option<&Path>) -> Result<Output> {
        let Some(path) = path else {
            return Ok(Output::Stdout);
        };
        if path.is_dir() || path.extension().is_none() {
            std::fs::create_dir_all(path)
                .with_context(|| format!("failed to create directory {}", path.display()))?;
            return Ok(Output::Dir(path.to_path_buf()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create directory {}", parent.display()))?;
        }
        std::fs::File::create(path)
            .with_context(|| format!("failed to create {}", path.display()))?;
        Ok(Output::File(path.to_path_buf()))
    }

    fn append(&self, file_stem: &str, text: &str) -> Result<()> {
        let path = match self {
            Output::Stdout => {
                print!("{text}");
                return Ok(());
            }
            Output::File(p) => p.clone(),
            Output::Dir(d) => d.join(format!("{file_stem}.yaml")),
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))
    }
}

/// The kyverno CLI's resource path: `<namespace>/<Kind>/<name>` (the namespace may be empty).
fn resource_path(key: &ResourceKey) -> String {
    format!("{}/{}/{}", key.namespace, key.kind, key.name)
}

/// Prints (or writes) what mutate and generate rules produced: the patched resource with its
/// patched targets after a mutate rule passed, every generated object, and a line for each
/// skipped or failing mutate rule.
fn emit_resources(responses: &ResponseMap, out: &Output) -> Result<()> {
    let to_stdout = matches!(out, Output::Stdout);
    for (key, resps) in responses {
        let path = resource_path(key);
        for resp in resps {
            let mutated = resp
                .rules
                .iter()
                .any(|r| r.rule_type == RuleType::Mutation && r.status == RuleStatus::Pass);
            if mutated {
                let mut text = String::new();
                if to_stdout {
                    text.push_str(&format!(
                        "\npolicy {} applied to {path}:\n",
                        resp.policy_name
                    ));
                }
                text.push_str(&yaml::to_yaml_string(&resp.patched_resource));
                text.push_str(if to_stdout { "---\n" } else { "---\n\n" });
                let targets: Vec<&Value> = resp
                    .rules
                    .iter()
                    .filter_map(|r| r.patched_target.as_ref())
                    .collect();
                if to_stdout && !targets.is_empty() {
                    text.push_str("patched targets: \n");
                }
                for t in targets {
                    if to_stdout {
                        text.push('\n');
                    }
                    text.push_str(&yaml::to_yaml_string(t));
                    text.push_str("---\n");
                }
                if to_stdout {
                    text.push_str("\nMutation:\nMutation has been applied successfully.\n");
                }
                out.append(&format!("{}-mutated", key.name), &text)?;
            }
            for generated in resp.rules.iter().flat_map(|r| &r.generated) {
                let mut text = String::new();
                if to_stdout {
                    text.push_str(&format!(
                        "\npolicy {} applied to {path}:\n",
                        resp.policy_name
                    ));
                }
                text.push_str(&yaml::to_yaml_string(generated));
                text.push_str(if to_stdout { "---\n" } else { "---\n\n" });
                if to_stdout {
                    text.push_str("\nGenerate:\nGeneration completed successfully.\n");
                }
                out.append(&format!("{}-generated", resp.policy_name), &text)?;
            }
        }
    }
    Ok(())
}

fn short_resource(key: &ResourceKey) -> String {
    if key.namespace.is_empty() {
        format!("{}/{}", key.kind, key.name)
    } else {
        format!("{}/{}/{}", key.namespace, key.kind, key.name)
    }
}

/// A line per skipped or failing mutate rule, then each failing resource with its failed rules.
fn print_failures(responses: &ResponseMap, audit_warn: bool) {
    for (key, resps) in responses {
        let path = resource_path(key);
        for resp in resps {
            for rule in resp
                .rules
                .iter()
                .filter(|r| r.rule_type == RuleType::Mutation)
            {
                match rule.status {
                    RuleStatus::Skip => println!(
                        "\nskipped mutate policy {} -> resource {path}",
                        resp.policy_name
                    ),
                    RuleStatus::Error => println!(
                        "\nerror while applying mutate policy {} -> resource {path}\nerror: {}",
                        resp.policy_name, rule.message
                    ),
                    _ => {}
                }
            }
            let failed: Vec<(&RuleResult, RuleStatus)> = resp
                .rules
                .iter()
                .map(|r| (r, result_of(resp, r, audit_warn)))
                .filter(|(_, s)| {
                    matches!(s, RuleStatus::Fail | RuleStatus::Warn | RuleStatus::Error)
                })
                .collect();
            if failed.is_empty() {
                continue;
            }
            let how = if failed.iter().all(|(_, s)| *s == RuleStatus::Warn) {
                "failed as audit warning"
            } else {
                "failed"
            };
            println!(
                "\npolicy {} -> resource {} {how}:",
                resp.policy_name,
                short_resource(key)
            );
            for (i, (rule, status)) in failed.iter().enumerate() {
                let tag = if *status == RuleStatus::Error {
                    " (error)"
                } else {
                    ""
                };
                println!("{} - {}{tag} {}", i + 1, rule.name, rule.message);
            }
        }
    }
}

fn title(s: RuleStatus) -> &'static str {
    match s {
        RuleStatus::Pass => "Pass",
        RuleStatus::Fail => "Fail",
        RuleStatus::Warn => "Warn",
        RuleStatus::Error => "Error",
        RuleStatus::Skip => "Skip",
    }
}

fn add_table_rows(responses: &ResponseMap, args: &ApplyArgs, rows: &mut Vec<Vec<String>>) {
    for (key, resps) in responses {
        for resp in resps {
            for rule in &resp.rules {
                let mut row = vec![
                    (rows.len() + 1).to_string(),
                    resp.policy_name.clone(),
                    rule.name.clone(),
                    short_resource(key),
                    title(result_of(resp, rule, args.audit_warn)).to_string(),
                    String::new(),
                ];
                if args.detailed_results {
                    row.push(rule.message.replace('\n', " "));
                }
                rows.push(row);
            }
        }
    }
}

fn print_table(rows: &[Vec<String>], args: &ApplyArgs) {
    let mut header = vec!["ID", "POLICY", "RULE", "RESOURCE", "RESULT", "REASON"];
    if args.detailed_results {
        header.push("MESSAGE");
    }
    println!();
    print!("{}", table::render(&header, rows));
}

/// Report results gathered while evaluating: cluster-wide policies go to one
/// ClusterPolicyReport, namespaced ones to a PolicyReport per namespace.
#[derive(Default)]
struct Report {
    cluster: Vec<Value>,
    by_namespace: std::collections::BTreeMap<String, Vec<Value>>,
}

impl Report {
    fn add(&mut self, responses: &ResponseMap, audit_warn: bool) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        for (key, resps) in responses {
            for resp in resps {
                for rule in &resp.rules {
                    let result = json!({
                        "policy": if resp.policy_namespace.is_empty() { resp.policy_name.clone() } else { format!("{}/{}", resp.policy_namespace, resp.policy_name) },
                        "rule": rule.name,
                        "result": result_of(resp, rule, audit_warn).as_str(),
                        "message": rule.message,
                        "scored": !resp.unscored,
                        "source": "kyverno",
                        "timestamp": {"nanos": 0, "seconds": now},
                        "resources": [{"apiVersion": key.api_version, "kind": key.kind, "name": key.name, "namespace": key.namespace}],
                    });
                    if resp.policy_namespace.is_empty() {
                        self.cluster.push(result);
                    } else {
                        self.by_namespace
                            .entry(resp.policy_namespace.clone())
                            .or_default()
                            .push(result);
                    }
                }
            }
        }
    }
}

fn print_report(report: Report, args: &ApplyArgs) {
    let Report {
        cluster: cluster_results,
        by_namespace,
    } = report;
    let summary = |results: &[Value]| {
        let n = |w: &str| results.iter().filter(|r| r["result"] == w).count();
        json!({"pass": n("pass"), "fail": n("fail"), "warn": n("warn"), "error": n("error"), "skip": n("skip")})
    };
    let mut reports = vec![json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "ClusterPolicyReport",
        "metadata": {"name": "merged"},
        "results": cluster_results,
        "summary": summary(&cluster_results),
    })];
    for (ns, results) in by_namespace {
        reports.push(json!({
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "PolicyReport",
            "metadata": {"name": "merged", "namespace": ns},
            "summary": summary(&results),
            "results": results,
        }));
    }
    let text: Vec<String> = reports
        .iter()
        .map(|r| {
            if args.output_format == "json" {
                serde_json::to_string_pretty(r).unwrap_or_default()
            } else {
                yaml::to_yaml_string(r)
            }
        })
        .collect();
    let sep = if args.output_format == "json" {
        "\n"
    } else {
        "---\n"
    };
    print!("{}", text.join(sep));
    if args.output_format == "json" {
        println!();
    }
}
