//! A loaded set of CEL policies: the policies.kyverno.io kinds, Validating/Mutating admission
//! policies with their bindings, and CEL PolicyExceptions. Documents compile one at a time and
//! bindings and exceptions attach to their policies whichever is loaded first. A request is
//! evaluated either in the kyverno CLI's order with its response shapes ([`CelPolicySet::evaluate`],
//! the payload variants), or for the admission webhook ([`CelPolicySet::validate_admission`],
//! [`CelPolicySet::mutate_admission`]), where each result carries the validation actions and
//! failure policy that decide what it does to the request.

use super::CelError;
use super::deleting_policy::{DeleteResult, DeletingPolicy, deleting_kind};
use super::exceptions::CelException;
use super::generating_policy::{GenerateResult, GeneratingPolicy, generating_kind};
use super::image_policy::{ImageValidatingPolicy, image_policy_kind};
use super::mutating_policy::{MutateResult, MutatingKind, MutatingPolicy};
use super::request_inputs::{RequestInputs, SharedVariables};
use super::validating_policy::{
    Binding, CelPolicyKind, CelPolicyResult, EvaluationMode, ValidatingPolicy,
};
use crate::context::ContextProvider;
use crate::request::AdmissionRequest;
use crate::response::{EngineResponse, RuleResult, RuleStatus, RuleType};
use serde_json::Value;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Kinds whose test results are whole-policy results (a result row's `rule` is not used).
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

/// What a policy's results do in admission: `spec.validationActions`, `spec.failurePolicy`,
/// `spec.evaluation.admission.enabled` and `spec.evaluation.background.enabled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Shared with each outcome.
    pub validation_actions: Arc<[String]>,
    pub failure_policy_fail: bool,
    pub admission: bool,
    pub background: bool,
}

impl AdmissionSettings {
    fn of(doc: &Value) -> Self {
        let spec = doc.get("spec");
        let flag = |p: &str| {
            spec.and_then(|s| s.pointer(p))
                .and_then(Value::as_bool)
                .unwrap_or(true)
        };
        let mut validation_actions: Vec<String> = spec
            .and_then(|s| s.get("validationActions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if validation_actions.is_empty() {
            // Kyverno's default for ValidatingPolicy and ImageValidatingPolicy.
            validation_actions.push("Deny".into());
        }
        AdmissionSettings {
            validation_actions: validation_actions.into(),
            failure_policy_fail: spec
                .and_then(|s| s.get("failurePolicy"))
                .and_then(Value::as_str)
                != Some("Ignore"),
            admission: flag("/evaluation/admission/enabled"),
            background: flag("/evaluation/background/enabled"),
        }
    }
}

impl AdmissionSettings {
    /// A compiled policy with these settings.
    fn with<T>(&self, policy: T) -> Loaded<T> {
        Loaded {
            policy,
            admission: self.clone(),
        }
    }
}

/// A compiled policy with its admission settings.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub policy: T,
    pub admission: AdmissionSettings,
}

impl<T> Deref for Loaded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.policy
    }
}

impl<T> DerefMut for Loaded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.policy
    }
}

/// One compiled document of a CEL kind.
#[derive(Debug, Clone)]
pub enum CelDocument {
    Validating(Loaded<ValidatingPolicy>),
    Mutating(Loaded<MutatingPolicy>),
    Generating(Loaded<GeneratingPolicy>),
    Deleting(Loaded<DeletingPolicy>),
    Image(Loaded<ImageValidatingPolicy>),
    ValidatingBinding(Binding),
    MutatingBinding(Binding),
    Exception(CelException),
}

/// A CEL document that does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} {name:?}{}{error}", if *binding { ": " } else { " at " })]
pub struct CelDocumentError {
    pub kind: String,
    pub name: String,
    /// Bindings name no field path in their message.
    binding: bool,
    #[source]
    pub error: CelError,
}

/// Compiles a document when it is of a CEL kind; `None` for any other kind.
pub fn compile_document(doc: &Value) -> Option<Result<CelDocument, CelDocumentError>> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let binding = api.starts_with("admissionregistration.k8s.io/")
        && matches!(
            kind,
            "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding"
        );
    let exception = kind == "PolicyException" && api.starts_with("policies.kyverno.io/");
    let fail = |error: CelError| CelDocumentError {
        kind: kind.to_string(),
        name: super::policy_name(doc),
        binding,
        error,
    };
    let admission = AdmissionSettings::of(doc);
    let compiled = if binding {
        Binding::compile(doc).map(|b| {
            if kind == "ValidatingAdmissionPolicyBinding" {
                CelDocument::ValidatingBinding(b)
            } else {
                CelDocument::MutatingBinding(b)
            }
        })
    } else if exception {
        CelException::compile(doc).map(CelDocument::Exception)
    } else if CelPolicyKind::of(doc).is_some() {
        ValidatingPolicy::compile(doc).map(|p| CelDocument::Validating(admission.with(p)))
    } else if MutatingKind::of(doc).is_some() {
        MutatingPolicy::compile(doc).map(|p| CelDocument::Mutating(admission.with(p)))
    } else if generating_kind(doc).is_some() {
        GeneratingPolicy::compile(doc).map(|p| CelDocument::Generating(admission.with(p)))
    } else if deleting_kind(doc).is_some() {
        DeletingPolicy::compile(doc).map(|p| CelDocument::Deleting(admission.with(p)))
    } else if image_policy_kind(doc).is_some() {
        ImageValidatingPolicy::compile(doc).map(|p| CelDocument::Image(admission.with(p)))
    } else {
        return None;
    };
    Some(compiled.map_err(fail))
}

