//! `kybern jp`: run JMESPath expressions with Kyverno's function library, list the functions,
//! print parse trees.

use anyhow::{Context, Result, bail};
use kybern_engine::{jmespath, yaml};
use std::io::Read;
use std::path::PathBuf;

/// Flags of `kybern jp`.
#[derive(Debug, clap::Args)]
pub struct JpArgs {
    #[command(subcommand)]
    pub command: JpCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum JpCommand {
    /// Evaluate expressions on a YAML or JSON input (a file, or standard input).
    Query {
        /// Input file; standard input when absent.
        #[arg(short = 'i', long = "input")]
        input: Option<PathBuf>,
        /// Files holding one expression each, evaluated after the inline ones.
        #[arg(short = 'q', long = "query")]
        query_files: Vec<PathBuf>,
        /// Print results as compact JSON instead of indented JSON.
        #[arg(short = 'u', long = "unquoted")]
        unquoted: bool,
        /// Expressions.
        expressions: Vec<String>,
    },
    /// List the available functions with their signatures (all, or the named ones).
    Function { names: Vec<String> },
    /// Print the parse tree of expressions.
    Parse {
        /// Files holding one expression each.
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
        expressions: Vec<String>,
    },
}

fn read_expressions(inline: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = inline.to_vec();
    for f in files {
        out.push(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .trim()
                .to_string(),
        );
    }
    if out.is_empty() {
        bail!("no expression given");
    }
    Ok(out)
}

/// Runs the command; returns the process exit code.
pub fn execute(args: &JpArgs) -> Result<i32> {
    match &args.command {
        JpCommand::Query {
            input,
            query_files,
            unquoted,
            expressions,
        } => {
            let exprs = read_expressions(expressions, query_files)?;
            let text = match input {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("cannot read standard input")?;
                    s
                }
            };
            let data = yaml::parse_all(&text)
                .map_err(|e| anyhow::anyhow!("invalid input: {e}"))?
                .into_iter()
                .next()
                .unwrap_or(serde_json::Value::Null);
            for e in exprs {
                let compiled = jmespath::compile(&e).map_err(|err| anyhow::anyhow!("{err}"))?;
                let result = compiled
                    .search(&data)
                    .map_err(|err| anyhow::anyhow!("{err}"))?;
                let out = match (&result, *unquoted) {
                    (serde_json::Value::String(s), true) => s.clone(),
                    (_, true) => serde_json::to_string(&result)?,
                    _ => serde_json::to_string_pretty(&result)?,
                };
                println!("{out}");
            }
            Ok(0)
        }
        JpCommand::Function { names } => {
            for f in jmespath::functions() {
                if !names.is_empty() && !names.iter().any(|n| n == f.name) {
                    continue;
                }
                println!("Name: {}", f.name);
                println!("  Signature: {}", f.signature);
                if !f.description.is_empty() {
                    println!("  Note:      {}", f.description);
                }
                println!();
            }
            Ok(0)
        }
        JpCommand::Parse { files, expressions } => {
            for e in read_expressions(expressions, files)? {
                println!("# {e}");
                println!(
                    "{}",
                    jmespath::parse_tree(&e).map_err(|err| anyhow::anyhow!("{err}"))?
                );
            }
            Ok(0)
        }
    }
}
