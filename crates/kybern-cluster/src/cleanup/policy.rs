//! Cleanup policies as the controller runs them: ClusterCleanupPolicy/CleanupPolicy
//! (`kyverno.io/v2`: `match`/`exclude`, `context` entries and JMESPath `conditions` over
//! `target`) and
//! DeletingPolicy/NamespacedDeletingPolicy (`policies.kyverno.io`: `matchConstraints` and CEL
//! `conditions`, evaluated by the engine). Each has a cron `schedule`; the next run is the
//! schedule's next time after `status.lastExecutionTime`, or after the policy's creation.

use super::schedule::Schedule;
use kybern_engine::cel::deleting_policy::{DeleteResult, DeletingPolicy, deleting_kind};
use kybern_engine::context::{ContextProvider, Labels};
use kybern_engine::context_loader::{self, Sources};
use kybern_engine::json_context::JsonContext;
use kybern_engine::matching::{self, MatchSubject};
use kybern_engine::policy::MatchResources;
use kybern_engine::preconditions::ConditionBlock;
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::variables::SubstituteOptions;
use serde_json::Value;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How a policy picks what to delete.
#[derive(Debug, Clone)]
pub enum Selection {
    /// ClusterCleanupPolicy/CleanupPolicy.
    Kyverno {
        matches: Box<MatchResources>,
        exclude: Option<Box<MatchResources>>,
        /// `spec.context` entries, loaded when the conditions read them.
        context: Vec<Value>,
        conditions: Option<ConditionBlock>,
    },
    /// DeletingPolicy/NamespacedDeletingPolicy.
    Cel(Box<DeletingPolicy>),
}

/// Which resources a policy lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A Kyverno kind selector (`Pod`, `apps/v1/Deployment`, `*/ConfigMap`).
    Kind(String),
    /// A `matchConstraints.resourceRules` entry: groups, versions and plurals (`*` for any).
    Rule {
        groups: Vec<String>,
        versions: Vec<String>,
        resources: Vec<String>,
    },
}

/// A compiled cleanup policy.
#[derive(Debug, Clone)]
pub struct CleanupPolicy {
    pub kind: &'static str,
    pub name: String,
    /// Empty for the cluster-wide kinds.
    pub namespace: String,
    pub schedule: Schedule,
    /// `spec.deletionPropagationPolicy`: `Foreground`, `Background` or `Orphan`.
    pub propagation: Option<String>,
    pub selection: Selection,
    pub created: OffsetDateTime,
    pub last_execution: Option<OffsetDateTime>,
}

fn timestamp(doc: &Value, pointer: &str) -> Result<Option<OffsetDateTime>, String> {
    match doc.pointer(pointer).and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(s) => OffsetDateTime::parse(s, &Rfc3339).map(Some).map_err(|e| {
            format!(
                "{}: {s:?} is not an RFC 3339 time: {e}",
                &pointer[1..].replace('/', ".")
            )
        }),
    }
}

/// The cleanup kind of a document, if it is one.
pub fn cleanup_kind(doc: &Value) -> Option<&'static str> {
    if let Some(k) = deleting_kind(doc) {
        return Some(k);
    }
    let api = doc.get("apiVersion").and_then(Value::as_str)?;
    if !api.starts_with("kyverno.io/") {
        return None;
    }
    match doc.get("kind").and_then(Value::as_str)? {
        "ClusterCleanupPolicy" => Some("ClusterCleanupPolicy"),
        "CleanupPolicy" => Some("CleanupPolicy"),
        _ => None,
    }
}

