//! The custom kinds kybern reads or writes: one table that the CRDs, the watches and the status
//! writer all derive from, so a kind's group, versions, plural and scope are written once.
//!
//! Policies stay schema-agnostic JSON (as Kyverno's own CLI reads them): each kind is described
//! here rather than by a Rust struct per kind, and the engine compiles the object itself.

use kube::api::{ApiResource, GroupVersionKind};

/// A version of a kind, and whether it is the one stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub name: &'static str,
    pub storage: bool,
    pub deprecated: bool,
}

const fn v(name: &'static str) -> Version {
    Version {
        name,
        storage: false,
        deprecated: false,
    }
}

const fn stored(name: &'static str) -> Version {
    Version {
        name,
        storage: true,
        deprecated: false,
    }
}

const fn old(name: &'static str) -> Version {
    Version {
        name,
        storage: false,
        deprecated: true,
    }
}

/// A column of `kubectl get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub json_path: &'static str,
    /// 0: always shown; 1: with `-o wide`.
    pub priority: i32,
}

const fn col(name: &'static str, type_: &'static str, json_path: &'static str) -> Column {
    Column {
        name,
        type_,
        json_path,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, json_path: &'static str) -> Column {
    Column {
        name,
        type_,
        json_path,
        priority: 1,
    }
}

/// What kybern does with objects of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A policy or exception the admission store compiles.
    Policy,
    /// Read by context lookups (GlobalContextEntry).
    Context,
    /// Background work and reports, run by other parts.
    Other,
}

/// One custom kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub versions: &'static [Version],
    pub columns: &'static [Column],
    pub role: Role,
}

impl Kind {
    /// The version objects are stored (and watched) in.
    pub fn storage_version(&self) -> &'static str {
        self.versions
            .iter()
            .find(|v| v.storage)
            .or(self.versions.first())
            .map_or("v1", |v| v.name)
    }

    /// The API resource of the stored version, for dynamic clients and watches.
    pub fn api_resource(&self) -> ApiResource {
        let gvk = GroupVersionKind::gvk(self.group, self.storage_version(), self.kind);
        ApiResource::from_gvk_with_plural(&gvk, self.plural)
    }

    /// `plural.group`: the CRD's name.
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

const AGE: Column = col("Age", "date", ".metadata.creationTimestamp");
const READY: Column = col(
    "Ready",
    "string",
    ".status.conditions[?(@.type == \"Ready\")].status",
);
const MESSAGE: Column = wide(
    "Message",
    "string",
    ".status.conditions[?(@.type == \"Ready\")].message",
);
const KYVERNO_POLICY_COLUMNS: &[Column] = &[
    col("Admission", "boolean", ".spec.admission"),
    col("Background", "boolean", ".spec.background"),
    READY,
    AGE,
    wide(
        "Failure Policy",
        "string",
        ".spec.webhookConfiguration.failurePolicy",
    ),
    wide("Validate", "integer", ".status.rulecount.validate"),
    wide("Mutate", "integer", ".status.rulecount.mutate"),
    wide("Generate", "integer", ".status.rulecount.generate"),
    wide("Verify Images", "integer", ".status.rulecount.verifyimages"),
    MESSAGE,
];
const CEL_POLICY_COLUMNS: &[Column] =
    &[AGE, col("Ready", "string", ".status.conditionStatus.ready")];
const AGE_ONLY: &[Column] = &[AGE];
const REPORT_COLUMNS: &[Column] = &[
    col("Kind", "string", ".scope.kind"),
    col("Name", "string", ".scope.name"),
    col("Pass", "integer", ".summary.pass"),
    col("Fail", "integer", ".summary.fail"),
    col("Warn", "integer", ".summary.warn"),
    col("Error", "integer", ".summary.error"),
    col("Skip", "integer", ".summary.skip"),
    AGE,
];
const CLEANUP_COLUMNS: &[Column] = &[col("Schedule", "string", ".spec.schedule"), AGE];

