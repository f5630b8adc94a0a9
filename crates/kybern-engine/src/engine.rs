//! The entry point: evaluating a compiled policy on one admission request. The CLI and the
//! webhook both call this, so a decision never differs between them.

use crate::context::ContextProvider;
use crate::context_loader::{self, Sources};
use crate::exceptions::PolicyException;
use crate::generation;
use crate::json_context::JsonContext;
use crate::matching::{self, MatchSubject};
use crate::mutation::{self, MutateInput};
use crate::pod_security::CheckCache;
use crate::policy::{FailureActionOverride, Policy, Rule, RuleBody, Validation, ValidationCheck};
use crate::request::{AdmissionRequest, Operation};
use crate::response::{EngineResponse, FailureAction, RuleResult, RuleStatus, RuleType};
use crate::validation::{self, CheckInput};
use crate::variables::SubstituteOptions;
use crate::wildcard;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Values a caller supplies per rule (e.g. a `kyverno test` values file).
#[derive(Debug, Clone, Default)]
pub struct RuleValues {
    pub values: Map<String, Value>,
    pub foreach_values: Map<String, Value>,
}

/// One request, prepared once and evaluated against many policies.
pub struct PolicyContext<'a> {
    pub request: &'a AdmissionRequest,
    subject: MatchSubject<'a>,
    base: OnceLock<JsonContext>,
    empty: OnceLock<JsonContext>,
    /// Pod Security check results of the request's resource.
    pss_checks: CheckCache,
}

impl<'a> PolicyContext<'a> {
    pub fn new(request: &'a AdmissionRequest) -> Self {
        PolicyContext {
            request,
            subject: MatchSubject::new(request),
            base: OnceLock::new(),
            empty: OnceLock::new(),
            pss_checks: CheckCache::default(),
        }
    }

    fn resource(&self) -> &Arc<Value> {
        self.request.resource_shared()
    }

    /// The JSON context, built on first use: many rules never need it.
    fn base(&self) -> &JsonContext {
        self.base
            .get_or_init(|| self.request.base_context_shared(self.resource().clone()))
    }

    /// A context without variables, for rules that read none: cloning it shares its parts.
    fn empty(&self) -> &JsonContext {
        self.empty.get_or_init(JsonContext::default)
    }
}

/// Evaluates policies; everything from outside the request comes through the provider.
pub struct Engine<'p> {
    provider: &'p dyn ContextProvider,
}

fn rule_uses_context(rule: &Rule, values: Option<&RuleValues>) -> bool {
    !rule.context.is_empty()
        || values.is_some_and(|v| !v.values.is_empty())
        || rule.preconditions_have_variables
        || match &rule.body {
            RuleBody::Validate(v) => {
                let check_reads = match &v.check {
                    ValidationCheck::Pattern(p) => p.has_variables,
                    ValidationCheck::AnyPattern(ps) => ps.iter().any(|p| p.has_variables),
                    ValidationCheck::PodSecurity(_)
                    | ValidationCheck::Cel(_)
                    | ValidationCheck::Manifests(_)
                    | ValidationCheck::Unsupported(_) => false,
                    ValidationCheck::Deny(_) | ValidationCheck::Foreach(_) => true,
                };
                check_reads || v.message.as_deref().is_some_and(|m| m.contains("{{"))
            }
            RuleBody::Generate(_) => true,
            // A plain patch without variables needs no context; foreach lists and targets do.
            RuleBody::Mutate(m) => {
                m.get("foreach").is_some_and(|f| !f.is_null())
                    || mutation::targets(m).is_some()
                    || rule.mutate_has_variables
            }
            RuleBody::VerifyImages { entries, .. } => entries.iter().any(|e| e.reads_context()),
            RuleBody::Unsupported { .. } => false,
        }
}

