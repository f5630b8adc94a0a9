//! JSON value → YAML text in the layout sigs.k8s.io/yaml (go-yaml v2's emitter) produces:
//! sorted keys, two-space indent, sequences inside mappings not indented, scalars quoted only
//! when a YAML 1.1 reader would see another type, long lines folded after column 80.

use serde_json::{Map, Value};

use super::resolve::{
    Scalar, float_to_json, go_format_g, is_base60_float, looks_like_timestamp, resolve_plain,
};

/// go-yaml's `best_width`.
const BEST_WIDTH: usize = 80;
/// go-yaml's `best_indent`.
const INDENT: usize = 2;
/// Longest key, in bytes, written as a simple `key: value` (go-yaml's limit; YAML's own is 1024
/// characters); longer ones are written as `? key` / `: value`.
const MAX_SIMPLE_KEY: usize = 128;

pub(crate) fn to_yaml(v: &Value) -> String {
    let mut e = Emitter {
        out: String::new(),
        column: 0,
    };
    match v {
        Value::Object(m) if !m.is_empty() => e.mapping(m, 0, true),
        Value::Array(a) if !a.is_empty() => e.sequence(a, 0, true),
        other => e.scalar(other, INDENT, false),
    }
    if !e.out.ends_with('\n') {
        e.out.push('\n');
    }
    e.out
}

struct Emitter {
    out: String,
    /// Column (in characters) of the next character on the current line.
    column: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

impl Emitter {
    fn push(&mut self, c: char) {
        self.out.push(c);
        if c == '\n' {
            self.column = 0;
        } else {
            self.column += 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            self.push(c);
        }
    }

    /// Starts a new line indented to `indent` (unless already at the start of such a line).
    fn newline(&mut self, indent: usize) {
        if self.column != 0 {
            self.push('\n');
        }
        while self.column < indent {
            self.push(' ');
        }
    }

    /// A block mapping whose keys sit at `indent`. With `inline`, the first key continues the
    /// current line (after `- ` or at the start of the document).
    fn mapping(&mut self, m: &Map<String, Value>, indent: usize, inline: bool) {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 || !inline {
                self.newline(indent);
            }
            if k.len() > MAX_SIMPLE_KEY {
                self.complex_entry(k, v, indent);
                continue;
            }
            self.string(k, indent + INDENT, true);
            self.push(':');
            match v {
                Value::Object(inner) if !inner.is_empty() => {
                    self.mapping(inner, indent + INDENT, false)
                }
                Value::Array(items) if !items.is_empty() => self.sequence(items, indent, false),
                other => {
                    self.push(' ');
                    self.scalar(other, indent + INDENT, false);
                }
            }
        }
    }

    /// An entry whose key is too long to be a simple key: `? key` and `: value` on the next
    /// line, as go-yaml writes it.
    fn complex_entry(&mut self, k: &str, v: &Value, indent: usize) {
        self.push_str("? ");
        self.string(k, indent + INDENT, true);
        self.newline(indent);
        self.push_str(": ");
        match v {
            Value::Object(inner) if !inner.is_empty() => self.mapping(inner, indent + INDENT, true),
            Value::Array(items) if !items.is_empty() => self.sequence(items, indent + INDENT, true),
            other => self.scalar(other, indent + INDENT, false),
        }
    }

    /// A block sequence whose `- ` markers sit at `indent`.
    fn sequence(&mut self, items: &[Value], indent: usize, inline: bool) {
        for (i, v) in items.iter().enumerate() {
            if i > 0 || !inline {
                self.newline(indent);
            }
            self.push_str("- ");
            match v {
                Value::Object(inner) if !inner.is_empty() => {
                    self.mapping(inner, indent + INDENT, true)
                }
                Value::Array(inner) if !inner.is_empty() => {
                    self.sequence(inner, indent + INDENT, true)
                }
                other => self.scalar(other, indent + INDENT, false),
            }
        }
    }

