//! What the engine returns: one response per policy and resource, with one result per rule.

use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// The outcome of one rule on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

impl RuleStatus {
    /// The lower-case word Kyverno prints and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Pass => "pass",
            RuleStatus::Fail => "fail",
            RuleStatus::Warn => "warn",
            RuleStatus::Error => "error",
            RuleStatus::Skip => "skip",
        }
    }
}

/// The kind of rule that produced a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RuleType {
    Validation,
    Mutation,
    Generation,
    ImageVerify,
}

/// One rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    pub name: String,
    pub rule_type: RuleType,
    pub status: RuleStatus,
    pub message: String,
    /// The PolicyExceptions (`namespace/name`) that turned this rule into a skip.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
    /// Objects a generate rule wants to exist.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generated: Vec<Value>,
    /// The resource after a mutate rule that changed it.
    #[serde(skip)]
    pub patched: Option<Value>,
    /// Mutate existing (`mutate.targets`): the target this result is about, after the rule's
    /// patches. Set when the rule passed on that target; the trigger itself is never patched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patched_target: Option<Value>,
    /// Mutate existing: one result per target, expanded into the response by `Engine::mutate`.
    #[serde(skip)]
    pub(crate) target_results: Option<Vec<RuleResult>>,
    /// The effective failure action of a validate or verifyImages rule.
    #[serde(skip)]
    pub failure_action: Option<FailureAction>,
}

impl RuleResult {
    pub fn new(
        name: impl Into<String>,
        rule_type: RuleType,
        status: RuleStatus,
        message: impl Into<String>,
    ) -> Self {
        RuleResult {
            name: name.into(),
            rule_type,
            status,
            message: message.into(),
            exceptions: Vec::new(),
            generated: Vec::new(),
            patched: None,
            patched_target: None,
            target_results: None,
            failure_action: None,
        }
    }
}

/// Whether a failing rule blocks admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum FailureAction {
    #[default]
    Audit,
    Enforce,
}

/// The result of one policy on one resource.
#[derive(Debug, Clone, Serialize)]
pub struct EngineResponse {
    pub policy_name: String,
    /// Empty for cluster-wide policies.
    pub policy_namespace: String,
    /// `ClusterPolicy`, `ValidatingPolicy`, ...: the engine's own kinds are not copied per response.
    pub policy_kind: Cow<'static, str>,
    /// The policy carries `policies.kyverno.io/scored: "false"`: reports show failures as warnings.
    pub unscored: bool,
    pub rules: Vec<RuleResult>,
    /// The resource the rules looked at (after the mutations applied before them); shared, not copied.
    pub resource: Arc<Value>,
    /// The resource after this policy's mutations (the same allocation as `resource` when nothing changed).
    pub patched_resource: Arc<Value>,
}

impl EngineResponse {
    /// True when a rule failed and its failure action is Enforce.
    pub fn blocks(&self) -> bool {
        self.rules.iter().any(|r| {
            r.status == RuleStatus::Fail && r.failure_action == Some(FailureAction::Enforce)
        })
    }
}
