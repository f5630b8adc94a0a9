//! Whether the background controller may do what each policy's background rules ask. The kinds
//! a policy generates or patches are read from its object, checked with SelfSubjectAccessReviews,
//! and the policy gets a `BackgroundPermissions` condition naming what is missing, instead of
//! work that fails later in a log. (Kyverno checks the same at policy admission and refuses the
//! policy; kybern reads policies from the cluster, so it reports on them.)
//!
//! Kinds written through variables and GeneratingPolicies' kinds (they come out of CEL) are not
//! known before the work runs, so they are not checked here; such work fails with the API
//! server's answer on the UpdateRequest.

use crate::discovery::Kinds;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use kybern_engine::cel::mutating_policy::MutatingPolicy;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What writing generated objects takes (synchronize watches, updates and deletes them).
pub const GENERATE_VERBS: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];
/// What patching existing targets takes.
pub const PATCH_VERBS: &[&str] = &["get", "list", "update"];

/// How long an answer is trusted (RBAC changes are seen within this).
const ANSWER_TTL: Duration = Duration::from_secs(300);

/// Access one rule of a policy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// Empty for a MutatingPolicy.
    pub rule: String,
    pub api_version: String,
    pub kind: String,
    /// Where (empty: cluster-wide).
    pub namespace: String,
    pub verbs: &'static [&'static str],
}

fn literal(x: &str) -> bool {
    !x.is_empty() && !x.contains("{{") && !x.contains('*')
}

/// The access a policy object's background rules need, as far as its object names kinds: the
/// kinds its generate rules write (as their objects are deleted with them), its
/// `mutate.targets` kinds, and the kinds a mutate-existing MutatingPolicy lists its targets in.
pub fn needs(doc: &Value) -> Vec<Need> {
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let namespace = s(doc, "/metadata/namespace");
    let mut wanted: Vec<(String, (String, String), &'static [&'static str])> = Vec::new();
    if s(doc, "/apiVersion").starts_with("kyverno.io/") {
        for rule in doc
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = s(rule, "/name");
            if let Some(g) = rule.get("generate") {
                for k in super::generate::downstream_kinds(g) {
                    wanted.push((name.clone(), k, GENERATE_VERBS));
                }
            }
            for t in rule
                .pointer("/mutate/targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                wanted.push((
                    name.clone(),
                    (s(t, "/apiVersion"), s(t, "/kind")),
                    PATCH_VERBS,
                ));
            }
        }
    } else if let Ok(m) = MutatingPolicy::compile(doc)
        && m.mutates_existing()
    {
        for k in m.target_kinds() {
            wanted.push((String::new(), k, PATCH_VERBS));
        }
    }
    let mut out: Vec<Need> = Vec::new();
    for (rule, (api_version, kind), verbs) in wanted {
        if !literal(&api_version) || !literal(&kind) {
            continue;
        }
        let need = Need {
            rule,
            api_version,
            kind,
            namespace: namespace.clone(),
            verbs,
        };
        if !out.contains(&need) {
            out.push(need);
        }
    }
    out
}

/// Asks the API server what the controller may do, remembering answers for a while.
pub struct Checker {
    client: kube::Client,
    answers: HashMap<(String, String, String, String), (bool, Instant)>,
}

impl Checker {
    pub fn new(client: kube::Client) -> Self {
        Checker {
            client,
            answers: HashMap::new(),
        }
    }

    /// Forgets the answers (policies changed: ask again, RBAC may have changed with them).
    pub fn forget(&mut self) {
        self.answers.clear();
    }