impl CleanupPolicy {
    /// Compiles a policy object as the API server stores it; the error names the field.
    pub fn compile(doc: &Value) -> Result<CleanupPolicy, String> {
        let kind = cleanup_kind(doc).ok_or("not a cleanup policy or DeletingPolicy")?;
        let text = |p: &str| {
            doc.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let spec = doc
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or("spec: is required")?;
        let schedule_text = spec
            .get("schedule")
            .and_then(Value::as_str)
            .ok_or("spec.schedule: is required")?;
        let schedule = Schedule::parse(schedule_text)
            .map_err(|e| format!("spec.schedule: invalid cron schedule: {e}"))?;
        let selection = if kind.ends_with("DeletingPolicy") {
            let compiled = DeletingPolicy::compile(doc).map_err(|e| e.to_string())?;
            Selection::Cel(Box::new(compiled))
        } else {
            let parse = |key: &str| -> Result<Option<Box<MatchResources>>, String> {
                match spec.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => serde_json::from_value(v.clone())
                        .map(|m| Some(Box::new(m)))
                        .map_err(|e| format!("spec.{key}: {e}")),
                }
            };
            Selection::Kyverno {
                matches: parse("match")?.ok_or("spec.match: is required")?,
                exclude: parse("exclude")?,
                context: match spec.get("context") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(entries)) => entries.clone(),
                    Some(_) => return Err("spec.context: must be a list".into()),
                },
                conditions: spec
                    .get("conditions")
                    .filter(|c| !c.is_null())
                    .map(ConditionBlock::compile),
            }
        };
        let namespaced = matches!(kind, "CleanupPolicy" | "NamespacedDeletingPolicy");
        Ok(CleanupPolicy {
            kind,
            name: text("/metadata/name"),
            namespace: if namespaced {
                text("/metadata/namespace")
            } else {
                String::new()
            },
            schedule,
            propagation: spec
                .get("deletionPropagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            selection,
            created: timestamp(doc, "/metadata/creationTimestamp")?
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            last_execution: timestamp(doc, "/status/lastExecutionTime")?,
        })
    }

    /// When the policy runs next.
    pub fn next_run(&self) -> Option<OffsetDateTime> {
        self.schedule
            .next_after(self.last_execution.unwrap_or(self.created))
    }

    /// What to list.
    pub fn wanted(&self) -> Vec<Wanted> {
        match &self.selection {
            Selection::Kyverno { matches, .. } => {
                let mut kinds: Vec<Wanted> = matches
                    .descriptions()
                    .flat_map(|d| d.kinds.iter().cloned())
                    .map(Wanted::Kind)
                    .collect();
                kinds.dedup();
                kinds
            }
            Selection::Cel(p) => p
                .match_constraints
                .iter()
                .flat_map(|m| m.resource_rules.iter())
                .map(|r| Wanted::Rule {
                    groups: r.api_groups.clone(),
                    versions: r.api_versions.clone(),
                    resources: r.resources.clone(),
                })
                .collect(),
        }
    }

    /// Whether `object` (typed: `apiVersion` and `kind` set) is to be deleted.
    pub fn selects(
        &self,
        object: Value,
        namespace_labels: Option<Labels>,
        provider: &dyn ContextProvider,
    ) -> Result<bool, String> {
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A namespaced policy deletes only in its namespace.
        if !self.namespace.is_empty() && ns != self.namespace {
            return Ok(false);
        }
        let request = AdmissionRequest {
            operation: Operation::Create,
            object: Arc::new(object),
            namespace_labels,
            no_user_info: true,
            ..AdmissionRequest::default()
        };
        match &self.selection {
            Selection::Kyverno {
                matches,
                exclude,
                context,
                conditions,
            } => {
                let subject = MatchSubject::new(&request);
                if !matching::matches(matches, &subject)
                    || exclude
                        .as_ref()
                        .is_some_and(|e| matching::excluded(e, &subject))
                {
                    return Ok(false);
                }
                let Some(conditions) = conditions else {
                    return Ok(true);
                };
                let mut ctx = JsonContext::new(&Value::Object(Default::default()));
                ctx.set("target", request.resource());
                let preset = serde_json::Map::new();
                let sources = Sources {
                    provider,
                    policy_namespace: &self.namespace,
                    preset: &preset,
                    opts: SubstituteOptions::default(),
                };
                context_loader::run_deferred(context, &mut ctx, sources, |ctx| {
                    conditions
                        .evaluate(ctx, SubstituteOptions::default(), "spec.conditions")
                        .map(|o| o.met)
                })
                .and_then(|met| met)
            }
            Selection::Cel(p) => match p.evaluate(&request, provider) {
                DeleteResult::Delete => Ok(true),
                DeleteResult::NotMatched | DeleteResult::Keep(_) => Ok(false),
                DeleteResult::Error(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybern_engine::context::NoProvider;
    use serde_json::json;
    use time::macros::datetime;

    fn config_map(name: &str, ns: &str, state: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": {"cleanup": "yes"}},
            "data": {"state": state}})
    }

    #[test]
    fn a_cleanup_policy_selects_by_match_exclude_and_conditions() {
        let p = CleanupPolicy::compile(&json!({
            "apiVersion": "kyverno.io/v2", "kind": "ClusterCleanupPolicy",
            "metadata": {"name": "stale", "creationTimestamp": "2026-03-14T10:07:30Z"},
            "spec": {"schedule": "*/5 * * * *", "deletionPropagationPolicy": "Foreground",
                "match": {"any": [{"resources": {"kinds": ["ConfigMap"], "namespaces": ["app"]}}]},
                "exclude": {"any": [{"resources": {"names": ["keep-*"]}}]},
                "conditions": {"all": [{"key": "{{ target.data.state }}", "operator": "Equals", "value": "stale"}]}}
        }))
        .unwrap();
        assert_eq!(p.next_run(), Some(datetime!(2026-03-14 10:10 UTC)));
        assert_eq!(p.propagation.as_deref(), Some("Foreground"));
        assert_eq!(p.wanted(), vec![Wanted::Kind("ConfigMap".into())]);
        let selects = |o: Value| p.selects(o, None, &NoProvider).unwrap();
        assert!(selects(config_map("a", "app", "stale")));
        assert!(!selects(config_map("a", "app", "fresh")));
        assert!(!selects(config_map("keep-a", "app", "stale")));
        assert!(!selects(config_map("a", "other", "stale")));
    }

    #[test]
    fn a_deleting_policy_selects_by_cel_and_a_namespaced_one_stays_home() {
        let p = CleanupPolicy::compile(&json!({
            "apiVersion": "policies.kyverno.io/v1", "kind": "NamespacedDeletingPolicy",
            "metadata": {"name": "stale", "namespace": "app", "creationTimestamp": "2026-03-14T10:00:00Z"},
            "spec": {"schedule": "0 * * * *",
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]},
                "conditions": [{"name": "stale", "expression": "object.data.state == 'stale'"}]},
            "status": {"lastExecutionTime": "2026-03-14T11:00:00Z"}
        }))
        .unwrap();
        assert_eq!(p.next_run(), Some(datetime!(2026-03-14 12:00 UTC)));
        let selects = |o: Value| p.selects(o, None, &NoProvider).unwrap();
        assert!(selects(config_map("a", "app", "stale")));
        assert!(!selects(config_map("a", "app", "fresh")));
        assert!(!selects(config_map("a", "other", "stale")));
    }

    #[test]
    fn conditions_read_context_entries() {
        let p = CleanupPolicy::compile(&json!({
            "apiVersion": "kyverno.io/v2", "kind": "ClusterCleanupPolicy",
            "metadata": {"name": "by-variable"},
            "spec": {"schedule": "@hourly",
                "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
                "context": [{"name": "wanted", "variable": {"value": "stale"}}],
                "conditions": {"all": [{"key": "{{ target.data.state }}", "operator": "Equals", "value": "{{ wanted }}"}]}}
        }))
        .unwrap();
        assert!(
            p.selects(config_map("a", "app", "stale"), None, &NoProvider)
                .unwrap()
        );
        assert!(
            !p.selects(config_map("a", "app", "fresh"), None, &NoProvider)
                .unwrap()
        );
    }

    #[test]
    fn bad_policies_name_the_field() {
        let e = CleanupPolicy::compile(&json!({
            "apiVersion": "kyverno.io/v2", "kind": "ClusterCleanupPolicy", "metadata": {"name": "x"},
            "spec": {"schedule": "every day", "match": {}}
        }))
        .unwrap_err();
        assert!(e.starts_with("spec.schedule"), "{e}");
        let e = CleanupPolicy::compile(&json!({
            "apiVersion": "kyverno.io/v2", "kind": "CleanupPolicy", "metadata": {"name": "x"},
            "spec": {"schedule": "* * * * *"}
        }))
        .unwrap_err();
        assert!(e.starts_with("spec.match"), "{e}");
    }
}
