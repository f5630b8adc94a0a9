//! The policy store: policies compiled once into an immutable, indexed [`PolicySet`] that
//! requests share through an `Arc`; a reload compiles a new set off the request path and swaps it
//! atomically, so a request sees the old set or the new one, never a mix.
//!
//! One store, two sources: policy files scanned by [`PolicyStore::reload`] (a file that no longer
//! loads is reported and its last good version stays in force), or API objects handed over by the
//! cluster mode through [`PolicyStore::sync_objects`] (an object that does not compile contributes
//! nothing, so every replica decides from the API's state alone, whatever it saw before).

use crate::provider::manifest_files;
use arc_swap::ArcSwap;
use kybern_engine::cel::policy_set::{CelDocument, CelPolicySet, compile_document};
use kybern_engine::exceptions::PolicyException;
use kybern_engine::policy::{Policy, PolicyLoadErrorKind, RuleBody, compile_policy};
use kybern_engine::yaml::{Limits, parse_documents};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use std::time::{Duration, Instant};

/// Policy kinds of Kyverno's cleanup controller: reported, not loaded (the admission server does
/// not run them).
const CLEANUP_KINDS: [&str; 2] = ["CleanupPolicy", "ClusterCleanupPolicy"];

/// An immutable set of compiled policies and exceptions, indexed by the kinds rules match.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub policies: Vec<Arc<Policy>>,
    pub exceptions: Vec<PolicyException>,
    /// The CEL policy kinds, VAP/MAP with their bindings, and CEL PolicyExceptions.
    pub cel: CelPolicySet,
    /// Policy positions by kind name.
    by_kind: HashMap<String, Vec<usize>>,
    /// Policies some rule of which may match any kind (wildcards).
    any_kind: Vec<usize>,
    /// Increases with every swap.
    pub generation: u64,
}

/// The kind names a kind selector (`Pod`, `apps/v1/Deployment`, `Pod/exec`, `Deployment.scale`)
/// can match, or `None` when it has wildcards.
fn selector_kinds(selector: &str) -> Option<Vec<String>> {
    if selector.contains(['*', '?']) {
        return None;
    }
    Some(
        selector
            .split(['/', '.'])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// Kind names a policy's rules can match; `None` when some rule may match any kind.
fn policy_kinds(policy: &Policy) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for rule in &policy.rules {
        let mut any_description = false;
        for d in rule.match_resources.descriptions() {
            any_description = true;
            if d.kinds.is_empty() {
                return None;
            }
            for k in &d.kinds {
                out.extend(selector_kinds(k)?);
            }
        }
        if !any_description {
            return None;
        }
    }
    Some(out)
}

impl PolicySet {
    /// Builds the index over the given policies.
    pub fn new(
        policies: Vec<Arc<Policy>>,
        exceptions: Vec<PolicyException>,
        cel: CelPolicySet,
        generation: u64,
    ) -> Self {
        let mut by_kind: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_kind = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            match policy_kinds(p) {
                None => any_kind.push(i),
                Some(mut kinds) => {
                    kinds.sort();
                    kinds.dedup();
                    for k in kinds {
                        by_kind.entry(k).or_default().push(i);
                    }
                }
            }
        }
        PolicySet {
            policies,
            exceptions,
            cel,
            by_kind,
            any_kind,
            generation,
        }
    }

    /// Policies that may have a rule matching `kind`, in load order.
    pub fn candidates(&self, kind: &str) -> Vec<&Arc<Policy>> {
        let mut idx: Vec<usize> = self.any_kind.clone();
        if let Some(v) = self.by_kind.get(kind) {
            idx.extend(v);
        }
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .filter_map(|i| self.policies.get(i))
            .collect()
    }
}

/// True when the policy has at least one rule of the given kind of body.
pub fn has_validate_rules(p: &Policy) -> bool {
    p.has_rule_of(|b| matches!(b, RuleBody::Validate(_) | RuleBody::VerifyImages { .. }))
}

/// A problem with one file or document.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadIssue {
    pub file: String,
    pub message: String,
}

