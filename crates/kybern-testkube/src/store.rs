//! The object store: registered types, objects, the global resource version and the bounded
//! event history that watches read from.
//!
//! Every write goes through one path ([`State::commit`]) that sets the server-owned metadata,
//! splits `status` from the main resource, bumps `generation`, skips no-op writes, finishes
//! deletions whose finalizers are gone, records the watch event and registers the types of
//! CustomResourceDefinitions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::crd;
use crate::error::StoreError;
use crate::ownership::Owners;
use crate::patch::{self, PatchKind};
use crate::resource::{self, ResourceType, split_api_version};
use crate::selector::Selector;

/// How many events the store keeps for watches to resume from.
pub(crate) const HISTORY: usize = 1000;

/// A handle on the fake's objects, shared with the HTTP server. Cheap to clone.
///
/// Writes through it behave as the matching HTTP request would (server-owned metadata,
/// watch events, CRD registration), so tests can set up state without a client and assert on
/// what clients did.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// The latest resource version, so watches wake up on every write.
    changed: watch::Sender<u64>,
}

/// Where an object lives. Field order gives lists their namespace/name order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjKey {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

struct Stored {
    object: Value,
    owners: Owners,
}

/// What happened to an object, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the history.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: ObjKey,
    pub object: Value,
    /// The object before a modification, so selector watches can see it stop matching.
    pub old: Option<Value>,
}

struct Registered {
    rt: ResourceType,
    /// The CRD that registered it, if any.
    crd: Option<String>,
}

pub(crate) struct State {
    types: Vec<Registered>,
    objects: BTreeMap<ObjKey, Stored>,
    rv: u64,
    history: VecDeque<Event>,
    /// Watches must start at or after this version; older ones get 410.
    compacted: u64,
}

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Main,
    Status,
}

