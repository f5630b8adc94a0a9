//! String, regex, matching, encoding, collection and hashing functions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};

use ::jmespath::{Rcvar, Variable};
use base64::Engine as _;
use regex::Regex;

use super::functions::{arg, arg_num, arg_str, boolean, number, string, stringify};
use super::semver_range;

type Out = Result<Rcvar, String>;

pub(super) fn compare(args: &[Rcvar]) -> Out {
    let (a, b) = (arg_str(args, 0)?, arg_str(args, 1)?);
    // Go's strings.Compare orders by bytes, as Rust's str ordering does.
    number(match a.cmp(b) {
        std::cmp::Ordering::Less => -1.0,
        std::cmp::Ordering::Equal => 0.0,
        std::cmp::Ordering::Greater => 1.0,
    })
}

pub(super) fn equal_fold(args: &[Rcvar]) -> Out {
    let (a, b) = (arg_str(args, 0)?, arg_str(args, 1)?);
    let fold = |s: &str| s.chars().flat_map(char::to_lowercase).collect::<String>();
    Ok(boolean(a == b || fold(a) == fold(b)))
}

pub(super) fn replace(args: &[Rcvar]) -> Out {
    let (src, old, new) = (arg_str(args, 0)?, arg_str(args, 1)?, arg_str(args, 2)?);
    let n = arg_num(args, 3)?;
    if n < 0.0 {
        return Ok(string(src.replace(old, new)));
    }
    // Go converts with int(); a count beyond the string's length behaves like "all".
    Ok(string(src.replacen(old, new, n as usize)))
}

pub(super) fn replace_all(args: &[Rcvar]) -> Out {
    let (src, old, new) = (arg_str(args, 0)?, arg_str(args, 1)?, arg_str(args, 2)?);
    Ok(string(src.replace(old, new)))
}

pub(super) fn to_upper(args: &[Rcvar]) -> Out {
    Ok(string(arg_str(args, 0)?.to_uppercase()))
}

pub(super) fn to_lower(args: &[Rcvar]) -> Out {
    Ok(string(arg_str(args, 0)?.to_lowercase()))
}

pub(super) fn trim(args: &[Rcvar]) -> Out {
    let (src, cutset) = (arg_str(args, 0)?, arg_str(args, 1)?);
    Ok(string(src.trim_matches(|c| cutset.contains(c))))
}

pub(super) fn trim_prefix(args: &[Rcvar]) -> Out {
    let (src, prefix) = (arg_str(args, 0)?, arg_str(args, 1)?);
    Ok(string(src.strip_prefix(prefix).unwrap_or(src)))
}

pub(super) fn split(args: &[Rcvar]) -> Out {
    let (src, sep) = (arg_str(args, 0)?, arg_str(args, 1)?);
    // Go's strings.Split with an empty separator splits into characters (none for "").
    let parts: Vec<Rcvar> = if sep.is_empty() {
        src.chars().map(|c| string(c.to_string())).collect()
    } else {
        src.split(sep).map(string).collect()
    };
    Ok(Rcvar::new(Variable::Array(parts)))
}

