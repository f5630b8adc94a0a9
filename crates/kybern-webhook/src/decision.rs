//! The admission decision: runs the engine's single entry point on every candidate policy and turns
//! the engine responses into allowed/denied, Kyverno's messages, warnings and the patch.
//! Synchronous and free of I/O: the server runs it on the blocking pool.

use crate::patch;
use crate::store::{PolicySet, has_validate_rules};
use kybern_engine::cel::ConditionsOutcome;
use kybern_engine::cel::policy_set::{AdmissionFilter, AdmissionOutcome, AdmissionPass, CelKinds};
use kybern_engine::context::ContextProvider;
use kybern_engine::context::NoProvider;
use kybern_engine::engine::{Engine, PolicyContext, webhook_match_conditions};
use kybern_engine::objects;
use kybern_engine::policy::{Policy, RuleBody};
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::{EngineResponse, FailureAction, RuleStatus, RuleType};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Which webhook the request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

/// Which policies a path serves, by `failurePolicy` (`/validate/fail`, `/validate/ignore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicyFilter {
    All,
    Fail,
    Ignore,
}

impl FailurePolicyFilter {
    fn admits(self, p: &Policy) -> bool {
        match self {
            FailurePolicyFilter::All => true,
            FailurePolicyFilter::Fail => p.failure_policy_fail,
            FailurePolicyFilter::Ignore => !p.failure_policy_fail,
        }
    }

    fn as_option(self) -> Option<bool> {
        match self {
            FailurePolicyFilter::All => None,
            FailurePolicyFilter::Fail => Some(true),
            FailurePolicyFilter::Ignore => Some(false),
        }
    }
}

/// Which families of policy a path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// ClusterPolicy/Policy and the CEL kinds (`/validate`, `/mutate`).
    All,
    /// ClusterPolicy/Policy only (Kyverno's `/validate/fail`, `/mutate/ignore`, ...).
    Kyverno,
    /// The CEL kinds only (Kyverno's `/vpol/...`, `/mpol/...`, `/ivpol/...`).
    Cel,
    /// Policies whose work happens in the background (Kyverno's `/gpol/...`): nothing is
    /// evaluated in admission and the request is admitted.
    Background,
}

/// What one admission path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    pub filter: FailurePolicyFilter,
    pub families: Families,
    /// Only these policies (Kyverno's fine-grained and `/vpol/<name>/...` paths); empty: all.
    pub names: Vec<String>,
    /// The CEL kinds served (Kyverno's `/vpol`, `/ivpol`, `/mpol` paths each serve one).
    pub cel_kinds: CelKinds,
}

impl Route {
    /// A route over every policy of the given families.
    pub fn new(endpoint: Endpoint, filter: FailurePolicyFilter, families: Families) -> Self {
        Route {
            endpoint,
            filter,
            families,
            names: Vec::new(),
            cel_kinds: CelKinds::All,
        }
    }

    /// `spec.admission: false` keeps a policy out of every admission path, as Kyverno's policy
    /// cache leaves it out (`AdmissionProcessingEnabled`, pkg/controllers/policycache).
    fn admits(&self, p: &Policy) -> bool {
        p.admission
            && matches!(self.families, Families::All | Families::Kyverno)
            && self.filter.admits(p)
            && (self.names.is_empty() || self.names.contains(&p.name))
    }

    fn cel_filter(&self) -> Option<AdmissionFilter<'_>> {
        matches!(self.families, Families::All | Families::Cel).then_some(AdmissionFilter {
            kinds: self.cel_kinds,
            failure_policy_fail: self.filter.as_option(),
            names: &self.names,
        })
    }
}

/// One policy's evaluation, kept for metrics and logs.
#[derive(Debug, Clone)]
pub struct PolicyOutcome {
    /// The ClusterPolicy/Policy; `None` for the CEL kinds.
    pub policy: Option<Arc<Policy>>,
    pub response: EngineResponse,
    /// The policy counts as Enforce (CEL kinds: `Deny`) for this request.
    pub enforce: bool,
    pub background: bool,
    pub duration: Duration,
}

/// The answer to one admission request.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub allowed: bool,
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// RFC 6902 patch as JSON.
    pub patch: Option<Value>,
    pub outcomes: Vec<PolicyOutcome>,
    /// Evaluation stopped at the deadline; the decision came from failurePolicy.
    pub timed_out: bool,
}

