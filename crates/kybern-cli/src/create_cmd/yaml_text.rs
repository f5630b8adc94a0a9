//! Hand-laid YAML for skeletons: fields in the order a reader expects (apiVersion, kind,
//! metadata first) and comments, which a serializer of values cannot give. Scalars go through
//! the engine's emitter, so a value YAML would read as another type is quoted.

use kybern_engine::yaml::{parse_all, to_yaml_string};
use serde_json::Value;

/// A YAML document written line by line.
#[derive(Default)]
pub struct YamlText {
    out: String,
}

/// One scalar as YAML text on a single line.
pub fn scalar(v: &Value) -> String {
    match v {
        // JSON's double-quoted strings are YAML too, and stay on one line.
        Value::String(s) if s.chars().any(char::is_control) => Value::from(s.as_str()).to_string(),
        other => to_yaml_string(other).trim_end_matches('\n').to_string(),
    }
}

/// A flag value read as a YAML scalar (`3` a number, `true` a boolean); anything else, and text
/// that YAML would read as null or a collection, stays a string.
pub fn scalar_value(text: &str) -> Value {
    let null_words = ["~", "null", "Null", "NULL"];
    match parse_all(&format!("v: {text}\n")).as_deref() {
        Ok([Value::Object(m)]) => match m.get("v") {
            Some(Value::Null) if null_words.contains(&text) => Value::Null,
            Some(v @ (Value::Bool(_) | Value::Number(_))) => v.clone(),
            _ => Value::from(text),
        },
        _ => Value::from(text),
    }
}

fn text(s: &str) -> String {
    scalar(&Value::from(s))
}

impl YamlText {
    fn line(&mut self, indent: usize, body: &str) {
        self.out.push_str(&" ".repeat(indent));
        self.out.push_str(body);
        self.out.push('\n');
    }

    /// `key: value` with a string value.
    pub fn field(&mut self, indent: usize, key: &str, value: &str) {
        self.line(indent, &format!("{}: {}", text(key), text(value)));
    }

    /// `key: value` with the value written as given.
    pub fn raw_field(&mut self, indent: usize, key: &str, raw: &str) {
        self.line(indent, &format!("{}: {raw}", text(key)));
    }

    /// `key:` opening a block.
    pub fn key(&mut self, indent: usize, key: &str) {
        self.line(indent, &format!("{}:", text(key)));
    }

    /// `- key: value`, the first field of a new sequence item.
    pub fn item_field(&mut self, indent: usize, key: &str, value: &str) {
        self.line(indent, &format!("- {}: {}", text(key), text(value)));
    }

    /// `- key:`, opening a block as the first field of a new sequence item.
    pub fn item_key(&mut self, indent: usize, key: &str) {
        self.line(indent, &format!("- {}:", text(key)));
    }

    /// `- value` lines.
    pub fn items<S: AsRef<str>>(&mut self, indent: usize, items: impl IntoIterator<Item = S>) {
        for i in items {
            self.line(indent, &format!("- {}", text(i.as_ref())));
        }
    }

    /// `key:` and its items, or `key: []`.
    pub fn list<S: AsRef<str>>(&mut self, indent: usize, key: &str, items: &[S]) {
        if items.is_empty() {
            self.raw_field(indent, key, "[]");
        } else {
            self.key(indent, key);
            self.items(indent, items);
        }
    }

    /// `key:` and its entries, or `key: {}`.
    pub fn map(&mut self, indent: usize, key: &str, entries: &[(&str, Value)]) {
        if entries.is_empty() {
            self.raw_field(indent, key, "{}");
            return;
        }
        self.key(indent, key);
        for (k, v) in entries {
            self.line(indent + 2, &format!("{}: {}", text(k), scalar(v)));
        }
    }

    /// `key: |` and the text's lines.
    pub fn block(&mut self, indent: usize, key: &str, body: &str) {
        self.line(indent, &format!("{}: |", text(key)));
        for l in body.lines() {
            self.line(indent + 2, l);
        }
    }

    /// `# comment`.
    pub fn comment(&mut self, indent: usize, comment: &str) {
        self.line(indent, &format!("# {comment}"));
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_that_yaml_would_retype_are_quoted() {
        assert_eq!(text("yes"), "\"yes\"");
        assert_eq!(text("1"), "\"1\"");
        assert_eq!(text("a: b"), "'a: b'");
        assert_eq!(text("plain"), "plain");
        assert_eq!(text("two\nlines"), "\"two\\nlines\"");
    }

    #[test]
    fn flag_values_read_as_yaml_scalars() {
        assert_eq!(scalar_value("3"), json!(3));
        assert_eq!(scalar_value("true"), json!(true));
        assert_eq!(scalar_value("dev"), json!("dev"));
        assert_eq!(scalar_value("[a"), json!("[a"));
        assert_eq!(scalar_value("{a: b}"), json!("{a: b}"));
        assert_eq!(scalar_value("#x"), json!("#x"));
        assert_eq!(scalar_value(""), json!(""));
        assert_eq!(scalar_value("null"), json!(null));
    }
}
