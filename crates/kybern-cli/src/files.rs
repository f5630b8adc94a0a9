//! Reading YAML/JSON files and directories into documents that remember where they came from.

use anyhow::{Context, Result};
use kybern_engine::yaml::{self, Limits};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// One document of one file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    /// 0-based index of the document in its file.
    pub index: usize,
    pub value: Value,
}

/// A problem with one file or document, reported without stopping the others.
#[derive(Debug, Clone)]
pub struct Issue {
    pub file: PathBuf,
    pub index: Option<usize>,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(
                f,
                "{} (document {}): {}",
                self.file.display(),
                i + 1,
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files under a path: the file itself, or every .yaml/.yml/.json below a directory,
/// in name order.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(manifest_files(&p)?);
        } else if is_manifest(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Reads every document of a file. Documents before a syntax error are kept; the error is reported.
pub fn read_documents(file: &Path) -> (Vec<Document>, Vec<Issue>) {
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            return (
                vec![],
                vec![Issue {
                    file: file.to_path_buf(),
                    index: None,
                    message: format!("cannot read: {e}"),
                }],
            );
        }
    };
    let (docs, err) = yaml::parse_documents(&text, &Limits::default());
    let docs = docs
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(index, value)| Document {
            file: file.to_path_buf(),
            index,
            value,
        })
        .collect();
    let issues = err
        .map(|e| {
            vec![Issue {
                file: file.to_path_buf(),
                index: None,
                message: e.to_string(),
            }]
        })
        .unwrap_or_default();
    (docs, issues)
}

/// Reads all documents under the paths (files or directories).
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Document>, Vec<Issue>) {
    let mut docs = Vec::new();
    let mut issues = Vec::new();
    for p in paths {
        match manifest_files(p) {
            Ok(files) => {
                for f in files {
                    let (d, i) = read_documents(&f);
                    docs.extend(d);
                    issues.extend(i);
                }
            }
            Err(e) => issues.push(Issue {
                file: p.clone(),
                index: None,
                message: format!("{e:#}"),
            }),
        }
    }
    (docs, issues)
}

/// Expands `kind: List` documents (and `*List` kinds) into their items.
pub fn expand_lists(docs: Vec<Document>) -> Vec<Document> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let is_list = d
            .value
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && d.value.get("items").is_some_and(Value::is_array);
        if is_list {
            if let Some(items) = d.value.get("items").and_then(Value::as_array) {
                for item in items {
                    out.push(Document {
                        file: d.file.clone(),
                        index: d.index,
                        value: item.clone(),
                    });
                }
            }
        } else {
            out.push(d);
        }
    }
    out
}
