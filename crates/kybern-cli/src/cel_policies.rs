//! CEL policy kinds in the CLI: loading ValidatingPolicies, ValidatingAdmissionPolicies and their
//! bindings, evaluating them on a resource, and turning the whole-policy result into the
//! response shape the kyverno CLI reports (one rule without a name).

use crate::files::{Document, Issue};
use kybern_engine::cel::validating_policy::{
    Binding, CelPolicyKind, CelPolicyResult, ValidatingPolicy,
};
use kybern_engine::context::{ApiCall, ContextProvider, ImageData, Labels, ProviderError};
use kybern_engine::request::AdmissionRequest;
use kybern_engine::response::{EngineResponse, RuleResult, RuleStatus, RuleType};
use serde_json::Value;

/// Compiled CEL policies and the bindings seen so far.
#[derive(Default, Clone)]
pub struct CelPolicies {
    pub policies: Vec<ValidatingPolicy>,
    pub bindings: Vec<Binding>,
}

/// Kinds whose test results are whole-policy results (`rule` is not used to select them).
pub fn is_ruleless_kind(kind: &str) -> bool {
    let kind = kind.strip_prefix("Namespaced").unwrap_or(kind);
    matches!(
        kind,
        "ValidatingPolicy"
            | "ValidatingAdmissionPolicy"
            | "MutatingPolicy"
            | "MutatingAdmissionPolicy"
            | "ImageValidatingPolicy"
            | "GeneratingPolicy"
            | "DeletingPolicy"
    )
}

fn doc_name(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl CelPolicies {
    /// Takes the document when it is a CEL kind this build evaluates. `Ok(true)`: taken.
    /// `Err`: a CEL policy that does not compile (to report as an invalid policy).
    pub fn add(&mut self, d: &Document) -> Result<bool, Issue> {
        let issue = |message: String| Issue {
            file: d.file.clone(),
            index: Some(d.index),
            message,
        };
        let kind = d
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api = d
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind == "ValidatingAdmissionPolicyBinding"
            && api.starts_with("admissionregistration.k8s.io/")
        {
            let b = Binding::compile(&d.value)
                .map_err(|e| issue(format!("{kind} {:?}: {e}", doc_name(&d.value))))?;
            for p in self.policies.iter_mut().filter(|p| p.name == b.policy_name) {
                p.bindings.push(b.clone());
            }
            self.bindings.push(b);
            return Ok(true);
        }
        if CelPolicyKind::of(&d.value).is_none() {
            return Ok(false);
        }
        let mut p = ValidatingPolicy::compile(&d.value)
            .map_err(|e| issue(format!("{kind} {:?} at {e}", doc_name(&d.value))))?;
        p.bind(&self.bindings);
        self.policies.push(p);
        Ok(true)
    }

    /// Responses of the CEL policies for one request: ValidatingAdmissionPolicies first, then
    /// ValidatingPolicies, in load order.
    pub fn evaluate(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
    ) -> Vec<EngineResponse> {
        let vaps = self
            .policies
            .iter()
            .filter(|p| p.kind == CelPolicyKind::ValidatingAdmissionPolicy);
        let vpols = self
            .policies
            .iter()
            .filter(|p| p.kind != CelPolicyKind::ValidatingAdmissionPolicy);
        vaps.chain(vpols)
            .filter_map(|p| response(p, p.evaluate(req, provider), req.resource()))
            .collect()
    }
}

/// The response the kyverno CLI keeps for a result: a ValidatingPolicy that does not select the
/// resource gives none when its match is "simple", else an empty one.
fn response(
    p: &ValidatingPolicy,
    result: CelPolicyResult,
    resource: &Value,
) -> Option<EngineResponse> {
    let (status, message) = match result {
        CelPolicyResult::NotMatched => {
            if p.kind != CelPolicyKind::ValidatingAdmissionPolicy && p.match_constraints.is_simple()
            {
                return None;
            }
            return Some(engine_response(p, Vec::new(), resource));
        }
        CelPolicyResult::Skip(m) => (RuleStatus::Skip, m),
        CelPolicyResult::Pass => (RuleStatus::Pass, String::new()),
        CelPolicyResult::Fail(m) => (RuleStatus::Fail, m),
        CelPolicyResult::Error(m) => (RuleStatus::Error, m),
    };
    let rule = RuleResult::new("", RuleType::Validation, status, message);
    Some(engine_response(p, vec![rule], resource))
}

fn engine_response(
    p: &ValidatingPolicy,
    rules: Vec<RuleResult>,
    resource: &Value,
) -> EngineResponse {
    EngineResponse {
        policy_name: p.name.clone(),
        policy_namespace: p.namespace.clone(),
        policy_kind: p.kind.as_str().to_string(),
        unscored: p
            .annotations
            .get("policies.kyverno.io/scored")
            .and_then(Value::as_str)
            == Some("false"),
        rules,
        resource: std::sync::Arc::new(resource.clone()),
        patched_resource: std::sync::Arc::new(resource.clone()),
        failure_actions: Vec::new(),
    }
}

/// Adds the objects CEL policies read in a test — `paramResources` and the `context` file's
/// `spec.resources` — to the provider's cluster objects.
pub fn add_test_objects(
    test: &crate::spec::Test,
    dir: &std::path::Path,
    provider: &mut crate::provider::FileProvider,
    notes: &mut Vec<String>,
) {
    let mut objects = Vec::new();
    let params: Vec<_> = test.param_resources.iter().map(|p| dir.join(p)).collect();
    let (docs, issues) = crate::files::read_paths(&params);
    notes.extend(issues.iter().map(ToString::to_string));
    objects.extend(
        crate::files::expand_lists(docs)
            .into_iter()
            .map(|d| crate::resources::default_namespace(d.value)),
    );
    if let Some(ctx) = &test.context {
        let (docs, issues) = crate::files::read_paths(&[dir.join(ctx)]);
        notes.extend(issues.iter().map(ToString::to_string));
        for d in docs {
            if let Some(images) = d.value.pointer("/spec/images").and_then(Value::as_array) {
                provider.images.extend(images.iter().cloned());
            }
            let items = d.value.pointer("/spec/resources").and_then(Value::as_array);
            objects.extend(
                items
                    .into_iter()
                    .flatten()
                    .cloned()
                    .map(crate::resources::default_namespace),
            );
        }
    }
    if !objects.is_empty() {
        provider
            .cluster
            .get_or_insert_with(Vec::new)
            .extend(objects);
    }
}

/// The provider CEL policies see in a test: the file provider, plus the Namespace objects of the
/// values file for `namespaceObject`.
pub struct WithNamespaces<'a> {
    pub inner: &'a crate::provider::FileProvider,
    pub namespaces: &'a [Value],
}

impl ContextProvider for WithNamespaces<'_> {
    fn resource(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        if kind == "Namespace"
            && let Some(ns) = self
                .namespaces
                .iter()
                .find(|n| n.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        {
            return Ok(Some(ns.clone()));
        }
        self.inner.resource(api_version, kind, namespace, name)
    }
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        self.inner.list(api_version, kind, namespace)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ProviderError> {
        self.inner.config_map(namespace, name)
    }
    fn api_call(&self, call: &ApiCall) -> Result<Value, ProviderError> {
        self.inner.api_call(call)
    }
    fn namespace_labels(&self, namespace: &str) -> Result<Option<Labels>, ProviderError> {
        self.inner.namespace_labels(namespace)
    }
    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        self.inner.image_data(image)
    }
    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        self.inner.global_context(name)
    }
}
