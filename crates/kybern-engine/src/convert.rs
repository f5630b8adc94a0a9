//! ClusterPolicy/Policy validate rules written as patterns, converted to ValidatingPolicies with
//! CEL (`kybern convert`). Each rule becomes one ValidatingPolicy; a rule, or a part of one, that
//! cannot be expressed is named with the reason, never dropped.

use crate::cel::match_constraints::{builtin_group, resource_for_kind};
use crate::matching::parse_kind;
use crate::wildcard;
use serde_json::{Map, Value, json};

/// The outcome of converting one policy document.
#[derive(Debug, Default)]
pub struct Conversion {
    /// One ValidatingPolicy per converted rule, with the rule's name.
    pub policies: Vec<(String, Value)>,
    /// Rules that were not converted: (rule name, reason).
    pub skipped: Vec<(String, String)>,
}

const MAX_DEPTH: usize = 32;

fn unsupported<T>(what: impl Into<String>) -> Result<T, String> {
    Err(what.into())
}

/// A CEL string literal.
fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            k,
            "in" | "as"
                | "break"
                | "const"
                | "continue"
                | "else"
                | "for"
                | "function"
                | "if"
                | "import"
                | "let"
                | "loop"
                | "package"
                | "namespace"
                | "return"
                | "var"
                | "void"
                | "while"
                | "true"
                | "false"
                | "null"
        )
}

/// `(field access, presence test)` of key `k` of map expression `e`.
fn field(e: &str, k: &str) -> (String, String) {
    if is_identifier(k) {
        (format!("{e}.{k}"), format!("has({e}.{k})"))
    } else {
        (format!("{e}[{}]", lit(k)), format!("{} in {e}", lit(k)))
    }
}

/// A wildcard pattern as an anchored RE2 regex.
fn wildcard_regex(p: &str) -> String {
    let mut re = String::from("^");
    for c in p.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/' => re.push(c),
            c => {
                re.push('\\');
                re.push(c);
            }
        }
    }
    re.push('$');
    re
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// One alternative of a string pattern (no `|`).
fn string_alternative(p: &str, f: &str) -> Result<String, String> {
    let p = p.trim();
    if let Some(rest) = p.strip_prefix('!') {
        return Ok(format!("!({})", string_alternative(rest, f)?));
    }
    for op in [">=", "<=", ">", "<"] {
        if let Some(rest) = p.strip_prefix(op) {
            let Some(n) = number(rest) else {
                return unsupported(format!(
                    "the comparison {p:?} is not with a plain number (quantities and durations are not converted)"
                ));
            };
            return Ok(format!("double({f}) {op} {n:?}"));
        }
    }
    if p == "*" {
        return Ok("true".into());
    }
    if p == "?*" {
        return Ok(format!("size(string({f})) > 0"));
    }
    if p.contains("-") && p.split('-').count() == 2 && p.split('-').all(|x| number(x).is_some()) {
        return unsupported(format!("the range {p:?} is not converted"));
    }
    if wildcard::contains_wildcard(p) {
        return Ok(format!("string({f}).matches({})", lit(&wildcard_regex(p))));
    }
    Ok(format!("string({f}) == {}", lit(p)))
}

fn scalar(p: &Value, f: &str) -> Result<String, String> {
    match p {
        Value::Bool(b) => Ok(format!("{f} == {b}")),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(format!("double({f}) == {x:?}")),
            _ => unsupported(format!("the number {n} is not converted")),
        },
        Value::String(s) => {
            if s.contains("{{") {
                return unsupported("variables in a pattern are not converted");
            }
            // `|` separates alternatives, each a conjunction of `&` parts, as Kyverno reads them.
            let mut alts = Vec::new();
            for alt in s.split('|') {
                let parts: Result<Vec<String>, String> = alt
                    .trim_matches(' ')
                    .split('&')
                    .map(|part| string_alternative(part.trim_matches(' '), f))
                    .collect();
                let parts = parts?;
                alts.push(if parts.len() == 1 {
                    parts.into_iter().next().unwrap_or_default()
                } else {
                    format!("({})", parts.join(" && "))
                });
            }
            Ok(if alts.len() == 1 {
                alts.into_iter().next().unwrap_or_default()
            } else {
                format!("({})", alts.join(" || "))
            })
        }
        Value::Null => unsupported("a null pattern value is not converted"),
        _ => unsupported("internal: not a scalar"),
    }
}

