//! Why a rule selected a request or not, in words (`kybern apply --explain`): which `match`
//! filter selected it, or for each filter the first criterion that did not hold, and which
//! `exclude` filter removed it. Built only when asked; evaluation never calls it.

use crate::matching::{self, MatchSubject, Mismatch};
use crate::policy::{
    MatchResources, Policy, ResourceDescription, ResourceFilter, Rule, RuleBody, ValidationCheck,
};
use crate::request::AdmissionRequest;
use crate::response::RuleStatus;

/// How a rule stands towards a request before it is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `match` selects it (the filter that did) and no `exclude` filter removes it.
    Selected(String),
    /// `match` does not select it: why, per filter.
    NotMatched(String),
    /// An `exclude` filter removes it.
    Excluded(String),
    /// A namespaced Policy sees only requests in its own namespace.
    OtherNamespace(String),
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn describe(m: Mismatch, d: &ResourceDescription, f: &ResourceFilter, s: &MatchSubject) -> String {
    match m {
        Mismatch::Empty => "the filter names nothing".into(),
        Mismatch::Kind => {
            let sub = if s.request.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", s.request.subresource)
            };
            format!("kind {}{sub} is not one of {}", s.gvk.kind, list(&d.kinds))
        }
        Mismatch::Operation => format!(
            "operation {} is not one of {}",
            s.request.operation.as_str(),
            list(&d.operations)
        ),
        Mismatch::Name => {
            let names: Vec<String> = d.name.iter().cloned().chain(d.names.clone()).collect();
            format!("name {:?} is not one of {}", s.name, list(&names))
        }
        Mismatch::Namespace => format!(
            "namespace {:?} is not one of {}",
            if s.gvk.kind == "Namespace" {
                s.name
            } else {
                s.namespace
            },
            list(&d.namespaces)
        ),
        Mismatch::Annotations => "the annotations do not match".into(),
        Mismatch::Selector => "the labels do not match the selector".into(),
        Mismatch::NamespaceSelector => {
            if s.gvk.kind == "Namespace" {
                "a namespaceSelector never selects a Namespace".into()
            } else {
                "the namespace's labels do not match the namespaceSelector".into()
            }
        }
        Mismatch::Roles => format!("the requester has none of the roles {}", list(&f.roles)),
        Mismatch::ClusterRoles => format!(
            "the requester has none of the clusterRoles {}",
            list(&f.cluster_roles)
        ),
        Mismatch::Subjects => "the requester is none of the subjects".into(),
    }
}

/// The filters of a block with their field paths.
fn filters(block: &MatchResources, name: &str) -> (Vec<(String, ResourceFilter)>, bool) {
    if !block.any.is_empty() {
        let f = block.any.iter().enumerate();
        return (
            f.map(|(i, f)| (format!("{name}.any[{i}]"), f.clone()))
                .collect(),
            true,
        );
    }
    if !block.all.is_empty() {
        let f = block.all.iter().enumerate();
        return (
            f.map(|(i, f)| (format!("{name}.all[{i}]"), f.clone()))
                .collect(),
            false,
        );
    }
    let inline = block
        .inline_filter()
        .map(|f| vec![(format!("{name}.resources"), f)])
        .unwrap_or_default();
    (inline, true)
}

/// What selects (or does not) in a `match` or `exclude` block: `Ok(path)` of the filter that
/// selects the request (`all`: the block), `Err(reasons)` otherwise.
fn block_selects(
    block: &MatchResources,
    name: &str,
    s: &MatchSubject,
    is_match: bool,
) -> Result<String, String> {
    let (list, any) = filters(block, name);
    let mut reasons = Vec::new();
    for (path, f) in &list {
        match matching::filter_mismatch(f, s, is_match) {
            None if any => return Ok(path.clone()),
            None => {}
            Some(m) => {
                let reason = format!("{path}: {}", describe(m, &f.resources, f, s));
                if !any {
                    return Err(reason);
                }
                reasons.push(reason);
            }
        }
    }
    if any {
        if reasons.is_empty() {
            reasons.push(format!("{name} has no filter"));
        }
        Err(reasons.join("; "))
    } else {
        Ok(format!("{name}.all"))
    }
}

/// How `rule` of `policy` stands towards `request`.
pub fn selection(policy: &Policy, rule: &Rule, request: &AdmissionRequest) -> Selection {
    let s = MatchSubject::new(request);
    if !policy.namespace.is_empty() && s.namespace != policy.namespace {
        return Selection::OtherNamespace(format!(
            "the Policy is in namespace {:?}, the resource in {:?}",
            policy.namespace, s.namespace
        ));
    }
    match block_selects(&rule.match_resources, "match", &s, true) {
        Err(why) => Selection::NotMatched(why),
        Ok(by) => match &rule.exclude {
            Some(ex) => match block_selects(ex, "exclude", &s, false) {
                Ok(path) => Selection::Excluded(path),
                Err(_) => Selection::Selected(by),
            },
            None => Selection::Selected(by),
        },
    }
}