/// Compiled CEL policies with the bindings and exceptions seen so far.
#[derive(Debug, Default, Clone)]
pub struct CelPolicySet {
    pub policies: Vec<Loaded<ValidatingPolicy>>,
    pub bindings: Vec<Binding>,
    pub mutating: Vec<Loaded<MutatingPolicy>>,
    pub mutating_bindings: Vec<Binding>,
    pub generating: Vec<Loaded<GeneratingPolicy>>,
    pub deleting: Vec<Loaded<DeletingPolicy>>,
    pub image: Vec<Loaded<ImageValidatingPolicy>>,
    pub exceptions: Vec<CelException>,
}

/// A CEL policy's identity in responses.
pub(crate) struct Meta<'a> {
    name: &'a str,
    namespace: &'a str,
    kind: &'a str,
    annotations: &'a serde_json::Map<String, Value>,
}

pub(crate) fn engine_response(
    m: &Meta,
    rules: Vec<RuleResult>,
    resource: &Value,
    patched: &Value,
) -> EngineResponse {
    shared_response(
        m,
        rules,
        &Arc::new(resource.clone()),
        &Arc::new(patched.clone()),
    )
}

fn vmeta(p: &ValidatingPolicy) -> Meta<'_> {
    Meta {
        name: &p.name,
        namespace: &p.namespace,
        kind: p.kind.as_str(),
        annotations: &p.annotations,
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

fn imeta(p: &ImageValidatingPolicy) -> Meta<'_> {
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

fn validation_rule(name: &str, result: CelPolicyResult) -> RuleResult {
    let (status, message) = match result {
        CelPolicyResult::NotMatched | CelPolicyResult::Pass => (RuleStatus::Pass, String::new()),
        CelPolicyResult::Skip(m) => (RuleStatus::Skip, m),
        CelPolicyResult::Fail(m) => (RuleStatus::Fail, m),
        CelPolicyResult::Error(m) => (RuleStatus::Error, m),
    };
    rule(name, RuleType::Validation, status, message)
}

/// The rule of a mutation result, and the patched object when the mutations ran.
fn mutation_rule(name: &str, result: MutateResult, applied: &str) -> (RuleResult, Option<Value>) {
    match result {
        MutateResult::NotMatched => (
            rule(name, RuleType::Mutation, RuleStatus::Skip, String::new()),
            None,
        ),
        MutateResult::Skip(m) => (rule(name, RuleType::Mutation, RuleStatus::Skip, m), None),
        MutateResult::ExceptionPass(m) => {
            (rule(name, RuleType::Mutation, RuleStatus::Pass, m), None)
        }
        MutateResult::Patched(v) => (
            rule(name, RuleType::Mutation, RuleStatus::Pass, applied.into()),
            Some(v).filter(|v| !v.is_null()),
        ),
        MutateResult::Error(m) => (rule(name, RuleType::Mutation, RuleStatus::Error, m), None),
    }
}

/// One response per target a mutate-existing MutatingPolicy patches for `trigger` (as the
/// kyverno CLI gives them: the trigger as resource, the patched target on a passing rule);
/// targets the conditions leave alone give none.
fn target_responses(
    p: &MutatingPolicy,
    trigger: &AdmissionRequest,
    resource: &Value,
    provider: &dyn ContextProvider,
) -> Vec<EngineResponse> {
    let targets = match p.targets(trigger, provider) {
        Ok(t) => t,
        Err(e) => {
            let r = rule("", RuleType::Mutation, RuleStatus::Error, e);
            return vec![engine_response(&mmeta(p), vec![r], resource, resource)];
        }
    };
    let mut out = Vec::new();
    for target in targets {
        let result = p.evaluate_target(trigger, &target, provider);
        if matches!(result, MutateResult::NotMatched) {
            continue;
        }
        let (mut r, patched) = mutation_rule("", result, "success");
        if r.status == RuleStatus::Pass {
            r.patched_target = Some(patched.unwrap_or(target));
        }
        out.push(engine_response(&mmeta(p), vec![r], resource, resource));
    }
    out
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
        vec![validation_rule("", result)],
        resource,
        resource,
    ))
}

/// The request with its object (or, for DELETE, its old object) replaced.
fn with_object(req: &AdmissionRequest, obj: &Value) -> AdmissionRequest {
    let mut r = req.clone();
    if r.object.is_null() {
        r.old_object = Arc::new(obj.clone());
    } else {
        r.object = Arc::new(obj.clone());
    }
    r
}

/// One CEL policy's admission result: its response (one rule named after the policy) and what
/// the result does to the request.
#[derive(Debug, Clone)]
pub struct AdmissionOutcome {
    pub response: EngineResponse,
    /// `Deny`, `Warn`, `Audit`, as the policy or its binding says.
    pub validation_actions: Arc<[String]>,
    pub failure_policy_fail: bool,
    pub background: bool,
}

