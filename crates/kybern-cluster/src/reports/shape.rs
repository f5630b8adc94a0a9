//! The report object for one resource, in Kyverno's shape: named by the resource's UID, in its
//! namespace (a ClusterPolicyReport for a cluster-scoped resource), labelled as Kyverno labels
//! its reports, `scope` naming the resource, an ownerReference to it (so garbage collection
//! removes the report with the resource), `summary` and `results`.

use super::hash::{ANNOTATION, ResultsHash};
use kybern_engine::report::{self, Summary};
use serde_json::{Map, Value, json};

/// The label every report carries (Kyverno's, so that tools reading Kyverno's reports find these).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kyverno");
/// The label with the UID of the resource a report is about.
pub const RESOURCE_UID: &str = "audit.kyverno.io/resource.uid";

/// Which report API is written: `wgpolicyk8s.io/v1alpha2` PolicyReport/ClusterPolicyReport
/// (Kyverno's default) or `openreports.io/v1alpha1` Report/ClusterReport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReportApi {
    #[default]
    Wgpolicy,
    OpenReports,
}

impl ReportApi {
    /// Parses `wgpolicyk8s` or `openreports`.
    pub fn parse(s: &str) -> Result<ReportApi, String> {
        match s {
            "wgpolicyk8s" | "wgpolicyk8s.io" => Ok(ReportApi::Wgpolicy),
            "openreports" | "openreports.io" => Ok(ReportApi::OpenReports),
            other => Err(format!(
                "unknown report API {other:?} (wgpolicyk8s, openreports)"
            )),
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            ReportApi::Wgpolicy => report::API_VERSION,
            ReportApi::OpenReports => "openreports.io/v1alpha1",
        }
    }

    /// The report kind for a namespaced or a cluster-scoped resource.
    pub fn kind(self, namespaced: bool) -> &'static str {
        match (self, namespaced) {
            (ReportApi::Wgpolicy, true) => "PolicyReport",
            (ReportApi::Wgpolicy, false) => "ClusterPolicyReport",
            (ReportApi::OpenReports, true) => "Report",
            (ReportApi::OpenReports, false) => "ClusterReport",
        }
    }
}

/// The resource a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Empty for cluster-scoped resources.
    pub namespace: String,
    pub uid: String,
}

impl Subject {
    /// Read from an object's apiVersion, kind and metadata.
    pub fn of(object: &Value) -> Option<Subject> {
        let s = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(Subject {
            api_version: s("/apiVersion")?,
            kind: s("/kind")?,
            name: s("/metadata/name")?,
            namespace: s("/metadata/namespace").unwrap_or_default(),
            uid: s("/metadata/uid").filter(|u| !u.is_empty())?,
        })
    }

    /// The kind of report: `PolicyReport` (or `Report`) in a namespace, `ClusterPolicyReport`
    /// (or `ClusterReport`) otherwise.
    pub fn report_kind(&self, api: ReportApi) -> &'static str {
        api.kind(!self.namespace.is_empty())
    }
}

/// The report for `subject` with `results` stamped at `seconds`.
pub fn report(
    api: ReportApi,
    subject: &Subject,
    mut results: Vec<Map<String, Value>>,
    hash: ResultsHash,
    seconds: u64,
) -> Value {
    let mut summary = Summary::default();
    for r in &mut results {
        if let Some(word) = r.get("result").and_then(Value::as_str) {
            summary.count(word);
        }
        r.insert("timestamp".into(), json!({"nanos": 0, "seconds": seconds}));
    }
    let mut metadata = json!({
        "name": subject.uid,
        "labels": {MANAGED_BY.0: MANAGED_BY.1, RESOURCE_UID: subject.uid},
        "annotations": {ANNOTATION: hash.to_hex()},
        "ownerReferences": [{
            "apiVersion": subject.api_version,
            "kind": subject.kind,
            "name": subject.name,
            "uid": subject.uid,
        }],
    });
    let mut scope = json!({
        "apiVersion": subject.api_version,
        "kind": subject.kind,
        "name": subject.name,
        "uid": subject.uid,
    });
    if !subject.namespace.is_empty() {
        metadata["namespace"] = json!(subject.namespace);
        scope["namespace"] = json!(subject.namespace);
    }
    let mut out = json!({
        "apiVersion": api.api_version(),
        "kind": subject.report_kind(api),
        "metadata": metadata,
        "scope": scope,
        "summary": summary.to_value(),
        "results": results,
    });
    if api == ReportApi::OpenReports {
        // OpenReports names the producer once for the whole report as well.
        out["source"] = json!("kyverno");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_report_is_named_by_uid_owned_by_the_pod_and_summarised() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "team", "uid": "u-1"}});
        let subject = Subject::of(&pod).unwrap();
        let results = vec![
            json!({"policy": "p", "rule": "a", "result": "fail"})
                .as_object()
                .unwrap()
                .clone(),
            json!({"policy": "p", "rule": "b", "result": "pass"})
                .as_object()
                .unwrap()
                .clone(),
        ];
        let r = report(ReportApi::Wgpolicy, &subject, results, ResultsHash(1), 42);
        assert_eq!(r["kind"], "PolicyReport");
        assert_eq!(r["metadata"]["name"], "u-1");
        assert_eq!(r["metadata"]["namespace"], "team");
        assert_eq!(r["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(r["scope"]["name"], "web");
        assert_eq!(r["summary"]["fail"], 1);
        assert_eq!(r["summary"]["pass"], 1);
        assert_eq!(r["results"][0]["timestamp"]["seconds"], 42);
    }

    #[test]
    fn a_cluster_scoped_resource_gets_a_cluster_policy_report() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team", "uid": "u-2"}});
        let subject = Subject::of(&ns).unwrap();
        let r = report(ReportApi::Wgpolicy, &subject, Vec::new(), ResultsHash(1), 0);
        assert_eq!(r["kind"], "ClusterPolicyReport");
        assert!(r["metadata"].get("namespace").is_none());
        let r = report(
            ReportApi::OpenReports,
            &subject,
            Vec::new(),
            ResultsHash(1),
            0,
        );
        assert_eq!(r["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(r["kind"], "ClusterReport");
        assert_eq!(r["source"], "kyverno");
    }
}
