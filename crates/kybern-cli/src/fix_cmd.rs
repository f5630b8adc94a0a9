//! `kybern fix policy` and `kybern fix test`: rewrite deprecated Kyverno policy and test syntax
//! to the current one, as `kyverno fix` does. Each change is a warning line on standard error
//! naming the file (and document); the fixed files are printed on standard output, or written
//! in place with `--save`. A file that needs no fix is not printed and not written.

mod policy;
mod test_file;

use crate::files::manifest_files;
use anyhow::{Result, bail};
use clap::Subcommand;
use kybern_engine::yaml::{Limits, parse_documents, to_yaml_string};
use serde_json::Value;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Flags of `kybern fix`.
#[derive(Debug, clap::Args)]
pub struct FixArgs {
    #[command(subcommand)]
    pub what: FixCommand,
}

/// What `kybern fix` rewrites.
#[derive(Debug, Subcommand)]
pub enum FixCommand {
    /// Fix ClusterPolicy/Policy documents: validationFailureAction spelled `Audit`/`Enforce`,
    /// old match/exclude syntax moved into `any`, bare-list preconditions into `all`, old
    /// condition operators renamed, empty blocks removed.
    Policy(FixPolicyArgs),
    /// Fix kyverno-test.yaml files: apiVersion and kind set (also in the values and user info
    /// files they name), top-level name moved into metadata, deprecated result fields moved,
    /// duplicate resources removed, rows sorted.
    Test(FixTestArgs),
}

/// Flags shared by both fixes.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Write the fixed files in place instead of printing them.
    #[arg(long = "save")]
    pub save: bool,
    /// With --save, rewrite every file read, even those that need no fix.
    #[arg(long = "force")]
    pub force: bool,
}

/// Flags of `kybern fix policy`.
#[derive(Debug, clap::Args)]
pub struct FixPolicyArgs {
    /// Policy files or directories (searched recursively for .yaml, .yml and .json).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub save: SaveArgs,
}

/// Flags of `kybern fix test`.
#[derive(Debug, clap::Args)]
pub struct FixTestArgs {
    /// Test files or directories (searched recursively for the test file name).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Name of the test files to look for.
    #[arg(short = 'f', long = "file-name", default_value = "kyverno-test.yaml")]
    pub file_name: String,
    /// Merge result rows that differ only by their resources.
    #[arg(long = "compress")]
    pub compress: bool,
    #[command(flatten)]
    pub save: SaveArgs,
}

