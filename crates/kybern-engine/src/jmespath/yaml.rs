//! `parse_yaml`: YAML text to data the way Kyverno's `yaml.YAMLToJSON` + `json.Unmarshal` does:
//! first document only, YAML 1.1 plain scalars (`yes`/`on` are booleans, `0777` is octal), merge
//! keys, keys stringified, numbers as floats. Alias expansion and nesting are bounded.

use std::collections::{BTreeMap, HashMap};

use ::jmespath::{Rcvar, Variable};
use saphyr_parser::{Event, Parser, ScalarStyle};

use super::functions::{arg_str, number, string};

type Out = Result<Rcvar, String>;

/// Deepest nesting accepted (the builder recurses).
const MAX_DEPTH: usize = 200;
/// Most nodes a document may expand to, counting alias copies (billion-laughs guard).
const MAX_NODES: usize = 1_000_000;

pub(super) fn parse_yaml(args: &[Rcvar]) -> Out {
    parse(arg_str(args, 0)?)
}

pub(super) fn parse(text: &str) -> Out {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
    };
    loop {
        match b.next()? {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => {}
            Event::StreamEnd | Event::DocumentEnd => return Ok(super::null()),
            ev => return b.node(ev, 0),
        }
    }
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, (Rcvar, usize)>,
    nodes: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<Event<'a>, String> {
        match self.parser.next_event() {
            Some(Ok((ev, _))) => Ok(ev),
            Some(Err(e)) => Err(format!("error converting YAML to JSON: {e}")),
            None => Ok(Event::StreamEnd),
        }
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err("YAML document expands to too many nodes".to_string());
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, value: &Rcvar, size: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
    }

    fn node(&mut self, ev: Event<'a>, depth: usize) -> Out {
        if depth > MAX_DEPTH {
            return Err("YAML document is nested too deeply".to_string());
        }
        let start = self.nodes;
        self.count(1)?;
        match ev {
            Event::Alias(id) => {
                let (value, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or("unknown anchor referenced")?;
                self.count(size)?;
                Ok(value)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_string {
                    resolve_plain(&text)?
                } else {
                    string(text.into_owned())
                };
                self.remember(anchor, &value, 1);
                Ok(value)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        Event::SequenceEnd => break,
                        ev => items.push(self.node(ev, depth + 1)?),
                    }
                }
                let value = Rcvar::new(Variable::Array(items));
                let size = self.nodes - start;
                self.remember(anchor, &value, size);
                Ok(value)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = BTreeMap::new();
                let mut merged: Vec<Rcvar> = Vec::new();
                loop {
                    let key_ev = match self.next()? {
                        Event::MappingEnd => break,
                        ev => ev,
                    };
                    let is_merge =
                        matches!(&key_ev, Event::Scalar(t, ScalarStyle::Plain, _, _) if t == "<<");
                    let key = self.node(key_ev, depth + 1)?;
                    let value_ev = self.next()?;
                    let value = self.node(value_ev, depth + 1)?;
                    if is_merge {
                        merged.push(value);
                        continue;
                    }
                    map.insert(key_string(&key)?, value);
                }
                // Merged entries never override explicit keys; earlier merge sources win.
                for source in merged {
                    let sources: Vec<Rcvar> = match &*source {
                        Variable::Array(list) => list.clone(),
                        _ => vec![source.clone()],
                    };
                    for s in sources {
                        let obj = s
                            .as_object()
                            .ok_or("map merge requires map or sequence of maps as the value")?;
                        for (k, v) in obj {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
                let value = Rcvar::new(Variable::Object(map));
                let size = self.nodes - start;
                self.remember(anchor, &value, size);
                Ok(value)
            }
            _ => Err("unexpected YAML event".to_string()),
        }
    }
}

/// Mapping keys become strings, as YAMLToJSON does for JSON objects.
fn key_string(key: &Variable) -> Result<String, String> {
    match key {
        Variable::String(s) => Ok(s.clone()),
        Variable::Null => Ok("null".to_string()),
        Variable::Bool(b) => Ok(b.to_string()),
        Variable::Number(n) => Ok(super::to_json(&Variable::Number(n.clone())).to_string()),
        _ => Err("unsupported map key type in YAML".to_string()),
    }
}

/// YAML 1.1 resolution of a plain scalar (go-yaml v2's table).
fn resolve_plain(s: &str) -> Out {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(super::null()),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Rcvar::new(Variable::Bool(true)));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Rcvar::new(Variable::Bool(false)));
        }
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            return Err(format!(
                "error converting YAML to JSON: unsupported value: {s}"
            ));
        }
        _ => {}
    }
    if s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        let plain = s.replace('_', "");
        if let Some(i) = go_parse_int(&plain) {
            return number(i as f64);
        }
        if is_yaml_float(&plain)
            && let Ok(f) = plain.parse::<f64>()
        {
            return number(f);
        }
    }
    Ok(string(s))
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-`0` prefixes.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.get(1..)?)
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if neg { -magnitude } else { magnitude }).ok()
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (
            body.get(..i).unwrap_or(""),
            Some(body.get(i + 1..).unwrap_or("")),
        ),
        None => (body, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exp_ok = exp.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use crate::jmespath::compile;
    use serde_json::{Value, json};

    fn yaml(text: &str) -> Result<Value, String> {
        compile("parse_yaml(@)")
            .map_err(|e| e.to_string())?
            .search(&json!(text))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_yaml_like_go() {
        let cases: &[(&str, Value)] = &[
            (
                "a: 1\nb: [x, 'y', \"z\"]\n",
                json!({"a": 1, "b": ["x", "y", "z"]}),
            ),
            (
                "- yes\n- off\n- ~\n- 'yes'\n",
                json!([true, false, null, "yes"]),
            ),
            (
                "v: 0777\nh: 0x1F\nu: 1_000\nf: 1.5e3\ng: .5\n",
                json!({"v": 511, "h": 31, "u": 1000, "f": 1500, "g": 0.5}),
            ),
            ("v: 1.2.3\ns: 08\n", json!({"v": "1.2.3", "s": 8})),
            ("1: a\ntrue: b\n", json!({"1": "a", "true": "b"})),
            (
                "base: &b {a: 1, b: 2}\nderived:\n  <<: *b\n  b: 3\n",
                json!({"base": {"a": 1, "b": 2}, "derived": {"a": 1, "b": 3}}),
            ),
            // YAML 1.1: a plain `y` is a boolean, also as a key.
            ("y: 1\n", json!({"true": 1})),
            ("s: !!str 123\n", json!({"s": "123"})),
            (
                "text: |\n  line1\n  line2\n",
                json!({"text": "line1\nline2\n"}),
            ),
            ("a: 1\n---\nb: 2\n", json!({"a": 1})),
            ("", json!(null)),
            ("plain", json!("plain")),
        ];
        for (text, want) in cases {
            assert_eq!(yaml(text).as_ref(), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn rejects_bad_or_hostile_yaml() {
        assert!(yaml("a: [1, 2").is_err());
        assert!(yaml("v: .nan").is_err());
        assert!(yaml("a: *nope").is_err());
        assert!(yaml(&"[".repeat(500)).is_err());
        // Billion laughs: each level multiplies the size by ten.
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        assert!(yaml(&doc).unwrap_err().contains("too many nodes"));
    }
}
