//! `match`/`exclude`: whether a rule selects a request by kind, name, namespace, labels,
//! annotations, operation and requesting user.

use crate::context::Labels;
use crate::policy::{LabelSelector, MatchResources, ResourceDescription, ResourceFilter, Subject};
use crate::request::{AdmissionRequest, Gvk};
use crate::wildcard;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What matching needs to know about the request, computed once per request.
pub struct MatchSubject<'a> {
    pub request: &'a AdmissionRequest,
    pub gvk: Gvk,
    pub name: &'a str,
    pub namespace: &'a str,
    /// The object's `metadata`; its labels and annotations are copied out only when a rule
    /// selects by them (most rules do not, and a chain of mutations builds many subjects).
    meta: Option<&'a Value>,
    labels: OnceLock<BTreeMap<String, String>>,
    annotations: OnceLock<BTreeMap<String, String>>,
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

impl<'a> MatchSubject<'a> {
    pub fn new(request: &'a AdmissionRequest) -> Self {
        let resource = request.resource();
        let meta = resource.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                meta.and_then(|m| m.get("generateName"))
                    .and_then(Value::as_str)
            })
            .unwrap_or_default();
        MatchSubject {
            request,
            gvk: request.gvk(),
            name,
            namespace: request.namespace(),
            meta,
            labels: OnceLock::new(),
            annotations: OnceLock::new(),
        }
    }

    /// The object's labels, values as strings.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.labels
            .get_or_init(|| string_map(self.meta.and_then(|m| m.get("labels"))))
    }

    /// The object's annotations, values as strings.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        self.annotations
            .get_or_init(|| string_map(self.meta.and_then(|m| m.get("annotations"))))
    }
}

/// Does `match` select the request?
pub fn matches(m: &MatchResources, s: &MatchSubject) -> bool {
    if !m.any.is_empty() {
        return m.any.iter().any(|f| filter_matches(f, s, true));
    }
    if !m.all.is_empty() {
        return m.all.iter().all(|f| filter_matches(f, s, true));
    }
    m.inline_filter()
        .is_some_and(|f| filter_matches(&f, s, true))
}

/// The kinds `match` can select when that is a plain list (every filter that decides names
/// kinds without wildcards); `None` otherwise. A request of another kind cannot match.
pub fn kind_filter(m: &MatchResources) -> Option<Vec<String>> {
    let plain_kinds = |d: &ResourceDescription| -> Option<Vec<String>> {
        if d.kinds.is_empty() {
            return None;
        }
        d.kinds
            .iter()
            .map(|sel| {
                let k = parse_kind(sel);
                (!wildcard::contains_wildcard(k.kind) && !k.kind.is_empty())
                    .then(|| k.kind.to_string())
            })
            .collect()
    };
    let mut kinds = if !m.any.is_empty() {
        // Any filter may select: each must name its kinds.
        let mut all = Vec::new();
        for f in &m.any {
            all.extend(plain_kinds(&f.resources)?);
        }
        all
    } else if !m.all.is_empty() {
        // Every filter must select: one that names kinds is enough.
        m.all.iter().find_map(|f| plain_kinds(&f.resources))?
    } else {
        plain_kinds(m.resources.as_ref()?)?
    };
    kinds.sort();
    kinds.dedup();
    Some(kinds)
}

/// Does `exclude` remove the request?
pub fn excluded(m: &MatchResources, s: &MatchSubject) -> bool {
    if !m.any.is_empty() {
        return m.any.iter().any(|f| filter_matches(f, s, false));
    }
    if !m.all.is_empty() {
        return m.all.iter().all(|f| filter_matches(f, s, false));
    }
    m.inline_filter()
        .is_some_and(|f| filter_matches(&f, s, false))
}

/// The first criterion of a filter that does not hold for a request (see [`filter_mismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The filter names no resources and no user criteria.
    Empty,
    Kind,
    Operation,
    Name,
    Namespace,
    Annotations,
    Selector,
    NamespaceSelector,
    Roles,
    ClusterRoles,
    Subjects,
}

fn filter_matches(f: &ResourceFilter, s: &MatchSubject, is_match: bool) -> bool {
    filter_mismatch(f, s, is_match).is_none()
}

/// Why a `match` (`is_match`) or `exclude` filter does not select the request; `None` when it
/// does.
pub fn filter_mismatch(f: &ResourceFilter, s: &MatchSubject, is_match: bool) -> Option<Mismatch> {
    if !f.resources.is_empty()
        && let Some(m) = description_mismatch(&f.resources, s)
    {
        return Some(m);
    }
    if !f.has_user_criteria() {
        return f.resources.is_empty().then_some(Mismatch::Empty);
    }
    // Without admission user information, the user criteria of match blocks are ignored.
    if s.request.no_user_info {
        return (!is_match).then_some(Mismatch::Subjects);
    }
    user_mismatch(f, s)
}