const KYVERNO_POLICY_VERSIONS: &[Version] = &[stored("v1"), old("v2beta1")];
const KYVERNO_V2_VERSIONS: &[Version] = &[stored("v2"), old("v2beta1")];
const CEL_VERSIONS: &[Version] = &[v("v1alpha1"), v("v1beta1"), stored("v1")];
const KYVERNO: &[&str] = &["kyverno"];
const REPORTS: &[&str] = &["policy-report"];

const fn cel(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
) -> Kind {
    Kind {
        group: "policies.kyverno.io",
        kind,
        plural,
        singular,
        short_names: short,
        categories: KYVERNO,
        namespaced,
        versions: CEL_VERSIONS,
        columns: CEL_POLICY_COLUMNS,
        role: Role::Policy,
    }
}

/// Every custom kind kybern serves, in the order `kybern crds` prints them.
pub const KINDS: &[Kind] = &[
    Kind {
        group: "kyverno.io",
        kind: "ClusterPolicy",
        plural: "clusterpolicies",
        singular: "clusterpolicy",
        short_names: &["cpol"],
        categories: KYVERNO,
        namespaced: false,
        versions: KYVERNO_POLICY_VERSIONS,
        columns: KYVERNO_POLICY_COLUMNS,
        role: Role::Policy,
    },
    Kind {
        group: "kyverno.io",
        kind: "Policy",
        plural: "policies",
        singular: "policy",
        short_names: &["pol"],
        categories: KYVERNO,
        namespaced: true,
        versions: KYVERNO_POLICY_VERSIONS,
        columns: KYVERNO_POLICY_COLUMNS,
        role: Role::Policy,
    },
    Kind {
        group: "kyverno.io",
        kind: "PolicyException",
        plural: "policyexceptions",
        singular: "policyexception",
        short_names: &["polex"],
        categories: KYVERNO,
        namespaced: true,
        versions: KYVERNO_V2_VERSIONS,
        columns: AGE_ONLY,
        role: Role::Policy,
    },
    Kind {
        group: "kyverno.io",
        kind: "ClusterCleanupPolicy",
        plural: "clustercleanuppolicies",
        singular: "clustercleanuppolicy",
        short_names: &["ccleanpol"],
        categories: KYVERNO,
        namespaced: false,
        versions: KYVERNO_V2_VERSIONS,
        columns: CLEANUP_COLUMNS,
        role: Role::Other,
    },
    Kind {
        group: "kyverno.io",
        kind: "CleanupPolicy",
        plural: "cleanuppolicies",
        singular: "cleanuppolicy",
        short_names: &["cleanpol"],
        categories: KYVERNO,
        namespaced: true,
        versions: KYVERNO_V2_VERSIONS,
        columns: CLEANUP_COLUMNS,
        role: Role::Other,
    },
    Kind {
        group: "kyverno.io",
        kind: "GlobalContextEntry",
        plural: "globalcontextentries",
        singular: "globalcontextentry",
        short_names: &["gctxentry"],
        categories: KYVERNO,
        namespaced: false,
        versions: &[stored("v2alpha1")],
        columns: AGE_ONLY,
        role: Role::Context,
    },
    Kind {
        group: "kyverno.io",
        kind: "UpdateRequest",
        plural: "updaterequests",
        singular: "updaterequest",
        short_names: &["ur"],
        categories: KYVERNO,
        namespaced: true,
        versions: &[stored("v2"), old("v1beta1")],
        columns: &[
            col("Policy", "string", ".spec.policy"),
            col("RuleType", "string", ".spec.requestType"),
            col("Status", "string", ".status.state"),
            AGE,
        ],
        role: Role::Other,
    },
    cel(
        "ValidatingPolicy",
        "validatingpolicies",
        "validatingpolicy",
        &["vpol"],
        false,
    ),
    cel(
        "NamespacedValidatingPolicy",
        "namespacedvalidatingpolicies",
        "namespacedvalidatingpolicy",
        &["nvpol"],
        true,
    ),
    cel(
        "MutatingPolicy",
        "mutatingpolicies",
        "mutatingpolicy",
        &["mpol"],
        false,
    ),
    cel(
        "NamespacedMutatingPolicy",
        "namespacedmutatingpolicies",
        "namespacedmutatingpolicy",
        &["nmpol"],
        true,
    ),
    cel(
        "GeneratingPolicy",
        "generatingpolicies",
        "generatingpolicy",
        &["gpol"],
        false,
    ),
    cel(
        "NamespacedGeneratingPolicy",
        "namespacedgeneratingpolicies",
        "namespacedgeneratingpolicy",
        &["ngpol"],
        true,
    ),
    cel(
        "DeletingPolicy",
        "deletingpolicies",
        "deletingpolicy",
        &["dpol"],
        false,
    ),
    cel(
        "NamespacedDeletingPolicy",
        "namespaceddeletingpolicies",
        "namespaceddeletingpolicy",
        &["ndpol"],
        true,
    ),
    cel(
        "ImageValidatingPolicy",
        "imagevalidatingpolicies",
        "imagevalidatingpolicy",
        &["ivpol"],
        false,
    ),
    cel(
        "NamespacedImageValidatingPolicy",
        "namespacedimagevalidatingpolicies",
        "namespacedimagevalidatingpolicy",
        &["nivpol"],
        true,
    ),
    Kind {
        group: "policies.kyverno.io",
        kind: "PolicyException",
        plural: "policyexceptions",
        singular: "policyexception",
        short_names: &["celpolex"],
        categories: KYVERNO,
        namespaced: true,
        versions: CEL_VERSIONS,
        columns: AGE_ONLY,
        role: Role::Policy,
    },
    Kind {
        group: "wgpolicyk8s.io",
        kind: "PolicyReport",
        plural: "policyreports",
        singular: "policyreport",
        short_names: &["polr"],
        categories: REPORTS,
        namespaced: true,
        versions: &[stored("v1alpha2")],
        columns: REPORT_COLUMNS,
        role: Role::Other,
    },
    Kind {
        group: "wgpolicyk8s.io",
        kind: "ClusterPolicyReport",
        plural: "clusterpolicyreports",
        singular: "clusterpolicyreport",
        short_names: &["cpolr"],
        categories: REPORTS,
        namespaced: false,
        versions: &[stored("v1alpha2")],
        columns: REPORT_COLUMNS,
        role: Role::Other,
    },
    Kind {
        group: "openreports.io",
        kind: "Report",
        plural: "reports",
        singular: "report",
        short_names: &["reps"],
        categories: REPORTS,
        namespaced: true,
        versions: &[stored("v1alpha1")],
        columns: REPORT_COLUMNS,
        role: Role::Other,
    },
    Kind {
        group: "openreports.io",
        kind: "ClusterReport",
        plural: "clusterreports",
        singular: "clusterreport",
        short_names: &["creps"],
        categories: REPORTS,
        namespaced: false,
        versions: &[stored("v1alpha1")],
        columns: REPORT_COLUMNS,
        role: Role::Other,
    },
];

/// The kind of an object by its apiVersion's group and its kind.
pub fn find(group: &str, kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_kind_has_exactly_one_storage_version_and_unique_names() {
        let mut crds = HashSet::new();
        let mut short = HashSet::new();
        for k in KINDS {
            assert_eq!(
                k.versions.iter().filter(|v| v.storage).count(),
                1,
                "{}",
                k.kind
            );
            assert!(crds.insert(k.crd_name()), "{}", k.crd_name());
            for s in k.short_names {
                assert!(short.insert(*s), "short name {s} used twice");
            }
            assert_eq!(k.plural, k.plural.to_lowercase());
        }
    }

    #[test]
    fn api_resource_uses_the_storage_version_and_plural() {
        let k = find("kyverno.io", "ClusterPolicy").unwrap();
        let r = k.api_resource();
        assert_eq!(r.api_version, "kyverno.io/v1");
        assert_eq!(r.plural, "clusterpolicies");
        assert_eq!(
            find("policies.kyverno.io", "ValidatingPolicy")
                .unwrap()
                .storage_version(),
            "v1"
        );
    }
}
