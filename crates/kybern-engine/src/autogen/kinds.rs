//! Kind strings as Kyverno reads them in match/exclude blocks (`Pod`, `v1/Pod`, `Pod/status`,
//! `apps/v1/Deployment`) and the group/version Kyverno writes for generated rules.

use serde_json::Value;

/// The `kinds` of a resource description, non-strings ignored.
pub(super) fn kinds_of(description: Option<&Value>) -> Vec<&str> {
    description
        .and_then(|d| d.get("kinds"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Kyverno's `ContainsKind`: some entry names `kind` once group, version and subresource are
/// stripped (`v1/Pod`, `Pod/status` and `*/Pod` all count as `Pod`).
pub(super) fn contains_kind(list: &[&str], kind: &str) -> bool {
    list.iter().any(|entry| {
        let k = kind_from_gvk(entry);
        let base = match k.split('/').collect::<Vec<_>>().as_slice() {
            [kind, _subresource] => (*kind).to_string(),
            _ => k,
        };
        base == kind
    })
}

/// The kind part of a kind string (`GetKindFromGVK`), with a subresource kept as `Kind/sub`.
fn kind_from_gvk(s: &str) -> String {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [one] => subresource_with_slash(one),
        ["*", "*"] => "*/*".to_string(),
        [first, second] if is_version(first) => subresource_with_slash(second),
        [first, second] => format!("{first}/{second}"),
        [first, second, third] if is_version(first) => format!("{second}/{third}"),
        [_, _, third] => subresource_with_slash(third),
        [_, _, third, fourth] => format!("{third}/{fourth}"),
        _ => String::new(),
    }
}

/// `Pod.status` is accepted as `Pod/status`: the first dot becomes a slash.
fn subresource_with_slash(s: &str) -> String {
    s.replacen('.', "/", 1)
}

/// Kyverno's version test `^v\d((alpha|beta)\d)?|\*$`: it only anchors the start of the first
/// branch, so any `v<digit>…` prefix, or anything ending in `*`, counts as a version.
fn is_version(s: &str) -> bool {
    let mut chars = s.chars();
    let starts_like_version =
        chars.next() == Some('v') && chars.next().is_some_and(|c| c.is_ascii_digit());
    starts_like_version || s.ends_with('*')
}

/// The group/version/kind Kyverno writes for a controller kind; unknown kinds stay as given.
pub(super) fn gvk_for_kind(kind: &str) -> &str {
    match kind {
        "DaemonSet" => "apps/v1/DaemonSet",
        "Deployment" => "apps/v1/Deployment",
        "Job" => "batch/v1/Job",
        "StatefulSet" => "apps/v1/StatefulSet",
        "ReplicaSet" => "apps/v1/ReplicaSet",
        "ReplicationController" => "v1/ReplicationController",
        "CronJob" => "batch/v1/CronJob",
        "Pod" => "v1/Pod",
        other => other,
    }
}

/// The kinds as a JSON array of their GVK strings.
pub(super) fn gvk_array(kinds: &[String]) -> Value {
    Value::Array(
        kinds
            .iter()
            .map(|k| Value::String(gvk_for_kind(k).to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_kind_strips_group_version_and_subresource() {
        let cases: &[(&[&str], bool)] = &[
            (&["Pod"], true),
            (&["v1/Pod"], true),
            (&["*/Pod"], true),
            (&["Pod/status"], true),
            (&["Pod.status"], true),
            (&["v1/Pod/ephemeralcontainers"], true),
            (&["core/v1/Pod"], true),
            (&["Deployment", "Pod"], true),
            (&["Deployment"], false),
            (&["PodTemplate"], false),
            (&["apps/Pod"], false),
            (&[], false),
        ];
        for (list, want) in cases {
            assert_eq!(contains_kind(list, "Pod"), *want, "{list:?}");
        }
    }

    #[test]
    fn gvk_maps_known_controllers_and_keeps_unknown_kinds() {
        assert_eq!(gvk_for_kind("Deployment"), "apps/v1/Deployment");
        assert_eq!(
            gvk_for_kind("ReplicationController"),
            "v1/ReplicationController"
        );
        assert_eq!(gvk_for_kind("CronJob"), "batch/v1/CronJob");
        assert_eq!(gvk_for_kind("CloneSet"), "CloneSet");
    }
}