impl AdmissionOutcome {
    fn has(&self, action: &str) -> bool {
        self.validation_actions.iter().any(|a| a == action)
    }

    /// Kyverno's admission message for each failed rule, and for each errored one when
    /// `errors` (`Policy p failed: ...`, `Policy p error: ...`).
    fn messages(&self, errors: bool) -> Vec<String> {
        self.response
            .rules
            .iter()
            .filter_map(|r| {
                let verb = match r.status {
                    RuleStatus::Fail => "failed",
                    RuleStatus::Error if errors => "error",
                    _ => return None,
                };
                Some(format!(
                    "Policy {} {verb}: {}",
                    self.response.policy_name, r.message
                ))
            })
            .collect()
    }

    fn is_mutation(&self) -> bool {
        self.response
            .rules
            .iter()
            .any(|r| r.rule_type == RuleType::Mutation)
    }

    /// Messages that deny the request: failures under `Deny`, and errors too when the failure
    /// policy is Fail (under Ignore errors are ignored, as the API server does); for mutations,
    /// errors under `failurePolicy: Fail`.
    pub fn denials(&self) -> Vec<String> {
        if self.is_mutation() {
            return if self.failure_policy_fail {
                self.messages(true)
            } else {
                Vec::new()
            };
        }
        if self.has("Deny") {
            self.messages(self.failure_policy_fail)
        } else {
            Vec::new()
        }
    }

    /// Warnings for the response: failures under `Warn` (errors too under failure policy Fail);
    /// mutation errors under `failurePolicy: Ignore`.
    pub fn warnings(&self) -> Vec<String> {
        if self.is_mutation() {
            return if self.failure_policy_fail {
                Vec::new()
            } else {
                self.messages(true)
            };
        }
        if self.has("Warn") {
            self.messages(self.failure_policy_fail)
        } else {
            Vec::new()
        }
    }

    /// True when a failing result of this policy denies the request.
    pub fn enforces(&self) -> bool {
        self.has("Deny")
    }
}

/// Which CEL policy kinds an admission path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CelKinds {
    All,
    /// ValidatingPolicies and ValidatingAdmissionPolicies.
    Validating,
    ImageValidating,
    /// MutatingPolicies and MutatingAdmissionPolicies.
    Mutating,
}

/// Which CEL policies an admission request is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionFilter<'a> {
    pub kinds: CelKinds,
    /// Only policies of this failure policy (`Some(true)`: Fail).
    pub failure_policy_fail: Option<bool>,
    /// Only the policies named here (Kyverno's `/vpol/<name>/...` paths); empty: all.
    pub names: &'a [String],
}

impl AdmissionFilter<'_> {
    fn admits(&self, name: &str, settings: &AdmissionSettings) -> bool {
        settings.admission
            && self
                .failure_policy_fail
                .is_none_or(|f| f == settings.failure_policy_fail)
            && (self.names.is_empty() || self.names.iter().any(|n| n == name))
    }
}