    /// A scalar or an empty collection; `indent` is where continuation lines go.
    fn scalar(&mut self, v: &Value, indent: usize, is_key: bool) {
        match v {
            Value::Null => self.push_str("null"),
            Value::Bool(b) => self.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                let text = if n.is_i64() || n.is_u64() {
                    n.to_string()
                } else {
                    number_text(n.as_f64().unwrap_or(0.0))
                };
                self.push_str(&text);
            }
            Value::String(s) => self.string(s, indent, is_key),
            Value::Array(_) => self.push_str("[]"),
            Value::Object(_) => self.push_str("{}"),
        }
    }

    fn string(&mut self, s: &str, indent: usize, is_key: bool) {
        match select_style(s, is_key) {
            Style::Plain => self.plain(s, indent, !is_key),
            Style::Single => self.single(s, indent, !is_key),
            Style::Double => self.double(s, indent, !is_key),
            Style::Literal => self.literal(s, indent),
        }
    }

    fn wrap(&mut self, indent: usize) {
        self.push('\n');
        while self.column < indent {
            self.push(' ');
        }
    }

    fn plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks && !spaces && self.column > BEST_WIDTH && !next_space {
                    self.wrap(indent);
                } else {
                    self.push(c);
                }
                spaces = true;
            } else {
                self.push(c);
                spaces = false;
            }
        }
    }

    fn single(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.push('\'');
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len()
                    && !next_space
                {
                    self.wrap(indent);
                } else {
                    self.push(c);
                }
                spaces = true;
            } else {
                if c == '\'' {
                    self.push('\'');
                }
                self.push(c);
                spaces = false;
            }
        }
        self.push('\'');
    }

    fn double(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.push('"');
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
                self.push('\\');
                let esc = match c {
                    '\0' => "0".to_owned(),
                    '\u{7}' => "a".to_owned(),
                    '\u{8}' => "b".to_owned(),
                    '\t' => "t".to_owned(),
                    '\n' => "n".to_owned(),
                    '\u{b}' => "v".to_owned(),
                    '\u{c}' => "f".to_owned(),
                    '\r' => "r".to_owned(),
                    '\u{1b}' => "e".to_owned(),
                    '"' => "\"".to_owned(),
                    '\\' => "\\".to_owned(),
                    '\u{85}' => "N".to_owned(),
                    '\u{a0}' => "_".to_owned(),
                    '\u{2028}' => "L".to_owned(),
                    '\u{2029}' => "P".to_owned(),
                    c if (c as u32) <= 0xFF => format!("x{:02X}", c as u32),
                    c if (c as u32) <= 0xFFFF => format!("u{:04X}", c as u32),
                    c => format!("U{:08X}", c as u32),
                };
                self.push_str(&esc);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len()
                {
                    self.wrap(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.push('\\');
                    }
                } else {
                    self.push(c);
                }
                spaces = true;
            } else {
                self.push(c);
                spaces = false;
            }
        }
        self.push('"');
    }

    fn literal(&mut self, s: &str, indent: usize) {
        self.push('|');
        if s.starts_with([' ', '\n']) {
            self.push_str(&INDENT.to_string());
        }
        let chomp = if !s.ends_with('\n') {
            "-"
        } else if s == "\n" || s.ends_with("\n\n") {
            "+"
        } else {
            ""
        };
        self.push_str(chomp);
        self.push('\n');
        let mut breaks = true;
        for c in s.chars() {
            if c == '\n' {
                self.push('\n');
                breaks = true;
            } else {
                if breaks {
                    while self.column < indent {
                        self.push(' ');
                    }
                }
                self.push(c);
                breaks = false;
            }
        }
    }
}

/// How Go's JSON encoder writes a float that then goes through go-yaml: integral values that
/// fit 64 bits print as integers, the rest in `strconv.FormatFloat(f, 'g', -1, 64)` form.
fn number_text(f: f64) -> String {
    match float_to_json(f) {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => go_format_g(f, false),
    }
}

/// libyaml's printable set; everything else is escaped in double quotes.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blankz(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || is_break(c),
    }
}

/// go-yaml's encoder choice (`stringv`) followed by the emitter's analysis of what each style
/// can carry (`yaml_emitter_analyze_scalar` / `select_scalar_style`), block context only.
fn select_style(s: &str, is_key: bool) -> Style {
    let wanted = if s.contains('\n') {
        Style::Literal
    } else if !matches!(resolve_plain(s), Scalar::Str(_))
        || is_base60_float(s)
        || looks_like_timestamp(s)
    {
        Style::Double
    } else {
        Style::Plain
    };
    if wanted == Style::Double {
        return Style::Double;
    }
    let a = analyze(s);
    let mut style = wanted;
    if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && is_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || is_key) {
        style = Style::Double;
    }
    style
}

struct Analysis {
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let mut special = false;
    let mut line_breaks = false;
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let last = chars.len().saturating_sub(1);
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = is_blankz(chars.get(i + 1).copied());
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        // Line and paragraph separators are YAML 1.1 breaks but not YAML 1.2 ones: escaping
        // them keeps the output readable by both.
        if !is_printable(c) || c == '\u{2028}' || c == '\u{2029}' {
            special = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= i == last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(Some(c));
    }
    let mut a = Analysis {
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}
