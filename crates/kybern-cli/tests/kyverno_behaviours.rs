//! Kyverno behaviours as users meet them: every folder under `tests/kyverno_behaviours/` is a
//! kyverno-test.yaml suite (policy, resources, expected results and patched resources) whose
//! expectations are what the kyverno CLI reports. `kybern test` must pass each one.
//! `KYBERN_BEHAVIOUR=<substring>` runs only the suites whose folder name contains it.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

fn suites() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kyverno_behaviours");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kyverno-test.yaml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn kyverno_behaviour_suites_pass() {
    let filter = std::env::var("KYBERN_BEHAVIOUR").unwrap_or_default();
    let mut failures = Vec::new();
    let mut count = 0;
    for dir in suites()
        .iter()
        .filter(|d| d.display().to_string().contains(&filter))
    {
        count += 1;
        let out = Command::new(BIN).arg("test").arg(dir).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The kyverno CLI counts rows of a policy it cannot load as skipped, which would hide
        // a policy kybern wrongly refuses.
        if !out.status.success()
            || !stdout.contains("Test Summary:")
            || stdout.contains("Invalid Policy")
        {
            failures.push(format!(
                "{}:\n{stdout}\n{}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(count > 0 || !filter.is_empty(), "no behaviour suites found");
    assert!(
        failures.is_empty(),
        "{} suites failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