/// Options of a write request.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOpts {
    /// `fieldManager`, or a name derived from the user agent.
    pub manager: String,
    pub dry_run: bool,
    /// `force` of server-side apply.
    pub force: bool,
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Preconditions {
    pub resource_version: Option<String>,
    pub uid: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// A store with the built-in types and the namespaces every cluster has
    /// (`default`, `kube-system`, `kube-public`, `kube-node-lease`).
    pub fn new() -> Store {
        let state = State {
            types: resource::builtin()
                .into_iter()
                .map(|rt| Registered { rt, crd: None })
                .collect(),
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            compacted: 0,
        };
        let (changed, _) = watch::channel(1);
        let store = Store {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                changed,
            }),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let created = store.create("v1", "namespaces", json!({"metadata": {"name": ns}}));
            debug_assert!(created.is_ok());
        }
        store
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the fake down with it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write under the lock and wakes watches if it changed anything.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.lock();
        let before = st.rv;
        let out = f(&mut st);
        if st.rv != before {
            self.inner.changed.send_replace(st.rv);
        }
        out
    }

    /// A receiver that changes on every write.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Adds a resource type (discovery and storage). Replaces one with the same group, version
    /// and plural.
    pub fn register(&self, r: ResourceType) {
        self.write(|st| st.register(r, None));
    }

    /// Every served resource type, in registration order.
    pub fn resource_types(&self) -> Vec<ResourceType> {
        self.lock().types.iter().map(|t| t.rt.clone()).collect()
    }

    /// The current (latest) resource version.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object, `apiVersion` and `kind` set; `namespace` is ignored for cluster-scoped types.
    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let st = self.lock();
        let rt = st.resolve_api(api_version, plural)?;
        st.read(&rt, namespace, name).ok()
    }

    /// All objects of a type, in one namespace or (with `None`) all of them, by namespace/name.
    pub fn list(&self, api_version: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let st = self.lock();
        let Some(rt) = st.resolve_api(api_version, plural) else {
            return Vec::new();
        };
        st.matching(&rt, namespace, &Selector::default(), &Selector::default())
    }

    /// Creates an object as `POST` would (namespace from the object).
    pub fn create(&self, api_version: &str, plural: &str, obj: Value) -> Result<Value, StoreError> {
        let rt = self.resolve_or_404(api_version, plural)?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.write(|st| st.create(&rt, ns.as_deref(), obj, &WriteOpts::test()))
    }

    /// Replaces an object as `PUT` would (`status` kept for types with a status subresource; a
    /// `metadata.resourceVersion` in `obj` must match the stored one).
    pub fn put(&self, api_version: &str, plural: &str, obj: Value) -> Result<Value, StoreError> {
        self.put_part(api_version, plural, obj, Part::Main)
    }

    /// Replaces an object's `status` as `PUT .../status` would.
    pub fn put_status(
        &self,
        api_version: &str,
        plural: &str,
        obj: Value,
    ) -> Result<Value, StoreError> {
        self.put_part(api_version, plural, obj, Part::Status)
    }

    /// Applies a JSON merge patch (RFC 7386) as `PATCH` would.
    pub fn merge_patch(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Result<Value, StoreError> {
        let rt = self.resolve_or_404(api_version, plural)?;
        self.write(|st| {
            st.patch(
                &rt,
                namespace,
                name,
                PatchKind::Merge,
                &patch,
                Part::Main,
                &WriteOpts::test(),
            )
        })
    }

    /// Deletes an object as `DELETE` would: with finalizers it only gets a `deletionTimestamp`.
    pub fn delete(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, StoreError> {
        let rt = self.resolve_or_404(api_version, plural)?;
        self.write(|st| st.delete(&rt, namespace, name, &Preconditions::default(), false))
    }

    /// Polls `f` every 20 ms until it holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, f: impl Fn(&Store) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Forgets the event history: watches from any version before now get 410.
    pub(crate) fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    fn put_part(
        &self,
        api_version: &str,
        plural: &str,
        obj: Value,
        part: Part,
    ) -> Result<Value, StoreError> {
        let rt = self.resolve_or_404(api_version, plural)?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.write(|st| st.update(&rt, ns.as_deref(), &name, obj, part, &WriteOpts::test()))
    }

    fn resolve_or_404(&self, api_version: &str, plural: &str) -> Result<ResourceType, StoreError> {
        self.lock()
            .resolve_api(api_version, plural)
            .ok_or_else(|| StoreError::NotFound {
                kind: "resource".to_string(),
                name: format!("{api_version}/{plural}"),
            })
    }
}

impl WriteOpts {
    fn test() -> WriteOpts {
        WriteOpts {
            manager: "testkube".to_string(),
            ..WriteOpts::default()
        }
    }
}

impl State {
    pub(crate) fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.rt.group == group && t.rt.version == version && t.rt.plural == plural)
            .map(|t| t.rt.clone())
    }

    fn resolve_api(&self, api_version: &str, plural: &str) -> Option<ResourceType> {
        let (g, v) = split_api_version(api_version);
        self.resolve(g, v, plural)
    }

    pub(crate) fn types(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.iter().map(|t| &t.rt)
    }

    /// True for types a CustomResourceDefinition registered.
    pub(crate) fn is_custom(&self, rt: &ResourceType) -> bool {
        self.types.iter().any(|t| t.rt == *rt && t.crd.is_some())
    }

    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    fn register(&mut self, rt: ResourceType, crd: Option<String>) {
        self.types.retain(|t| {
            !(t.rt.group == rt.group && t.rt.version == rt.version && t.rt.plural == rt.plural)
        });
        self.types.push(Registered { rt, crd });
    }

    fn key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> ObjKey {
        ObjKey {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: if rt.namespaced {
                namespace.unwrap_or_default().to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    /// `configmaps` or `deployments.apps`, as the real server names resources in messages.
    fn qualified(rt: &ResourceType) -> String {
        if rt.group.is_empty() {
            rt.plural.clone()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        }
    }

    fn not_found(rt: &ResourceType, name: &str) -> StoreError {
        StoreError::NotFound {
            kind: State::qualified(rt),
            name: name.to_string(),
        }
    }

    pub(crate) fn read(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, StoreError> {
        self.objects
            .get(&State::key(rt, namespace, name))
            .map(|s| present(&s.object, rt))
            .ok_or_else(|| State::not_found(rt, name))
    }

    /// Objects of `rt` in `namespace` (all for `None`) matching both selectors, in key order.
    pub(crate) fn matching(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Vec<Value> {
        let start = State::key(rt, namespace.filter(|_| rt.namespaced), "");
        self.objects
            .range(start..)
            .take_while(|(k, _)| {
                k.group == rt.group
                    && k.plural == rt.plural
                    && (namespace.is_none()
                        || !rt.namespaced
                        || Some(k.namespace.as_str()) == namespace)
            })
            .filter(|(_, s)| labels.matches(&s.object) && fields.matches(&s.object))
            .map(|(_, s)| present(&s.object, rt))
            .collect()
    }

    /// A page of [`State::matching`] after the `continue` token, at most `limit` long.
    pub(crate) fn page(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, StoreError> {
        let mut items = self.matching(rt, namespace, labels, fields);
        if let Some(token) = continue_token {
            let (ns, name) = decode_continue(token)?;
            items.retain(|o| (namespace_of(o), name_of(o)) > (ns.as_str(), name.as_str()));
        }
        let mut page = Page {
            items,
            resource_version: self.rv,
            continue_token: None,
            remaining: 0,
        };
        if let Some(limit) = limit.filter(|l| *l > 0 && *l < page.items.len()) {
            page.remaining = page.items.len() - limit;
            page.items.truncate(limit);
            page.continue_token = page
                .items
                .last()
                .map(|o| encode_continue(namespace_of(o), name_of(o)));
        }
        Ok(page)
    }

    /// Events after `rv`, or `Err` if some of them are no longer kept.
    pub(crate) fn events_since(&self, rv: u64) -> Result<Vec<Event>, StoreError> {
        if rv < self.compacted {
            return Err(StoreError::Expired(format!(
                "too old resource version: {rv} ({})",
                self.rv
            )));
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> Result<Value, StoreError> {
        let meta = metadata_mut(&mut obj)?;
        let body_ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let path_ns = namespace.filter(|n| !n.is_empty());
        if let (Some(path), Some(body)) = (path_ns, body_ns.as_deref())
            && rt.namespaced
            && !body.is_empty()
            && path != body
        {
            return Err(StoreError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .to_string(),
            ));
        }
        let ns = rt.namespaced.then(|| {
            path_ns
                .map(str::to_string)
                .or(body_ns)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_string())
        });
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(StoreError::Invalid {
                    kind: rt.kind.clone(),
                    name: String::new(),
                    message: "metadata.name: Required value: name or generateName is required"
                        .to_string(),
                });
            }
            name = loop {
                let candidate = format!("{prefix}{}", random_suffix());
                if !self
                    .objects
                    .contains_key(&State::key(rt, ns.as_deref(), &candidate))
                {
                    break candidate;
                }
            };
        }
        validate_name(rt, &name)?;
        if let Some(ns) = &ns {
            let ns_key = ObjKey {
                group: String::new(),
                plural: "namespaces".to_string(),
                namespace: String::new(),
                name: ns.clone(),
            };
            match self.objects.get(&ns_key) {
                None => {
                    return Err(StoreError::NotFound {
                        kind: "namespaces".to_string(),
                        name: ns.clone(),
                    });
                }
                Some(s) if s.object.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(StoreError::Forbidden {
                        message: format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            State::qualified(rt)
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        let key = State::key(rt, ns.as_deref(), &name);
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                kind: State::qualified(rt),
                name,
            });
        }
        let mut owners = Owners::default();
        owners.update(&opts.manager, None, &obj);
        self.commit(rt, key, obj, Part::Main, owners, opts.dry_run)
    }

    pub(crate) fn update(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        part: Part,
        opts: &WriteOpts,
    ) -> Result<Value, StoreError> {
        let key = State::key(rt, namespace, name);
        let old = self
            .objects
            .get(&key)
            .ok_or_else(|| State::not_found(rt, name))?;
        check_identity(&obj, &key)?;
        check_resource_version(rt, &obj, &old.object, name)?;
        let mut owners = old.owners.clone();
        owners.update(&opts.manager, Some(&old.object), &obj);
        self.commit(rt, key, obj, part, owners, opts.dry_run)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        part: Part,
        opts: &WriteOpts,
    ) -> Result<Value, StoreError> {
        let key = State::key(rt, namespace, name);
        let Some(old) = self.objects.get(&key) else {
            if kind != PatchKind::Apply || part == Part::Status {
                return Err(State::not_found(rt, name));
            }
            // Server-side apply creates what is missing.
            check_identity(patch, &key)?;
            let mut obj = patch.clone();
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("name".to_string(), Value::String(name.to_string()));
            }
            let created = self.create(rt, namespace, obj, opts)?;
            if let Some(stored) = self.objects.get_mut(&key) {
                let mut owners = Owners::default();
                // A fresh object has no other managers, so this cannot conflict.
                let _ = owners.apply(&opts.manager, true, patch, &json!({}), &stored.object);
                stored.owners = owners;
            }
            return Ok(created);
        };
        let live = present(&old.object, rt);
        if kind == PatchKind::Apply {
            check_identity(patch, &key)?;
        }
        let patched =
            patch::apply_patch(kind, &live, patch).map_err(|e| e.for_object(&rt.kind, name))?;
        check_identity(&patched, &key)?;
        check_resource_version(rt, &patched, &old.object, name)?;
        let mut owners = old.owners.clone();
        if kind == PatchKind::Apply {
            owners
                .apply(&opts.manager, opts.force, patch, &old.object, &patched)
                .map_err(|c| StoreError::Conflict {
                    kind: State::qualified(rt),
                    name: name.to_string(),
                    message: c.message(),
                })?;
        } else {
            owners.update(&opts.manager, Some(&old.object), &patched);
        }
        self.commit(rt, key, patched, part, owners, opts.dry_run)
    }

    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        pre: &Preconditions,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let key = State::key(rt, namespace, name);
        let old = self
            .objects
            .get(&key)
            .ok_or_else(|| State::not_found(rt, name))?;
        let conflict = |what: &str, want: &str, have: &str| StoreError::Conflict {
            kind: State::qualified(rt),
            name: name.to_string(),
            message: format!(
                "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
            ),
        };
        if let Some(want) = &pre.resource_version {
            let have = resource_version_of(&old.object);
            if *want != have {
                return Err(conflict("ResourceVersion", want, &have));
            }
        }
        if let Some(want) = &pre.uid {
            let have = old
                .object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if want != have {
                return Err(conflict("UID", want, have));
            }
        }
        let has_finalizers = old
            .object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if dry_run {
            return Ok(present(&old.object, rt));
        }
        if has_finalizers {
            if old.object.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(present(&old.object, rt));
            }
            let mut marked = old.object.clone();
            let owners = old.owners.clone();
            if let Some(meta) = marked.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("deletionTimestamp".to_string(), Value::String(now()));
                meta.insert("deletionGracePeriodSeconds".to_string(), json!(0));
            }
            return self.store(rt, key, marked, owners);
        }
        Ok(self
            .remove(rt, &key)
            .map(|o| present(&o, rt))
            .unwrap_or_default())
    }

    /// The shared tail of every create and update.
    fn commit(
        &mut self,
        rt: &ResourceType,
        key: ObjKey,
        mut new: Value,
        part: Part,
        owners: Owners,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let old = self.objects.get(&key).map(|s| s.object.clone());
        if part == Part::Status {
            let Some(old) = &old else {
                return Err(State::not_found(rt, &key.name));
            };
            let status = new.get("status").cloned();
            new = old.clone();
            set_or_remove(&mut new, "status", status);
        } else if rt.has_status {
            let status = old.as_ref().and_then(|o| o.get("status").cloned());
            set_or_remove(&mut new, "status", status);
        }
        let Some(obj) = new.as_object_mut() else {
            return Err(StoreError::BadRequest(
                "object must be a JSON object".to_string(),
            ));
        };
        obj.insert("apiVersion".to_string(), Value::String(rt.api_version()));
        obj.insert("kind".to_string(), Value::String(rt.kind.clone()));
        let meta = metadata_mut(&mut new)?;
        meta.insert("name".to_string(), Value::String(key.name.clone()));
        if rt.namespaced {
            meta.insert(
                "namespace".to_string(),
                Value::String(key.namespace.clone()),
            );
        } else {
            meta.remove("namespace");
        }
        meta.remove("managedFields");
        let server_fields = [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ];
        match &old {
            Some(old) => {
                for field in server_fields {
                    set_or_remove_map(
                        meta,
                        field,
                        old.pointer(&format!("/metadata/{field}")).cloned(),
                    );
                }
                meta.insert(
                    "resourceVersion".to_string(),
                    Value::String(resource_version_of(old)),
                );
            }
            None => {
                for field in server_fields {
                    meta.remove(field);
                }
                meta.insert(
                    "uid".to_string(),
                    Value::String(uuid::Uuid::new_v4().to_string()),
                );
                meta.insert("creationTimestamp".to_string(), Value::String(now()));
                meta.insert("generation".to_string(), json!(1));
            }
        }
        if let Some(old) = &old
            && spec_of(old, rt) != spec_of(&new, rt)
        {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata_mut(&mut new)?.insert("generation".to_string(), json!(generation + 1));
        }
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            let types = crd::served_types(&new)?;
            if part == Part::Main {
                let mut status = crd::status(&new, &types, &now());
                // Keep the conditions' times, so re-applying an unchanged CRD is a no-op.
                if let (Some(conditions), Some(map)) = (
                    old.as_ref().and_then(|o| o.pointer("/status/conditions")),
                    status.as_object_mut(),
                ) {
                    map.insert("conditions".to_string(), conditions.clone());
                }
                set_or_remove(&mut new, "status", Some(status));
            }
            if dry_run {
                return Ok(present(&new, rt));
            }
            self.types
                .retain(|t| t.crd.as_deref() != Some(key.name.as_str()));
            for t in types {
                self.register(t, Some(key.name.clone()));
            }
        }
        if let Some(old) = &old
            && *old == new
        {
            // The real server does not bump the version of a no-op write.
            if let Some(stored) = self.objects.get_mut(&key) {
                stored.owners = owners;
            }
            return Ok(present(old, rt));
        }
        if dry_run {
            return Ok(present(&new, rt));
        }
        let terminating = new.pointer("/metadata/deletionTimestamp").is_some();
        let finalized = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if terminating && finalized {
            self.objects.insert(
                key.clone(),
                Stored {
                    object: new,
                    owners,
                },
            );
            return Ok(self
                .remove(rt, &key)
                .map(|o| present(&o, rt))
                .unwrap_or_default());
        }
        self.store(rt, key, new, owners)
    }

    /// Stores `object` with the next resource version and records the event.
    fn store(
        &mut self,
        rt: &ResourceType,
        key: ObjKey,
        mut object: Value,
        owners: Owners,
    ) -> Result<Value, StoreError> {
        self.rv += 1;
        let rv = self.rv;
        metadata_mut(&mut object)?
            .insert("resourceVersion".to_string(), Value::String(rv.to_string()));
        let old = self
            .objects
            .insert(
                key.clone(),
                Stored {
                    object: object.clone(),
                    owners,
                },
            )
            .map(|s| s.object);
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv,
            kind,
            key,
            object: object.clone(),
            old,
        });
        Ok(present(&object, rt))
    }

    /// Removes an object now, with what goes with it: a namespace's contents, a CRD's types
    /// and objects. Returns the deleted object carrying the deletion's resource version.
    fn remove(&mut self, rt: &ResourceType, key: &ObjKey) -> Option<Value> {
        let Stored { mut object, .. } = self.objects.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".to_string(), Value::String(rv.to_string()));
        }
        self.record(Event {
            rv,
            kind: EventType::Deleted,
            key: key.clone(),
            object: object.clone(),
            old: None,
        });
        if key.group.is_empty() && key.plural == "namespaces" {
            let contents: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            self.remove_all(&contents);
        } else if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            let gone: Vec<(String, String)> = self
                .types
                .iter()
                .filter(|t| t.crd.as_deref() == Some(key.name.as_str()))
                .map(|t| (t.rt.group.clone(), t.rt.plural.clone()))
                .collect();
            self.types
                .retain(|t| t.crd.as_deref() != Some(key.name.as_str()));
            let objects: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| gone.contains(&(k.group.clone(), k.plural.clone())))
                .cloned()
                .collect();
            self.remove_all(&objects);
        }
        Some(object)
    }

    /// Removes objects whose type may be gone already (a namespace's or a CRD's contents).
    fn remove_all(&mut self, keys: &[ObjKey]) {
        for k in keys {
            if let Some(Stored { mut object, .. }) = self.objects.remove(k) {
                self.rv += 1;
                let rv = self.rv;
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".to_string(), Value::String(rv.to_string()));
                }
                self.record(Event {
                    rv,
                    kind: EventType::Deleted,
                    key: k.clone(),
                    object,
                    old: None,
                });
            }
        }
    }

    fn record(&mut self, event: Event) {
        if self.history.len() >= HISTORY
            && let Some(dropped) = self.history.pop_front()
        {
            self.compacted = dropped.rv;
        }
        self.history.push_back(event);
    }
}