/// `Kind/namespace/name`, as Kyverno names the blocked resource.
pub fn resource_name(resource: &Value, kind: &str) -> String {
    let field = |key: &str| objects::str_at(resource, &["metadata", key]);
    let name = match field("name") {
        "" => field("generateName"),
        n => n,
    };
    format!("{kind}/{}/{name}", field("namespace"))
}

/// Kyverno's blocked message: every rule that neither passed nor skipped, by policy.
pub fn blocked_message(resource: &str, responses: &[&EngineResponse]) -> Option<String> {
    let mut failures: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for r in responses {
        for rule in &r.rules {
            if !matches!(rule.status, RuleStatus::Pass | RuleStatus::Skip) {
                failures
                    .entry(r.policy_name.clone())
                    .or_default()
                    .insert(rule.name.clone(), Value::String(rule.message.clone()));
            }
        }
    }
    if failures.is_empty() {
        return None;
    }
    let map = serde_json::to_value(&failures).unwrap_or(Value::Null);
    Some(format!(
        "\n\nresource {resource} was blocked due to the following policies \n\n{}",
        kybern_engine::yaml::to_yaml_string(&map)
    ))
}

fn is_unsupported(policy: &Policy, rule_name: &str) -> bool {
    policy
        .rules
        .iter()
        .any(|r| r.name == rule_name && matches!(r.body, RuleBody::Unsupported { .. }))
}

/// True for a mutate-existing rule (`mutate.targets`): it patches other objects in the background
/// (admission queues the work), so at admission it neither runs nor decides.
fn mutates_existing(body: &RuleBody) -> bool {
    matches!(body, RuleBody::Mutate(m) if kybern_engine::mutation::targets(m).is_some())
}

/// `/validate` answers for validate rules and the digest checks of verifyImages rules.
fn keep_rules(resp: &mut EngineResponse) {
    resp.rules
        .retain(|r| matches!(r.rule_type, RuleType::Validation | RuleType::ImageVerify));
}

