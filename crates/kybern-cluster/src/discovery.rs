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

    /// The served version of a group's kind: `wanted` when served, else the group's preferred
    /// version when it serves the kind, else the highest by Kubernetes' version order.
    pub fn find(&self, group: &str, kind: &str, wanted: Option<&str>) -> Option<&Resource> {
        let all: Vec<&Resource> = self
            .resources
            .iter()
            .filter(|r| r.group == group && r.kind == kind)
            .collect();
        all.iter()
            .find(|r| Some(r.version.as_str()) == wanted)
            .or_else(|| all.iter().find(|r| r.preferred))
            .or_else(|| all.iter().max_by_key(|r| version_priority(&r.version)))
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

/// Kubernetes' version order: GA before beta before alpha, then the higher number.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(version: &str, preferred: bool) -> Resource {
        Resource {
            group: "kyverno.io".into(),
            version: version.into(),
            kind: "ClusterPolicy".into(),
            plural: "clusterpolicies".into(),
            namespaced: false,
            subresources: vec![],
            preferred,
        }
    }

    #[test]
    fn the_wanted_version_wins_then_the_preferred_then_the_highest() {
        let k = Kinds::from_resources(vec![res("v1", false), res("v2beta1", false)]);
        assert_eq!(
            k.find("kyverno.io", "ClusterPolicy", Some("v1"))
                .unwrap()
                .version,
            "v1"
        );
        assert_eq!(
            k.find("kyverno.io", "ClusterPolicy", Some("v9"))
                .unwrap()
                .version,
            "v1"
        );
        let k = Kinds::from_resources(vec![res("v1", false), res("v2beta1", true)]);
        assert_eq!(
            k.find("kyverno.io", "ClusterPolicy", None).unwrap().version,
            "v2beta1"
        );
        assert!(version_priority("v2") > version_priority("v1"));
        assert!(version_priority("v1") > version_priority("v2beta1"));
        assert!(version_priority("v1beta2") > version_priority("v1beta1"));
        assert!(version_priority("v1alpha1") < version_priority("v1beta1"));
    }
}
