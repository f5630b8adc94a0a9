//! YAML and JSON streams to `serde_json::Value` documents, read the way Kubernetes reads them,
//! and JSON values back to YAML the way Kyverno's CLI prints them.
//!
//! Kubernetes and Kyverno read manifests through `sigs.k8s.io/yaml`, which decodes with go-yaml
//! v2 (YAML 1.1 scalar rules) and then converts to JSON. This module reproduces that on top of
//! the `saphyr-parser` event stream:
//!
//! - Plain scalars: `y/Y/yes/Yes/YES/true/True/TRUE/on/On/ON` are `true`, the `n/no/false/off`
//!   families are `false`; `~`, `null`, `Null`, `NULL` and the empty scalar are null.
//! - Integers use Go's base-0 syntax after removing `_`: sign, `0x`/`0o`/`0b` prefixes, a
//!   leading `0` for octal (`0755` is 493). Values above `i64::MAX` that fit `u64` stay unsigned.
//! - Floats (`1.5`, `.5`, `1e3`, `1.`) become JSON numbers as Go's `json.Marshal` writes them:
//!   an integral float below 2^64 is written without a fraction, so `1e3` and `1.0` read as the
//!   integers 1000 and 1. `.inf`, `-.inf` and `.nan` cannot be JSON: like sigs.k8s.io/yaml,
//!   they are an error ([`YamlError::Invalid`] naming the path). A float literal that overflows
//!   (`1e400`) stays a string, as Go's `ParseFloat` rejects it.
//! - Timestamps (`2024-01-02`) stay strings, as go-yaml v2 does for untyped targets.
//! - Quoted and block scalars are always strings. Tags `!!str`, `!!int`, `!!bool`, `!!float`,
//!   `!!null`, `!!binary` (base64, decoded to text) and `!!timestamp` are honoured; a value that
//!   does not fit its tag is an error (`cannot decode !!str `abc` as a !!int`). Local tags
//!   (`!foo`) keep the scalar's text as a string.
//! - Mapping keys become strings as Go's `convertToJSONableObject` does: `1: a` → `"1"`,
//!   `true: x` → `"true"`, `1.5: x` → `"1.5"` (float keys use 32-bit shortest formatting).
//!   A null key, a key above `i64::MAX` and a mapping or sequence used as a key are errors.
//! - Duplicate keys: the last one wins. This is sigs.k8s.io/yaml's non-strict `Unmarshal` /
//!   `YAMLToJSON`, which `kubectl apply`'s client-side decoding and Kyverno's resource loader use
//!   (only `UnmarshalStrict` rejects them).
//! - Merge keys `<<` (plain, or tagged `!!merge`) take a mapping, an alias of one, or a sequence
//!   of those. As in go-yaml v2 the merge happens in place: merged keys overwrite keys written
//!   *before* the `<<` and are overwritten by keys after it; within a sequence, earlier mappings
//!   win. A quoted `"<<"` is an ordinary key.
//! - Anchors and aliases are expanded. Each alias is charged the size of the node it copies and
//!   the whole stream may copy at most [`Limits::max_alias_expansions`] nodes, which defuses
//!   "billion laughs" inputs. Nesting (including what aliases bring in) is limited by
//!   [`Limits::max_depth`]; conversion uses an explicit stack, so deep input cannot overflow
//!   the call stack.
//! - Documents whose content is null (a lone `---`, `--- ~`) are skipped but keep their index;
//!   a stream of only comments has no documents.
//!
//! Large streams: [`DocumentSplitter`] cuts a stream fed line by line into documents at their
//! `---`/`...` markers without parsing it, and [`parse_raw_document`] parses one of them with the
//! rules above; the limits then bound each document, so a file of any size can be read one
//! document at a time.
//!
//! Known difference: go-yaml v2 turns `!!null x` into the string `x` (it does not resolve the
//! null tag); here `!!null` always yields null.

mod emit;
mod fast;
mod load;
mod relax;
mod resolve;
mod stream;

use serde_json::Value;

pub use stream::{DocumentSplitter, RawDocument, parse_raw_document};

