//! The `kybern` command: `test`, `apply` and `jp`, drop-in for the kyverno CLI verbs.
//! This binary owns file access and printing; every decision comes from `kybern-engine`.

mod allocator;
mod apply_cmd;
mod cel_policies;
mod cluster_cmd;
mod convert_cmd;
mod create_cmd;
mod evaluation;
mod explain;
mod files;
mod fix_cmd;
mod jp_cmd;
mod lint_cmd;
mod oci_cmd;
mod policy_set;
mod provider;
mod reference_cmd;
mod report_cmd;
mod resources;
mod serve_cmd;
mod spec;
mod table;
mod test_cmd;
mod version_cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "kybern", version, about = "Kyverno-compatible policy engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run kyverno-test.yaml suites and compare results with their expectations.
    Test(test_cmd::TestArgs),
    /// Apply policies to resources and report the results.
    Apply(apply_cmd::ApplyArgs),
    /// JMESPath with Kyverno's functions: query, list functions, parse.
    Jp(jp_cmd::JpArgs),
    /// Serve the admission webhook over HTTPS.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Print the CustomResourceDefinitions of every kind kybern serves.
    Crds,
    /// Manage the webhook configurations kybern writes in a cluster.
    Webhooks(cluster_cmd::WebhooksArgs),
    /// Run background work in a cluster: generate rules (queued by `serve --cluster`), policy
    /// reports.
    Controller(cluster_cmd::ControllerArgs),
    /// Summarise the policy reports in a cluster: per namespace, per policy, failing rules.
    Report(report_cmd::ReportArgs),
    /// Check policies without resources: YAML and schema, JMESPath in every variable, CEL,
    /// variable roots, wildcard kinds (exit 2 on errors, 1 on warnings with --strict).
    Lint(lint_cmd::LintArgs),
    /// Write skeletons of exception, test, values, user info, metrics and ClusterRole files.
    Create(create_cmd::CreateArgs),
    /// Rewrite deprecated syntax in policies and kyverno-test.yaml files.
    Fix(fix_cmd::FixArgs),
    /// Push policies to an OCI registry as Kyverno's policy artifacts, or pull them back.
    Oci(oci_cmd::OciArgs),
    /// Convert ClusterPolicy and Policy validate rules (patterns, deny, foreach, cel, podSecurity)
    /// to ValidatingPolicies with CEL; --check evaluates both forms on resources and lists where
    /// they differ.
    Convert(convert_cmd::ConvertArgs),
    /// Show the version, commit, build date and the Kyverno version whose behaviour it follows.
    Version(version_cmd::VersionArgs),
    /// Print the Markdown reference of every command and flag.
    Docs,
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completion(reference_cmd::CompletionArgs),
}

/// A closed stdout (`kybern jp function | head`) ends the process quietly, as other command-line
/// tools do, instead of reporting a panic from `println!`.
fn exit_quietly_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("failed printing to stdout") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_closed_stdout();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Controller(_)) {
        allocator::use_server_settings();
    }
    let result = match &cli.command {
        Command::Test(args) => test_cmd::execute(args),
        Command::Apply(args) => apply_cmd::execute(args),
        Command::Jp(args) => jp_cmd::execute(args),
        Command::Serve(args) => serve_cmd::execute(args),
        Command::Crds => cluster_cmd::crds(),
        Command::Webhooks(args) => cluster_cmd::webhooks(args),
        Command::Controller(args) => cluster_cmd::controller(args),
        Command::Report(args) => report_cmd::report(args),
        Command::Lint(args) => lint_cmd::execute(args),
        Command::Create(args) => create_cmd::execute(args),
        Command::Fix(args) => fix_cmd::execute(args),
        Command::Oci(args) => oci_cmd::execute(args),
        Command::Convert(args) => convert_cmd::execute(args),
        Command::Version(args) => version_cmd::execute(args),
        Command::Docs => reference_cmd::docs(&Cli::command()),
        Command::Completion(args) => reference_cmd::completion(args, Cli::command()),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // A reader that stopped reading (`| head`): quiet, as the hook above does for print.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
