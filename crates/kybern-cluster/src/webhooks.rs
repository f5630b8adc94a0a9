//! The webhook configurations a policy set needs, built as Kyverno builds them: a pure function of
//! the policies, the settings, the CA bundle and the cluster's kinds, sorted so that the same
//! input always gives the same bytes (a rebuild that changes nothing writes nothing).
//!
//! - ClusterPolicy/Policy rules go to `validate.<product>.svc-{fail,ignore}` (`/validate/{fail,ignore}`)
//!   and `mutate.<product>.svc-{fail,ignore}` by their failurePolicy; a policy with its own
//!   `webhookConfiguration.matchConditions` gets a fine-grained webhook of its own.
//! - The CEL kinds go to `vpol`, `nvpol`, `ivpol` and `mpol`/`nmpol` webhooks whose path names the
//!   policies, with their `matchConstraints.resourceRules` as rules.
//! - Rules are narrow: the kinds and operations policies match, never `*` unless a policy asks.
//! - Generate rules register their triggers on the validating webhook: admission queues their
//!   work for the background controller.
//! - GeneratingPolicies register their `matchConstraints` on `gpol`/`ngpol` webhooks: admitted
//!   at once, their work queued for the background controller.
//! - ValidatingAdmissionPolicies, MutatingAdmissionPolicies and DeletingPolicies get no webhook
//!   rules: the API server runs the former two.

use crate::names::Names;
use kybern_engine::matching::parse_kind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The most an API server allows for a webhook's timeout.
const MAX_TIMEOUT: u64 = 30;

/// What the builder needs besides the policies.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub names: Names,
    /// For policies that set none.
    pub default_timeout_seconds: u64,
    /// Namespaces never sent to the webhooks, besides kybern's own.
    pub exclude_namespaces: Vec<String>,
    /// `https://host:port`: the API server calls this URL instead of the Service (kybern running
    /// outside the cluster).
    pub url_base: Option<String>,
    /// From the ConfigMap's `webhooks` key: replaces the default namespaceSelector (kybern's own
    /// namespace stays excluded).
    pub namespace_selector: Option<Value>,
    /// From the ConfigMap's `webhooks` key.
    pub object_selector: Option<Value>,
    /// From the ConfigMap's `matchConditions` key: on every webhook, before a policy's own.
    pub match_conditions: Vec<Value>,
}

impl WebhookSettings {
    /// These settings with what a Kyverno-format ConfigMap says: `webhooks` (a JSON list whose
    /// first entry gives `namespaceSelector` and `objectSelector`) and `matchConditions` (a JSON
    /// list). A value that does not parse is reported and ignored.
    pub fn with_config_map(&self, config_map: Option<&Value>) -> (WebhookSettings, Vec<String>) {
        let mut out = self.clone();
        let mut problems = Vec::new();
        let data = |key: &str| {
            config_map
                .and_then(|c| c.pointer(&format!("/data/{key}")))
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
        };
        if let Some(text) = data("webhooks") {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(list)) => {
                    if let Some(first) = list.first() {
                        out.namespace_selector = first.get("namespaceSelector").cloned();
                        out.object_selector = first.get("objectSelector").cloned();
                    }
                }
                Ok(_) => problems.push("data.webhooks: must be a JSON list".to_string()),
                Err(e) => problems.push(format!("data.webhooks: {e}")),
            }
        }
        if let Some(text) = data("matchConditions") {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(list)) => out.match_conditions = list,
                Ok(_) => problems.push("data.matchConditions: must be a JSON list".to_string()),
                Err(e) => problems.push(format!("data.matchConditions: {e}")),
            }
        }
        (out, problems)
    }

    /// The namespaceSelector of every webhook: the configured one, or kube-system and the
    /// configured exclusions left out; kybern's own namespace is always left out, so that a
    /// broken kybern can still be repaired.
    fn namespace_selector(&self) -> Value {
        let own = json!({
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": [self.names.namespace],
        });
        match &self.namespace_selector {
            Some(sel) => {
                let mut sel = sel.clone();
                if !sel.is_object() {
                    sel = json!({});
                }
                let excluded = sel
                    .to_string()
                    .contains(&format!("\"{}\"", self.names.namespace));
                if !excluded {
                    match sel
                        .get_mut("matchExpressions")
                        .and_then(Value::as_array_mut)
                    {
                        Some(list) => list.push(own),
                        None => sel["matchExpressions"] = json!([own]),
                    }
                }
                sel
            }
            None => {
                let mut excluded: BTreeSet<String> =
                    self.exclude_namespaces.iter().cloned().collect();
                excluded.insert(self.names.namespace.clone());
                json!({"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": excluded.into_iter().collect::<Vec<_>>(),
                }]})
            }
        }
    }
}