    /// The verbs each need lacks, as `verb resource.group` phrases by rule; kinds the cluster
    /// does not serve are left to the work itself. `Err` when the API server could not be asked.
    pub async fn missing(
        &mut self,
        kinds: &Kinds,
        needs: &[Need],
    ) -> Result<BTreeMap<String, Vec<String>>, kube::Error> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for need in needs {
            let group = need.api_version.split_once('/').map_or("", |(g, _)| g);
            let Some(plural) = kinds
                .by_api_version(&need.api_version, &need.kind)
                .map(|r| r.plural.clone())
            else {
                continue;
            };
            let mut lacking = Vec::new();
            for verb in need.verbs {
                if !self.allowed(group, &plural, verb, &need.namespace).await? {
                    lacking.push(*verb);
                }
            }
            if !lacking.is_empty() {
                let resource = if group.is_empty() {
                    plural
                } else {
                    format!("{plural}.{group}")
                };
                let rule = if need.rule.is_empty() {
                    String::new()
                } else {
                    format!(" (rule {})", need.rule)
                };
                let place = if need.namespace.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", need.namespace)
                };
                out.entry(need.rule.clone())
                    .or_default()
                    .push(format!("{} {resource}{place}{rule}", lacking.join(", ")));
            }
        }
        Ok(out)
    }

    async fn allowed(
        &mut self,
        group: &str,
        resource: &str,
        verb: &str,
        namespace: &str,
    ) -> Result<bool, kube::Error> {
        let key = (
            group.to_string(),
            resource.to_string(),
            verb.to_string(),
            namespace.to_string(),
        );
        if let Some((allowed, at)) = self.answers.get(&key)
            && at.elapsed() < ANSWER_TTL
        {
            return Ok(*allowed);
        }
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    verb: Some(verb.to_string()),
                    namespace: Some(namespace.to_string()).filter(|n| !n.is_empty()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.answers.insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }
}

/// The condition for a policy given what it lacks.
pub fn condition(missing: &BTreeMap<String, Vec<String>>) -> Value {
    if missing.is_empty() {
        return json!({
            "type": crate::status::BACKGROUND_PERMISSIONS,
            "status": "True",
            "reason": "Granted",
            "message": "the background controller may write the kinds this policy's background rules name",
        });
    }
    let lacking: Vec<String> = missing.values().flatten().cloned().collect();
    json!({
        "type": crate::status::BACKGROUND_PERMISSIONS,
        "status": "False",
        "reason": "Forbidden",
        "message": format!(
            "the background controller may not {}: grant them to its ServiceAccount (the chart \
             aggregates ClusterRoles labelled rbac.kybern.io/aggregate-to-background: \"true\"); \
             until then this work fails",
            lacking.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_and_target_kinds_are_named_and_variables_are_not() {
        let doc = json!({"apiVersion": "kyverno.io/v1", "kind": "Policy",
            "metadata": {"name": "p", "namespace": "team"},
            "spec": {"rules": [
                {"name": "gen", "generate": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "cloneList": {"kinds": ["v1/Secret"]}}},
                {"name": "var", "generate": {"apiVersion": "v1", "kind": "{{request.object.kind}}"}},
                {"name": "patch", "mutate": {"targets": [{"apiVersion": "v1", "kind": "ConfigMap"}]}}]}});
        let n = needs(&doc);
        assert_eq!(n.len(), 3, "{n:?}");
        assert_eq!(n[0].kind, "NetworkPolicy");
        assert_eq!(n[0].verbs, GENERATE_VERBS);
        assert_eq!(n[0].namespace, "team");
        assert_eq!(n[1].kind, "Secret");
        assert_eq!(n[2].verbs, PATCH_VERBS);
        assert_eq!(n[2].rule, "patch");
    }

    #[test]
    fn mutate_existing_policies_name_their_target_resources() {
        let mpol = |targets: Value| {
            json!({"apiVersion": "policies.kyverno.io/v1beta1", "kind": "MutatingPolicy",
                "metadata": {"name": "m"},
                "spec": {"evaluation": {"mutateExisting": {"enabled": true}},
                    "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]},
                    "targetMatchConstraints": targets}})
        };
        let own = needs(&mpol(json!({"resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps", "*"]}]})));
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].kind, "ConfigMap");
        assert_eq!(own[0].api_version, "v1");
        let fallback = needs(&mpol(Value::Null));
        assert_eq!(fallback[0].api_version, "apps/v1");
        assert!(
            needs(&mpol(
                json!({"expression": "resource.List('v1', 'configmaps', '')"})
            ))
            .is_empty()
        );
    }

    #[test]
    fn the_condition_names_what_is_missing() {
        let mut missing = BTreeMap::new();
        assert_eq!(condition(&missing)["status"], "True");
        missing.insert(
            "gen".to_string(),
            vec!["create networkpolicies.networking.k8s.io (rule gen)".to_string()],
        );
        let c = condition(&missing);
        assert_eq!(c["status"], "False");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("create networkpolicies")
        );
    }
}