/// CEL that holds when the value at expression `f` matches pattern `p`.
fn pattern(p: &Value, f: &str, depth: usize, var: usize) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return unsupported("the pattern is nested too deep");
    }
    match p {
        Value::Object(map) => map_pattern(map, f, depth, var),
        Value::Array(items) => match items.as_slice() {
            [one] => {
                let x = format!("x{var}");
                let inner = pattern(one, &x, depth + 1, var + 1)?;
                Ok(format!("{f}.all({x}, {inner})"))
            }
            _ => unsupported("a list pattern with other than one element is not converted"),
        },
        // A scalar pattern holds for a list when it holds for every item, as in Kyverno.
        _ => {
            let v = format!("v{var}");
            let each = scalar(p, &v)?;
            let whole = scalar(p, f)?;
            Ok(format!(
                "(type({f}) == list ? {f}.all({v}, {each}) : {whole})"
            ))
        }
    }
}

fn map_pattern(
    map: &Map<String, Value>,
    e: &str,
    depth: usize,
    var: usize,
) -> Result<String, String> {
    let mut terms = Vec::new();
    for (k, pv) in map {
        let (key, anchor) = match (k.find('('), k.ends_with(')')) {
            (Some(i), true) => (
                k.get(i + 1..k.len() - 1).unwrap_or_default(),
                k.get(..i).unwrap_or_default(),
            ),
            _ => (k.as_str(), "-"),
        };
        let (access, present) = field(e, key);
        match anchor {
            // A plain key must be there and match.
            "-" => {
                let inner = pattern(pv, &access, depth + 1, var)?;
                terms.push(format!("{present} && {inner}"));
            }
            // Equality anchor: when the key is there, it must match.
            "=" => {
                let inner = pattern(pv, &access, depth + 1, var)?;
                terms.push(format!("(!({present}) || {inner})"));
            }
            // Negation anchor: the key must not be there.
            "X" => terms.push(format!("!({present})")),
            "" => {
                return unsupported(format!("the condition anchor ({key}) is not converted"));
            }
            other => {
                return unsupported(format!("the anchor {other}({key}) is not converted"));
            }
        }
    }
    Ok(if terms.is_empty() {
        "true".into()
    } else {
        terms.join(" && ")
    })
}

/// `matchConstraints` of a rule's `match` when it only names kinds and operations.
fn match_constraints(rule: &Value) -> Result<Value, String> {
    let m = rule.get("match").unwrap_or(&Value::Null);
    let filters: Vec<&Value> = if let Some(any) = m.get("any").and_then(Value::as_array) {
        any.iter().collect()
    } else if let Some(all) = m.get("all").and_then(Value::as_array) {
        if all.len() > 1 {
            return unsupported("match.all with several filters is not converted");
        }
        all.iter().collect()
    } else {
        vec![m]
    };
    let mut rules = Vec::new();
    for f in filters {
        let Some(res) = f.get("resources").and_then(Value::as_object) else {
            return unsupported("a match filter without resources is not converted");
        };
        if let Some(extra) = res
            .keys()
            .find(|k| !matches!(k.as_str(), "kinds" | "operations"))
        {
            return unsupported(format!("match resources.{extra} is not converted"));
        }
        if ["subjects", "roles", "clusterRoles"]
            .iter()
            .any(|k| f.get(k).is_some())
        {
            return unsupported("match on subjects or roles is not converted");
        }
        let operations = res
            .get("operations")
            .cloned()
            .unwrap_or_else(|| json!(["CREATE", "UPDATE"]));
        for kind in res
            .get("kinds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let sel = parse_kind(kind);
            if wildcard::contains_wildcard(sel.kind) {
                return unsupported(format!("the kind {kind:?} is not converted"));
            }
            let group = if sel.group != "*" {
                sel.group
            } else {
                match builtin_group(sel.kind) {
                    Some(g) => g,
                    None => {
                        return unsupported(format!(
                            "the API group of kind {kind:?} is unknown: write it as group/version/Kind"
                        ));
                    }
                }
            };
            let mut resource = resource_for_kind(group, sel.kind);
            if let Some(sub) = sel.subresource {
                resource = format!("{resource}/{sub}");
            }
            let version = if sel.version == "*" { "*" } else { sel.version };
            rules.push(json!({
                "apiGroups": [group],
                "apiVersions": [version],
                "operations": operations,
                "resources": [resource],
            }));
        }
    }
    if rules.is_empty() {
        return unsupported("match names no kinds");
    }
    Ok(json!({"resourceRules": rules}))
}

