//! Reading YAML/JSON files and directories into documents that remember where they came from.
//! Files are read document by document, so their size is bounded per document, not per file;
//! a document that cannot be read is an issue naming file, document and line, and the others
//! are still read.

use anyhow::{Context, Result};
use kybern_engine::yaml::{self, DocumentSplitter, Limits, RawDocument, YamlError};
use serde_json::Value;
use std::fmt;
use std::io::Read;
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
/// in name order. A path that does not exist is an error.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("{} does not exist", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
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

/// The paths among `paths` that do not exist, as issues.
pub fn missing_paths(paths: &[PathBuf]) -> Vec<Issue> {
    paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| Issue {
            file: p.clone(),
            index: None,
            message: "does not exist".into(),
        })
        .collect()
}

/// The issue for a document that cannot be read: file, document and line.
fn yaml_issue(file: &Path, raw: &RawDocument, err: YamlError) -> Issue {
    let (index, message) = match err {
        YamlError::TooLarge { size, limit } => (
            raw.index,
            format!(
                "line {}: the document is {size} bytes, over the limit of {limit} bytes per document",
                raw.first_line
            ),
        ),
        YamlError::Syntax {
            document,
            line,
            column,
            message,
        } => (document, format!("line {line} column {column}: {message}")),
        YamlError::TooDeep {
            document,
            line,
            column,
            path,
            limit,
        } => (
            document,
            format!("line {line} column {column}: nesting deeper than {limit} levels at {path}"),
        ),
        YamlError::AliasLimit {
            document,
            line,
            column,
            limit,
        } => (
            document,
            format!("line {line} column {column}: aliases expand to more than {limit} nodes"),
        ),
        YamlError::Invalid {
            document,
            line,
            column,
            path,
            message,
        } => (
            document,
            format!("line {line} column {column}: {message} at {path}"),
        ),
    };
    Issue {
        file: file.to_path_buf(),
        index: Some(index),
        message,
    }
}

/// Reads a file as a stream of raw documents, handing each to `each` as soon as it is cut, so
/// that memory is bounded by the largest document, not by the file. `Err` when the file cannot be
/// opened or read; the documents handed over before that stay valid.
pub fn stream_raw_documents(
    file: &Path,
    limits: &Limits,
    mut each: impl FnMut(RawDocument),
) -> Result<(), Issue> {
    let io_issue = |e: std::io::Error| Issue {
        file: file.to_path_buf(),
        index: None,
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".into()
        } else {
            format!("cannot read: {e}")
        },
    };
    let mut f = std::fs::File::open(file).map_err(io_issue)?;
    let mut splitter = DocumentSplitter::new(limits);
    // Lines are cut out of large blocks. A line may be as long as a document: the buffer grows up
    // to that, and past it the rest of the line is counted, not kept. A small file gets a
    // buffer its size (policy directories hold many small files; zeroing 1 MiB for each showed).
    let size = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let first = usize::try_from(size)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .clamp(4096, 1 << 20);
    let mut buf = vec![0u8; first];
    let mut filled = 0usize;
    // An over-long line being dropped: its first bytes (for the splitter) and its length so far.
    let mut skipping: Option<(Vec<u8>, usize)> = None;
    let mut emit =
        |splitter: &mut DocumentSplitter, skipping: &mut Option<(Vec<u8>, usize)>, line: &[u8]| {
            let doc = match skipping.take() {
                Some((prefix, dropped)) => {
                    splitter.push_oversized_line(&prefix, dropped.saturating_add(line.len()))
                }
                None => splitter.push_line(line),
            };
            if let Some(doc) = doc {
                each(doc);
            }
        };
    loop {
        if filled == buf.len() {
            if buf.len() <= limits.max_bytes {
                let grown = buf.len().saturating_mul(2);
                buf.resize(grown.min(limits.max_bytes.saturating_add(1)), 0);
            } else {
                let kept = buf.get(..64).unwrap_or_default().to_vec();
                let dropped = skipping.get_or_insert((kept, 0));
                dropped.1 = dropped.1.saturating_add(filled);
                filled = 0;
            }
        }
        let n = f
            .read(buf.get_mut(filled..).unwrap_or_default())
            .map_err(io_issue)?;
        let scanned = filled;
        filled += n;
        let data = buf.get(..filled).unwrap_or_default();
        let mut start = 0usize;
        for nl in memchr::memchr_iter(b'\n', data.get(scanned..).unwrap_or_default()) {
            let end = scanned + nl + 1;
            emit(
                &mut splitter,
                &mut skipping,
                data.get(start..end).unwrap_or_default(),
            );
            start = end;
        }
        if n == 0 {
            let rest = data.get(start..).unwrap_or_default();
            if !rest.is_empty() || skipping.is_some() {
                emit(&mut splitter, &mut skipping, rest);
            }
            break;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
    if let Some(doc) = splitter.finish() {
        each(doc);
    }
    Ok(())
}

/// Parses one raw document of `file`: its value (none for an empty document) or the issue naming
/// file, document and line.
pub fn parse_raw(file: &Path, raw: &RawDocument, limits: &Limits) -> Result<Vec<Document>, Issue> {
    let (docs, err) = yaml::parse_raw_document(raw, limits);
    if let Some(e) = err {
        return Err(yaml_issue(file, raw, e));
    }
    Ok(docs
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(index, value)| Document {
            file: file.to_path_buf(),
            index,
            value,
        })
        .collect())
}

