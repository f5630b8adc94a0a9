//! `kybern fix policy` and `kybern fix test`: golden outputs on fixtures of our own
//! (tests/fix/, expected output in tests/fix/expected/, rewritten with KYBERN_REGENERATE=1),
//! `--save` in place leaving files that need no fix byte for byte, and the fixes applied to
//! every suite of the conformance corpus keeping the passing suites passing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kybern");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fix")
}

fn kybern(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A fresh folder, removed with everything in it when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("kybern-fix-{name}-"))
        .tempdir()
        .unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file below `dir` with its bytes.
fn snapshot(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            snapshot(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.insert(p, bytes);
        }
    }
}

#[test]
fn fixes_print_their_golden_output_and_one_warning_per_change() {
    let regenerate = std::env::var_os("KYBERN_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (name, args) in [
        ("policy", &["fix", "policy", "policies"][..]),
        ("test", &["fix", "test", "tests"][..]),
        ("test-compress", &["fix", "test", "--compress", "tests"][..]),
    ] {
        let out = kybern(args, &fixtures());
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        for (ext, got) in [("out", text(&out.stdout)), ("err", text(&out.stderr))] {
            let path = fixtures().join(format!("expected/{name}.{ext}"));
            if regenerate {
                std::fs::write(&path, &got).unwrap();
            }
            if std::fs::read_to_string(&path).unwrap_or_default() != got {
                stale.push(format!("{name}.{ext}:\n{got}"));
            }
        }
        // What is printed is YAML that reads back, and files needing no fix are not printed.
        let stdout = text(&out.stdout);
        kybern_engine::yaml::parse_all(&stdout).unwrap();
        assert!(!stdout.contains("current"), "{stdout}");
    }
    assert!(
        stale.is_empty(),
        "outputs differ from tests/fix/expected/ (KYBERN_REGENERATE=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn save_rewrites_only_files_that_need_a_fix_and_a_second_run_finds_nothing() {
    let tmp = temp_dir("save");
    let dir = tmp.path();
    copy_tree(&fixtures().join("policies"), &dir.join("policies"));
    copy_tree(&fixtures().join("tests"), &dir.join("tests"));
    let mut before = BTreeMap::new();
    snapshot(dir, &mut before);
    for args in [
        &["fix", "policy", "policies", "--save"][..],
        &["fix", "test", "tests", "--save"][..],
    ] {
        let out = kybern(args, dir);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
    let mut after = BTreeMap::new();
    snapshot(dir, &mut after);
    for (path, bytes) in &before {
        let current = path.to_string_lossy().contains("current");
        assert_eq!(
            &after[path] == bytes,
            current,
            "{}: only the current files stay as they were",
            path.display()
        );
    }
    // The saved files are what the command prints.
    let printed = text(&kybern(&["fix", "policy", "policies"], &fixtures()).stdout);
    let saved = text(&after[&dir.join("policies/old-syntax.yaml")]);
    assert!(printed.contains(&saved), "{saved}\nnot in\n{printed}");
    for args in [
        &["fix", "policy", "policies"][..],
        &["fix", "test", "tests"][..],
    ] {
        let again = kybern(args, dir);
        assert!(again.stdout.is_empty(), "{}", text(&again.stdout));
        assert!(
            text(&again.stderr).contains("0 of "),
            "{}",
            text(&again.stderr)
        );
        assert!(!text(&again.stderr).contains("WARNING: policies"));
    }
}

#[test]
fn unreadable_files_are_errors_naming_them_and_the_others_are_still_fixed() {
    let tmp = temp_dir("broken");
    let dir = tmp.path();
    copy_tree(&fixtures().join("policies"), &dir.join("policies"));
    std::fs::write(dir.join("policies/broken.yaml"), "a: [unclosed\n").unwrap();
    let out = kybern(&["fix", "policy", "policies"], dir);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ERROR: policies/broken.yaml: "), "{err}");
    assert!(text(&out.stdout).contains("# policies/old-syntax.yaml"));
    let missing = kybern(&["fix", "test", "no-such-dir"], dir);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no-such-dir"));
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("KYBERN_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    }
}

/// `kybern fix test` and `kybern fix policy` on a copy of the whole corpus: every suite
/// `tests/conformance/passing.txt` lists still passes on the fixed copy, files not reported
/// as fixed are unchanged, and fixing the fixed copy again changes nothing.
#[test]
fn fixed_copies_of_the_conformance_corpus_still_pass() {
    let corpus = corpus_dir();
    if !corpus.is_dir() {
        let msg = format!(
            "conformance corpus not found at {} (set KYBERN_CONFORMANCE_DIR); fixes not checked on it",
            corpus.display()
        );
        // CI has the corpus (as for the conformance ratchet): its absence there is a failure.
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("{msg}");
        return;
    }
    let tmp = temp_dir("corpus");
    let dir = tmp.path();
    let copy = dir.join("corpus");
    copy_tree(&corpus, &copy);
    let mut before = BTreeMap::new();
    snapshot(&copy, &mut before);
    let mut reported = std::collections::BTreeSet::new();
    for verb in ["test", "policy"] {
        let out = kybern(&["fix", verb, "corpus", "--save"], dir);
        let err = text(&out.stderr);
        assert!(out.status.success(), "fix {verb}: {err}");
        for line in err.lines().filter(|l| l.starts_with("WARNING: ")) {
            let file = line["WARNING: ".len()..]
                .split([':', ' '])
                .next()
                .unwrap_or_default();
            reported.insert(dir.join(file));
        }
        eprintln!("fix {verb}: {}", err.lines().last().unwrap_or_default());
    }
    let mut after = BTreeMap::new();
    snapshot(&copy, &mut after);
    let changed: Vec<&PathBuf> = before
        .iter()
        .filter(|(p, b)| after.get(*p) != Some(b))
        .map(|(p, _)| p)
        .collect();
    assert!(!changed.is_empty(), "the corpus has files to fix");
    for p in &changed {
        assert!(
            reported.contains(*p),
            "{} changed without a warning",
            p.display()
        );
    }
    let passing = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/passing.txt"),
    )
    .unwrap();
    let mut regressions = Vec::new();
    let mut count = 0;
    for suite in passing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        count += 1;
        let out = kybern(&["test", &format!("corpus/{suite}/kyverno-test.yaml")], dir);
        if !out.status.success() {
            regressions.push(format!(
                "{suite}: {}",
                text(&out.stdout).lines().last().unwrap_or_default()
            ));
        }
    }
    eprintln!(
        "{} files fixed; {} of {count} passing suites still pass on the fixed copy",
        changed.len(),
        count - regressions.len()
    );
    assert!(
        regressions.is_empty(),
        "no longer pass after fixing:\n{}",
        regressions.join("\n")
    );
    for verb in ["test", "policy"] {
        let again = kybern(&["fix", verb, "corpus"], dir);
        let err = text(&again.stderr);
        assert!(
            again.stdout.is_empty(),
            "fix {verb} is not idempotent: {err}"
        );
    }
}