fn user_mismatch(f: &ResourceFilter, s: &MatchSubject) -> Option<Mismatch> {
    let req = s.request;
    if !f.roles.is_empty() && !f.roles.iter().any(|r| req.roles.contains(r)) {
        return Some(Mismatch::Roles);
    }
    if !f.cluster_roles.is_empty()
        && !f
            .cluster_roles
            .iter()
            .any(|r| req.cluster_roles.contains(r))
    {
        return Some(Mismatch::ClusterRoles);
    }
    if !f.subjects.is_empty() && !f.subjects.iter().any(|sub| subject_matches(sub, req)) {
        return Some(Mismatch::Subjects);
    }
    None
}

fn subject_matches(sub: &Subject, req: &AdmissionRequest) -> bool {
    let user = &req.user_info;
    match sub.kind.as_str() {
        "User" => wildcard::matches(&sub.name, &user.username),
        "Group" => user.groups.iter().any(|g| wildcard::matches(&sub.name, g)),
        "ServiceAccount" => {
            let ns = sub.namespace.as_deref().unwrap_or_default();
            wildcard::matches(
                &format!("system:serviceaccount:{ns}:{}", sub.name),
                &user.username,
            )
        }
        _ => false,
    }
}

fn description_mismatch(d: &ResourceDescription, s: &MatchSubject) -> Option<Mismatch> {
    if !d.kinds.is_empty()
        && !d
            .kinds
            .iter()
            .any(|k| kind_matches(k, &s.gvk, &s.request.subresource))
    {
        return Some(Mismatch::Kind);
    }
    if !d.operations.is_empty()
        && !d
            .operations
            .iter()
            .any(|o| o.eq_ignore_ascii_case(s.request.operation.as_str()))
    {
        return Some(Mismatch::Operation);
    }
    if let Some(name) = &d.name
        && !wildcard::matches(name, s.name)
    {
        return Some(Mismatch::Name);
    }
    if !d.names.is_empty() && !d.names.iter().any(|n| wildcard::matches(n, s.name)) {
        return Some(Mismatch::Name);
    }
    if !d.namespaces.is_empty() {
        let ns = if s.gvk.kind == "Namespace" {
            s.name
        } else {
            s.namespace
        };
        if !d.namespaces.iter().any(|n| wildcard::matches(n, ns)) {
            return Some(Mismatch::Namespace);
        }
    }
    if !d.annotations.is_empty()
        && !d.annotations.iter().all(|(k, v)| {
            s.annotations()
                .iter()
                .any(|(rk, rv)| wildcard::matches(k, rk) && wildcard::matches(v, rv))
        })
    {
        return Some(Mismatch::Annotations);
    }
    if let Some(sel) = &d.selector
        && !selector_matches(sel, s.labels())
    {
        return Some(Mismatch::Selector);
    }
    if let Some(sel) = &d.namespace_selector {
        if s.gvk.kind == "Namespace" {
            return Some(Mismatch::NamespaceSelector);
        }
        let empty = Labels::new();
        let labels = s.request.namespace_labels.as_ref().unwrap_or(&empty);
        if !selector_matches(sel, labels) {
            return Some(Mismatch::NamespaceSelector);
        }
    }
    None
}

fn is_version(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = rest.get(digits..).unwrap_or_default();
    if tail.is_empty() {
        return true;
    }
    let tail = tail
        .strip_prefix("alpha")
        .or_else(|| tail.strip_prefix("beta"));
    tail.is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
}

/// A parsed kind selector: group, version, kind, subresource (`None`: the main resource only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSelector<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub subresource: Option<&'a str>,
}

/// Parses a kind selector as Kyverno does (`Pod`, `Pod/exec`, `Pod.status`, `v1/Pod`,
/// `apps/v1/Deployment`, `*/scale`, ...); unset parts are `*`.
pub fn parse_kind(selector: &str) -> KindSelector<'_> {
    // `Pod.status` is the same as `Pod/status`: only the last segment is split on its first dot.
    let (head, last) = match selector.rsplit_once('/') {
        Some((h, l)) => (Some(h), l),
        None => (None, selector),
    };
    // At most the first four segments matter (`group/version/kind/sub/...`): no allocation.
    let mut buf = [""; 4];
    let mut len = 0usize;
    let (kind_part, sub_part) = match last.split_once('.') {
        Some((k, sub)) => (k, Some(sub)),
        None => (last, None),
    };
    let segments = head
        .into_iter()
        .flat_map(|h| h.split('/'))
        .chain(std::iter::once(kind_part))
        .chain(sub_part);
    for part in segments {
        if let Some(slot) = buf.get_mut(len) {
            *slot = part;
        }
        len += 1;
    }
    let parts = buf.get(..len.min(4)).unwrap_or_default();
    match parts {
        [kind] => KindSelector {
            group: "*",
            version: "*",
            kind,
            subresource: None,
        },
        // `*/scale`: any kind's subresource (subresources are lower case).
        ["*", sub] if *sub != "*" && sub.chars().all(|c| !c.is_ascii_uppercase()) => KindSelector {
            group: "*",
            version: "*",
            kind: "*",
            subresource: Some(sub),
        },
        ["*", "*"] => KindSelector {
            group: "*",
            version: "*",
            kind: "*",
            subresource: Some("*"),
        },
        [first, second] if is_version(first) => KindSelector {
            group: "*",
            version: first,
            kind: second,
            subresource: None,
        },
        [kind, sub] => KindSelector {
            group: "*",
            version: "*",
            kind,
            subresource: Some(sub),
        },
        [first, kind, sub] if is_version(first) => KindSelector {
            group: "*",
            version: first,
            kind,
            subresource: Some(sub),
        },
        [group, version, kind] => KindSelector {
            group,
            version,
            kind,
            subresource: None,
        },
        [group, version, kind, sub, ..] => KindSelector {
            group,
            version,
            kind,
            subresource: Some(sub),
        },
        [] => KindSelector {
            group: "",
            version: "",
            kind: "",
            subresource: None,
        },
    }
}

