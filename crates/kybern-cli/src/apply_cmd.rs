//! `kybern apply`: evaluate policies on resource files and print per-rule outcomes, a results
//! table, or a PolicyReport, with the kyverno CLI's summary line and exit codes. Mutated and
//! generated resources are printed (or written with `-o`) as the kyverno CLI does.

mod json_results;

use crate::evaluation::{Inputs, ResponseMap, evaluate_owned};
use crate::files::{self, Document, Issue};
use crate::policy_set::PolicySet;
use crate::provider::FileProvider;
use crate::resources::{ResourceKey, default_namespace};
use crate::spec::{UserInfoSpec, ValuesSpec};
use crate::table;
use anyhow::{Context, Result, bail};
use kybern_engine::report;
use kybern_engine::response::{EngineResponse, RuleResult, RuleStatus, RuleType};
use kybern_engine::yaml::{self, Limits, RawDocument};
use serde_json::{Value, json};
use std::fmt::Write as _;
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
    /// Format of the policy report; without `--policy-report`, `json` prints every rule result
    /// and the summary as one JSON document instead of the text output.
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
    /// For each resource, every rule with what decided it: its result and message, the
    /// exception that applied, or why it did not select the resource (with --output-format json,
    /// as the document's `explain` array; to standard error beside a policy report).
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub registry: crate::provider::RegistryArgs,
}

impl ApplyArgs {
    /// Rule results as a JSON document on standard output (`--output-format json` without
    /// `--policy-report`).
    fn json_results(&self) -> bool {
        !self.policy_report && self.output_format == "json"
    }
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
    kybern_engine::report::reported_status(resp, rule, audit_warn)
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
    let mut provider = FileProvider {
        registry: args.registry.build()?,
        ..FileProvider::default()
    };
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
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let header = |total: usize| {
        let rule_count: usize = set.policies.iter().map(|p| p.rules.len()).sum();
        format!(
            "\nApplying {rule_count} policy rule(s) to {total} resource(s){}...\n",
            if set.exceptions.is_empty() {
                String::new()
            } else {
                format!(" with {} exception(s)", set.exceptions.len())
            }
        )
    };
    let mut sink = Sink {
        output: &output,
        counts: Counts::default(),
        table_rows: Vec::new(),
        report: args.policy_report.then(|| ReportWriter::new(args)),
        json: args.json_results().then(json_results::Writer::default),
    };
    if let Some(r) = &mut sink.report {
        r.start(&mut out)?;
    }
    if let Some(j) = &sink.json {
        j.start(&mut out)?;
    }
    let counted = !args.policy_report && !args.json_results();
    let joined = |c: std::thread::ScopedJoinHandle<'_, usize>| {
        c.join()
            .map_err(|_| anyhow::anyhow!("counting the resources failed"))
    };
    std::thread::scope(|scope| -> Result<()> {
        // The header line needs the number of resources: counted on its own thread while the
        // first batches are evaluated (counting is many times faster); their output waits.
        let mut count = counted.then(|| scope.spawn(|| count_resources(&resource_files, &limits)));
        let mut held: Vec<BatchOutput> = Vec::new();
        // The header once the count is known, then the output held until then.
        let mut release = |count: &mut Option<std::thread::ScopedJoinHandle<'_, usize>>,
                           held: &mut Vec<BatchOutput>|
         -> Result<()> {
            if let Some(c) = count.take() {
                out.write_all(header(joined(c)?).as_bytes())?;
            }
            for batch in held.drain(..) {
                errors.report(&batch.issues);
                sink.take(batch, &mut out)?;
            }
            Ok(())
        };
        run_pipeline(&inputs, args, &resource_files, &limits, |batch| {
            held.push(batch);
            // Output waits for the count, up to a bound: past it, the count is waited for.
            if held.len() < MAX_HELD && count.as_ref().is_some_and(|c| !c.is_finished()) {
                return Ok(());
            }
            release(&mut count, &mut held)
        })?;
        release(&mut count, &mut held)?;
        Ok(())
    })?;
    let Sink {
        counts,
        table_rows,
        report,
        json,
        ..
    } = sink;
    if let Some(report) = report {
        report.finish(&mut out)?;
    } else if let Some(json) = json {
        json.finish(&counts, &mut out)?;
    } else {
        if args.table {
            print_table(&table_rows, args, &mut out)?;
        }
        writeln!(
            out,
            "\npass: {}, fail: {}, warn: {}, error: {}, skip: {}",
            counts.pass, counts.fail, counts.warn, counts.error, counts.skip
        )?;
    }
    out.flush()?;
    drop(out);
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