fn rule_validations(validate: &Value) -> Result<Vec<Value>, String> {
    for part in ["deny", "foreach", "podSecurity", "cel", "manifests"] {
        if validate.get(part).is_some() {
            return unsupported(format!(
                "validate.{part} is not converted (only pattern and anyPattern are)"
            ));
        }
    }
    let message = validate
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("validation failed");
    if message.contains("{{") {
        return unsupported("a message with variables is not converted");
    }
    let expression = if let Some(p) = validate.get("pattern") {
        pattern(p, "object", 0, 0)?
    } else if let Some(ps) = validate.get("anyPattern").and_then(Value::as_array) {
        let alts: Result<Vec<String>, String> =
            ps.iter().map(|p| pattern(p, "object", 0, 0)).collect();
        format!("({})", alts?.join(") || ("))
    } else {
        return unsupported("the rule has no pattern");
    };
    Ok(vec![json!({"expression": expression, "message": message})])
}

fn convert_rule(doc: &Value, rule: &Value, enforce_default: bool) -> Result<Value, String> {
    let name = rule.get("name").and_then(Value::as_str).unwrap_or_default();
    for part in ["mutate", "generate", "verifyImages"] {
        if rule.get(part).is_some() {
            return unsupported(format!("{part} rules are not validation"));
        }
    }
    let Some(validate) = rule.get("validate") else {
        return unsupported("the rule has no validate");
    };
    for part in ["exclude", "preconditions", "context", "celPreconditions"] {
        if rule.get(part).is_some() {
            return unsupported(format!("{part} is not converted"));
        }
    }
    let constraints = match_constraints(rule)?;
    let validations = rule_validations(validate)?;
    let enforce = match validate.get("failureAction").and_then(Value::as_str) {
        Some(a) => a.eq_ignore_ascii_case("enforce"),
        None => enforce_default,
    };
    let policy_name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(format!("{policy_name}-{name}")));
    if let Some(a) = doc.pointer("/metadata/annotations") {
        metadata.insert("annotations".into(), a.clone());
    }
    let background = doc
        .pointer("/spec/background")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut spec = Map::new();
    spec.insert(
        "validationActions".into(),
        json!([if enforce { "Deny" } else { "Audit" }]),
    );
    spec.insert(
        "evaluation".into(),
        json!({"background": {"enabled": background}}),
    );
    spec.insert("matchConstraints".into(), constraints);
    spec.insert("validations".into(), Value::Array(validations));
    // Kyverno's autogen annotation names the controllers the Pod rule extends to.
    if let Some(list) = doc
        .pointer("/metadata/annotations/pod-policies.kyverno.io~1autogen-controllers")
        .and_then(Value::as_str)
    {
        let controllers: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.eq_ignore_ascii_case("none"))
            .map(|k| resource_for_kind(builtin_group(k).unwrap_or_default(), k))
            .collect();
        spec.insert(
            "autogen".into(),
            json!({"podControllers": {"controllers": controllers}}),
        );
    }
    Ok(json!({
        "apiVersion": "policies.kyverno.io/v1beta1",
        "kind": "ValidatingPolicy",
        "metadata": metadata,
        "spec": spec,
    }))
}