/// Does a kind selector (`Pod`, `apps/v1/Deployment`, `Pod/exec`, `*`) select the request kind?
pub fn kind_matches(selector: &str, gvk: &Gvk, subresource: &str) -> bool {
    // The common case, a plain kind (`Pod`), needs no parsing.
    if !selector
        .bytes()
        .any(|b| matches!(b, b'/' | b'.' | b'*' | b'?'))
    {
        return selector == gvk.kind
            && (subresource.is_empty()
                || (gvk.kind == "Pod" && subresource == "ephemeralcontainers"));
    }
    // Without wildcards or dots the kind is one of the `/` segments: most selectors of other
    // kinds (`apps/v1/Deployment` for a Pod) are ruled out without parsing.
    if !selector.bytes().any(|b| matches!(b, b'.' | b'*' | b'?'))
        && !selector.split('/').any(|seg| seg == gvk.kind)
    {
        return false;
    }
    let k = parse_kind(selector);
    if !wildcard::matches(k.group, &gvk.group)
        || !wildcard::matches(k.version, &gvk.version)
        || !wildcard::matches(k.kind, &gvk.kind)
    {
        return false;
    }
    match k.subresource {
        None => {
            subresource.is_empty() || (gvk.kind == "Pod" && subresource == "ephemeralcontainers")
        }
        Some(sub) => wildcard::matches(sub, subresource),
    }
}

/// Kyverno expands wildcards in `matchLabels` against the actual labels before matching.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    for (k, v) in &sel.match_labels {
        let ok = if wildcard::contains_wildcard(k) || wildcard::contains_wildcard(v) {
            labels
                .iter()
                .any(|(lk, lv)| wildcard::matches(k, lk) && wildcard::matches(v, lv))
        } else {
            labels.get(k) == Some(v)
        };
        if !ok {
            return false;
        }
    }
    sel.match_expressions.iter().all(|e| {
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| e.values.contains(v)),
            "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvk(g: &str, v: &str, k: &str) -> Gvk {
        Gvk {
            group: g.into(),
            version: v.into(),
            kind: k.into(),
        }
    }

    #[test]
    fn kind_selectors() {
        let pod = gvk("", "v1", "Pod");
        let dep = gvk("apps", "v1", "Deployment");
        let cases = [
            ("Pod", &pod, "", true),
            ("Pod", &dep, "", false),
            ("v1/Pod", &pod, "", true),
            ("apps/v1/Deployment", &dep, "", true),
            ("apps/v1beta1/Deployment", &dep, "", false),
            ("*", &dep, "", true),
            ("Pod", &pod, "exec", false),
            ("Pod/exec", &pod, "exec", true),
            ("Pod.exec", &pod, "exec", true),
            ("Pod", &pod, "ephemeralcontainers", true),
            ("*/*", &pod, "status", true),
            ("v1/Pod/status", &pod, "status", true),
            ("Deploy*", &dep, "", true),
            ("*/scale", &dep, "scale", true),
            ("*/scale", &dep, "", false),
        ];
        for (sel, g, sub, want) in cases {
            assert_eq!(kind_matches(sel, g, sub), want, "{sel} {g:?} {sub}");
        }
    }

    #[test]
    fn selector_with_wildcards() {
        let mut labels = BTreeMap::new();
        labels.insert("app.kubernetes.io/name".to_string(), "web".to_string());
        let sel = LabelSelector {
            match_labels: [("app.kubernetes.io/*".to_string(), "w*".to_string())].into(),
            match_expressions: vec![],
        };
        assert!(selector_matches(&sel, &labels));
        let star = LabelSelector {
            match_labels: [("*".to_string(), "*".to_string())].into(),
            match_expressions: vec![],
        };
        assert!(!selector_matches(&star, &BTreeMap::new()));
    }
}
