//! The conformance ratchet: runs `kybern test` on every Kyverno suite under
//! `$KYBERN_CONFORMANCE_DIR` (default `../shared/conformance` beside the repository) and compares
//! the outcome with the committed list `tests/conformance/passing.txt`. A listed suite that no
//! longer passes fails the test; new passes are reported so the list can grow.
//! `KYBERN_UPDATE_PASSING=1` rewrites the list with every suite that passes now.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SUITE_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("KYBERN_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("../shared/conformance"),
    }
}

fn find_suites(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            find_suites(&p, out);
        } else if p.file_name().is_some_and(|n| n == "kyverno-test.yaml") {
            out.push(p);
        }
    }
}

/// Runs one suite; true when every row passed (exit code 0 and a summary line was printed).
fn run_suite(bin: &Path, file: &Path) -> (bool, String) {
    let child = Command::new(bin)
        .arg("test")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return (false, "could not start kybern".into());
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > SUITE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return (false, "timed out".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return (false, e.to_string()),
        }
    }
    let Ok(out) = child.wait_with_output() else {
        return (false, "no output".into());
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") {
        return (false, format!("PANIC: {stderr}"));
    }
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("Test Summary:"))
        .unwrap_or("no summary")
        .to_string();
    (
        out.status.success() && stdout.contains("Test Summary:"),
        format!("{summary} {}", stderr.trim()),
    )
}

#[test]
fn conformance_ratchet() {
    let corpus = corpus_dir();
    if !corpus.is_dir() {
        let msg = format!(
            "conformance corpus not found at {} (set KYBERN_CONFORMANCE_DIR); the ratchet did not run",
            corpus.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("{msg}");
        return;
    }
    let list_path = repo_root().join("tests/conformance/passing.txt");
    let listed: BTreeSet<String> = std::fs::read_to_string(&list_path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut suites = Vec::new();
    find_suites(&corpus, &mut suites);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kybern"));
    let queue = Mutex::new(suites.clone());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                    let Some(file) = next else { break };
                    let id = file
                        .parent()
                        .and_then(|d| d.strip_prefix(&corpus).ok())
                        .map(|d| d.display().to_string())
                        .unwrap_or_default();
                    let (ok, detail) = run_suite(&bin, &file);
                    results.lock().unwrap().push((id, ok, detail));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort();
    let passing: BTreeSet<String> = results
        .iter()
        .filter(|r| r.1)
        .map(|r| r.0.clone())
        .collect();
    let regressions: Vec<&(String, bool, String)> = results
        .iter()
        .filter(|r| !r.1 && listed.contains(&r.0))
        .collect();
    let missing: Vec<&String> = listed
        .iter()
        .filter(|l| !results.iter().any(|r| &r.0 == *l))
        .collect();
    let new: Vec<&String> = passing.iter().filter(|p| !listed.contains(*p)).collect();
    let panics: Vec<&(String, bool, String)> = results
        .iter()
        .filter(|r| r.2.starts_with("PANIC"))
        .collect();
    println!(
        "conformance: {} of {} suites pass ({} listed in passing.txt)",
        passing.len(),
        results.len(),
        listed.len()
    );
    for n in &new {
        println!("  newly passing: {n}");
    }
    if std::env::var_os("KYBERN_UPDATE_PASSING").is_some() {
        let mut text = String::from(
            "# Kyverno conformance suites that kybern passes (ratchet: only grows).\n",
        );
        for p in listed.union(&passing) {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::write(&list_path, text).unwrap();
        println!("updated {}", list_path.display());
    }
    for r in &regressions {
        println!("  REGRESSION: {} ({})", r.0, r.2);
    }
    for p in &panics {
        println!("  PANIC: {} ({})", p.0, p.2);
    }
    assert!(
        missing.is_empty(),
        "listed suites missing from the corpus: {missing:?}"
    );
    assert!(panics.is_empty(), "{} suites panicked", panics.len());
    assert!(
        regressions.is_empty(),
        "{} listed suites no longer pass",
        regressions.len()
    );
}
