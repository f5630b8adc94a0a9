//! Cutting a YAML stream into documents without parsing it, so that a stream of any size can be
//! read, parsed and dropped one document at a time with a bound per document.
//!
//! A document ends where YAML says it must: at a line that starts, in column 0, with `---` or
//! `...` followed by a space, a tab or the end of the line. No scalar can hold such a line (the
//! YAML scanner treats it as a document marker even inside quoted and block scalars), so the cut
//! needs no knowledge of the document's structure. Comments and directives before a `---` belong
//! to the document it starts. The differential tests below and in `tests/yaml_stream.rs` check
//! that parsing the pieces gives what parsing the whole stream gives.

use serde_json::Value;

use super::{Limits, YamlError};

/// The text of one document of a stream, with its place in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDocument {
    /// 0-based index of the document in the stream: the index [`super::parse_documents`] gives it.
    pub index: usize,
    /// 1-based line of the document's first line (its `---` marker, or a comment before it).
    pub first_line: usize,
    /// The document's bytes, markers included. Empty when `too_large` is set.
    pub text: Vec<u8>,
    /// The document's size in bytes when it is over [`Limits::max_bytes`]; its text was not kept.
    pub too_large: Option<usize>,
}

/// Cuts a stream fed line by line into [`RawDocument`]s. Memory is bounded by
/// [`Limits::max_bytes`] per document: the text of a longer document is dropped as it comes and
/// the document is reported as too large, and the documents after it are read as usual.
///
/// ```
/// use kybern_engine::yaml::{DocumentSplitter, Limits, parse_raw_document};
/// let mut splitter = DocumentSplitter::new(&Limits::default());
/// let mut docs = Vec::new();
/// for line in "a: 1\n---\nb: [2\n---\nc: 3\n".split_inclusive('\n') {
///     docs.extend(splitter.push_line(line.as_bytes()));
/// }
/// docs.extend(splitter.finish());
/// let parsed: Vec<_> = docs.iter().map(|d| parse_raw_document(d, &Limits::default())).collect();
/// assert_eq!(parsed[0].0, vec![(0, serde_json::json!({"a": 1}))]);
/// assert!(parsed[1].1.is_some()); // the broken document is an error ...
/// assert_eq!(parsed[2].0, vec![(2, serde_json::json!({"c": 3}))]); // ... and the next one reads
/// ```
#[derive(Debug)]
pub struct DocumentSplitter {
    max_bytes: usize,
    next_index: usize,
    /// Lines seen so far.
    lines: usize,
    text: Vec<u8>,
    first_line: usize,
    size: usize,
    /// The current piece started with a `---` marker: it is a document even when empty.
    explicit: bool,
    /// The current piece has a line other than blanks, comments and directives.
    content: bool,
}

enum Marker {
    Start,
    End,
}

fn marker(line: &[u8]) -> Option<Marker> {
    let which = if line.starts_with(b"---") {
        Marker::Start
    } else if line.starts_with(b"...") {
        Marker::End
    } else {
        return None;
    };
    matches!(line.get(3), None | Some(b' ' | b'\t' | b'\n' | b'\r')).then_some(which)
}

/// Blank lines and comments carry nothing; everything else does.
fn is_blank_or_comment(line: &[u8]) -> bool {
    matches!(
        line.iter().find(|b| !matches!(b, b' ' | b'\t')),
        None | Some(b'\n' | b'\r' | b'#')
    )
}

impl DocumentSplitter {
    /// A splitter that keeps at most `limits.max_bytes` of text per document.
    pub fn new(limits: &Limits) -> Self {
        DocumentSplitter {
            max_bytes: limits.max_bytes,
            next_index: 0,
            lines: 0,
            text: Vec::new(),
            first_line: 1,
            size: 0,
            explicit: false,
            content: false,
        }
    }

    /// Feeds one line, with its line break if it has one. Returns the document this line
    /// finished, if any.
    pub fn push_line(&mut self, line: &[u8]) -> Option<RawDocument> {
        self.accept(line, line.len())
    }

