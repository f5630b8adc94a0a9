//! go-yaml's leniency on the continuation lines of flow nodes.
//!
//! go-yaml (a port of libyaml, what Kubernetes and Kyverno read manifests with) checks no
//! indentation on the continuation lines of a quoted scalar or of a flow collection:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     note: "first line
//! second line"
//!   labels: {app: web,
//! tier: front}
//! ```
//!
//! reads as `note: "first line second line"` and `labels: {app: web, tier: front}`, where the
//! YAML specification, and `saphyr-parser`, want those lines indented more than the enclosing
//! block. The leading white space of such a line is never part of the value (it is folded away
//! in scalars and separates tokens in collections), so [`relax`] indents those lines past the
//! column where their node starts and the document reads as go-yaml reads it. A line that
//! starts with a document marker (`---`, `...`) is left alone: go-yaml refuses it there too.

/// Where a line starts, for the lines that continue a node begun on an earlier line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Block structure: each line starts tokens of its own.
    Block,
    /// Inside a quoted scalar begun at `column`.
    Quoted { quote: u8, column: usize },
    /// Inside a flow collection begun at `column`; `quote` is set within a quoted scalar.
    Flow {
        depth: usize,
        column: usize,
        quote: Option<u8>,
        /// The next non-blank character starts a token (a quote there opens a scalar).
        token_start: bool,
    },
    /// Lines indented more than `parent` belong to a block scalar or a multi-line plain scalar.
    Continued { parent: usize },
}

/// Deepest flow nesting followed; deeper input is left to the parser to judge.
const MAX_FLOW_DEPTH: usize = 1024;

/// The document with the continuation lines of its flow nodes indented past their node's
/// start column; `None` when no line needed it.
pub(super) fn relax(input: &str) -> Option<String> {
    let mut out = String::with_capacity(input.len() + 64);
    let mut mode = Mode::Block;
    let mut changed = false;
    for line in input.split_inclusive('\n') {
        let (content, newline) = match line.strip_suffix('\n') {
            Some(c) => (c, "\n"),
            None => (line, ""),
        };
        let (content, cr) = match content.strip_suffix('\r') {
            Some(c) => (c, "\r"),
            None => (content, ""),
        };
        let body = content.trim_start_matches([' ', '\t']);
        let lead = content.len() - body.len();
        let spaces = content.bytes().take_while(|&b| b == b' ').count();
        mode = match mode {
            Mode::Quoted { column, .. } | Mode::Flow { column, .. } => {
                if body.is_empty() || is_document_marker(content) {
                    out.push_str(content);
                } else {
                    // Leading white space here only separates: any amount reads the same.
                    let want = (column + 1).max(if lead == spaces { lead } else { 0 });
                    if want != lead || lead != spaces {
                        changed = true;
                    }
                    out.extend(std::iter::repeat_n(' ', want));
                    out.push_str(body);
                }
                scan_rest(body.as_bytes(), mode)
            }
            Mode::Continued { parent } if body.is_empty() || spaces > parent => {
                out.push_str(content);
                mode
            }
            Mode::Block | Mode::Continued { .. } => {
                out.push_str(content);
                scan_block_line(content.as_bytes())
            }
        };
        out.push_str(cr);
        out.push_str(newline);
    }
    changed.then_some(out)
}

/// `---` or `...` at column 0, alone or followed by white space.
fn is_document_marker(line: &str) -> bool {
    (line.starts_with("---") || line.starts_with("..."))
        && line
            .as_bytes()
            .get(3)
            .is_none_or(|b| matches!(b, b' ' | b'\t'))
}

/// Continues a quoted scalar or flow collection over `bytes` (a continuation line without its
/// indentation), then whatever block content follows its end on the same line.
fn scan_rest(bytes: &[u8], mode: Mode) -> Mode {
    match mode {
        Mode::Quoted { quote, column } => match close_quote(bytes, 0, quote) {
            Some(end) => after_node(bytes, end, column),
            None => Mode::Quoted { quote, column },
        },
        Mode::Flow {
            depth,
            column,
            quote,
            token_start,
        } => scan_flow(bytes, 0, depth, column, quote, token_start),
        other => other,
    }
}

/// The index after the quote that closes a scalar of `quote`, scanning from `from`; `None`
/// when the line ends inside the scalar.
fn close_quote(bytes: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        if quote == b'"' && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Scans flow content from `i` until the collection closes (then block content resumes) or
/// the line ends.
fn scan_flow(
    bytes: &[u8],
    mut i: usize,
    mut depth: usize,
    column: usize,
    mut quote: Option<u8>,
    mut token_start: bool,
) -> Mode {
    while i < bytes.len() {
        if let Some(q) = quote {
            match close_quote(bytes, i, q) {
                Some(end) => {
                    quote = None;
                    token_start = false;
                    i = end;
                    continue;
                }
                None => break,
            }
        }
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b' ' | b'\t' => {}
            b'#' if i == 0 || matches!(bytes.get(i - 1), Some(b' ' | b'\t')) => break,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Mode::Block;
                }
                token_start = true;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return after_node(bytes, i + 1, column);
                }
                token_start = false;
            }
            b',' | b':' | b'?' => token_start = true,
            b'"' | b'\'' if token_start => {
                quote = Some(b);
                i += 1;
                continue;
            }
            _ => token_start = false,
        }
        i += 1;
    }
    Mode::Flow {
        depth,
        column,
        quote,
        token_start,
    }
}