impl CelPolicySet {
    /// True when no CEL policy was loaded.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.mutating.is_empty()
            && self.generating.is_empty()
            && self.deleting.is_empty()
            && self.image.is_empty()
    }

    /// Number of policies (bindings and exceptions not counted).
    pub fn len(&self) -> usize {
        self.policies.len()
            + self.mutating.len()
            + self.generating.len()
            + self.deleting.len()
            + self.image.len()
    }

    /// The `policy` reference reports give each ValidatingPolicy and ValidatingAdmissionPolicy:
    /// `name`, or `namespace/name` for a namespaced one.
    pub fn validating_policy_refs(&self) -> impl Iterator<Item = String> + '_ {
        self.policies.iter().map(|p| {
            if p.namespace.is_empty() {
                p.name.clone()
            } else {
                format!("{}/{}", p.namespace, p.name)
            }
        })
    }

    fn exceptions_for(&self, kind: &str, name: &str) -> Vec<CelException> {
        self.exceptions
            .iter()
            .filter(|e| e.applies_to(kind, name))
            .cloned()
            .collect()
    }

    /// Adds a compiled document, attaching bindings and exceptions to the policies they name,
    /// loaded before or after them.
    pub fn insert(&mut self, doc: CelDocument) {
        match doc {
            CelDocument::ValidatingBinding(b) => {
                for p in self.policies.iter_mut().filter(|p| p.name == b.policy_name) {
                    p.bindings.push(b.clone());
                }
                self.bindings.push(b);
            }
            CelDocument::MutatingBinding(b) => {
                for p in self.mutating.iter_mut().filter(|p| p.name == b.policy_name) {
                    p.bindings.push(b.clone());
                }
                self.mutating_bindings.push(b);
            }
            CelDocument::Validating(mut p) => {
                p.bind(&self.bindings);
                p.exceptions = self.exceptions_for(p.kind.as_str(), &p.name);
                self.policies.push(p);
            }
            CelDocument::Mutating(mut p) => {
                p.bindings = self
                    .mutating_bindings
                    .iter()
                    .filter(|b| b.policy_name == p.name)
                    .cloned()
                    .collect();
                p.exceptions = self.exceptions_for(p.kind.as_str(), &p.name);
                self.mutating.push(p);
            }
            CelDocument::Generating(mut p) => {
                p.exceptions = self.exceptions_for(p.kind, &p.name);
                self.generating.push(p);
            }
            CelDocument::Deleting(p) => self.deleting.push(p),
            CelDocument::Image(mut p) => {
                p.exceptions = self.exceptions_for(p.kind, &p.name);
                self.image.push(p);
            }
            CelDocument::Exception(e) => {
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
            }
        }
    }

    /// Responses for one request in the kyverno CLI's order: MutatingAdmissionPolicies
    /// (chained), MutatingPolicies (each on the same input; the last patch wins), then on the
    /// mutated resource ValidatingAdmissionPolicies, ValidatingPolicies (Kubernetes mode, then
    /// JSON mode), GeneratingPolicies, ImageValidatingPolicies and, on the default run only,
    /// DeletingPolicies.
    pub fn evaluate(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
        default_run: bool,
    ) -> Vec<EngineResponse> {
        let mut out = Vec::new();
        let mut current = req.resource().clone();
        for p in self
            .mutating
            .iter()
            .filter(|p| p.kind == MutatingKind::MutatingAdmissionPolicy)
        {
            let result = p.evaluate(&with_object(req, &current), provider);
            if matches!(result, MutateResult::NotMatched) {
                continue;
            }
            let (rule, patched) =
                mutation_rule(&p.name, result, "mutation is successfully applied");
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
            let result = p.evaluate(&with_object(req, &input), provider);
            let rules = if matches!(result, MutateResult::NotMatched) {
                if p.match_constraints.is_simple() {
                    continue;
                }
                Vec::new()
            } else {
                let (rule, patched) = mutation_rule("", result, "success");
                if patched.is_some() {
                    last_patch = patched;
                }
                vec![rule]
            };
            mpol.push((p, rules));
        }
        if let Some(v) = last_patch {
            current = v;
        }
        for (p, rules) in mpol {
            out.push(engine_response(&mmeta(p), rules, &input, &current));
        }
        let trigger = with_object(req, &input);
        for p in self.mutating.iter().filter(|p| p.mutates_existing()) {
            out.extend(target_responses(p, &trigger, &current, provider));
        }
        let req = with_object(req, &current);
        let vaps = self
            .policies
            .iter()
            .filter(|p| p.kind == CelPolicyKind::ValidatingAdmissionPolicy);
        let vpols = self.policies.iter().filter(|p| {
            p.kind != CelPolicyKind::ValidatingAdmissionPolicy
                && p.mode == EvaluationMode::Kubernetes
        });
        let inputs = RequestInputs::new(&req);
        let shared = SharedVariables::default();
        out.extend(
            vaps.chain(vpols)
                .filter_map(|p| response(p, p.evaluate_in(&inputs, &shared, provider), &current)),
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
            let rules = match p.evaluate(&req, provider) {
                CelPolicyResult::NotMatched => {
                    if p.match_constraints.is_simple() {
                        continue;
                    }
                    Vec::new()
                }
                other => vec![validation_rule("", other)],
            };
            out.push(engine_response(&imeta(p), rules, &current, &current));
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

    /// Responses of JSON-mode ValidatingPolicies and DeletingPolicies for one JSON payload.
    pub fn evaluate_json(
        &self,
        payload: &Value,
        provider: &dyn ContextProvider,
    ) -> Vec<EngineResponse> {
        let mut out = Vec::new();
        for p in self
            .policies
            .iter()
            .filter(|p| p.mode == EvaluationMode::Json)
        {
            out.extend(response(p, p.evaluate_json(payload, provider), payload));
        }
        for p in &self.deleting {
            if let Some(r) = delete_rule(p.evaluate_json(payload, provider)) {
                out.push(engine_response(&dmeta(p), vec![r], payload, payload));
            }
        }
        out
    }

    /// Responses of the ValidatingPolicies of an authorization mode (`HTTP`, `Envoy`) for one
    /// request payload; each rule is named after its policy.
    pub fn evaluate_authz(
        &self,
        mode: &str,
        payload: &Value,
        provider: &dyn ContextProvider,
    ) -> Vec<EngineResponse> {
        let mut out = Vec::new();
        for p in self
            .policies
            .iter()
            .filter(|p| p.mode == EvaluationMode::Other(mode.to_string()))
        {
            let result = p.evaluate_authz(payload, provider);
            let mut r = response(p, result, &Value::Object(Default::default()));
            if let Some(r) = r.as_mut() {
                for rule in &mut r.rules {
                    rule.name = p.name.clone();
                }
            }
            out.extend(r);
        }
        out
    }

    /// The validating CEL policies the filter admits for admission, in evaluation order.
    fn validating_candidates<'s>(&'s self, filter: &AdmissionFilter) -> Vec<Validating<'s>> {
        let mut out: Vec<Validating<'s>> = Vec::new();
        if matches!(filter.kinds, CelKinds::All | CelKinds::Validating) {
            out.extend(
                self.policies
                    .iter()
                    .filter(|p| p.mode == EvaluationMode::Kubernetes)
                    .filter(|p| filter.admits(&p.name, &p.admission))
                    .map(Validating::Policy),
            );
        }
        if matches!(filter.kinds, CelKinds::All | CelKinds::ImageValidating) {
            out.extend(
                self.image
                    .iter()
                    .filter(|p| filter.admits(&p.name, &p.admission))
                    .map(Validating::Image),
            );
        }
        out
    }

    /// The mutating CEL policies the filter admits for admission, in evaluation order: bound
    /// MutatingAdmissionPolicies, then MutatingPolicies.
    fn mutating_candidates<'s>(
        &'s self,
        filter: &AdmissionFilter,
    ) -> Vec<&'s Loaded<MutatingPolicy>> {
        if !matches!(filter.kinds, CelKinds::All | CelKinds::Mutating) {
            return Vec::new();
        }
        let maps = self
            .mutating
            .iter()
            .filter(|p| p.kind == MutatingKind::MutatingAdmissionPolicy && !p.bindings.is_empty());
        let mpols = self
            .mutating
            .iter()
            .filter(|p| p.kind != MutatingKind::MutatingAdmissionPolicy);
        maps.chain(mpols)
            .filter(|p| filter.admits(&p.name, &p.admission))
            .collect()
    }

    /// The validating CEL policies (ValidatingPolicies of the Kubernetes mode, bound
    /// ValidatingAdmissionPolicies, ImageValidatingPolicies) for an admission request. Policies
    /// that do not select the request give no outcome; a ValidatingAdmissionPolicy gives one per
    /// binding that selects it. `stop` is asked between policies; the policies left then are
    /// reported as unevaluated when their resource rules select the request.
    pub fn validate_admission(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
        filter: AdmissionFilter,
        stop: &dyn Fn() -> bool,
    ) -> AdmissionPass {
        let mut pass = AdmissionPass::default();
        let resource = req.resource_shared();
        let candidates = self.validating_candidates(&filter);
        let inputs = RequestInputs::new(req);
        let shared = SharedVariables::default();
        for (i, candidate) in candidates.iter().enumerate() {
            if stop() {
                pass.unevaluated = candidates
                    .iter()
                    .skip(i)
                    .filter(|c| c.selects(req))
                    .map(|c| (c.name().to_string(), c.failure_policy_fail()))
                    .collect();
                break;
            }
            match candidate {
                Validating::Policy(p) => {
                    for (result, actions) in p.evaluate_admission_in(&inputs, &shared, provider) {
                        let validation_actions =
                            if p.kind == CelPolicyKind::ValidatingAdmissionPolicy {
                                actions
                            } else {
                                Arc::clone(&p.admission.validation_actions)
                            };
                        pass.outcomes.push(AdmissionOutcome {
                            response: shared_response(
                                &vmeta(p),
                                vec![validation_rule(&p.name, result)],
                                resource,
                                resource,
                            ),
                            validation_actions,
                            failure_policy_fail: p.admission.failure_policy_fail,
                            background: p.admission.background,
                        });
                    }
                }
                Validating::Image(p) => {
                    let result = p.evaluate(req, provider);
                    if result == CelPolicyResult::NotMatched {
                        continue;
                    }
                    pass.outcomes.push(AdmissionOutcome {
                        response: shared_response(
                            &imeta(p),
                            vec![validation_rule(&p.name, result)],
                            resource,
                            resource,
                        ),
                        validation_actions: Arc::clone(&p.admission.validation_actions),
                        failure_policy_fail: p.admission.failure_policy_fail,
                        background: p.admission.background,
                    });
                }
            }
        }
        pass
    }

    /// The mutating CEL policies for an admission request, chained: bound
    /// MutatingAdmissionPolicies first, then MutatingPolicies, each on the object the previous
    /// ones left. `stop` is asked between policies, as for [`CelPolicySet::validate_admission`].
    pub fn mutate_admission(
        &self,
        req: &AdmissionRequest,
        provider: &dyn ContextProvider,
        filter: AdmissionFilter,
        stop: &dyn Fn() -> bool,
    ) -> AdmissionPass {
        let mut pass = AdmissionPass::default();
        let mut current: Option<AdmissionRequest> = None;
        let candidates = self.mutating_candidates(&filter);
        for (i, p) in candidates.iter().enumerate() {
            if stop() {
                pass.unevaluated = candidates
                    .iter()
                    .skip(i)
                    .filter(|p| mutating_selects(p, req))
                    .map(|p| (p.name.clone(), p.admission.failure_policy_fail))
                    .collect();
                break;
            }
            let result = p.evaluate(current.as_ref().unwrap_or(req), provider);
            let (name, applied) = (p.name.as_str(), "mutation is successfully applied");
            chain_mutation(
                req,
                &mut current,
                &mut pass,
                result,
                (name, applied),
                &mmeta(p),
                &p.admission,
            );
        }
        if matches!(filter.kinds, CelKinds::All | CelKinds::ImageValidating) {
            // ImageValidatingPolicies pin the tags they select to digests (`mutateDigest`).
            for p in self
                .image
                .iter()
                .filter(|p| filter.admits(&p.name, &p.admission))
            {
                if stop() {
                    break;
                }
                let result = p.mutate_digest(current.as_ref().unwrap_or(req), provider);
                let rule = ("mutateDigest", "mutated image digest");
                chain_mutation(
                    req,
                    &mut current,
                    &mut pass,
                    result,
                    rule,
                    &imeta(p),
                    &p.admission,
                );
            }
        }
        pass.object = current.map(|r| Arc::clone(r.resource_shared()));
        pass
    }
}

