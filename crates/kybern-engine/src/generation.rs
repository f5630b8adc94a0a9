//! The generate rule handler: the objects a rule wants to exist (from `data`, `clone`,
//! `cloneList` or `foreach`), with variables substituted. Creating them is the caller's job.

use crate::context::{ContextProvider, ProviderError};
use crate::json_context::JsonContext;
use crate::matching::selector_matches;
use crate::policy::LabelSelector;
use crate::preconditions;
use crate::variables::{self, SubstituteOptions};
use serde_json::{Map, Value, json};

/// Metadata fields that belong to the source object, not to a copy of it.
const SERVER_FIELDS: [&str; 7] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "ownerReferences",
];

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A copy of `source` renamed into `namespace`/`name`, without server-owned metadata.
fn copy_as(source: &Value, name: &str, namespace: &str) -> Value {
    let mut obj = source.clone();
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        for f in SERVER_FIELDS {
            meta.remove(f);
        }
        meta.insert("name".into(), Value::String(name.to_string()));
        if namespace.is_empty() {
            meta.remove("namespace");
        } else {
            meta.insert("namespace".into(), Value::String(namespace.to_string()));
        }
    }
    if let Value::Object(m) = &mut obj {
        m.remove("status");
    }
    obj
}

/// The objects one (already substituted) generate block describes.
fn objects_of(
    g: &Value,
    provider: &dyn ContextProvider,
    policy_namespace: &str,
) -> Result<Vec<Value>, String> {
    let api_version = text(g, "apiVersion");
    let kind = text(g, "kind");
    let name = text(g, "name");
    let mut namespace = text(g, "namespace");
    if namespace.is_empty() && !policy_namespace.is_empty() {
        namespace = policy_namespace.to_string();
    }
    if let Some(data) = g.get("data").filter(|d| !d.is_null()) {
        let mut obj = match data {
            Value::Object(m) => m.clone(),
            _ => return Err("generate.data must be an object".into()),
        };
        obj.insert("apiVersion".into(), Value::String(api_version));
        obj.insert("kind".into(), Value::String(kind));
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert("name".into(), Value::String(name));
            if !namespace.is_empty() {
                meta.insert("namespace".into(), Value::String(namespace));
            }
        }
        return Ok(vec![Value::Object(obj)]);
    }
    if let Some(clone) = g.get("clone").filter(|c| !c.is_null()) {
        let src_ns = text(clone, "namespace");
        let src_name = text(clone, "name");
        let source = match provider.resource(&api_version, &kind, &src_ns, &src_name) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(format!("clone source {kind} {src_ns}/{src_name} not found"));
            }
            Err(ProviderError::Unavailable { what, reason }) => {
                return Err(format!(
                    "clone source {kind} {src_ns}/{src_name} is not available ({what}: {reason})"
                ));
            }
            Err(e) => return Err(format!("failed to read clone source: {e}")),
        };
        return Ok(vec![copy_as(&source, &name, &namespace)]);
    }
    if let Some(list) = g.get("cloneList").filter(|c| !c.is_null()) {
        let src_ns = text(list, "namespace");
        let selector: Option<LabelSelector> = match list.get("selector") {
            Some(s) if !s.is_null() => Some(
                serde_json::from_value(s.clone())
                    .map_err(|e| format!("invalid cloneList.selector: {e}"))?,
            ),
            _ => None,
        };
        let mut out = Vec::new();
        for k in list
            .get("kinds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            // Kinds are written `v1/Secret` or `apps/v1/Deployment`.
            let (api_version, kind) = match k.rsplit_once('/') {
                Some((av, kd)) => (av.to_string(), kd.to_string()),
                None => ("v1".to_string(), k.to_string()),
            };
            let items = provider
                .list(&api_version, &kind, &src_ns)
                .map_err(|e| format!("failed to list clone sources {k}: {e}"))?;
            for item in items {
                if let Some(sel) = &selector
                    && !selector_matches(sel, &crate::objects::labels(&item))
                {
                    continue;
                }
                let item_name = crate::objects::at(&item, &["metadata", "name"])
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                out.push(copy_as(&item, &item_name, &namespace));
            }
        }
        return Ok(out);
    }
    Err("generate needs one of data, clone, cloneList or foreach".into())
}

/// Runs a generate rule: `Ok(objects)` is the set of resources the rule wants to exist.
pub fn run(
    generate: &Value,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    provider: &dyn ContextProvider,
    policy_namespace: &str,
) -> Result<Vec<Value>, String> {
    if let Some(list) = generate.get("foreach").and_then(Value::as_array) {
        let mut out = Vec::new();
        for entry in list {
            let expr = variables::substitute_string(
                entry
                    .get("list")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                ctx,
                opts,
                "generate/foreach/list",
            )
            .map(|v| variables::to_text(&v))
            .map_err(|e| format!("failed to substitute foreach list: {e}"))?;
            let elements = match variables::evaluate(&expr, ctx, opts) {
                Ok(Value::Array(a)) => a,
                Ok(Value::Null) | Err(crate::jmespath::JmespathError::NotFound { .. }) => continue,
                Ok(other) => vec![other],
                Err(e) => return Err(format!("failed to evaluate list {expr}: {e}")),
            };
            for (index, element) in elements.iter().enumerate() {
                let mut ectx = ctx.clone();
                ectx.set("element", element);
                ectx.set("elementIndex", &json!(index));
                if let Some(pre) = entry.get("preconditions").filter(|p| !p.is_null()) {
                    match preconditions::evaluate_block(pre, &ectx, opts, "generate/foreach") {
                        Ok(o) if o.met => {}
                        _ => continue,
                    }
                }
                let mut target = entry.clone();
                if let Value::Object(m) = &mut target {
                    m.remove("list");
                    m.remove("preconditions");
                    m.remove("context");
                }
                let target = variables::substitute_all(&target, &ectx, opts, "generate/foreach")
                    .map_err(|e| format!("variable substitution failed: {e}"))?;
                out.extend(objects_of(&target, provider, policy_namespace)?);
            }
        }
        return Ok(out);
    }
    let substituted = variables::substitute_all(generate, ctx, opts, "generate")
        .map_err(|e| format!("variable substitution failed: {e}"))?;
    objects_of(&substituted, provider, policy_namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoProvider;

    #[test]
    fn data_becomes_a_named_object() {
        let ctx =
            JsonContext::new(&json!({"request": {"object": {"metadata": {"name": "team-a"}}}}));
        let g = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "defaults",
                       "namespace": "{{request.object.metadata.name}}", "data": {"data": {"k": "v"}}});
        let out = run(&g, &ctx, SubstituteOptions::default(), &NoProvider, "").unwrap();
        assert_eq!(
            out,
            vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "defaults", "namespace": "team-a"}, "data": {"k": "v"}})]
        );
    }

    #[test]
    fn clone_without_cluster_access_is_an_error() {
        let g = json!({"apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": "n",
                       "clone": {"namespace": "default", "name": "s"}});
        let err = run(
            &g,
            &JsonContext::default(),
            SubstituteOptions::default(),
            &NoProvider,
            "",
        )
        .unwrap_err();
        assert!(err.contains("not available"), "{err}");
    }
}
