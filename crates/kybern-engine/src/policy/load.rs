//! Compiling one `kyverno.io` ClusterPolicy/Policy document into a [`Policy`], with Kyverno's
//! load-time validation. Errors name the field path inside the document.

use super::{
    FailureActionOverride, ForeachValidation, LabelSelector, MatchResources, Pattern, Policy,
    PolicyKind, Rule, RuleBody, Validation, ValidationCheck,
};
use crate::pod_security::PodSecurity;
use crate::preconditions::ConditionBlock;
use crate::response::{FailureAction, RuleType};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// Why a policy document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyLoadErrorKind {
    /// The document is not a policy this engine knows (another kind or apiVersion).
    UnknownKind,
    /// Kyverno itself would reject the policy (its validation webhook or CLI would refuse it).
    Invalid,
    /// A field has the wrong shape or is unknown to this engine.
    Malformed,
}

/// A policy that could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyLoadError {
    pub kind: PolicyLoadErrorKind,
    /// Field path inside the document, e.g. `spec.rules[0].validate.pattern`.
    pub path: String,
    pub message: String,
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> PolicyLoadError {
    PolicyLoadError {
        kind: PolicyLoadErrorKind::Invalid,
        path: path.into(),
        message: message.into(),
    }
}

/// Decodes a typed part of the policy, naming the exact field on error.
fn decode<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, PolicyLoadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = if inner == "." || inner.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        PolicyLoadError {
            kind: PolicyLoadErrorKind::Malformed,
            path: full,
            message: e.into_inner().to_string(),
        }
    })
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn parse_action(value: &Value, path: &str) -> Result<FailureAction, PolicyLoadError> {
    match value.as_str() {
        Some(s) if s.eq_ignore_ascii_case("enforce") => Ok(FailureAction::Enforce),
        Some(s) if s.eq_ignore_ascii_case("audit") => Ok(FailureAction::Audit),
        _ => Err(invalid(
            path,
            format!("unsupported value {value}: must be Audit or Enforce"),
        )),
    }
}