/// Reads every document of a file. A document that cannot be read is reported and the others
/// are still read.
pub fn read_documents(file: &Path) -> (Vec<Document>, Vec<Issue>) {
    let limits = Limits::default();
    let mut docs = Vec::new();
    let mut issues = Vec::new();
    let streamed =
        stream_raw_documents(file, &limits, |raw| match parse_raw(file, &raw, &limits) {
            Ok(d) => docs.extend(d),
            Err(i) => issues.push(i),
        });
    if let Err(i) = streamed {
        issues.push(i);
    }
    (docs, issues)
}

/// Reads all documents under the paths (files or directories).
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Document>, Vec<Issue>) {
    let mut docs = Vec::new();
    let mut issues = Vec::new();
    for p in paths {
        if !p.exists() {
            issues.extend(missing_paths(std::slice::from_ref(p)));
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &[u8], limits: &Limits) -> Vec<RawDocument> {
        let path = std::env::temp_dir().join(format!(
            "kybern-files-{}-{}.yaml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).unwrap();
        let mut docs = Vec::new();
        stream_raw_documents(&path, limits, |d| docs.push(d)).unwrap();
        let _ = std::fs::remove_file(&path);
        docs
    }

    #[test]
    fn documents_are_cut_across_read_blocks_and_without_a_final_line_break() {
        // Over 1 MiB, so lines straddle the reader's blocks.
        let mut text = String::new();
        for i in 0..40_000 {
            text.push_str(&format!("---\nkind: Pod\nmetadata:\n  name: p{i}\n"));
        }
        text.push_str("---\r\nkind: Last");
        let docs = stream(text.as_bytes(), &Limits::default());
        assert_eq!(docs.len(), 40_001);
        let last = docs.last().unwrap();
        assert_eq!(last.index, 40_000);
        assert_eq!(last.text, b"---\r\nkind: Last");
        let limits = Limits::default();
        let parsed = parse_raw(Path::new("x"), docs.get(12_345).unwrap(), &limits).unwrap();
        assert_eq!(parsed[0].value["metadata"]["name"], "p12345");
    }

    #[test]
    fn an_over_long_line_is_counted_not_kept() {
        let limits = Limits {
            max_bytes: 1000,
            ..Limits::default()
        };
        let long = "x".repeat(3 << 20);
        let text = format!("a: 1\n---\nb: {long}\nc: 2\n---\nd: 4");
        let docs = stream(text.as_bytes(), &limits);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].too_large, Some(4 + 3 + long.len() + 1 + 5));
        assert!(docs[1].text.is_empty());
        let err = parse_raw(Path::new("f.yaml"), &docs[1], &limits).unwrap_err();
        assert_eq!(err.index, Some(1));
        assert!(
            err.to_string()
                .contains("f.yaml (document 2): line 2: the document is"),
            "{err}"
        );
        let last = parse_raw(Path::new("f.yaml"), &docs[2], &limits).unwrap();
        assert_eq!(last[0].value, serde_json::json!({"d": 4}));
    }
}
