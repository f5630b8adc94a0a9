//! ImageValidatingPolicy (`policies.kyverno.io`, with its Namespaced variant): matching,
//! `matchConditions`, exceptions, image extraction (`images`), the image references selected by
//! `matchImageReferences` (globs or expressions), `attestors` and `attestations` as CEL values,
//! and the `validations`, whose registry functions (`verifyImageSignatures`, ...) are answered by
//! the context provider (`image_verify`).

use super::exceptions::{CelException, ExceptionOutcome, check_exceptions};
use super::match_constraints::MatchConstraints;
use super::mutating_policy::MutateResult;
use super::validate_cel::{CelInput, Validation, base_scope, compile_validations, run_validations};
use super::validating_policy::CelPolicyResult;
use super::{
    CelError, Condition, ConditionsOutcome, Expression, Variable, VariableValues,
    compile_conditions, compile_variables, evaluate_conditions, value,
};
use crate::context::ContextProvider;
use crate::request::AdmissionRequest;
use serde_json::{Map, Value};

/// One `matchImageReferences` entry.
#[derive(Debug, Clone)]
pub enum ImageReference {
    Glob(String),
    /// Evaluated with `ref` bound to the image.
    Expression(Expression),
}

/// A compiled ImageValidatingPolicy.
#[derive(Debug, Clone)]
pub struct ImageValidatingPolicy {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub match_constraints: MatchConstraints,
    pub match_conditions: Vec<Condition>,
    pub variables: Vec<Variable>,
    pub references: Vec<ImageReference>,
    /// Custom extractors: `images[] {name, expression}`.
    pub extractors: Vec<Variable>,
    pub attestors: Value,
    pub attestations: Value,
    pub validations: Vec<Validation>,
    pub exceptions: Vec<CelException>,
    pub annotations: Map<String, Value>,
    /// `validationConfigurations.mutateDigest` (default true): the mutate pass pins tags.
    pub mutate_digest: bool,
}

/// The kind name when `doc` is an ImageValidatingPolicy.
pub fn image_policy_kind(doc: &Value) -> Option<&'static str> {
    let api = doc.get("apiVersion").and_then(Value::as_str)?;
    if !api.starts_with("policies.kyverno.io/") {
        return None;
    }
    match doc.get("kind").and_then(Value::as_str)? {
        "ImageValidatingPolicy" => Some("ImageValidatingPolicy"),
        "NamespacedImageValidatingPolicy" => Some("NamespacedImageValidatingPolicy"),
        _ => None,
    }
}

fn by_name(list: Option<&Value>) -> Value {
    let mut out = Map::new();
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = item.get("name").and_then(Value::as_str) {
            out.insert(n.to_string(), item.clone());
        }
    }
    Value::Object(out)
}

/// The pod spec of a Pod or of a pod controller's template.
fn pod_spec(resource: &Value) -> Option<&Value> {
    crate::objects::at(
        resource,
        &["spec", "jobTemplate", "spec", "template", "spec"],
    )
    .or_else(|| crate::objects::at(resource, &["spec", "template", "spec"]))
    .or_else(|| {
        (resource.get("kind").and_then(Value::as_str) == Some("Pod"))
            .then(|| resource.get("spec"))
            .flatten()
    })
}

/// `images`: the images of each container list, as strings.
pub fn extract_images(resource: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let spec = pod_spec(resource);
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        let list: Vec<Value> = spec
            .and_then(|s| s.get(key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("image").cloned())
            .collect();
        out.insert(key.to_string(), Value::Array(list));
    }
    out
}

