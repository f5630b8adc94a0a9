//! `kybern version`: what this binary is and which Kyverno it follows.

use anyhow::Result;

/// The Kyverno sources whose behaviour kybern matches: the CLI test suites of this commit are
/// the conformance corpus (docs/conformance.md).
pub const KYVERNO_SEMANTICS: &str = "kyverno/kyverno 111e07bbecc6 (2026-08-21)";

/// Flags of `kybern version`.
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Print one JSON object instead of lines.
    #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
}

fn fields() -> [(&'static str, &'static str); 4] {
    [
        ("version", env!("CARGO_PKG_VERSION")),
        ("commit", env!("KYBERN_GIT_COMMIT")),
        ("buildDate", env!("KYBERN_BUILD_DATE")),
        ("kyvernoSemantics", KYVERNO_SEMANTICS),
    ]
}

/// The version text `kybern version` prints.
pub fn text() -> String {
    let [version, commit, date, kyverno] = fields();
    format!(
        "Version: {}\nCommit: {}\nBuild date: {}\nKyverno semantics: {}\n",
        version.1, commit.1, date.1, kyverno.1
    )
}

/// Runs the command.
pub fn execute(args: &VersionArgs) -> Result<i32> {
    if args.output == "json" {
        let map: serde_json::Map<String, serde_json::Value> = fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        print!("{}", text());
    }
    Ok(0)
}
