//! The mutate rule handler: `patchStrategicMerge`, `patchesJson6902` and `foreach`, applied in
//! order to the resource, producing the patched resource and one rule status. Rules with
//! `targets` mutate existing resources instead: the targets come from the context provider, the
//! trigger stays as it is, and there is one result per target.

use crate::context::ContextProvider;
use crate::context_loader;
use crate::json_context::JsonContext;
use crate::json_patch;
use crate::matching;
use crate::policy::LabelSelector;
use crate::preconditions;
use crate::response::{RuleResult, RuleStatus, RuleType};
use crate::strategic_merge::{self, PatchOutcome};
use crate::variables::{self, SubstituteOptions};
use crate::wildcard;
use serde_json::{Map, Value};

/// What the handler needs about the rule being evaluated.
pub struct MutateInput<'a> {
    pub rule_name: &'a str,
    /// The raw `mutate` block.
    pub mutate: &'a Value,
    pub ctx: &'a JsonContext,
    pub opts: SubstituteOptions,
    pub provider: &'a dyn ContextProvider,
    pub policy_namespace: &'a str,
    pub preset: &'a Map<String, Value>,
    pub foreach_values: &'a Map<String, Value>,
    /// Whether the block holds `{{ }}` anywhere (decided at load): without, its patches are
    /// used as written, with no substitution walk per request.
    pub has_variables: bool,
}

fn sources<'a>(input: &MutateInput<'a>) -> context_loader::Sources<'a> {
    context_loader::Sources {
        provider: input.provider,
        policy_namespace: input.policy_namespace,
        preset: input.preset,
        opts: input.opts,
    }
}

/// The outcome of a mutate rule: status, message, and the resource after the rule.
pub struct MutateOutcome {
    pub status: RuleStatus,
    pub message: String,
    /// The mutated object, when the rule passed (changed it).
    pub patched: Option<Value>,
}

const MAX_FOREACH_DEPTH: usize = 8;

fn describe(resource: &Value) -> String {
    let kind = resource
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = resource
        .get("metadata")
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match resource
        .get("metadata")
        .and_then(|v| v.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) if !ns.is_empty() => format!("mutated {kind}/{name} in namespace {ns}"),
        _ => format!("mutated {kind}/{name}"),
    }
}

/// One patch step: `Ok(None)` when the patch does not apply (conditional anchors).
fn apply_patches(
    block: &Value,
    resource: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    has_variables: bool,
) -> Result<Option<Value>, String> {
    // Borrowed until a patch produces a new object.
    let mut current = std::borrow::Cow::Borrowed(resource);
    let mut applied = false;
    if let Some(overlay) = block.get("patchStrategicMerge").filter(|v| !v.is_null()) {
        let overlay = if has_variables {
            variables::substitute_all(overlay, ctx, opts, "mutate/patchStrategicMerge")
                .map_err(|e| format!("variable substitution failed: {e}"))?
        } else {
            overlay.clone()
        };
        match strategic_merge::apply_owned(&current, overlay).map_err(|e| e.to_string())? {
            PatchOutcome::Patched(v) => {
                current = std::borrow::Cow::Owned(v);
                applied = true;
            }
            PatchOutcome::Skip(_) => {}
        }
    }
    if let Some(ops) = block.get("patchesJson6902").filter(|v| !v.is_null()) {
        // A patch string is substituted as text before it is read, as Kyverno substitutes the
        // whole rule first: `value: {{ x }}` need not be quoted.
        let ops = match ops {
            Value::String(text) => {
                variables::substitute_string(text, ctx, opts, "mutate/patchesJson6902")
                    .map_err(|e| format!("variable substitution failed: {e}"))?
            }
            other => variables::substitute_all(other, ctx, opts, "mutate/patchesJson6902")
                .map_err(|e| format!("variable substitution failed: {e}"))?,
        };
        let ops = Value::Array(json_patch::parse_operations(&ops).map_err(|e| e.to_string())?);
        current =
            std::borrow::Cow::Owned(json_patch::apply(&current, &ops).map_err(|e| e.to_string())?);
        applied = true;
    }
    Ok(applied.then(|| current.into_owned()))
}

