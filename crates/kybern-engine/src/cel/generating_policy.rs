//! GeneratingPolicy (`policies.kyverno.io`, with its Namespaced variant): on a matching trigger,
//! each `generate` entry yields the objects to create, either from an expression calling
//! `generator.Apply(namespace, objects)` or from a YAML `template` with `(( expression ))`
//! placeholders.

use super::exceptions::{CelException, ExceptionOutcome, check_exceptions};
use super::match_constraints::MatchConstraints;
use super::validate_cel::{CelInput, base_scope};
use super::{
    CelError, Condition, ConditionsOutcome, Expression, Scope, Variable, VariableValues,
    compile_conditions, compile_variables, evaluate_conditions, value,
};
use crate::context::ContextProvider;
use crate::request::AdmissionRequest;
use serde_json::Value;

/// Key of the marker map `generator.Apply` returns.
pub const GENERATED_KEY: &str = "__kybern_generate";

/// One `generate` entry.
#[derive(Debug, Clone)]
pub enum Generator {
    Expression(Expression),
    /// A parsed YAML template and the compiled placeholders found in it (by source text).
    Template {
        value: Value,
        placeholders: Vec<Expression>,
    },
}

/// The result of a GeneratingPolicy on one trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerateResult {
    NotMatched,
    Skip(String),
    ExceptionPass(String),
    Generated(Vec<Value>),
    Error(String),
}

/// A compiled GeneratingPolicy.
#[derive(Debug, Clone)]
pub struct GeneratingPolicy {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub match_constraints: MatchConstraints,
    pub match_conditions: Vec<Condition>,
    pub variables: Vec<Variable>,
    pub generate: Vec<Generator>,
    pub exceptions: Vec<CelException>,
    pub annotations: serde_json::Map<String, Value>,
    /// `spec.evaluation`: what happens after the objects are first written.
    pub evaluation: GenerateEvaluation,
}

/// `spec.evaluation` of a GeneratingPolicy (each `<name>.enabled`, false when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateEvaluation {
    /// Downstream objects are kept equal to what the policy generates.
    pub synchronize: bool,
    /// Synchronized objects stay when the policy is deleted.
    pub orphan_downstream_on_policy_delete: bool,
    /// Triggers that exist when the policy is created are generated for too.
    pub generate_existing: bool,
}

impl GenerateEvaluation {
    fn of(spec: &Value) -> Self {
        let on = |k: &str| {
            spec.pointer(&format!("/evaluation/{k}/enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        GenerateEvaluation {
            synchronize: on("synchronize"),
            orphan_downstream_on_policy_delete: on("orphanDownstreamOnPolicyDelete"),
            generate_existing: on("generateExisting"),
        }
    }
}

/// The kind name when `doc` is a GeneratingPolicy.
pub fn generating_kind(doc: &Value) -> Option<&'static str> {
    let api = doc.get("apiVersion").and_then(Value::as_str)?;
    if !api.starts_with("policies.kyverno.io/") {
        return None;
    }
    match doc.get("kind").and_then(Value::as_str)? {
        "GeneratingPolicy" => Some("GeneratingPolicy"),
        "NamespacedGeneratingPolicy" => Some("NamespacedGeneratingPolicy"),
        _ => None,
    }
}

/// The `(( ... ))` placeholders in `s`, as (start, end, expression source).
fn placeholders(s: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = s.get(from..).and_then(|r| r.find("((")).map(|i| i + from) {
        let Some(end) = s
            .get(start + 2..)
            .and_then(|r| r.find("))"))
            .map(|i| i + start + 2)
        else {
            break;
        };
        out.push((
            start,
            end + 2,
            s.get(start + 2..end).unwrap_or_default().trim(),
        ));
        from = end + 2;
    }
    out
}

fn collect_placeholders(v: &Value, path: &str, out: &mut Vec<Expression>) -> Result<(), CelError> {
    match v {
        Value::String(s) => {
            for (_, _, src) in placeholders(s) {
                if !out.iter().any(|e| e.source == src) {
                    out.push(Expression::compile(src, path)?);
                }
            }
        }
        Value::Array(a) => a
            .iter()
            .try_for_each(|x| collect_placeholders(x, path, out))?,
        Value::Object(m) => m
            .values()
            .try_for_each(|x| collect_placeholders(x, path, out))?,
        _ => {}
    }
    Ok(())
}

impl GeneratingPolicy {
    /// `name`, or `namespace/name` for a NamespacedGeneratingPolicy (an UpdateRequest's
    /// `spec.policy`).
    pub fn key(&self) -> String {
        super::policy_key(&self.namespace, &self.name)
    }

