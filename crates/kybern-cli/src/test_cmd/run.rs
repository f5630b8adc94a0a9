//! Running one test: loading its inputs and evaluating every policy on every resource, once for
//! the default operation and once more for each operation the results ask about.

use crate::files::{self, Document, Issue};
use crate::policy_set::PolicySet;
use crate::provider::FileProvider;
use crate::resources::{ResourceKey, default_namespace};
use crate::spec::{Test, UserInfoSpec, ValuesSpec};
use kybern_engine::engine::{Engine, PolicyContext, RuleValues};
use kybern_engine::request::{AdmissionRequest, Operation};
use kybern_engine::response::EngineResponse;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Responses by resource, in resource order.
pub type ResponseMap = Vec<(ResourceKey, Vec<EngineResponse>)>;

/// Everything a test run produced.
pub struct TestRun {
    pub trigger: ResponseMap,
    pub by_operation: BTreeMap<String, ResponseMap>,
    pub policy_set: PolicySet,
    pub resource_count: usize,
    /// Non-fatal problems to print (missing files, unsupported kinds, broken policies).
    pub notes: Vec<String>,
}

fn join_all(dir: &Path, names: &[String]) -> Vec<PathBuf> {
    names.iter().map(|n| dir.join(n)).collect()
}

fn read_one_doc<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, String> {
    let (docs, issues) = files::read_documents(path);
    if let Some(i) = issues.first() {
        return Err(format!("failed to load {what}: {i}"));
    }
    let doc = docs.into_iter().next().ok_or_else(|| format!("{what} file {} is empty", path.display()))?;
    serde_path_to_error::deserialize(doc.value)
        .map_err(|e| format!("failed to decode {what} {} at {}: {}", path.display(), e.path(), e.into_inner()))
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
                return Err(format!("values file {f} uses a deprecated schema (missing apiVersion or kind)"));
            }
            Ok(v)
        }
        None => Ok(ValuesSpec::default()),
    }
}

fn build_provider(test: &Test, dir: &Path, values: &ValuesSpec, notes: &mut Vec<String>) -> FileProvider {
    let mut provider = FileProvider::default();
    if !test.cluster_resources.is_empty() {
        let (docs, issues) = files::read_paths(&join_all(dir, &test.cluster_resources));
        notes.extend(issues.iter().map(issue_text));
        provider.cluster = Some(files::expand_lists(docs).into_iter().map(|d| default_namespace(d.value)).collect());
    }
    for r in &test.api_call_responses {
        let url = r.url.clone().or_else(|| r.url_path.clone()).unwrap_or_default();
        provider.api_responses.push((url, r.method.clone().unwrap_or_default(), r.response.body.clone()));
    }
    for g in &test.global_context_entries {
        let mut data = match &g.data {
            Some(d) => d.clone(),
            None => {
                let mut items = g.resources.clone();
                let (docs, issues) = files::read_paths(&join_all(dir, &g.resource_files));
                notes.extend(issues.iter().map(issue_text));
                items.extend(files::expand_lists(docs).into_iter().map(|d| d.value));
                Value::Array(items)
            }
        };
        if let Some(fp) = g.field_path.as_deref().filter(|f| !f.is_empty()) {
            data = kybern_engine::variables::compiled(fp).and_then(|e| e.search(&data)).unwrap_or(Value::Null);
        }
        if !g.projections.is_empty() {
            let mut projected = Map::new();
            projected.insert("".into(), data.clone());
            for p in &g.projections {
                let v = kybern_engine::variables::compiled(&p.path).and_then(|e| e.search(&data)).unwrap_or(Value::Null);
                projected.insert(p.name.clone(), v);
            }
            data = Value::Object(projected);
        }
        provider.global_entries.insert(g.name.clone(), data);
    }
    for ns in &values.namespace_selector {
        provider.namespace_labels.insert(ns.name.clone(), ns.labels.clone());
    }
    let mut ns_objects: Vec<&Value> = values.namespaces.iter().collect();
    if let Some(cluster) = &provider.cluster {
        ns_objects.extend(cluster.iter().filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace")));
    }
    for ns in ns_objects {
        let name = ns.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let labels = ns
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), kybern_engine::variables::to_text(v))).collect())
            .unwrap_or_default();
        provider.namespace_labels.entry(name).or_insert(labels);
    }
    provider
}

/// Loads resources; a missing file is reported and skipped, duplicates keep the first copy.
fn load_resources(test: &Test, dir: &Path, notes: &mut Vec<String>) -> Vec<Document> {
    let mut out: Vec<Document> = Vec::new();
    for r in &test.resources {
        let path = dir.join(r);
        if !path.exists() {
            notes.push(format!("failed to load resources: {}", path.display()));
            continue;
        }
        let (docs, issues) = files::read_paths(&[path]);
        notes.extend(issues.iter().map(issue_text));
        for mut d in files::expand_lists(docs) {
            d.value = default_namespace(d.value);
            let key = ResourceKey::of(&d.value);
            if out.iter().any(|o| ResourceKey::of(&o.value).same_object(&key)) {
                notes.push(format!("warning: found duplicated resource {key}"));
                continue;
            }
            out.push(d);
        }
    }
    out
}