/// `obj` as served through `rt`: that `apiVersion` and `kind`.
pub(crate) fn present(obj: &Value, rt: &ResourceType) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert("apiVersion".to_string(), Value::String(rt.api_version()));
        map.insert("kind".to_string(), Value::String(rt.kind.clone()));
    }
    out
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, StoreError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| StoreError::BadRequest("object must be a JSON object".to_string()))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if meta.is_null() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .ok_or_else(|| StoreError::BadRequest("metadata must be a JSON object".to_string()))
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = obj.as_object_mut() {
        set_or_remove_map(map, field, value);
    }
}

fn set_or_remove_map(map: &mut Map<String, Value>, field: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            map.insert(field.to_string(), v);
        }
        None => {
            map.remove(field);
        }
    }
}

/// What `generation` tracks: everything but `metadata` (and `status` where it is a subresource).
fn spec_of(obj: &Value, rt: &ResourceType) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("metadata");
        if rt.has_status {
            map.remove("status");
        }
    }
    out
}

fn resource_version_of(obj: &Value) -> String {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A body's name and namespace, if given, must be the request's.
fn check_identity(obj: &Value, key: &ObjKey) -> Result<(), StoreError> {
    if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str)
        && name != key.name
    {
        return Err(StoreError::BadRequest(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            key.name
        )));
    }
    if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
        && !key.namespace.is_empty()
        && !ns.is_empty()
        && ns != key.namespace
    {
        return Err(StoreError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_string(),
        ));
    }
    Ok(())
}