/// How the context-reading part of a rule's evaluation ended.
enum RuleStep {
    /// The rule's result (`None`: the rule produces none).
    Done(Option<RuleResult>),
    /// A validation check's outcome, before pre-existing violations are considered.
    Checked {
        status: RuleStatus,
        message: String,
        /// PolicyExceptions that exempted Pod Security controls.
        pss_exceptions: Vec<String>,
    },
}

/// Which rules a pass over a policy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Mutate,
    /// validate rules, and rule kinds this engine reports as unsupported (verifyImages).
    Validate,
    Generate,
}

impl Phase {
    fn runs(self, body: &RuleBody) -> bool {
        match (self, body) {
            // verifyImages rules check signatures and pin digests in the mutate pass.
            (Phase::Mutate, RuleBody::Mutate(_) | RuleBody::VerifyImages { .. }) => true,
            (Phase::Mutate, RuleBody::Unsupported { rule_type, .. }) => {
                *rule_type == RuleType::Mutation
            }
            (Phase::Validate, RuleBody::Validate(_) | RuleBody::VerifyImages { .. }) => true,
            (Phase::Validate, RuleBody::Unsupported { rule_type, .. }) => {
                !matches!(rule_type, RuleType::Generation | RuleType::Mutation)
            }
            (Phase::Generate, RuleBody::Generate(_)) => true,
            (Phase::Generate, RuleBody::Unsupported { rule_type, .. }) => {
                *rule_type == RuleType::Generation
            }
            _ => false,
        }
    }
}

impl<'p> Engine<'p> {
    pub fn new(provider: &'p dyn ContextProvider) -> Self {
        Engine { provider }
    }

    /// Runs the policy's validate rules on the request (and reports rule kinds this engine cannot
    /// evaluate yet as errors). `rule_values` supplies per-rule variables by rule name.
    pub fn validate(
        &self,
        policy: &Policy,
        pctx: &PolicyContext,
        exceptions: &[PolicyException],
        rule_values: &BTreeMap<String, RuleValues>,
    ) -> EngineResponse {
        self.run_rules(policy, pctx, exceptions, rule_values, Phase::Validate)
    }

    /// Runs the policy's mutate rules in order, each on the output of the one before; the
    /// response's `patched_resource` is the result. A rule with `targets` mutates existing
    /// resources from the provider instead: it leaves the trigger as it is and adds one result
    /// per target, carrying the patched target.
    pub fn mutate(
        &self,
        policy: &Policy,
        pctx: &PolicyContext,
        exceptions: &[PolicyException],
        rule_values: &BTreeMap<String, RuleValues>,
    ) -> EngineResponse {
        let mut response = self.empty_response(policy, pctx);
        if !policy.namespace.is_empty() && pctx.subject.namespace != policy.namespace {
            return response;
        }
        let mut current: Option<AdmissionRequest> = None;
        for rule in policy.rules.iter().filter(|r| Phase::Mutate.runs(&r.body)) {
            let values = values_for(rule_values, &rule.name);
            // After a mutation the next rule sees the patched object (and its context).
            let owned;
            let rule_pctx = match &current {
                Some(req) => {
                    owned = PolicyContext::new(req);
                    &owned
                }
                None => pctx,
            };
            let Some(mut result) =
                self.evaluate_rule(policy, rule, rule_pctx, exceptions, values, Phase::Mutate)
            else {
                continue;
            };
            if let Some(per_target) = result.target_results.take() {
                response.rules.extend(per_target);
                continue;
            }
            if let Some(patched) = result.patched.take() {
                current = Some(match current.take() {
                    Some(mut next) => {
                        next.object = Arc::new(patched);
                        next
                    }
                    None => with_object(pctx.request, patched),
                });
            }
            response.rules.push(result);
        }
        if let Some(req) = current {
            response.patched_resource = req.object;
        }
        response
    }

    fn empty_response(&self, policy: &Policy, pctx: &PolicyContext) -> EngineResponse {
        EngineResponse {
            policy_name: policy.name.clone(),
            policy_namespace: policy.namespace.clone(),
            policy_kind: policy.kind.as_str().into(),
            unscored: policy.unscored(),
            rules: Vec::new(),
            resource: pctx.resource().clone(),
            patched_resource: pctx.resource().clone(),
        }
    }

