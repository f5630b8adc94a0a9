//! Static checks of policy documents without resources (`kybern lint`): what the loader accepts
//! but cannot work when the policy runs, or that Kyverno refuses, each named by its field path.

use crate::jmespath;
use crate::variables;
use serde_json::Value;
use std::collections::BTreeSet;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The policy does not load, or a part of it can never work.
    Error,
    /// It works, but probably not as meant, or at a cost.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// A stable name of the check, e.g. `jmespath-syntax`.
    pub check: &'static str,
    /// Field path in the document, e.g. `spec.rules[0].validate.message`.
    pub path: String,
    pub message: String,
    /// Text of the document the finding is about (an expression), for locating its line.
    pub text: Option<String>,
}

fn finding(
    severity: Severity,
    check: &'static str,
    path: &str,
    message: String,
    text: Option<&str>,
) -> Finding {
    Finding {
        severity,
        check,
        path: path.to_string(),
        message,
        text: text.map(str::to_string),
    }
}

/// Variable roots Kyverno defines for every rule (`ReservedKeys` in its context package);
/// `target` is defined in mutate targets.
const RESERVED_ROOTS: &[&str] = &[
    "request",
    "serviceAccountName",
    "serviceAccountNamespace",
    "element",
    "elementIndex",
    "@",
    "images",
    "image",
    "target",
];

/// Roots that describe the requester: there is none in a background scan, so Kyverno refuses
/// them in policies that run in the background.
const REQUESTER_FIELDS: &[&str] = &["userInfo", "roles", "clusterRoles"];

fn is_reserved(root: &str) -> bool {
    RESERVED_ROOTS.contains(&root)
        || ["element", "elementIndex"].iter().any(|p| {
            root.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
}

/// Every `context[].name` anywhere under `v` (rule, foreach and target contexts).
fn context_names(v: &Value, out: &mut BTreeSet<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "context"
                    && let Some(entries) = child.as_array()
                {
                    out.extend(
                        entries
                            .iter()
                            .filter_map(|e| e.get("name").and_then(Value::as_str))
                            .map(str::to_string),
                    );
                }
                context_names(child, out, depth + 1);
            }
        }
        Value::Array(items) => {
            for i in items {
                context_names(i, out, depth + 1);
            }
        }
        _ => {}
    }
}

struct RuleScope<'a> {
    names: &'a BTreeSet<String>,
    background: bool,
}

fn check_expression(expr: &str, path: &str, scope: &RuleScope, out: &mut Vec<Finding>) {
    if expr == "@" {
        return;
    }
    let facts = match jmespath::facts(expr) {
        Ok(f) => f,
        Err(e) => {
            out.push(finding(
                Severity::Error,
                "jmespath-syntax",
                path,
                format!("`{{{{ {expr} }}}}` does not parse: {e}"),
                Some(expr),
            ));
            return;
        }
    };
    for (name, args) in &facts.calls {
        match jmespath::function_arity(name) {
            None => out.push(finding(
                Severity::Error,
                "jmespath-function",
                path,
                format!("unknown function `{name}` in `{{{{ {expr} }}}}` (`kybern jp function` lists them)"),
                Some(expr),
            )),
            Some((min, max)) if *args < min || max.is_some_and(|m| *args > m) => {
                let wanted = match max {
                    Some(m) if m == min => format!("{min}"),
                    Some(m) => format!("{min} to {m}"),
                    None => format!("at least {min}"),
                };
                out.push(finding(
                    Severity::Error,
                    "jmespath-arity",
                    path,
                    format!("`{name}` takes {wanted} argument(s), {args} given in `{{{{ {expr} }}}}`"),
                    Some(expr),
                ));
            }
            Some(_) => {}
        }
    }
    for pattern in &facts.regexes {
        if let Some(e) = jmespath::regex_error(pattern) {
            out.push(finding(
                Severity::Error,
                "regex-syntax",
                path,
                format!("the pattern {pattern:?} in `{{{{ {expr} }}}}` does not compile ({e}): the rule errors whenever it runs"),
                Some(expr),
            ));
        }
    }
    for root in &facts.roots {
        if root.is_empty() {
            out.push(finding(
                Severity::Warning,
                "variable-root",
                path,
                format!(
                    "`\"\"` in `{{{{ {expr} }}}}` is a quoted field name (the root's empty key, null), not an empty string: write `''` for a string"
                ),
                Some(expr),
            ));
        } else if !is_reserved(root) && !scope.names.contains(root) {
            out.push(finding(
                Severity::Warning,
                "variable-root",
                path,
                format!(
                    "`{root}` in `{{{{ {expr} }}}}` is neither a context entry of the rule nor a variable Kyverno defines: it must come from a values file (`kybern apply -f`/`--set`), otherwise it is null"
                ),
                Some(expr),
            ));
        }
    }
    if scope.background {
        let requester = REQUESTER_FIELDS
            .iter()
            .find(|f| expr.contains(&format!("request.{f}")))
            .map(|f| format!("request.{f}"))
            .or_else(|| {
                facts
                    .roots
                    .iter()
                    .find(|r| *r == "serviceAccountName" || *r == "serviceAccountNamespace")
                    .cloned()
            });
        if let Some(field) = requester {
            out.push(finding(
                Severity::Error,
                "background-variable",
                path,
                format!(
                    "`{field}` is not known in a background scan: Kyverno refuses it in a policy with `background: true` (the default); set `spec.background: false`"
                ),
                Some(expr),
            ));
        }
    }
}

