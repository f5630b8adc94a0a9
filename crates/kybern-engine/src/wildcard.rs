//! Kyverno's wildcard matching: `*` matches any run of characters (including `/`),
//! `?` matches exactly one character; there are no escapes.

use wildmatch::WildMatch;

/// True if `value` matches the wildcard `pattern`.
pub fn matches(pattern: &str, value: &str) -> bool {
    if !contains_wildcard(pattern) {
        return pattern == value;
    }
    WildMatch::new(pattern).matches(value)
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
    fn literal_is_exact() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abcd"));
    }
}
