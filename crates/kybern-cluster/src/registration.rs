//! Leader work on the API: the webhook configurations written with server-side apply only when
//! they differ from the live ones, never from a store that has not synced; policy status written
//! only where it changed; and the removal of kybern's webhook configurations (uninstall).

use crate::error::ClusterError;
use crate::names::Names;
use crate::status::{self, PolicyState};
use crate::watch::Cache;
use crate::webhooks::{self, Desired, KindResolver, WebhookSettings};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kybern_webhook::store::LoadStatus;
use serde_json::Value;
use std::collections::BTreeMap;

/// Policies that compiled, and the load errors of the others by key.
pub fn split_by_errors<'a>(
    objects: &'a [(String, Value)],
    status: &LoadStatus,
) -> (Vec<&'a Value>, BTreeMap<String, String>) {
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for e in &status.errors {
        errors
            .entry(e.file.clone())
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&e.message);
            })
            .or_insert_with(|| e.message.clone());
    }
    let good = objects
        .iter()
        .filter(|(k, _)| !errors.contains_key(k))
        .map(|(_, v)| v)
        .collect();
    (good, errors)
}

/// Writes one configuration when the live one differs. Returns true when written.
async fn apply_if_changed<K>(
    api: &Api<K>,
    desired: &Value,
    manager: &str,
) -> Result<bool, ClusterError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = desired
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(live) = api.get_opt(name).await? {
        let live = serde_json::to_value(&live).unwrap_or(Value::Null);
        if webhooks::up_to_date(&live, desired) {
            return Ok(false);
        }
    }
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(desired),
    )
    .await?;
    Ok(true)
}

/// Builds and writes the webhook configurations for `policies`.
pub async fn apply_webhooks<'a>(
    client: &kube::Client,
    policies: impl IntoIterator<Item = &'a Value>,
    settings: &WebhookSettings,
    ca_bundle: &str,
    kinds: &dyn KindResolver,
) -> Result<Desired, ClusterError> {
    let desired = webhooks::desired(policies, settings, ca_bundle.as_bytes(), kinds);
    let manager = settings.names.field_manager();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    if apply_if_changed(&validating, &desired.validating, manager).await? {
        tracing::info!(
            webhooks = desired.validating["webhooks"]
                .as_array()
                .map_or(0, Vec::len),
            "validating webhook configuration written"
        );
    }
    if apply_if_changed(&validating, &desired.policy_validating, manager).await? {
        tracing::info!("policy validating webhook configuration written");
    }
    if apply_if_changed(&mutating, &desired.mutating, manager).await? {
        tracing::info!(
            webhooks = desired.mutating["webhooks"].as_array().map_or(0, Vec::len),
            "mutating webhook configuration written"
        );
    }
    Ok(desired)
}

/// Writes each policy's status where it changed.
pub async fn write_statuses(
    client: &kube::Client,
    caches: &[Cache],
    errors: &BTreeMap<String, String>,
    desired: &Desired,
) -> Result<usize, ClusterError> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut written = 0;
    for cache in caches {
        for doc in cache.values() {
            if !status::has_status(&doc) {
                continue;
            }
            let key = webhooks::policy_key(&doc);
            let state = PolicyState {
                error: errors.get(&key).map(String::as_str),
                configured: desired.configured.contains(&key),
            };
            let wanted = status::desired(&doc, &state);
            let live = doc.get("status");
            if status::up_to_date(live, &wanted) {
                continue;
            }
            let body = serde_json::json!({"status": status::with_times(live, wanted, &now)});
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let api: Api<DynamicObject> =
                match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &cache.resource),
                    None => Api::all_with(client.clone(), &cache.resource),
                };
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => written += 1,
                // The policy went away meanwhile: nothing to report on.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(written)
}

/// Removes the webhook configurations kybern wrote (by name and by label). Returns how many
/// were deleted.
pub async fn delete_webhooks(client: &kube::Client, names: &Names) -> Result<usize, ClusterError> {
    let (key, value) = names.webhook_label();
    let selector = format!("{key}={value}");
    let mut deleted = 0;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    for item in validating
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        if let Some(name) = item.metadata.name {
            validating.delete(&name, &DeleteParams::default()).await?;
            deleted += 1;
        }
    }
    for item in mutating
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        if let Some(name) = item.metadata.name {
            mutating.delete(&name, &DeleteParams::default()).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