    /// Runs the policy's generate rules: each result carries the objects the rule wants to exist.
    pub fn generate(
        &self,
        policy: &Policy,
        pctx: &PolicyContext,
        exceptions: &[PolicyException],
        rule_values: &BTreeMap<String, RuleValues>,
    ) -> EngineResponse {
        self.run_rules(policy, pctx, exceptions, rule_values, Phase::Generate)
    }

    fn run_rules(
        &self,
        policy: &Policy,
        pctx: &PolicyContext,
        exceptions: &[PolicyException],
        rule_values: &BTreeMap<String, RuleValues>,
        phase: Phase,
    ) -> EngineResponse {
        let mut response = self.empty_response(policy, pctx);
        // A namespaced policy only sees resources of its own namespace.
        if !policy.namespace.is_empty() && pctx.subject.namespace != policy.namespace {
            return response;
        }
        for rule in policy.rules.iter().filter(|r| phase.runs(&r.body)) {
            let values = values_for(rule_values, &rule.name);
            let Some(mut result) =
                self.evaluate_rule(policy, rule, pctx, exceptions, values, phase)
            else {
                continue;
            };
            result.failure_action = match &rule.body {
                RuleBody::Validate(v) => Some(effective_action(policy, v, pctx)),
                RuleBody::VerifyImages { entries, .. } => Some(
                    entries
                        .iter()
                        .find_map(|e| e.failure_action)
                        .unwrap_or(policy.validation_failure_action),
                ),
                _ => None,
            };
            let applied = result.status != RuleStatus::Skip;
            response.rules.push(result);
            if policy.apply_one && applied {
                break;
            }
        }
        response
    }

    fn evaluate_rule(
        &self,
        policy: &Policy,
        rule: &Rule,
        pctx: &PolicyContext,
        exceptions: &[PolicyException],
        values: Option<&RuleValues>,
        phase: Phase,
    ) -> Option<RuleResult> {
        let request = pctx.request;
        let subject = &pctx.subject;
        if !rule.may_match_kind(&subject.gvk.kind)
            || !matching::matches(&rule.match_resources, subject)
        {
            return None;
        }
        if let Some(ex) = &rule.exclude
            && matching::excluded(ex, subject)
        {
            return None;
        }
        let (validation, rule_type) = match &rule.body {
            RuleBody::Validate(v) => (Some(v.as_ref()), RuleType::Validation),
            RuleBody::Generate(_) => (None, RuleType::Generation),
            RuleBody::Mutate(_) => (None, RuleType::Mutation),
            RuleBody::VerifyImages { .. } => (None, RuleType::ImageVerify),
            RuleBody::Unsupported { field, rule_type } => {
                return Some(RuleResult::new(
                    &rule.name,
                    *rule_type,
                    RuleStatus::Error,
                    format!("kybern does not support {field} rules yet"),
                ));
            }
        };
        let opts = SubstituteOptions {
            delete: request.operation == Operation::Delete,
        };
        let empty = Map::new();
        let preset = values.map_or(&empty, |v| &v.values);
        let mut ctx: JsonContext = if rule_uses_context(rule, values) {
            let mut ctx = pctx.base().clone();
            for (k, v) in preset {
                ctx.set(k, v);
            }
            ctx
        } else if exceptions.iter().any(|e| e.conditions.is_some()) {
            pctx.base().clone()
        } else {
            // Nothing in this rule reads variables: skip building the request context.
            pctx.empty().clone()
        };
        let src = Sources {
            provider: self.provider,
            policy_namespace: &policy.namespace,
            preset,
            opts,
        };
        // Context entries load when the rule first reads them (see `context_loader`).
        let step = context_loader::run_deferred(&rule.context, &mut ctx, src, |ctx| {
            self.evaluate_with_context(
                policy, rule, pctx, exceptions, values, ctx, rule_type, phase,
            )
        });
        let (mut status, mut message, pss_exceptions) = match step {
            Err(e) => {
                return Some(RuleResult::new(
                    &rule.name,
                    rule_type,
                    RuleStatus::Error,
                    format!("failed to load context: {e}"),
                ));
            }
            Ok(RuleStep::Done(result)) => return result,
            Ok(RuleStep::Checked {
                status,
                message,
                pss_exceptions,
            }) => (status, message, pss_exceptions),
        };
        // Only the pattern/deny/foreach and podSecurity checks compare with the old object;
        // Kyverno's validate.cel handler has no such step.
        if let Some(validation) = validation
            && !matches!(
                validation.check,
                ValidationCheck::Cel(_) | ValidationCheck::Manifests(_)
            )
            && status == RuleStatus::Fail
            && request.operation == Operation::Update
            && validation.allow_existing_violations
            && effective_action(policy, validation, pctx) == FailureAction::Enforce
            && !request.old_object.is_null()
            && self.old_object_fails(policy, rule, request, exceptions, values)
        {
            status = RuleStatus::Skip;
            message = "skipping modified resource as validation results have not changed".into();
        }
        let mut r = RuleResult::new(&rule.name, rule_type, status, message);
        if status == RuleStatus::Skip {
            r.exceptions = pss_exceptions;
        }
        Some(r)
    }

