//! Anchor keys of the pattern language: `(key)`, `<(key)`, `=(key)`, `^(key)`, `X(key)`, `+(key)`.

/// The kind of an anchor, named after its role in Kyverno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorKind {
    /// `(key)`: if-then condition; a mismatch skips the enclosing map.
    Condition,
    /// `<(key)`: a mismatch skips the whole rule.
    Global,
    /// `^(key)`: at least one list element must match.
    Existence,
    /// `=(key)`: if the key exists its value must match.
    Equality,
    /// `X(key)`: the key must be absent.
    Negation,
    /// `+(key)`: add-if-not-present, a mutate-only anchor.
    AddIfNotPresent,
}

impl AnchorKind {
    fn modifier(self) -> &'static str {
        match self {
            AnchorKind::Condition => "",
            AnchorKind::Global => "<",
            AnchorKind::Existence => "^",
            AnchorKind::Equality => "=",
            AnchorKind::Negation => "X",
            AnchorKind::AddIfNotPresent => "+",
        }
    }
}

/// A parsed anchor key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor<'a> {
    pub kind: AnchorKind,
    pub key: &'a str,
}

/// Parses a map key as an anchor, following Kyverno's
/// `^(?P<modifier>[+<=X^])?\((?P<key>.+)\)$` on the space-trimmed key.
pub fn parse(raw: &str) -> Option<Anchor<'_>> {
    // Most keys are plain names: rejected on their first byte, before any trimming.
    if !matches!(
        raw.as_bytes().first(),
        Some(b' ' | b'(' | b'<' | b'^' | b'=' | b'X' | b'+')
    ) {
        return None;
    }
    let s = raw.trim_matches(' ');
    let (kind, rest) = match s.as_bytes().first()? {
        b'(' => (AnchorKind::Condition, s),
        b'<' => (AnchorKind::Global, s.get(1..)?),
        b'^' => (AnchorKind::Existence, s.get(1..)?),
        b'=' => (AnchorKind::Equality, s.get(1..)?),
        b'X' => (AnchorKind::Negation, s.get(1..)?),
        b'+' => (AnchorKind::AddIfNotPresent, s.get(1..)?),
        _ => return None,
    };
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    if inner.is_empty() {
        return None;
    }
    Some(Anchor { kind, key: inner })
}

/// Rebuilds an anchor key from its kind and inner key.
pub fn format(kind: AnchorKind, key: &str) -> String {
    format!("{}({})", kind.modifier(), key)
}

/// True for the anchors evaluated in the first phase of a map (Kyverno's `GetAnchorsResourcesFromMap`).
pub fn is_phase_one(kind: AnchorKind) -> bool {
    matches!(
        kind,
        AnchorKind::Condition | AnchorKind::Existence | AnchorKind::Equality | AnchorKind::Negation
    )
}

/// Removes anchors from every segment of a `/`-separated path, then cleans it like Go's `path.Join`.
pub fn remove_anchors_from_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let parts: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .map(|part| parse(part).map_or(part, |a| a.key))
        .collect();
    let joined = super::reference::clean_path(&parts.join("/"));
    if absolute && !joined.starts_with('/') {
        if joined == "." {
            return "/".to_string();
        }
        return format!("/{joined}");
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_anchor_kind() {
        let cases = [
            ("(name)", Some((AnchorKind::Condition, "name"))),
            ("<(name)", Some((AnchorKind::Global, "name"))),
            ("^(list)", Some((AnchorKind::Existence, "list"))),
            ("=(env)", Some((AnchorKind::Equality, "env"))),
            ("X(hostPath)", Some((AnchorKind::Negation, "hostPath"))),
            ("+(label)", Some((AnchorKind::AddIfNotPresent, "label"))),
            (" (spaced) ", Some((AnchorKind::Condition, "spaced"))),
            ("()", None),
            ("(name", None),
            ("name)", None),
            ("Y(name)", None),
            ("name", None),
            ("", None),
        ];
        for (raw, want) in cases {
            let got = parse(raw).map(|a| (a.kind, a.key));
            assert_eq!(got, want, "{raw}");
        }
    }

    #[test]
    fn strips_anchors_from_paths() {
        assert_eq!(
            remove_anchors_from_path("/spec/(containers)/0/=(image)"),
            "/spec/containers/0/image"
        );
        assert_eq!(remove_anchors_from_path("a/^(b)"), "a/b");
    }
}