/// Evaluates the request. `cancel` and `deadline` stop evaluation between policies; what was not
/// evaluated is then decided by the policies' `failurePolicy`.
pub fn decide(
    set: &PolicySet,
    provider: &dyn ContextProvider,
    request: &AdmissionRequest,
    route: &Route,
    deadline: Instant,
    cancel: &AtomicBool,
) -> Decision {
    let endpoint = route.endpoint;
    let kind = request.gvk().kind;
    let mut decision = Decision {
        allowed: true,
        ..Decision::default()
    };
    // Kyverno's mutating webhook handles CREATE, UPDATE and CONNECT only.
    if endpoint == Endpoint::Mutate && request.operation == Operation::Delete {
        return decision;
    }
    // A policy's webhook matchConditions: the API server would not have sent it this request.
    // A condition that cannot be evaluated is decided by the policy's failurePolicy, as the API
    // server decides it for a webhook.
    let mut condition_errors: Vec<(String, bool, String)> = Vec::new();
    let candidates: Vec<&Arc<Policy>> = set
        .candidates(&kind)
        .into_iter()
        .filter(|p| route.admits(p))
        .filter(|p| match endpoint {
            Endpoint::Validate => has_validate_rules(p),
            // verifyImages rules verify signatures and pin digests at /mutate too.
            Endpoint::Mutate => p.has_rule_of(|b| {
                matches!(
                    b,
                    RuleBody::Mutate(_)
                        | RuleBody::VerifyImages { .. }
                        | RuleBody::Unsupported {
                            rule_type: RuleType::Mutation,
                            ..
                        }
                )
            }),
        })
        .filter(|p| match webhook_match_conditions(p, request) {
            ConditionsOutcome::Met => true,
            ConditionsOutcome::NotMet(_) => false,
            ConditionsOutcome::Error(e) => {
                condition_errors.push((p.name.clone(), p.failure_policy_fail, e));
                false
            }
        })
        .collect();
    let engine = Engine::new(provider);
    let pctx = PolicyContext::new(request);
    let no_values = BTreeMap::new();
    let mut unevaluated: Vec<(String, bool)> = Vec::new();
    let mut mutated: Option<AdmissionRequest> = None;
    for (i, policy) in candidates.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) || Instant::now() >= deadline {
            unevaluated.extend(
                candidates
                    .iter()
                    .skip(i)
                    .map(|p| (p.name.clone(), p.failure_policy_fail)),
            );
            break;
        }
        let start = Instant::now();
        let response = match endpoint {
            Endpoint::Validate => {
                let mut r = engine.validate(policy, &pctx, &set.exceptions, &no_values);
                keep_rules(&mut r);
                r
            }
            Endpoint::Mutate
                if !policy.rules.is_empty()
                    && policy.rules.iter().all(|r| mutates_existing(&r.body)) =>
            {
                // Only background work: nothing to evaluate here (not even the target lists).
                continue;
            }
            Endpoint::Mutate => {
                // Mutations chain: each policy sees the object as the previous ones left it.
                let owned;
                let policy_pctx = match &mutated {
                    Some(req) => {
                        owned = PolicyContext::new(req);
                        &owned
                    }
                    None => &pctx,
                };
                let mut r = engine.mutate(policy, policy_pctx, &set.exceptions, &no_values);
                r.rules.retain(|x| {
                    !policy
                        .rules
                        .iter()
                        .any(|rule| rule.name == x.name && mutates_existing(&rule.body))
                });
                if !Arc::ptr_eq(&r.patched_resource, &r.resource) {
                    let mut next = mutated.take().unwrap_or_else(|| request.clone());
                    next.object = Arc::clone(&r.patched_resource);
                    mutated = Some(next);
                }
                r
            }
        };
        let duration = start.elapsed();
        let enforce = policy.validation_failure_action == FailureAction::Enforce
            || response
                .rules
                .iter()
                .any(|r| r.failure_action == Some(FailureAction::Enforce));
        decision.outcomes.push(PolicyOutcome {
            policy: Some(Arc::clone(policy)),
            response,
            enforce,
            background: policy.background,
            duration,
        });
    }
    let mut resource = resource_name(request.resource(), &kind);
    if resource.ends_with('/') {
        // The object has no name (a subresource's options, as for `pods/exec`): the request has.
        resource.push_str(&request.request_name);
    }
    let mut blocking: Vec<&EngineResponse> = Vec::new();
    for o in &decision.outcomes {
        let Some(policy) = &o.policy else { continue };
        let r = &o.response;
        let blocks = match endpoint {
            Endpoint::Validate => {
                r.blocks()
                    || (o.enforce
                        && policy.failure_policy_fail
                        && r.rules.iter().any(|x| x.status == RuleStatus::Error))
            }
            Endpoint::Mutate => {
                policy.failure_policy_fail
                    && r.rules
                        .iter()
                        .any(|x| x.status == RuleStatus::Error && !is_unsupported(policy, &x.name))
            }
        };
        if blocks {
            blocking.push(r);
            continue;
        }
        for rule in &r.rules {
            if matches!(
                rule.status,
                RuleStatus::Fail | RuleStatus::Warn | RuleStatus::Error
            ) {
                decision.warnings.push(format!(
                    "policy {}.{}: {}",
                    r.policy_name, rule.name, rule.message
                ));
            }
        }
    }
    let mut denials = Vec::new();
    let blocked = !blocking.is_empty();
    if blocked {
        decision.message = blocked_message(&resource, &blocking);
    }
    if let Some(filter) = route.cel_filter().filter(|_| !set.cel.is_empty()) {
        let stop = || cancel.load(Ordering::Relaxed) || Instant::now() >= deadline;
        let start = Instant::now();
        let pass = match endpoint {
            Endpoint::Validate => set.cel.validate_admission(request, provider, filter, &stop),
            Endpoint::Mutate => {
                let base = mutated.as_ref().unwrap_or(request);
                let pass = set.cel.mutate_admission(base, provider, filter, &stop);
                if let Some(object) = &pass.object {
                    let mut next = mutated.take().unwrap_or_else(|| request.clone());
                    next.object = Arc::clone(object);
                    mutated = Some(next);
                }
                pass
            }
        };
        // The CEL pass is timed as a whole; each policy gets an equal share.
        let share = start.elapsed() / u32::try_from(pass.outcomes.len().max(1)).unwrap_or(1);
        unevaluated.extend(pass.unevaluated);
        for o in pass.outcomes {
            denials.extend(o.denials());
            decision.warnings.extend(o.warnings());
            decision.outcomes.push(cel_outcome(o, share));
        }
    }
    if !denials.is_empty() {
        let joined = denials.join("; ");
        decision.message = Some(match decision.message.take() {
            Some(m) => format!("{joined}{m}"),
            None => joined,
        });
    }
    decision.allowed = !blocked && denials.is_empty();
    for (name, fail, error) in condition_errors {
        let text = format!("policy {name}: failed to evaluate webhook matchConditions: {error}");
        if fail {
            decision.allowed = false;
            decision.message = Some(match decision.message.take() {
                Some(m) => format!("{text}; denied by failurePolicy Fail{m}"),
                None => format!("{text}; denied by failurePolicy Fail"),
            });
        } else {
            decision
                .warnings
                .push(format!("{text}; skipped by failurePolicy Ignore"));
        }
    }
    if !unevaluated.is_empty() {
        decision.timed_out = true;
        let names: Vec<&str> = unevaluated.iter().map(|(n, _)| n.as_str()).collect();
        let fail: Vec<&str> = unevaluated
            .iter()
            .filter(|(_, fail)| *fail)
            .map(|(n, _)| n.as_str())
            .collect();
        if fail.is_empty() {
            decision.warnings.push(format!(
                "evaluation of {} did not finish before the deadline; allowed by failurePolicy Ignore",
                names.join(", ")
            ));
        } else {
            decision.allowed = false;
            let extra = format!(
                "evaluation of {} did not finish before the deadline; denied by failurePolicy Fail",
                fail.join(", ")
            );
            decision.message = Some(match decision.message.take() {
                Some(m) => format!("{extra}{m}"),
                None => extra,
            });
        }
    }
    if endpoint == Endpoint::Mutate && decision.allowed {
        let original = request.resource();
        let last = mutated.as_ref().map_or(original, |r| &r.object);
        decision.patch = patch::diff(original, last);
    }
    decision
}

