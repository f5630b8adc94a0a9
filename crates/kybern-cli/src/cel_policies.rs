//! CEL policy kinds in the CLI: loading Validating, Mutating, Generating, Deleting and
//! ImageValidating policies, Validating/Mutating admission policies with their bindings, and CEL
//! PolicyExceptions; evaluating them on a resource in the kyverno CLI's order; and turning each
//! whole-policy result into the response shape the kyverno CLI reports (one rule, usually
//! without a name). JSON, HTTP and Envoy payloads of tests are in [`payloads`].

pub mod payloads;

use crate::files::{Document, Issue};
use kybern_engine::cel::deleting_policy::{DeleteResult, DeletingPolicy, deleting_kind};
use kybern_engine::cel::exceptions::CelException;
use kybern_engine::cel::generating_policy::{GenerateResult, GeneratingPolicy, generating_kind};
use kybern_engine::cel::image_policy::{ImageValidatingPolicy, image_policy_kind};
use kybern_engine::cel::mutating_policy::{MutateResult, MutatingKind, MutatingPolicy};
use kybern_engine::cel::validating_policy::{
    Binding, CelPolicyKind, CelPolicyResult, EvaluationMode, ValidatingPolicy,
};
use kybern_engine::context::{ApiCall, ContextProvider, ImageData, Labels, ProviderError};
use kybern_engine::request::AdmissionRequest;
use kybern_engine::response::{EngineResponse, RuleResult, RuleStatus, RuleType};
use serde_json::Value;

/// Compiled CEL policies and the bindings and exceptions seen so far.
#[derive(Default, Clone)]
pub struct CelPolicies {
    pub policies: Vec<ValidatingPolicy>,
    pub bindings: Vec<Binding>,
    pub mutating: Vec<MutatingPolicy>,
    pub mutating_bindings: Vec<Binding>,
    pub generating: Vec<GeneratingPolicy>,
    pub deleting: Vec<DeletingPolicy>,
    pub image: Vec<ImageValidatingPolicy>,
    pub exceptions: Vec<CelException>,
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

/// A CEL policy's identity in responses.
struct Meta<'a> {
    name: &'a str,
    namespace: &'a str,
    kind: &'a str,
    annotations: &'a serde_json::Map<String, Value>,
}

fn engine_response(
    m: &Meta,
    rules: Vec<RuleResult>,
    resource: &Value,
    patched: &Value,
) -> EngineResponse {
    EngineResponse {
        policy_name: m.name.to_string(),
        policy_namespace: m.namespace.to_string(),
        policy_kind: m.kind.to_string(),
        unscored: m
            .annotations
            .get("policies.kyverno.io/scored")
            .and_then(Value::as_str)
            == Some("false"),
        rules,
        resource: std::sync::Arc::new(resource.clone()),
        patched_resource: std::sync::Arc::new(patched.clone()),
        failure_actions: Vec::new(),
    }
}

fn vmeta(p: &ValidatingPolicy) -> Meta<'_> {
    Meta {
        name: &p.name,
        namespace: &p.namespace,
        kind: p.kind.as_str(),
        annotations: &p.annotations,
    }
}