fn walk_strings(v: &Value, path: &str, scope: &RuleScope, out: &mut Vec<Finding>, depth: usize) {
    if depth > 128 {
        return;
    }
    match v {
        Value::String(s) if variables::has_variables(s) => {
            for expr in variables::variable_expressions(s) {
                check_expression(&expr, path, scope, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_strings(item, &format!("{path}[{i}]"), scope, out, depth + 1);
            }
        }
        Value::Object(map) => {
            for (k, child) in map {
                let child_path = format!("{path}.{k}");
                if variables::has_variables(k) {
                    for expr in variables::variable_expressions(k) {
                        check_expression(&expr, &child_path, scope, out);
                    }
                }
                walk_strings(child, &child_path, scope, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn check_kinds(rule: &Value, rule_path: &str, out: &mut Vec<Finding>) {
    for block in ["match", "exclude"] {
        let Some(b) = rule.get(block) else { continue };
        let mut filters: Vec<(String, &Value)> = Vec::new();
        if let Some(r) = b.get("resources") {
            filters.push((format!("{rule_path}.{block}.resources"), r));
        }
        for group in ["any", "all"] {
            for (i, f) in b
                .get(group)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(r) = f.get("resources") {
                    filters.push((format!("{rule_path}.{block}.{group}[{i}].resources"), r));
                }
            }
        }
        for (path, r) in filters {
            let wildcard = r
                .get("kinds")
                .and_then(Value::as_array)
                .is_some_and(|k| k.iter().any(|k| k.as_str() == Some("*")));
            if wildcard && block == "match" {
                out.push(finding(
                    Severity::Warning,
                    "wildcard-kind",
                    &format!("{path}.kinds"),
                    "`kinds: [\"*\"]` sends every request of every kind to the webhook; name the kinds the rule is about".into(),
                    None,
                ));
            }
            check_unmatchable(r, &path, out);
        }
    }
}

/// A namespace name pattern no namespace can match: names are DNS labels (lower-case letters,
/// digits and `-`, at most 63 characters); `*` and `?` are Kyverno's wildcards.
fn namespace_pattern_problem(pattern: &str) -> Option<String> {
    if let Some(c) = pattern
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '*' | '?'))
    {
        return Some(format!("{c:?} cannot appear in a namespace name"));
    }
    let fixed = pattern.chars().filter(|c| *c != '*').count();
    (fixed > 63).then(|| "a namespace name has at most 63 characters".to_string())
}

/// Filters that can never select anything: a kind spelled in the wrong case (Kyverno compares
/// kinds exactly), a namespace pattern no namespace name can match.
fn check_unmatchable(r: &Value, path: &str, out: &mut Vec<Finding>) {
    for (i, kind) in r
        .get("kinds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(kind) = kind.as_str() else { continue };
        let sel = crate::matching::parse_kind(kind);
        if crate::cel::match_constraints::builtin_group(sel.kind).is_some() {
            continue;
        }
        if let Some(right) = crate::cel::match_constraints::builtin_kinds()
            .find(|k| k.eq_ignore_ascii_case(sel.kind))
        {
            out.push(finding(
                Severity::Warning,
                "unmatchable-filter",
                &format!("{path}.kinds[{i}]"),
                format!(
                    "kind {kind:?} never matches: kinds are compared exactly, the built-in kind is `{right}`"
                ),
                None,
            ));
        }
    }
    for (i, ns) in r
        .get("namespaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(ns) = ns.as_str() else { continue };
        if let Some(why) = namespace_pattern_problem(ns) {
            out.push(finding(
                Severity::Warning,
                "unmatchable-filter",
                &format!("{path}.namespaces[{i}]"),
                format!("namespace pattern {ns:?} never matches: {why}"),
                None,
            ));
        }
    }
}

/// Condition operators Kyverno renamed, with their current names (`kybern fix policy` rewrites
/// them; Kyverno still reads the old ones).
pub const DEPRECATED_OPERATORS: [(&str, &str); 4] = [
    ("Equal", "Equals"),
    ("NotEqual", "NotEquals"),
    ("In", "AllIn"),
    ("NotIn", "AnyNotIn"),
];

/// Conditions (objects with `key` and `operator` under `preconditions` or `conditions`, not
/// label selectors) anywhere in a rule using a renamed operator.
fn check_deprecated_operators(
    v: &Value,
    path: &str,
    in_conditions: bool,
    out: &mut Vec<Finding>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(m) => {
            if in_conditions
                && m.contains_key("key")
                && let Some(op) = m.get("operator").and_then(Value::as_str)
                && let Some((_, now)) = DEPRECATED_OPERATORS.iter().find(|(old, _)| *old == op)
            {
                out.push(finding(
                    Severity::Warning,
                    "deprecated-operator",
                    &format!("{path}.operator"),
                    format!(
                        "`{op}` is deprecated in Kyverno, `{now}` means the same \
                         (`kybern fix policy` rewrites it)"
                    ),
                    None,
                ));
            }
            for (k, child) in m {
                let inside = match k.as_str() {
                    "preconditions" | "conditions" => true,
                    "matchExpressions" | "selector" | "namespaceSelector" => false,
                    _ => in_conditions,
                };
                check_deprecated_operators(child, &format!("{path}.{k}"), inside, out, depth + 1);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                check_deprecated_operators(child, &p, in_conditions, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The rule's `verifyImages` entries with their positions.
fn verify_images(rule: &Value) -> impl Iterator<Item = (usize, &Value)> {
    rule.get("verifyImages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

/// `mutateDigest` (true unless set) on a verifyImages entry that only audits: Kyverno's policy
/// webhook refuses the policy (`kyverno apply`/`test` do not check it, so it shows first when
/// the policy is applied to a cluster).
fn check_audit_mutate_digest(
    rule: &Value,
    rule_path: &str,
    policy_action: Option<&str>,
    out: &mut Vec<Finding>,
) {
    for (j, v) in verify_images(rule) {
        let action = v
            .get("failureAction")
            .and_then(Value::as_str)
            .or(policy_action)
            .unwrap_or("Audit");
        let mutate_digest = v
            .get("mutateDigest")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if mutate_digest && !action.eq_ignore_ascii_case("enforce") {
            let unset = if v.get("mutateDigest").is_none() {
                " (it defaults to true)"
            } else {
                ""
            };
            out.push(finding(
                Severity::Error,
                "audit-mutate-digest",
                &format!("{rule_path}.verifyImages[{j}].mutateDigest"),
                format!(
                    "Kyverno refuses this policy: mutateDigest must be set to false for 'Audit' \
                     failure action{unset}; set `mutateDigest: false`, or `failureAction: Enforce`"
                ),
                None,
            ));
        }
    }
}

/// `imageRegistryCredentials.providers` (cloud credential helpers): kybern has no cloud
/// credential helpers, so the registry calls of such an entry go without them.
fn check_registry_credentials(rule: &Value, rule_path: &str, out: &mut Vec<Finding>) {
    for (j, v) in verify_images(rule) {
        let providers = v
            .pointer("/imageRegistryCredentials/providers")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty());
        if let Some(providers) = providers {
            let names: Vec<&str> = providers.iter().filter_map(Value::as_str).collect();
            out.push(finding(
                Severity::Warning,
                "registry-credentials",
                &format!("{rule_path}.verifyImages[{j}].imageRegistryCredentials.providers"),
                format!(
                    "credential providers ({}) are not used by kybern: registry calls use \
                     imageRegistryCredentials.secrets, --image-pull-secrets and --registry \
                     credentials only",
                    names.join(", ")
                ),
                None,
            ));
        }
    }
}

fn check_cel(rule: &Value, rule_path: &str, out: &mut Vec<Finding>) {
    let Some(cel) = rule.pointer("/validate/cel") else {
        return;
    };
    for (field, list) in [("expressions", "expression"), ("variables", "expression")] {
        for (i, e) in cel
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(source) = e.get(list).and_then(Value::as_str) else {
                continue;
            };
            let path = format!("{rule_path}.validate.cel.{field}[{i}].{list}");
            if let Err(err) = crate::cel::Expression::compile(source, &path) {
                out.push(finding(
                    Severity::Error,
                    "cel-syntax",
                    &path,
                    format!("does not compile: {err}"),
                    Some(source),
                ));
            }
        }
    }
}

/// Fields that hold CEL expressions, in the CEL kinds and in `validate.cel`.
const CEL_FIELDS: &[&str] = &["expression", "messageExpression", "valueExpression"];

/// CEL expressions the planner cannot run: they run in the interpreter, several times slower
/// and without the step budget (only the request deadline stops them).
fn check_interpreted_cel(v: &Value, path: &str, out: &mut Vec<Finding>, depth: usize) {
    if depth > 32 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let child_path = format!("{path}.{k}");
                match child {
                    Value::String(source) if CEL_FIELDS.contains(&k.as_str()) => {
                        let Ok(e) = crate::cel::Expression::compile(source, &child_path) else {
                            continue;
                        };
                        if let Some(reason) = e.fallback_reason() {
                            out.push(finding(
                                Severity::Warning,
                                "cel-interpreted",
                                &child_path,
                                format!(
                                    "runs in the CEL interpreter, slower and without the step budget ({reason})"
                                ),
                                Some(source),
                            ));
                        }
                    }
                    _ => check_interpreted_cel(child, &child_path, out, depth + 1),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_interpreted_cel(item, &format!("{path}[{i}]"), out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The findings of one document (a ClusterPolicy or Policy; other kinds are checked by loading
/// them). A document that does not load gives its load error and no other finding.
pub fn lint_document(doc: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if !matches!(kind, "ClusterPolicy" | "Policy") {
        match crate::cel::policy_set::compile_document(doc) {
            Some(Err(e)) => out.push(finding(Severity::Error, "load", "", e.to_string(), None)),
            Some(Ok(_)) => {
                if let Some(spec) = doc.get("spec") {
                    check_interpreted_cel(spec, "spec", &mut out, 0);
                }
            }
            None => {}
        }
        return out;
    }
    if let Err(e) = crate::policy::compile_policy(doc) {
        out.push(finding(Severity::Error, "load", &e.path, e.message, None));
        return out;
    }
    if let Some((path, reason)) = crate::autogen::autogen_blocker(doc) {
        out.push(finding(
            Severity::Warning,
            "autogen-skipped",
            &path,
            reason,
            None,
        ));
    }
    let background = doc
        .pointer("/spec/background")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let policy_action = doc
        .pointer("/spec/validationFailureAction")
        .and_then(Value::as_str);
    for (i, rule) in doc
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let rule_path = format!("spec.rules[{i}]");
        let mut names = BTreeSet::new();
        context_names(rule, &mut names, 0);
        let scope = RuleScope {
            names: &names,
            background,
        };
        walk_strings(rule, &rule_path, &scope, &mut out, 0);
        check_kinds(rule, &rule_path, &mut out);
        check_audit_mutate_digest(rule, &rule_path, policy_action, &mut out);
        check_registry_credentials(rule, &rule_path, &mut out);
        check_deprecated_operators(rule, &rule_path, false, &mut out, 0);
        check_cel(rule, &rule_path, &mut out);
        if let Some(cel) = rule.pointer("/validate/cel") {
            check_interpreted_cel(cel, &format!("{rule_path}.validate.cel"), &mut out, 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_literal_regex_that_does_not_compile_is_an_error() {
        let doc = |pattern: &str| {
            json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
                "metadata": {"name": "p"},
                "spec": {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "validate": {"message": "m", "deny": {"conditions": {"any": [
                        {"key": format!("{{{{ regex_match('{pattern}', request.object.metadata.name) }}}}"),
                         "operator": "Equals", "value": false}]}}}}]}})
        };
        let regex_findings = |d: &Value| {
            lint_document(d)
                .into_iter()
                .filter(|f| f.check == "regex-syntax")
                .count()
        };
        assert_eq!(regex_findings(&doc("^app-[a-z")), 1);
        assert_eq!(regex_findings(&doc("^app-[a-z]+$")), 0);
    }

    #[test]
    fn filters_that_can_never_select_are_named() {
        let doc = json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
            "metadata": {"name": "p"},
            "spec": {"rules": [{"name": "r",
                "match": {"any": [{"resources": {"kinds": ["pod", "Deployment", "example.com/v1/Widget"]}}]},
                "exclude": {"any": [{"resources": {"namespaces": ["kube-*", "Team_A"]}}]},
                "validate": {"message": "m", "pattern": {"metadata": {"name": "?*"}}}}]}});
        let found: Vec<_> = lint_document(&doc)
            .into_iter()
            .filter(|f| f.check == "unmatchable-filter")
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0].path,
            "spec.rules[0].match.any[0].resources.kinds[0]"
        );
        assert!(found[0].message.contains("`Pod`"), "{}", found[0].message);
        assert_eq!(
            found[1].path,
            "spec.rules[0].exclude.any[0].resources.namespaces[1]"
        );
        assert!(
            found[1].message.contains("'T' cannot appear"),
            "{}",
            found[1].message
        );
    }

    #[test]
    fn a_repeat_count_go_refuses_is_a_regex_error() {
        let doc = json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
            "metadata": {"name": "p"},
            "spec": {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "validate": {"message": "m", "deny": {"conditions": {"any": [
                    {"key": "{{ regex_match('^a{2,1001}$', request.object.metadata.name) }}",
                     "operator": "Equals", "value": false}]}}}}]}});
        let found: Vec<_> = lint_document(&doc)
            .into_iter()
            .filter(|f| f.check == "regex-syntax")
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("invalid repeat count"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn renamed_operators_are_named_with_their_current_names() {
        let doc = json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
            "metadata": {"name": "p"},
            "spec": {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "exclude": {"any": [{"resources": {"namespaceSelector": {"matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["a"]}]}}}]},
                "preconditions": {"all": [{"key": "{{ request.operation }}", "operator": "In", "value": ["CREATE"]},
                    {"key": "a", "operator": "AnyIn", "value": ["a"]}]},
                "validate": {"message": "m", "deny": {"conditions": {"any": [
                    {"key": "a", "operator": "NotEqual", "value": "b"}]}}}}]}});
        let found: Vec<_> = lint_document(&doc)
            .into_iter()
            .filter(|f| f.check == "deprecated-operator")
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].path, "spec.rules[0].preconditions.all[0].operator");
        assert!(found[0].message.contains("`AllIn`"));
        assert_eq!(
            found[1].path,
            "spec.rules[0].validate.deny.conditions.any[0].operator"
        );
    }

    #[test]
    fn credential_providers_are_named_as_unused() {
        let doc = |credentials: Value| {
            json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
                "metadata": {"name": "p"},
                "spec": {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "verifyImages": [{"imageReferences": ["*"], "mutateDigest": false,
                        "imageRegistryCredentials": credentials,
                        "attestors": [{"entries": [{"keys": {"publicKeys": "k"}}]}]}]}]}})
        };
        let found = |d: &Value| {
            lint_document(d)
                .into_iter()
                .filter(|f| f.check == "registry-credentials")
                .collect::<Vec<_>>()
        };
        let with = found(&doc(
            json!({"providers": ["amazon", "google"], "secrets": ["regcred"]}),
        ));
        assert_eq!(with.len(), 1);
        assert_eq!(
            with[0].path,
            "spec.rules[0].verifyImages[0].imageRegistryCredentials.providers"
        );
        assert!(
            with[0].message.contains("amazon, google"),
            "{}",
            with[0].message
        );
        assert!(found(&doc(json!({"secrets": ["regcred"]}))).is_empty());
    }

    #[test]
    fn mutate_digest_while_auditing_is_what_kyverno_refuses() {
        let verify = |entry: Value, action: Option<&str>| {
            let mut doc = json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
                "metadata": {"name": "p"},
                "spec": {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "verifyImages": [entry]}]}});
            if let Some(a) = action {
                doc["spec"]["validationFailureAction"] = json!(a);
            }
            lint_document(&doc)
                .into_iter()
                .filter(|f| f.check == "audit-mutate-digest")
                .map(|f| f.path)
                .collect::<Vec<_>>()
        };
        let keys = json!({"imageReferences": ["*"], "attestors": [{"entries": [{"keys": {"publicKeys": "k"}}]}]});
        // Defaults: Audit and mutateDigest true.
        assert_eq!(
            verify(keys.clone(), None),
            vec!["spec.rules[0].verifyImages[0].mutateDigest".to_string()]
        );
        assert!(verify(keys.clone(), Some("Enforce")).is_empty());
        let mut off = keys.clone();
        off["mutateDigest"] = json!(false);
        assert!(verify(off, Some("Audit")).is_empty());
        let mut own = keys.clone();
        own["failureAction"] = json!("Enforce");
        assert!(verify(own, Some("Audit")).is_empty());
    }

    #[test]
    fn a_policy_that_autogen_skips_says_which_rule_stops_it() {
        let pods = |extra: Value| {
            let mut rules = vec![
                json!({"name": "pods", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "validate": {"message": "m", "pattern": {"spec": {"hostNetwork": "false"}}}}),
            ];
            rules.push(extra);
            json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
                "spec": {"rules": rules}})
        };
        let named = pods(
            json!({"name": "one", "match": {"any": [{"resources": {"kinds": ["Pod"], "names": ["x"]}}]},
            "validate": {"message": "m", "pattern": {"metadata": {"name": "?*"}}}}),
        );
        let found: Vec<_> = lint_document(&named)
            .into_iter()
            .filter(|f| f.check == "autogen-skipped")
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.rules[1].match.any[0].resources.names");
        assert!(found[0].message.contains("no rule of this policy"));
        // As the engine itself decides.
        assert!(crate::autogen::controllers(&named).is_empty());
        // Said to be meant, or nothing stops it: no finding.
        let mut meant = named.clone();
        meant["metadata"]["annotations"] =
            json!({"pod-policies.kyverno.io/autogen-controllers": "none"});
        let plain = pods(
            json!({"name": "two", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "m", "pattern": {"metadata": {"name": "?*"}}}}),
        );
        assert!(!crate::autogen::controllers(&plain).is_empty());
        for doc in [meant, plain] {
            assert!(
                lint_document(&doc)
                    .iter()
                    .all(|f| f.check != "autogen-skipped")
            );
        }
    }

    fn policy(rule: Value, background: bool) -> Value {
        json!({
            "apiVersion": "kyverno.io/v1",
            "kind": "ClusterPolicy",
            "metadata": {"name": "p"},
            "spec": {"background": background, "rules": [rule]},
        })
    }

    fn checks(doc: &Value) -> Vec<(&'static str, String)> {
        lint_document(doc)
            .into_iter()
            .map(|f| (f.check, f.path))
            .collect()
    }

    fn validate(message: &str, kinds: Value) -> Value {
        json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": kinds}}]},
            "validate": {"message": message, "pattern": {"metadata": {"name": "?*"}}},
        })
    }

    #[test]
    fn a_clean_policy_has_no_findings() {
        let doc = policy(
            validate(
                "{{ request.object.metadata.name }} needs a name",
                json!(["Pod"]),
            ),
            true,
        );
        assert_eq!(checks(&doc), vec![]);
    }

    #[test]
    fn syntax_functions_arity_and_roots_are_checked_in_every_variable() {
        let doc = policy(
            validate(
                "{{ request.object.metadata.name | }} {{ to_upperr(request.object.kind) }} {{ to_upper('a', 'b') }} {{ requset.object.kind }}",
                json!(["Pod"]),
            ),
            false,
        );
        let path = "spec.rules[0].validate.message".to_string();
        assert_eq!(
            checks(&doc),
            vec![
                ("jmespath-syntax", path.clone()),
                ("jmespath-function", path.clone()),
                ("jmespath-arity", path.clone()),
                ("variable-root", path),
            ]
        );
    }

    #[test]
    fn a_double_quoted_empty_string_is_reported_as_the_field_it_is() {
        let doc = policy(
            validate("{{ request.object.metadata.name || \"\" }}", json!(["Pod"])),
            true,
        );
        let found = lint_document(&doc);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.contains("write `''`"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn context_entries_and_foreach_elements_are_known_roots() {
        let rule = json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "context": [{"name": "allowed", "variable": {"value": ["a"]}}],
            "validate": {"foreach": [{
                "list": "request.object.spec.containers",
                "context": [{"name": "inner", "variable": {"value": 1}}],
                "deny": {"conditions": {"any": [{
                    "key": "{{ element.name }}{{ elementIndex }}{{ inner }}{{ element0.name }}",
                    "operator": "AnyNotIn",
                    "value": "{{ allowed }}",
                }]}},
            }]},
        });
        assert_eq!(checks(&policy(rule, true)), vec![]);
    }

    #[test]
    fn requester_variables_are_refused_in_background_policies() {
        let rule = validate("{{ request.userInfo.username }}", json!(["Pod"]));
        assert_eq!(
            checks(&policy(rule.clone(), true)),
            vec![(
                "background-variable",
                "spec.rules[0].validate.message".to_string()
            )]
        );
        assert_eq!(checks(&policy(rule, false)), vec![]);
    }

    #[test]
    fn wildcard_kinds_and_bad_cel_are_reported() {
        let mut rule = validate("m", json!(["*"]));
        rule["validate"] = json!({"cel": {"expressions": [{"expression": "object.spec. == 1"}]}});
        let found = checks(&policy(rule, true));
        assert_eq!(
            found,
            vec![
                (
                    "wildcard-kind",
                    "spec.rules[0].match.any[0].resources.kinds".to_string()
                ),
                (
                    "cel-syntax",
                    "spec.rules[0].validate.cel.expressions[0].expression".to_string()
                ),
            ]
        );
    }

    #[test]
    fn cel_the_planner_cannot_run_is_reported_as_interpreted() {
        let vpol = json!({
            "apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy",
            "metadata": {"name": "p"},
            "spec": {
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["pods"]}]},
                "validations": [
                    {"expression": "object.metadata.name != ''"},
                    {"expression": "size(b'abc') == 3"}
                ]
            }
        });
        let found: Vec<(&str, String)> = lint_document(&vpol)
            .into_iter()
            .map(|f| (f.check, f.path))
            .collect();
        assert_eq!(
            found,
            vec![(
                "cel-interpreted",
                "spec.validations[1].expression".to_string()
            )]
        );
        // The same in a ClusterPolicy's validate.cel.
        let mut rule = validate("m", json!(["Pod"]));
        rule["validate"] = json!({"cel": {"expressions": [{"expression": "size(b'abc') == 3"}]}});
        assert_eq!(
            checks(&policy(rule, true)),
            vec![(
                "cel-interpreted",
                "spec.rules[0].validate.cel.expressions[0].expression".to_string()
            )]
        );
    }

    #[test]
    fn a_policy_that_does_not_load_gives_its_load_error() {
        let doc = json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"}, "spec": {"rules": [{"name": "r", "validate": {"messages": "x"}}]}});
        let found = lint_document(&doc);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].check, "load");
        assert_eq!(found[0].severity, Severity::Error);
    }
}
