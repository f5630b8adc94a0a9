//! The cluster's kinds, from API discovery: what kind selectors in policies resolve to, and
//! which version of each watched kind the API server serves.

use crate::error::ClusterError;
use crate::webhooks::{KindResolver, Resource};
use kube::discovery::{Discovery, Scope};

/// A snapshot of discovery.
#[derive(Debug, Clone, Default)]
pub struct Kinds {
    resources: Vec<Resource>,
}

impl KindResolver for Kinds {
    fn resources(&self) -> &[Resource] {
        &self.resources
    }
}

impl Kinds {
    /// Asks the API server for every group, version and resource.
    pub async fn discover(client: &kube::Client) -> Result<Kinds, ClusterError> {
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut resources = Vec::new();
        for group in discovery.groups() {
            let preferred = group.preferred_version_or_latest().to_string();
            let versions: Vec<String> = group.versions().map(str::to_string).collect();
            for version in versions {
                for (ar, caps) in group.versioned_resources(&version) {
                    resources.push(Resource {
                        group: ar.group.clone(),
                        version: ar.version.clone(),
                        kind: ar.kind.clone(),
                        plural: ar.plural.clone(),
                        namespaced: caps.scope == Scope::Namespaced,
                        subresources: caps
                            .subresources
                            .iter()
                            .map(|(sub, _)| sub.plural.clone())
                            .collect(),
                        preferred: version == preferred,
                    });
                }
            }
        }
        resources.sort();
        Ok(Kinds { resources })
    }

    /// A fixed snapshot (tests).
    pub fn from_resources(mut resources: Vec<Resource>) -> Kinds {
        resources.sort();
        Kinds { resources }
    }

    /// The served version of a group's kind: the preferred one when it serves the kind.
    pub fn find(&self, group: &str, kind: &str) -> Option<&Resource> {
        let mut matching = self
            .resources
            .iter()
            .filter(|r| r.group == group && r.kind == kind);
        let all: Vec<&Resource> = matching.by_ref().collect();
        all.iter()
            .find(|r| r.preferred)
            .or_else(|| all.last())
            .copied()
    }

    /// The resource of `apiVersion` + `kind`.
    pub fn by_api_version(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }
}