/// Records one mutating policy's result in `pass` and, when it patched the resource, makes the
/// patched resource the input of the next policy (`current`). A policy that did not select the
/// request leaves no outcome. `rule` is the rule name and the message of an applied mutation.
fn chain_mutation(
    req: &AdmissionRequest,
    current: &mut Option<AdmissionRequest>,
    pass: &mut AdmissionPass,
    result: MutateResult,
    rule: (&str, &str),
    meta: &Meta,
    admission: &AdmissionSettings,
) {
    if matches!(result, MutateResult::NotMatched) {
        return;
    }
    let before = Arc::clone(current.as_ref().unwrap_or(req).resource_shared());
    let (rule, patched) = mutation_rule(rule.0, result, rule.1);
    let after = match patched {
        Some(v) => {
            let v = Arc::new(v);
            let mut next = current.take().unwrap_or_else(|| req.clone());
            if next.object.is_null() {
                next.old_object = Arc::clone(&v);
            } else {
                next.object = Arc::clone(&v);
            }
            *current = Some(next);
            v
        }
        None => Arc::clone(&before),
    };
    pass.outcomes.push(AdmissionOutcome {
        response: shared_response(meta, vec![rule], &before, &after),
        validation_actions: Arc::from([]),
        failure_policy_fail: admission.failure_policy_fail,
        background: admission.background,
    });
}

