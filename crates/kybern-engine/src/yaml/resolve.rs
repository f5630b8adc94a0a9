//! YAML 1.1 scalar resolution as go-yaml v2 (the decoder behind sigs.k8s.io/yaml) performs it,
//! plus the number formatting Go uses when such scalars become JSON text or map keys.

use base64::Engine as _;
use saphyr_parser::{ScalarStyle, Tag};
use serde_json::Value;

/// A resolved YAML scalar, before it becomes JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    /// The merge key `<<` (plain, or tagged `!!merge`).
    Merge,
}

const CORE_TAG_HANDLE: &str = "tag:yaml.org,2002:";

/// Resolves one scalar event. Quoted and block scalars are strings unless a core tag says
/// otherwise; plain scalars go through the YAML 1.1 rules of [`resolve_plain`].
pub(crate) fn resolve_scalar(
    value: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
) -> Result<Scalar, String> {
    let Some(tag) = tag else {
        return Ok(if style == ScalarStyle::Plain {
            resolve_plain(value)
        } else {
            Scalar::Str(value.to_owned())
        });
    };
    if tag.handle != CORE_TAG_HANDLE {
        // Local and application tags (`!foo`, `!`) are not resolvable: the text stays a string.
        return Ok(Scalar::Str(value.to_owned()));
    }
    match tag.suffix.as_str() {
        "str" => Ok(Scalar::Str(value.to_owned())),
        "binary" => decode_binary(value).map(Scalar::Str),
        "null" => Ok(Scalar::Null),
        "merge" => Ok(Scalar::Merge),
        "bool" => match resolve_plain(value) {
            b @ Scalar::Bool(_) => Ok(b),
            other => Err(cannot_decode(&other, value, "bool")),
        },
        "int" => match resolve_plain(value) {
            i @ (Scalar::Int(_) | Scalar::Uint(_)) => Ok(i),
            other => Err(cannot_decode(&other, value, "int")),
        },
        "float" => match resolve_plain(value) {
            f @ Scalar::Float(_) => Ok(f),
            Scalar::Int(i) => Ok(Scalar::Float(i as f64)),
            Scalar::Uint(u) => Ok(Scalar::Float(u as f64)),
            other => Err(cannot_decode(&other, value, "float")),
        },
        // Timestamps decode to their text when the target is untyped.
        "timestamp" if looks_like_timestamp(value) => Ok(Scalar::Str(value.to_owned())),
        "timestamp" => Err(cannot_decode(&resolve_plain(value), value, "timestamp")),
        // Other core tags (`!!map`, `!!seq`, ...) on a scalar are not resolvable: keep the text.
        _ => Ok(Scalar::Str(value.to_owned())),
    }
}

fn cannot_decode(resolved: &Scalar, value: &str, wanted: &str) -> String {
    let got = match resolved {
        Scalar::Null => "null",
        Scalar::Bool(_) => "bool",
        Scalar::Int(_) | Scalar::Uint(_) => "int",
        Scalar::Float(_) => "float",
        Scalar::Str(_) => "str",
        Scalar::Merge => "merge",
    };
    format!("cannot decode !!{got} `{value}` as a !!{wanted}")
}

/// `!!binary`: standard base64, line breaks ignored (as Go's `StdEncoding.DecodeString`).
fn decode_binary(value: &str) -> Result<String, String> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r' | ' ' | '\t'))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|_| "!!binary value contains invalid base64 data".to_owned())
}

/// Resolves a plain scalar the way go-yaml v2's `resolve("", s)` does.
/// Whether a plain scalar certainly resolves to its own text: it starts with an ASCII letter and
/// is none of YAML 1.1's booleans and nulls (every other form that resolves to something else
/// starts with a digit, a sign, `.`, `~` or `<`). Most keys and many values of a manifest are;
/// they skip [`resolve_plain`].
pub(crate) fn plain_is_text(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && !matches!(
            s,
            "y" | "Y"
                | "yes"
                | "Yes"
                | "YES"
                | "true"
                | "True"
                | "TRUE"
                | "on"
                | "On"
                | "ON"
                | "n"
                | "N"
                | "no"
                | "No"
                | "NO"
                | "false"
                | "False"
                | "FALSE"
                | "off"
                | "Off"
                | "OFF"
                | "null"
                | "Null"
                | "NULL"
        )
}

