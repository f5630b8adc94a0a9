//! Handles of the per-rule metric series, found from the request's borrowed label values: once
//! a series exists, recording a rule's result costs one fast hash and no allocation (building the
//! owned label set and hashing it into the family was a sizeable share of a request).

use crate::metrics::PolicyLabels;
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Handles kept at most; past it they are dropped (the series stay in their family).
const MAX_HANDLES: usize = 16 * 1024;

/// The labels of `kyverno_policy_results_total` / `kyverno_policy_execution_duration_seconds`,
/// borrowed from the request and its responses.
#[derive(Debug, Clone, Copy)]
pub struct PolicyLabelsRef<'a> {
    pub policy_validation_mode: &'static str,
    pub policy_type: &'static str,
    pub policy_background_mode: bool,
    pub policy_namespace: &'a str,
    pub policy_name: &'a str,
    pub resource_kind: &'a str,
    pub resource_namespace: &'a str,
    pub resource_request_operation: &'static str,
    pub rule_name: &'a str,
    pub rule_result: &'static str,
    pub rule_type: &'static str,
    pub rule_execution_cause: &'static str,
    pub dry_run: bool,
}

impl PolicyLabelsRef<'_> {
    fn key(&self) -> u64 {
        let mut h = FxHasher::default();
        (
            self.policy_validation_mode,
            self.policy_type,
            self.policy_background_mode,
            self.policy_namespace,
            self.policy_name,
            self.resource_kind,
            self.resource_namespace,
            self.resource_request_operation,
        )
            .hash(&mut h);
        (
            self.rule_name,
            self.rule_result,
            self.rule_type,
            self.rule_execution_cause,
            self.dry_run,
        )
            .hash(&mut h);
        h.finish()
    }

    fn matches(&self, o: &PolicyLabels) -> bool {
        self.policy_validation_mode == o.policy_validation_mode
            && self.policy_type == o.policy_type
            && self.policy_background_mode == o.policy_background_mode
            && self.policy_namespace == o.policy_namespace.as_str()
            && self.policy_name == o.policy_name.as_str()
            && self.resource_kind == o.resource_kind.as_str()
            && self.resource_namespace == o.resource_namespace.as_str()
            && self.resource_request_operation == o.resource_request_operation
            && self.rule_name == o.rule_name.as_str()
            && self.rule_result == o.rule_result
            && self.rule_type == o.rule_type
            && self.rule_execution_cause == o.rule_execution_cause
            && self.dry_run == o.dry_run
    }

    pub fn to_owned_labels(&self) -> PolicyLabels {
        let shared = |s: &str| Arc::new(s.to_string());
        PolicyLabels {
            policy_validation_mode: self.policy_validation_mode,
            policy_type: self.policy_type,
            policy_background_mode: self.policy_background_mode,
            policy_namespace: shared(self.policy_namespace),
            policy_name: shared(self.policy_name),
            resource_kind: shared(self.resource_kind),
            resource_namespace: shared(self.resource_namespace),
            resource_request_operation: self.resource_request_operation,
            rule_name: shared(self.rule_name),
            rule_result: self.rule_result,
            rule_type: self.rule_type,
            rule_execution_cause: self.rule_execution_cause,
            dry_run: self.dry_run,
        }
    }
}

/// Resolved handles of one family (a handle shares its series' value).
pub struct Handles<M> {
    by_key: Mutex<FxHashMap<u64, Vec<(PolicyLabels, M)>>>,
}

impl<M> Default for Handles<M> {
    fn default() -> Self {
        Handles {
            by_key: Mutex::new(FxHashMap::default()),
        }
    }
}

impl<M: Clone> Handles<M> {
    /// The series' handle; `create` resolves it in the family the first time.
    pub fn get(&self, labels: &PolicyLabelsRef, create: impl FnOnce(&PolicyLabels) -> M) -> M {
        let key = labels.key();
        let mut map = match self.by_key.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(found) = map
            .get(&key)
            .and_then(|v| v.iter().find(|(l, _)| labels.matches(l)))
        {
            return found.1.clone();
        }
        if map.len() >= MAX_HANDLES {
            map.clear();
        }
        let owned = labels.to_owned_labels();
        let handle = create(&owned);
        map.entry(key).or_default().push((owned, handle.clone()));
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    fn labels<'a>(policy: &'a str, rule: &'a str, result: &'static str) -> PolicyLabelsRef<'a> {
        PolicyLabelsRef {
            policy_validation_mode: "enforce",
            policy_type: "cluster",
            policy_background_mode: true,
            policy_namespace: "-",
            policy_name: policy,
            resource_kind: "Pod",
            resource_namespace: "shop",
            resource_request_operation: "create",
            rule_name: rule,
            rule_result: result,
            rule_type: "validate",
            rule_execution_cause: "admission_request",
            dry_run: false,
        }
    }

    #[test]
    fn each_label_set_counts_in_its_own_series() {
        let family = Family::<PolicyLabels, Counter>::default();
        let handles = Handles::<Counter>::default();
        let record = |l: PolicyLabelsRef| {
            handles
                .get(&l, |owned| family.get_or_create(owned).clone())
                .inc();
        };
        record(labels("p", "r", "pass"));
        record(labels("p", "r", "pass"));
        record(labels("p", "r", "fail"));
        record(labels("p", "r2", "pass"));
        let count = |l: PolicyLabelsRef| family.get_or_create(&l.to_owned_labels()).get();
        assert_eq!(count(labels("p", "r", "pass")), 2);
        assert_eq!(count(labels("p", "r", "fail")), 1);
        assert_eq!(count(labels("p", "r2", "pass")), 1);
    }
}
