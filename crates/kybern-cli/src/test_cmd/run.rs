//! Running one test: loading its inputs and evaluating every policy on every resource, once for
//! the default operation and once more for each operation the results ask about.

use crate::files::{self, Document, Issue};
use crate::policy_set::PolicySet;
use crate::provider::{FileProvider, MockResponse};
use crate::resources::{ResourceKey, default_namespace};

use crate::evaluation::{Inputs, ResponseMap, evaluate};
use crate::spec::{Test, UserInfoSpec, ValuesSpec};
use kybern_engine::request::Operation;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything a test run produced.
pub struct TestRun {
    pub trigger: ResponseMap,
    pub by_operation: BTreeMap<String, ResponseMap>,
    pub policy_set: PolicySet,
    pub resource_count: usize,
    /// Non-fatal problems to print (missing resource files, unsupported kinds, broken policies).
    pub notes: Vec<String>,
    /// Input files or documents that could not be read: the test is failed, not evaluated.
    pub load_errors: Vec<String>,
    /// `--explain` text for the default operation, when asked.
    pub explain: Option<String>,
}

fn join_all(dir: &Path, names: &[String]) -> Vec<PathBuf> {
    names.iter().map(|n| dir.join(n)).collect()
}

fn read_one_doc<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, String> {
    if !path.exists() {
        return Err(format!(
            "failed to load {what}: {}: does not exist",
            path.display()
        ));
    }
    let (docs, issues) = files::read_documents(path);
    if let Some(i) = issues.first() {
        return Err(format!("failed to load {what}: {i}"));
    }
    let doc = docs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{what} file {} is empty", path.display()))?;
    serde_path_to_error::deserialize(doc.value).map_err(|e| {
        format!(
            "failed to decode {what} {} at {}: {}",
            path.display(),
            e.path(),
            e.inner()
        )
    })
}

fn issue_text(i: &Issue) -> String {
    i.to_string()
}

/// Loads the values (inline `values:` wins over the `variables:` file).
fn load_values(test: &Test, dir: &Path) -> Result<ValuesSpec, String> {
    if let Some(v) = &test.values {
        return Ok(v.clone());
    }
    match &test.variables {
        Some(f) => {
            let v: ValuesSpec = read_one_doc(&dir.join(f), "values")?;
            if v.api_version.is_empty() || v.kind.is_empty() {
                return Err(format!(
                    "values file {f} uses a deprecated schema (missing apiVersion or kind)"
                ));
            }
            Ok(v)
        }
        None => Ok(ValuesSpec::default()),
    }
}

/// Loads the objects the test's context reads. Files that cannot be read go to `errors`.
fn build_provider(
    test: &Test,
    dir: &Path,
    values: &ValuesSpec,
    errors: &mut Vec<String>,
) -> FileProvider {
    let mut provider = FileProvider::default();
    if !test.cluster_resources.is_empty() {
        let (docs, issues) = files::read_paths(&join_all(dir, &test.cluster_resources));
        errors.extend(issues.iter().map(issue_text));
        let mut objects = Vec::new();
        // Kinds the CRDs named by `ClusterResource` documents declare cluster-scoped.
        let mut cluster_kinds: Vec<String> = Vec::new();
        for d in files::expand_lists(docs) {
            // A `ClusterResource` document carries its objects under spec.resources and the
            // CRDs of their kinds, as files, under spec.crds.
            if d.value.get("kind").and_then(Value::as_str) == Some("ClusterResource") {
                let items = d.value.pointer("/spec/resources").and_then(Value::as_array);
                objects.extend(items.into_iter().flatten().cloned());
                let base = d.file.parent().unwrap_or(dir);
                let crds: Vec<_> = d
                    .value
                    .pointer("/spec/crds")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|f| base.join(f))
                    .collect();
                let (crd_docs, issues) = files::read_paths(&crds);
                errors.extend(issues.iter().map(issue_text));
                cluster_kinds.extend(crd_docs.iter().filter_map(|c| {
                    (c.value.pointer("/spec/scope").and_then(Value::as_str) == Some("Cluster"))
                        .then(|| c.value.pointer("/spec/names/kind").and_then(Value::as_str))
                        .flatten()
                        .map(str::to_string)
                }));
            } else {
                objects.push(d.value);
            }
        }
        let objects = objects
            .into_iter()
            .map(|o| {
                let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
                if cluster_kinds.iter().any(|k| k == kind) {
                    o
                } else {
                    default_namespace(o)
                }
            })
            .collect();
        provider.cluster = Some(objects);
    }
    for r in &test.api_call_responses {
        let url = r
            .url
            .clone()
            .or_else(|| r.url_path.clone())
            .unwrap_or_default();
        provider.api_responses.push(MockResponse {
            url,
            method: r.method.clone().unwrap_or_default(),
            status: r.response.status_code.unwrap_or(200),
            body: r.response.body.clone(),
        });
    }
    for g in &test.global_context_entries {
        let mut data = match &g.data {
            Some(d) => d.clone(),
            None => {
                let mut items = g.resources.clone();
                let (docs, issues) = files::read_paths(&join_all(dir, &g.resource_files));
                errors.extend(issues.iter().map(issue_text));
                items.extend(files::expand_lists(docs).into_iter().map(|d| d.value));
                Value::Array(items)
            }
        };
        if let Some(fp) = g.field_path.as_deref().filter(|f| !f.is_empty()) {
            data = kybern_engine::variables::compiled(fp)
                .and_then(|e| e.search(&data))
                .unwrap_or(Value::Null);
        }
        if !g.projections.is_empty() {
            let mut projected = Map::new();
            projected.insert("".into(), data.clone());
            for p in &g.projections {
                let v = kybern_engine::variables::compiled(&p.path)
                    .and_then(|e| e.search(&data))
                    .unwrap_or(Value::Null);
                projected.insert(p.name.clone(), v);
            }
            data = Value::Object(projected);
        }
        provider.global_entries.insert(g.name.clone(), data);
    }
    // Clone sources named by results are visible to every generate rule of the test.
    let clone_files: Vec<String> = test
        .results
        .iter()
        .filter_map(|r| r.clone_source_resource.clone())
        .collect();
    let (docs, issues) = files::read_paths(&join_all(dir, &clone_files));
    errors.extend(issues.iter().map(issue_text));
    provider.clone_sources = files::expand_lists(docs)
        .into_iter()
        .map(|d| default_namespace(d.value))
        .collect();
    // Existing objects that mutate rules with `targets` patch.
    let (docs, issues) = files::read_paths(&join_all(dir, &test.target_resources));
    errors.extend(issues.iter().map(issue_text));
    provider.targets = files::expand_lists(docs)
        .into_iter()
        .map(|d| default_namespace(d.value))
        .collect();
    crate::cel_policies::add_test_objects(test, dir, &mut provider, errors);
    provider.add_namespace_labels(values);
    provider
}

