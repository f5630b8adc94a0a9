//! Kyverno's wildcard matching: `*` matches any run of characters (including `/`),
//! `?` matches exactly one character; there are no escapes.

/// True if `value` matches the wildcard `pattern`.
pub fn matches(pattern: &str, value: &str) -> bool {
    if !contains_wildcard(pattern) {
        return pattern == value;
    }
    glob(pattern, value)
}

/// `*`/`?` matching (greedy, backtracking to the last `*`), the same language as `WildMatch`:
/// over bytes when both sides are ASCII, else over characters.
fn glob(pattern: &str, value: &str) -> bool {
    if pattern.is_ascii() && value.is_ascii() {
        return glob_units(pattern.as_bytes(), value.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    glob_units(&p, &v, '*', '?')
}

fn glob_units<T: Copy + Eq>(p: &[T], v: &[T], star: T, one: T) -> bool {
    let (mut pi, mut vi) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the value position it covers.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        match (p.get(pi), v.get(vi)) {
            (Some(&c), _) if c == star => {
                pi += 1;
                if pi == p.len() {
                    // A trailing `*` covers whatever is left.
                    return true;
                }
                resume = Some((pi, vi));
            }
            (Some(&c), Some(&d)) if c == one || c == d => {
                pi += 1;
                vi += 1;
            }
            (None, None) => return true,
            _ => {
                // Mismatch: let the last `*` cover one more unit of the value.
                let Some((sp, sv)) = resume.as_mut() else {
                    return false;
                };
                if *sv >= v.len() {
                    return false;
                }
                *sv += 1;
                pi = *sp;
                vi = *sv;
            }
        }
    }
}

/// True if the string holds a wildcard character.
pub fn contains_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_slashes_and_empty() {
        assert!(matches("*", ""));
        assert!(matches("a*", "a/b/c"));
        assert!(matches("*.io/*", "ghcr.io/x/y:1"));
        assert!(!matches("a*", "ba"));
    }

    #[test]
    fn question_mark_matches_exactly_one() {
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(!matches("a?", "a"));
    }

    #[test]
    fn agrees_with_wildmatch() {
        let patterns = [
            "*",
            "?",
            "a*",
            "*a",
            "*a*",
            "a?c",
            "?*",
            "*?",
            "a*b*c",
            "**",
            "*:* ",
            "*:*",
            "!*:latest",
            "ghcr.io/*",
            "é?",
            "*é",
            "a*a",
            "*aa",
            "a**b",
            "?a?",
        ];
        let values = [
            "",
            "a",
            "ab",
            "abc",
            "aa",
            "aaa",
            "ba",
            "nginx:1.2",
            "ghcr.io/x:1",
            "é",
            "éé",
            "aéb",
            "acb",
            "abcabc",
            "a:b",
            "xaay",
        ];
        for p in patterns {
            for v in values {
                assert_eq!(
                    glob(p, v),
                    wildmatch::WildMatch::new(p).matches(v),
                    "{p:?} {v:?}"
                );
            }
        }
    }

    #[test]
    fn literal_is_exact() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abcd"));
    }
}
