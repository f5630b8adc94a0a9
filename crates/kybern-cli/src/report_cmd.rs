//! `kybern report` (a summary of the policy reports in a cluster) and the flags with which
//! `kybern controller --enable reports` scans and writes them.

use anyhow::{Context, Result, bail};
use kybern_cluster::reports::scan::{self, ScanSettings};
use kybern_cluster::reports::shape::ReportApi;
use kybern_cluster::reports::summary::{self, Counts, Overview};
use kybern_cluster::reports::writer::WriteSettings;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of the reports part of `kybern controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportsArgs {
    /// Results written to reports (comma separated: pass, fail, warn, error, skip); leaving
    /// `pass` out keeps reports small.
    #[arg(
        long,
        env = "KYBERN_REPORT_RESULTS",
        value_delimiter = ',',
        default_value = "pass,fail,warn,error,skip"
    )]
    pub report_results: Vec<String>,
    /// How often every resource is evaluated again (Go duration: `1h`, `30m`).
    #[arg(long, env = "KYBERN_BACKGROUND_SCAN_INTERVAL", default_value = "1h")]
    pub background_scan_interval: String,
    /// Report writes per second at most.
    #[arg(long, env = "KYBERN_REPORT_WRITES_PER_SECOND", default_value_t = 50)]
    pub report_writes_per_second: u32,
    /// Longest result message kept, in bytes.
    #[arg(long, env = "KYBERN_REPORT_MESSAGE_LIMIT", default_value_t = 1024)]
    pub report_message_limit: usize,
    /// Kinds scanned although they churn (Event, Lease), comma separated.
    #[arg(long, env = "KYBERN_REPORT_CHURNING_KINDS", value_delimiter = ',')]
    pub report_churning_kinds: Vec<String>,
    /// Report API written: `wgpolicyk8s` (PolicyReport, ClusterPolicyReport) or `openreports`
    /// (Report, ClusterReport).
    #[arg(long, env = "KYBERN_REPORT_API", default_value = "wgpolicyk8s", value_parser = ["wgpolicyk8s", "openreports"])]
    pub report_api: String,
}

/// What the reports flags resolve to.
pub struct ReportSettings {
    pub scan: ScanSettings,
    pub write: WriteSettings,
    pub interval: Duration,
    pub api: ReportApi,
}

impl ReportsArgs {
    /// The scan and write settings these flags ask for.
    pub fn settings(&self) -> Result<ReportSettings> {
        let results = scan::parse_results(&self.report_results)
            .map_err(|e| anyhow::anyhow!("--report-results: {e}"))?;
        let nanos = kybern_engine::duration::parse(&self.background_scan_interval)
            .filter(|n| *n > 0)
            .with_context(|| {
                format!(
                    "--background-scan-interval: {:?} is not a positive duration (e.g. 1h, 30m)",
                    self.background_scan_interval
                )
            })?;
        let interval = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        if self.report_writes_per_second == 0 {
            bail!("--report-writes-per-second must be at least 1");
        }
        Ok(ReportSettings {
            scan: ScanSettings {
                results,
                message_limit: self.report_message_limit.max(16),
                allowed_churning_kinds: self.report_churning_kinds.clone(),
            },
            write: WriteSettings {
                per_second: self.report_writes_per_second,
                ..WriteSettings::default()
            },
            interval,
            api: ReportApi::parse(&self.report_api)
                .map_err(|e| anyhow::anyhow!("--report-api: {e}"))?,
        })
    }
}

/// Flags of `kybern serve --cluster` for admission results in reports.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmissionReportsArgs {
    /// Put the validate results of policies that do not run in the background (`background:
    /// false`) into each admitted resource's report, next to the background scan's. Needs
    /// create and update on the report kinds.
    #[arg(long, env = "KYBERN_ADMISSION_REPORTS")]
    pub admission_reports: bool,
    /// Results written to reports (comma separated: pass, fail, warn, error, skip).
    #[arg(
        long = "report-results",
        env = "KYBERN_REPORT_RESULTS",
        value_delimiter = ',',
        default_value = "pass,fail,warn,error,skip"
    )]
    pub results: Vec<String>,
    /// Report writes per second at most, per replica.
    #[arg(
        long = "report-writes-per-second",
        env = "KYBERN_REPORT_WRITES_PER_SECOND",
        default_value_t = 50
    )]
    pub writes_per_second: u32,
    /// Longest result message kept, in bytes.
    #[arg(
        long = "report-message-limit",
        env = "KYBERN_REPORT_MESSAGE_LIMIT",
        default_value_t = 1024
    )]
    pub message_limit: usize,
    /// Report API written: `wgpolicyk8s` or `openreports`.
    #[arg(long = "report-api", env = "KYBERN_REPORT_API", default_value = "wgpolicyk8s", value_parser = ["wgpolicyk8s", "openreports"])]
    pub api: String,
}