    /// Feeds a line too long to hold: `prefix` is its beginning, `len` its whole length. The
    /// document holding it is reported as too large.
    pub fn push_oversized_line(&mut self, prefix: &[u8], len: usize) -> Option<RawDocument> {
        self.accept(prefix, len.max(self.max_bytes.saturating_add(1)))
    }

    /// Ends the stream, returning its last document if it has one.
    pub fn finish(mut self) -> Option<RawDocument> {
        self.take_document()
    }

    fn accept(&mut self, line: &[u8], len: usize) -> Option<RawDocument> {
        self.lines += 1;
        let line = if self.lines == 1 {
            line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line)
        } else {
            line
        };
        match marker(line) {
            Some(Marker::Start) => {
                // Comments and directives before `---` belong to the document it starts.
                let done = self.take_document();
                self.append(line, len);
                self.explicit = true;
                done
            }
            Some(Marker::End) => {
                self.append(line, len);
                if self.is_document() {
                    self.take_document()
                } else {
                    // A `...` that closes nothing: whatever came before it was blank.
                    self.reset();
                    None
                }
            }
            None => {
                if !self.content {
                    let directive = line.first() == Some(&b'%') && !self.is_document();
                    if !directive && !is_blank_or_comment(line) {
                        self.content = true;
                    }
                }
                self.append(line, len);
                None
            }
        }
    }

    fn is_document(&self) -> bool {
        self.explicit || self.content
    }

    fn append(&mut self, line: &[u8], len: usize) {
        if self.size == 0 && self.text.is_empty() {
            self.first_line = self.lines;
        }
        self.size = self.size.saturating_add(len);
        if self.size > self.max_bytes {
            // Over the bound: drop the text now rather than hold a document we will refuse.
            self.text = Vec::new();
        } else {
            self.text.extend_from_slice(line);
        }
    }

    fn reset(&mut self) {
        self.text.clear();
        self.size = 0;
        self.explicit = false;
        self.content = false;
    }

    fn take_document(&mut self) -> Option<RawDocument> {
        if !self.is_document() {
            // Only comments, blanks and directives so far: they stay for the next document.
            return None;
        }
        let too_large = (self.size > self.max_bytes).then_some(self.size);
        // Documents of a stream tend to be alike: the next one starts with room for this one.
        let room = self.text.len().min(self.max_bytes);
        let doc = RawDocument {
            index: self.next_index,
            first_line: self.first_line,
            text: std::mem::replace(&mut self.text, Vec::with_capacity(room)),
            too_large,
        };
        self.next_index += 1;
        self.reset();
        Some(doc)
    }
}

/// Parses one document cut by [`DocumentSplitter`], with the same rules and result shape as
/// [`super::parse_documents`]: the document with its index (none when its content is null), or
/// the error, whose document index and line are those of the whole stream. The limits apply to
/// this document alone (the alias budget included). Plain block documents are read by a fast
/// reader that agrees with the full parser wherever it answers (see `fast.rs`).
pub fn parse_raw_document(
    raw: &RawDocument,
    limits: &Limits,
) -> (Vec<(usize, Value)>, Option<YamlError>) {
    if let Some(size) = raw.too_large {
        let err = YamlError::TooLarge {
            size,
            limit: limits.max_bytes,
        };
        return (Vec::new(), Some(err));
    }
    // The strict check has a fast path for ASCII; the lossy one walks byte by byte.
    let text = match std::str::from_utf8(&raw.text) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(&raw.text),
    };
    // Most manifests are plain block YAML, which the fast reader takes; the rest (and every
    // error) goes through the full parser.
    if let Some(value) = super::fast::parse(&text, limits.max_depth) {
        let docs = if value.is_null() {
            Vec::new()
        } else {
            vec![(raw.index, value)]
        };
        return (docs, None);
    }
    let (docs, err) = super::load::load(&text, limits);
    let docs = docs.into_iter().map(|(i, v)| (raw.index + i, v)).collect();
    (docs, err.map(|e| relocate(e, raw)))
}