    /// The part of a rule's evaluation that reads the JSON context: preconditions, exceptions
    /// and the rule body. Validation results come back unfinished: pre-existing violations are
    /// decided on the old object afterwards.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_with_context(
        &self,
        policy: &Policy,
        rule: &Rule,
        pctx: &PolicyContext,
        exceptions: &[PolicyException],
        values: Option<&RuleValues>,
        ctx: &JsonContext,
        rule_type: RuleType,
        phase: Phase,
    ) -> RuleStep {
        let request = pctx.request;
        let subject = &pctx.subject;
        let validation = match &rule.body {
            RuleBody::Validate(v) => Some(v.as_ref()),
            _ => None,
        };
        let opts = SubstituteOptions {
            delete: request.operation == Operation::Delete,
        };
        let empty = Map::new();
        let preset = values.map_or(&empty, |v| &v.values);
        let done = |r: RuleResult| RuleStep::Done(Some(r));
        if let Some(pre) = &rule.preconditions {
            match pre.evaluate(ctx, opts, "preconditions") {
                Err(e) => {
                    return done(RuleResult::new(
                        &rule.name,
                        rule_type,
                        RuleStatus::Error,
                        format!("failed to evaluate preconditions: {e}"),
                    ));
                }
                Ok(o) if !o.met => {
                    let mut msg = "preconditions not met".to_string();
                    if !o.messages.is_empty() {
                        msg.push_str("; ");
                        msg.push_str(&o.messages.join("; "));
                    }
                    return done(RuleResult::new(
                        &rule.name,
                        rule_type,
                        RuleStatus::Skip,
                        msg,
                    ));
                }
                Ok(_) => {}
            }
        }
        // PolicyExceptions: a matching exception skips the rule, except that exceptions carrying
        // podSecurity entries only exempt those controls.
        let mut pss_excludes = Vec::new();
        let mut pss_exceptions = Vec::new();
        for ex in exceptions {
            if !ex.covers(&policy.key(), &rule.name) || !ex.matches_resource(subject) {
                continue;
            }
            if let Some(cond) = &ex.conditions {
                match cond.evaluate(ctx, opts, "exception/conditions") {
                    Ok(o) if o.met => {}
                    _ => continue,
                }
            }
            let is_pss =
                validation.is_some_and(|v| matches!(v.check, ValidationCheck::PodSecurity(_)));
            if is_pss && !ex.pod_security.is_empty() {
                pss_excludes.extend(ex.pod_security.iter().cloned());
                pss_exceptions.push(ex.key());
                continue;
            }
            let mut r = RuleResult::new(
                &rule.name,
                rule_type,
                RuleStatus::Skip,
                format!("rule is skipped due to policy exception {}", ex.key()),
            );
            r.exceptions.push(ex.key());
            return done(r);
        }
        let validation = match (&rule.body, validation) {
            (_, Some(v)) => v,
            (RuleBody::Generate(g), None) => {
                return done(
                    match generation::run(g, ctx, opts, self.provider, &policy.namespace) {
                        Ok(objects) => {
                            let mut r = RuleResult::new(
                                &rule.name,
                                rule_type,
                                RuleStatus::Pass,
                                format!("generated {} resource(s)", objects.len()),
                            );
                            r.generated = objects;
                            r
                        }
                        Err(e) => RuleResult::new(&rule.name, rule_type, RuleStatus::Error, e),
                    },
                );
            }
            (
                RuleBody::VerifyImages {
                    entries,
                    extractors,
                },
                None,
            ) if phase == Phase::Mutate => {
                let outcome = crate::image_verification::verify_and_patch(
                    entries,
                    extractors,
                    request.resource(),
                    self.provider,
                    ctx,
                    opts,
                );
                return RuleStep::Done(outcome.map(|(status, message, patched)| {
                    let mut r = RuleResult::new(&rule.name, rule_type, status, message);
                    r.patched = patched;
                    r
                }));
            }
            (
                RuleBody::VerifyImages {
                    entries,
                    extractors,
                },
                None,
            ) => {
                return RuleStep::Done(
                    crate::image_verification::check(
                        entries,
                        extractors,
                        request.resource(),
                        self.provider,
                        ctx,
                        opts,
                    )
                    .map(|(status, message)| {
                        RuleResult::new(&rule.name, rule_type, status, message)
                    }),
                );
            }
            (RuleBody::Mutate(m), None) => {
                let empty_foreach = Map::new();
                let input = MutateInput {
                    rule_name: &rule.name,
                    mutate: m,
                    ctx,
                    opts,
                    provider: self.provider,
                    policy_namespace: &policy.namespace,
                    preset,
                    foreach_values: values.map_or(&empty_foreach, |v| &v.foreach_values),
                    has_variables: rule.mutate_has_variables,
                };
                if let Some(targets) = mutation::targets(m) {
                    // Mutate existing: the trigger is left alone, each target gets a result.
                    let mut carrier = RuleResult::new(&rule.name, rule_type, RuleStatus::Skip, "");
                    carrier.target_results = Some(mutation::run_existing(&input, targets));
                    return done(carrier);
                }
                let out = mutation::run(&input, request.resource());
                let mut r = RuleResult::new(&rule.name, rule_type, out.status, out.message);
                r.patched = out.patched;
                return done(r);
            }
            _ => return RuleStep::Done(None),
        };
        let empty_foreach = Map::new();
        let input = CheckInput {
            rule_name: &rule.name,
            request,
            validation,
            resource: request.resource(),
            ctx,
            opts,
            provider: self.provider,
            policy_namespace: &policy.namespace,
            preset,
            pss_excludes: &pss_excludes,
            pss_checks: &pctx.pss_checks,
            foreach_values: values.map_or(&empty_foreach, |v| &v.foreach_values),
        };
        match validation::run(&input) {
            None => RuleStep::Done(None),
            Some((status, message)) => RuleStep::Checked {
                status,
                message,
                pss_exceptions,
            },
        }
    }

    /// Re-validates the old object as a CREATE: pre-existing violations are allowed on UPDATE.
    /// The old object is matched as itself, without the request's subresource (Kyverno's
    /// `matchResource`), so a rule that only selects a subresource never matches it.
    fn old_object_fails(
        &self,
        policy: &Policy,
        rule: &Rule,
        request: &AdmissionRequest,
        exceptions: &[PolicyException],
        values: Option<&RuleValues>,
    ) -> bool {
        let mut variables = request.variables.clone();
        if variables.contains_key("request.operation") {
            variables.insert("request.operation".into(), Value::String("CREATE".into()));
        }
        let old = AdmissionRequest {
            operation: Operation::Create,
            object: request.old_object.clone(),
            old_object: Arc::new(Value::Null),
            variables,
            subresource: String::new(),
            kind_override: None,
            ..request.clone()
        };
        let pctx = PolicyContext::new(&old);
        self.evaluate_rule(policy, rule, &pctx, exceptions, values, Phase::Validate)
            .is_some_and(|r| r.status == RuleStatus::Fail)
    }
}