fn parse_overrides(
    value: Option<&Value>,
    path: &str,
) -> Result<Vec<FailureActionOverride>, PolicyLoadError> {
    let Some(list) = value else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_array() else {
        return Err(invalid(path, "must be a list"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let action = parse_action(
            item.get("action").unwrap_or(&Value::Null),
            &format!("{item_path}.action"),
        )?;
        let namespaces = match item.get("namespaces") {
            Some(v) => decode::<Vec<String>>(v, &format!("{item_path}.namespaces"))?,
            None => Vec::new(),
        };
        let namespace_selector = match item.get("namespaceSelector") {
            Some(v) => Some(decode::<LabelSelector>(
                v,
                &format!("{item_path}.namespaceSelector"),
            )?),
            None => None,
        };
        out.push(FailureActionOverride {
            action,
            namespaces,
            namespace_selector,
        });
    }
    Ok(out)
}

/// Compiles a ClusterPolicy or Policy document (`kyverno.io/v1` or `v2beta1`).
pub fn compile_policy(doc: &Value) -> Result<Policy, PolicyLoadError> {
    let api_version = str_field(doc, "apiVersion").unwrap_or_default();
    let kind = match str_field(doc, "kind") {
        Some("ClusterPolicy") => PolicyKind::ClusterPolicy,
        Some("Policy") => PolicyKind::Policy,
        other => {
            return Err(PolicyLoadError {
                kind: PolicyLoadErrorKind::UnknownKind,
                path: "kind".into(),
                message: format!("not a kyverno.io policy: {}", other.unwrap_or("<none>")),
            });
        }
    };
    if !matches!(
        api_version,
        "kyverno.io/v1" | "kyverno.io/v2beta1" | "kyverno.io/v2"
    ) {
        return Err(PolicyLoadError {
            kind: PolicyLoadErrorKind::UnknownKind,
            path: "apiVersion".into(),
            message: format!(
                "unsupported apiVersion {api_version:?} for {}",
                kind.as_str()
            ),
        });
    }
    // Kyverno refuses a policy with a field its schema does not declare (a misspelt key).
    if let Some((path, field)) = super::schema::unknown_field(doc) {
        return Err(PolicyLoadError {
            kind: PolicyLoadErrorKind::Malformed,
            path,
            message: format!("unknown field `{field}`"),
        });
    }
    let metadata = doc.get("metadata").cloned().unwrap_or(Value::Null);
    let name = str_field(&metadata, "name").unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(invalid("metadata.name", "a policy needs a name"));
    }
    let namespace = match kind {
        PolicyKind::ClusterPolicy => String::new(),
        PolicyKind::Policy => str_field(&metadata, "namespace")
            .unwrap_or("default")
            .to_string(),
    };
    let annotations: BTreeMap<String, String> = match metadata.get("annotations") {
        Some(v) => decode(v, "metadata.annotations")?,
        None => BTreeMap::new(),
    };
    let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
    if !spec.is_object() {
        return Err(invalid("spec", "a policy needs a spec object"));
    }
    let validation_failure_action = match spec.get("validationFailureAction") {
        Some(v) => parse_action(v, "spec.validationFailureAction")?,
        None => FailureAction::Audit,
    };
    let failure_action_overrides = parse_overrides(
        spec.get("validationFailureActionOverrides"),
        "spec.validationFailureActionOverrides",
    )?;
    let apply_one = str_field(&spec, "applyRules") == Some("One");
    let failure_policy = spec
        .get("webhookConfiguration")
        .and_then(|w| str_field(w, "failurePolicy"))
        .or_else(|| str_field(&spec, "failurePolicy"))
        .unwrap_or("Fail");
    let background = spec
        .get("background")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let admission = spec
        .get("admission")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let match_conditions = crate::cel::compile_conditions(
        spec.pointer("/webhookConfiguration/matchConditions")
            .filter(|v| !v.is_null()),
        "spec.webhookConfiguration.matchConditions",
    )
    .map_err(|e| invalid(e.path.clone(), e.message.clone()))?;

    let raw_rules = crate::autogen::compute_rules(doc);
    let declared = spec
        .get("rules")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut rules = Vec::with_capacity(raw_rules.len());
    let mut names = HashSet::new();
    for (i, raw) in raw_rules.iter().enumerate() {
        // Generated rules have no index in the document; name them by their source.
        let path = if i < declared {
            format!("spec.rules[{i}]")
        } else {
            format!(
                "spec.rules[{}](autogen)",
                str_field(raw, "name").unwrap_or_default()
            )
        };
        let rule = compile_rule(raw, &path, kind)?;
        if kind == PolicyKind::Policy {
            check_generate_confined(&rule, &path, &namespace)?;
        }
        if !names.insert(rule.name.clone()) {
            return Err(invalid(
                format!("{path}.name"),
                format!("duplicate rule name {:?}", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(Policy {
        kind,
        name,
        namespace,
        annotations,
        validation_failure_action,
        failure_action_overrides,
        apply_one,
        failure_policy_fail: failure_policy != "Ignore",
        background,
        admission,
        match_conditions,
        rules,
    })
}

fn compile_match(value: &Value, path: &str) -> Result<MatchResources, PolicyLoadError> {
    if crate::variables::value_has_variables(value) {
        return Err(invalid(
            path,
            "variables are not allowed in match and exclude",
        ));
    }
    let m: MatchResources = decode(value, path)?;
    if !m.any.is_empty() && !m.all.is_empty() {
        return Err(invalid(path, "can't specify any and all together"));
    }
    for d in m.descriptions() {
        if d.name.is_some() && !d.names.is_empty() {
            return Err(invalid(path, "both name and names can not be specified"));
        }
    }
    Ok(m)
}

/// A namespaced Policy generates and clones only within its own namespace (Kyverno refuses the
/// policy at load); namespaces given by variables are checked when the rule runs.
fn check_generate_confined(rule: &Rule, path: &str, own: &str) -> Result<(), PolicyLoadError> {
    let RuleBody::Generate(g) = &rule.body else {
        return Ok(());
    };
    let mut places: Vec<(String, Option<&Value>)> = vec![
        (format!("{path}.generate.namespace"), g.get("namespace")),
        (
            format!("{path}.generate.clone.namespace"),
            g.pointer("/clone/namespace"),
        ),
        (
            format!("{path}.generate.cloneList.namespace"),
            g.pointer("/cloneList/namespace"),
        ),
    ];
    for (i, item) in g
        .get("foreach")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        places.push((
            format!("{path}.generate.foreach[{i}].namespace"),
            item.get("namespace"),
        ));
    }
    for (at, value) in places {
        let Some(ns) = value.and_then(Value::as_str) else {
            continue;
        };
        if ns.is_empty() || ns.contains("{{") || ns == own {
            continue;
        }
        return Err(invalid(
            at,
            format!(
                "a namespaced policy cannot generate resources in other namespaces, expected: {own}, received: {ns}"
            ),
        ));
    }
    Ok(())
}

fn compile_rule(raw: &Value, path: &str, kind: PolicyKind) -> Result<Rule, PolicyLoadError> {
    let name = str_field(raw, "name").unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(invalid(format!("{path}.name"), "a rule needs a name"));
    }
    if name.len() > 63 {
        return Err(invalid(
            format!("{path}.name"),
            "a rule name may have at most 63 characters",
        ));
    }
    let match_path = format!("{path}.match");
    let match_resources = match raw.get("match") {
        Some(v) => compile_match(v, &match_path)?,
        None => return Err(invalid(match_path, "a rule needs a match block")),
    };
    if match_resources.is_empty() {
        return Err(invalid(match_path, "match cannot be empty"));
    }
    if kind == PolicyKind::Policy {
        for d in match_resources.descriptions() {
            if !d.namespaces.is_empty() {
                return Err(invalid(
                    match_path.clone(),
                    "namespaces is not allowed in a namespaced Policy",
                ));
            }
        }
    }
    let exclude = match raw.get("exclude") {
        Some(v) => Some(compile_match(v, &format!("{path}.exclude"))?),
        None => None,
    };
    let context = match raw.get("context") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(invalid(format!("{path}.context"), "must be a list")),
    };
    for (i, entry) in context.iter().enumerate() {
        check_context_entry(entry, &format!("{path}.context[{i}]"))?;
    }
    let preconditions = raw.get("preconditions").filter(|v| !v.is_null()).cloned();
    if let Some(p) = &preconditions {
        check_conditions(p, &format!("{path}.preconditions"))?;
    }

    let types: Vec<&str> = ["validate", "mutate", "generate", "verifyImages"]
        .into_iter()
        .filter(|k| raw.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let body = match types.as_slice() {
        ["validate"] => {
            let v = raw.get("validate").unwrap_or(&Value::Null);
            RuleBody::Validate(Box::new(compile_validation(
                v,
                raw.get("celPreconditions").filter(|c| !c.is_null()),
                &format!("{path}.validate"),
            )?))
        }
        ["generate"] => {
            let g = raw.get("generate").cloned().unwrap_or(Value::Null);
            let sources = ["data", "clone", "cloneList", "foreach"]
                .into_iter()
                .filter(|k| g.get(*k).is_some_and(|v| !v.is_null()))
                .count();
            if sources != 1 {
                return Err(invalid(
                    format!("{path}.generate"),
                    "generate needs exactly one of data, clone, cloneList or foreach",
                ));
            }
            RuleBody::Generate(Box::new(g))
        }
        ["mutate"] => {
            // Rules with `targets` mutate existing resources; the engine tells them apart.
            let m = raw.get("mutate").cloned().unwrap_or(Value::Null);
            check_json_patch(&m, &format!("{path}.mutate"))?;
            RuleBody::Mutate(Box::new(m))
        }
        ["verifyImages"] => {
            let Some(entries) = raw.get("verifyImages").and_then(Value::as_array) else {
                return Err(invalid(
                    format!("{path}.verifyImages"),
                    "verifyImages must be a list",
                ));
            };
            let extractors = crate::images::Extractors::from_json(raw.get("imageExtractors"))
                .map_err(|(at, message)| invalid(format!("{path}.imageExtractors{at}"), message))?;
            RuleBody::VerifyImages {
                entries: entries
                    .iter()
                    .map(crate::image_verification::ImageVerification::from_json)
                    .collect(),
                extractors,
            }
        }
        [other] => RuleBody::Unsupported {
            field: format!("{path}.{other}"),
            rule_type: match *other {
                "mutate" => RuleType::Mutation,
                "generate" => RuleType::Generation,
                _ => RuleType::ImageVerify,
            },
        },
        [] => {
            return Err(invalid(
                path,
                "a rule needs one of validate, mutate, generate or verifyImages",
            ));
        }
        _ => {
            return Err(invalid(
                path,
                format!("a rule may have only one of {}", types.join(", ")),
            ));
        }
    };
    let mutate_has_variables =
        matches!(&body, RuleBody::Mutate(m) if crate::variables::value_has_variables(m));
    Ok(Rule {
        name,
        mutate_has_variables,
        kind_filter: crate::matching::kind_filter(&match_resources),
        preconditions_have_variables: preconditions
            .as_ref()
            .is_some_and(crate::variables::value_has_variables),
        match_resources,
        exclude,
        context,
        preconditions: preconditions.as_ref().map(ConditionBlock::compile),
        body,
        path: path.to_string(),
    })
}

const RESERVED_CONTEXT_NAMES: [&str; 6] = [
    "images",
    "request",
    "serviceAccountName",
    "serviceAccountNamespace",
    "element",
    "elementIndex",
];

fn check_context_entry(entry: &Value, path: &str) -> Result<(), PolicyLoadError> {
    let name = str_field(entry, "name").unwrap_or_default();
    if name.is_empty() {
        return Err(invalid(
            format!("{path}.name"),
            "a context entry needs a name",
        ));
    }
    if RESERVED_CONTEXT_NAMES.contains(&name) {
        return Err(invalid(
            format!("{path}.name"),
            format!("entry name {name:?} is reserved"),
        ));
    }
    let sources: Vec<&str> = [
        "variable",
        "configMap",
        "apiCall",
        "imageRegistry",
        "globalReference",
    ]
    .into_iter()
    .filter(|k| entry.get(*k).is_some())
    .collect();
    if sources.len() != 1 {
        return Err(invalid(
            path,
            "a context entry needs exactly one of variable, configMap, apiCall, imageRegistry or globalReference",
        ));
    }
    Ok(())
}

/// Checks the operators of a conditions block (any/all object or legacy list).
pub(crate) fn check_conditions(value: &Value, path: &str) -> Result<(), PolicyLoadError> {
    let mut lists: Vec<(String, &Vec<Value>)> = Vec::new();
    match value {
        Value::Array(items) => lists.push((path.to_string(), items)),
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("any" | "all", Value::Array(items)) => {
                        lists.push((format!("{path}.{key}"), items));
                    }
                    ("any" | "all", Value::Null) => {}
                    _ => {
                        return Err(invalid(
                            format!("{path}.{key}"),
                            "conditions accept only any and all lists",
                        ));
                    }
                }
            }
        }
        Value::Null => {}
        _ => {
            return Err(invalid(
                path,
                "conditions must be a list or an any/all object",
            ));
        }
    }
    for (list_path, items) in lists {
        for (i, c) in items.iter().enumerate() {
            let op = str_field(c, "operator").unwrap_or_default();
            if !crate::conditions::is_known_operator(op) {
                return Err(invalid(
                    format!("{list_path}[{i}].operator"),
                    format!("unknown operator {op:?}"),
                ));
            }
        }
    }
    Ok(())
}

fn compile_validation(
    v: &Value,
    cel_preconditions: Option<&Value>,
    path: &str,
) -> Result<Validation, PolicyLoadError> {
    let message = str_field(v, "message").map(str::to_string);
    let failure_action = match v.get("failureAction") {
        Some(a) => Some(parse_action(a, &format!("{path}.failureAction"))?),
        None => None,
    };
    let failure_action_overrides = parse_overrides(
        v.get("failureActionOverrides"),
        &format!("{path}.failureActionOverrides"),
    )?;
    let allow_existing_violations = v
        .get("allowExistingViolations")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let present = |k: &str| v.get(k).is_some_and(|x| !x.is_null());
    let check = if present("manifests") {
        let manifests_path = format!("{path}.manifests");
        let check = crate::signed_manifests::ManifestCheck::compile(
            v.get("manifests").unwrap_or(&Value::Null),
            &manifests_path,
        )
        .map_err(|e| invalid(manifests_path, e))?;
        ValidationCheck::Manifests(Box::new(check))
    } else if present("podSecurity") {
        let ps_path = format!("{path}.podSecurity");
        let ps = PodSecurity::from_json(v.get("podSecurity").unwrap_or(&Value::Null))
            .map_err(|e| invalid(ps_path, e.to_string()))?;
        ValidationCheck::PodSecurity(ps)
    } else if present("cel") {
        let mut cel = crate::cel::ValidateCel::compile(
            v.get("cel").unwrap_or(&Value::Null),
            cel_preconditions,
            &format!("{path}.cel"),
        )
        .map_err(|e| invalid(e.path.clone(), e.message.clone()))?;
        // Kyverno gives expressions without a message of their own the rule's message.
        if let Some(m) = message.as_ref().filter(|m| !m.is_empty()) {
            for e in cel.validations.iter_mut().filter(|e| e.message.is_none()) {
                e.message = Some(m.clone());
            }
        }
        ValidationCheck::Cel(Box::new(cel))
    } else if present("deny") {
        let deny = v.get("deny").cloned().unwrap_or(Value::Null);
        let conditions = deny.get("conditions").cloned().unwrap_or(Value::Null);
        check_conditions(&conditions, &format!("{path}.deny.conditions"))?;
        ValidationCheck::Deny(ConditionBlock::compile(&conditions))
    } else if present("pattern") {
        let pattern = v.get("pattern").cloned().unwrap_or(Value::Null);
        crate::pattern::check_validate_syntax(&pattern)
            .map_err(|e| invalid(format!("{path}.pattern"), e.to_string()))?;
        ValidationCheck::Pattern(Pattern::new(pattern))
    } else if present("anyPattern") {
        let Some(list) = v.get("anyPattern").and_then(Value::as_array) else {
            return Err(invalid(format!("{path}.anyPattern"), "must be a list"));
        };
        for (i, p) in list.iter().enumerate() {
            crate::pattern::check_validate_syntax(p)
                .map_err(|e| invalid(format!("{path}.anyPattern[{i}]"), e.to_string()))?;
        }
        ValidationCheck::AnyPattern(list.iter().cloned().map(Pattern::new).collect())
    } else if present("foreach") {
        ValidationCheck::Foreach(compile_foreach(
            v.get("foreach").unwrap_or(&Value::Null),
            &format!("{path}.foreach"),
            0,
        )?)
    } else if present("assert") {
        ValidationCheck::Unsupported(format!("{path}.assert"))
    } else {
        return Err(invalid(
            path,
            "validate needs one of pattern, anyPattern, deny, foreach, podSecurity, cel or manifests",
        ));
    };
    Ok(Validation {
        message,
        failure_action,
        failure_action_overrides,
        allow_existing_violations,
        check,
    })
}

/// JSON patches must parse as a list of operations whose paths start with `/` (variables in
/// paths are allowed: foreach patches address `/spec/containers/{{elementIndex}}`).
fn check_json_patch(m: &Value, path: &str) -> Result<(), PolicyLoadError> {
    if let Some(ops) = m.get("patchesJson6902").filter(|v| !v.is_null()) {
        // Variables in a patch string are substituted before it is read as YAML (an
        // unquoted `{{ x }}` is no flow mapping then), so they are checked as placeholders.
        let placeholder;
        let ops = match ops {
            Value::String(s) if crate::variables::has_variables(s) => {
                placeholder = Value::String(crate::variables::replace_variables(
                    s,
                    "kybernjsonpatchvariable",
                ));
                &placeholder
            }
            other => other,
        };
        let ops = crate::json_patch::parse_operations(ops)
            .map_err(|e| invalid(format!("{path}.patchesJson6902"), e.to_string()))?;
        for (i, op) in ops.iter().enumerate() {
            let p = op.get("path").and_then(Value::as_str).unwrap_or_default();
            if !p.starts_with('/') && !p.starts_with("{{") {
                return Err(invalid(
                    format!("{path}.patchesJson6902[{i}].path"),
                    format!("path {p:?} must begin with a forward slash"),
                ));
            }
        }
    }
    for (i, entry) in m
        .get("foreach")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        check_json_patch(entry, &format!("{path}.foreach[{i}]"))?;
    }
    Ok(())
}