/// Converts the validate rules of a ClusterPolicy (a namespaced Policy is not converted: the
/// ValidatingPolicy kind is cluster-wide).
pub fn convert_policy(doc: &Value) -> Conversion {
    let mut out = Conversion::default();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let rules = doc
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rule_name = |r: &Value| {
        r.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if kind != "ClusterPolicy" {
        for r in &rules {
            out.skipped.push((
                rule_name(r),
                format!("{kind} is not converted (only ClusterPolicy is)"),
            ));
        }
        return out;
    }
    let enforce_default = doc
        .pointer("/spec/validationFailureAction")
        .and_then(Value::as_str)
        .is_some_and(|a| a.eq_ignore_ascii_case("enforce"));
    for r in &rules {
        match convert_rule(doc, r, enforce_default) {
            Ok(p) => out.policies.push((rule_name(r), p)),
            Err(reason) => out.skipped.push((rule_name(r), reason)),
        }
    }
    out
}

/// Where a converted policy decides differently from its rule on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub rule: String,
    /// `Kind namespace/name`.
    pub resource: String,
    pub original: &'static str,
    pub converted: &'static str,
}

/// How the converted policies decide against the original rules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// (rule, resource) pairs compared.
    pub compared: usize,
    /// Pairs where either form applied (passed, failed or errored) rather than not selecting.
    pub decided: usize,
    pub disagreements: Vec<Disagreement>,
}

fn resource_name(v: &Value) -> String {
    let get = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default();
    format!(
        "{} {}/{}",
        get("/kind"),
        get("/metadata/namespace"),
        get("/metadata/name")
    )
}

/// The outcome of the original rule (with its autogen rules) on a resource.
fn original_outcome(rules: &[crate::response::RuleResult], name: &str) -> &'static str {
    use crate::response::RuleStatus;
    let mine = |r: &&crate::response::RuleResult| {
        r.name == name
            || r.name == format!("autogen-{name}")
            || r.name == format!("autogen-cronjob-{name}")
    };
    let statuses: Vec<RuleStatus> = rules.iter().filter(mine).map(|r| r.status).collect();
    if statuses.contains(&RuleStatus::Fail) {
        "fail"
    } else if statuses.contains(&RuleStatus::Error) {
        "error"
    } else if statuses.contains(&RuleStatus::Pass) || statuses.contains(&RuleStatus::Warn) {
        "pass"
    } else {
        "none"
    }
}

fn converted_outcome(r: &crate::cel::validating_policy::CelPolicyResult) -> &'static str {
    use crate::cel::validating_policy::CelPolicyResult;
    match r {
        CelPolicyResult::Pass => "pass",
        CelPolicyResult::Fail(_) => "fail",
        CelPolicyResult::Error(_) => "error",
        CelPolicyResult::NotMatched | CelPolicyResult::Skip(_) => "none",
    }
}