/// Evaluates a policy's `spec.webhookConfiguration.matchConditions` on the request as the API
/// server evaluates a webhook's: `object` and `oldObject` as sent (null for DELETE and CREATE),
/// `request` the AdmissionRequest. Any false condition: not met; otherwise an error: error.
pub fn webhook_match_conditions(
    policy: &Policy,
    request: &AdmissionRequest,
) -> crate::cel::ConditionsOutcome {
    use crate::cel::{CelInput, ConditionsOutcome};
    if policy.match_conditions.is_empty() {
        return ConditionsOutcome::Met;
    }
    let request_json = CelInput::request_json(request);
    let input = CelInput {
        object: &request.object,
        old_object: &request.old_object,
        request: &request_json,
        namespace_object: None,
        params: None,
        provider: None,
    };
    match crate::cel::validate_cel::base_scope(&input) {
        Ok(scope) => crate::cel::evaluate_conditions(&policy.match_conditions, &scope),
        Err(e) => ConditionsOutcome::Error(e),
    }
}

/// A copy of `request` with another object, without copying the old one first.
fn with_object(request: &AdmissionRequest, object: Value) -> AdmissionRequest {
    AdmissionRequest {
        operation: request.operation,
        object: Arc::new(object),
        old_object: request.old_object.clone(),
        user_info: request.user_info.clone(),
        roles: request.roles.clone(),
        cluster_roles: request.cluster_roles.clone(),
        namespace_labels: request.namespace_labels.clone(),
        subresource: request.subresource.clone(),
        kind_override: request.kind_override.clone(),
        dry_run: request.dry_run,
        variables: request.variables.clone(),
        no_user_info: request.no_user_info,
        request_name: request.request_name.clone(),
    }
}

