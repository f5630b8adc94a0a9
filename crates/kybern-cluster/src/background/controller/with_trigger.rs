//! Objects synchronized generate rules and GeneratingPolicies wrote for a trigger go when the
//! trigger is deleted: admission queues an UpdateRequest with `deleteDownstream: true` for a
//! DELETE, and this deletes the objects labelled with the policy, the rule and the trigger's
//! uid, once the trigger is gone (a deletion another webhook refused leaves them).

use super::{Worker, generate};
use serde_json::Value;

impl Worker {
    /// A `deleteDownstream` UpdateRequest: the count of objects deleted, or why not yet.
    pub(super) async fn delete_downstream_for(&self, ur: &Value) -> Result<usize, String> {
        let s = |p: &str| ur.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind, namespace, name, uid) = (
            s("/spec/resource/apiVersion"),
            s("/spec/resource/kind"),
            s("/spec/resource/namespace"),
            s("/spec/resource/name"),
            s("/spec/resource/uid"),
        );
        if uid.is_empty() {
            return Err("spec.resource.uid is missing: the trigger cannot be told apart".into());
        }
        if self
            .still_there(api_version, kind, namespace, name, uid)
            .await?
        {
            return Err(format!(
                "{kind} {namespace}/{name} is not deleted (yet): its generated objects are kept \
                 until it is"
            ));
        }
        let key = s("/spec/policy");
        if s("/spec/requestType") == "cel-generate" {
            return Ok(self.delete_cel_downstream(key, uid).await);
        }
        // A policy gone meanwhile: its own deletion decides about its objects.
        let Some(policy) = self.policy(key) else {
            return Ok(0);
        };
        let rules = ur
            .pointer("/spec/ruleContext")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("rule").and_then(Value::as_str));
        let mut deleted = 0;
        for rule in rules {
            let kinds = generate::rule_kinds(&policy, rule);
            deleted += self
                .delete_labelled(
                    key,
                    &policy.name,
                    &policy.namespace,
                    rule,
                    &kinds,
                    Some(uid),
                )
                .await;
        }
        Ok(deleted)
    }

    /// Deletes what the GeneratingPolicy with this key wrote for the trigger, in the kinds it is
    /// known to write.
    async fn delete_cel_downstream(&self, key: &str, uid: &str) -> usize {
        let Some(g) = self
            .store
            .snapshot()
            .cel
            .generating
            .iter()
            .find(|g| g.key() == key)
            .map(|g| (g.policy.name.clone(), g.policy.namespace.clone()))
        else {
            return 0;
        };
        let kinds: Vec<(String, String)> = self
            .cel_synchronized_kinds
            .lock()
            .map(|k| k.iter().map(|(a, k, _)| (a.clone(), k.clone())).collect())
            .unwrap_or_default();
        self.delete_labelled(key, &g.0, &g.1, "", &kinds, Some(uid))
            .await
    }

    /// Whether the object with this uid still exists and is not being deleted.
    async fn still_there(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<bool, String> {
        // A kind the cluster no longer serves has no such object left.
        let Ok(api) = self.api_for(api_version, kind, namespace) else {
            return Ok(false);
        };
        match api.get_opt(name).await {
            Ok(Some(o)) => {
                Ok(o.metadata.uid.as_deref() == Some(uid)
                    && o.metadata.deletion_timestamp.is_none())
            }
            Ok(None) => Ok(false),
            Err(e) => Err(format!("{kind} {namespace}/{name}: {e}")),
        }
    }
}