impl AdmissionReportsArgs {
    /// `None` unless `--admission-reports`.
    pub fn options(&self) -> Result<Option<kybern_cluster::serve::AdmissionReportOptions>> {
        if !self.admission_reports {
            return Ok(None);
        }
        if self.writes_per_second == 0 {
            bail!("--report-writes-per-second must be at least 1");
        }
        Ok(Some(kybern_cluster::serve::AdmissionReportOptions {
            api: ReportApi::parse(&self.api).map_err(|e| anyhow::anyhow!("--report-api: {e}"))?,
            scan: ScanSettings {
                results: scan::parse_results(&self.results)
                    .map_err(|e| anyhow::anyhow!("--report-results: {e}"))?,
                message_limit: self.message_limit.max(16),
                allowed_churning_kinds: Vec::new(),
            },
            writes: WriteSettings {
                per_second: self.writes_per_second,
                ..WriteSettings::default()
            },
        }))
    }
}

/// Flags of `kybern report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then the in-cluster configuration).
    #[arg(long, env = "KYBERN_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Output: `text` (tables) or `json`.
    #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    /// How many failing rules to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Report API read: `wgpolicyk8s` (PolicyReport, ClusterPolicyReport) or `openreports`
    /// (Report, ClusterReport).
    #[arg(long, default_value = "wgpolicyk8s", value_parser = ["wgpolicyk8s", "openreports"])]
    pub report_api: String,
}

/// Prints the summary of every report (of the chosen API) in the cluster.
pub fn report(args: &ReportArgs) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let api =
        ReportApi::parse(&args.report_api).map_err(|e| anyhow::anyhow!("--report-api: {e}"))?;
    let mut overview = runtime.block_on(async {
        let client = kybern_cluster::serve::client(args.kubeconfig.as_deref()).await?;
        summary::read(&client, api).await
    })?;
    overview.failing_rules.truncate(args.top);
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&overview)?);
    } else {
        print!("{}", render(&overview));
    }
    Ok(0)
}

fn counts_row(first: String, c: &Counts) -> Vec<String> {
    vec![
        first,
        c.pass.to_string(),
        c.fail.to_string(),
        c.warn.to_string(),
        c.error.to_string(),
        c.skip.to_string(),
    ]
}

/// The text summary: totals, then tables per namespace, per policy, and of failing rules.
pub fn render(o: &Overview) -> String {
    let t = &o.total;
    let mut out = format!(
        "{} reports: {} pass, {} fail, {} warn, {} error, {} skip\n",
        o.reports, t.pass, t.fail, t.warn, t.error, t.skip
    );
    let namespaces: Vec<Vec<String>> = o
        .namespaces
        .iter()
        .map(|(ns, c)| {
            let name = if ns.is_empty() { "(cluster)" } else { ns };
            counts_row(name.to_string(), c)
        })
        .collect();
    out.push('\n');
    out.push_str(&crate::table::render(
        &["NAMESPACE", "PASS", "FAIL", "WARN", "ERROR", "SKIP"],
        &namespaces,
    ));
    let policies: Vec<Vec<String>> = o
        .policies
        .iter()
        .map(|(p, c)| counts_row(p.clone(), c))
        .collect();
    out.push('\n');
    out.push_str(&crate::table::render(
        &["POLICY", "PASS", "FAIL", "WARN", "ERROR", "SKIP"],
        &policies,
    ));
    if !o.failing_rules.is_empty() {
        let rules: Vec<Vec<String>> = o
            .failing_rules
            .iter()
            .map(|r| vec![r.policy.clone(), r.rule.clone(), r.failures.to_string()])
            .collect();
        out.push('\n');
        out.push_str(&crate::table::render(
            &["POLICY", "RULE", "FAILURES"],
            &rules,
        ));
    }
    out
}