/// Runs a mutate rule on `resource`.
pub fn run(input: &MutateInput, resource: &Value) -> MutateOutcome {
    let result = if let Some(list) = input.mutate.get("foreach").and_then(Value::as_array) {
        foreach(input, list, resource, input.ctx, 0)
    } else {
        apply_patches(
            input.mutate,
            resource,
            input.ctx,
            input.opts,
            input.has_variables,
        )
    };
    match result {
        Err(e) => MutateOutcome {
            status: RuleStatus::Error,
            message: format!("failed to mutate {}: {e}", input.rule_name),
            patched: None,
        },
        Ok(Some(patched)) if &patched != resource => MutateOutcome {
            status: RuleStatus::Pass,
            message: describe(&patched),
            patched: Some(patched),
        },
        Ok(_) => MutateOutcome {
            status: RuleStatus::Skip,
            message: "no patches applied".into(),
            patched: None,
        },
    }
}

/// Applies each foreach entry's patches element by element; patches accumulate.
fn foreach(
    input: &MutateInput,
    list: &[Value],
    resource: &Value,
    ctx: &JsonContext,
    depth: usize,
) -> Result<Option<Value>, String> {
    if depth >= MAX_FOREACH_DEPTH {
        return Err("foreach nesting is too deep".into());
    }
    let mut current = resource.clone();
    let mut applied = false;
    for entry in list {
        let expr = variables::substitute_string(
            entry
                .get("list")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            ctx,
            input.opts,
            "mutate/foreach/list",
        )
        .map(|v| variables::to_text(&v))
        .map_err(|e| format!("failed to substitute foreach list: {e}"))?;
        let elements = match variables::evaluate(&expr, ctx, input.opts) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Null) | Err(crate::jmespath::JmespathError::NotFound { .. }) => continue,
            Ok(other) => vec![other],
            Err(e) => return Err(format!("failed to evaluate list {expr}: {e}")),
        };
        ctx.budget().charge_foreach(elements.len())?;
        // Strategic-merge patches run in reverse order by default, JSON patches in order.
        let descending = match entry.get("order").and_then(Value::as_str) {
            Some("Descending") => true,
            Some("Ascending") => false,
            _ => entry
                .get("patchStrategicMerge")
                .is_some_and(|p| !p.is_null()),
        };
        let mut order: Vec<usize> = (0..elements.len()).collect();
        if descending {
            order.reverse();
        }
        for index in order {
            let Some(element) = elements.get(index) else {
                continue;
            };
            let mut ectx = ctx.clone();
            ectx.set("request.object", &current);
            ectx.set("element", element);
            ectx.set("elementIndex", &Value::from(index));
            ectx.set(&format!("element{depth}"), element);
            ectx.set(&format!("elementIndex{depth}"), &Value::from(index));
            for (name, values) in input.foreach_values {
                if let Some(v) = values.as_array().and_then(|a| a.get(index)) {
                    ectx.set(name, v);
                }
            }
            let entries = entry
                .get("context")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            // The element's context entries load when its preconditions or patches read them.
            let step = context_loader::run_deferred(entries, &mut ectx, sources(input), |ectx| {
                if let Some(pre) = entry.get("preconditions").filter(|p| !p.is_null()) {
                    match preconditions::evaluate_block(pre, ectx, input.opts, "mutate/foreach") {
                        Ok(o) if o.met => {}
                        _ => return Ok(None),
                    }
                }
                match entry.get("foreach").and_then(Value::as_array) {
                    Some(nested) => foreach(input, nested, &current, ectx, depth + 1),
                    None => apply_patches(entry, &current, ectx, input.opts, true),
                }
            })
            .map_err(|e| format!("failed to load foreach context: {e}"))??;
            if let Some(next) = step {
                current = next;
                applied = true;
            }
        }
    }
    Ok(applied.then_some(current))
}

/// The rule's `targets`, when it mutates existing resources.
pub fn targets(mutate: &Value) -> Option<&[Value]> {
    mutate
        .get("targets")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .map(Vec::as_slice)
}

/// Which objects one `targets` entry selects, after variable substitution.
#[derive(Debug, Default, PartialEq)]
struct TargetSelector {
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
    uid: String,
    selector: Option<LabelSelector>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).map(variables::to_text).unwrap_or_default()
}

