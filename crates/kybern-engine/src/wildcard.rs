//! Kyverno's wildcard matching: `*` matches any run of characters (including `/`),
//! `?` matches exactly one character; there are no escapes.

/// True if `value` matches the wildcard `pattern`.
pub fn matches(pattern: &str, value: &str) -> bool {
    if !contains_wildcard(pattern) {
        return pattern == value;
    }
    glob(pattern, value)
}

/// `*`/`?` matching over characters without building a matcher (greedy, backtracking to the
/// last `*`), the same language as `WildMatch`.
type Cursor<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn glob(pattern: &str, value: &str) -> bool {
    let mut p = pattern.chars().peekable();
    let mut v = value.chars().peekable();
    // Where to resume after the last `*`: the pattern after it, and the value position it covers.
    let mut star: Option<(Cursor, Cursor)> = None;
    loop {
        match (p.peek().copied(), v.peek().copied()) {
            (Some('*'), _) => {
                p.next();
                star = Some((p.clone(), v.clone()));
            }
            (Some(pc), Some(vc)) if pc == '?' || pc == vc => {
                p.next();
                v.next();
            }
            (None, None) => return true,
            _ => {
                // Mismatch: let the last `*` cover one more character of the value.
                let Some((sp, sv)) = star.as_mut() else {
                    return false;
                };
                if sv.next().is_none() {
                    return false;
                }
                p = sp.clone();
                v = sv.clone();
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
