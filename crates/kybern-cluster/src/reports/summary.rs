//! Reading reports back: every PolicyReport and ClusterPolicyReport in the cluster, summed per
//! namespace and per policy, with the rules that fail most (what `kybern report` prints).

use super::shape::ReportApi;
use super::writer::report_resource;
use crate::error::ClusterError;
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use kybern_engine::report::Summary;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Totals over a set of reports.
#[derive(Debug, Default, Serialize)]
pub struct Overview {
    /// Reports read.
    pub reports: usize,
    pub total: Counts,
    /// By namespace (`""` for ClusterPolicyReports).
    pub namespaces: BTreeMap<String, Counts>,
    /// By policy (`name`, or `namespace/name` for a Policy).
    pub policies: BTreeMap<String, Counts>,
    /// Rules by failures (fail results), most first; ties by policy and rule.
    pub failing_rules: Vec<FailingRule>,
}

/// Result counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub error: usize,
    pub skip: usize,
}

impl From<Summary> for Counts {
    fn from(s: Summary) -> Counts {
        Counts {
            pass: s.get("pass"),
            fail: s.get("fail"),
            warn: s.get("warn"),
            error: s.get("error"),
            skip: s.get("skip"),
        }
    }
}

/// A rule and how many resources fail it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailingRule {
    pub policy: String,
    pub rule: String,
    pub failures: usize,
}

/// Running totals, one report at a time, so reading a cluster's reports holds one page of them.
#[derive(Default)]
pub struct Tally {
    reports: usize,
    total: Summary,
    namespaces: BTreeMap<String, Summary>,
    policies: BTreeMap<String, Summary>,
    failing: BTreeMap<(String, String), usize>,
}

impl Tally {
    /// Counts one report (an object as the API returns it).
    pub fn add(&mut self, r: &Value) {
        self.reports += 1;
        let ns = r
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns_summary = self.namespaces.entry(ns).or_default();
        for result in r
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| {
                result
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (policy, rule, word) = (s("policy"), s("rule"), s("result"));
            self.total.count(&word);
            ns_summary.count(&word);
            self.policies
                .entry(policy.clone())
                .or_default()
                .count(&word);
            if word == "fail" {
                *self.failing.entry((policy, rule)).or_default() += 1;
            }
        }
    }

    /// The totals, failing rules most first.
    pub fn finish(self) -> Overview {
        let mut failing_rules: Vec<FailingRule> = self
            .failing
            .into_iter()
            .map(|((policy, rule), failures)| FailingRule {
                policy,
                rule,
                failures,
            })
            .collect();
        failing_rules.sort_by_key(|r| std::cmp::Reverse(r.failures));
        Overview {
            reports: self.reports,
            total: self.total.into(),
            namespaces: self
                .namespaces
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            policies: self
                .policies
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            failing_rules,
        }
    }
}

/// Sums `reports` (report objects as the API returns them).
pub fn overview(reports: &[Value]) -> Overview {
    let mut tally = Tally::default();
    for r in reports {
        tally.add(r);
    }
    tally.finish()
}

/// Sums every report of `api` in the cluster (PolicyReports and ClusterPolicyReports, or
/// OpenReports' Reports and ClusterReports), read in pages of 500.
pub async fn read(client: &kube::Client, api: ReportApi) -> Result<Overview, ClusterError> {
    let mut tally = Tally::default();
    for kind in [api.kind(false), api.kind(true)] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &report_resource(kind));
        let mut params = ListParams::default().limit(500);
        loop {
            let list = api.list(&params).await?;
            for item in list.items {
                if let Ok(v) = serde_json::to_value(item) {
                    tally.add(&v);
                }
            }
            match list.metadata.continue_ {
                Some(c) if !c.is_empty() => params = params.continue_token(&c),
                _ => break,
            }
        }
    }
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_summed_per_namespace_and_policy_and_failing_rules_ranked() {
        let reports = vec![
            json!({"metadata": {"namespace": "a"}, "results": [
                {"policy": "p", "rule": "r1", "result": "fail"},
                {"policy": "p", "rule": "r2", "result": "pass"}]}),
            json!({"metadata": {"namespace": "b"}, "results": [
                {"policy": "p", "rule": "r1", "result": "fail"},
                {"policy": "q", "rule": "r", "result": "fail"}]}),
        ];
        let o = overview(&reports);
        assert_eq!(o.reports, 2);
        assert_eq!(o.total.fail, 3);
        assert_eq!(o.namespaces["a"].pass, 1);
        assert_eq!(o.policies["p"].fail, 2);
        assert_eq!(o.failing_rules[0].rule, "r1");
        assert_eq!(o.failing_rules[0].failures, 2);
    }
}