/// Substitutes variables in a target's selecting fields (not in its `context` or `preconditions`,
/// which are evaluated per target).
fn resolve_selector(
    spec: &Value,
    index: usize,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    policy_namespace: &str,
) -> Result<TargetSelector, String> {
    let mut fields = spec.as_object().cloned().unwrap_or_default();
    fields.remove("context");
    fields.remove("preconditions");
    let path = format!("mutate/targets/{index}");
    let resolved = variables::substitute_all(&Value::Object(fields), ctx, opts, &path)
        .map_err(|e| format!("failed to substitute variables in target[{index}]: {e}"))?;
    let selector = match resolved.get("selector").filter(|s| !s.is_null()) {
        Some(s) => Some(
            serde_json::from_value::<LabelSelector>(s.clone())
                .map_err(|e| format!("invalid selector in target[{index}]: {e}"))?,
        ),
        None => None,
    };
    // A namespaced policy only reaches targets in its own namespace.
    let namespace = if policy_namespace.is_empty() {
        text(&resolved, "namespace")
    } else {
        policy_namespace.to_string()
    };
    Ok(TargetSelector {
        api_version: text(&resolved, "apiVersion"),
        kind: text(&resolved, "kind"),
        name: text(&resolved, "name"),
        namespace,
        uid: text(&resolved, "uid"),
        selector,
    })
}

fn meta<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Kyverno's target match: an empty pattern matches anything; a namespace pattern is ignored for
/// cluster-scoped objects (they are fetched by name alone).
fn target_matches(sel: &TargetSelector, obj: &Value) -> bool {
    let ns = meta(obj, "namespace");
    let ns_ok = sel.namespace.is_empty() || ns.is_empty() || wildcard::matches(&sel.namespace, ns);
    let name_ok = sel.name.is_empty() || wildcard::matches(&sel.name, meta(obj, "name"));
    let uid_ok = sel.uid.is_empty() || meta(obj, "uid") == sel.uid;
    let labels_ok = sel.selector.as_ref().is_none_or(|s| {
        let labels = obj
            .get("metadata")
            .and_then(|v| v.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), variables::to_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        matching::selector_matches(s, &labels)
    });
    ns_ok && name_ok && uid_ok && labels_ok
}

/// The objects a target selects, from the provider. A provider without such objects (the CLI
/// without `targetResources`) selects none.
fn load_targets(
    sel: &TargetSelector,
    provider: &dyn ContextProvider,
) -> Result<Vec<Value>, String> {
    let exact_ns = !sel.namespace.is_empty() && !wildcard::contains_wildcard(&sel.namespace);
    let list_ns = if exact_ns { sel.namespace.as_str() } else { "" };
    let objects = match provider.list(&sel.api_version, &sel.kind, list_ns) {
        Ok(objects) => objects,
        Err(crate::context::ProviderError::Unavailable { .. }) => Vec::new(),
        Err(e) => {
            return Err(format!(
                "failed to list {} {}: {e}",
                sel.api_version, sel.kind
            ));
        }
    };
    Ok(objects
        .into_iter()
        .filter(|o| target_matches(sel, o))
        .collect())
}

fn existing_result(rule: &str, status: RuleStatus, message: impl Into<String>) -> RuleResult {
    RuleResult::new(rule, RuleType::Mutation, status, message)
}

/// Runs a mutate-existing rule: each target is put in the context as `target` (the trigger stays
/// `request.object`), its `context` and `preconditions` are evaluated, and the rule's patches are
/// applied to it. One result per target; a passing result carries the patched target.
pub fn run_existing(input: &MutateInput, targets: &[Value]) -> Vec<RuleResult> {
    let mut results = Vec::new();
    for (index, spec) in targets.iter().enumerate() {
        let objects = resolve_selector(spec, index, input.ctx, input.opts, input.policy_namespace)
            .and_then(|sel| load_targets(&sel, input.provider));
        let objects = match objects {
            Ok(o) => o,
            Err(e) => {
                results.push(existing_result(input.rule_name, RuleStatus::Error, e));
                continue;
            }
        };
        for object in objects {
            results.push(run_on_target(input, spec, &object));
        }
    }
    results
}