/// Compiled regexes by pattern; bounded so hostile input cannot grow it without limit.
static REGEX_CACHE: LazyLock<Mutex<HashMap<String, Regex>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const REGEX_CACHE_MAX: usize = 512;
/// Compiled-program size limit, so a huge pattern fails instead of exhausting memory.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// Compiles a pattern with Go RE2 semantics (`\d`, `\w`, `\s`, `\b` are ASCII-only in Go).
pub(super) fn go_regex(pattern: &str) -> Result<Regex, String> {
    let mut cache = REGEX_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    if let Some(count) = repeat_over_go_limit(pattern) {
        return Err(format!(
            "error parsing regexp: invalid repeat count: `{count}` (at most {GO_MAX_REPEAT})"
        ));
    }
    let re = regex::RegexBuilder::new(&ascii_classes(pattern))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(250)
        .build()
        .map_err(|e| format!("error parsing regexp: {e}"))?;
    if cache.len() >= REGEX_CACHE_MAX {
        cache.clear();
    }
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// Go's regexp refuses repeat counts over this (`a{1001}`); Rust's regex would accept them.
const GO_MAX_REPEAT: u32 = 1000;

/// The first `{n}`, `{n,}` or `{n,m}` repetition (outside classes and escapes) whose count is
/// over [`GO_MAX_REPEAT`]. A `{` that does not start a repetition is a literal, as in Go.
fn repeat_over_go_limit(pattern: &str) -> Option<&str> {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'{' if !in_class => {
                let end = pattern.get(i..)?.find('}').map(|e| i + e)?;
                let inner = pattern.get(i + 1..end)?;
                let (min, max) = inner.split_once(',').unwrap_or((inner, inner));
                let num = |s: &str| {
                    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                        .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
                };
                if let Some(lo) = num(min) {
                    let hi = if max.is_empty() { Some(lo) } else { num(max) };
                    if let Some(hi) = hi
                        && (lo > u64::from(GO_MAX_REPEAT) || hi > u64::from(GO_MAX_REPEAT))
                    {
                        return pattern.get(i..=end);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Rewrites Perl classes to their ASCII forms, as Go defines them.
fn ascii_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                match (in_class, next) {
                    (false, 'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'b' | 'B') => {
                        out.push_str("(?-u:\\");
                        out.push(next);
                        out.push(')');
                    }
                    (true, 'd') => out.push_str("0-9"),
                    (true, 'w') => out.push_str("0-9A-Za-z_"),
                    (true, 's') => out.push_str("\\t\\n\\f\\r "),
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A leading `^` and a leading `]` belong to the class.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // POSIX class like [:alpha:] inside a bracket expression.
                out.push('[');
                for d in chars.by_ref() {
                    out.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

fn arg_stringified(args: &[Rcvar], i: usize) -> Result<String, String> {
    stringify(arg(args, i)?)
        .ok_or_else(|| format!("argument {} is expected of string or number type", i + 1))
}

pub(super) fn regex_replace_all(args: &[Rcvar]) -> Out {
    let re = go_regex(arg_str(args, 0)?)?;
    let (src, repl) = (arg_stringified(args, 1)?, arg_stringified(args, 2)?);
    // Rust's `$name`/`${name}` expansion follows Go's Expand: longest name, `$$` for a dollar.
    Ok(string(re.replace_all(&src, repl.as_str()).into_owned()))
}

pub(super) fn regex_replace_all_literal(args: &[Rcvar]) -> Out {
    let re = go_regex(arg_str(args, 0)?)?;
    let (src, repl) = (arg_stringified(args, 1)?, arg_stringified(args, 2)?);
    Ok(string(
        re.replace_all(&src, regex::NoExpand(&repl)).into_owned(),
    ))
}

pub(super) fn regex_match(args: &[Rcvar]) -> Out {
    let re = go_regex(arg_str(args, 0)?)?;
    Ok(boolean(re.is_match(&arg_stringified(args, 1)?)))
}

pub(super) fn pattern_match(args: &[Rcvar]) -> Out {
    let pattern = arg_str(args, 0)?;
    Ok(boolean(crate::wildcard::matches(
        pattern,
        &arg_stringified(args, 1)?,
    )))
}

pub(super) fn label_match(args: &[Rcvar]) -> Out {
    let (Some(selector), Some(labels)) = (arg(args, 0)?.as_object(), arg(args, 1)?.as_object())
    else {
        return Err("arguments are expected of object type".to_string());
    };
    Ok(boolean(
        selector
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v)),
    ))
}

pub(super) fn to_boolean(args: &[Rcvar]) -> Out {
    let s = arg_str(args, 0)?;
    match s.to_lowercase().as_str() {
        "true" => Ok(boolean(true)),
        "false" => Ok(boolean(false)),
        _ => Err(format!(
            "lowercase argument must be 'true' or 'false' (provided: '{s}')"
        )),
    }
}

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated.
const STD_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

pub(super) fn base64_decode(args: &[Rcvar]) -> Out {
    // Go's decoder skips line breaks.
    let input: String = arg_str(args, 0)?
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect();
    let bytes = STD_BASE64
        .decode(input.as_bytes())
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    Ok(string(String::from_utf8_lossy(&bytes).into_owned()))
}

pub(super) fn base64_encode(args: &[Rcvar]) -> Out {
    Ok(string(STD_BASE64.encode(arg_str(args, 0)?.as_bytes())))
}

pub(super) fn path_canonicalize(args: &[Rcvar]) -> Out {
    Ok(string(clean_path(arg_str(args, 0)?)))
}

/// Go's `filepath.Join(p)` on Unix: `""` stays empty, anything else is `filepath.Clean`ed.
fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return String::new();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

pub(super) fn truncate(args: &[Rcvar]) -> Out {
    let s = arg_str(args, 0)?;
    let n = arg_num(args, 1)?.max(0.0) as usize;
    // Counted in characters (runes), not bytes.
    Ok(string(s.chars().take(n).collect::<String>()))
}

pub(super) fn semver_compare(args: &[Rcvar]) -> Out {
    let (version, range) = (arg_str(args, 0)?, arg_str(args, 1)?);
    semver_range::satisfies(version, range).map(boolean)
}

pub(super) fn parse_json(args: &[Rcvar]) -> Out {
    let value: serde_json::Value =
        serde_json::from_str(arg_str(args, 0)?).map_err(|e| e.to_string())?;
    Ok(go_numbers(&value))
}

/// Converts decoded data to a variable with every number as a float, as Go's decoder does.
pub(super) fn go_numbers(v: &serde_json::Value) -> Rcvar {
    Rcvar::new(match v {
        serde_json::Value::Number(n) => match n.as_f64().and_then(serde_json::Number::from_f64) {
            Some(f) => Variable::Number(f),
            None => Variable::Null,
        },
        serde_json::Value::Array(a) => Variable::Array(a.iter().map(go_numbers).collect()),
        serde_json::Value::Object(m) => Variable::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), go_numbers(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        other => return super::to_variable(other),
    })
}

pub(super) fn lookup(args: &[Rcvar]) -> Out {
    let (collection, key) = (arg(args, 0)?, arg(args, 1)?);
    match &**collection {
        Variable::Object(map) => {
            let key = key
                .as_string()
                .ok_or("argument 2 is expected of string type for an object")?;
            Ok(map.get(key).cloned().unwrap_or_else(super::null))
        }
        Variable::Array(list) => {
            let index = key
                .as_number()
                .ok_or("argument 2 is expected of number type for an array")?;
            if index.fract() != 0.0 {
                return Err(format!("expected an integer index, got {index}"));
            }
            if index < 0.0 {
                return Ok(super::null());
            }
            Ok(list
                .get(index as usize)
                .cloned()
                .unwrap_or_else(super::null))
        }
        _ => Err("argument 1 is expected of object or array type".to_string()),
    }
}

pub(super) fn items(args: &[Rcvar]) -> Out {
    let (key_name, val_name) = (arg_str(args, 1)?, arg_str(args, 2)?);
    let pair = |k: Rcvar, v: Rcvar| {
        let mut m = BTreeMap::new();
        m.insert(key_name.to_string(), k);
        m.insert(val_name.to_string(), v);
        Rcvar::new(Variable::Object(m))
    };
    let out: Vec<Rcvar> = match &**arg(args, 0)? {
        // BTreeMap iterates in key order, which is the order Kyverno sorts into.
        Variable::Object(map) => map
            .iter()
            .map(|(k, v)| pair(string(k.clone()), v.clone()))
            .collect(),
        Variable::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| Ok(pair(number(i as f64)?, v.clone())))
            .collect::<Result<_, String>>()?,
        _ => return Err("argument 1 is expected of object or array type".to_string()),
    };
    Ok(Rcvar::new(Variable::Array(out)))
}

pub(super) fn object_from_lists(args: &[Rcvar]) -> Out {
    let (Some(keys), Some(values)) = (arg(args, 0)?.as_array(), arg(args, 1)?.as_array()) else {
        return Err("arguments are expected of array type".to_string());
    };
    let mut out = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        let key = stringify(k).ok_or("argument 1 is expected of string array type")?;
        out.insert(key, values.get(i).cloned().unwrap_or_else(super::null));
    }
    Ok(Rcvar::new(Variable::Object(out)))
}

/// Extra repetitions for `*`, `+` and `{n,}` (goregen's default bound).
const RANDOM_MAX_REPEAT: u32 = 10;
/// Longest string `random` may produce, so `a{1000000}` cannot exhaust memory.
const RANDOM_MAX_LEN: usize = 64 * 1024;

pub(super) fn random(args: &[Rcvar]) -> Out {
    let pattern = arg_str(args, 0)?;
    if pattern.is_empty() {
        return Err("no pattern provided".to_string());
    }
    // goregen ignores anchors; rand_regex rejects them, so drop a leading `^` and trailing `$`.
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    let pattern = match pattern.strip_suffix('$') {
        Some(p) if !p.ends_with('\\') => p,
        _ => pattern,
    };
    let generator = rand_regex::Regex::compile(pattern, RANDOM_MAX_REPEAT)
        .map_err(|e| format!("invalid pattern: {e}"))?;
    if generator.capacity() > RANDOM_MAX_LEN {
        return Err(format!(
            "pattern may generate more than {RANDOM_MAX_LEN} bytes"
        ));
    }
    let mut rng = SplitMix64(rand::random());
    let sample: Result<String, std::string::FromUtf8Error> =
        rand10::distr::Distribution::sample(&generator, &mut rng);
    sample.map(string).map_err(|e| e.to_string())
}

/// A small generator for `rand_regex` (which uses a newer `rand` than the workspace), seeded from
/// the workspace's thread RNG. Not cryptographic, as goregen is not either.
struct SplitMix64(u64);

impl rand10::TryRng for SplitMix64 {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(bytes) {
                *d = s;
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(super) fn sha256(args: &[Rcvar]) -> Out {
    use sha2::Digest as _;
    Ok(string(hex(&sha2::Sha256::digest(
        arg_str(args, 0)?.as_bytes(),
    ))))
}

pub(super) fn sha1(args: &[Rcvar]) -> Out {
    use sha1::Digest as _;
    Ok(string(hex(&sha1::Sha1::digest(
        arg_str(args, 0)?.as_bytes(),
    ))))
}

pub(super) fn md5(args: &[Rcvar]) -> Out {
    use md5::Digest as _;
    Ok(string(hex(&md5::Md5::digest(arg_str(args, 0)?.as_bytes()))))
}

#[cfg(test)]
mod tests {
    use crate::jmespath::compile;
    use serde_json::{Value, json};

    fn eval(expr: &str, data: Value) -> Result<Value, String> {
        compile(expr)
            .map_err(|e| e.to_string())?
            .search(&data)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn string_functions() {
        let cases: &[(&str, Value)] = &[
            ("compare('a', 'b')", json!(-1)),
            ("compare('b', 'b')", json!(0)),
            ("compare('c', 'b')", json!(1)),
            ("equal_fold('Go', 'GO')", json!(true)),
            ("equal_fold('Go', 'Ga')", json!(false)),
            (
                "replace('oink oink oink', 'k', 'ky', `2`)",
                json!("oinky oinky oink"),
            ),
            (
                "replace('oink oink oink', 'oink', 'moo', `-1`)",
                json!("moo moo moo"),
            ),
            ("replace_all('a.b.c', '.', '-')", json!("a-b-c")),
            ("to_upper('abc')", json!("ABC")),
            ("to_lower('ABC')", json!("abc")),
            (
                "trim('¡¡¡Hello, Gophers!!!', '!¡')",
                json!("Hello, Gophers"),
            ),
            (
                "trim_prefix('docker.io/nginx', 'docker.io/')",
                json!("nginx"),
            ),
            ("trim_prefix('nginx', 'docker.io/')", json!("nginx")),
            ("split('a,b,c', ',')", json!(["a", "b", "c"])),
            ("split('abc', '')", json!(["a", "b", "c"])),
            ("split('', ',')", json!([""])),
            ("truncate('Lorem ipsum', `5`)", json!("Lorem")),
            ("truncate('héllo', `2`)", json!("hé")),
            ("truncate('abc', `-1`)", json!("")),
            ("truncate('abc', `10`)", json!("abc")),
            ("path_canonicalize('/a//b/../c/./d')", json!("/a/c/d")),
            ("path_canonicalize('../../x')", json!("../../x")),
            ("path_canonicalize('/../x')", json!("/x")),
            ("path_canonicalize('a/..')", json!(".")),
            ("path_canonicalize('')", json!("")),
            ("to_boolean('TRUE')", json!(true)),
            ("to_boolean('false')", json!(false)),
            ("base64_encode('hello')", json!("aGVsbG8=")),
            ("base64_decode('aGVsbG8=')", json!("hello")),
            (
                "sha256('hello')",
                json!("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            ),
            (
                "sha1('hello')",
                json!("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
            ),
            ("md5('hello')", json!("5d41402abc4b2a76b9719d911017c592")),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr, json!({})).as_ref(), Ok(want), "{expr}");
        }
    }

    #[test]
    fn regex_functions() {
        let cases: &[(&str, Value)] = &[
            ("regex_match('^[0-9]+$', '123')", json!(true)),
            ("regex_match('b', 'abc')", json!(true)),
            ("regex_match('^b', 'abc')", json!(false)),
            ("regex_match('^12', `123`)", json!(true)),
            ("regex_match('^1.5$', `1.5`)", json!(true)),
            // Go's \d is ASCII-only.
            ("regex_match('^\\d$', '٣')", json!(false)),
            ("regex_match('^[\\d]+$', '42')", json!(true)),
            (
                "regex_replace_all('([Hh]e|G)l', 'Hello, Gophers', '${1}L')",
                json!("HeLlo, Gophers"),
            ),
            (
                "regex_replace_all('(?P<x>a)b', 'ab', '$x-$1')",
                json!("a-a"),
            ),
            // `$1x` names group "1x", which does not exist, as in Go.
            ("regex_replace_all('(a)', 'a', '$1x')", json!("")),
            ("regex_replace_all('a', 'a', '$$')", json!("$")),
            ("regex_replace_all('^(\\d+)$', `42`, `7`)", json!("7")),
            (
                "regex_replace_all_literal('(a)', 'aa', '$1')",
                json!("$1$1"),
            ),
            ("pattern_match('nginx*', 'nginx:1.2')", json!(true)),
            ("pattern_match('ng?x', 'nginx')", json!(false)),
            ("pattern_match('1*', `12`)", json!(true)),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr, json!({})).as_ref(), Ok(want), "{expr}");
        }
    }

    #[test]
    fn collection_functions() {
        let data = json!({"labels": {"app": "web", "tier": "fe"}, "list": ["a", "b"]});
        let cases: &[(&str, Value)] = &[
            ("label_match({app: 'web'}, labels)", json!(true)),
            ("label_match({app: 'db'}, labels)", json!(false)),
            ("label_match({env: 'x'}, labels)", json!(false)),
            ("lookup(labels, 'app')", json!("web")),
            ("lookup(labels, 'nope')", json!(null)),
            ("lookup(list, `1`)", json!("b")),
            ("lookup(list, `5`)", json!(null)),
            ("lookup(list, `-1`)", json!(null)),
            (
                "items(labels, 'k', 'v')",
                json!([{"k": "app", "v": "web"}, {"k": "tier", "v": "fe"}]),
            ),
            (
                "items(list, 'i', 'v')",
                json!([{"i": 0, "v": "a"}, {"i": 1, "v": "b"}]),
            ),
            ("object_from_lists(list, `[1]`)", json!({"a": 1, "b": null})),
            (
                "object_from_lists(`[1, true]`, `[\"x\", \"y\"]`)",
                json!({"1": "x", "true": "y"}),
            ),
            ("parse_json('{\"a\": [1, 2.5]}')", json!({"a": [1, 2.5]})),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr, data.clone()).as_ref(), Ok(want), "{expr}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            "to_boolean('yes')",
            "regex_match('(', 'x')",
            "regex_replace_all('(', 'x', 'y')",
            "base64_decode('aGVsbG8')",
            "base64_decode('!!')",
            "lookup(`{}`, `1`)",
            "lookup(`[]`, 'a')",
            "lookup(`[1]`, `0.5`)",
            "parse_json('{')",
            "to_upper(`1`)",
            "regex_match('a', `true`)",
            "object_from_lists(`[[1]]`, `[]`)",
            "random('')",
            "random('a{100000}')",
            "label_match('a', `{}`)",
            "compare('a')",
        ];
        for expr in cases {
            assert!(eval(expr, json!({})).is_err(), "{expr} should fail");
        }
        let msg = eval("to_boolean('yes')", json!({})).unwrap_err();
        assert!(msg.contains("JMESPath function 'to_boolean'"), "{msg}");
    }

    #[test]
    fn huge_regex_is_rejected_not_fatal() {
        assert!(eval("regex_match('(a{1000}){1000}', 'a')", json!({})).is_err());
    }

    #[test]
    fn random_matches_its_pattern() {
        assert_eq!(eval("random('^a$')", json!({})), Ok(json!("a")));
        let shape = regex::Regex::new("^[a-z]{5}-[0-9]{1,11}$").unwrap();
        for _ in 0..20 {
            let v = eval("random('[a-z]{5}-[0-9]+')", json!({})).unwrap();
            let s = v.as_str().unwrap();
            assert!(shape.is_match(s), "{s}");
        }
    }

    #[test]
    fn numbers_are_stringified_like_kyverno() {
        // float32 formatting, as Kyverno's ifaceToString does.
        assert_eq!(
            eval("regex_replace_all('x', 'x', `123456789`)", json!({})),
            Ok(json!("123456790"))
        );
        assert_eq!(
            eval("regex_replace_all('x', 'x', `0.1`)", json!({})),
            Ok(json!("0.1"))
        );
    }
}