/// Optimistic concurrency: a `resourceVersion` in the new object must be the stored one.
fn check_resource_version(
    rt: &ResourceType,
    new: &Value,
    old: &Value,
    name: &str,
) -> Result<(), StoreError> {
    match new.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        Some(rv) if !rv.is_empty() && rv != resource_version_of(old) => Err(StoreError::Conflict {
            kind: State::qualified(rt),
            name: name.to_string(),
            message: "the object has been modified; please apply your changes to the latest version and try again"
                .to_string(),
        }),
        _ => Ok(()),
    }
}

/// DNS subdomain names, except RBAC which allows any path segment (`system:foo`).
fn validate_name(rt: &ResourceType, name: &str) -> Result<(), StoreError> {
    let ok = if rt.group == "rbac.authorization.k8s.io" {
        !name.contains(['/', '%']) && name != "." && name != ".."
    } else {
        name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            kind: rt.kind.clone(),
            name: name.to_string(),
            message: format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
        })
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Five characters as `generateName` adds them (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| {
            char::from(
                ALPHABET
                    .get(usize::from(*b) % ALPHABET.len())
                    .copied()
                    .unwrap_or(b'x'),
            )
        })
        .collect()
}

/// An opaque `continue` token: the hex of the last key returned.
fn encode_continue(namespace: &str, name: &str) -> String {
    json!([namespace, name])
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(String, String), StoreError> {
    let bad = || StoreError::BadRequest(format!("invalid continue token: {token:?}"));
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    serde_json::from_slice::<(String, String)>(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str, ns: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}})
    }

    #[test]
    fn create_sets_server_metadata_and_rejects_duplicates() {
        let s = Store::new();
        let c = s.create("v1", "configmaps", cm("a", "default")).unwrap();
        assert_eq!(c["metadata"]["generation"], 1);
        assert!(c["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
        assert_eq!(
            c["metadata"]["resourceVersion"],
            s.resource_version().to_string()
        );
        assert_eq!(
            s.create("v1", "configmaps", cm("a", "default"))
                .unwrap_err()
                .code(),
            409
        );
        assert_eq!(
            s.create("v1", "configmaps", cm("a", "missing"))
                .unwrap_err()
                .code(),
            404
        );
        assert_eq!(
            s.create("v1", "configmaps", cm("Bad_Name", "default"))
                .unwrap_err()
                .code(),
            422
        );
    }

    #[test]
    fn generate_name_gets_a_suffix() {
        let s = Store::new();
        let c = s
            .create(
                "v1",
                "configmaps",
                json!({"metadata": {"generateName": "x-", "namespace": "default"}}),
            )
            .unwrap();
        let name = c["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("x-") && name.len() == 7, "{name}");
    }

    #[test]
    fn generation_moves_on_spec_changes_only_and_noop_keeps_version() {
        let s = Store::new();
        let c = s.create("v1", "configmaps", cm("a", "default")).unwrap();
        let mut labelled = c.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        let l = s.put("v1", "configmaps", labelled).unwrap();
        assert_eq!(l["metadata"]["generation"], 1);
        let same = s.put("v1", "configmaps", l.clone()).unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            l["metadata"]["resourceVersion"]
        );
        let mut changed = l.clone();
        changed["data"]["k"] = json!("w");
        assert_eq!(
            s.put("v1", "configmaps", changed.clone()).unwrap()["metadata"]["generation"],
            2
        );
        // `changed` still carries the old version now.
        assert_eq!(s.put("v1", "configmaps", changed).unwrap_err().code(), 409);
    }

    #[test]
    fn status_subresource_splits_writes() {
        let s = Store::new();
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"x": 1}, "status": {"phase": "Running"}});
        let p = s.create("v1", "pods", pod).unwrap();
        assert!(p.get("status").is_none(), "create ignores status");
        let mut st = p.clone();
        st["status"] = json!({"phase": "Running"});
        st["spec"]["x"] = json!(2);
        let after = s.put_status("v1", "pods", st).unwrap();
        assert_eq!(after["status"]["phase"], "Running");
        assert_eq!(after["spec"]["x"], 1, "status write ignores spec");
        assert_eq!(after["metadata"]["generation"], 1);
        let mut main = after.clone();
        main["status"] = json!({"phase": "Failed"});
        main["spec"]["x"] = json!(3);
        let after = s.put("v1", "pods", main).unwrap();
        assert_eq!(
            after["status"]["phase"], "Running",
            "main write ignores status"
        );
        assert_eq!(after["metadata"]["generation"], 2);
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let s = Store::new();
        let mut o = cm("f", "default");
        o["metadata"]["finalizers"] = json!(["x/y"]);
        s.create("v1", "configmaps", o).unwrap();
        let d = s.delete("v1", "configmaps", Some("default"), "f").unwrap();
        assert!(d["metadata"]["deletionTimestamp"].is_string());
        assert!(s.get("v1", "configmaps", Some("default"), "f").is_some());
        s.merge_patch(
            "v1",
            "configmaps",
            Some("default"),
            "f",
            json!({"metadata": {"finalizers": null}}),
        )
        .unwrap();
        assert!(s.get("v1", "configmaps", Some("default"), "f").is_none());
    }

    #[test]
    fn deleting_a_namespace_deletes_its_objects() {
        let s = Store::new();
        s.create("v1", "namespaces", json!({"metadata": {"name": "gone"}}))
            .unwrap();
        s.create("v1", "configmaps", cm("a", "gone")).unwrap();
        s.create("v1", "configmaps", cm("a", "default")).unwrap();
        s.delete("v1", "namespaces", None, "gone").unwrap();
        assert_eq!(s.list("v1", "configmaps", None).len(), 1);
    }

    #[test]
    fn crds_register_and_unregister_types() {
        let s = Store::new();
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                         {"name": "v1beta1", "served": true, "storage": false}]}});
        let c = s
            .create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
            .unwrap();
        assert_eq!(c["status"]["conditions"][1]["type"], "Established");
        let types = s.resource_types();
        let w: Vec<_> = types.iter().filter(|t| t.plural == "widgets").collect();
        assert_eq!(w.len(), 2);
        assert!(w[0].has_status && !w[1].has_status && w[0].singular == "widget");
        s.create(
            "example.com/v1",
            "widgets",
            json!({"metadata": {"name": "w", "namespace": "default"}}),
        )
        .unwrap();
        assert_eq!(
            s.list("example.com/v1beta1", "widgets", None)[0]["apiVersion"],
            "example.com/v1beta1"
        );
        s.delete(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            None,
            "widgets.example.com",
        )
        .unwrap();
        assert!(s.resource_types().iter().all(|t| t.plural != "widgets"));
        assert!(
            s.create(
                "example.com/v1",
                "widgets",
                json!({"metadata": {"name": "w"}})
            )
            .is_err()
        );
        let bad = json!({"metadata": {"name": "wrong"}, "spec": {"group": "g.io", "scope": "Cluster",
            "names": {"plural": "xs", "kind": "X"}, "versions": [{"name": "v1"}]}});
        assert_eq!(
            s.create("apiextensions.k8s.io/v1", "customresourcedefinitions", bad)
                .unwrap_err()
                .code(),
            422
        );
    }

    #[test]
    fn pages_follow_continue_tokens() {
        let s = Store::new();
        for n in ["c", "a", "b"] {
            s.create("v1", "configmaps", cm(n, "default")).unwrap();
        }
        let st = s.lock();
        let rt = st.resolve("", "v1", "configmaps").unwrap();
        let all = Selector::default();
        let p1 = st.page(&rt, None, &all, &all, Some(2), None).unwrap();
        assert_eq!(p1.items.iter().map(name_of).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p1.remaining, 1);
        let p2 = st
            .page(&rt, None, &all, &all, Some(2), p1.continue_token.as_deref())
            .unwrap();
        assert_eq!(p2.items.iter().map(name_of).collect::<Vec<_>>(), ["c"]);
        assert!(p2.continue_token.is_none());
        assert!(st.page(&rt, None, &all, &all, None, Some("zz")).is_err());
    }

    #[test]
    fn history_is_bounded_and_old_versions_expire() {
        let s = Store::new();
        let start = s.resource_version();
        for i in 0..(HISTORY + 5) {
            s.create("v1", "configmaps", cm(&format!("c{i}"), "default"))
                .unwrap();
        }
        let st = s.lock();
        assert_eq!(st.events_since(start).unwrap_err().code(), 410);
        assert_eq!(st.events_since(st.rv() - 3).unwrap().len(), 3);
    }
}
