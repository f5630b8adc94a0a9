//! Differential check of the document splitter on real files: every YAML and JSON file of the
//! conformance corpus (`$KYBERN_CONFORMANCE_DIR`, default `../shared/conformance` beside the
//! repository) must read the same cut into documents as read whole.

use kybern_engine::yaml::{DocumentSplitter, Limits, parse_documents, parse_raw_document};
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("KYBERN_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    }
}

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            manifests(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
}

#[test]
fn every_corpus_file_reads_the_same_piecewise_as_whole() {
    let dir = corpus_dir();
    let mut files = Vec::new();
    manifests(&dir, &mut files);
    // More files to check, e.g. a generated workload: KYBERN_YAML_DIFF_FILES=a.yaml:b.yaml
    if let Some(extra) = std::env::var_os("KYBERN_YAML_DIFF_FILES") {
        files.extend(std::env::split_paths(&extra));
    }
    if files.is_empty() {
        eprintln!(
            "skipped: no conformance corpus at {} (set KYBERN_CONFORMANCE_DIR)",
            dir.display()
        );
        return;
    }
    let mut checked = 0;
    for file in &files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        same_both_ways(&text, &file.display().to_string());
        if text.len() < 20_000 {
            // Damaged copies: the readers must also agree on what is broken.
            for (n, variant) in damaged(&text).iter().enumerate() {
                same_both_ways(variant, &format!("{} (damaged copy {n})", file.display()));
            }
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} files read");
    eprintln!("{checked} files read the same both ways");
}

/// Copies of `text` with indentation shifted, `: ` separators glued, and lines duplicated at
/// another indentation, every few lines.
fn damaged(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let edit = |every: usize, f: &dyn Fn(&str) -> String| -> String {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i % every == every - 1 {
                    f(l)
                } else {
                    (*l).to_string()
                }
            })
            .collect()
    };
    vec![
        edit(7, &|l| format!(" {l}")),
        edit(5, &|l| l.replacen(": ", ":", 1)),
        edit(11, &|l| format!("{l}{}", l.trim_start_matches(' '))),
        edit(3, &|l| l.trim_start_matches(' ').to_string()),
        edit(13, &|l| l.replacen(": ", ": - ", 1)),
        edit(9, &|l| l.replacen("'", "", 1)),
    ]
}

fn same_both_ways(text: &str, what: &str) {
    let limits = Limits::default();
    {
        let (whole, whole_err) = parse_documents(text, &limits);
        let mut splitter = DocumentSplitter::new(&limits);
        let mut raws = Vec::new();
        for line in text.split_inclusive('\n') {
            raws.extend(splitter.push_line(line.as_bytes()));
        }
        raws.extend(splitter.finish());
        let mut docs = Vec::new();
        let mut err = None;
        for raw in &raws {
            let (d, e) = parse_raw_document(raw, &limits);
            docs.extend(d);
            if e.is_some() {
                err = e;
                break;
            }
        }
        assert_eq!(docs, whole, "{what}\n{text}");
        assert_eq!(
            err.is_some(),
            whole_err.is_some(),
            "{what}: {err:?} / {whole_err:?}\n{text}"
        );
    }
}
