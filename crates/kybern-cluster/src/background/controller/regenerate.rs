//! Generating a synchronized rule again for every trigger it has objects for: when its clone
//! source or the rule itself changed, the copies follow.

use super::{Worker, generate, label};
use kube::api::ListParams;
use kybern_engine::policy::Policy;
use std::collections::BTreeSet;
use std::sync::Arc;

impl Worker {
    /// Generates a rule again for every trigger it has objects for.
    pub(super) async fn generate_again(&self, policy: &Arc<Policy>, rule: &str) {
        let selector = format!(
            "{}={},{}={},{}={}",
            generate::MANAGED_BY.0,
            generate::MANAGED_BY.1,
            generate::POLICY_NAME,
            policy.name,
            generate::RULE_NAME,
            rule
        );
        let mut triggers = BTreeSet::new();
        for (api_version, kind) in generate::rule_kinds(policy, rule) {
            let Ok(api) = self.api_for(&api_version, &kind, "") else {
                continue;
            };
            let list = match api.list(&ListParams::default().labels(&selector)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(policy = %policy.key(), %kind, error = %e, "clones not listed");
                    continue;
                }
            };
            for o in list.items {
                let uid = label(&o, generate::TRIGGER_UID).to_string();
                if !triggers.insert(uid) {
                    continue;
                }
                let Some(request) = self.trigger_request(&o).await else {
                    continue;
                };
                if let Err(e) = self
                    .generate_and_write(Arc::clone(policy), request, vec![rule.to_string()])
                    .await
                {
                    tracing::warn!(policy = %policy.key(), %rule, error = %e, "clone not updated from its source");
                }
            }
        }
    }
}