struct Inputs<'a> {
    values: &'a ValuesSpec,
    user: Option<&'a UserInfoSpec>,
    provider: &'a FileProvider,
    set: &'a PolicySet,
}

fn evaluate(inputs: &Inputs, resources: &[Document], forced_op: Option<Operation>) -> ResponseMap {
    let engine = Engine::new(inputs.provider);
    let mut out = Vec::with_capacity(resources.len());
    for doc in resources {
        let resource = &doc.value;
        let name = resource.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let namespace = resource.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let mut responses = Vec::with_capacity(inputs.set.policies.len());
        for policy in &inputs.set.policies {
            let mut variables = inputs.values.global_values.clone();
            let mut rule_values: BTreeMap<String, RuleValues> = BTreeMap::new();
            for pv in inputs.values.policies.iter().filter(|p| p.name == policy.name) {
                for rv in pv.resources.iter().filter(|r| r.name == name) {
                    variables.extend(rv.values.clone());
                }
                for rule in &pv.rules {
                    rule_values.insert(
                        rule.name.clone(),
                        RuleValues { values: rule.values.clone(), foreach_values: rule.foreach_values.clone() },
                    );
                }
            }
            let op = forced_op.unwrap_or_else(|| {
                variables
                    .get("request.operation")
                    .and_then(Value::as_str)
                    .and_then(Operation::parse)
                    .unwrap_or(Operation::Create)
            });
            if forced_op.is_some() {
                variables.insert("request.operation".into(), Value::String(op.as_str().into()));
            }
            let (object, old_object) = if op == Operation::Delete {
                (Value::Null, resource.clone())
            } else {
                (resource.clone(), Value::Null)
            };
            let request = AdmissionRequest {
                operation: op,
                object,
                old_object,
                user_info: inputs.user.map(|u| u.user_info.clone()).unwrap_or_default(),
                roles: inputs.user.map(|u| u.roles.clone()).unwrap_or_default(),
                cluster_roles: inputs.user.map(|u| u.cluster_roles.clone()).unwrap_or_default(),
                namespace_labels: inputs.provider.namespace_labels.get(namespace).cloned(),
                subresource: String::new(),
                kind_override: None,
                dry_run: false,
                variables,
                no_user_info: inputs.user.is_none(),
            };
            let pctx = PolicyContext::new(&request);
            responses.push(engine.validate(policy, &pctx, &inputs.set.exceptions, &rule_values));
        }
        out.push((ResourceKey::of(resource), responses));
    }
    out
}

/// Loads a test's inputs and evaluates them. `Err` aborts the whole run, as the kyverno CLI does.
pub fn run_test(test: &Test, dir: &Path) -> Result<TestRun, String> {
    let mut notes = Vec::new();
    let values = load_values(test, dir)?;
    let user: Option<UserInfoSpec> = match &test.userinfo {
        Some(f) => {
            let u: UserInfoSpec = read_one_doc(&dir.join(f), "user info")?;
            if u.api_version.is_empty() || u.kind.is_empty() {
                return Err(format!("user info file {f} uses a deprecated schema (missing apiVersion or kind)"));
            }
            Some(u)
        }
        None => None,
    };
    let mut set = PolicySet::default();
    let (docs, issues) = files::read_paths(&join_all(dir, &test.policies));
    notes.extend(issues.iter().map(issue_text));
    set.add_policies(&docs, false);
    let (docs, issues) = files::read_paths(&join_all(dir, &test.exceptions));
    notes.extend(issues.iter().map(issue_text));
    for d in &docs {
        set.add_exception(d);
    }
    notes.extend(set.issues.iter().map(issue_text));
    let provider = build_provider(test, dir, &values, &mut notes);
    let resources = load_resources(test, dir, &mut notes);
    let inputs = Inputs { values: &values, user: user.as_ref(), provider: &provider, set: &set };
    let trigger = evaluate(&inputs, &resources, None);
    let mut by_operation = BTreeMap::new();
    for r in &test.results {
        if let Some(op) = &r.operation
            && !by_operation.contains_key(op)
        {
            let parsed = Operation::parse(op).ok_or_else(|| format!("unknown operation {op:?}"))?;
            by_operation.insert(op.clone(), evaluate(&inputs, &resources, Some(parsed)));
        }
    }
    Ok(TestRun { trigger, by_operation, resource_count: resources.len(), policy_set: set, notes })
}
