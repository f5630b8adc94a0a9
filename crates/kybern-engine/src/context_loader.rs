//! Loading a rule's `context` entries into the JSON context (variable, configMap, apiCall,
//! globalReference, imageRegistry), through the [`ContextProvider`].
//!
//! Entries are deferred as Kyverno defers them (`pkg/engine/factories/contextloaderfactory.go`,
//! `pkg/engine/context/deferred.go`): an entry is loaded the first time an expression names it,
//! so an entry whose value is never read is never loaded and cannot fail the rule.

use crate::context::{ApiCall, ContextProvider, ProviderError};
use crate::json_context::JsonContext;
use crate::variables::{self, SubstituteOptions};
use serde_json::{Map, Value, json};

/// Where entries load from.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub provider: &'a dyn ContextProvider,
    pub policy_namespace: &'a str,
    /// Values supplied by the caller (e.g. a test's values file): entries of these names are not
    /// loaded, the supplied value wins.
    pub preset: &'a Map<String, Value>,
    pub opts: SubstituteOptions,
}

fn entry_name(entry: &Value) -> &str {
    entry
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Runs `step` with `entries` pending in `ctx`. When the step's expressions named a pending entry,
/// that entry is loaded (its own expressions may name earlier entries, loaded the same way) and
/// the step runs again, so the result is the one of an evaluation that loads each entry at its
/// first use. `Err` is the load failure of an entry the step needed.
pub fn run_deferred<T>(
    entries: &[Value],
    ctx: &mut JsonContext,
    src: Sources,
    mut step: impl FnMut(&JsonContext) -> T,
) -> Result<T, String> {
    if entries.is_empty() {
        return Ok(step(ctx));
    }
    let pending = entries
        .iter()
        .enumerate()
        .map(|(pos, e)| (entry_name(e).to_string(), pos))
        .filter(|(name, _)| !name.is_empty() && !src.preset.contains_key(name))
        .collect();
    ctx.push_deferred(pending);
    // Each round loads one more entry, so the step runs at most once per entry, plus once.
    for _ in 0..=entries.len() {
        let out = step(ctx);
        let Some(pos) = ctx.requested_entry() else {
            ctx.pop_deferred();
            return Ok(out);
        };
        if let Err(e) = load_deferred(entries, pos, ctx, src, 0) {
            ctx.pop_deferred();
            return Err(e);
        }
    }
    ctx.pop_deferred();
    Err("context entries did not settle".into())
}

/// Loads the entry at `pos` into `ctx` (whose innermost pending scope holds `entries`), first
/// loading the earlier entries its expressions name.
fn load_deferred(
    entries: &[Value],
    pos: usize,
    ctx: &mut JsonContext,
    src: Sources,
    depth: usize,
) -> Result<(), String> {
    let Some(entry) = entries.get(pos) else {
        ctx.retain_deferred(|p| p != pos);
        return Ok(());
    };
    let name = entry_name(entry);
    for _ in 0..=pos {
        // The entry sees the entries before it, as when they load in order.
        let mut own = ctx.clone();
        own.retain_deferred(|p| p < pos);
        let loaded = load_entry(
            entry,
            name,
            &own,
            src.provider,
            src.policy_namespace,
            src.opts,
        );
        match own.requested_entry() {
            Some(earlier) if earlier < pos && depth < entries.len() => {
                load_deferred(entries, earlier, ctx, src, depth + 1)?;
            }
            _ => {
                if let Some(value) = loaded? {
                    ctx.budget().charge_context(name, &value)?;
                    ctx.set(name, &value);
                }
                ctx.retain_deferred(|p| p != pos);
                return Ok(());
            }
        }
    }
    Err(format!("context entry {name} did not settle"))
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
        // Kyverno substitutes the jmesPath first and needs text: a `{{ }}` that resolves to an
        // object, list or number fails the entry, whatever its default.
        let jmes_path = match var.get("jmesPath") {
            None => None,
            Some(j) => match variables::substitute_all(j, ctx, opts, &path)
                .map_err(|e| format!("failed to substitute variable {name}: {e}"))?
            {
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s),
                _ => {
                    return Err(format!(
                        "failed to load variable {name}: jmespath value must be a string"
                    ));
                }
            },
        };
        let result = match (value, jmes_path) {
            (Some(v), Some(expr)) => variables::compiled(&expr)
                .and_then(|e| e.search(&v))
                .map_err(|e| format!("failed to apply jmesPath {expr:?}: {e}")),
            (Some(v), None) => Ok(v),
            (None, Some(expr)) => variables::evaluate(&expr, ctx, opts).map_err(|e| e.to_string()),
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
        if !policy_namespace.is_empty() && ns != policy_namespace {
            return Err(format!(
                "failed to load configMap {ns}/{cm_name}: a Policy in namespace {policy_namespace} reads only its own namespace"
            ));
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
        if !is_service && !policy_namespace.is_empty() && !in_namespace(&url, policy_namespace) {
            return Err(format!(
                "failed to load apiCall {name}: a Policy in namespace {policy_namespace} reads only its own namespace, not {url}"
            ));
        }
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

/// True when an API path reads inside `namespace` (`/api/v1/namespaces/<ns>/...`,
/// `/apis/<group>/<version>/namespaces/<ns>/...`).
fn in_namespace(url: &str, namespace: &str) -> bool {
    let path = url.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // Dot segments, escapes and fragments can name another namespace once the client sending the
    // request normalises the URL: a path holding any of them never counts as inside.
    if parts
        .iter()
        .any(|p| *p == "." || *p == ".." || p.contains(['%', '\\', '#']))
    {
        return false;
    }
    let rest = match parts.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, ["namespaces", ns, _, ..] if *ns == namespace)
}

#[cfg(test)]
mod tests {
    use super::in_namespace;

    #[test]
    fn only_paths_inside_the_namespace_count_as_inside() {
        assert!(in_namespace("/api/v1/namespaces/team/configmaps", "team"));
        assert!(in_namespace(
            "/apis/apps/v1/namespaces/team/deployments/x?limit=1",
            "team"
        ));
        assert!(!in_namespace("/api/v1/namespaces/other/configmaps", "team"));
        assert!(!in_namespace("/api/v1/namespaces/team", "team"));
        assert!(!in_namespace("/api/v1/nodes", "team"));
        assert!(!in_namespace("/apis/apps/v1/deployments", "team"));
        for escape in [
            "/api/v1/namespaces/team/../../namespaces/other/secrets",
            "/api/v1/namespaces/team/configmaps/../../../other/secrets",
            "/api/v1/namespaces/team/%2e%2e/%2E%2e/namespaces/other/secrets",
            "/api/v1/namespaces/team/configmaps/..%2f..%2fother",
            "/api/v1/namespaces/team/configmaps#/../../other/secrets",
            "/api/v1/namespaces/team/./configmaps",
            "/api/v1/namespaces/team/configmaps\\..\\..\\other",
        ] {
            assert!(!in_namespace(escape, "team"), "{escape}");
        }
    }
}
