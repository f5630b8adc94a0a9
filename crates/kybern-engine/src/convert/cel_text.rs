//! Pieces of CEL source text: literals, field access, regexes from Kyverno wildcards.

/// A CEL string literal.
pub(super) fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            k,
            "in" | "as"
                | "break"
                | "const"
                | "continue"
                | "else"
                | "for"
                | "function"
                | "if"
                | "import"
                | "let"
                | "loop"
                | "package"
                | "namespace"
                | "return"
                | "var"
                | "void"
                | "while"
                | "true"
                | "false"
                | "null"
        )
}

/// `(field access, presence test)` of key `k` of map expression `e`.
pub(super) fn field(e: &str, k: &str) -> (String, String) {
    if is_identifier(k) {
        (format!("{e}.{k}"), format!("has({e}.{k})"))
    } else {
        (format!("{e}[{}]", lit(k)), format!("{} in {e}", lit(k)))
    }
}

/// A wildcard pattern as an anchored RE2 regex.
pub(super) fn wildcard_regex(p: &str) -> String {
    let mut re = String::from("^");
    for c in p.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/' => re.push(c),
            c => {
                re.push('\\');
                re.push(c);
            }
        }
    }
    re.push('$');
    re
}

pub(super) fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Optional selection of key `k` of expression `e` (`e.?k`, `e[?'k']`).
pub(super) fn optional_field(e: &str, k: &str) -> String {
    if is_identifier(k) {
        format!("{e}.?{k}")
    } else {
        format!("{e}[?{}]", lit(k))
    }
}

/// A CEL literal for a JSON scalar or list of scalars; `None` for maps and nested lists.
pub(super) fn json_literal(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    Some(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.is_finite() => format!("{f:?}"),
            _ => return None,
        },
        Value::String(s) => lit(s),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| {
                    (!i.is_array() && !i.is_object())
                        .then(|| json_literal(i))
                        .flatten()
                })
                .collect();
            format!("[{}]", parts?.join(", "))
        }
        Value::Object(_) => return None,
    })
}