/// Why a YAML stream (or one of its documents) could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum YamlError {
    /// The input is larger than [`Limits::max_bytes`]; nothing was parsed.
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The parser rejected the text. The stream cannot be resumed after this point.
    #[error("document {document}: line {line} column {column}: {message}")]
    Syntax {
        /// 0-based index of the document in the stream.
        document: usize,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// Collections nest deeper than [`Limits::max_depth`].
    #[error(
        "document {document}: line {line} column {column}: nesting deeper than {limit} levels at {path}"
    )]
    TooDeep {
        /// 0-based index of the document in the stream.
        document: usize,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Field path where the limit was crossed.
        path: String,
        /// The configured limit.
        limit: usize,
    },
    /// Aliases would copy more than [`Limits::max_alias_expansions`] nodes.
    #[error(
        "document {document}: line {line} column {column}: aliases expand to more than {limit} nodes"
    )]
    AliasLimit {
        /// 0-based index of the document in the stream.
        document: usize,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Well-formed YAML that has no JSON form: a value not matching its tag, infinity or NaN,
    /// an unsupported key, a bad merge, an unknown anchor.
    #[error("document {document}: line {line} column {column}: {message} at {path}")]
    Invalid {
        /// 0-based index of the document in the stream.
        document: usize,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Field path of the offending node (`(root)` for the document itself).
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Resource bounds for reading untrusted YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Inputs larger than this are rejected before parsing. Default 32 MiB.
    pub max_bytes: usize,
    /// Maximum nesting of mappings and sequences. Default 128.
    pub max_depth: usize,
    /// Maximum number of nodes copied by alias expansion in a whole stream. Default 10 000.
    pub max_alias_expansions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 * 1024 * 1024,
            max_depth: 128,
            max_alias_expansions: 10_000,
        }
    }
}

/// Documents of a YAML or JSON stream, each with its 0-based index in the stream. One broken
/// document does not hide the others: a syntax error stops the stream at that point (the parser
/// cannot resync), but documents already read are returned.
///
/// ```
/// use kybern_engine::yaml::{parse_documents, Limits};
/// let (docs, err) = parse_documents("---\n---\nenabled: yes\nport: 0x1F\n", &Limits::default());
/// assert!(err.is_none());
/// assert_eq!(docs, vec![(1, serde_json::json!({"enabled": true, "port": 31}))]);
/// ```
pub fn parse_documents(input: &str, limits: &Limits) -> (Vec<(usize, Value)>, Option<YamlError>) {
    if input.len() > limits.max_bytes {
        let err = YamlError::TooLarge {
            size: input.len(),
            limit: limits.max_bytes,
        };
        return (Vec::new(), Some(err));
    }
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    load::load(input, limits)
}

/// Convenience: all documents (empty ones skipped) or the first error, with default [`Limits`].
pub fn parse_all(input: &str) -> Result<Vec<Value>, YamlError> {
    match parse_documents(input, &Limits::default()) {
        (_, Some(err)) => Err(err),
        (docs, None) => Ok(docs.into_iter().map(|(_, v)| v).collect()),
    }
}