/// True when a mutating policy's own rules select the request (namespace labels aside).
fn mutating_selects(p: &Loaded<MutatingPolicy>, req: &AdmissionRequest) -> bool {
    (p.namespace.is_empty() || p.namespace == req.namespace())
        && p.match_constraints.matches(req, None)
}

/// A validating CEL policy considered in admission.
enum Validating<'s> {
    Policy(&'s Loaded<ValidatingPolicy>),
    Image(&'s Loaded<ImageValidatingPolicy>),
}

impl Validating<'_> {
    fn name(&self) -> &str {
        match self {
            Validating::Policy(p) => &p.name,
            Validating::Image(p) => &p.name,
        }
    }

    fn failure_policy_fail(&self) -> bool {
        match self {
            Validating::Policy(p) => p.admission.failure_policy_fail,
            Validating::Image(p) => p.admission.failure_policy_fail,
        }
    }

    /// True when the policy's own rules select the request (namespace labels aside).
    fn selects(&self, req: &AdmissionRequest) -> bool {
        let (namespace, constraints) = match self {
            Validating::Policy(p) => (&p.namespace, &p.match_constraints),
            Validating::Image(p) => (&p.namespace, &p.match_constraints),
        };
        (namespace.is_empty() || *namespace == req.namespace()) && constraints.matches(req, None)
    }
}

/// Like [`engine_response`], sharing the resources instead of copying them.
fn shared_response(
    m: &Meta,
    rules: Vec<RuleResult>,
    resource: &Arc<Value>,
    patched: &Arc<Value>,
) -> EngineResponse {
    EngineResponse {
        policy_name: m.name.to_string(),
        policy_namespace: m.namespace.to_string(),
        policy_kind: m.kind.to_string().into(),
        unscored: m
            .annotations
            .get("policies.kyverno.io/scored")
            .and_then(Value::as_str)
            == Some("false"),
        rules,
        resource: Arc::clone(resource),
        patched_resource: Arc::clone(patched),
    }
}

/// What the CEL policies did to one admission request.
#[derive(Debug, Default)]
pub struct AdmissionPass {
    pub outcomes: Vec<AdmissionOutcome>,
    /// Policies left unevaluated because evaluation was stopped, with whether their failure
    /// policy is Fail.
    pub unevaluated: Vec<(String, bool)>,
    /// The mutated object, when a mutating policy changed it.
    pub object: Option<Arc<Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoProvider;
    use crate::request::Operation;
    use serde_json::json;

    fn set(docs: &[Value]) -> CelPolicySet {
        let mut s = CelPolicySet::default();
        for d in docs {
            s.insert(compile_document(d).unwrap().unwrap());
        }
        s
    }

    fn pod_request(labels: Value) -> AdmissionRequest {
        AdmissionRequest {
            operation: Operation::Create,
            object: json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default", "labels": labels},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
            .into(),
            ..AdmissionRequest::default()
        }
    }

    const RULES: &str = r#"[{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]"#;

    fn rules() -> Value {
        serde_json::from_str(RULES).unwrap()
    }

    fn vpol(actions: Value) -> Value {
        json!({"apiVersion": "policies.kyverno.io/v1", "kind": "ValidatingPolicy",
            "metadata": {"name": "need-team"},
            "spec": {"validationActions": actions,
                "matchConstraints": {"resourceRules": rules()},
                "validations": [{"expression": "has(object.metadata.labels.team)",
                    "message": "label team is required"}]}})
    }