/// One line of a decision trace: a rule of a policy (the CEL kinds: the policy, or one of its
/// validations) and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    pub policy: String,
    /// The policy's kind for the CEL kinds; empty for ClusterPolicy and Policy.
    pub kind: String,
    /// Empty for a CEL policy answering as a whole.
    pub rule: String,
    /// `pass: message`, `fail: message (exception ns/name)`, `not matched: why`, ...
    pub outcome: String,
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn status_word(s: crate::response::RuleStatus) -> String {
    format!("{s:?}").to_ascii_lowercase()
}

impl TraceEntry {
    /// `policy/rule`, `policy (Kind)` or `policy/rule (Kind)`.
    pub fn name(&self) -> String {
        let mut s = self.policy.clone();
        if !self.rule.is_empty() {
            s.push('/');
            s.push_str(&self.rule);
        }
        if !self.kind.is_empty() {
            s.push_str(&format!(" ({})", self.kind));
        }
        s
    }
}

/// Where a trace reads what a rule's `context` entries give: the provider and the values the
/// evaluation used. Without it, what entries give shows as "not known here".
#[derive(Clone, Copy)]
pub struct TraceSources<'a> {
    pub provider: &'a dyn crate::context::ContextProvider,
    /// Values supplied for a rule's entries (a test's values file), by policy and rule name.
    pub rule_values: &'a RuleValuesFn<'a>,
}

/// Values supplied for a rule's context entries, by policy and rule name.
pub type RuleValuesFn<'a> =
    dyn Fn(&Policy, &str) -> Option<serde_json::Map<String, serde_json::Value>> + 'a;

/// The conditions of `block` with their values; the rule's context entries that the conditions
/// name are loaded again (only here, only when a trace is asked for).
fn explain_block(
    block: &crate::preconditions::ConditionBlock,
    policy: &Policy,
    rule: &Rule,
    base: &crate::json_context::JsonContext,
    opts: crate::variables::SubstituteOptions,
    sources: Option<TraceSources>,
) -> Vec<String> {
    let Some(s) = sources.filter(|_| !rule.context.is_empty()) else {
        return block.explain(base, opts);
    };
    let preset = (s.rule_values)(policy, &rule.name).unwrap_or_default();
    let mut ctx = base.clone();
    for (k, v) in &preset {
        ctx.set(k, v);
    }
    let src = crate::context_loader::Sources {
        provider: s.provider,
        policy_namespace: &policy.namespace,
        preset: &preset,
        opts,
    };
    crate::context_loader::run_deferred(&rule.context, &mut ctx, src, |ctx| {
        block.explain(ctx, opts)
    })
    .unwrap_or_else(|e| {
        vec![format!(
            "the context could not be loaded for this trace: {e}"
        )]
    })
}