/// Serialize a JSON value as YAML the way Kyverno's CLI prints it (sigs.k8s.io/yaml): keys
/// sorted, 2-space indent, block style, sequences under a key not indented, strings quoted when
/// YAML 1.1 would read them as another type (`"yes"`, `"1"`, `""`, `"2024-01-02"`) or when
/// they start with an indicator or contain `": "`/`" #"`, multi-line strings as `|` blocks when
/// possible, long lines folded after column 80. The result always ends with a newline.
///
/// ```
/// let v = serde_json::json!({"b": ["yes", 1], "a": "x: y"});
/// assert_eq!(kybern_engine::yaml::to_yaml_string(&v), "a: 'x: y'\nb:\n- \"yes\"\n- 1\n");
/// ```
pub fn to_yaml_string(v: &Value) -> String {
    emit::to_yaml(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(input: &str) -> Value {
        let docs = parse_all(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(docs.len(), 1, "{input:?}");
        docs.into_iter().next().unwrap()
    }

    fn scalar(text: &str) -> Value {
        one(&format!("v: {text}\n"))["v"].clone()
    }

    fn err(input: &str) -> YamlError {
        parse_all(input).expect_err(input)
    }

    #[test]
    fn plain_yaml11_booleans_resolve_in_every_case() {
        for t in [
            "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
        ] {
            assert_eq!(scalar(t), json!(true), "{t}");
        }
        for f in [
            "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
        ] {
            assert_eq!(scalar(f), json!(false), "{f}");
        }
        for s in ["yEs", "tRUE", "oN", "nO", "Off!", "yes please"] {
            assert_eq!(scalar(s), json!(s), "{s}");
        }
    }

    #[test]
    fn quoted_and_block_scalars_stay_strings() {
        for t in [
            "yes",
            "on",
            "1",
            "0x1F",
            "1.5",
            "null",
            "~",
            "",
            ".inf",
            "2024-01-02",
            "<<",
        ] {
            assert_eq!(scalar(&format!("'{t}'")), json!(t), "single {t}");
            assert_eq!(scalar(&format!("\"{t}\"")), json!(t), "double {t}");
        }
        assert_eq!(one("v: |\n  yes\n")["v"], json!("yes\n"));
        assert_eq!(one("v: >-\n  123\n")["v"], json!("123"));
    }

    #[test]
    fn plain_nulls_resolve() {
        for n in ["~", "null", "Null", "NULL", ""] {
            assert_eq!(scalar(n), Value::Null, "{n:?}");
        }
        assert_eq!(scalar("nULL"), json!("nULL"));
        assert_eq!(one("[a, ~, b]"), json!(["a", null, "b"]));
    }

    #[test]
    fn plain_integers_follow_go_base_zero_rules() {
        let cases: &[(&str, Value)] = &[
            ("0", json!(0)),
            ("42", json!(42)),
            ("-17", json!(-17)),
            ("+17", json!(17)),
            ("1_000_000", json!(1_000_000)),
            ("0x1F", json!(31)),
            ("0X1f", json!(31)),
            ("-0x10", json!(-16)),
            ("0o17", json!(15)),
            ("0755", json!(493)),
            ("0b101", json!(5)),
            ("-0b101", json!(-5)),
            ("9223372036854775807", json!(i64::MAX)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551615", json!(u64::MAX)),
            // Invalid octal digits fall through to the float rule, as in go-yaml.
            ("09", json!(9)),
            ("0x", json!("0x")),
            ("0xZZ", json!("0xZZ")),
            ("1_", json!(1)),
            ("12abc", json!("12abc")),
            ("1:20", json!("1:20")),
        ];
        for (text, want) in cases {
            assert_eq!(&scalar(text), want, "{text}");
        }
    }

    #[test]
    fn plain_floats_become_numbers_like_go_json() {
        let cases: &[(&str, Value)] = &[
            ("1.5", json!(1.5)),
            ("-0.25", json!(-0.25)),
            (".5", json!(0.5)),
            ("1e3", json!(1000)),
            ("1.0", json!(1)),
            ("1.", json!(1)),
            ("6.02e23", json!(6.02e23)),
            ("1_000.5", json!(1000.5)),
            ("1e20", json!(1e20)),
            ("1e400", json!("1e400")),
            ("1.2.3", json!("1.2.3")),
            (".", json!(".")),
            ("2024-01-02", json!("2024-01-02")),
            (
                "2001-12-14t21:59:43.10-05:00",
                json!("2001-12-14t21:59:43.10-05:00"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&scalar(text), want, "{text}");
        }
    }

    #[test]
    fn infinity_and_nan_are_errors_naming_the_path() {
        for text in [".inf", ".Inf", "-.INF", "+.inf", ".nan", ".NaN"] {
            match err(&format!("spec:\n  items:\n  - {text}\n")) {
                YamlError::Invalid { path, line, .. } => {
                    assert_eq!(path, "spec.items[0]", "{text}");
                    assert_eq!(line, 3);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn core_tags_are_honoured() {
        let cases: &[(&str, Value)] = &[
            ("!!str 123", json!("123")),
            ("!!str yes", json!("yes")),
            ("!!str", json!("")),
            ("!!int \"12\"", json!(12)),
            ("!!int 0x10", json!(16)),
            ("!!bool 'yes'", json!(true)),
            ("!!float 1", json!(1)),
            ("!!float '2.5'", json!(2.5)),
            ("!!null ''", Value::Null),
            ("!!null ~", Value::Null),
            ("!!binary aGVsbG8=", json!("hello")),
            ("!!timestamp 2024-01-02", json!("2024-01-02")),
            ("!custom 12", json!("12")),
            ("! yes", json!("yes")),
        ];
        for (text, want) in cases {
            assert_eq!(&scalar(text), want, "{text}");
        }
    }

    #[test]
    fn values_not_matching_their_tag_are_errors() {
        for (text, msg) in [
            ("!!int abc", "cannot decode !!str `abc` as a !!int"),
            ("!!bool 1", "cannot decode !!int `1` as a !!bool"),
            ("!!float yes", "cannot decode !!bool `yes` as a !!float"),
            (
                "!!binary '***'",
                "!!binary value contains invalid base64 data",
            ),
        ] {
            match err(&format!("v: {text}\n")) {
                YamlError::Invalid { message, path, .. } => {
                    assert_eq!(message, msg);
                    assert_eq!(path, "v");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn non_string_keys_are_stringified_like_go() {
        let v = one("1: a\ntrue: b\nno: c\n1.5: d\n1e3: e\n0x10: f\n1e6: g\n0.1: h\n-.inf: i\n");
        assert_eq!(
            v,
            json!({"1": "a", "true": "b", "false": "c", "1.5": "d", "1000": "e", "16": "f",
                   "1e+06": "g", "0.1": "h", "-.inf": "i"})
        );
    }

    #[test]
    fn yaml11_boolean_words_as_keys_become_true_and_false() {
        // The Kubernetes gotcha: `y:` and `on:` keys are booleans before they are strings.
        assert_eq!(
            one("y: 1\nn: 2\non: 3\nOFF: 4\n"),
            json!({"true": 3, "false": 4})
        );
        assert_eq!(one("'y': 1\n\"on\": 2\n"), json!({"y": 1, "on": 2}));
        assert_eq!(to_yaml_string(&json!({"y": 1})), "\"y\": 1\n");
    }

    #[test]
    fn keys_too_long_for_a_simple_key_are_written_as_explicit_keys_and_read_back() {
        let long = "k".repeat(2000);
        let quoted = format!("{}: x", "q".repeat(200));
        for v in [
            json!({ long.clone(): "v", "short": 1 }),
            json!({ long.clone(): {"a": 1, "b": [1, 2]}, "z": true }),
            json!({ long.clone(): [{"a": 1}, "b"] }),
            json!([{ quoted.clone(): "yes" }]),
            json!({"outer": { long.clone(): {} }}),
        ] {
            let text = to_yaml_string(&v);
            assert!(text.contains("? "), "{text}");
            assert_eq!(parse_all(&text).unwrap(), vec![v], "{text}");
        }
        // Up to go-yaml's limit a key stays simple.
        let at_limit = "k".repeat(128);
        assert_eq!(
            to_yaml_string(&json!({ at_limit.clone(): 1 })),
            format!("{at_limit}: 1\n")
        );
    }

    #[test]
    fn integral_floats_come_back_as_integers() {
        for (v, want) in [
            (json!(3.0e10), json!(30000000000u64)),
            (json!(-2.0), json!(-2)),
        ] {
            assert_eq!(parse_all(&to_yaml_string(&v)).unwrap(), vec![want]);
        }
    }

    #[test]
    fn unsupported_keys_are_errors() {
        for input in [
            "~: a\n",
            "? [a]\n: b\n",
            "? {a: 1}\n: b\n",
            "18446744073709551615: x\n",
        ] {
            assert!(matches!(err(input), YamlError::Invalid { .. }), "{input}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(one("a: 1\nb: 2\na: 3\n"), json!({"a": 3, "b": 2}));
        assert_eq!(one("1: x\n\"1\": z\n"), json!({"1": "z"}));
    }

    #[test]
    fn multi_document_stream_keeps_indices_and_skips_empty_documents() {
        let input = "---\n# only a comment\n---\na: 1\n---\n---\n- x\n--- ~\n...\n---\nb: 2\n";
        let (docs, e) = parse_documents(input, &Limits::default());
        assert!(e.is_none(), "{e:?}");
        assert_eq!(
            docs,
            vec![
                (1, json!({"a": 1})),
                (3, json!(["x"])),
                (5, json!({"b": 2}))
            ]
        );
    }

    #[test]
    fn comment_only_and_empty_inputs_have_no_documents() {
        for input in ["", "# nothing\n# here\n", "\n\n", "---\n"] {
            assert_eq!(parse_all(input), Ok(vec![]), "{input:?}");
        }
    }

    #[test]
    fn json_input_reads_like_yaml() {
        let input = "{\"apiVersion\": \"v1\", \"kind\": \"Pod\",\n\t\"spec\": {\"replicas\": 3, \"ratio\": 0.5, \"on\": \"yes\", \"x\": null, \"l\": [true, false, {}]}}";
        assert_eq!(
            one(input),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "spec": {"replicas": 3, "ratio": 0.5, "on": "yes", "x": null, "l": [true, false, {}]}})
        );
        assert_eq!(
            parse_all("[1, 2]\n---\n{\"a\": \"b\"}\n").unwrap(),
            vec![json!([1, 2]), json!({"a": "b"})]
        );
    }

    #[test]
    fn anchors_and_aliases_copy_nodes() {
        let v =
            one("base: &b {x: 1, z: [a, b]}\ncopy: *b\nname: &n web\nlist: [*n, *n]\n*n : key\n");
        assert_eq!(v["copy"], json!({"x": 1, "z": ["a", "b"]}));
        assert_eq!(v["list"], json!(["web", "web"]));
        assert_eq!(v["web"], json!("key"));
    }

    #[test]
    fn merge_keys_follow_go_yaml_v2() {
        let input = "\
defaults: &d {a: 1, b: 2}
other: &o {b: 20, c: 30}
after: {<<: *d, b: 3}
before: {b: 3, <<: *d}
seq: {<<: [*d, *o], z: 0}
inline: {<<: {k: v}}
quoted: {\"<<\": 1}
tagged: {!!merge x: *d}
";
        let v = one(input);
        assert_eq!(v["after"], json!({"a": 1, "b": 3}));
        // go-yaml v2 merges in place, so a key written before `<<` is overwritten.
        assert_eq!(v["before"], json!({"a": 1, "b": 2}));
        assert_eq!(v["seq"], json!({"a": 1, "b": 2, "c": 30, "z": 0}));
        assert_eq!(v["inline"], json!({"k": "v"}));
        assert_eq!(v["quoted"], json!({"<<": 1}));
        assert_eq!(v["tagged"], json!({"a": 1, "b": 2}));
        assert_eq!(one("v: <<\n")["v"], json!("<<"));
    }

    #[test]
    fn merge_of_a_non_mapping_is_an_error() {
        for input in ["a: {<<: 1}\n", "a: {<<: [1]}\n", "s: &s [1]\na: {<<: *s}\n"] {
            match err(input) {
                YamlError::Invalid { message, .. } => {
                    assert!(message.contains("map merge"), "{message}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn billion_laughs_hits_the_alias_bound() {
        let mut input = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            input.push_str(&format!("{name}: &{name} [{refs}]\n"));
            prev = name;
        }
        match err(&input) {
            YamlError::AliasLimit {
                limit, document, ..
            } => {
                assert_eq!(limit, 10_000);
                assert_eq!(document, 0);
            }
            other => panic!("{other:?}"),
        }
        let small = Limits {
            max_alias_expansions: 5,
            ..Limits::default()
        };
        let (docs, e) = parse_documents("a: &a [1, 2]\nb: *a\n", &small);
        assert_eq!(docs.len(), 1);
        assert!(e.is_none());
        let (_, e) = parse_documents("a: &a [1, 2]\nb: *a\nc: *a\n", &small);
        assert!(
            matches!(e, Some(YamlError::AliasLimit { line: 3, .. })),
            "{e:?}"
        );
    }

    #[test]
    fn nesting_beyond_the_depth_limit_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(
            err(&deep),
            YamlError::TooDeep { limit: 128, .. } | YamlError::Syntax { .. }
        ));
        let mut block = String::new();
        for i in 0..200 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        match err(&block) {
            YamlError::TooDeep { path, line, .. } => {
                assert_eq!(line, 129);
                assert!(path.starts_with("k.k.k"), "{path}");
            }
            other => panic!("{other:?}"),
        }
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        assert!(parse_documents("a: {b: [1]}\n", &limits).1.is_none());
        let (_, e) = parse_documents("a: {b: [[1]]}\n", &limits);
        assert!(
            matches!(e, Some(YamlError::TooDeep { ref path, .. }) if path == "a.b[0]"),
            "{e:?}"
        );
        // Aliases cannot smuggle depth past the limit.
        let (_, e) = parse_documents("x: &x {b: [1]}\ny: [*x]\n", &limits);
        assert!(matches!(e, Some(YamlError::TooDeep { .. })), "{e:?}");
    }

    #[test]
    fn input_over_max_bytes_is_rejected_before_parsing() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let (docs, e) = parse_documents("a: 1\nb: 2\nc: 3\n", &limits);
        assert!(docs.is_empty());
        assert_eq!(
            e,
            Some(YamlError::TooLarge {
                size: 15,
                limit: 10
            })
        );
    }

    #[test]
    fn syntax_error_reports_position_and_keeps_earlier_documents() {
        let input = "a: 1\n---\nb: 2\n---\nc: [1, 2\nd: 3\n";
        let (docs, e) = parse_documents(input, &Limits::default());
        assert_eq!(docs, vec![(0, json!({"a": 1})), (1, json!({"b": 2}))]);
        match e {
            Some(YamlError::Syntax {
                document,
                line,
                message,
                ..
            }) => {
                assert_eq!(document, 2);
                assert!(line >= 5, "{line}");
                assert!(!message.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let e = err("a: b: c\n");
        assert!(
            matches!(
                e,
                YamlError::Syntax {
                    document: 0,
                    line: 1,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn error_messages_are_lowercase_without_trailing_period() {
        let errors = [
            err("a: [\n"),
            err("a: .inf\n"),
            err("~: 1\n"),
            YamlError::TooLarge { size: 2, limit: 1 },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        }
    }

    #[test]
    fn leading_bom_is_ignored() {
        assert_eq!(one("\u{feff}a: 1\n"), json!({"a": 1}));
    }

    #[test]
    fn yaml_output_matches_sigs_k8s_yaml_layout() {
        let v = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "web", "labels": {}, "annotations": {"a": "yes"}},
            "spec": {"containers": [{"name": "c", "args": ["--x", "1"], "ports": [{"containerPort": 80}]}],
                     "list": [[1, 2], []], "ratio": 0.5, "none": null, "flag": true}
        });
        let want = "\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    a: \"yes\"
  labels: {}
  name: web
spec:
  containers:
  - args:
    - --x
    - \"1\"
    name: c
    ports:
    - containerPort: 80
  flag: true
  list:
  - - 1
    - 2
  - []
  none: null
  ratio: 0.5
";
        assert_eq!(to_yaml_string(&v), want);
    }

    #[test]
    fn yaml_output_quotes_strings_that_would_change_type() {
        let cases = [
            ("yes", "\"yes\""),
            ("On", "\"On\""),
            ("y", "\"y\""),
            ("1", "\"1\""),
            ("0x1F", "\"0x1F\""),
            ("1.5", "\"1.5\""),
            ("1e3", "\"1e3\""),
            (".inf", "\".inf\""),
            ("true", "\"true\""),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("", "\"\""),
            ("<<", "\"<<\""),
            ("1:20", "\"1:20\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("a: b", "'a: b'"),
            ("- a", "'- a'"),
            ("*x", "'*x'"),
            ("&x", "'&x'"),
            ("!x", "'!x'"),
            ("#x", "'#x'"),
            ("a #x", "'a #x'"),
            ("a#x", "a#x"),
            ("{a}", "'{a}'"),
            ("@x", "'@x'"),
            ("%x", "'%x'"),
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("---", "'---'"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("tab\there", "\"tab\\there\""),
            ("bell\u{7}", "\"bell\\a\""),
            ("smile 😀", "\"smile \\U0001F600\""),
            ("café", "café"),
            ("http://x/y?z=1", "http://x/y?z=1"),
            ("a:b", "a:b"),
            ("key:", "'key:'"),
            ("-x", "-x"),
        ];
        for (s, want) in cases {
            assert_eq!(
                to_yaml_string(&json!({ "k": s })),
                format!("k: {want}\n"),
                "{s:?}"
            );
        }
    }

    #[test]
    fn yaml_output_uses_literal_blocks_for_multiline_strings() {
        let cases = [
            ("a\nb\n", "k: |\n  a\n  b\n"),
            ("a\nb", "k: |-\n  a\n  b\n"),
            ("a\n\n", "k: |+\n  a\n\n"),
            ("  indented\nx\n", "k: |2\n    indented\n  x\n"),
            ("a\n\nb\n", "k: |\n  a\n\n  b\n"),
            ("trailing \nspace", "k: \"trailing \\nspace\"\n"),
            ("tab\n\tx", "k: \"tab\\n\\tx\"\n"),
        ];
        for (s, want) in cases {
            assert_eq!(to_yaml_string(&json!({ "k": s })), want, "{s:?}");
        }
        assert_eq!(to_yaml_string(&json!(["x\ny"])), "- |-\n  x\n  y\n");
        assert_eq!(
            to_yaml_string(&json!({"multi\nkey": 1})),
            "\"multi\\nkey\": 1\n"
        );
    }

    #[test]
    fn yaml_output_folds_long_lines_after_column_80() {
        let long = "word ".repeat(30).trim_end().to_owned();
        let out = to_yaml_string(&json!({ "description": long }));
        assert!(out.lines().count() > 1, "{out}");
        assert!(
            out.lines().skip(1).all(|l| l.starts_with("  word")),
            "{out}"
        );
        assert_eq!(
            parse_all(&out).unwrap(),
            vec![json!({ "description": long })]
        );
    }

    #[test]
    fn yaml_output_formats_numbers_like_go() {
        let cases = [
            (json!(1), "1"),
            (json!(-5), "-5"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(1.5), "1.5"),
            (json!(1000.0), "1000"),
            (json!(1234567.5), "1.2345675e+06"),
            (json!(0.0001), "0.0001"),
            (json!(0.00001), "1e-05"),
            (json!(1e21), "1e+21"),
            (json!(-2.5e-7), "-2.5e-07"),
        ];
        for (v, want) in cases {
            assert_eq!(
                to_yaml_string(&json!({ "num": v })),
                format!("num: {want}\n"),
                "{v}"
            );
        }
    }

    #[test]
    fn yaml_output_of_top_level_scalars_and_empty_collections() {
        assert_eq!(to_yaml_string(&json!(null)), "null\n");
        assert_eq!(to_yaml_string(&json!("yes")), "\"yes\"\n");
        assert_eq!(to_yaml_string(&json!({})), "{}\n");
        assert_eq!(to_yaml_string(&json!([])), "[]\n");
        assert_eq!(
            to_yaml_string(&json!([{"a": 1, "b": [1]}])),
            "- a: 1\n  b:\n  - 1\n"
        );
    }

    #[test]
    fn round_trip_preserves_values() {
        let long = "lorem ipsum dolor sit amet, ".repeat(8);
        let values = vec![
            json!({"a": 1}),
            json!(["x", 1, 1.5, true, null, {}, []]),
            json!({"strings": ["yes", "no", "on", "off", "y", "n", "Y", "NO", "true", "False",
                               "null", "~", "", " ", "  ", "1", "-1", "+1", "0x10", "0o7", "010",
                               "1_000", "1e3", ".5", "1.", ".inf", "-.inf", ".nan", "<<", "1:20",
                               "2024-01-02", "2001-12-14 21:59:43.10", "a: b", "a #b", "#c", "- d",
                               "? e", ": f", "---", "...", "--- x", "'", "\"", "\\", "a\\nb",
                               "tab\tin", "\u{0}\u{1}\u{7f}", "\u{85}", "\u{a0}nbsp", "\u{2028}ls",
                               "\u{feff}bom", "😀", "日本語", "\r\n", "a\r\nb", "line\n", "\n",
                               "\n\n", "a\n\n\n", " lead\nx", "x\n lead", "trail \n", "end ",
                               "multi\nline\ntext", "{a: b}", "[1, 2]", "&a", "*a", "!tag", "|",
                               ">", "%", "@", "`", "a,b", "a]b", "http://x:80/p#f", "C:\\dir"]}),
            json!({"nested": {"deep": {"list": [[["x"]], {"k": [1, {"m": "n"}]}]}}}),
            json!({"1": "numeric key", "true": "bool key", "": "empty key", "a b": 1, "-k": 2,
                   "multi\nline key": 3, "yes": 4, "null": 5}),
            json!({"numbers": [0, -0.5, 1e-7, 123456789.25, 1e21, i64::MIN, u64::MAX, 12.75]}),
            json!({"long": long, "long_list": [long.clone()], "long_quoted": format!("'{long}'"),
                   "long_double": format!("\t{long}  two  spaces  {long}")}),
            json!("top-level string"),
            json!(42),
        ];
        for v in values {
            let text = to_yaml_string(&v);
            let back = parse_all(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back, vec![v.clone()], "\n{text}");
        }
    }
}
