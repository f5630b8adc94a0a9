//! The mutate rule handler: `patchStrategicMerge`, `patchesJson6902` and `foreach`, applied in
//! order to the resource, producing the patched resource and one rule status.

use crate::context::ContextProvider;
use crate::context_loader;
use crate::json_context::JsonContext;
use crate::json_patch;
use crate::preconditions;
use crate::response::RuleStatus;
use crate::strategic_merge::{self, PatchOutcome};
use crate::variables::{self, SubstituteOptions};
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
}

/// The outcome of a mutate rule: status, message, and the resource after the rule.
pub struct MutateOutcome {
    pub status: RuleStatus,
    pub message: String,
    pub patched: Value,
}

const MAX_FOREACH_DEPTH: usize = 8;

fn describe(resource: &Value) -> String {
    let kind = resource
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = resource
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match resource
        .pointer("/metadata/namespace")
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
) -> Result<Option<Value>, String> {
    let mut current = resource.clone();
    let mut applied = false;
    if let Some(overlay) = block.get("patchStrategicMerge").filter(|v| !v.is_null()) {
        let overlay = variables::substitute_all(overlay, ctx, opts, "mutate/patchStrategicMerge")
            .map_err(|e| format!("variable substitution failed: {e}"))?;
        match strategic_merge::apply(&current, &overlay).map_err(|e| e.to_string())? {
            PatchOutcome::Patched(v) => {
                current = v;
                applied = true;
            }
            PatchOutcome::Skip(_) => {}
        }
    }
    if let Some(ops) = block.get("patchesJson6902").filter(|v| !v.is_null()) {
        let ops = json_patch::parse_operations(ops).map_err(|e| e.to_string())?;
        // Variables are allowed in values but not in paths (checked at load).
        let ops =
            variables::substitute_all(&Value::Array(ops), ctx, opts, "mutate/patchesJson6902")
                .map_err(|e| format!("variable substitution failed: {e}"))?;
        current = json_patch::apply(&current, &ops).map_err(|e| e.to_string())?;
        applied = true;
    }
    Ok(applied.then_some(current))
}

/// Runs a mutate rule on `resource`.
pub fn run(input: &MutateInput, resource: &Value) -> MutateOutcome {
    let result = if let Some(list) = input.mutate.get("foreach").and_then(Value::as_array) {
        foreach(input, list, resource, input.ctx, 0)
    } else {
        apply_patches(input.mutate, resource, input.ctx, input.opts)
    };
    match result {
        Err(e) => MutateOutcome {
            status: RuleStatus::Error,
            message: format!("failed to mutate {}: {e}", input.rule_name),
            patched: resource.clone(),
        },
        Ok(Some(patched)) if &patched != resource => MutateOutcome {
            status: RuleStatus::Pass,
            message: describe(&patched),
            patched,
        },
        Ok(_) => MutateOutcome {
            status: RuleStatus::Skip,
            message: "no patches applied".into(),
            patched: resource.clone(),
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
            if let Some(entries) = entry.get("context").and_then(Value::as_array) {
                context_loader::load_entries(
                    entries,
                    &mut ectx,
                    input.provider,
                    input.policy_namespace,
                    input.preset,
                    input.opts,
                )
                .map_err(|e| format!("failed to load foreach context: {e}"))?;
            }
            if let Some(pre) = entry.get("preconditions").filter(|p| !p.is_null()) {
                match preconditions::evaluate_block(pre, &ectx, input.opts, "mutate/foreach") {
                    Ok(o) if o.met => {}
                    _ => continue,
                }
            }
            let step = match entry.get("foreach").and_then(Value::as_array) {
                Some(nested) => foreach(input, nested, &current, &ectx, depth + 1)?,
                None => apply_patches(entry, &current, &ectx, input.opts)?,
            };
            if let Some(next) = step {
                current = next;
                applied = true;
            }
        }
    }
    Ok(applied.then_some(current))
}