/// Batches whose output may wait for the resource count before the count is waited for.
const MAX_HELD: usize = 16;

/// Documents per batch: large enough to amortise the hand-over between threads, small enough
/// that the batches in flight stay a few MiB.
const BATCH: usize = 64;

/// A piece of work for an evaluation thread: documents of one file, or a file that could not be
/// read, in reading order.
enum Job<'f> {
    Documents(&'f Path, Vec<RawDocument>),
    Unreadable(files::Issue),
}

/// Reads the files on one thread, parses and evaluates batches of documents on as many threads as
/// there are CPUs, and hands each batch's output to `take` in reading order. The queues between
/// them are bounded, so memory does not grow with the size of the files.
fn run_pipeline<'f>(
    inputs: &Inputs,
    args: &ApplyArgs,
    resource_files: &'f [PathBuf],
    limits: &Limits,
    mut take: impl FnMut(BatchOutput) -> Result<()>,
) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<(usize, Job<'f>)>(workers * 2);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<(usize, BatchOutput)>(workers * 2);
    let job_rx = std::sync::Mutex::new(job_rx);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            let mut seq = 0usize;
            for f in resource_files {
                let mut batch = Vec::with_capacity(BATCH);
                let mut send = |job: Job<'f>| {
                    let ok = job_tx.send((seq, job)).is_ok();
                    seq += 1;
                    ok
                };
                let mut open = true;
                let streamed = files::stream_raw_documents(f, limits, |raw| {
                    batch.push(raw);
                    if batch.len() >= BATCH && open {
                        open = send(Job::Documents(f, std::mem::take(&mut batch)));
                    }
                });
                if !batch.is_empty() && open {
                    open = send(Job::Documents(f, batch));
                }
                if let Err(issue) = streamed
                    && open
                {
                    open = send(Job::Unreadable(issue));
                }
                if !open {
                    return;
                }
            }
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                loop {
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, job)) = next else {
                        return;
                    };
                    let output = match job {
                        Job::Documents(file, raws) => run_batch(inputs, args, file, raws, limits),
                        Job::Unreadable(issue) => BatchOutput {
                            issues: vec![issue],
                            ..BatchOutput::default()
                        },
                    };
                    if done_tx.send((seq, output)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Batches finish out of order; they are taken in reading order.
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0usize;
        let mut taken = Ok(());
        'results: for (seq, output) in done_rx {
            pending.insert(seq, output);
            while let Some(output) = pending.remove(&next) {
                taken = take(output);
                if taken.is_err() {
                    break 'results;
                }
                next += 1;
            }
        }
        if taken.is_err() {
            // The workers stop once their results have nowhere to go; the reader may be waiting
            // to hand over a batch: take (and drop) what it sends until it has read everything.
            if let Ok(rx) = job_rx.lock() {
                while rx.recv().is_ok() {}
            }
        }
        taken
    })
}

/// Parses, evaluates and renders one batch (on an evaluation thread).
fn run_batch(
    inputs: &Inputs,
    args: &ApplyArgs,
    file: &Path,
    raws: Vec<RawDocument>,
    limits: &Limits,
) -> BatchOutput {
    let mut output = BatchOutput::default();
    let mut resources = Vec::with_capacity(raws.len());
    for raw in &raws {
        match files::parse_raw(file, raw, limits) {
            Ok(docs) => resources.extend(resources_of(docs).map(|d| d.value)),
            Err(issue) => output.issues.push(issue),
        }
    }
    drop(raws);
    let originals = args.explain.then(|| resources.clone());
    let responses = evaluate_owned(inputs, resources, None);
    if let Some(originals) = &originals {
        if args.json_results() {
            output.json_explain = crate::explain::items(inputs, originals, &responses);
        } else {
            crate::explain::render(inputs, originals, &responses, &mut output.explain);
        }
    }
    count(&responses, args.audit_warn, &mut output.counts);
    // Standard output carries only the document when it is a report or JSON results.
    let document = args.policy_report || args.json_results();
    if !document || args.output.is_some() {
        render_resources(&responses, args.output.is_none(), &mut output);
    }
    if args.policy_report {
        output.report = ReportPart::of(&responses, args);
    } else if args.json_results() {
        output.json_items = json_results::items(&responses, args.audit_warn);
    } else if args.table {
        add_table_rows(&responses, args, &mut output.table_rows);
    } else {
        render_failures(&responses, args.audit_warn, &mut output.stdout);
    }
    output
}