impl ImageValidatingPolicy {
    /// Compiles an ImageValidatingPolicy document.
    pub fn compile(doc: &Value) -> Result<ImageValidatingPolicy, CelError> {
        let kind = image_policy_kind(doc)
            .ok_or_else(|| CelError::new("kind", "not an ImageValidatingPolicy"))?;
        let spec = doc
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| CelError::new("spec", "is required"))?;
        let mut references = Vec::new();
        for (i, r) in spec
            .get("matchImageReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(g) = r.get("glob").and_then(Value::as_str) {
                references.push(ImageReference::Glob(g.to_string()));
            } else if let Some(e) = r.get("expression").and_then(Value::as_str) {
                references.push(ImageReference::Expression(Expression::compile(
                    e,
                    &format!("spec.matchImageReferences[{i}].expression"),
                )?));
            } else {
                return Err(CelError::new(
                    format!("spec.matchImageReferences[{i}]"),
                    "a glob or an expression is required",
                ));
            }
        }
        Ok(ImageValidatingPolicy {
            kind,
            name: super::policy_name(doc),
            namespace: super::policy_namespace(doc, kind == "NamespacedImageValidatingPolicy"),
            match_constraints: MatchConstraints::compile(
                spec.get("matchConstraints"),
                "spec.matchConstraints",
            )?,
            match_conditions: compile_conditions(
                spec.get("matchConditions"),
                "spec.matchConditions",
            )?,
            variables: compile_variables(spec.get("variables"), "spec.variables")?,
            references,
            extractors: compile_variables(spec.get("images"), "spec.images")?,
            attestors: by_name(spec.get("attestors")),
            attestations: by_name(spec.get("attestations")),
            validations: compile_validations(spec.get("validations"), "spec.validations", true)?,
            exceptions: Vec::new(),
            mutate_digest: crate::objects::at(spec, &["validationConfigurations", "mutateDigest"])
                .and_then(Value::as_bool)
                .unwrap_or(true),
            annotations: crate::objects::at(doc, &["metadata", "annotations"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    fn selects(&self, image: &str, scope: &super::Scope) -> Result<bool, String> {
        if self.references.is_empty() {
            return Ok(true);
        }
        for r in &self.references {
            let hit = match r {
                ImageReference::Glob(g) => crate::wildcard::matches(g, image),
                ImageReference::Expression(e) => {
                    let mut s = scope.clone();
                    s.set_json("ref", &Value::String(image.to_string()));
                    e.eval_bool(&s)?
                }
            };
            if hit {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The mutate pass (Kyverno's `/ivpol/mutate`): with `mutateDigest`, the tags of the images
    /// the policy selects are pinned to their registry digests. No signature is checked here (the
    /// validate pass does that, as in Kyverno). `NotMatched` when there is nothing to pin.
    pub fn mutate_digest(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
    ) -> MutateResult {
        if !self.mutate_digest || (!self.namespace.is_empty() && req.namespace() != self.namespace)
        {
            return MutateResult::NotMatched;
        }
        let ns_labels = super::namespace_labels(req, provider);
        if !self.match_constraints.matches(req, ns_labels.as_ref()) {
            return MutateResult::NotMatched;
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
        let scope = match base_scope(&input) {
            Ok(s) => s,
            Err(e) => return MutateResult::Error(e),
        };
        match evaluate_conditions(&self.match_conditions, &scope) {
            ConditionsOutcome::Met => {}
            ConditionsOutcome::NotMet(_) => return MutateResult::NotMatched,
            ConditionsOutcome::Error(e) => return MutateResult::Error(e),
        }
        let (patched, errors) =
            crate::image_verification::pin_digests(req.resource(), provider, |image| {
                self.selects(image, &scope)
            });
        if !errors.is_empty() {
            return MutateResult::Error(errors.join("; "));
        }
        patched.map_or(MutateResult::NotMatched, MutateResult::Patched)
    }

    /// Evaluates the policy on a request.
    pub fn evaluate(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
    ) -> CelPolicyResult {
        if !self.namespace.is_empty() && req.namespace() != self.namespace {
            return CelPolicyResult::NotMatched;
        }
        let ns_labels = super::namespace_labels(req, provider);
        if !self.match_constraints.matches(req, ns_labels.as_ref()) {
            return CelPolicyResult::NotMatched;
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
            Err(e) => return CelPolicyResult::Error(e),
        };
        match check_exceptions(&self.exceptions, &mut scope) {
            ExceptionOutcome::None => {}
            ExceptionOutcome::Skip(m) => return CelPolicyResult::Skip(m),
            ExceptionOutcome::Pass(_) => return CelPolicyResult::Pass,
            ExceptionOutcome::Error(e) => return CelPolicyResult::Error(e),
        }
        match evaluate_conditions(&self.match_conditions, &scope) {
            ConditionsOutcome::Met => {}
            ConditionsOutcome::NotMet(name) => {
                return CelPolicyResult::Skip(format!("match condition {name:?} not met"));
            }
            ConditionsOutcome::Error(e) => return CelPolicyResult::Error(e),
        }
        let mut images = extract_images(req.resource());
        for x in &self.extractors {
            match x.expression.eval(&scope) {
                Ok(v) => {
                    images.insert(x.name.to_string(), value::to_json(&v));
                }
                Err(e) => return CelPolicyResult::Error(format!("images {:?}: {e}", x.name)),
            }
        }
        let mut any = false;
        for list in images.values_mut() {
            if let Value::Array(a) = list {
                let mut kept = Vec::new();
                for img in a.drain(..) {
                    let keep = match img.as_str() {
                        Some(s) => match self.selects(s, &scope) {
                            Ok(k) => k,
                            Err(e) => return CelPolicyResult::Error(e),
                        },
                        None => false,
                    };
                    if keep {
                        kept.push(img);
                    }
                }
                any |= !kept.is_empty();
                *a = kept;
            }
        }
        if !any {
            return CelPolicyResult::Pass;
        }
        scope.set_json("images", &Value::Object(images));
        scope.set_json("attestors", &self.attestors);
        scope.set_json("attestations", &self.attestations);
        let vars = VariableValues::evaluate(&self.variables, &mut scope);
        match run_validations(&self.validations, &vars, &scope) {
            super::CelOutcome::Pass => CelPolicyResult::Pass,
            super::CelOutcome::Fail(m) => CelPolicyResult::Fail(m),
            super::CelOutcome::Skip(m) => CelPolicyResult::Skip(m),
            super::CelOutcome::Error(e) => CelPolicyResult::Error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoProvider;
    use serde_json::json;

    fn policy(validation: &str) -> ImageValidatingPolicy {
        ImageValidatingPolicy::compile(&json!({
            "apiVersion": "policies.kyverno.io/v1beta1", "kind": "ImageValidatingPolicy",
            "metadata": {"name": "i"},
            "spec": {
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["pods"]}]},
                "matchImageReferences": [{"glob": "ghcr.io/*"}],
                "attestors": [{"name": "notary", "notary": {"certs": {"value": "x"}}}],
                "validations": [{"expression": validation, "message": "bad"}],
            }
        }))
        .unwrap()
    }

    fn pod(image: &str) -> AdmissionRequest {
        AdmissionRequest {
            object: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
                           "spec": {"containers": [{"name": "c", "image": image}]}}).into(),
            ..AdmissionRequest::default()
        }
    }

    #[test]
    fn images_are_selected_and_validated() {
        type Check = fn(&CelPolicyResult) -> bool;
        let cases: Vec<(&str, &str, Check)> = vec![
            (
                "images.containers.all(i, i.startsWith('ghcr.io/'))",
                "ghcr.io/a/b:1",
                |r| *r == CelPolicyResult::Pass,
            ),
            ("size(images.containers) == 0", "ghcr.io/a/b:1", |r| {
                matches!(r, CelPolicyResult::Fail(_))
            }),
            ("false", "docker.io/nginx", |r| *r == CelPolicyResult::Pass),
            (
                "images.containers.map(i, verifyImageSignatures(i, [attestors.notary])).all(e, e > 0)",
                "ghcr.io/a/b:1",
                |r| matches!(r, CelPolicyResult::Error(m) if m.contains("\"notary\": notary is not supported yet")),
            ),
        ];
        for (expr, image, check) in cases {
            let got = policy(expr).evaluate(&pod(image), &NoProvider);
            assert!(check(&got), "{expr} on {image}: {got:?}");
        }
    }
}