/// Runs `kybern fix`.
pub fn execute(args: &FixArgs) -> Result<i32> {
    let mut tally = Tally::default();
    match &args.what {
        FixCommand::Policy(a) => {
            let mut files = Vec::new();
            for p in &a.paths {
                files.extend(manifest_files(p)?);
            }
            run(&files, &a.save, &mut tally, |_, doc| {
                Ok(policy::fix_policy(doc))
            });
        }
        FixCommand::Test(a) => {
            if a.file_name.is_empty() {
                bail!("--file-name must not be empty");
            }
            let mut files = Vec::new();
            for p in &a.paths {
                test_files(p, &a.file_name, &mut files)?;
            }
            let referenced = RefCell::new(Vec::<(PathBuf, &'static str)>::new());
            run(&files, &a.save, &mut tally, |path, doc| {
                if !test_file::is_test(doc) {
                    return Ok(Vec::new());
                }
                let dir = path.parent().unwrap_or(Path::new("."));
                for (field, kind) in [("variables", "Values"), ("userinfo", "UserInfo")] {
                    if let Some(file) = doc.get(field).and_then(Value::as_str) {
                        let file = dir.join(file);
                        let mut seen = referenced.borrow_mut();
                        if file.is_file() && !seen.iter().any(|(f, _)| *f == file) {
                            seen.push((file, kind));
                        }
                    }
                }
                // Kyverno names an unnamed test after its file; the directory says more.
                let name = path
                    .canonicalize()
                    .ok()
                    .and_then(|p| {
                        p.parent()?
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                    })
                    .unwrap_or_else(|| "test".into());
                test_file::fix_test(doc, &name, a.compress)
            });
            // The values and user info files tests name get their apiVersion and kind too.
            let referenced = referenced.into_inner();
            for kind in ["Values", "UserInfo"] {
                let files: Vec<PathBuf> = referenced
                    .iter()
                    .filter(|(_, k)| *k == kind)
                    .map(|(f, _)| f.clone())
                    .collect();
                run(&files, &a.save, &mut tally, |_, doc| {
                    Ok(test_file::fix_typed(doc, kind))
                });
            }
        }
    }
    let verb = if args.save().save { "fixed" } else { "to fix" };
    eprintln!(
        "{} of {} file(s) {verb}, {} failed",
        tally.fixed, tally.files, tally.failed
    );
    Ok(i32::from(tally.failed > 0))
}

impl FixArgs {
    fn save(&self) -> &SaveArgs {
        match &self.what {
            FixCommand::Policy(a) => &a.save,
            FixCommand::Test(a) => &a.save,
        }
    }
}

/// Files read, fixed (or to fix) and failed.
#[derive(Default)]
struct Tally {
    files: usize,
    fixed: usize,
    failed: usize,
}

fn test_files(path: &Path, file_name: &str, out: &mut Vec<PathBuf>) -> Result<()> {
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
            test_files(&p, file_name, out)?;
        } else if p.file_name().is_some_and(|n| n == file_name) {
            out.push(p);
        }
    }
    Ok(())
}

/// What happened to one file.
enum Outcome {
    Unchanged,
    Fixed(String),
    Failed,
}

/// Fixes every file, counting what happened in `tally`.
fn run(
    files: &[PathBuf],
    save: &SaveArgs,
    tally: &mut Tally,
    fix: impl Fn(&Path, &mut Value) -> Result<Vec<String>, String>,
) {
    tally.files += files.len();
    for path in files {
        match fix_file(path, save.force, &fix) {
            Outcome::Unchanged => {}
            Outcome::Failed => tally.failed += 1,
            Outcome::Fixed(text) => {
                tally.fixed += 1;
                if save.save {
                    if let Err(e) = std::fs::write(path, text) {
                        eprintln!("ERROR: cannot write {}: {e}", path.display());
                        tally.failed += 1;
                    }
                } else {
                    print!("# {}\n{text}", path.display());
                }
            }
        }
    }
}

fn fix_file(
    path: &Path,
    force: bool,
    fix: &impl Fn(&Path, &mut Value) -> Result<Vec<String>, String>,
) -> Outcome {
    let input = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ERROR: cannot read {}: {e}", path.display());
            return Outcome::Failed;
        }
    };
    let (mut docs, err) = parse_documents(&input, &Limits::default());
    if let Some(e) = err {
        eprintln!("ERROR: {}: {e}", path.display());
        return Outcome::Failed;
    }
    let several = docs.len() > 1;
    let mut changed = false;
    for (index, doc) in &mut docs {
        let at = if several {
            format!("{} (document {})", path.display(), *index + 1)
        } else {
            path.display().to_string()
        };
        let before = doc.clone();
        match fix(path, doc) {
            Ok(messages) => {
                for m in messages {
                    eprintln!("WARNING: {at}: {m}");
                }
            }
            Err(e) => {
                eprintln!("ERROR: {at}: {e}");
                return Outcome::Failed;
            }
        }
        changed |= *doc != before;
    }
    if !changed && !force {
        return Outcome::Unchanged;
    }
    let json = path.extension().is_some_and(|e| e == "json");
    let mut text = String::new();
    for (_, doc) in &docs {
        if json {
            text.push_str(&serde_json::to_string_pretty(doc).unwrap_or_default());
            text.push('\n');
        } else {
            text.push_str("---\n");
            text.push_str(&to_yaml_string(doc));
        }
    }
    Outcome::Fixed(text)
}
