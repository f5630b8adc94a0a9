//! Resource types the fake serves: names, scope and subresources, and the built-in set.

/// One served resource type (one version of it), as discovery describes it.
///
/// Objects are stored per group and plural, so every served version of a type sees the same
/// objects (no conversion: only `apiVersion` differs between versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// Version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Plural resource name used in paths, e.g. `configmaps`.
    pub plural: String,
    /// Singular name, e.g. `configmap`.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the type has a `status` subresource (writes to the main resource then keep `status`).
    pub has_status: bool,
    /// Short names for `kubectl`, e.g. `cm`.
    pub short_names: Vec<String>,
}

impl ResourceType {
    /// A type with the singular name derived from the kind and no status or short names.
    pub fn new(api_version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceType {
        let (group, version) = split_api_version(api_version);
        ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            has_status: false,
            short_names: Vec::new(),
        }
    }

    /// The same type with a `status` subresource.
    pub fn with_status(mut self) -> ResourceType {
        self.has_status = true;
        self
    }

    /// The same type with these short names.
    pub fn with_short_names(mut self, names: &[&str]) -> ResourceType {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The types every fake server starts with.
pub(crate) fn builtin() -> Vec<ResourceType> {
    const ADMISSION: &str = "admissionregistration.k8s.io/v1";
    const ADMISSION_BETA: &str = "admissionregistration.k8s.io/v1beta1";
    const RBAC: &str = "rbac.authorization.k8s.io/v1";
    let t = ResourceType::new;
    vec![
        t("v1", "Namespace", "namespaces", false).with_short_names(&["ns"]),
        t("v1", "ConfigMap", "configmaps", true).with_short_names(&["cm"]),
        t("v1", "Secret", "secrets", true),
        t("v1", "Pod", "pods", true)
            .with_status()
            .with_short_names(&["po"]),
        t("v1", "Service", "services", true).with_short_names(&["svc"]),
        t("v1", "ResourceQuota", "resourcequotas", true)
            .with_status()
            .with_short_names(&["quota"]),
        t("v1", "LimitRange", "limitranges", true).with_short_names(&["limits"]),
        t("v1", "ServiceAccount", "serviceaccounts", true).with_short_names(&["sa"]),
        t("v1", "Event", "events", true).with_short_names(&["ev"]),
        t("apps/v1", "Deployment", "deployments", true)
            .with_status()
            .with_short_names(&["deploy"]),
        t("apps/v1", "ReplicaSet", "replicasets", true).with_short_names(&["rs"]),
        t("batch/v1", "Job", "jobs", true),
        t("batch/v1", "CronJob", "cronjobs", true).with_short_names(&["cj"]),
        t("coordination.k8s.io/v1", "Lease", "leases", true),
        t(
            ADMISSION,
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        ),
        t(
            ADMISSION,
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        ),
        t(
            ADMISSION,
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            false,
        )
        .with_status(),
        t(
            ADMISSION,
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            false,
        ),
        t(
            ADMISSION_BETA,
            "MutatingAdmissionPolicy",
            "mutatingadmissionpolicies",
            false,
        ),
        t(
            ADMISSION_BETA,
            "MutatingAdmissionPolicyBinding",
            "mutatingadmissionpolicybindings",
            false,
        ),
        t(RBAC, "Role", "roles", true),
        t(RBAC, "RoleBinding", "rolebindings", true),
        t(RBAC, "ClusterRole", "clusterroles", false),
        t(RBAC, "ClusterRoleBinding", "clusterrolebindings", false),
        t(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .with_status()
        .with_short_names(&["crd", "crds"]),
        t("events.k8s.io/v1", "Event", "events", true).with_short_names(&["ev"]),
        t(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        )
        .with_short_names(&["netpol"]),
    ]
}

/// Orders versions as Kubernetes prefers them: GA before beta before alpha, higher numbers
/// first, anything else last by name. Used for `preferredVersion`.
pub(crate) fn version_priority(
    version: &str,
) -> (u8, std::cmp::Reverse<u32>, std::cmp::Reverse<u32>, String) {
    use std::cmp::Reverse;
    let parsed = version.strip_prefix('v').and_then(|rest| {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (major, tail) = rest.split_at(digits);
        let major: u32 = major.parse().ok()?;
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n)
        } else {
            return None;
        };
        Some((level, major, num.parse().ok()?))
    });
    match parsed {
        Some((level, major, minor)) => (level, Reverse(major), Reverse(minor), String::new()),
        None => (3, Reverse(0), Reverse(0), version.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_ga_then_beta_then_alpha_then_other() {
        let mut v = vec![
            "v1alpha1",
            "foo",
            "v1beta1",
            "v2",
            "v1",
            "v1beta2",
            "v10alpha3",
        ];
        v.sort_by_key(|s| version_priority(s));
        assert_eq!(
            v,
            [
                "v2",
                "v1",
                "v1beta2",
                "v1beta1",
                "v10alpha3",
                "v1alpha1",
                "foo"
            ]
        );
    }

    #[test]
    fn api_version_splits_core_and_groups() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(
            ResourceType::new("apps/v1", "Deployment", "deployments", true).api_version(),
            "apps/v1"
        );
    }
}