/// Evaluates the original rules and their conversions on each resource (as CREATE requests)
/// and lists where they decide differently.
pub fn compare(
    doc: &Value,
    conversion: &Conversion,
    resources: &[Value],
    provider: &dyn crate::context::ContextProvider,
) -> Agreement {
    use crate::cel::policy_set::{CelDocument, compile_document};
    use crate::request::{AdmissionRequest, Operation};
    let mut out = Agreement::default();
    let Ok(original) = crate::policy::compile_policy(doc) else {
        return out;
    };
    let converted: Vec<(String, _)> = conversion
        .policies
        .iter()
        .filter_map(|(rule, v)| match compile_document(v) {
            Some(Ok(CelDocument::Validating(p))) => Some((rule.clone(), p)),
            _ => None,
        })
        .collect();
    let engine = crate::engine::Engine::new(provider);
    for resource in resources {
        let request = AdmissionRequest {
            operation: Operation::Create,
            object: std::sync::Arc::new(resource.clone()),
            ..AdmissionRequest::default()
        };
        let response = engine.validate(
            &original,
            &crate::engine::PolicyContext::new(&request),
            &[],
            &std::collections::BTreeMap::new(),
        );
        for (rule, vpol) in &converted {
            let was = original_outcome(&response.rules, rule);
            let now = converted_outcome(&vpol.evaluate(&request, provider));
            out.compared += 1;
            if was != "none" || now != "none" {
                out.decided += 1;
            }
            if was != now {
                out.disagreements.push(Disagreement {
                    rule: rule.clone(),
                    resource: resource_name(resource),
                    original: was,
                    converted: now,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rule: Value) -> Value {
        json!({
            "apiVersion": "kyverno.io/v1",
            "kind": "ClusterPolicy",
            "metadata": {"name": "p"},
            "spec": {"validationFailureAction": "Enforce", "rules": [rule]},
        })
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "a"}, "spec": spec})
    }

    #[test]
    fn a_pattern_with_anchors_decides_as_the_original() {
        let doc = policy(json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "no", "pattern": {"spec": {
                "=(hostNetwork)": "false",
                "containers": [{"image": "!*:latest", "X(ports)": "null"}],
            }}},
        }));
        let c = convert_policy(&doc);
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        let (name, vpol) = &c.policies[0];
        assert_eq!(name, "r");
        assert_eq!(vpol["metadata"]["name"], "p-r");
        assert_eq!(vpol["spec"]["validationActions"], json!(["Deny"]));
        assert_eq!(
            vpol["spec"]["matchConstraints"]["resourceRules"][0],
            json!({"apiGroups": [""], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]})
        );
        let resources = vec![
            pod(json!({"containers": [{"name": "c", "image": "nginx:1.27"}]})),
            pod(json!({"containers": [{"name": "c", "image": "nginx:latest"}]})),
            pod(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "nginx:1"}]})),
            pod(
                json!({"hostNetwork": false, "containers": [{"name": "c", "image": "a:1", "ports": []}]}),
            ),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "a"},
                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:latest"}]}}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "a"}}),
        ];
        let a = compare(&doc, &c, &resources, &crate::context::NoProvider);
        assert_eq!(a.disagreements, vec![]);
        assert_eq!(a.compared, 6);
        assert_eq!(a.decided, 5, "the ConfigMap is selected by neither");
    }

    #[test]
    fn what_cannot_be_expressed_is_named() {
        let c = convert_policy(&policy(json!({
            "name": "r",
            "match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": ["prod"]}}]},
            "validate": {"message": "no", "pattern": {"spec": {"(hostNetwork)": true}}},
        })));
        assert!(c.policies.is_empty());
        assert_eq!(
            c.skipped,
            vec![(
                "r".to_string(),
                "match resources.namespaces is not converted".to_string()
            )]
        );
        let c = convert_policy(&policy(json!({
            "name": "d",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "no", "deny": {}},
        })));
        assert!(c.skipped[0].1.contains("validate.deny is not converted"));
    }

    #[test]
    fn string_patterns_cover_wildcards_comparisons_and_alternatives() {
        let f = "object.x";
        assert_eq!(
            scalar(&json!("?*"), f).unwrap(),
            "size(string(object.x)) > 0"
        );
        assert_eq!(scalar(&json!(">=2"), f).unwrap(), "double(object.x) >= 2.0");
        assert_eq!(
            scalar(&json!("a | b"), f).unwrap(),
            "(string(object.x) == 'a' || string(object.x) == 'b')"
        );
        assert!(scalar(&json!(">1Gi"), f).is_err());
        assert_eq!(scalar(&json!(true), f).unwrap(), "object.x == true");
    }
}