/// What one file or API object contributed the last time it loaded cleanly.
#[derive(Debug, Clone, Default)]
struct FileEntry {
    stamp: Option<Stamp>,
    /// Since when a change written in place has been waiting to settle.
    deferred_since: Option<Instant>,
    /// The API object's resourceVersion (cluster source).
    version: Option<String>,
    policies: Vec<Arc<Policy>>,
    exceptions: Vec<PolicyException>,
    cel: Vec<CelDocument>,
    /// Problems of the file's current version (empty when it loaded cleanly).
    issues: Vec<LoadIssue>,
    /// Documents of kinds this build cannot evaluate.
    unsupported: Vec<LoadIssue>,
}

/// The outcome of one scan.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadStatus {
    pub generation: u64,
    pub policies: usize,
    pub exceptions: usize,
    /// Files whose current version does not load (their last good version stays in force).
    pub errors: Vec<LoadIssue>,
    /// Documents of kinds this build does not evaluate yet.
    pub unsupported: Vec<LoadIssue>,
}

/// The shared store.
pub struct PolicyStore {
    paths: Vec<PathBuf>,
    current: ArcSwap<PolicySet>,
    /// By file path, or by object key in the cluster source.
    files: Mutex<BTreeMap<PathBuf, FileEntry>>,
    status: Mutex<LoadStatus>,
    ready: AtomicBool,
    /// Namespaces whose exceptions count; empty: all.
    exception_namespaces: Vec<String>,
    /// A background controller acts on GeneratingPolicies (the cluster mode): they are kept
    /// instead of being reported as unsupported.
    background: bool,
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// What tells a changed file from the one loaded: its inode (a file replaced by rename gets a new
/// one), modification time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    inode: u64,
    modified: SystemTime,
    len: u64,
}

pub(crate) fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        inode,
        modified: m.modified().ok()?,
        len: m.len(),
    })
}

/// How long a file written in place must stay unchanged before it is read: a writer that
/// truncates and then writes leaves a window where the file is empty or holds a valid prefix
/// (a comment, the first of two documents) that would otherwise replace the whole file.
const SETTLE: Duration = Duration::from_secs(1);
/// A file rewritten in place without pause is read anyway after this long.
const MAX_DEFER: Duration = Duration::from_secs(10);

/// True when `now` is the same file as `loaded`, changed in place within the settle window.
fn changing_in_place(loaded: Option<Stamp>, now: Option<Stamp>) -> bool {
    let (Some(loaded), Some(now)) = (loaded, now) else {
        return false;
    };
    let recent = SystemTime::now()
        .duration_since(now.modified)
        .is_ok_and(|age| age < SETTLE);
    loaded.inode == now.inode && loaded != now && recent
}

/// Compiles one file. Issues mean the file's new version is not usable as a whole.
fn load_file(path: &Path) -> FileEntry {
    let file = path.display().to_string();
    let issue = |message: String| LoadIssue {
        file: file.clone(),
        message,
    };
    let mut entry = FileEntry {
        stamp: stamp(path),
        ..FileEntry::default()
    };
    let text = match std::fs::read(path) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                entry.issues.push(issue("file is not valid UTF-8".into()));
                return entry;
            }
        },
        Err(e) => {
            entry.issues.push(issue(format!("cannot read: {e}")));
            return entry;
        }
    };
    let (docs, err) = parse_documents(&text, &Limits::default());
    if let Some(e) = err {
        entry.issues.push(issue(e.to_string()));
    }
    compile_documents(&mut entry, &file, docs, false);
    entry
}