impl CelPolicies {
    /// True when no CEL policy was loaded.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.mutating.is_empty()
            && self.generating.is_empty()
            && self.deleting.is_empty()
            && self.image.is_empty()
    }

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
        let fail = |e: kybern_engine::cel::CelError| {
            issue(format!("{kind} {:?} at {e}", doc_name(&d.value)))
        };
        if api.starts_with("admissionregistration.k8s.io/")
            && (kind == "ValidatingAdmissionPolicyBinding"
                || kind == "MutatingAdmissionPolicyBinding")
        {
            let b = Binding::compile(&d.value)
                .map_err(|e| issue(format!("{kind} {:?}: {e}", doc_name(&d.value))))?;
            if kind == "ValidatingAdmissionPolicyBinding" {
                for p in self.policies.iter_mut().filter(|p| p.name == b.policy_name) {
                    p.bindings.push(b.clone());
                }
                self.bindings.push(b);
            } else {
                for p in self.mutating.iter_mut().filter(|p| p.name == b.policy_name) {
                    p.bindings.push(b.clone());
                }
                self.mutating_bindings.push(b);
            }
            return Ok(true);
        }
        let exceptions_for = |k: &str, n: &str| -> Vec<CelException> {
            self.exceptions
                .iter()
                .filter(|e| e.applies_to(k, n))
                .cloned()
                .collect()
        };
        if CelPolicyKind::of(&d.value).is_some() {
            let mut p = ValidatingPolicy::compile(&d.value).map_err(fail)?;
            p.bind(&self.bindings);
            p.exceptions = exceptions_for(p.kind.as_str(), &p.name);
            self.policies.push(p);
        } else if MutatingKind::of(&d.value).is_some() {
            let mut p = MutatingPolicy::compile(&d.value).map_err(fail)?;
            p.bindings = self
                .mutating_bindings
                .iter()
                .filter(|b| b.policy_name == p.name)
                .cloned()
                .collect();
            p.exceptions = exceptions_for(p.kind.as_str(), &p.name);
            self.mutating.push(p);
        } else if generating_kind(&d.value).is_some() {
            let mut p = GeneratingPolicy::compile(&d.value).map_err(fail)?;
            p.exceptions = exceptions_for(p.kind, &p.name);
            self.generating.push(p);
        } else if deleting_kind(&d.value).is_some() {
            self.deleting
                .push(DeletingPolicy::compile(&d.value).map_err(fail)?);
        } else if image_policy_kind(&d.value).is_some() {
            let mut p = ImageValidatingPolicy::compile(&d.value).map_err(fail)?;
            p.exceptions = exceptions_for(p.kind, &p.name);
            self.image.push(p);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Adds a CEL PolicyException (`policies.kyverno.io`) and attaches it to the policies it
    /// names, loaded before or after it.
    pub fn add_exception(&mut self, d: &Document) -> Result<(), Issue> {
        let e = CelException::compile(&d.value).map_err(|e| Issue {
            file: d.file.clone(),
            index: Some(d.index),
            message: format!("PolicyException {:?} at {e}", doc_name(&d.value)),
        })?;
        for p in self.policies.iter_mut() {
            if e.applies_to(p.kind.as_str(), &p.name) {
                p.exceptions.push(e.clone());
            }
        }
        for p in self.mutating.iter_mut() {
            if e.applies_to(p.kind.as_str(), &p.name) {
                p.exceptions.push(e.clone());
            }
        }
        for p in self.generating.iter_mut() {
            if e.applies_to(p.kind, &p.name) {
                p.exceptions.push(e.clone());
            }
        }
        for p in self.image.iter_mut() {
            if e.applies_to(p.kind, &p.name) {
                p.exceptions.push(e.clone());
            }
        }
        self.exceptions.push(e);
        Ok(())
    }

    /// Responses of the CEL policies for one request, in the kyverno CLI's order:
    /// MutatingAdmissionPolicies (chained), MutatingPolicies (each on the same input; the last
    /// patch wins), then on the mutated resource ValidatingAdmissionPolicies, ValidatingPolicies
    /// (Kubernetes mode, then JSON mode), GeneratingPolicies, ImageValidatingPolicies and, on the
    /// default run only, DeletingPolicies.
    pub fn evaluate(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
        default_run: bool,
    ) -> Vec<EngineResponse> {
        let mut out = Vec::new();
        let mut current = req.resource().clone();
        let with = |obj: &Value| -> AdmissionRequest {
            let mut r = req.clone();
            if r.object.is_null() {
                r.old_object = obj.clone();
            } else {
                r.object = obj.clone();
            }
            r
        };
        for p in self
            .mutating
            .iter()
            .filter(|p| p.kind == MutatingKind::MutatingAdmissionPolicy)
        {
            let (rule, patched) = match p.evaluate(&with(&current), provider) {
                MutateResult::NotMatched => continue,
                MutateResult::Skip(m) => {
                    (rule(&p.name, RuleType::Mutation, RuleStatus::Skip, m), None)
                }
                MutateResult::ExceptionPass(m) => {
                    (rule(&p.name, RuleType::Mutation, RuleStatus::Pass, m), None)
                }
                MutateResult::Patched(v) => (
                    rule(
                        &p.name,
                        RuleType::Mutation,
                        RuleStatus::Pass,
                        "mutation is successfully applied".into(),
                    ),
                    Some(v).filter(|v| !v.is_null()),
                ),
                MutateResult::Error(m) => (
                    rule(&p.name, RuleType::Mutation, RuleStatus::Error, m),
                    None,
                ),
            };
            let before = current.clone();
            if let Some(v) = patched {
                current = v;
            }
            out.push(engine_response(&mmeta(p), vec![rule], &before, &current));
        }
        let input = current.clone();
        let mut mpol = Vec::new();
        let mut last_patch = None;
        for p in self
            .mutating
            .iter()
            .filter(|p| p.kind != MutatingKind::MutatingAdmissionPolicy)
        {
            let rules = match p.evaluate(&with(&input), provider) {
                MutateResult::NotMatched => {
                    if p.match_constraints.is_simple() {
                        continue;
                    }
                    Vec::new()
                }
                MutateResult::Skip(m) => vec![rule("", RuleType::Mutation, RuleStatus::Skip, m)],
                MutateResult::ExceptionPass(m) => {
                    vec![rule("", RuleType::Mutation, RuleStatus::Pass, m)]
                }
                MutateResult::Patched(v) => {
                    if !v.is_null() {
                        last_patch = Some(v);
                    }
                    vec![rule(
                        "",
                        RuleType::Mutation,
                        RuleStatus::Pass,
                        "success".into(),
                    )]
                }
                MutateResult::Error(m) => vec![rule("", RuleType::Mutation, RuleStatus::Error, m)],
            };
            mpol.push((p, rules));
        }
        if let Some(v) = last_patch {
            current = v;
        }
        for (p, rules) in mpol {
            out.push(engine_response(&mmeta(p), rules, &input, &current));
        }
        let req = with(&current);
        let vaps = self
            .policies
            .iter()
            .filter(|p| p.kind == CelPolicyKind::ValidatingAdmissionPolicy);
        let vpols = self.policies.iter().filter(|p| {
            p.kind != CelPolicyKind::ValidatingAdmissionPolicy
                && p.mode == EvaluationMode::Kubernetes
        });
        out.extend(
            vaps.chain(vpols)
                .filter_map(|p| response(p, p.evaluate(&req, provider), &current)),
        );
        for p in self
            .policies
            .iter()
            .filter(|p| p.mode == EvaluationMode::Json)
        {
            let result = p.evaluate_json(&current, provider);
            if result != CelPolicyResult::NotMatched {
                out.extend(response(p, result, &current));
            }
        }
        for p in &self.generating {
            let meta = Meta {
                name: &p.name,
                namespace: &p.namespace,
                kind: p.kind,
                annotations: &p.annotations,
            };
            let r = match p.evaluate(&req, provider) {
                GenerateResult::NotMatched => continue,
                GenerateResult::Skip(m) => rule("", RuleType::Generation, RuleStatus::Skip, m),
                GenerateResult::ExceptionPass(m) => {
                    rule("", RuleType::Generation, RuleStatus::Pass, m)
                }
                GenerateResult::Generated(objs) => {
                    let mut r = rule("", RuleType::Generation, RuleStatus::Pass, String::new());
                    r.generated = objs;
                    r
                }
                GenerateResult::Error(m) => rule("", RuleType::Generation, RuleStatus::Error, m),
            };
            out.push(engine_response(&meta, vec![r], &current, &current));
        }
        for p in &self.image {
            let meta = Meta {
                name: &p.name,
                namespace: &p.namespace,
                kind: p.kind,
                annotations: &p.annotations,
            };
            let rules = match p.evaluate(&req, provider) {
                CelPolicyResult::NotMatched => {
                    if p.match_constraints.is_simple() {
                        continue;
                    }
                    Vec::new()
                }
                other => vec![validation_rule(other)],
            };
            out.push(engine_response(&meta, rules, &current, &current));
        }
        if default_run {
            for p in &self.deleting {
                if let Some(r) = delete_rule(p.evaluate(&req, provider)) {
                    out.push(engine_response(&dmeta(p), vec![r], &current, &current));
                }
            }
        }
        out
    }
}