/// The trace of one request: every rule of `policies` with its result in `responses` or why it
/// did not select the request, then the results of the CEL kinds in `responses`. Built only
/// when asked (`kybern apply --explain`, `kybern serve` with `?explain`).
pub fn trace<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    responses: &[crate::response::EngineResponse],
    request: &AdmissionRequest,
    sources: Option<TraceSources>,
) -> Vec<TraceEntry> {
    let mut out = Vec::new();
    let mut base: Option<crate::json_context::JsonContext> = None;
    let result_of = |policy: &Policy, rule: &str| {
        responses
            .iter()
            .filter(|r| r.policy_name == policy.name && r.policy_namespace == policy.namespace)
            .flat_map(|r| r.rules.iter())
            .find(|r| r.name == rule)
    };
    for policy in policies {
        for rule in &policy.rules {
            let outcome = match result_of(policy, &rule.name) {
                Some(r) => {
                    let mut line = format!("{}: {}", status_word(r.status), one_line(&r.message));
                    if !r.exceptions.is_empty() {
                        line.push_str(&format!(" (exception {})", r.exceptions.join(", ")));
                    }
                    // The conditions that decided, with their values: the preconditions of a
                    // skipped rule, the deny conditions of a failed one.
                    let block = match (&rule.body, r.status) {
                        (_, RuleStatus::Skip) if r.message.starts_with("preconditions not met") => {
                            rule.preconditions.as_ref()
                        }
                        (RuleBody::Validate(v), RuleStatus::Fail) => match &v.check {
                            ValidationCheck::Deny(block) => Some(block),
                            _ => None,
                        },
                        _ => None,
                    };
                    if let Some(block) = block {
                        let ctx = base.get_or_insert_with(|| request.base_context());
                        let opts = crate::variables::SubstituteOptions {
                            delete: request.operation == crate::request::Operation::Delete,
                        };
                        let lines = explain_block(block, policy, rule, ctx, opts, sources);
                        line.push_str(&format!(" [{}]", lines.join("; ")));
                    }
                    line
                }
                None => match selection(policy, rule, request) {
                    Selection::NotMatched(why) => format!("not matched: {why}"),
                    Selection::Excluded(by) => format!("excluded by {by}"),
                    Selection::OtherNamespace(why) => format!("not evaluated: {why}"),
                    Selection::Selected(by) => {
                        format!("selected by {by}, no result in the phases run")
                    }
                },
            };
            out.push(TraceEntry {
                policy: policy.name.clone(),
                kind: String::new(),
                rule: rule.name.clone(),
                outcome,
            });
        }
    }
    for r in responses
        .iter()
        .filter(|r| !matches!(&*r.policy_kind, "ClusterPolicy" | "Policy"))
    {
        for rule in &r.rules {
            out.push(TraceEntry {
                policy: r.policy_name.clone(),
                kind: r.policy_kind.to_string(),
                rule: rule.name.clone(),
                outcome: format!("{}: {}", status_word(rule.status), one_line(&rule.message)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile_policy;
    use crate::request::Operation;
    use serde_json::json;
    use std::sync::Arc;

    fn policy(rule: serde_json::Value) -> Policy {
        compile_policy(&json!({
            "apiVersion": "kyverno.io/v1",
            "kind": "ClusterPolicy",
            "metadata": {"name": "p"},
            "spec": {"rules": [rule]},
        }))
        .unwrap()
    }

    fn request(kind: &str, namespace: &str) -> AdmissionRequest {
        let object = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "web", "namespace": namespace}});
        AdmissionRequest {
            operation: Operation::Create,
            object: Arc::new(object),
            ..AdmissionRequest::default()
        }
    }

    fn rule(matching: serde_json::Value, exclude: Option<serde_json::Value>) -> serde_json::Value {
        let mut r = json!({
            "name": "r",
            "match": matching,
            "validate": {"message": "m", "pattern": {"metadata": {"name": "?*"}}},
        });
        if let Some(e) = exclude {
            r["exclude"] = e;
        }
        r
    }

    #[test]
    fn a_skip_by_preconditions_shows_each_condition_with_its_values() {
        let mut r = rule(json!({"any": [{"resources": {"kinds": ["Pod"]}}]}), None);
        r["preconditions"] = json!({"all": [
            {"key": "{{ request.object.metadata.namespace }}", "operator": "AnyIn", "value": ["prod"]},
            {"key": "{{ cm.data.mode }}", "operator": "Equals", "value": "strict"}]});
        r["context"] =
            json!([{"name": "cm", "configMap": {"name": "settings", "namespace": "default"}}]);
        let p = policy(r);
        let req = request("Pod", "default");
        let responses = crate::engine::Engine::new(&crate::context::NoProvider).validate(
            &p,
            &crate::engine::PolicyContext::new(&req),
            &[],
            &Default::default(),
        );
        let entries = trace([&p], std::slice::from_ref(&responses), &req, None);
        let first = responses;
        let outcome = &entries
            .iter()
            .find(|e| e.rule == "r")
            .expect("the rule's entry")
            .outcome;
        assert!(
            outcome.starts_with("skip: preconditions not met"),
            "{outcome}"
        );
        assert!(
            outcome.contains(
                "all[0]: `{{ request.object.metadata.namespace }}` = \"default\" AnyIn [\"prod\"]: does not hold"
            ),
            "{outcome}"
        );
        // A failed deny rule shows its conditions the same way.
        let deny = policy(
            json!({"name": "d", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "no default", "deny": {"conditions": {"any": [
                {"key": "{{ request.object.metadata.namespace }}", "operator": "Equals", "value": "default"}]}}}}),
        );
        let responses = crate::engine::Engine::new(&crate::context::NoProvider).validate(
            &deny,
            &crate::engine::PolicyContext::new(&req),
            &[],
            &Default::default(),
        );
        let entries = trace([&deny], &[responses], &req, None);
        let failed = &entries.iter().find(|e| e.rule == "d").unwrap().outcome;
        assert!(
            failed.starts_with("fail: ")
                && failed.contains("any[0]: `{{ request.object.metadata.namespace }}` = \"default\" Equals \"default\": holds"),
            "{failed}"
        );
        // Without sources, what a context entry gives is not known to the trace.
        assert!(
            outcome.contains(
                "all[1]: `{{ cm.data.mode }}` (not known here) Equals \"strict\": not decided here"
            ),
            "{outcome}"
        );
        // With the evaluation's provider, the entry the condition names is loaded for the trace.
        let provider = OneConfigMap(json!({"data": {"mode": "lax"}}));
        let no_values = |_: &Policy, _: &str| None;
        let sources = TraceSources {
            provider: &provider,
            rule_values: &no_values,
        };
        let entries = trace([&p], std::slice::from_ref(&first), &req, Some(sources));
        let outcome = &entries.iter().find(|e| e.rule == "r").unwrap().outcome;
        assert!(
            outcome.contains(
                "all[1]: `{{ cm.data.mode }}` = \"lax\" Equals \"strict\": does not hold"
            ),
            "{outcome}"
        );
        // Values a test supplies for the rule win over the provider, as in evaluation.
        let values = |_: &Policy, rule: &str| {
            (rule == "r").then(|| {
                let mut m = serde_json::Map::new();
                m.insert("cm".into(), json!({"data": {"mode": "strict"}}));
                m
            })
        };
        let sources = TraceSources {
            provider: &provider,
            rule_values: &values,
        };
        let entries = trace([&p], &[first], &req, Some(sources));
        let outcome = &entries.iter().find(|e| e.rule == "r").unwrap().outcome;
        assert!(
            outcome.contains("all[1]: `{{ cm.data.mode }}` = \"strict\" Equals \"strict\": holds"),
            "{outcome}"
        );
    }

    /// A provider holding one ConfigMap, whatever its name.
    struct OneConfigMap(serde_json::Value);

    impl crate::context::ContextProvider for OneConfigMap {
        fn resource(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<serde_json::Value>, crate::context::ProviderError> {
            Ok(None)
        }
        fn list(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Vec<serde_json::Value>, crate::context::ProviderError> {
            Ok(Vec::new())
        }
        fn config_map(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<serde_json::Value>, crate::context::ProviderError> {
            Ok(Some(self.0.clone()))
        }
        fn api_call(
            &self,
            call: &crate::context::ApiCall,
        ) -> Result<serde_json::Value, crate::context::ProviderError> {
            crate::context::NoProvider.api_call(call)
        }
        fn namespace_labels(
            &self,
            _: &str,
        ) -> Result<Option<crate::context::Labels>, crate::context::ProviderError> {
            Ok(None)
        }
        fn image_data(
            &self,
            image: &str,
        ) -> Result<crate::context::ImageData, crate::context::ProviderError> {
            crate::context::NoProvider.image_data(image)
        }
        fn global_context(
            &self,
            _: &str,
        ) -> Result<Option<serde_json::Value>, crate::context::ProviderError> {
            Ok(None)
        }
    }

    #[test]
    fn each_any_filter_says_why_it_did_not_select() {
        let p = policy(rule(
            json!({"any": [
                {"resources": {"kinds": ["Deployment"]}},
                {"resources": {"kinds": ["Pod"], "namespaces": ["prod-*"]}},
            ]}),
            None,
        ));
        let got = selection(&p, &p.rules[0], &request("Pod", "dev"));
        assert_eq!(
            got,
            Selection::NotMatched(
                "match.any[0]: kind Pod is not one of [Deployment]; match.any[1]: namespace \"dev\" is not one of [prod-*]".into()
            )
        );
        assert_eq!(
            selection(&p, &p.rules[0], &request("Pod", "prod-1")),
            Selection::Selected("match.any[1]".into())
        );
    }

    #[test]
    fn an_exclude_filter_that_selects_is_named() {
        let p = policy(rule(
            json!({"any": [{"resources": {"kinds": ["Pod"]}}]}),
            Some(json!({"any": [{"resources": {"namespaces": ["kube-system"]}}]})),
        ));
        assert_eq!(
            selection(&p, &p.rules[0], &request("Pod", "kube-system")),
            Selection::Excluded("exclude.any[0]".into())
        );
        assert_eq!(
            selection(&p, &p.rules[0], &request("Pod", "default")),
            Selection::Selected("match.any[0]".into())
        );
    }

    #[test]
    fn an_all_block_names_the_first_filter_that_fails() {
        let p = policy(rule(
            json!({"all": [
                {"resources": {"kinds": ["Pod"]}},
                {"resources": {"operations": ["UPDATE"]}},
            ]}),
            None,
        ));
        assert_eq!(
            selection(&p, &p.rules[0], &request("Pod", "a")),
            Selection::NotMatched("match.all[1]: operation CREATE is not one of [UPDATE]".into())
        );
    }
}