    /// Compiles a GeneratingPolicy document.
    pub fn compile(doc: &Value) -> Result<GeneratingPolicy, CelError> {
        let kind =
            generating_kind(doc).ok_or_else(|| CelError::new("kind", "not a GeneratingPolicy"))?;
        let spec = doc
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| CelError::new("spec", "is required"))?;
        let list = spec
            .get("generate")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                CelError::new("spec.generate", "at least one generate entry is required")
            })?;
        let mut generate = Vec::with_capacity(list.len());
        for (i, g) in list.iter().enumerate() {
            let p = format!("spec.generate[{i}]");
            if let Some(src) = g.get("expression").and_then(Value::as_str) {
                generate.push(Generator::Expression(Expression::compile(
                    src,
                    &format!("{p}.expression"),
                )?));
            } else if let Some(t) = g.get("template") {
                let text = t
                    .get("value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| CelError::new(format!("{p}.template.value"), "is required"))?;
                let docs = crate::yaml::parse_all(text)
                    .map_err(|e| CelError::new(format!("{p}.template.value"), e.to_string()))?;
                let value = docs.into_iter().next().unwrap_or(Value::Null);
                let mut placeholders = Vec::new();
                if t.get("interpolate").and_then(Value::as_str) == Some("cel") {
                    collect_placeholders(
                        &value,
                        &format!("{p}.template.value"),
                        &mut placeholders,
                    )?;
                }
                generate.push(Generator::Template {
                    value,
                    placeholders,
                });
            } else {
                return Err(CelError::new(p, "an expression or a template is required"));
            }
        }
        Ok(GeneratingPolicy {
            kind,
            name: super::policy_name(doc),
            namespace: super::policy_namespace(doc, kind == "NamespacedGeneratingPolicy"),
            match_constraints: MatchConstraints::compile(
                spec.get("matchConstraints"),
                "spec.matchConstraints",
            )?,
            match_conditions: compile_conditions(
                spec.get("matchConditions"),
                "spec.matchConditions",
            )?,
            variables: compile_variables(spec.get("variables"), "spec.variables")?,
            generate,
            exceptions: Vec::new(),
            evaluation: GenerateEvaluation::of(spec),
            annotations: crate::objects::at(doc, &["metadata", "annotations"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Evaluates the policy on a trigger: the objects to generate.
    pub fn evaluate(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
    ) -> GenerateResult {
        if !self.namespace.is_empty() && req.namespace() != self.namespace {
            return GenerateResult::NotMatched;
        }
        let ns_labels = super::namespace_labels(req, provider);
        if !self.match_constraints.matches(req, ns_labels.as_ref()) {
            return GenerateResult::NotMatched;
        }
        let request = CelInput::request_json(req);
        let namespace_object = super::validating_policy::namespace_object(req, provider);
        let input = CelInput {
            object: req.resource(),
            old_object: &req.old_object,
            request: &request,
            namespace_object: namespace_object.as_ref(),
            params: None,
            provider: Some(provider),
        };
        let mut scope = match base_scope(&input) {
            Ok(s) => s,
            Err(e) => return GenerateResult::Error(e),
        };
        match check_exceptions(&self.exceptions, &mut scope) {
            ExceptionOutcome::None => {}
            ExceptionOutcome::Skip(m) => return GenerateResult::Skip(m),
            ExceptionOutcome::Pass(m) => return GenerateResult::ExceptionPass(m),
            ExceptionOutcome::Error(e) => return GenerateResult::Error(e),
        }
        let vars = VariableValues::evaluate(&self.variables, &mut scope);
        match evaluate_conditions(&self.match_conditions, &scope) {
            ConditionsOutcome::Met => {}
            ConditionsOutcome::NotMet(name) => {
                return GenerateResult::Skip(format!("match condition {name:?} not met"));
            }
            ConditionsOutcome::Error(e) => return GenerateResult::Error(vars.explain(e)),
        }
        let mut out = Vec::new();
        scope.collect_generated();
        for g in &self.generate {
            match g {
                Generator::Expression(e) => match e.eval(&scope) {
                    Ok(v) => {
                        for (namespace, objects) in
                            scope.generated().map(|g| g.take()).unwrap_or_default()
                        {
                            add_generated(&namespace, &value::to_json(&objects), &mut out);
                        }
                        collect_generated(&value::to_json(&v), &mut out);
                    }
                    Err(e) => return GenerateResult::Error(vars.explain(e)),
                },
                Generator::Template {
                    value,
                    placeholders,
                } => match interpolate(value, placeholders, &scope) {
                    Ok(v) => out.push(clean(v, None)),
                    Err(e) => return GenerateResult::Error(vars.explain(e)),
                },
            }
        }
        GenerateResult::Generated(out)
    }
}

/// Replaces `(( expr ))` placeholders: a string that is one placeholder takes the value, else
/// each placeholder is replaced by its text.
fn interpolate(v: &Value, exprs: &[Expression], scope: &Scope) -> Result<Value, String> {
    let eval = |src: &str| -> Result<Value, String> {
        let e = exprs
            .iter()
            .find(|e| e.source == src)
            .ok_or_else(|| format!("placeholder {src:?} was not compiled"))?;
        e.eval(scope).map(|v| value::to_json(&v))
    };
    Ok(match v {
        Value::String(s) => {
            let found = placeholders(s);
            match found.as_slice() {
                [] => v.clone(),
                [(0, end, src)] if *end == s.len() => eval(src)?,
                _ => {
                    let mut text = String::new();
                    let mut last = 0;
                    for (start, end, src) in &found {
                        text.push_str(s.get(last..*start).unwrap_or_default());
                        match eval(src)? {
                            Value::String(x) => text.push_str(&x),
                            other => text.push_str(&other.to_string()),
                        }
                        last = *end;
                    }
                    text.push_str(s.get(last..).unwrap_or_default());
                    Value::String(text)
                }
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| interpolate(x, exprs, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), interpolate(x, exprs, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Collects the objects of `generator.Apply` markers found in an expression result.
fn collect_generated(v: &Value, out: &mut Vec<Value>) {
    if let Some(m) = v.get(GENERATED_KEY) {
        let ns = m
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        add_generated(ns, m.get("objects").unwrap_or(&Value::Null), out);
        return;
    }
    if let Value::Array(a) = v {
        for x in a {
            collect_generated(x, out);
        }
    }
}

/// The objects of one `generator.Apply(namespace, objects)` call; a List among them gives its
/// items.
fn add_generated(ns: &str, objects: &Value, out: &mut Vec<Value>) {
    for o in objects.as_array().into_iter().flatten() {
        match o.get("items").and_then(Value::as_array) {
            Some(items)
                if o.get("metadata").is_none()
                    || o.get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| k.ends_with("List")) =>
            {
                out.extend(items.iter().map(|i| clean(i.clone(), Some(ns))));
            }
            _ => out.push(clean(o.clone(), Some(ns))),
        }
    }
}

/// A downstream object: in `namespace` (when given and the object is not cluster-scoped by
/// having no namespace to replace), without server-set metadata.
fn clean(mut v: Value, namespace: Option<&str>) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
            meta.insert("namespace".into(), Value::String(ns.to_string()));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoProvider;
    use serde_json::json;

    fn policy(generate: Value, conditions: Value) -> GeneratingPolicy {
        GeneratingPolicy::compile(&json!({
            "apiVersion": "policies.kyverno.io/v1beta1", "kind": "GeneratingPolicy",
            "metadata": {"name": "g"},
            "spec": {
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["namespaces"]}]},
                "matchConditions": conditions,
                "variables": [{"name": "ns", "expression": "object.metadata.name"},
                              {"name": "lbl", "expression": "{'a': 'b'}"}],
                "generate": generate,
            }
        }))
        .unwrap()
    }

    #[test]
    fn evaluation_settings_are_read_from_their_enabled_fields() {
        let spec = json!({"evaluation": {"synchronize": {"enabled": true},
            "orphanDownstreamOnPolicyDelete": {"enabled": false}}});
        let e = GenerateEvaluation::of(&spec);
        assert!(e.synchronize);
        assert!(!e.orphan_downstream_on_policy_delete);
        assert!(!e.generate_existing);
        assert_eq!(
            GenerateEvaluation::of(&json!({})),
            GenerateEvaluation::default()
        );
    }

    fn ns_request() -> AdmissionRequest {
        AdmissionRequest {
            object: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
                .into(),
            ..AdmissionRequest::default()
        }
    }

    #[test]
    fn generates_from_expressions_and_templates() {
        let cm =
            "[{'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c', 'uid': 'x'}}]";
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "generator.Apply sets the namespace and drops server fields",
                json!([{"expression": format!("generator.Apply(variables.ns, {cm})")}]),
                json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "team"}}]),
            ),
            (
                "list objects generate their items",
                json!([{"expression": "generator.apply(variables.ns, [{'kind': 'SecretList', 'items': [{'kind': 'Secret', 'metadata': {'name': 's', 'namespace': 'default'}}]}])"}]),
                json!([{"kind": "Secret", "metadata": {"name": "s", "namespace": "team"}}]),
            ),
            (
                "templates interpolate whole values and text",
                json!([{"template": {"interpolate": "cel", "value": "kind: ConfigMap\nmetadata:\n  name: (( variables.ns ))-cfg\n  labels: (( variables.lbl ))\n"}}]),
                json!([{"kind": "ConfigMap", "metadata": {"name": "team-cfg", "labels": {"a": "b"}}}]),
            ),
        ];
        for (name, generate, want) in cases {
            let got = policy(generate, json!([])).evaluate(&ns_request(), &NoProvider);
            assert_eq!(
                got,
                GenerateResult::Generated(want.as_array().unwrap().clone()),
                "{name}"
            );
        }
    }

    #[test]
    fn conditions_and_matching() {
        let g = json!([{"expression": "generator.Apply('x', [])"}]);
        let p = policy(g.clone(), json!([{"name": "no", "expression": "false"}]));
        assert!(matches!(
            p.evaluate(&ns_request(), &NoProvider),
            GenerateResult::Skip(_)
        ));
        let pod = AdmissionRequest {
            object: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"}}).into(),
            ..AdmissionRequest::default()
        };
        assert_eq!(
            policy(g, json!([])).evaluate(&pod, &NoProvider),
            GenerateResult::NotMatched
        );
    }
}