/// After a node begun at `column` that ended at `i` on its line: a `:` makes it a key and a
/// value may follow.
fn after_node(bytes: &[u8], i: usize, column: usize) -> Mode {
    let rest = skip_blanks(bytes, i);
    if bytes.get(rest) == Some(&b':') {
        return scan_tokens(bytes, rest + 1, Some(column));
    }
    Mode::Block
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// A line in block context: its indentation, then its tokens.
fn scan_block_line(bytes: &[u8]) -> Mode {
    if bytes.first() == Some(&b'%') {
        return Mode::Block;
    }
    let start = if bytes.starts_with(b"---") || bytes.starts_with(b"...") {
        match bytes.get(3) {
            None => return Mode::Block,
            Some(b' ' | b'\t') => 3,
            Some(_) => 0,
        }
    } else {
        0
    };
    let indent = skip_blanks(bytes, start);
    scan_tokens(bytes, indent, None)
}

/// Reads block tokens from `i`; `parent` is the column of the key or entry whose value comes
/// next (for the extent of a block or multi-line plain scalar).
fn scan_tokens(bytes: &[u8], mut i: usize, mut parent: Option<usize>) -> Mode {
    loop {
        i = skip_blanks(bytes, i);
        let Some(&b) = bytes.get(i) else {
            return Mode::Block;
        };
        let next_blank = matches!(bytes.get(i + 1), None | Some(b' ' | b'\t'));
        match b {
            b'#' => return Mode::Block,
            b'-' | b'?' | b':' if next_blank => {
                if b == b'-' {
                    parent = Some(i);
                }
                i += 1;
            }
            b'&' | b'!' => {
                while bytes.get(i).is_some_and(|c| !matches!(c, b' ' | b'\t')) {
                    i += 1;
                }
            }
            b'"' | b'\'' => match close_quote(bytes, i + 1, b) {
                Some(end) => return after_node(bytes, end, i),
                None => {
                    return Mode::Quoted {
                        quote: b,
                        column: i,
                    };
                }
            },
            b'[' | b'{' => return scan_flow(bytes, i, 0, i, None, true),
            b'|' | b'>' => {
                return Mode::Continued {
                    parent: parent.unwrap_or(0),
                };
            }
            _ => {
                // A plain scalar: a key when `: ` follows, else a value that may go on over
                // the more indented lines below.
                let key_col = i;
                while let Some(&c) = bytes.get(i) {
                    let blank_after = matches!(bytes.get(i + 1), None | Some(b' ' | b'\t'));
                    if c == b':' && blank_after {
                        break;
                    }
                    if c == b'#' && matches!(bytes.get(i.wrapping_sub(1)), Some(b' ' | b'\t')) {
                        return Mode::Block;
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    return Mode::Continued {
                        parent: parent.unwrap_or(key_col),
                    };
                }
                parent = Some(key_col);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_of_flow_nodes_move_past_their_start() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a:\n  b: \"x\ny\"\n", Some("a:\n  b: \"x\n      y\"\n")),
            ("a:\n  b: 'x\n\ty'\n", Some("a:\n  b: 'x\n      y'\n")),
            ("a:\n  b: [x,\ny]\n", Some("a:\n  b: [x,\n      y]\n")),
            ("- {a: 1,\nb: 2}\n", Some("- {a: 1,\n   b: 2}\n")),
            // Already indented enough, or no flow node: nothing to do.
            ("a:\n  b: \"x\n        y\"\n", None),
            ("a: b\nc: |\n  \"x\n  [y\n", None),
            ("a: it's\nb: [1, 2]\n", None),
            // A document marker inside stays where it is, for the parser to refuse.
            ("a: \"x\n---\ny\"\n", Some("a: \"x\n---\n    y\"\n")),
            // Quotes in a plain continuation or after an escape do not open or close.
            (
                "a: plain\n  it's\nb: \"x\\\"\ny\"\n",
                Some("a: plain\n  it's\nb: \"x\\\"\n    y\"\n"),
            ),
            ("a: 'it''s\nz'\n", Some("a: 'it''s\n    z'\n")),
        ];
        for (input, want) in cases {
            assert_eq!(relax(input).as_deref(), *want, "{input:?}");
        }
    }

    /// Structures read as go-yaml (libyaml) reads them; each input is refused by the YAML
    /// specification's indentation rules.
    #[test]
    fn documents_read_as_go_yaml_reads_them() {
        use serde_json::json;
        let cases = [
            ("a:\n  b: \"x\ny\"\n", json!({"a": {"b": "x y"}})),
            (
                "a:\n  b: 'x\n  y'\nc: 1\n",
                json!({"a": {"b": "x y"}, "c": 1}),
            ),
            ("b: \"x\ny\"\n", json!({"b": "x y"})),
            ("a:\n  b: \"x\\\n\ny\"\n", json!({"a": {"b": "x\ny"}})),
            ("a:\n  b: \"x\n\tz\"\n", json!({"a": {"b": "x z"}})),
            ("a:\n  b: [x,\nz]\n", json!({"a": {"b": ["x", "z"]}})),
            (
                "a:\n  b: {x: \"1\n2\", z: [3,\n4]}\n",
                json!({"a": {"b": {"x": "1 2", "z": [3, 4]}}}),
            ),
            ("- a: \"x\nw\"\n  b: 2\n", json!([{"a": "x w", "b": 2}])),
            ("a:\n  b: [x y\nz]\n", json!({"a": {"b": ["x y z"]}})),
        ];
        for (input, want) in cases {
            assert_eq!(crate::yaml::parse_all(input), Ok(vec![want]), "{input:?}");
        }
        // What go-yaml refuses stays refused: a document marker inside a quoted scalar, a
        // plain scalar continued at a lower indentation.
        for input in [
            "a:\n  b: \"x\n---\ny\"\n",
            "a:\n  b: \"x\n...\ny\"\n",
            "a:\n  b: x\n y\n",
        ] {
            assert!(crate::yaml::parse_all(input).is_err(), "{input:?}");
        }
    }
}