fn override_matches(o: &FailureActionOverride, pctx: &PolicyContext) -> bool {
    let ns = pctx.subject.namespace;
    let ns_ok = o.namespaces.is_empty() || o.namespaces.iter().any(|n| wildcard::matches(n, ns));
    let sel_ok = match &o.namespace_selector {
        None => true,
        Some(sel) => {
            let empty = BTreeMap::new();
            matching::selector_matches(
                sel,
                pctx.request.namespace_labels.as_ref().unwrap_or(&empty),
            )
        }
    };
    ns_ok && sel_ok
}

/// Values given for a Pod rule also apply to the rules generated from it.
pub fn values_for<'v>(
    rule_values: &'v BTreeMap<String, RuleValues>,
    rule: &str,
) -> Option<&'v RuleValues> {
    let base = rule
        .strip_prefix("autogen-cronjob-")
        .or_else(|| rule.strip_prefix("autogen-"))
        .unwrap_or(rule);
    rule_values.get(rule).or_else(|| rule_values.get(base))
}

/// Rule overrides, then the rule's action, then the policy's overrides, then the policy's action.
pub fn effective_action(policy: &Policy, v: &Validation, pctx: &PolicyContext) -> FailureAction {
    if let Some(o) = v
        .failure_action_overrides
        .iter()
        .find(|o| override_matches(o, pctx))
    {
        return o.action;
    }
    if let Some(a) = v.failure_action {
        return a;
    }
    if let Some(o) = policy
        .failure_action_overrides
        .iter()
        .find(|o| override_matches(o, pctx))
    {
        return o.action;
    }
    policy.validation_failure_action
}
