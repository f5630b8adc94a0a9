//! A fast reader for the block-style YAML that `helm template`, `kustomize build` and
//! `kubectl get -o yaml` write: block mappings and sequences (compact `- key: value` included),
//! single-line plain and quoted scalars, empty `{}` and `[]`, and comments.
//!
//! It only decides structure. Every scalar goes through the same resolution as the event path
//! (`resolve_scalar`, Go's key stringification), so the scalar rules live in one place. Anything
//! outside that subset (anchors, aliases, tags, block and multi-line scalars, escapes, non-empty
//! flow collections, complex keys, tabs, directives, unusual characters, errors of any kind)
//! makes it answer `None`, and the caller reads the document with the full parser, which also
//! reports the errors. Differential tests check that both readers agree wherever this one answers.

use saphyr_parser::ScalarStyle;
use serde_json::{Map, Value};

use super::load::{MapKey, NodeData, map_key, scalar_value};
use super::resolve::{plain_is_text, resolve_scalar};

/// One significant line: its indentation and the text after it (no line break).
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// Reads one document; `None` when it is outside the subset or not valid YAML.
pub(crate) fn parse(input: &str, max_depth: usize) -> Option<Value> {
    let lines = significant_lines(input)?;
    let first = lines.first()?;
    let mut reader = Reader {
        lines: &lines,
        pos: 0,
        max_depth,
    };
    let value = reader.node(first.indent, 0)?;
    // The root must be the whole document.
    (reader.pos == lines.len()).then_some(value)
}

/// Characters that the full parser may treat specially (line breaks of YAML 1.1, byte order
/// marks, non-printable characters): documents holding them take the full path.
fn plain_char(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

fn significant_lines(input: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::with_capacity(input.len() / 24);
    let mut started = false;
    let mut ended = false;
    let mut start = 0usize;
    let breaks = memchr::memchr_iter(b'\n', input.as_bytes()).chain(std::iter::once(input.len()));
    for end in breaks {
        let raw = input.get(start..end)?;
        start = end + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        // One pass over printable ASCII; anything else is checked character by character.
        if !raw.bytes().all(|b| (b' '..=b'~').contains(&b))
            && (raw.is_ascii() || !raw.chars().all(plain_char))
        {
            return None;
        }
        let text = raw.trim_start_matches(' ');
        let indent = raw.len() - text.len();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if ended {
            // Content after `...` is another document.
            return None;
        }
        if indent == 0 {
            if let Some(rest) = marker_rest(text, "---") {
                // A bare `---` (maybe with a comment) may open the document, nothing else.
                if started || !is_blank_or_comment(rest) {
                    return None;
                }
                continue;
            }
            if let Some(rest) = marker_rest(text, "...") {
                if !is_blank_or_comment(rest) {
                    return None;
                }
                ended = true;
                continue;
            }
            if text.starts_with('%') {
                return None;
            }
        }
        started = true;
        out.push(Line { indent, text });
    }
    Some(out)
}

fn marker_rest<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with(' ')).then_some(rest)
}

fn is_blank_or_comment(s: &str) -> bool {
    let s = s.trim_start_matches(' ');
    s.is_empty() || s.starts_with('#')
}

/// `- ` or a lone `-`: a block sequence entry.
fn is_entry(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// A mapping entry split into its key and the text after `:` (trimmed at the start).
struct Entry<'a> {
    key: String,
    rest: &'a str,
}

struct Reader<'l, 'a> {
    lines: &'l [Line<'a>],
    pos: usize,
    max_depth: usize,
}