/// A resource the API server knows: what a kind selector resolves to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The plural name (`pods`).
    pub plural: String,
    pub namespaced: bool,
    /// Subresource names (`exec`, `status`).
    pub subresources: Vec<String>,
    /// The group's preferred version.
    pub preferred: bool,
}

/// The kinds of the cluster, from discovery (or a fixed table in tests).
pub trait KindResolver: Send + Sync {
    /// Every resource of every version.
    fn resources(&self) -> &[Resource];
}

impl KindResolver for Vec<Resource> {
    fn resources(&self) -> &[Resource] {
        self
    }
}

/// The configurations to write, and what could not be resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub validating: Value,
    pub mutating: Value,
    /// Policies and exceptions themselves, checked at `kubectl apply` (`/policyvalidate`).
    pub policy_validating: Value,
    /// Policy keys with their kinds the cluster does not know (those rules get no webhook rule).
    pub unresolved: Vec<(String, String)>,
    /// Keys of the policies that have webhook rules in place.
    pub configured: BTreeSet<String>,
}

/// One webhook rule: group, version, resource, operation; collected, then merged.
type RuleKey = (String, String, String, String, &'static str);

#[derive(Default)]
struct Webhook {
    path: String,
    fail: bool,
    timeout: u64,
    rules: BTreeSet<RuleKey>,
    match_conditions: Vec<Value>,
}

const VALIDATE_OPS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];
const MUTATE_OPS: [&str; 2] = ["CREATE", "UPDATE"];

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// `Kind.group/name` or `Kind.group/namespace/name` (`ClusterPolicy.kyverno.io/require-labels`):
/// how objects are keyed across kybern-cluster; the group tells apart kyverno.io's and
/// policies.kyverno.io's PolicyExceptions.
pub fn policy_key(doc: &Value) -> String {
    let kind = str_at(doc, "/kind").unwrap_or_default();
    let group = str_at(doc, "/apiVersion")
        .and_then(|a| a.split_once('/'))
        .map_or("", |(g, _)| g);
    let name = str_at(doc, "/metadata/name").unwrap_or_default();
    let kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    match str_at(doc, "/metadata/namespace") {
        Some(ns) if !ns.is_empty() => format!("{kind}/{ns}/{name}"),
        _ => format!("{kind}/{name}"),
    }
}

fn operation(op: &str) -> Option<&'static str> {
    let all = ["CREATE", "UPDATE", "DELETE", "CONNECT"];
    if op == "*" {
        return None;
    }
    all.into_iter().find(|o| o.eq_ignore_ascii_case(op))
}

fn scope(namespaced_policy: bool) -> &'static str {
    if namespaced_policy { "Namespaced" } else { "*" }
}