/// The number of resources in the files, for the header line. A document certainly holds one
/// resource when it is a block mapping that does not mention `List`; only the others (lists,
/// JSON, anything unusual) are parsed to count them.
fn count_resources(resource_files: &[PathBuf], limits: &Limits) -> usize {
    let mut total = 0usize;
    for f in resource_files {
        let _ = files::stream_raw_documents(f, limits, |raw| {
            if certainly_one_resource(&raw) {
                total += 1;
            } else if let Ok(docs) = files::parse_raw(f, &raw, limits) {
                total += files::expand_lists(docs).len();
            }
        });
    }
    total
}

fn certainly_one_resource(raw: &RawDocument) -> bool {
    if raw.too_large.is_some() || memchr::memmem::find(&raw.text, b"List").is_some() {
        return false;
    }
    for line in raw.text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = line.trim_ascii_start();
        if trimmed.is_empty() || trimmed.first() == Some(&b'#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"---") {
            let rest = rest.trim_ascii_start();
            if rest.is_empty() || rest.first() == Some(&b'#') {
                continue;
            }
            return false;
        }
        // The first line with content: a plain key in column 0 opens a block mapping.
        return line.first().is_some_and(u8::is_ascii_alphabetic)
            && (line.ends_with(b":") || line.windows(2).any(|w| w == b": "));
    }
    false
}

/// The resources of a file's documents: lists expanded, namespaces defaulted.
fn resources_of(docs: Vec<Document>) -> impl Iterator<Item = Document> {
    files::expand_lists(docs).into_iter().map(|mut d| {
        d.value = default_namespace(d.value);
        d
    })
}

/// What one batch produced, rendered on the thread that evaluated it.
#[derive(Default)]
struct BatchOutput {
    counts: Counts,
    /// Text for standard output: resources and failures, in resource order.
    stdout: String,
    /// Text to append to `-o` files: (file stem, text).
    files: Vec<(String, String)>,
    /// Table rows without their ID column (IDs run through the whole output).
    table_rows: Vec<Vec<String>>,
    report: ReportPart,
    /// Rule results as JSON elements (`--output-format json` without a report).
    json_items: Vec<String>,
    /// `--explain` text of the batch's resources.
    explain: String,
    /// `--explain` as JSON elements, one per resource (with JSON results).
    json_explain: Vec<String>,
    /// Documents that could not be read.
    issues: Vec<Issue>,
}

/// Where batches go, in reading order: counters, output, table rows or the streamed report.
struct Sink<'a> {
    output: &'a Output,
    counts: Counts,
    table_rows: Vec<Vec<String>>,
    report: Option<ReportWriter>,
    json: Option<json_results::Writer>,
}

impl Sink<'_> {
    fn take(&mut self, batch: BatchOutput, out: &mut impl Write) -> Result<()> {
        let c = &mut self.counts;
        c.pass += batch.counts.pass;
        c.fail += batch.counts.fail;
        c.warn += batch.counts.warn;
        c.error += batch.counts.error;
        c.skip += batch.counts.skip;
        out.write_all(batch.stdout.as_bytes())?;
        if !batch.explain.is_empty() {
            if self.report.is_some() || self.json.is_some() {
                eprint!("{}", batch.explain);
            } else {
                out.write_all(batch.explain.as_bytes())?;
            }
        }
        for (stem, text) in &batch.files {
            self.output.append(stem, text)?;
        }
        for mut row in batch.table_rows {
            row.insert(0, (self.table_rows.len() + 1).to_string());
            self.table_rows.push(row);
        }
        if let Some(report) = &mut self.report {
            report.add(batch.report, out)?;
        }
        if let Some(json) = &mut self.json {
            json.add(&batch.json_items, out)?;
            json.add_explained(&batch.json_explain)?;
        }
        Ok(())
    }
}