const MAX_FOREACH_DEPTH: usize = 8;

fn compile_foreach(
    v: &Value,
    path: &str,
    depth: usize,
) -> Result<Vec<ForeachValidation>, PolicyLoadError> {
    if depth >= MAX_FOREACH_DEPTH {
        return Err(invalid(path, "foreach is nested too deeply"));
    }
    let Some(list) = v.as_array() else {
        return Err(invalid(path, "must be a list"));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let entry_path = format!("{path}[{i}]");
        let present = |k: &str| entry.get(k).filter(|x| !x.is_null());
        let check = if let Some(p) = present("pattern") {
            crate::pattern::check_validate_syntax(p)
                .map_err(|e| invalid(format!("{entry_path}.pattern"), e.to_string()))?;
            ValidationCheck::Pattern(Pattern::new(p.clone()))
        } else if let Some(list) = present("anyPattern") {
            let Some(items) = list.as_array() else {
                return Err(invalid(
                    format!("{entry_path}.anyPattern"),
                    "must be a list",
                ));
            };
            ValidationCheck::AnyPattern(items.iter().cloned().map(Pattern::new).collect())
        } else if let Some(d) = present("deny") {
            let conditions = d.get("conditions").cloned().unwrap_or(Value::Null);
            check_conditions(&conditions, &format!("{entry_path}.deny.conditions"))?;
            ValidationCheck::Deny(ConditionBlock::compile(&conditions))
        } else if let Some(nested) = present("foreach") {
            ValidationCheck::Foreach(compile_foreach(
                nested,
                &format!("{entry_path}.foreach"),
                depth + 1,
            )?)
        } else {
            return Err(invalid(
                entry_path,
                "foreach needs one of pattern, anyPattern, deny or foreach",
            ));
        };
        let preconditions = present("preconditions").cloned();
        if let Some(p) = &preconditions {
            check_conditions(p, &format!("{entry_path}.preconditions"))?;
        }
        out.push(ForeachValidation {
            list: entry
                .get("list")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            element_scope: entry.get("elementScope").and_then(Value::as_bool),
            context: entry
                .get("context")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            preconditions: preconditions.as_ref().map(ConditionBlock::compile),
            check,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rules: Value) -> Value {
        json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
               "metadata": {"name": "p"}, "spec": {"rules": rules}})
    }

    #[test]
    fn compiles_a_pattern_rule() {
        let p = compile_policy(&policy(json!([{
            "name": "r", "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
            "validate": {"message": "m", "pattern": {"metadata": {"labels": {"app": "?*"}}}}
        }])))
        .unwrap();
        assert_eq!(p.rules.len(), 1);
        assert!(matches!(p.rules[0].body, RuleBody::Validate(_)));
    }

    #[test]
    fn unknown_match_field_names_the_path() {
        let err = compile_policy(&policy(json!([{
            "name": "r", "match": {"any": [{"resources": {"kind": ["Pod"]}}]},
            "validate": {"pattern": {}}
        }])))
        .unwrap_err();
        assert_eq!(err.kind, PolicyLoadErrorKind::Malformed);
        assert!(err.path.starts_with("spec.rules[0].match"), "{}", err.path);
        assert!(err.message.contains("kind"), "{}", err.message);
    }

    #[test]
    fn rejects_two_rule_types() {
        let err = compile_policy(&policy(json!([{
            "name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"pattern": {}}, "mutate": {"patchStrategicMerge": {}}
        }])))
        .unwrap_err();
        assert_eq!(err.path, "spec.rules[0]");
    }

    #[test]
    fn rejects_unknown_operator() {
        let err = compile_policy(&policy(json!([{
            "name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"deny": {"conditions": {"any": [{"key": 1, "operator": "Bigger", "value": 2}]}}}
        }])))
        .unwrap_err();
        assert_eq!(
            err.path,
            "spec.rules[0].validate.deny.conditions.any[0].operator"
        );
    }

    #[test]
    fn other_kinds_are_not_policies() {
        let err = compile_policy(&json!({"apiVersion": "v1", "kind": "Pod"})).unwrap_err();
        assert_eq!(err.kind, PolicyLoadErrorKind::UnknownKind);
    }
}