/// The resources a Kyverno kind selector names; `Err` when the cluster has none of them.
fn resolve(
    selector: &str,
    resolver: &dyn KindResolver,
) -> Result<Vec<(String, String, String)>, ()> {
    let s = parse_kind(selector);
    if s.kind == "*" && s.group == "*" && s.version == "*" {
        let resource = match s.subresource {
            None => "*",
            Some("*") => "*/*",
            Some(sub) => return Ok(vec![("*".into(), "*".into(), format!("*/{sub}"))]),
        };
        return Ok(vec![("*".into(), "*".into(), resource.into())]);
    }
    let mut out = Vec::new();
    for r in resolver.resources() {
        let kind_ok = s.kind == "*" || r.kind.eq_ignore_ascii_case(s.kind);
        let group_ok = s.group == "*" || s.group == r.group;
        let version_ok = if s.version == "*" {
            r.preferred
        } else {
            s.version == r.version
        };
        if !(kind_ok && group_ok && version_ok) {
            continue;
        }
        let mut push = |res: String| out.push((r.group.clone(), r.version.clone(), res));
        match s.subresource {
            None => {
                push(r.plural.clone());
                // Kyverno checks ephemeral containers wherever it checks Pods.
                if r.group.is_empty() && r.plural == "pods" {
                    push("pods/ephemeralcontainers".into());
                }
            }
            Some("*") => push(format!("{}/*", r.plural)),
            Some(sub) => {
                if r.subresources.iter().any(|x| x == sub) {
                    push(format!("{}/{sub}", r.plural));
                }
            }
        }
    }
    if out.is_empty() { Err(()) } else { Ok(out) }
}