    fn filter(kinds: CelKinds) -> AdmissionFilter<'static> {
        AdmissionFilter {
            kinds,
            failure_policy_fail: None,
            names: &[],
        }
    }

    fn never() -> bool {
        false
    }

    fn validate(s: &CelPolicySet, req: &AdmissionRequest) -> Vec<AdmissionOutcome> {
        s.validate_admission(req, &NoProvider, filter(CelKinds::All), &never)
            .outcomes
    }

    #[test]
    fn deny_action_denies_with_kyvernos_message_and_warn_only_warns() {
        let s = set(&[vpol(json!(["Deny"]))]);
        let out = validate(&s, &pod_request(json!({})));
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].denials(),
            vec!["Policy need-team failed: label team is required"]
        );
        assert!(out[0].warnings().is_empty());
        let ok = validate(&s, &pod_request(json!({"team": "a"})));
        assert!(ok[0].denials().is_empty());

        let s = set(&[vpol(json!(["Warn", "Audit"]))]);
        let out = validate(&s, &pod_request(json!({})));
        assert!(out[0].denials().is_empty());
        assert_eq!(out[0].warnings().len(), 1);
    }

    #[test]
    fn errors_deny_only_under_failure_policy_fail() {
        let broken = |failure_policy: &str| {
            let mut d = vpol(json!(["Deny"]));
            d["spec"]["failurePolicy"] = json!(failure_policy);
            d["spec"]["validations"][0]["expression"] = json!("object.metadata.missing.field == 1");
            d
        };
        let out = validate(&set(&[broken("Fail")]), &pod_request(json!({})));
        assert_eq!(out[0].response.rules[0].status, RuleStatus::Error);
        assert_eq!(out[0].denials().len(), 1);
        let out = validate(&set(&[broken("Ignore")]), &pod_request(json!({})));
        assert_eq!(out[0].response.rules[0].status, RuleStatus::Error);
        assert!(out[0].denials().is_empty() && out[0].warnings().is_empty());
    }

    #[test]
    fn missing_actions_default_to_deny_and_names_and_kinds_filter_policies() {
        let mut doc = vpol(json!(null));
        doc["spec"]
            .as_object_mut()
            .unwrap()
            .remove("validationActions");
        let s = set(&[doc]);
        let req = pod_request(json!({}));
        let other = ["other".to_string()];
        let named_other = AdmissionFilter {
            names: &other,
            ..filter(CelKinds::All)
        };
        assert!(
            s.validate_admission(&req, &NoProvider, named_other, &never)
                .outcomes
                .is_empty()
        );
        let images_only = filter(CelKinds::ImageValidating);
        assert!(
            s.validate_admission(&req, &NoProvider, images_only, &never)
                .outcomes
                .is_empty()
        );
        let fail_only = AdmissionFilter {
            failure_policy_fail: Some(true),
            ..filter(CelKinds::Validating)
        };
        let out = s
            .validate_admission(&req, &NoProvider, fail_only, &never)
            .outcomes;
        assert_eq!(out[0].denials().len(), 1);
    }

    #[test]
    fn a_stopped_pass_reports_the_policies_it_did_not_evaluate() {
        let s = set(&[vpol(json!(["Deny"]))]);
        let stop = || true;
        let pass = s.validate_admission(
            &pod_request(json!({})),
            &NoProvider,
            filter(CelKinds::All),
            &stop,
        );
        assert!(pass.outcomes.is_empty());
        assert_eq!(pass.unevaluated, vec![("need-team".to_string(), true)]);
    }

    #[test]
    fn admission_policies_apply_through_each_binding_with_its_actions() {
        let vap = json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "vap"},
            "spec": {"matchConstraints": {"resourceRules": rules()},
                "validations": [{"expression": "false", "message": "never"}]}});
        let binding = |name: &str, actions: Value| {
            json!({"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
                "spec": {"policyName": "vap", "validationActions": actions}})
        };
        let unbound = set(std::slice::from_ref(&vap));
        assert!(validate(&unbound, &pod_request(json!({}))).is_empty());
        // The Warn binding is loaded first and fails first; the Deny binding still applies.
        let bound = set(&[
            binding("warn", json!(["Warn"])),
            vap,
            binding("deny", json!(["Deny"])),
        ]);
        let out = validate(&bound, &pod_request(json!({})));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].warnings(), vec!["Policy vap failed: never"]);
        assert!(out[0].denials().is_empty());
        assert_eq!(out[1].denials(), vec!["Policy vap failed: never"]);
    }

    /// Resolves every tag to one digest, or fails for images of `down.example`.
    struct Digests;

    impl ContextProvider for Digests {
        fn resource(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<Value>, crate::context::ProviderError> {
            Ok(None)
        }
        fn list(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Vec<Value>, crate::context::ProviderError> {
            Ok(Vec::new())
        }
        fn config_map(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<Value>, crate::context::ProviderError> {
            Ok(None)
        }
        fn api_call(
            &self,
            _: &crate::context::ApiCall,
        ) -> Result<Value, crate::context::ProviderError> {
            Ok(Value::Null)
        }
        fn namespace_labels(
            &self,
            _: &str,
        ) -> Result<Option<crate::context::Labels>, crate::context::ProviderError> {
            Ok(None)
        }
        fn image_data(
            &self,
            _: &str,
        ) -> Result<crate::context::ImageData, crate::context::ProviderError> {
            Ok(crate::context::ImageData::default())
        }
        fn global_context(&self, _: &str) -> Result<Option<Value>, crate::context::ProviderError> {
            Ok(None)
        }
        fn image_digest(&self, image: &str) -> Result<String, crate::context::ProviderError> {
            if image.starts_with("down.example/") {
                return Err(crate::context::ProviderError::Unavailable {
                    what: image.to_string(),
                    reason: "connection refused".into(),
                });
            }
            Ok("sha256:1111".into())
        }
    }

    #[test]
    fn image_validating_policies_pin_the_tags_they_select() {
        let ivpol = |name: &str, mutate_digest: Option<bool>| {
            let mut d = json!({"apiVersion": "policies.kyverno.io/v1beta1",
                "kind": "ImageValidatingPolicy", "metadata": {"name": name},
                "spec": {"matchConstraints": {"resourceRules": rules()},
                    "matchImageReferences": [{"glob": "ghcr.io/*"}, {"glob": "down.example/*"}],
                    "attestors": [{"name": "k", "cosign": {"key": {"data": "x"}}}],
                    "validations": [{"expression": "true"}]}});
            if let Some(m) = mutate_digest {
                d["spec"]["validationConfigurations"] = json!({"mutateDigest": m});
            }
            d
        };
        let pod = |images: &[&str]| AdmissionRequest {
            operation: Operation::Create,
            object: json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": images.iter().enumerate()
                    .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
                    .collect::<Vec<_>>()}})
            .into(),
            ..AdmissionRequest::default()
        };
        let images_of = |v: &Value| -> Vec<String> {
            v["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["image"].as_str().unwrap().to_string())
                .collect()
        };
        let s = set(&[ivpol("pin", None)]);
        let req = pod(&["ghcr.io/a/b:1", "nginx:1", "ghcr.io/a/c@sha256:2222"]);
        let pass = s.mutate_admission(&req, &Digests, filter(CelKinds::ImageValidating), &never);
        assert_eq!(pass.outcomes.len(), 1);
        assert_eq!(
            images_of(&pass.object.unwrap()),
            [
                "ghcr.io/a/b:1@sha256:1111",
                "nginx:1",
                "ghcr.io/a/c@sha256:2222"
            ]
        );
        // Only the ImageValidating path pins; mutateDigest: false turns it off.
        let none = s.mutate_admission(&req, &Digests, filter(CelKinds::Mutating), &never);
        assert!(none.object.is_none() && none.outcomes.is_empty());
        let off = set(&[ivpol("off", Some(false))]);
        let none = off.mutate_admission(&req, &Digests, filter(CelKinds::ImageValidating), &never);
        assert!(none.object.is_none() && none.outcomes.is_empty());
        // A digest that cannot be resolved is an error result, never a silent pass.
        let down = s.mutate_admission(
            &pod(&["down.example/x:1"]),
            &Digests,
            filter(CelKinds::ImageValidating),
            &never,
        );
        assert_eq!(down.outcomes.len(), 1);
        let rule = &down.outcomes[0].response.rules[0];
        assert_eq!(rule.status, crate::response::RuleStatus::Error);
        assert!(
            rule.message.contains("connection refused"),
            "{}",
            rule.message
        );
    }

    #[test]
    fn mutating_policies_chain_in_admission() {
        let mpol = |name: &str, key: &str| {
            json!({"apiVersion": "policies.kyverno.io/v1", "kind": "MutatingPolicy",
                "metadata": {"name": name},
                "spec": {"matchConstraints": {"resourceRules": rules()},
                    "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                        "expression": format!("Object{{metadata: Object.metadata{{labels: {{\"{key}\": \"yes\"}}}}}}")}}]}})
        };
        let s = set(&[mpol("a", "first"), mpol("b", "second")]);
        let pass = s.mutate_admission(
            &pod_request(json!({})),
            &NoProvider,
            filter(CelKinds::Mutating),
            &never,
        );
        assert_eq!(pass.outcomes.len(), 2);
        let labels = &pass.object.unwrap()["metadata"]["labels"];
        assert_eq!(labels, &json!({"first": "yes", "second": "yes"}));
        let none = s.mutate_admission(
            &pod_request(json!({})),
            &NoProvider,
            filter(CelKinds::ImageValidating),
            &never,
        );
        assert!(none.outcomes.is_empty() && none.object.is_none());
    }

    #[test]
    fn generator_apply_is_true_inside_all_and_records_each_call() {
        let gpol = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "GeneratingPolicy",
            "metadata": {"name": "cms"},
            "spec": {"matchConstraints": {"resourceRules": rules()},
                "generate": [{"expression": "['a', 'b'].all(ns, generator.Apply(ns, [{'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cm'}}]))"}]}});
        let s = set(&[gpol]);
        let out = s.evaluate(&pod_request(json!({})), &NoProvider, true);
        let generated = &out[0].rules[0].generated;
        let namespaces: Vec<&str> = generated
            .iter()
            .filter_map(|g| g["metadata"]["namespace"].as_str())
            .collect();
        assert_eq!(namespaces, vec!["a", "b"], "{out:?}");
    }

    #[test]
    fn broken_documents_name_kind_policy_and_field() {
        let mut doc = vpol(json!(["Deny"]));
        doc["spec"]["validations"][0]["expression"] = json!("object.(");
        let e = compile_document(&doc).unwrap().unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("ValidatingPolicy \"need-team\" at spec.validations[0].expression"),
            "{text}"
        );
        assert!(compile_document(&json!({"kind": "ClusterPolicy"})).is_none());
    }
}