impl<'a> Reader<'_, 'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.pos).copied()
    }

    /// The collection that starts at the current line, at `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let line = self.peek()?;
        if line.indent != indent {
            return None;
        }
        if is_entry(line.text) {
            self.sequence(indent, depth)
        } else {
            let entry = entry(line.text)?;
            self.pos += 1;
            self.mapping(indent, entry, depth)
        }
    }

    /// A block mapping at `indent` whose first entry, already split, is `first`.
    fn mapping(&mut self, indent: usize, first: Entry<'a>, depth: usize) -> Option<Value> {
        if depth >= self.max_depth {
            return None;
        }
        let mut map = Map::new();
        let mut next = Some(first);
        while let Some(Entry { key, rest }) = next.take() {
            let value = self.value_after_key(indent, rest, depth + 1)?;
            // Duplicate keys: the last one wins, as on the event path.
            map.insert(key, value);
            match self.peek() {
                Some(line) if line.indent == indent => {
                    if is_entry(line.text) {
                        return None;
                    }
                    next = Some(entry(line.text)?);
                    self.pos += 1;
                }
                Some(line) if line.indent > indent => return None,
                _ => {}
            }
        }
        Some(Value::Object(map))
    }

    /// A block sequence at `indent`, starting at the current line.
    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Value> {
        if depth >= self.max_depth {
            return None;
        }
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_entry(line.text) {
                break;
            }
            self.pos += 1;
            let after = line.text.get(1..)?;
            let rest = after.trim_start_matches(' ');
            let item = if is_blank_or_comment(rest) {
                self.nested(indent, depth + 1, false)?
            } else if is_entry(rest) {
                // `- - x`: compact nested sequences are left to the full parser.
                return None;
            } else if let Some(first) = entry(rest) {
                let column = indent + 1 + (after.len() - rest.len());
                self.mapping(column, first, depth + 1)?
            } else if plain_key_end(rest).is_some() {
                // It reads as a key that the fast path does not take (`<<`, a null key).
                return None;
            } else {
                let v = inline_value(rest)?;
                self.no_deeper_than(indent)?;
                v
            };
            items.push(item);
        }
        match self.peek() {
            Some(line) if line.indent > indent => None,
            _ => Some(Value::Array(items)),
        }
    }

    /// The value of a key of a mapping at `indent`: inline, nested below, or a sequence at the
    /// key's own indentation.
    fn value_after_key(&mut self, indent: usize, rest: &'a str, depth: usize) -> Option<Value> {
        if is_blank_or_comment(rest) {
            return self.nested(indent, depth, true);
        }
        let v = inline_value(rest)?;
        self.no_deeper_than(indent)?;
        Some(v)
    }

    /// What follows an empty value in a collection at `indent`: a more indented collection, a
    /// sequence at the same indentation when the parent is a mapping, or null.
    fn nested(&mut self, indent: usize, depth: usize, in_mapping: bool) -> Option<Value> {
        match self.peek() {
            Some(line) if line.indent > indent => self.node(line.indent, depth),
            Some(line) if in_mapping && line.indent == indent && is_entry(line.text) => {
                self.sequence(indent, depth)
            }
            _ => Some(Value::Null),
        }
    }

    /// After an inline value, a more indented line would continue it (a multi-line scalar) or be
    /// an error: both are left to the full parser.
    fn no_deeper_than(&self, indent: usize) -> Option<()> {
        match self.peek() {
            Some(line) if line.indent > indent => None,
            _ => Some(()),
        }
    }
}

/// Where a plain implicit key ends: the index of its `:`.
fn plain_key_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let first = *bytes.first()?;
    if b",[]{}#&*!|>'\"%@`".contains(&first) {
        return None;
    }
    if b"-?:".contains(&first) && matches!(bytes.get(1), None | Some(b' ')) {
        return None;
    }
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b':' if matches!(bytes.get(i + 1), None | Some(b' ')) => return Some(i),
            b'#' if i > 0 && bytes.get(i - 1) == Some(&b' ') => return None,
            _ => {}
        }
    }
    None
}

/// Splits `key: rest`. Plain and quoted single-line keys only; the key is stringified as Go does.
fn entry(text: &str) -> Option<Entry<'_>> {
    let (key_text, style, after) = if let Some(body) = text.strip_prefix('"') {
        let (inner, after) = double_quoted(body)?;
        (
            std::borrow::Cow::Borrowed(inner),
            ScalarStyle::DoubleQuoted,
            after,
        )
    } else if let Some(body) = text.strip_prefix('\'') {
        let (inner, after) = single_quoted(body)?;
        (inner, ScalarStyle::SingleQuoted, after)
    } else {
        let end = plain_key_end(text)?;
        let key = text.get(..end)?.trim_end_matches(' ');
        if key.is_empty() || key.len() > 1024 {
            return None;
        }
        (
            std::borrow::Cow::Borrowed(key),
            ScalarStyle::Plain,
            text.get(end..)?,
        )
    };
    let after = after.trim_start_matches(' ');
    let rest = after.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    if style == ScalarStyle::Plain && plain_is_text(&key_text) {
        return Some(Entry {
            key: key_text.into_owned(),
            rest: rest.trim_start_matches(' '),
        });
    }
    let scalar = resolve_scalar(&key_text, style, None).ok()?;
    let key = match map_key(NodeData::Scalar(scalar)).ok()? {
        MapKey::Str(k) => k,
        MapKey::Merge => return None,
    };
    Some(Entry {
        key,
        rest: rest.trim_start_matches(' '),
    })
}