/// Compiles documents into `entry`; problems name `origin` (a file or an object key) and the
/// document's position.
fn compile_documents(
    entry: &mut FileEntry,
    origin: &str,
    docs: Vec<(usize, Value)>,
    background: bool,
) {
    let issue = |message: String| LoadIssue {
        file: origin.to_string(),
        message,
    };
    for (index, doc) in docs {
        if doc.is_null() {
            continue;
        }
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        let at = |m: String| issue(format!("document {}: {m}", index + 1));
        match compile_document(&doc) {
            Some(Ok(d @ CelDocument::Generating(_))) if background => {
                entry.cel.push(d);
                continue;
            }
            Some(Ok(CelDocument::Generating(p))) => {
                entry.unsupported.push(at(format!(
                    "{kind} {:?}: generation runs in the background controller, which kybern serve does not have yet",
                    p.name
                )));
                continue;
            }
            Some(Ok(CelDocument::Deleting(p))) => {
                entry.unsupported.push(at(format!(
                    "{kind} {:?}: deletion runs in the cleanup controller, which kybern serve does not have yet",
                    p.name
                )));
                continue;
            }
            Some(Ok(d)) => {
                entry.cel.push(d);
                continue;
            }
            Some(Err(e)) => {
                entry.issues.push(at(e.to_string()));
                continue;
            }
            None => {}
        }
        if kind == "PolicyException" {
            match PolicyException::compile(&doc) {
                Ok(e) => entry.exceptions.push(e),
                Err(e) => entry.issues.push(at(format!(
                    "PolicyException {:?} at {}: {}",
                    name_of(&doc),
                    e.path,
                    e.message
                ))),
            }
            continue;
        }
        match compile_policy(&doc) {
            Ok(p) => entry.policies.push(Arc::new(p)),
            Err(e) if e.kind == PolicyLoadErrorKind::UnknownKind => {
                if CLEANUP_KINDS.contains(&kind) {
                    entry.unsupported.push(at(format!(
                        "{kind} {:?}: cleanup runs in the cleanup controller, which kybern serve does not have yet",
                        name_of(&doc)
                    )));
                }
            }
            Err(e) => entry.issues.push(at(format!(
                "policy {:?} at {}: {}",
                name_of(&doc),
                e.path,
                e.message
            ))),
        }
    }
}

/// Why a policy or exception document cannot be used, in the words and field paths a load
/// would report; empty when it compiles (or is not a policy kind). What `/policyvalidate`
/// answers, so that a broken policy is refused at `kubectl apply` as Kyverno refuses it.
pub fn check_document(doc: &Value) -> Vec<String> {
    let mut entry = FileEntry::default();
    compile_documents(&mut entry, "", vec![(0, doc.clone())], true);
    entry
        .issues
        .into_iter()
        .map(|i| {
            i.message
                .strip_prefix("document 1: ")
                .map(str::to_string)
                .unwrap_or(i.message)
        })
        .collect()
}

/// One API object handed to [`PolicyStore::sync_objects`].
#[derive(Debug, Clone)]
pub struct SourceObject {
    /// Unique per object, e.g. `ClusterPolicy/require-labels` or `Policy/team-a/limits`; it is
    /// the `file` of the object's load issues.
    pub key: String,
    /// The object's resourceVersion: an unchanged version is not compiled again.
    pub version: String,
    pub object: Value,
}

impl PolicyStore {
    /// A store over the given files and folders; nothing is loaded until [`PolicyStore::reload`].
    pub fn new(paths: Vec<PathBuf>) -> Self {
        PolicyStore {
            paths,
            current: ArcSwap::from_pointee(PolicySet::default()),
            files: Mutex::new(BTreeMap::new()),
            status: Mutex::new(LoadStatus::default()),
            ready: AtomicBool::new(false),
            exception_namespaces: Vec::new(),
            background: false,
        }
    }

    /// Keeps GeneratingPolicies: a background controller generates their objects.
    pub fn with_background_controller(mut self) -> Self {
        self.background = true;
        self
    }