/// Loads resources; duplicates keep the first copy. A missing file is reported and skipped, as
/// `kyverno test` does (Kyverno's own suites rely on it); a file or document that cannot be read
/// goes to `errors`.
fn load_resources(
    test: &Test,
    dir: &Path,
    notes: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> Vec<Document> {
    let mut out: Vec<Document> = Vec::new();
    for r in &test.resources {
        let path = dir.join(r);
        if !path.exists() {
            notes.push(format!("failed to load resources: {}", path.display()));
            continue;
        }
        let (docs, issues) = files::read_paths(&[path]);
        errors.extend(issues.iter().map(issue_text));
        for mut d in files::expand_lists(docs) {
            d.value = default_namespace(d.value);
            let key = ResourceKey::of(&d.value);
            if out
                .iter()
                .any(|o| ResourceKey::of(&o.value).same_object(&key))
            {
                notes.push(format!("warning: found duplicated resource {key}"));
                continue;
            }
            out.push(d);
        }
    }
    out
}

/// Loads a test's inputs and evaluates them. `Err` aborts the whole run, as the kyverno CLI does;
/// inputs that cannot be read fail this test only (`load_errors`), and it is then not evaluated.
pub fn run_test(
    test: &Test,
    dir: &Path,
    registry: Option<&std::sync::Arc<kybern_registry::Registry>>,
    explain: bool,
) -> Result<TestRun, String> {
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    let values = match load_values(test, dir) {
        Ok(v) => v,
        Err(e) if e.starts_with("failed to load") => {
            errors.push(e);
            ValuesSpec::default()
        }
        Err(e) => return Err(e),
    };
    let user: Option<UserInfoSpec> = match &test.userinfo {
        Some(f) => match read_one_doc::<UserInfoSpec>(&dir.join(f), "user info") {
            Ok(u) if u.api_version.is_empty() || u.kind.is_empty() => {
                return Err(format!(
                    "user info file {f} uses a deprecated schema (missing apiVersion or kind)"
                ));
            }
            Ok(u) => Some(u),
            Err(e) if e.starts_with("failed to load") => {
                errors.push(e);
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let mut set = PolicySet::default();
    let (docs, issues) = files::read_paths(&join_all(dir, &test.policies));
    errors.extend(issues.iter().map(issue_text));
    set.add_policies(&docs, false);
    let (docs, issues) = files::read_paths(&join_all(dir, &test.exceptions));
    errors.extend(issues.iter().map(issue_text));
    for d in &docs {
        set.add_exception(d);
    }
    notes.extend(set.issues.iter().map(issue_text));
    let mut provider = build_provider(test, dir, &values, &mut errors);
    provider.registry = registry.cloned();
    let resources = load_resources(test, dir, &mut notes, &mut errors);
    if !errors.is_empty() {
        return Ok(TestRun {
            trigger: Vec::new(),
            by_operation: BTreeMap::new(),
            resource_count: resources.len(),
            policy_set: set,
            notes,
            load_errors: errors,
            explain: None,
        });
    }
    let inputs = Inputs {
        values: &values,
        user: user.as_ref(),
        provider: &provider,
        set: &set,
    };
    let mut trigger = evaluate(&inputs, &resources, None);
    let explain = explain.then(|| {
        let mut text = String::new();
        let values: Vec<Value> = resources.iter().map(|d| d.value.clone()).collect();
        crate::explain::render(&inputs, &values, &trigger, &mut text);
        text
    });
    crate::cel_policies::payloads::evaluate_test_payloads(test, dir, &inputs, &mut trigger)?;
    let mut by_operation = BTreeMap::new();
    for r in &test.results {
        if let Some(op) = &r.operation
            && !by_operation.contains_key(op)
        {
            let parsed = Operation::parse(op).ok_or_else(|| format!("unknown operation {op:?}"))?;
            by_operation.insert(op.clone(), evaluate(&inputs, &resources, Some(parsed)));
        }
    }
    Ok(TestRun {
        trigger,
        by_operation,
        resource_count: resources.len(),
        policy_set: set,
        notes,
        load_errors: Vec::new(),
        explain,
    })
}
