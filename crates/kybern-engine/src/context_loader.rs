//! Loading a rule's `context` entries into the JSON context (variable, configMap, apiCall,
//! globalReference, imageRegistry), through the [`ContextProvider`].

use crate::context::{ApiCall, ContextProvider, ProviderError};
use crate::json_context::JsonContext;
use crate::variables::{self, SubstituteOptions};
use serde_json::{Map, Value, json};

/// Loads the entries in order; later entries may use earlier ones.
/// Names already present in `preset` (values supplied by the caller, e.g. a test's values file) are
/// not loaded again: the supplied value wins.
pub fn load_entries(
    entries: &[Value],
    ctx: &mut JsonContext,
    provider: &dyn ContextProvider,
    policy_namespace: &str,
    preset: &Map<String, Value>,
    opts: SubstituteOptions,
) -> Result<(), String> {
    for entry in entries {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if preset.contains_key(name) {
            continue;
        }
        if let Some(value) = load_entry(entry, name, ctx, provider, policy_namespace, opts)? {
            ctx.set(name, &value);
        }
    }
    Ok(())
}

fn subst_str(
    v: Option<&Value>,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<String, String> {
    match v {
        None => Ok(String::new()),
        Some(v) => variables::substitute_all(v, ctx, opts, path)
            .map(|v| variables::to_text(&v))
            .map_err(|e| e.to_string()),
    }
}

fn apply_jmespath(
    value: Value,
    jmes: Option<&Value>,
    ctx: &JsonContext,
    opts: SubstituteOptions,
    path: &str,
) -> Result<Value, String> {
    let expr = subst_str(jmes, ctx, opts, path)?;
    if expr.is_empty() {
        return Ok(value);
    }
    variables::compiled(&expr)
        .and_then(|e| e.search(&value))
        .map_err(|e| format!("failed to apply jmesPath {expr:?}: {e}"))
}

/// `Ok(None)`: the source is not available here (e.g. the CLI without cluster access), as Kyverno's
/// CLI silently leaves such entries unloaded.
fn load_entry(
    entry: &Value,
    name: &str,
    ctx: &JsonContext,
    provider: &dyn ContextProvider,
    policy_namespace: &str,
    opts: SubstituteOptions,
) -> Result<Option<Value>, String> {
    let path = format!("context/{name}");
    if let Some(var) = entry.get("variable") {
        let default = var.get("default");
        let value = match var.get("value") {
            Some(v) => Some(
                variables::substitute_all(v, ctx, opts, &path)
                    .map_err(|e| format!("failed to substitute variable {name}: {e}"))?,
            ),
            None => None,
        };
        let result = match (value, var.get("jmesPath")) {
            (Some(v), Some(j)) => apply_jmespath(v, Some(j), ctx, opts, &path),
            (Some(v), None) => Ok(v),
            (None, Some(j)) => {
                let expr = subst_str(Some(j), ctx, opts, &path)?;
                variables::evaluate(&expr, ctx, opts).map_err(|e| e.to_string())
            }
            (None, None) => Ok(Value::Null),
        };
        let value = match (result, default) {
            (Ok(Value::Null) | Err(_), Some(d)) => {
                variables::substitute_all(d, ctx, opts, &path).map_err(|e| e.to_string())?
            }
            (Ok(v), _) => v,
            (Err(e), None) => return Err(format!("failed to load variable {name}: {e}")),
        };
        if value.is_null() {
            return Err(format!("failed to load variable {name}: the value is null"));
        }
        return Ok(Some(value));
    }
    if let Some(cm) = entry.get("configMap") {
        let cm_name = subst_str(cm.get("name"), ctx, opts, &path)?;
        let mut ns = subst_str(cm.get("namespace"), ctx, opts, &path)?;
        if ns.is_empty() {
            ns = if policy_namespace.is_empty() {
                "default".into()
            } else {
                policy_namespace.into()
            };
        }
        return match provider.config_map(&ns, &cm_name) {
            Ok(Some(obj)) => Ok(Some(json!({
                "data": obj.get("data").cloned().unwrap_or(Value::Object(Map::new())),
                "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
            }))),
            Ok(None) => Err(format!(
                "failed to load configMap {ns}/{cm_name}: not found"
            )),
            Err(ProviderError::Unavailable { .. }) => Ok(None),
            Err(e) => Err(format!("failed to load configMap {ns}/{cm_name}: {e}")),
        };
    }
    if let Some(call) = entry.get("apiCall") {
        let (url, is_service) = match call.get("service") {
            Some(svc) => (subst_str(svc.get("url"), ctx, opts, &path)?, true),
            None => (subst_str(call.get("urlPath"), ctx, opts, &path)?, false),
        };
        let body = match call.get("data").and_then(Value::as_array) {
            Some(items) => {
                let mut m = Map::new();
                for item in items {
                    let key = item.get("key").and_then(Value::as_str).unwrap_or_default();
                    let v = variables::substitute_all(
                        item.get("value").unwrap_or(&Value::Null),
                        ctx,
                        opts,
                        &path,
                    )
                    .map_err(|e| e.to_string())?;
                    m.insert(key.to_string(), v);
                }
                Some(Value::Object(m))
            }
            None => None,
        };
        let request = ApiCall {
            url,
            is_service,
            method: call
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("GET")
                .to_string(),
            body,
            cel_http: false,
        };
        let default = call.get("default");
        return match provider.api_call(&request) {
            Ok(v) => apply_jmespath(v, call.get("jmesPath"), ctx, opts, &path).map(Some),
            Err(ProviderError::Unavailable { .. }) => Ok(None),
            Err(e) => match default {
                Some(d) => Ok(Some(d.clone())),
                None => Err(format!("failed to load apiCall {name}: {e}")),
            },
        };
    }
    if let Some(gref) = entry.get("globalReference") {
        let gname = subst_str(gref.get("name"), ctx, opts, &path)?;
        return match provider.global_context(&gname) {
            Ok(Some(v)) => apply_jmespath(v, gref.get("jmesPath"), ctx, opts, &path).map(Some),
            Ok(None) => Err(format!("global context entry {gname} not found")),
            Err(ProviderError::Unavailable { .. }) => Ok(None),
            Err(e) => Err(format!("failed to load globalReference {gname}: {e}")),
        };
    }
    if let Some(reg) = entry.get("imageRegistry") {
        let reference = subst_str(reg.get("reference"), ctx, opts, &path)?;
        return match provider.image_data(&reference) {
            Ok(data) => apply_jmespath(data.data, reg.get("jmesPath"), ctx, opts, &path).map(Some),
            Err(ProviderError::Unavailable { .. }) => Ok(None),
            Err(e) => Err(format!("failed to load image data for {reference}: {e}")),
        };
    }
    Err(format!("context entry {name} has no source"))
}
