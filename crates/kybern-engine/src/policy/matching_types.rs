//! Typed `match`/`exclude` blocks (Kyverno's MatchResources, ResourceFilter, ResourceDescription).

use serde::Deserialize;
use std::collections::BTreeMap;

/// `match` or `exclude`: `any`, `all`, or the legacy inline filter.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchResources {
    #[serde(default)]
    pub any: Vec<ResourceFilter>,
    #[serde(default)]
    pub all: Vec<ResourceFilter>,
    #[serde(default)]
    pub resources: Option<ResourceDescription>,
    #[serde(default)]
    pub subjects: Vec<Subject>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub cluster_roles: Vec<String>,
}

impl MatchResources {
    /// The legacy inline form as a filter.
    pub fn inline_filter(&self) -> Option<ResourceFilter> {
        if self.resources.is_none()
            && self.subjects.is_empty()
            && self.roles.is_empty()
            && self.cluster_roles.is_empty()
        {
            return None;
        }
        Some(ResourceFilter {
            resources: self.resources.clone().unwrap_or_default(),
            subjects: self.subjects.clone(),
            roles: self.roles.clone(),
            cluster_roles: self.cluster_roles.clone(),
        })
    }

    /// Every ResourceDescription in the block.
    pub fn descriptions(&self) -> impl Iterator<Item = &ResourceDescription> {
        self.any
            .iter()
            .chain(self.all.iter())
            .map(|f| &f.resources)
            .chain(self.resources.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.any.is_empty() && self.all.is_empty() && self.inline_filter().is_none()
    }
}

/// One filter: resource criteria and user criteria, all of which must hold.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceFilter {
    #[serde(default)]
    pub resources: ResourceDescription,
    #[serde(default)]
    pub subjects: Vec<Subject>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub cluster_roles: Vec<String>,
}

impl ResourceFilter {
    pub fn has_user_criteria(&self) -> bool {
        !self.subjects.is_empty() || !self.roles.is_empty() || !self.cluster_roles.is_empty()
    }
}

/// Resource criteria of a filter.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDescription {
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub operations: Vec<String>,
}

impl ResourceDescription {
    pub fn is_empty(&self) -> bool {
        self == &ResourceDescription::default()
    }
}

/// A Kubernetes LabelSelector.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// An RBAC subject: `User`, `Group` or `ServiceAccount`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub api_group: Option<String>,
}