/// A double-quoted scalar without escapes that closes on its line: its text and what follows.
fn double_quoted(body: &str) -> Option<(&str, &str)> {
    let end = body.find(['"', '\\'])?;
    if body.as_bytes().get(end) != Some(&b'"') {
        return None;
    }
    Some((body.get(..end)?, body.get(end + 1..)?))
}

/// A single-quoted scalar that closes on its line (`''` is a quote): its text and what follows.
fn single_quoted(body: &str) -> Option<(std::borrow::Cow<'_, str>, &str)> {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    loop {
        let at = i + body.get(i..)?.find('\'')?;
        if bytes.get(at + 1) == Some(&b'\'') {
            escaped = true;
            i = at + 2;
            continue;
        }
        let inner = body.get(..at)?;
        let text = if escaped {
            std::borrow::Cow::Owned(inner.replace("''", "'"))
        } else {
            std::borrow::Cow::Borrowed(inner)
        };
        return Some((text, body.get(at + 1..)?));
    }
}

/// A value written on the key's or the entry's line.
fn inline_value(text: &str) -> Option<Value> {
    let (scalar_text, style) = if let Some(body) = text.strip_prefix('"') {
        let (inner, after) = double_quoted(body)?;
        if !is_blank_or_comment_after_value(after) {
            return None;
        }
        (std::borrow::Cow::Borrowed(inner), ScalarStyle::DoubleQuoted)
    } else if let Some(body) = text.strip_prefix('\'') {
        let (inner, after) = single_quoted(body)?;
        if !is_blank_or_comment_after_value(after) {
            return None;
        }
        (inner, ScalarStyle::SingleQuoted)
    } else if let Some(after) = text.strip_prefix("{}") {
        return is_blank_or_comment_after_value(after).then(|| Value::Object(Map::new()));
    } else if let Some(after) = text.strip_prefix("[]") {
        return is_blank_or_comment_after_value(after).then(|| Value::Array(Vec::new()));
    } else {
        let plain = plain_value(text)?;
        if plain_is_text(plain) {
            return Some(Value::String(plain.to_string()));
        }
        (std::borrow::Cow::Borrowed(plain), ScalarStyle::Plain)
    };
    let scalar = resolve_scalar(&scalar_text, style, None).ok()?;
    scalar_value(scalar).ok()
}

/// After a quoted scalar or `{}`: nothing, or a comment after a space.
fn is_blank_or_comment_after_value(after: &str) -> bool {
    let trimmed = after.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < after.len())
}

