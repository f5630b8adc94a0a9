//! `kybern convert POLICY...`: ClusterPolicy validate rules to ValidatingPolicies (the engine's
//! `convert`); `--check RESOURCE...` evaluates both forms on resources and lists every resource
//! where they decide differently.

use crate::files;
use anyhow::{Result, bail};
use kybern_engine::context::NoProvider;
use kybern_engine::convert;
use kybern_engine::yaml;
use std::io::Write;
use std::path::PathBuf;

/// Flags of `kybern convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Policy files or directories.
    #[arg(required = true)]
    pub policies: Vec<PathBuf>,
    /// Write the ValidatingPolicies to this file instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Resource files or directories to evaluate both forms on; disagreements exit 1.
    #[arg(long = "check")]
    pub check: Vec<PathBuf>,
}

/// Runs the command; returns the exit code.
pub fn execute(args: &ConvertArgs) -> Result<i32> {
    let (docs, issues) = files::read_paths(&args.policies);
    for i in &issues {
        eprintln!("Error: {i}");
    }
    let resources: Vec<serde_json::Value> = if args.check.is_empty() {
        Vec::new()
    } else {
        let (res, res_issues) = files::read_paths(&args.check);
        for i in &res_issues {
            eprintln!("Error: {i}");
        }
        if !res_issues.is_empty() {
            bail!("{} resource input(s) could not be read", res_issues.len());
        }
        files::expand_lists(res)
            .into_iter()
            .map(|d| crate::resources::default_namespace(d.value))
            .collect()
    };
    let mut text = String::new();
    let (mut converted, mut skipped) = (0usize, 0usize);
    let mut total = convert::Agreement::default();
    for d in &docs {
        let kind = d.value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if !matches!(kind, "ClusterPolicy" | "Policy") {
            continue;
        }
        let policy = kybern_engine::cel::policy_name(&d.value);
        let c = convert::convert_policy(&d.value);
        for (rule, reason) in &c.skipped {
            eprintln!("{policy}/{rule}: not converted: {reason}");
        }
        skipped += c.skipped.len();
        converted += c.policies.len();
        for (_, vpol) in &c.policies {
            text.push_str("---\n");
            text.push_str(&yaml::to_yaml_string(vpol));
        }
        if !resources.is_empty() {
            let a = convert::compare(&d.value, &c, &resources, &NoProvider);
            total.compared += a.compared;
            total.decided += a.decided;
            total.disagreements.extend(a.disagreements);
            total.error_as_failure += a.error_as_failure;
            for (rule, e) in a.invalid {
                total.invalid.push((format!("{policy}/{rule}"), e));
            }
        }
    }
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    eprintln!("{converted} rule(s) converted, {skipped} not converted");
    if resources.is_empty() {
        return Ok(if issues.is_empty() { 0 } else { 1 });
    }
    for d in &total.disagreements {
        eprintln!(
            "disagreement: rule {} on {}: original {}, converted {}",
            d.rule, d.resource, d.original, d.converted
        );
    }
    for (rule, e) in &total.invalid {
        eprintln!("invalid: the conversion of {rule} does not compile: {e}");
    }
    eprintln!(
        "check: {} of {} rule/resource pairs decided alike ({} where a rule applied; {} where a validate.cel expression error is a failure in the original and an error in the conversion, both denying)",
        total.compared - total.disagreements.len(),
        total.compared,
        total.decided,
        total.error_as_failure
    );
    Ok(
        if total.disagreements.is_empty() && total.invalid.is_empty() && issues.is_empty() {
            0
        } else {
            1
        },
    )
}