fn mmeta(p: &MutatingPolicy) -> Meta<'_> {
    Meta {
        name: &p.name,
        namespace: &p.namespace,
        kind: p.kind.as_str(),
        annotations: &p.annotations,
    }
}

fn dmeta(p: &DeletingPolicy) -> Meta<'_> {
    Meta {
        name: &p.name,
        namespace: &p.namespace,
        kind: p.kind,
        annotations: &p.annotations,
    }
}

fn rule(name: &str, t: RuleType, status: RuleStatus, message: String) -> RuleResult {
    RuleResult::new(name, t, status, message)
}

/// The rule of a DeletingPolicy result: pass when the resource would be deleted, fail when not.
fn delete_rule(r: DeleteResult) -> Option<RuleResult> {
    let (status, message) = match r {
        DeleteResult::NotMatched => return None,
        DeleteResult::Delete => (
            RuleStatus::Pass,
            "resource matches the deletion conditions".to_string(),
        ),
        DeleteResult::Keep(c) => (RuleStatus::Fail, format!("condition {c:?} is not met")),
        DeleteResult::Error(m) => (RuleStatus::Error, m),
    };
    Some(rule("", RuleType::Validation, status, message))
}

fn validation_rule(result: CelPolicyResult) -> RuleResult {
    let (status, message) = match result {
        CelPolicyResult::NotMatched | CelPolicyResult::Pass => (RuleStatus::Pass, String::new()),
        CelPolicyResult::Skip(m) => (RuleStatus::Skip, m),
        CelPolicyResult::Fail(m) => (RuleStatus::Fail, m),
        CelPolicyResult::Error(m) => (RuleStatus::Error, m),
    };
    rule("", RuleType::Validation, status, message)
}

/// The response the kyverno CLI keeps for a result: a ValidatingPolicy that does not select the
/// resource gives none when its match is "simple", else an empty one.
fn response(
    p: &ValidatingPolicy,
    result: CelPolicyResult,
    resource: &Value,
) -> Option<EngineResponse> {
    if result == CelPolicyResult::NotMatched {
        if p.kind != CelPolicyKind::ValidatingAdmissionPolicy && p.match_constraints.is_simple() {
            return None;
        }
        return Some(engine_response(&vmeta(p), Vec::new(), resource, resource));
    }
    Some(engine_response(
        &vmeta(p),
        vec![validation_rule(result)],
        resource,
        resource,
    ))
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