/// A single-line plain scalar value: up to a comment, trailing spaces removed.
fn plain_value(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let first = *bytes.first()?;
    if b",[]{}#&*!|>'\"%@`".contains(&first) {
        return None;
    }
    if b"-?:".contains(&first) && matches!(bytes.get(1), None | Some(b' ')) {
        return None;
    }
    let mut end = bytes.len();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'#' if bytes.get(i.wrapping_sub(1)) == Some(&b' ') => {
                end = i;
                break;
            }
            // `a: b: c` is an error; `a: b:` too.
            b':' if matches!(bytes.get(i + 1), None | Some(b' ')) => return None,
            _ => {}
        }
    }
    let value = text.get(..end)?.trim_end_matches(' ');
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Limits, parse_documents};
    use serde_json::json;

    fn full(input: &str) -> Option<Value> {
        match parse_documents(input, &Limits::default()) {
            (docs, None) if docs.len() <= 1 => {
                Some(docs.into_iter().next().map_or(Value::Null, |(_, v)| v))
            }
            _ => None,
        }
    }

    /// Where the fast reader answers, it must answer what the full parser reads.
    fn agree(input: &str) -> Option<Value> {
        let fast = parse(input, 128);
        if let Some(v) = &fast {
            assert_eq!(Some(v.clone()), full(input), "{input:?}");
        }
        fast
    }

    #[test]
    fn reads_kubernetes_manifests() {
        let input = "\
---
# a comment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # trailing comment
  labels:
    app.kubernetes.io/name: web
    'quoted': 'it''s'
    \"double\": \"yes\"
  annotations: {}
spec:
  replicas: 3
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.27
        args: []
        ports:
        - containerPort: 8080
          protocol: TCP
        env:
        -   name: A
            value: '1'
        - name: B
      volumes:
        - name: tmp
          emptyDir: {}
      tolerations:
      -
        key: a
      nodeSelector:
      hostNetwork: false
...
";
        let v = agree(input).expect("fast path");
        assert_eq!(v["spec"]["replicas"], json!(3));
        assert_eq!(v["metadata"]["labels"]["quoted"], json!("it's"));
        assert_eq!(v["metadata"]["labels"]["double"], json!("yes"));
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            json!("1")
        );
        assert_eq!(v["spec"]["template"]["spec"]["nodeSelector"], Value::Null);
    }

    #[test]
    fn scalars_resolve_as_on_the_event_path() {
        for text in [
            "yes",
            "on",
            "No",
            "~",
            "null",
            "0x1F",
            "0755",
            "1e3",
            "1.0",
            ".5",
            "2024-01-02",
            "1:20",
            "-1",
            "+1",
            "1_000",
            "-x",
            "?x",
            ":x",
            "a#b",
            "a, b",
            "x]",
            "café",
            "http://x/y?z=1#f",
            "9223372036854775808",
            "18446744073709551616",
        ] {
            assert!(agree(&format!("v: {text}\n")).is_some(), "{text}");
            let _ = agree(&format!("{text}: k\n"));
        }
        for text in [".inf", ".nan", "-.Inf"] {
            assert!(agree(&format!("v: {text}\n")).is_none(), "{text}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_full_parser() {
        for input in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a: plain\n  continued\n",
            "a: \"multi\n  line\"\n",
            "a: \"esc\\n\"\n",
            "a: {b: 1}\n",
            "a: [1, 2]\n",
            "{\"a\": 1}\n",
            "? a\n: b\n",
            "a:\tb\n",
            "\ta: b\n",
            "<<: {a: 1}\n",
            "- - a\n",
            "%YAML 1.1\n---\na: 1\n",
            "--- a\n",
            "a: b: c\n",
            "a: b:\n",
            "a: -\n",
            "a: - b\n",
            "a:\n  b: 1\n c: 2\n",
            "a: 1\n  b: 2\n",
            "a: 1\n- b\n",
            "- a\nb: 1\n",
            "a: 'x' y\n",
            "a: \"x\"y\n",
            "a: {}x\n",
            "~: 1\n",
            "null: 1\n",
            "18446744073709551615: x\n",
            "a #b: c\n",
            "plain scalar document\n",
            "a: x\u{85}y\n",
            "a: x\u{2028}y\n",
            "a: \u{7f}\n",
            "a: 1\r\nb: 2\rc: 3\n",
            "a: %x\n",
            "a: @x\n",
            "",
            "# only a comment\n",
            "---\n",
        ] {
            assert!(parse(input, 128).is_none(), "{input:?}");
        }
    }

    #[test]
    fn accepts_what_it_can_and_agrees() {
        for input in [
            "a: 1\r\nb: [] # c\r\n",
            "  a: 1\n  b:\n    c: 2\n",
            "- a\n- b: 1\n  c: 2\n-\n- - \n",
            "a:\n- 1\n- 2\nb:\n  - 3\n",
            "a: 1\na: 2\n",
            "a:    spaced   \n",
            "a: 'x' # c\n",
            "'': 1\n",
            "a: ''\n",
            "1: one\ntrue: t\n1.5: f\n0x10: h\n",
            "a:\n  # comment\n  b: 1\n",
            "a: 1\n    # deeper comment\nb: 2\n",
            "k: v\n...\n",
            "# c\n---\nk: v\n",
            "--- # c\nk: v\n",
            "x: \"a 'b' #c\"\n",
            "x: 'a \"b\" #c'\n",
        ] {
            let _ = agree(input);
        }
        assert_eq!(parse("a: 1\na: 2\n", 128), Some(json!({"a": 2})));
        assert_eq!(
            parse("a:\n- 1\nb: 2\n", 128),
            Some(json!({"a": [1], "b": 2}))
        );
    }

    #[test]
    fn nesting_beyond_the_depth_limit_takes_the_full_path() {
        let mut block = String::new();
        for i in 0..10 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        assert!(parse(&block, 5).is_none());
        assert!(parse(&block, 10).is_some());
    }
}
