//! The `kyverno.io` ClusterPolicy/Policy model: typed where Kyverno is strict, raw JSON where rules
//! carry patterns and variables, and the compilation of a policy document into an immutable [`Policy`].

mod load;
mod matching_types;
mod schema;

pub use load::{PolicyLoadError, PolicyLoadErrorKind, compile_policy};
pub use matching_types::{
    LabelSelector, LabelSelectorRequirement, MatchResources, ResourceDescription, ResourceFilter,
    Subject,
};

use crate::pod_security::PodSecurity;
use crate::response::FailureAction;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which policy kind a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    ClusterPolicy,
    Policy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::ClusterPolicy => "ClusterPolicy",
            PolicyKind::Policy => "Policy",
        }
    }
}

/// `validationFailureActionOverrides` / `failureActionOverrides` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureActionOverride {
    pub action: FailureAction,
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
}

/// A compiled, immutable policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub name: String,
    /// Empty for ClusterPolicy.
    pub namespace: String,
    pub annotations: BTreeMap<String, String>,
    pub validation_failure_action: FailureAction,
    pub failure_action_overrides: Vec<FailureActionOverride>,
    /// `applyRules: One`: stop after the first rule that applied.
    pub apply_one: bool,
    /// `failurePolicy: Fail` (the default): rule errors block admission.
    pub failure_policy_fail: bool,
    pub background: bool,
    /// `spec.admission` (default true). False keeps the policy out of admission (Kyverno's policy
    /// cache leaves it out); background scans and `kybern apply`/`test` still evaluate it, as the
    /// kyverno CLI does.
    pub admission: bool,
    /// `spec.webhookConfiguration.matchConditions`, compiled: Kyverno writes them into the
    /// policy's webhook, so the API server only sends requests they admit. The admission server
    /// checks them itself (see `engine::webhook_match_conditions`).
    pub match_conditions: Vec<crate::cel::Condition>,
    /// The rules, followed by the auto-generated rules for pod controllers.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// `policies.kyverno.io/scored: "false"`: failures are reported as warnings.
    pub fn unscored(&self) -> bool {
        self.annotations
            .get("policies.kyverno.io/scored")
            .is_some_and(|v| v == "false")
    }

    /// `name` for a ClusterPolicy, `namespace/name` for a Policy (the key exceptions use).
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    pub fn has_rule_of(&self, f: impl Fn(&RuleBody) -> bool) -> bool {
        self.rules.iter().any(|r| f(&r.body))
    }

    /// Pull secrets its `verifyImages` rules name in `imageRegistryCredentials.secrets`.
    pub fn registry_secrets(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter_map(|r| match &r.body {
                RuleBody::VerifyImages { entries, .. } => Some(entries),
                _ => None,
            })
            .flatten()
            .flat_map(|e| e.registry_secrets.iter().map(String::as_str))
    }
}

/// One rule of a policy.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub match_resources: MatchResources,
    pub exclude: Option<MatchResources>,
    /// Raw `context` entries; evaluated per request.
    pub context: Vec<Value>,
    /// `preconditions` (any/all object or a legacy list), prepared at load.
    pub preconditions: Option<crate::preconditions::ConditionBlock>,
    pub body: RuleBody,
    /// The rule's JSON path inside the policy, for messages (e.g. `spec.rules[2]`).
    pub path: String,
    /// Decided at load from `match`: the only kinds (`Pod`, `Deployment`) the rule can select,
    /// so that other requests skip it without parsing selectors; `None` when it is not that simple.
    pub kind_filter: Option<Vec<String>>,
    /// The preconditions hold `{{ }}` variables (decided at load).
    pub preconditions_have_variables: bool,
    /// Whether a mutate body holds `{{ }}` variables, decided at load.
    pub mutate_has_variables: bool,
}

impl Rule {
    /// False when `match` cannot select a request of this kind (a quick pre-check).
    pub fn may_match_kind(&self, kind: &str) -> bool {
        self.kind_filter
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind))
    }
}

/// What a rule does.
#[derive(Debug, Clone)]
pub enum RuleBody {
    Validate(Box<Validation>),
    /// The raw `generate` block; variables are substituted per request.
    Generate(Box<Value>),
    /// The raw `mutate` block; variables are substituted per request.
    Mutate(Box<Value>),
    /// `verifyImages` entries, and the rule's `imageExtractors` for custom resources.
    VerifyImages {
        entries: Vec<crate::image_verification::ImageVerification>,
        extractors: crate::images::Extractors,
    },
    /// A rule kind this engine cannot evaluate yet; evaluating it gives a rule `error` naming the field.
    Unsupported {
        field: String,
        rule_type: crate::response::RuleType,
    },
}

/// A `validate` rule.
#[derive(Debug, Clone)]
pub struct Validation {
    pub message: Option<String>,
    pub failure_action: Option<FailureAction>,
    pub failure_action_overrides: Vec<FailureActionOverride>,
    pub allow_existing_violations: bool,
    pub check: ValidationCheck,
}

/// A validate pattern, with what it needs at evaluation decided once at load.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub value: Value,
    /// Holds `{{ }}` variables: substituted per request.
    pub has_variables: bool,
    /// Holds `$(...)` references: resolved per request.
    pub has_references: bool,
    /// Compiled at load when the pattern holds no variables (its references resolved).
    pub compiled: Option<Arc<crate::pattern::CompiledPattern>>,
}

impl Pattern {
    pub fn new(value: Value) -> Self {
        let has_variables = crate::variables::value_has_variables(&value);
        let has_references = value_contains(&value, "$(");
        // A pattern whose references do not resolve keeps failing per request, as it reports.
        let compiled = match (has_variables, has_references) {
            (true, _) => None,
            (false, false) => Some(crate::pattern::CompiledPattern::new(&value)),
            (false, true) => crate::pattern::resolve_references(&value)
                .ok()
                .map(|resolved| crate::pattern::CompiledPattern::new(&resolved)),
        };
        Pattern {
            has_variables,
            has_references,
            compiled: compiled.map(Arc::new),
            value,
        }
    }
}

/// Whether some string of `v`, key or value, contains `needle`.
pub(crate) fn value_contains(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|x| value_contains(x, needle)),
        Value::Object(m) => m
            .iter()
            .any(|(k, x)| k.contains(needle) || value_contains(x, needle)),
        _ => false,
    }
}

/// One `foreach` entry of a validate rule.
#[derive(Debug, Clone)]
pub struct ForeachValidation {
    /// JMESPath (may hold variables) giving the elements.
    pub list: String,
    /// `None`: scope the check to the element when it is an object.
    pub element_scope: Option<bool>,
    pub context: Vec<Value>,
    pub preconditions: Option<crate::preconditions::ConditionBlock>,
    pub check: ValidationCheck,
}

/// The check of a validate rule.
#[derive(Debug, Clone)]
pub enum ValidationCheck {
    Pattern(Pattern),
    AnyPattern(Vec<Pattern>),
    /// `deny.conditions`, prepared at load.
    Deny(crate::preconditions::ConditionBlock),
    Foreach(Vec<ForeachValidation>),
    PodSecurity(PodSecurity),
    /// `validate.cel` with the rule's `celPreconditions`, compiled.
    Cel(Box<crate::cel::ValidateCel>),
    /// `manifests`: signed manifests, with their keys parsed.
    Manifests(Box<crate::signed_manifests::ManifestCheck>),
    /// A validate sub-type this engine cannot evaluate yet (e.g. `assert`).
    Unsupported(String),
}