pub(crate) fn resolve_plain(s: &str) -> Scalar {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        "<<" => return Scalar::Merge,
        _ => {}
    }
    let Some(first) = s.bytes().next() else {
        return Scalar::Null;
    };
    match first {
        b'.' if is_yaml_style_float(s) => {
            if let Some(f) = parse_finite_float(s) {
                return Scalar::Float(f);
            }
        }
        // Plain decimal digits without a leading zero (octal) fit an i64 up to 18 of them.
        b'1'..=b'9' if s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) => {
            if let Ok(i) = s.parse::<i64>() {
                return Scalar::Int(i);
            }
        }
        b'+' | b'-' | b'0'..=b'9' => {
            let plain: std::borrow::Cow<str> = if s.contains('_') {
                s.chars().filter(|&c| c != '_').collect::<String>().into()
            } else {
                s.into()
            };
            if let Some(i) = go_parse_int(&plain) {
                return Scalar::Int(i);
            }
            if let Some(u) = go_parse_uint(&plain) {
                return Scalar::Uint(u);
            }
            if let Some(f) = is_yaml_style_float(&plain)
                .then(|| parse_finite_float(&plain))
                .flatten()
            {
                return Scalar::Float(f);
            }
        }
        _ => {}
    }
    Scalar::Str(s.to_owned())
}