/// Counts rule results as the kyverno CLI does: validate results after `scored` and
/// `--audit-warn`; mutate results by status; a ClusterPolicy/Policy generate result is a pass or,
/// whatever else it is, a fail.
fn count(responses: &ResponseMap, audit_warn: bool, c: &mut Counts) {
    for (_, resps) in responses {
        for resp in resps {
            let kyverno_policy = matches!(&*resp.policy_kind, "ClusterPolicy" | "Policy");
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
fn render_resources(responses: &ResponseMap, to_stdout: bool, output: &mut BatchOutput) {
    let mut put = |stem: String, text: String| {
        if to_stdout {
            output.stdout.push_str(&text);
        } else {
            output.files.push((stem, text));
        }
    };
    for (key, resps) in responses {
        let path = resource_path(key);
        for resp in resps {
            // A verifyImages rule mutates too when it pins a tag to its digest.
            let mutated = resp.rules.iter().any(|r| {
                r.status == RuleStatus::Pass
                    && (r.rule_type == RuleType::Mutation
                        || (r.rule_type == RuleType::ImageVerify
                            && resp.patched_resource != resp.resource))
            });
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
                put(format!("{}-mutated", key.name), text);
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
                put(format!("{}-generated", resp.policy_name), text);
            }
        }
    }
}

fn short_resource(key: &ResourceKey) -> String {
    if key.namespace.is_empty() {
        format!("{}/{}", key.kind, key.name)
    } else {
        format!("{}/{}/{}", key.namespace, key.kind, key.name)
    }
}

/// A line per skipped or failing mutate rule, then each failing resource with its failed rules.
fn render_failures(responses: &ResponseMap, audit_warn: bool, s: &mut String) {
    for (key, resps) in responses {
        let path = resource_path(key);
        for resp in resps {
            for rule in resp
                .rules
                .iter()
                .filter(|r| r.rule_type == RuleType::Mutation)
            {
                match rule.status {
                    RuleStatus::Skip => {
                        let _ = writeln!(
                            s,
                            "\nskipped mutate policy {} -> resource {path}",
                            resp.policy_name
                        );
                    }
                    RuleStatus::Error => {
                        let _ = writeln!(
                            s,
                            "\nerror while applying mutate policy {} -> resource {path}\nerror: {}",
                            resp.policy_name, rule.message
                        );
                    }
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
            let _ = writeln!(
                s,
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
                let _ = writeln!(s, "{} - {}{tag} {}", i + 1, rule.name, rule.message);
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

/// Table rows of a batch, without the ID column the sink numbers.
fn add_table_rows(responses: &ResponseMap, args: &ApplyArgs, rows: &mut Vec<Vec<String>>) {
    for (key, resps) in responses {
        for resp in resps {
            for rule in &resp.rules {
                let mut row = vec![
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

fn print_table(rows: &[Vec<String>], args: &ApplyArgs, out: &mut impl Write) -> Result<()> {
    let mut header = vec!["ID", "POLICY", "RULE", "RESOURCE", "RESULT", "REASON"];
    if args.detailed_results {
        header.push("MESSAGE");
    }
    writeln!(out)?;
    write!(out, "{}", table::render(&header, rows))?;
    Ok(())
}

/// Policy report results of one batch, rendered: cluster-wide policies go to one
/// ClusterPolicyReport, namespaced ones to a PolicyReport per namespace.
#[derive(Default)]
struct ReportPart {
    cluster: Results,
    by_namespace: std::collections::BTreeMap<String, Results>,
}

/// Rendered results (each ready to be written as an element of the `results` list) and how many
/// of each kind there are.
#[derive(Default)]
struct Results {
    items: Vec<String>,
    summary: [usize; 5],
}

/// The CLI reports no severity or category: its responses do not carry policy annotations.
static NO_ANNOTATIONS: std::collections::BTreeMap<String, String> =
    std::collections::BTreeMap::new();

impl Results {
    fn push(&mut self, result: Value, word: &str, json_format: bool) {
        let mut one = report::Summary(self.summary);
        one.count(word);
        self.summary = one.0;
        self.items.push(if json_format {
            // An element of a list nested two levels deep in the pretty-printed report.
            serde_json::to_string_pretty(&result)
                .unwrap_or_default()
                .replace('\n', "\n    ")
        } else {
            yaml::to_yaml_string(&Value::Array(vec![result]))
        });
    }
}

impl ReportPart {
    fn of(responses: &ResponseMap, args: &ApplyArgs) -> ReportPart {
        let json_format = args.output_format == "json";
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut part = ReportPart::default();
        for (key, resps) in responses {
            for resp in resps {
                for rule in &resp.rules {
                    let status = result_of(resp, rule, args.audit_warn);
                    let word = status.as_str();
                    let mut result = report::result_entry(
                        resp,
                        rule,
                        status,
                        &rule.message,
                        &NO_ANNOTATIONS,
                        now,
                    );
                    result.insert(
                        "resources".into(),
                        json!([{"apiVersion": key.api_version, "kind": key.kind, "name": key.name, "namespace": key.namespace}]),
                    );
                    let result = Value::Object(result);
                    let results = if resp.policy_namespace.is_empty() {
                        &mut part.cluster
                    } else {
                        part.by_namespace
                            .entry(resp.policy_namespace.clone())
                            .or_default()
                    };
                    results.push(result, word, json_format);
                }
            }
        }
        part
    }
}

/// One report (ClusterPolicyReport or a namespace's PolicyReport) rendered around a placeholder
/// result, cut where the results go, so that results can be written as they come.
struct Skeleton {
    /// Up to the `results` key.
    head: String,
    /// From the `results` key to the first result.
    open: String,
    /// Between two results.
    between: &'static str,
}

const PLACEHOLDER: &str = "KYBERNRESULTSPLACEHOLDER";

fn report_object(namespace: Option<&str>, results: Value, summary: &[usize; 5]) -> Value {
    let summary = report::Summary(*summary).to_value();
    match namespace {
        None => json!({
            "apiVersion": report::API_VERSION,
            "kind": "ClusterPolicyReport",
            "metadata": {"name": "merged"},
            "results": results,
            "summary": summary,
        }),
        Some(ns) => json!({
            "apiVersion": report::API_VERSION,
            "kind": "PolicyReport",
            "metadata": {"name": "merged", "namespace": ns},
            "summary": summary,
            "results": results,
        }),
    }
}

fn render_report(v: &Value, json_format: bool) -> String {
    if json_format {
        serde_json::to_string_pretty(v).unwrap_or_default()
    } else {
        yaml::to_yaml_string(v)
    }
}

/// Where the results list starts in a rendered report: the start of its key's line.
fn results_key(text: &str, json_format: bool) -> usize {
    let key = if json_format {
        "\n  \"results\": "
    } else {
        "\nresults:"
    };
    text.find(key).map_or(text.len(), |i| i + 1)
}

impl Skeleton {
    fn new(namespace: Option<&str>, json_format: bool) -> Skeleton {
        let text = render_report(
            &report_object(namespace, json!([PLACEHOLDER]), &[0; 5]),
            json_format,
        );
        let at = results_key(&text, json_format);
        let placeholder = if json_format {
            text.find(&format!("\"{PLACEHOLDER}\""))
        } else {
            text.find(&format!("- {PLACEHOLDER}"))
        }
        .unwrap_or(text.len());
        Skeleton {
            head: text.get(..at).unwrap_or_default().to_string(),
            open: text.get(at..placeholder).unwrap_or_default().to_string(),
            between: if json_format { ",\n    " } else { "" },
        }
    }

    /// What follows the results: the report rendered with its final summary, from the
    /// placeholder on (or from the `results` key when there were none).
    fn tail(namespace: Option<&str>, json_format: bool, summary: &[usize; 5], any: bool) -> String {
        let results = if any { json!([PLACEHOLDER]) } else { json!([]) };
        let text = render_report(&report_object(namespace, results, summary), json_format);
        let from = if !any {
            results_key(&text, json_format)
        } else if json_format {
            text.find(&format!("\"{PLACEHOLDER}\""))
                .map_or(text.len(), |i| i + PLACEHOLDER.len() + 2)
        } else {
            text.find(&format!("- {PLACEHOLDER}\n"))
                .map_or(text.len(), |i| i + PLACEHOLDER.len() + 3)
        };
        text.get(from..).unwrap_or_default().to_string()
    }
}

/// Writes the policy report as results come: the ClusterPolicyReport's results straight to the
/// output, namespaced results to a spool file per namespace, then the summaries and the
/// PolicyReports at the end. Memory holds counters, never the results.
struct ReportWriter {
    json_format: bool,
    cluster: Skeleton,
    cluster_summary: [usize; 5],
    cluster_count: usize,
    spool: Option<Spool>,
    namespaces: std::collections::BTreeMap<String, Namespaced>,
}

/// Counters of one namespace's PolicyReport and the spool file holding its results.
struct Namespaced {
    file: usize,
    summary: [usize; 5],
    count: usize,
}

/// A temporary directory for namespaced report results, removed when dropped.
struct Spool {
    dir: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Spool {
    fn create() -> Result<Spool> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("kybern-report-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        Ok(Spool { dir })
    }

    fn file(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index}.part"))
    }
}

fn add_summary(total: &mut [usize; 5], part: &[usize; 5]) {
    for (t, n) in total.iter_mut().zip(part) {
        *t += n;
    }
}

impl ReportWriter {
    fn new(args: &ApplyArgs) -> ReportWriter {
        let json_format = args.output_format == "json";
        ReportWriter {
            json_format,
            cluster: Skeleton::new(None, json_format),
            cluster_summary: [0; 5],
            cluster_count: 0,
            spool: None,
            namespaces: std::collections::BTreeMap::new(),
        }
    }

    fn start(&mut self, out: &mut impl Write) -> Result<()> {
        out.write_all(self.cluster.head.as_bytes())?;
        Ok(())
    }

    fn add(&mut self, part: ReportPart, out: &mut impl Write) -> Result<()> {
        add_summary(&mut self.cluster_summary, &part.cluster.summary);
        for item in &part.cluster.items {
            let sep = if self.cluster_count == 0 {
                self.cluster.open.as_str()
            } else {
                self.cluster.between
            };
            out.write_all(sep.as_bytes())?;
            out.write_all(item.as_bytes())?;
            self.cluster_count += 1;
        }
        for (ns, results) in part.by_namespace {
            let spool = match &self.spool {
                Some(s) => s,
                None => self.spool.insert(Spool::create()?),
            };
            let next = self.namespaces.len();
            let state = self.namespaces.entry(ns).or_insert(Namespaced {
                file: next,
                summary: [0; 5],
                count: 0,
            });
            add_summary(&mut state.summary, &results.summary);
            let mut text = String::new();
            for item in &results.items {
                if state.count > 0 && self.json_format {
                    text.push_str(",\n    ");
                }
                text.push_str(item);
                state.count += 1;
            }
            let path = spool.file(state.file);
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("failed to open {}", path.display()))?;
            f.write_all(text.as_bytes())
                .with_context(|| format!("failed to write {}", path.display()))?;
        }
        Ok(())
    }

    fn finish(self, out: &mut impl Write) -> Result<()> {
        let json_format = self.json_format;
        let tail = Skeleton::tail(
            None,
            json_format,
            &self.cluster_summary,
            self.cluster_count > 0,
        );
        out.write_all(tail.as_bytes())?;
        for (ns, state) in &self.namespaces {
            out.write_all(if json_format { b"\n" } else { b"---\n" })?;
            let skeleton = Skeleton::new(Some(ns), json_format);
            out.write_all(skeleton.head.as_bytes())?;
            if state.count > 0 {
                out.write_all(skeleton.open.as_bytes())?;
                if let Some(spool) = &self.spool {
                    let path = spool.file(state.file);
                    let mut f = std::fs::File::open(&path)
                        .with_context(|| format!("failed to read {}", path.display()))?;
                    std::io::copy(&mut f, out)?;
                }
            }
            let tail = Skeleton::tail(Some(ns), json_format, &state.summary, state.count > 0);
            out.write_all(tail.as_bytes())?;
        }
        if json_format {
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}