fn cel_outcome(o: AdmissionOutcome, duration: Duration) -> PolicyOutcome {
    PolicyOutcome {
        policy: None,
        enforce: o.enforces(),
        background: o.background,
        response: o.response,
        duration,
    }
}

/// CEL policies the route would evaluate whose resource rules select the request, with whether
/// their failure policy is Fail (namespace selectors are not consulted: nothing is evaluated).
fn cel_fail_closed(
    set: &PolicySet,
    request: &AdmissionRequest,
    route: &Route,
) -> Vec<(String, bool)> {
    let Some(filter) = route.cel_filter() else {
        return Vec::new();
    };
    let stop_at_once = || true;
    let pass: AdmissionPass = match route.endpoint {
        Endpoint::Validate => {
            set.cel
                .validate_admission(request, &NoProvider, filter, &stop_at_once)
        }
        Endpoint::Mutate => set
            .cel
            .mutate_admission(request, &NoProvider, filter, &stop_at_once),
    };
    pass.unevaluated
}

/// The answer when evaluation could not run at all (deadline passed before it started, or a
/// worker failed): Fail policies among the candidates deny, otherwise the request is allowed.
pub fn decide_without_evaluation(
    set: &PolicySet,
    request: &AdmissionRequest,
    route: &Route,
    reason: &str,
) -> Decision {
    let kind = request.gvk().kind;
    let mut fail: Vec<String> = set
        .candidates(&kind)
        .into_iter()
        .filter(|p| {
            route.admits(p)
                && p.failure_policy_fail
                && !matches!(
                    webhook_match_conditions(p, request),
                    ConditionsOutcome::NotMet(_)
                )
        })
        .map(|p| p.name.clone())
        .collect();
    fail.extend(
        cel_fail_closed(set, request, route)
            .into_iter()
            .filter(|(_, f)| *f)
            .map(|(n, _)| n),
    );
    if fail.is_empty() {
        Decision {
            allowed: true,
            warnings: vec![format!("{reason}; allowed by failurePolicy Ignore")],
            timed_out: true,
            ..Decision::default()
        }
    } else {
        Decision {
            allowed: false,
            message: Some(format!(
                "{reason}; denied by failurePolicy Fail of {}",
                fail.join(", ")
            )),
            timed_out: true,
            ..Decision::default()
        }
    }
}
