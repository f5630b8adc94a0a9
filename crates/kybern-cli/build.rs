//! Records the commit and its date for `kybern version`: from `KYBERN_GIT_COMMIT` /
//! `KYBERN_BUILD_DATE` when set (image builds without a .git), else from git, else "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = std::env::var("KYBERN_GIT_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // The commit's date, not the clock: the same commit builds the same binary.
    let date = std::env::var("KYBERN_BUILD_DATE")
        .ok()
        .or_else(|| git(&["log", "-1", "--format=%cs", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KYBERN_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=KYBERN_BUILD_DATE={date}");
    println!("cargo:rerun-if-env-changed=KYBERN_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=KYBERN_BUILD_DATE");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
}