fn run_on_target(input: &MutateInput, spec: &Value, object: &Value) -> RuleResult {
    let rule = input.rule_name;
    let mut ctx = input.ctx.clone();
    ctx.set("target", object);
    let entries = spec
        .get("context")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    // The target's context entries load when its preconditions or patches read them.
    let step = context_loader::run_deferred(entries, &mut ctx, sources(input), |ctx| {
        if let Some(pre) = spec.get("preconditions").filter(|p| !p.is_null()) {
            match preconditions::evaluate_block(
                pre,
                ctx,
                input.opts,
                "mutate/targets/preconditions",
            ) {
                Err(e) => {
                    return existing_result(
                        rule,
                        RuleStatus::Error,
                        format!("failed to evaluate preconditions: {e}"),
                    );
                }
                Ok(o) if !o.met => {
                    let mut msg = "preconditions not met".to_string();
                    if !o.messages.is_empty() {
                        msg.push_str("; ");
                        msg.push_str(&o.messages.join("; "));
                    }
                    return existing_result(rule, RuleStatus::Skip, msg);
                }
                Ok(_) => {}
            }
        }
        let target_input = MutateInput { ctx, ..*input };
        let out = run(&target_input, object);
        let mut r = existing_result(rule, out.status, out.message);
        r.patched_target = out.patched;
        r
    });
    step.unwrap_or_else(|e| {
        existing_result(
            rule,
            RuleStatus::Error,
            format!("failed to load context: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::context::{ApiCall, ContextProvider, ImageData, Labels, NoProvider, ProviderError};
    use crate::engine::{Engine, PolicyContext};
    use crate::policy::compile_policy;
    use crate::request::AdmissionRequest;
    use crate::response::RuleStatus;
    use serde_json::{Value, json};

    /// Existing objects for targets.
    struct Objects(Vec<Value>);

    impl ContextProvider for Objects {
        fn resource(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
        fn list(
            &self,
            api_version: &str,
            kind: &str,
            namespace: &str,
        ) -> Result<Vec<Value>, ProviderError> {
            Ok(self
                .0
                .iter()
                .filter(|o| {
                    o["apiVersion"] == api_version
                        && o["kind"] == kind
                        && (namespace.is_empty() || o["metadata"]["namespace"] == namespace)
                })
                .cloned()
                .collect())
        }
        fn config_map(&self, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
        fn api_call(&self, _: &ApiCall) -> Result<Value, ProviderError> {
            Err(ProviderError::Failed("no api".into()))
        }
        fn namespace_labels(&self, _: &str) -> Result<Option<Labels>, ProviderError> {
            Ok(None)
        }
        fn image_data(&self, _: &str) -> Result<ImageData, ProviderError> {
            Err(ProviderError::Failed("no images".into()))
        }
        fn global_context(&self, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
    }

    fn secret(ns: &str, name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": format!("{ns}-{name}")}})
    }

    fn policy(namespace: Option<&str>, target: Value, patch: Value) -> Value {
        let mut meta = json!({"name": "p"});
        if let Some(ns) = namespace {
            meta["namespace"] = json!(ns);
        }
        json!({
            "apiVersion": "kyverno.io/v1",
            "kind": if namespace.is_some() { "Policy" } else { "ClusterPolicy" },
            "metadata": meta,
            "spec": {"rules": [{
                "name": "r",
                "match": {"any": [{"resources": {"kinds": ["ConfigMap"]}}]},
                "mutate": {"targets": [target], "patchStrategicMerge": patch}
            }]}
        })
    }

    fn label_patch() -> Value {
        json!({"metadata": {"labels": {"foo": "bar"}}})
    }

    /// (statuses, patched target namespace/name pairs) of one run.
    fn run_case(
        policy_doc: &Value,
        provider: &dyn ContextProvider,
    ) -> (Vec<RuleStatus>, Vec<Value>) {
        let policy = compile_policy(policy_doc).unwrap();
        let trigger = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "secret-a", "namespace": "staging"}, "data": {"want": "a"}});
        let request = AdmissionRequest {
            object: trigger.clone().into(),
            ..AdmissionRequest::default()
        };
        let pctx = PolicyContext::new(&request);
        let resp = Engine::new(provider).mutate(&policy, &pctx, &[], &Default::default());
        assert_eq!(
            *resp.patched_resource, trigger,
            "the trigger is never patched"
        );
        let statuses = resp.rules.iter().map(|r| r.status).collect();
        let patched = resp
            .rules
            .iter()
            .filter_map(|r| r.patched_target.clone())
            .collect();
        (statuses, patched)
    }

    #[test]
    fn mutate_existing_targets() {
        let objects = Objects(vec![
            secret("staging", "secret-a", json!({"app": "x"})),
            secret("staging", "secret-b", json!({"app": "y"})),
            secret("prod", "secret-a", json!({"app": "x"})),
        ]);
        let pass = RuleStatus::Pass;
        let labelled =
            |ns: &str, name: &str, app: &str| secret(ns, name, json!({"app": app, "foo": "bar"}));
        // (name, policy, provider, wanted statuses, wanted patched targets)
        type Case<'a> = (
            &'a str,
            Value,
            &'a dyn ContextProvider,
            Vec<RuleStatus>,
            Vec<Value>,
        );
        let cases: Vec<Case> = vec![
            (
                "exact name and namespace",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "secret-a", "namespace": "staging"}),
                    label_patch(),
                ),
                &objects,
                vec![pass],
                vec![labelled("staging", "secret-a", "x")],
            ),
            (
                "no namespace selects every namespace",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "secret-a"}),
                    label_patch(),
                ),
                &objects,
                vec![pass, pass],
                vec![
                    labelled("staging", "secret-a", "x"),
                    labelled("prod", "secret-a", "x"),
                ],
            ),
            (
                "wildcard name",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "secret-*", "namespace": "st*"}),
                    label_patch(),
                ),
                &objects,
                vec![pass, pass],
                vec![
                    labelled("staging", "secret-a", "x"),
                    labelled("staging", "secret-b", "y"),
                ],
            ),
            (
                "variables from the trigger in the name",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "{{request.object.metadata.name}}", "namespace": "prod"}),
                    label_patch(),
                ),
                &objects,
                vec![pass],
                vec![labelled("prod", "secret-a", "x")],
            ),
            (
                "label selector",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "selector": {"matchLabels": {"app": "y"}}}),
                    label_patch(),
                ),
                &objects,
                vec![pass],
                vec![labelled("staging", "secret-b", "y")],
            ),
            (
                "uid",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "uid": "prod-secret-a"}),
                    label_patch(),
                ),
                &objects,
                vec![pass],
                vec![labelled("prod", "secret-a", "x")],
            ),
            (
                "target preconditions skip a target",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "namespace": "staging",
                    "preconditions": {"all": [{"key": "{{target.metadata.labels.app}}", "operator": "Equals", "value": "y"}]}}),
                    label_patch(),
                ),
                &objects,
                vec![RuleStatus::Skip, pass],
                vec![labelled("staging", "secret-b", "y")],
            ),
            (
                "@ reads the target, request.object the trigger",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "secret-b"}),
                    json!({"metadata": {"labels": {"app": "{{@}}-copy", "from": "{{request.object.data.want}}"}}}),
                ),
                &objects,
                vec![pass],
                vec![secret(
                    "staging",
                    "secret-b",
                    json!({"app": "y-copy", "from": "a"}),
                )],
            ),
            (
                "a namespaced policy only reaches its namespace",
                policy(
                    Some("staging"),
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "secret-a", "namespace": "prod"}),
                    label_patch(),
                ),
                &objects,
                vec![pass],
                vec![labelled("staging", "secret-a", "x")],
            ),
            (
                "nothing to patch is a skip",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "secret-a", "namespace": "staging"}),
                    json!({"metadata": {"labels": {"app": "x"}}}),
                ),
                &objects,
                vec![RuleStatus::Skip],
                vec![],
            ),
            (
                "no objects, no results",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "*"}),
                    label_patch(),
                ),
                &NoProvider,
                vec![],
                vec![],
            ),
            (
                "an unresolvable variable is an error",
                policy(
                    None,
                    json!({"apiVersion": "v1", "kind": "Secret", "name": "{{missing.value}}"}),
                    label_patch(),
                ),
                &objects,
                vec![RuleStatus::Error],
                vec![],
            ),
        ];
        for (name, doc, provider, statuses, patched) in cases {
            let (got_statuses, got_patched) = run_case(&doc, provider);
            assert_eq!(got_statuses, statuses, "{name}");
            assert_eq!(got_patched, patched, "{name}");
        }
    }

    #[test]
    fn a_foreach_list_beyond_the_element_limit_is_a_rule_error() {
        let containers: Vec<Value> = (0..=crate::json_context::MAX_FOREACH_ELEMENTS)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect();
        let policy = compile_policy(&json!({
            "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
            "spec": {"rules": [{
                "name": "r",
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "mutate": {"foreach": [{
                    "list": "request.object.spec.containers",
                    "patchesJson6902": "- op: add\n  path: /metadata/labels\n  value: {a: b}"
                }]}
            }]}
        }))
        .unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "default"}, "spec": {"containers": containers}});
        let request = AdmissionRequest {
            object: pod.into(),
            ..AdmissionRequest::default()
        };
        let pctx = PolicyContext::new(&request);
        let resp = Engine::new(&NoProvider).mutate(&policy, &pctx, &[], &Default::default());
        let rule = resp.rules.first().unwrap();
        assert_eq!(rule.status, RuleStatus::Error);
        assert!(
            rule.message
                .contains("foreach would visit more than 100000 elements in this request"),
            "{}",
            rule.message
        );
    }
}
