//! Handles of the per-rule metric series, found from the request's borrowed label values: once
//! a series exists, recording a rule's result costs one fast hash and no allocation (building the
//! owned label set and hashing it into the family was a sizeable share of a request).

use crate::metrics::PolicyLabels;
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

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

impl<'a> PolicyLabelsRef<'a> {
    /// The labels shared by a policy's rules, hashed once; each rule adds its own three.
    pub fn for_policy(self) -> PolicySeries<'a> {
        let mut hasher = FxHasher::default();
        (
            self.policy_validation_mode,
            self.policy_type,
            self.policy_background_mode,
            self.policy_namespace,
            self.policy_name,
            self.resource_kind,
            self.resource_namespace,
            self.resource_request_operation,
            self.rule_execution_cause,
            self.dry_run,
        )
            .hash(&mut hasher);
        PolicySeries {
            labels: self,
            hasher,
        }
    }

    fn matches(&self, o: &PolicyLabels) -> bool {
        // The rule's fields first: entries sharing a hash differ there, if anywhere.
        self.rule_name == o.rule_name.as_str()
            && same_static(self.rule_result, o.rule_result)
            && same_static(self.rule_type, o.rule_type)
            && self.policy_name == o.policy_name.as_str()
            && self.policy_namespace == o.policy_namespace.as_str()
            && self.resource_kind == o.resource_kind.as_str()
            && self.resource_namespace == o.resource_namespace.as_str()
            && same_static(self.policy_validation_mode, o.policy_validation_mode)
            && same_static(self.policy_type, o.policy_type)
            && same_static(
                self.resource_request_operation,
                o.resource_request_operation,
            )
            && same_static(self.rule_execution_cause, o.rule_execution_cause)
            && self.policy_background_mode == o.policy_background_mode
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

/// Label values from fixed lists are mostly the same literal: compare addresses before bytes.
fn same_static(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// One policy's labels with their hash so far.
#[derive(Clone)]
pub struct PolicySeries<'a> {
    labels: PolicyLabelsRef<'a>,
    hasher: FxHasher,
}

impl<'a> PolicySeries<'a> {
    /// The series of one of the policy's rules (or, with an empty name, of the policy itself).
    pub fn rule(
        &self,
        rule_name: &'a str,
        rule_result: &'static str,
        rule_type: &'static str,
    ) -> SeriesLabels<'a> {
        let mut hasher = self.hasher.clone();
        (rule_name, rule_result, rule_type).hash(&mut hasher);
        SeriesLabels {
            labels: PolicyLabelsRef {
                rule_name,
                rule_result,
                rule_type,
                ..self.labels
            },
            key: hasher.finish(),
        }
    }
}

/// A series' labels and their hash.
pub struct SeriesLabels<'a> {
    pub labels: PolicyLabelsRef<'a>,
    key: u64,
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

impl<M> Handles<M> {
    /// The handles, locked once for all the series a request records.
    pub fn lock(&self) -> HandlesGuard<'_, M> {
        HandlesGuard(match self.by_key.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        })
    }
}

pub struct HandlesGuard<'h, M>(MutexGuard<'h, FxHashMap<u64, Vec<(PolicyLabels, M)>>>);

impl<M> HandlesGuard<'_, M> {
    /// The series' handle; `create` resolves it in the family the first time.
    pub fn get(&mut self, series: &SeriesLabels, create: impl FnOnce(&PolicyLabels) -> M) -> &M {
        let map = &mut *self.0;
        if map.len() >= MAX_HANDLES && !map.contains_key(&series.key) {
            map.clear();
        }
        let entries = map.entry(series.key).or_default();
        let at = match entries.iter().position(|(l, _)| series.labels.matches(l)) {
            Some(i) => i,
            None => {
                let owned = series.labels.to_owned_labels();
                let handle = create(&owned);
                entries.push((owned, handle));
                entries.len() - 1
            }
        };
        // `at` is in bounds: found in or pushed onto `entries`.
        &entries[at].1
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
            let series = l.for_policy().rule(l.rule_name, l.rule_result, l.rule_type);
            handles
                .lock()
                .get(&series, |owned| family.get_or_create(owned).clone())
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