fn timeout_of(spec: &Value, default: u64) -> u64 {
    spec.pointer("/webhookConfiguration/timeoutSeconds")
        .or_else(|| spec.get("webhookTimeoutSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(default)
        .clamp(1, MAX_TIMEOUT)
}

/// Collects webhooks by name.
struct Builder<'a> {
    settings: &'a WebhookSettings,
    resolver: &'a dyn KindResolver,
    validating: BTreeMap<String, Webhook>,
    mutating: BTreeMap<String, Webhook>,
    unresolved: Vec<(String, String)>,
    configured: BTreeSet<String>,
}

impl Builder<'_> {
    fn webhook(&mut self, mutating: bool, name: String, path: String, fail: bool) -> &mut Webhook {
        let map = if mutating {
            &mut self.mutating
        } else {
            &mut self.validating
        };
        map.entry(name).or_insert_with(|| Webhook {
            path,
            fail,
            timeout: 0,
            ..Webhook::default()
        })
    }

    /// A ClusterPolicy or Policy.
    fn kyverno_policy(&mut self, doc: &Value) {
        let Some(spec) = doc.get("spec") else { return };
        if spec.get("admission").and_then(Value::as_bool) == Some(false) {
            return;
        }
        let key = policy_key(doc);
        let product = self.settings.names.product();
        let fail = spec
            .pointer("/webhookConfiguration/failurePolicy")
            .or_else(|| spec.get("failurePolicy"))
            .and_then(Value::as_str)
            != Some("Ignore");
        let bucket = if fail { "fail" } else { "ignore" };
        let namespaced = str_at(doc, "/metadata/namespace").is_some_and(|n| !n.is_empty());
        let conditions: Vec<Value> = spec
            .pointer("/webhookConfiguration/matchConditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let timeout = timeout_of(spec, self.settings.default_timeout_seconds);
        let name = str_at(doc, "/metadata/name")
            .unwrap_or_default()
            .to_string();
        let ns = str_at(doc, "/metadata/namespace").unwrap_or_default();
        let fine_suffix = if ns.is_empty() {
            name.clone()
        } else {
            format!("{ns}-{name}")
        };
        let fine_path = if ns.is_empty() {
            name.clone()
        } else {
            format!("{ns}/{name}")
        };
        let mut any = false;
        for rule in kybern_engine::autogen::compute_rules(doc) {
            let (mutating, head, defaults): (bool, &str, &[&str]) =
                if rule.get("validate").is_some() || rule.get("verifyImages").is_some() {
                    (false, "validate", &VALIDATE_OPS)
                } else if rule.get("mutate").is_some() {
                    (true, "mutate", &MUTATE_OPS)
                } else if rule.get("generate").is_some() {
                    // Admission queues the work; the background controller does it.
                    (false, "validate", &VALIDATE_OPS)
                } else {
                    continue;
                };
            let (hook_name, path) = if conditions.is_empty() {
                (
                    format!("{head}.{product}.svc-{bucket}"),
                    format!("/{head}/{bucket}"),
                )
            } else {
                (
                    format!("{head}.{product}.svc-{bucket}-finegrained-{fine_suffix}"),
                    format!("/{head}/{bucket}/finegrained/{fine_path}"),
                )
            };
            let mut keys = Vec::new();
            for description in match_descriptions(&rule) {
                let ops: Vec<&'static str> = {
                    let declared = strings(description.get("operations"));
                    if declared.is_empty() {
                        defaults.to_vec()
                    } else {
                        declared.iter().filter_map(|o| operation(o)).collect()
                    }
                };
                for kind in strings(description.get("kinds")) {
                    match resolve(&kind, self.resolver) {
                        Ok(list) => {
                            for (g, v, r) in list {
                                for op in &ops {
                                    keys.push((
                                        g.clone(),
                                        v.clone(),
                                        r.clone(),
                                        scope(namespaced).to_string(),
                                        *op,
                                    ));
                                }
                            }
                        }
                        Err(()) => self.unresolved.push((key.clone(), kind)),
                    }
                }
            }
            if keys.is_empty() {
                continue;
            }
            any = true;
            let hook = self.webhook(mutating, hook_name, path, fail);
            hook.timeout = hook.timeout.max(timeout);
            hook.rules.extend(keys);
            if hook.match_conditions.is_empty() {
                hook.match_conditions = conditions.clone();
            }
        }
        if any {
            self.configured.insert(key);
        }
    }

    /// A policies.kyverno.io kind served at admission.
    fn cel_policy(&mut self, doc: &Value, head: &str, mutating: bool) {
        let Some(spec) = doc.get("spec") else { return };
        if spec
            .pointer("/evaluation/admission/enabled")
            .and_then(Value::as_bool)
            == Some(false)
        {
            return;
        }
        let fail = spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
        let bucket = if fail { "fail" } else { "ignore" };
        let namespaced = str_at(doc, "/metadata/namespace").is_some_and(|n| !n.is_empty());
        let timeout = timeout_of(spec, self.settings.default_timeout_seconds);
        let name = str_at(doc, "/metadata/name").unwrap_or_default();
        let product = self.settings.names.product();
        let mut keys = Vec::new();
        let rules = spec
            .pointer("/matchConstraints/resourceRules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // A synchronized GeneratingPolicy also hears its triggers' deletions: what it wrote
        // for them goes with them.
        let synchronized = matches!(head, "gpol" | "ngpol")
            && spec
                .pointer("/evaluation/synchronize/enabled")
                .and_then(Value::as_bool)
                == Some(true);
        for rule in &rules {
            let mut ops: Vec<&'static str> = strings(rule.get("operations"))
                .iter()
                .flat_map(|o| match operation(o) {
                    Some(op) => vec![op],
                    None => VALIDATE_OPS.to_vec(),
                })
                .collect();
            if synchronized && !ops.contains(&"DELETE") {
                ops.push("DELETE");
            }
            let rule_scope = match rule.get("scope").and_then(Value::as_str) {
                Some(s @ ("Cluster" | "Namespaced")) => s.to_string(),
                _ => scope(namespaced).to_string(),
            };
            for g in strings(rule.get("apiGroups")) {
                for v in strings(rule.get("apiVersions")) {
                    for r in strings(rule.get("resources")) {
                        for op in &ops {
                            keys.push((g.clone(), v.clone(), r.clone(), rule_scope.clone(), *op));
                        }
                    }
                }
            }
        }
        if keys.is_empty() {
            return;
        }
        self.configured.insert(policy_key(doc));
        let (hook_name, base) = if head == "ivpol" {
            (
                format!("ivpol.validate.{product}.svc-{bucket}"),
                format!("/ivpol/validate/{bucket}"),
            )
        } else {
            let kind_word = if mutating { "mutate" } else { "validate" };
            (
                format!("{head}.{kind_word}.{product}.svc-{bucket}"),
                format!("/{head}/{bucket}"),
            )
        };
        // An ImageValidatingPolicy also pins tags to digests on its mutating webhook
        // (`validationConfigurations.mutateDigest`, default true), for creates and updates.
        if head == "ivpol"
            && spec
                .pointer("/validationConfigurations/mutateDigest")
                .and_then(Value::as_bool)
                != Some(false)
        {
            let writes: Vec<RuleKey> = keys
                .iter()
                .filter(|k| matches!(k.4, "CREATE" | "UPDATE"))
                .cloned()
                .collect();
            if !writes.is_empty() {
                let hook = self.webhook(
                    true,
                    format!("ivpol.mutate.{product}.svc-{bucket}"),
                    format!("/ivpol/mutate/{bucket}"),
                    fail,
                );
                hook.path = format!("{}/{name}", hook.path);
                hook.timeout = hook.timeout.max(timeout);
                hook.rules.extend(writes);
            }
        }
        let hook = self.webhook(mutating, hook_name, base, fail);
        hook.path = format!("{}/{name}", hook.path);
        hook.timeout = hook.timeout.max(timeout);
        hook.rules.extend(keys);
    }
}

/// `match.any[].resources`, `match.all[].resources` and `match.resources` of a raw rule.
fn match_descriptions(rule: &Value) -> Vec<&Value> {
    let Some(m) = rule.get("match") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for list in ["any", "all"] {
        for f in m.get(list).and_then(Value::as_array).into_iter().flatten() {
            if let Some(r) = f.get("resources") {
                out.push(r);
            }
        }
    }
    if let Some(r) = m.get("resources") {
        out.push(r);
    }
    out
}

/// Merges collected rules into Kubernetes `RuleWithOperations`: one per group, version, scope and
/// operation set, resources sorted.
fn merge_rules(keys: &BTreeSet<RuleKey>) -> Vec<Value> {
    let mut ops: BTreeMap<(String, String, String, String), BTreeSet<&'static str>> =
        BTreeMap::new();
    for (g, v, r, s, op) in keys {
        ops.entry((g.clone(), v.clone(), s.clone(), r.clone()))
            .or_default()
            .insert(op);
    }
    let mut grouped: BTreeMap<(String, String, String, Vec<&'static str>), Vec<String>> =
        BTreeMap::new();
    for ((g, v, s, r), o) in ops {
        let mut o: Vec<&'static str> = o.into_iter().collect();
        o.sort_by_key(|x| VALIDATE_OPS.iter().position(|y| y == x));
        grouped.entry((g, v, s, o)).or_default().push(r);
    }
    grouped
        .into_iter()
        .map(|((g, v, s, o), resources)| {
            json!({
                "apiGroups": [g],
                "apiVersions": [v],
                "resources": resources,
                "operations": o,
                "scope": s,
            })
        })
        .collect()
}

fn render(
    name: &str,
    hook: &Webhook,
    settings: &WebhookSettings,
    ca_bundle: &str,
    mutating: bool,
) -> Value {
    let client = match &settings.url_base {
        Some(base) => {
            json!({"url": format!("{}{}", base.trim_end_matches('/'), hook.path), "caBundle": ca_bundle})
        }
        None => json!({
            "service": {
                "namespace": settings.names.namespace,
                "name": settings.names.service,
                "path": hook.path,
                "port": 443,
            },
            "caBundle": ca_bundle,
        }),
    };
    let mut w = json!({
        "name": name,
        "clientConfig": client,
        "rules": merge_rules(&hook.rules),
        "failurePolicy": if hook.fail { "Fail" } else { "Ignore" },
        "matchPolicy": "Equivalent",
        "namespaceSelector": settings.namespace_selector(),
        "objectSelector": settings.object_selector.clone().unwrap_or_else(|| json!({})),
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": if hook.timeout == 0 { settings.default_timeout_seconds.clamp(1, MAX_TIMEOUT) } else { hook.timeout },
        "admissionReviewVersions": ["v1"],
    });
    let conditions: Vec<Value> = settings
        .match_conditions
        .iter()
        .chain(&hook.match_conditions)
        .cloned()
        .collect();
    if !conditions.is_empty() {
        w["matchConditions"] = Value::Array(conditions);
    }
    if mutating {
        w["reinvocationPolicy"] = json!("IfNeeded");
    }
    w
}

/// The configurations `policies` need. Only policies that compiled should be given: a broken
/// one is reported on its own object and must not change what the others register.
pub fn desired<'a>(
    policies: impl IntoIterator<Item = &'a Value>,
    settings: &WebhookSettings,
    ca_bundle_pem: &[u8],
    resolver: &dyn KindResolver,
) -> Desired {
    use base64::Engine as _;
    let mut b = Builder {
        settings,
        resolver,
        validating: BTreeMap::new(),
        mutating: BTreeMap::new(),
        unresolved: Vec::new(),
        configured: BTreeSet::new(),
    };
    for doc in policies {
        let group = str_at(doc, "/apiVersion")
            .and_then(|a| a.split_once('/'))
            .map_or("", |(g, _)| g);
        match (group, str_at(doc, "/kind").unwrap_or_default()) {
            ("kyverno.io", "ClusterPolicy" | "Policy") => b.kyverno_policy(doc),
            ("policies.kyverno.io", "ValidatingPolicy") => b.cel_policy(doc, "vpol", false),
            ("policies.kyverno.io", "NamespacedValidatingPolicy") => {
                b.cel_policy(doc, "nvpol", false)
            }
            ("policies.kyverno.io", "ImageValidatingPolicy") => b.cel_policy(doc, "ivpol", false),
            ("policies.kyverno.io", "MutatingPolicy") => b.cel_policy(doc, "mpol", true),
            ("policies.kyverno.io", "NamespacedMutatingPolicy") => b.cel_policy(doc, "nmpol", true),
            // Their triggers come to `/gpol`: admitted at once, the work queued.
            ("policies.kyverno.io", "GeneratingPolicy") => b.cel_policy(doc, "gpol", false),
            ("policies.kyverno.io", "NamespacedGeneratingPolicy") => {
                b.cel_policy(doc, "ngpol", false)
            }
            _ => {}
        }
    }
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_bundle_pem);
    let (label_key, label_value) = settings.names.webhook_label();
    let config = |kind: &str, name: String, hooks: &BTreeMap<String, Webhook>, mutating: bool| {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {
                "name": name,
                "labels": {label_key.clone(): label_value.clone()},
            },
            "webhooks": hooks.iter().map(|(n, h)| render(n, h, settings, &ca, mutating)).collect::<Vec<_>>(),
        })
    };
    let policy_hook = Webhook {
        path: "/policyvalidate".into(),
        fail: true,
        timeout: settings.default_timeout_seconds.clamp(1, MAX_TIMEOUT),
        rules: crate::kinds::KINDS
            .iter()
            .filter(|k| k.role == crate::kinds::Role::Policy)
            .flat_map(|k| {
                ["CREATE", "UPDATE"].map(|op| {
                    (
                        k.group.to_string(),
                        "*".to_string(),
                        k.plural.to_string(),
                        "*".to_string(),
                        op,
                    )
                })
            })
            .collect(),
        match_conditions: Vec::new(),
    };
    let mut policy_hooks = BTreeMap::new();
    policy_hooks.insert(
        format!("validate-policy.{}.svc", settings.names.product()),
        policy_hook,
    );
    let mut policy_validating = config(
        "ValidatingWebhookConfiguration",
        settings.names.policy_validating_webhook_configuration(),
        &policy_hooks,
        false,
    );
    // Policies may live in any namespace, kybern's own included.
    if let Some(w) = policy_validating["webhooks"].get_mut(0) {
        w["namespaceSelector"] = json!({});
        w["objectSelector"] = json!({});
        if let Some(m) = w.as_object_mut() {
            m.remove("matchConditions");
        }
    }
    let mut unresolved = b.unresolved;
    unresolved.sort();
    unresolved.dedup();
    Desired {
        validating: config(
            "ValidatingWebhookConfiguration",
            settings.names.validating_webhook_configuration(),
            &b.validating,
            false,
        ),
        mutating: config(
            "MutatingWebhookConfiguration",
            settings.names.mutating_webhook_configuration(),
            &b.mutating,
            true,
        ),
        policy_validating,
        unresolved,
        configured: b.configured,
    }
}

/// True when `live` already carries everything `desired` sets (fields the API server adds, such
/// as defaults and metadata, are ignored), so no write is needed.
pub fn up_to_date(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| up_to_date(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| up_to_date(lv, dv))
        }
        (l, d) => l == d,
    }
}

#[cfg(test)]
mod tests;
