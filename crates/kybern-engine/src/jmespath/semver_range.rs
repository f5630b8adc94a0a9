//! Version ranges in the syntax of blang/semver v4 (`ParseRange`), which Kyverno's
//! `semver_compare` uses: space-separated comparators are ANDed, `||` ORs groups, a bare version
//! means `==`, and `1.2.x` / `1.x` wildcards are expanded. Versions are strict `MAJOR.MINOR.PATCH`.

use std::cmp::Ordering;

use semver::Version;

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Whether `version` satisfies `range`. An unparsable version is treated as `0.0.0`, as Kyverno
/// ignores that parse error; an unparsable range is an error.
pub(super) fn satisfies(version: &str, range: &str) -> Result<bool, String> {
    let v = Version::parse(version).unwrap_or_else(|_| Version::new(0, 0, 0));
    let groups = parse_range(range)?;
    Ok(groups.iter().any(|group| {
        group.iter().all(|(op, want)| {
            let ord = v.cmp_precedence(want);
            match op {
                Op::Eq => ord == Ordering::Equal,
                Op::Ne => ord != Ordering::Equal,
                Op::Gt => ord == Ordering::Greater,
                Op::Ge => ord != Ordering::Less,
                Op::Lt => ord == Ordering::Less,
                Op::Le => ord != Ordering::Greater,
            }
        })
    }))
}

fn parse_range(s: &str) -> Result<Vec<Vec<(Op, Version)>>, String> {
    let parts = split_and_trim(s);
    if parts.is_empty() {
        return Err("Last element in range is '||'".to_string());
    }
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if p == "||" {
            if i == 0 {
                return Err("First element in range is '||'".to_string());
            }
            groups.push(std::mem::take(&mut current));
        } else {
            current.push(p.clone());
        }
    }
    if parts.last().is_some_and(|p| p == "||") {
        return Err("Last element in range is '||'".to_string());
    }
    groups.push(current);
    groups
        .into_iter()
        .map(|group| {
            expand_wildcards(group)?
                .iter()
                .map(|part| comparator(part))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect()
}

/// Splits on spaces, except after an operator character (so `>= 1.2.3` is one part). Like blang,
/// parts of a single character are dropped.
fn split_and_trim(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut last = 0usize;
    let mut last_char = 0u8;
    for (i, &c) in b.iter().enumerate() {
        if c == b' ' && !matches!(last_char, b'>' | b'<' | b'=') {
            if last + 1 < i
                && let Some(part) = s.get(last..i)
            {
                out.push(part.replace(' ', ""));
            }
            last = i + 1;
        } else if c != b' ' {
            last_char = c;
        }
    }
    if last + 1 < s.len()
        && let Some(part) = s.get(last..)
    {
        out.push(part.replace(' ', ""));
    }
    out
}

/// Operator text and version text, split at the first digit.
fn split_comparator(s: &str) -> Result<(&str, &str), String> {
    let i = s
        .find(|c: char| c.is_ascii_digit())
        .ok_or_else(|| format!("Could not get version from string: {s:?}"))?;
    Ok((s.get(..i).unwrap_or("").trim(), s.get(i..).unwrap_or("")))
}

fn comparator(part: &str) -> Result<(Op, Version), String> {
    let (op, v) = split_comparator(part)?;
    let op = match op {
        "" | "=" | "==" => Op::Eq,
        "!" | "!=" => Op::Ne,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        "<=" => Op::Le,
        _ => return Err(format!("Could not parse comparator {op:?} in {part:?}")),
    };
    let version =
        Version::parse(v).map_err(|e| format!("Could not parse version {v:?} in {part:?}: {e}"))?;
    Ok((op, version))
}

/// Rewrites `x` wildcards into plain comparators, following blang's expansion rules.
fn expand_wildcards(parts: Vec<String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in parts {
        if !part.contains('x') {
            out.push(part);
            continue;
        }
        let (op, v) = split_comparator(&part)?;
        let segments: Vec<&str> = v.split('.').collect();
        let wildcard_len = if segments.last() == Some(&"x") {
            segments.len()
        } else {
            0
        };
        let flat = {
            let s = v.replacen(".x.x", ".x", 1).replacen(".x", ".0", 1);
            if s.split('.').count() == 2 {
                format!("{s}.0")
            } else {
                s
            }
        };
        let next = || -> String {
            let Ok(f) = Version::parse(&flat) else {
                return String::new();
            };
            match wildcard_len {
                3 => format!("{}.{}.0", f.major, f.minor.saturating_add(1)),
                2 => format!("{}.0.0", f.major.saturating_add(1)),
                _ => String::new(),
            }
        };
        let expanded = match op {
            ">" => format!(">={}", next()),
            ">=" => format!(">={flat}"),
            "<" => format!("<{flat}"),
            "<=" => format!("<{}", next()),
            "" | "=" | "==" => {
                out.push(format!(">={flat}"));
                format!("<{}", next())
            }
            "!=" | "!" => {
                // blang ANDs both halves here, so the range never matches; kept for fidelity.
                out.push(format!("<{flat}"));
                format!(">={}", next())
            }
            _ => part.clone(),
        };
        out.push(expanded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let cases = [
            ("1.2.3", "1.2.3", true),
            ("1.2.3", "=1.2.3", true),
            ("1.2.3", "==1.2.4", false),
            ("1.2.3", "!=1.2.4", true),
            ("1.2.3", ">1.2.0", true),
            ("1.2.3", ">= 1.2.3", true),
            ("1.2.3", "<1.2.3", false),
            ("1.2.3", "<=1.2.3", true),
            ("1.5.0", ">=1.2.0 <2.0.0", true),
            ("2.0.0", ">=1.2.0 <2.0.0", false),
            ("3.1.0", "<2.0.0 || >=3.0.0", true),
            ("2.5.0", "<2.0.0 || >=3.0.0", false),
            ("1.2.9", "1.2.x", true),
            ("1.3.0", "1.2.x", false),
            ("1.9.0", "1.x", true),
            ("2.0.0", "1.x", false),
            ("1.3.0", ">1.2.x", true),
            ("1.2.9", ">1.2.x", false),
            ("1.2.9", "<=1.2.x", true),
            ("1.2.0", "<1.2.x", false),
            ("1.2.3-alpha", "<1.2.3", true),
            ("1.2.3+build", "1.2.3", true),
            // An invalid version counts as 0.0.0.
            ("v1.2.3", "<0.0.1", true),
        ];
        for (v, r, want) in cases {
            assert_eq!(satisfies(v, r), Ok(want), "{v} in {r}");
        }
    }

    #[test]
    fn invalid_ranges() {
        for r in [
            "", "|| 1.2.3", "1.2.3 ||", "~1.2.3", ">=abc", "1.2", "01.2.3",
        ] {
            assert!(satisfies("1.2.3", r).is_err(), "{r:?} should be rejected");
        }
    }
}