/// Moves an error found in a piece to its place in the whole stream.
fn relocate(err: YamlError, raw: &RawDocument) -> YamlError {
    let shift = raw.first_line.saturating_sub(1);
    match err {
        YamlError::TooLarge { .. } => err,
        YamlError::Syntax {
            document,
            line,
            column,
            message,
        } => YamlError::Syntax {
            document: raw.index + document,
            line: line + shift,
            column,
            message,
        },
        YamlError::TooDeep {
            document,
            line,
            column,
            path,
            limit,
        } => YamlError::TooDeep {
            document: raw.index + document,
            line: line + shift,
            column,
            path,
            limit,
        },
        YamlError::AliasLimit {
            document,
            line,
            column,
            limit,
        } => YamlError::AliasLimit {
            document: raw.index + document,
            line: line + shift,
            column,
            limit,
        },
        YamlError::Invalid {
            document,
            line,
            column,
            path,
            message,
        } => YamlError::Invalid {
            document: raw.index + document,
            line: line + shift,
            column,
            path,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;

    fn split(input: &str, limits: &Limits) -> Vec<RawDocument> {
        let mut splitter = DocumentSplitter::new(limits);
        let mut out = Vec::new();
        for line in input.split_inclusive('\n') {
            out.extend(splitter.push_line(line.as_bytes()));
        }
        out.extend(splitter.finish());
        out
    }

    /// Documents and the first error, as reading the pieces one by one gives them.
    fn piecewise(input: &str) -> (Vec<(usize, Value)>, Option<YamlError>) {
        let limits = Limits::default();
        let mut docs = Vec::new();
        for raw in split(input, &limits) {
            let (d, e) = parse_raw_document(&raw, &limits);
            docs.extend(d);
            if let Some(e) = e {
                return (docs, Some(e));
            }
        }
        (docs, None)
    }

    /// Inputs on which the pieces must give exactly what the whole stream gives.
    const SAME: &[&str] = &[
        "",
        "\n",
        "# only a comment\n",
        "---\n",
        "---\n---\n",
        "a: 1\n",
        "a: 1",
        "a: 1\n---\nb: 2\n",
        "---\n# only a comment\n---\na: 1\n---\n---\n- x\n--- ~\n...\n---\nb: 2\n",
        "# head\n---\na: 1\n",
        "# head\n\n# more\n---\na: 1\n# tail\n",
        "a: 1\n...\n",
        "a: 1\n...\n---\nb: 2\n",
        "a: 1\n...\nb: 2\n",
        "a: 1\n...\n# c\n...\n---\nb: 2\n",
        "...\n",
        "...\na: 1\n",
        "%YAML 1.1\n---\na: 1\n",
        "a: 1\n...\n%YAML 1.1\n---\nb: 2\n",
        "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
        "--- |\n  text\n  ---\n  more\n---\nb: 2\n",
        "a: |\n  line\n  --- not a marker\n  ...also not\nb: 2\n",
        "a: |\n  ---\n  x\n",
        "---word: 1\n...word: 2\n",
        "a: ---\nb: ...\n",
        "--- !!str\n--- &x [1]\n--- {a: 1}\n",
        "---   \na: 1\n---\t\nb: 2\n",
        "--- # comment\na: 1\n",
        "--- >\n folded\n text\n",
        "a: 1\r\n---\r\nb: 2\r\n",
        "- a\n- b\n---\n- c\n",
        "'x'\n---\n\"y\"\n",
        "\u{feff}a: 1\n---\nb: 2\n",
        "a: &x 1\nb: *x\n---\nc: &x 2\nd: *x\n",
        "{\"a\": 1}\n---\n{\"b\": [1,\n  2]}\n",
        "a: \"multi\n  line\"\n---\nb: 'x\n\n  y'\n",
        "a: plain\n  continued\n---\nb: 2\n",
        "---\n...\n---\n...\n",
        "a: 1\n---\n",
        "--- ~\n--- null\n---\nkind: Pod\n",
    ];

    #[test]
    fn pieces_parse_like_the_whole_stream() {
        let limits = Limits::default();
        for input in SAME {
            let whole = parse_documents(input, &limits);
            assert_eq!(piecewise(input), whole, "{input:?}");
        }
    }

    /// Broken inputs: both ways report an error at the same document, and keep what came before.
    #[test]
    fn errors_name_the_same_document_as_the_whole_stream() {
        let limits = Limits::default();
        for input in [
            "a: 1\n---\nb: [1, 2\n",
            "a: 1\n---\nc: [1, 2\nd: 3\n",
            "a: b: c\n",
            "a: 1\n---\nb: .inf\n",
            "x: 1\n---\n  bad: indent\n wrong: 1\n",
            "a: \"unterminated\n---\nb: 2\n",
            "a: [1,\n---\n]\n",
            "a: 1\n---\n~: 1\n",
            "a: 1\n---\nb: *nope\n",
        ] {
            let (whole_docs, whole_err) = parse_documents(input, &limits);
            let (docs, err) = piecewise(input);
            let (whole_err, err) = (whole_err.expect(input), err.expect(input));
            assert_eq!(docs, whole_docs, "{input:?}");
            let doc = |e: &YamlError| match e {
                YamlError::Syntax { document, .. }
                | YamlError::Invalid { document, .. }
                | YamlError::TooDeep { document, .. }
                | YamlError::AliasLimit { document, .. } => Some(*document),
                YamlError::TooLarge { .. } => None,
            };
            assert_eq!(doc(&err), doc(&whole_err), "{input:?}: {err} / {whole_err}");
        }
    }

    #[test]
    fn a_broken_document_does_not_hide_the_next_ones() {
        let limits = Limits::default();
        let input = "a: 1\n---\nb: [1, 2\nc: 3\n---\nd: 4\n";
        let raws = split(input, &limits);
        assert_eq!(raws.len(), 3);
        let (_, err) = parse_raw_document(&raws[1], &limits);
        match err {
            Some(YamlError::Syntax { document, line, .. }) => {
                assert_eq!(document, 1);
                assert!((3..=5).contains(&line), "{line}");
            }
            other => panic!("{other:?}"),
        }
        let (docs, err) = parse_raw_document(&raws[2], &limits);
        assert!(err.is_none());
        assert_eq!(docs, vec![(2, serde_json::json!({"d": 4}))]);
    }

    #[test]
    fn errors_give_lines_of_the_whole_stream() {
        let limits = Limits::default();
        let input = "a: 1\n---\nb: 2\n---\n# c\nd:\n  e: .nan\n";
        let raws = split(input, &limits);
        let (_, err) = parse_raw_document(&raws[2], &limits);
        match err {
            Some(YamlError::Invalid {
                document,
                line,
                path,
                ..
            }) => {
                assert_eq!((document, line), (2, 7));
                assert!(path.starts_with('d'), "{path}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_size_bound_is_per_document_and_drops_the_text() {
        let limits = Limits {
            max_bytes: 20,
            ..Limits::default()
        };
        let big = format!("a: {}\n", "x".repeat(40));
        let input = format!("s: 1\n---\n{big}---\nt: 2\n");
        let raws = split(&input, &limits);
        assert_eq!(raws.len(), 3);
        assert_eq!(raws[1].too_large, Some(4 + big.len()));
        assert!(raws[1].text.is_empty());
        let (docs, err) = parse_raw_document(&raws[1], &limits);
        assert!(docs.is_empty());
        assert!(matches!(err, Some(YamlError::TooLarge { limit: 20, .. })));
        assert_eq!(
            parse_raw_document(&raws[2], &limits).0,
            vec![(2, serde_json::json!({"t": 2}))]
        );
    }

    #[test]
    fn an_oversized_line_makes_its_document_too_large() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let mut splitter = DocumentSplitter::new(&limits);
        assert!(splitter.push_line(b"a: 1\n").is_none());
        let first = splitter.push_line(b"---\n");
        assert_eq!(first.map(|d| d.index), Some(0));
        assert!(
            splitter
                .push_oversized_line(b"b: xxxxx", 1_000_000)
                .is_none()
        );
        let second = splitter.push_line(b"---\n").expect("document 1");
        assert_eq!(second.too_large, Some(1_000_004));
        let third = splitter.finish().expect("document 2");
        assert_eq!((third.index, third.first_line), (2, 4));
    }
}