    /// Honours PolicyExceptions (both kinds) only from `namespaces`; empty: from all.
    pub fn with_exception_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.exception_namespaces = namespaces;
        self
    }

    /// True when an exception in `namespace` counts.
    fn exception_allowed(&self, namespace: &str) -> bool {
        self.exception_namespaces.is_empty()
            || self.exception_namespaces.iter().any(|n| n == namespace)
    }

    /// A store fed with API objects through [`PolicyStore::sync_objects`]; not ready until the
    /// first complete sync.
    pub fn for_objects() -> Self {
        PolicyStore::new(Vec::new())
    }

    /// Makes the store hold exactly `objects`: changed ones are compiled, missing ones dropped,
    /// and a new set is swapped in when anything changed. `complete` says every source has
    /// synced; the store becomes ready with the first complete sync. Returns true when a new set
    /// was swapped in. Blocking: run it off the async threads.
    pub fn sync_objects(&self, objects: Vec<SourceObject>, complete: bool) -> bool {
        let Ok(mut files) = self.files.lock() else {
            return false;
        };
        let mut changed = false;
        let keys: std::collections::HashSet<PathBuf> =
            objects.iter().map(|o| PathBuf::from(&o.key)).collect();
        let before = files.len();
        files.retain(|k, _| keys.contains(k));
        changed |= files.len() != before;
        for o in objects {
            let key = PathBuf::from(&o.key);
            if files
                .get(&key)
                .is_some_and(|e| e.version.as_deref() == Some(o.version.as_str()))
            {
                continue;
            }
            let mut entry = FileEntry {
                version: Some(o.version),
                ..FileEntry::default()
            };
            compile_documents(&mut entry, &o.key, vec![(0, o.object)], self.background);
            for i in &entry.issues {
                tracing::warn!(object = %i.file, message = %i.message, "policy does not load; it takes no part in decisions");
            }
            files.insert(key, entry);
            changed = true;
        }
        let was_ready = self.is_ready();
        let publish = changed || (complete && !was_ready);
        self.publish(&files, Vec::new(), publish);
        if complete {
            self.ready.store(true, Ordering::Release);
        }
        publish
    }

    /// Swaps in a set built from `files` when `rebuild`, and records the status.
    fn publish(
        &self,
        files: &BTreeMap<PathBuf, FileEntry>,
        path_issues: Vec<LoadIssue>,
        rebuild: bool,
    ) {
        let mut status = LoadStatus {
            errors: path_issues,
            ..LoadStatus::default()
        };
        let refused = |key: &str| LoadIssue {
            file: key.to_string(),
            message: format!(
                "PolicyException {key} is ignored: exceptions are honoured only in {}",
                self.exception_namespaces.join(", ")
            ),
        };
        for (path, e) in files {
            status.errors.extend(e.issues.iter().cloned());
            status.unsupported.extend(e.unsupported.iter().cloned());
            let origin = path.display().to_string();
            for x in e
                .exceptions
                .iter()
                .filter(|x| !self.exception_allowed(&x.namespace))
            {
                status.errors.push(LoadIssue {
                    file: origin.clone(),
                    ..refused(&format!("{}/{}", x.namespace, x.name))
                });
            }
            for d in &e.cel {
                if let CelDocument::Exception(x) = d
                    && !self.exception_allowed(x.namespace())
                {
                    status.errors.push(LoadIssue {
                        file: origin.clone(),
                        ..refused(&x.key)
                    });
                }
            }
        }
        if rebuild {
            let generation = self.current.load().generation + 1;
            let policies: Vec<Arc<Policy>> = files
                .values()
                .flat_map(|e| e.policies.iter().cloned())
                .collect();
            let exceptions: Vec<PolicyException> = files
                .values()
                .flat_map(|e| e.exceptions.iter())
                .filter(|x| self.exception_allowed(&x.namespace))
                .cloned()
                .collect();
            let mut cel = CelPolicySet::default();
            for d in files.values().flat_map(|e| e.cel.iter()) {
                if let CelDocument::Exception(x) = d
                    && !self.exception_allowed(x.namespace())
                {
                    continue;
                }
                cel.insert(d.clone());
            }
            let set = PolicySet::new(policies, exceptions, cel, generation);
            tracing::info!(
                generation,
                policies = set.policies.len(),
                cel_policies = set.cel.len(),
                exceptions = set.exceptions.len(),
                "policy set loaded"
            );
            self.current.store(Arc::new(set));
        }
        let current = self.current.load();
        status.generation = current.generation;
        status.policies = current.policies.len() + current.cel.len();
        status.exceptions = current.exceptions.len();
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
    }

    /// The current set: an `Arc` the request keeps for its whole evaluation.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// True once a complete load has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The last scan's outcome.
    pub fn status(&self) -> LoadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Scans the paths; recompiles changed files and swaps in a new set when anything changed.
    /// Returns true when a new set was swapped in. Blocking: run it off the async threads.
    pub fn reload(&self) -> bool {
        let Ok(mut files) = self.files.lock() else {
            return false;
        };
        let mut seen = Vec::new();
        let mut path_issues = Vec::new();
        for p in &self.paths {
            match manifest_files(p) {
                Ok(list) => seen.extend(list),
                Err(e) => path_issues.push(LoadIssue {
                    file: p.display().to_string(),
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        let mut changed = false;
        // Files that disappeared take their policies with them.
        let before = files.len();
        files.retain(|path, _| seen.contains(path));
        changed |= files.len() != before;
        for path in &seen {
            let now = stamp(path);
            if files
                .get(path)
                .is_some_and(|e| e.stamp == now && now.is_some())
            {
                continue;
            }
            let fresh = load_file(path);
            if fresh.stamp != stamp(path) {
                // Written while it was read: the next scan reads the settled version.
                continue;
            }
            // Judged on the stamp taken just before reading, so a write that started after the
            // scan first looked at the file still counts.
            if let Some(old) = files.get_mut(path)
                && changing_in_place(old.stamp, fresh.stamp)
                && old
                    .deferred_since
                    .get_or_insert_with(Instant::now)
                    .elapsed()
                    < MAX_DEFER
            {
                continue;
            }
            if !fresh.issues.is_empty() {
                for i in &fresh.issues {
                    tracing::warn!(file = %i.file, message = %i.message, "policy file does not load; its last good version stays in force");
                }
            }
            match files.get_mut(path) {
                // The new version is broken: keep the last good policies, remember the problem.
                Some(old) if !fresh.issues.is_empty() => {
                    old.stamp = fresh.stamp;
                    old.deferred_since = None;
                    old.issues = fresh.issues;
                }
                _ => {
                    files.insert(path.clone(), fresh);
                    changed = true;
                }
            }
        }
        let was_ready = self.is_ready();
        self.publish(&files, path_issues, changed || !was_ready);
        self.ready.store(true, Ordering::Release);
        changed || !was_ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kinds: &[&str]) -> Policy {
        compile_policy(&serde_json::json!({
            "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
            "spec": {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": kinds}}]},
                "validate": {"message": "m", "pattern": {"metadata": {"name": "?*"}}}}]}
        }))
        .unwrap()
    }

    fn policy_yaml(names: &[&str]) -> String {
        names
            .iter()
            .map(|n| {
                format!(
                    "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata: {{name: {n}}}\n\
                     spec:\n  rules:\n  - name: r\n    match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}\n\
                     \x20   validate: {{message: m, deny: {{}}}}\n"
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }

    #[test]
    fn a_file_written_in_place_is_read_once_it_settles_and_a_renamed_one_at_once() {
        let dir = std::env::temp_dir().join(format!("kybern-store-settle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("set.yaml");
        std::fs::write(&file, policy_yaml(&["a", "b"])).unwrap();
        let store = PolicyStore::new(vec![dir.clone()]);
        store.reload();
        assert_eq!(store.snapshot().policies.len(), 2);

        // Truncate and write a valid prefix in place, as a writer that has not finished yet.
        std::fs::write(&file, "# being rewritten\n").unwrap();
        assert!(
            !store.reload(),
            "a file changing in place was read before it settled"
        );
        assert_eq!(store.snapshot().policies.len(), 2);

        // Left that way, it is what the user meant: it takes effect after the settle window.
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        assert!(store.reload());
        assert_eq!(store.snapshot().policies.len(), 0);

        // A replacement by rename is complete by construction and is read at once.
        let tmp = dir.join(".set.yaml.tmp");
        std::fs::write(&tmp, policy_yaml(&["c"])).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert!(store.reload());
        assert_eq!(store.snapshot().policies.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn index_returns_policies_by_kind_and_wildcards_everywhere() {
        let set = PolicySet::new(
            vec![
                Arc::new(policy(&["Pod"])),
                Arc::new(policy(&["apps/v1/Deployment"])),
                Arc::new(policy(&["*"])),
                Arc::new(policy(&["Pod/exec"])),
            ],
            vec![],
            CelPolicySet::default(),
            1,
        );
        assert_eq!(set.candidates("Pod").len(), 3);
        // The Pod policy's auto-generated rules match pod controllers too.
        assert_eq!(set.candidates("Deployment").len(), 3);
        assert_eq!(set.candidates("Service").len(), 1);
        assert_eq!(set.candidates("ConfigMap").len(), 1);
    }
}
