//! The conformance corpus for the differential tests: where it is, its suites (policies and
//! the resources beside them), and generated variations of a resource.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Per suite directory: its policy documents and up to six of its resources.
pub type Suites = BTreeMap<PathBuf, (Vec<Value>, Vec<Value>)>;

/// The corpus's suites whose policies `keep` accepts, or `None` (with a message naming `check`;
/// a failure under `CI`) when the corpus is absent.
pub fn suites_or_skip(check: &str, keep: impl Fn(&Value) -> bool) -> Option<Suites> {
    Some(suites(&corpus_or_skip(check)?, keep))
}

/// The corpus directory, or `None` (with a message; a failure under `CI`) when it is absent.
fn corpus_or_skip(check: &str) -> Option<PathBuf> {
    let dir = corpus();
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "conformance corpus not found at {} (set KYBERN_CONFORMANCE_DIR); {check} did not run",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("{msg}");
    None
}

/// Suites: per directory, the policy documents `keep` accepts and up to six resources.
fn suites(dir: &Path, keep: impl Fn(&Value) -> bool) -> Suites {
    let mut files = Vec::new();
    yaml_files(dir, &mut files);
    let mut by_dir = Suites::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let Ok(docs) = kybern_engine::yaml::parse_all(&text) else {
            continue;
        };
        let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
        let entry = by_dir.entry(dir).or_default();
        for d in docs {
            if is_policy(&d) {
                if keep(&d) {
                    entry.0.push(d);
                }
            } else if is_resource(&d) && entry.1.len() < 6 {
                entry.1.push(d);
            }
        }
    }
    by_dir
}

fn corpus() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("KYBERN_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => root.join("../shared/conformance"),
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

pub fn is_policy(doc: &Value) -> bool {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    kind.ends_with("Policy") || kind.ends_with("PolicyException") || kind.ends_with("Binding")
}

fn is_resource(doc: &Value) -> bool {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    !kind.is_empty()
        && doc.get("metadata").is_some()
        && !is_policy(doc)
        && !matches!(
            kind,
            "Test" | "Values" | "UserInfo" | "Context" | "Namespace"
        )
}

/// Paths (keys and indexes) of `v`, depth first.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// `v` with the value at `path` changed by `f` (`None` removes it).
fn edit(v: &Value, path: &[Value], f: &dyn Fn(&Value) -> Option<Value>) -> Value {
    let mut out = v.clone();
    let Some((last, parent)) = path.split_last() else {
        return out;
    };
    let mut cur = &mut out;
    for seg in parent {
        cur = match seg {
            Value::String(k) => match cur.get_mut(k.as_str()) {
                Some(c) => c,
                None => return out,
            },
            Value::Number(n) => match cur.get_mut(n.as_u64().unwrap_or(0) as usize) {
                Some(c) => c,
                None => return out,
            },
            _ => return out,
        };
    }
    match (cur, last) {
        (Value::Object(m), Value::String(k)) => {
            if let Some(old) = m.get(k.as_str()) {
                match f(old) {
                    Some(new) => {
                        m.insert(k.clone(), new);
                    }
                    None => {
                        m.remove(k.as_str());
                    }
                }
            }
        }
        (Value::Array(a), Value::Number(n)) => {
            let i = n.as_u64().unwrap_or(0) as usize;
            if let Some(old) = a.get(i).cloned() {
                match f(&old) {
                    Some(new) => a[i] = new,
                    None => {
                        a.remove(i);
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// The resource and variations of it: at most `limit` paths, each removed, nulled, given a
/// wrong type and (lists and maps) emptied.
pub fn variations(resource: &Value, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    paths(resource, &mut Vec::new(), &mut all);
    let step = all.len().div_ceil(limit.max(1)).max(1);
    let mut out = vec![resource.clone()];
    for p in all.iter().step_by(step) {
        out.push(edit(resource, p, &|_| None));
        out.push(edit(resource, p, &|_| Some(Value::Null)));
        out.push(edit(resource, p, &|old| {
            Some(if old.is_string() {
                json!(7)
            } else {
                json!("x")
            })
        }));
        out.push(edit(resource, p, &|old| match old {
            Value::Array(_) => Some(json!([])),
            Value::Object(_) => Some(json!({})),
            Value::Bool(b) => Some(json!(!b)),
            Value::Number(_) => Some(json!(-1)),
            _ => Some(json!("")),
        }));
    }
    out
}