/// Go's `strconv.ParseFloat` fails (and go-yaml keeps the text) when the value overflows.
fn parse_finite_float(s: &str) -> Option<f64> {
    let f: f64 = s.strip_prefix('+').unwrap_or(s).parse().ok()?;
    f.is_finite().then_some(f)
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Splits Go's base-0 integer syntax: optional sign, then `0x`/`0o`/`0b` prefixes or a leading
/// `0` for octal. Returns (negative, radix, digits).
fn split_go_int(s: &str) -> Option<(bool, u32, &str)> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let after_zero = match rest.as_bytes() {
        [b'0', c, ..] => Some(c.to_ascii_lowercase()),
        _ => None,
    };
    let (radix, digits) = match after_zero {
        Some(b'x') => (16, rest.get(2..)?),
        Some(b'o') => (8, rest.get(2..)?),
        Some(b'b') => (2, rest.get(2..)?),
        _ if rest.len() > 1 && rest.starts_with('0') => (8, rest.get(1..)?),
        _ => (10, rest),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some((neg, radix, digits))
}

/// `strconv.ParseInt(s, 0, 64)`.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, radix, digits) = split_go_int(s)?;
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude == 1u64 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `strconv.ParseUint(s, 0, 64)` (no sign allowed).
fn go_parse_uint(s: &str) -> Option<u64> {
    if s.starts_with(['+', '-']) {
        return None;
    }
    let (_, radix, digits) = split_go_int(s)?;
    u64::from_str_radix(digits, radix).ok()
}

/// Quick shape check for the timestamp forms go-yaml recognises (`2006-1-2`, optionally with a
/// time). The emitter quotes such strings so they are not read back as timestamps.
pub(crate) fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b.iter().take(4).all(u8::is_ascii_digit) || b.get(4) != Some(&b'-') {
        return false;
    }
    let mut i = 5;
    let num = |i: &mut usize, max_len: usize| -> Option<u32> {
        let start = *i;
        while *i < b.len() && *i - start < max_len && b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        s.get(start..*i)?.parse().ok()
    };
    let Some(month) = num(&mut i, 2) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = num(&mut i, 2) else {
        return false;
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let sep = b.get(i).copied();
    if !matches!(sep, Some(b'T' | b't' | b' ')) {
        return false;
    }
    i += 1;
    let (Some(h), true, Some(m), true, Some(sec)) = (
        num(&mut i, 2),
        b.get(i) == Some(&b':') && {
            i += 1;
            true
        },
        num(&mut i, 2),
        b.get(i) == Some(&b':') && {
            i += 1;
            true
        },
        num(&mut i, 2),
    ) else {
        return false;
    };
    if h > 23 || m > 59 || sec > 59 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let rest = s.get(i..).unwrap_or("");
    if sep == Some(b' ') {
        return rest.is_empty();
    }
    rest == "Z" || {
        let r = rest.as_bytes();
        r.len() == 6
            && matches!(r.first(), Some(b'+' | b'-'))
            && r.get(3) == Some(&b':')
            && [1, 2, 4, 5]
                .iter()
                .all(|&k| r.get(k).is_some_and(u8::is_ascii_digit))
    }
}

/// The JSON value Go produces for a float: `json.Marshal` writes integral values below 1e21
/// without a fraction, and such text reads back as an integer.
pub(crate) fn float_to_json(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 {
        // 2^63 and 2^64 are exact in f64.
        if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
            return Some(Value::from(f as i64));
        }
        if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
            return Some(Value::from(f as u64));
        }
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// `strconv.FormatFloat(f, 'g', -1, 64)` (or 32 with `single`): shortest digits, exponent form
/// when the decimal exponent is below -4 or at least 6.
pub(crate) fn go_format_g(f: f64, single: bool) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = if single {
        format!("{:e}", f as f32)
    } else {
        format!("{f:e}")
    };
    let (neg, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let nd = digits.len() as i64;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        let mut chars = digits.chars();
        if let Some(first) = chars.next() {
            out.push(first);
        }
        let rest: String = chars.collect();
        if !rest.is_empty() {
            out.push('.');
            out.push_str(&rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let dp = exp + 1;
        if nd <= dp {
            out.push_str(&digits);
            for _ in 0..(dp - nd) {
                out.push('0');
            }
        } else {
            let (int_part, frac) = digits.split_at(dp as usize);
            out.push_str(int_part);
            out.push('.');
            out.push_str(frac);
        }
    }
    out
}

/// go-yaml v2's `isBase60Float`: such strings are quoted on output for YAML 1.1 readers.
pub(crate) fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) || !s.contains(':') {
        return false;
    }
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) && i - start < 2 {
            i += 1;
        }
        let group = s.get(start..i).unwrap_or("");
        let ok = match group.len() {
            1 => true,
            2 => group.as_bytes().first().is_some_and(|d| *d <= b'5'),
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod plain_text_tests {
    use super::{Scalar, plain_is_text, resolve_plain};

    #[test]
    fn text_scalars_resolve_to_their_text() {
        let words = [
            "name",
            "y",
            "Y",
            "yes",
            "Yes",
            "YES",
            "yEs",
            "n",
            "N",
            "no",
            "NO",
            "nO",
            "on",
            "ON",
            "oN",
            "off",
            "Off",
            "OFF",
            "true",
            "True",
            "TRUE",
            "tRue",
            "false",
            "False",
            "null",
            "Null",
            "NULL",
            "nULL",
            "nan",
            "inf",
            "Infinity",
            "x1",
            "a.b",
            "a-b",
            "a_b",
            "e5",
            "E5",
            "o",
            "nginx:1.27",
            "key with spaces",
            "1a",
            "+a",
            ".inf",
            "~",
            "<<",
            "",
        ];
        let mut taken = 0;
        for w in words {
            if plain_is_text(w) {
                taken += 1;
                assert_eq!(resolve_plain(w), Scalar::Str(w.to_string()), "{w}");
            } else if w.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
                // Only YAML 1.1's booleans and nulls are refused among words.
                assert!(
                    matches!(resolve_plain(w), Scalar::Bool(_) | Scalar::Null),
                    "{w}"
                );
            }
        }
        assert!(taken > 15);
    }
}
