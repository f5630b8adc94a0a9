//! Turning expected results into rows, exactly as `kyverno test` judges them: resource lookup by
//! name or namespace/name, the fallback to every resource, autogen rule aliases, `Excluded` and
//! `Not found` rows, unscored policies, patched-resource comparison, and the Target map of
//! mutate-existing rules (patched targets compared with `patchedResources`).

use super::run::TestRun;
use crate::evaluation::ResponseMap;
use crate::files;
use crate::resources::{ResourceKey, default_namespace, resources_equal};
use crate::spec::TestResult;
use kybern_engine::response::{EngineResponse, RuleResult, RuleStatus, RuleType};
use std::path::Path;

/// One printed row.
#[derive(Debug, Clone)]
pub struct Row {
    pub policy: String,
    pub rule: String,
    pub resource: String,
    pub outcome: Outcome,
    pub reason: String,
    pub message: String,
    /// The row counts as a skip (expected `skip`, `Excluded`, `Invalid Policy`) when it passed.
    pub counts_as_skip: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "Pass",
            Outcome::Fail => "Fail",
            Outcome::Skip => "Skip",
        }
    }
}

/// The report result of a rule: an unscored policy reports failures as warnings.
pub fn report_result(resp: &EngineResponse, rule: &RuleResult) -> &'static str {
    if rule.status == RuleStatus::Fail && resp.unscored {
        "warn"
    } else {
        rule.status.as_str()
    }
}

fn resource_matches(selector: &str, key: &ResourceKey) -> bool {
    match selector.split_once('/') {
        Some((ns, name)) => key.namespace == ns && key.name == name,
        None => key.name == selector,
    }
}

/// The Target map: per patched-target key, every response with a rule (a mutate-existing result)
/// whose patched target has that key.
fn target_map(trigger: &ResponseMap) -> Vec<(ResourceKey, Vec<&EngineResponse>)> {
    let mut out: Vec<(ResourceKey, Vec<&EngineResponse>)> = Vec::new();
    for resp in trigger.iter().flat_map(|(_, r)| r) {
        for target in resp.rules.iter().filter_map(|r| r.patched_target.as_ref()) {
            let key = ResourceKey::of(target);
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => {
                    if !list.iter().any(|r| std::ptr::eq(*r, resp)) {
                        list.push(resp);
                    }
                }
                None => out.push((key, vec![resp])),
            }
        }
    }
    out
}

/// The keys an entry selects among the Target and trigger maps (a key in both, or matched twice,
/// comes twice, as in the kyverno CLI); nothing matched selects every key.
fn keys_for<'a>(
    t: &TestResult,
    targets: impl Iterator<Item = &'a ResourceKey> + Clone,
    trigger: &'a ResponseMap,
) -> Vec<ResourceKey> {
    let all = targets.chain(trigger.iter().map(|(k, _)| k));
    let mut keys = Vec::new();
    if let Some(list) = &t.resources {
        for r in list {
            keys.extend(all.clone().filter(|k| resource_matches(r, k)).cloned());
        }
    }
    if keys.is_empty() {
        keys = all.cloned().collect();
    }
    keys
}

fn rule_selected(t: &TestResult, rule: &RuleResult) -> bool {
    t.rule.is_empty()
        || rule.name == t.rule
        || rule.name == format!("autogen-{}", t.rule)
        || rule.name == format!("autogen-cronjob-{}", t.rule)
}

/// Compares the patched resource with the expected file: `None` when the file has no such object
/// (the CLI then drops the row unless `failOnMissingResources`).
fn compare_patched(
    dir: &Path,
    file: &str,
    actual: &serde_json::Value,
) -> Result<Option<bool>, String> {
    let (docs, issues) = files::read_documents(&dir.join(file));
    if let Some(i) = issues.first() {
        return Err(i.to_string());
    }
    let key = ResourceKey::of(actual);
    let expected = docs
        .into_iter()
        .map(|d| default_namespace(d.value))
        .find(|v| ResourceKey::of(v) == key);
    Ok(expected.map(|e| resources_equal(actual, &e)))
}

/// Rows of one expected result.
pub fn rows_for(t: &TestResult, run: &TestRun, dir: &Path) -> Vec<Row> {
    let trigger = match &t.operation {
        Some(op) => run.by_operation.get(op).unwrap_or(&run.trigger),
        None => &run.trigger,
    };
    let policy_name = t.policy.rsplit('/').next().unwrap_or_default();
    let mut rows = Vec::new();
    if run.policy_set.unsupported.iter().any(|p| p == policy_name) {
        // Never let an unevaluated policy pass by having nothing to compare.
        rows.push(Row {
            policy: t.policy.clone(),
            rule: t.rule.clone(),
            resource: String::new(),
            outcome: Outcome::Fail,
            reason: "Not supported".into(),
            message: "kybern cannot evaluate this policy kind yet".into(),
            counts_as_skip: false,
        });
        return rows;
    }
    let targets = target_map(trigger);
    for key in keys_for(t, targets.iter().map(|(k, _)| k), trigger) {
        let responses = trigger
            .iter()
            .filter(|(k, _)| *k == key)
            .flat_map(|(_, r)| r);
        let mut resource_rows = 0usize;
        let mut resource_skipped = false;
        for resp in responses.filter(|r| r.policy_name == policy_name) {
            let ruleless = crate::cel_policies::is_ruleless_kind(&resp.policy_kind);
            for rule in resp
                .rules
                .iter()
                .filter(|r| ruleless || rule_selected(t, r))
            {
                if rule.rule_type == RuleType::Generation && !rule.generated.is_empty() {
                    for generated in &rule.generated {
                        rows.push(generated_row(t, rule, resp, generated, dir));
                        resource_rows += 1;
                    }
                    continue;
                }
                let actual_obj = if rule.rule_type == RuleType::Mutation {
                    &resp.patched_resource
                } else {
                    &resp.resource
                };
                match checked_row(t, rule, resp, &key, actual_obj, dir) {
                    Some(r) => {
                        rows.push(r);
                        resource_rows += 1;
                    }
                    None => resource_skipped = true,
                }
            }
            if resource_rows == 0 && !resource_skipped {
                let mut r = row(t, &t.rule, &key, Outcome::Pass, "Excluded", "");
                r.counts_as_skip = true;
                rows.push(r);
                resource_rows += 1;
            }
        }
        // Mutate-existing targets: the first rule that patched this target, whatever the
        // entry's policy and rule say.
        let target_responses = targets
            .iter()
            .filter(|(k, _)| *k == key)
            .flat_map(|(_, r)| r);
        for resp in target_responses {
            let Some((rule, patched)) = resp.rules.iter().find_map(|r| {
                r.patched_target
                    .as_ref()
                    .filter(|p| ResourceKey::of(p) == key)
                    .map(|p| (r, p))
            }) else {
                continue;
            };
            match checked_row(t, rule, resp, &key, patched, dir) {
                Some(r) => {
                    rows.push(r);
                    resource_rows += 1;
                }
                None => resource_skipped = true,
            }
        }
        if resource_rows == 0 && !resource_skipped {
            if run.policy_set.invalid.iter().any(|p| p == policy_name) {
                let mut r = row(t, &t.rule, &key, Outcome::Skip, "Invalid Policy", "");
                r.counts_as_skip = true;
                rows.push(r);
            } else {
                rows.push(row(t, &t.rule, &key, Outcome::Fail, "Not found", ""));
            }
        }
    }
    rows
}

/// Compares `actual` with the entry's `patchedResources` (when given), then the status. `None`
/// when the expected file has no such object and the entry does not ask to fail on that: the
/// kyverno CLI then drops the row.
fn checked_row(
    t: &TestResult,
    rule: &RuleResult,
    resp: &EngineResponse,
    key: &ResourceKey,
    actual: &serde_json::Value,
    dir: &Path,
) -> Option<Row> {
    if let Some(file) = &t.patched_resources {
        match compare_patched(dir, file, actual) {
            Ok(None) if !t.fail_on_missing_resources => return None,
            Ok(Some(true)) => {}
            Ok(Some(false)) => {
                return Some(row(
                    t,
                    &rule.name,
                    key,
                    Outcome::Fail,
                    "Resource diff",
                    "Patched resource didn't match the patched resource in the test result",
                ));
            }
            Ok(None) | Err(_) => {
                return Some(row(
                    t,
                    &rule.name,
                    key,
                    Outcome::Fail,
                    "Resource error",
                    "patched resource not found",
                ));
            }
        }
    }
    let got = report_result(resp, rule);
    let mut r = if got == t.expected() {
        row(t, &rule.name, key, Outcome::Pass, "Ok", &rule.message)
    } else {
        row(
            t,
            &rule.name,
            key,
            Outcome::Fail,
            &format!("Want {}, got {got}", t.expected()),
            &rule.message,
        )
    };
    r.counts_as_skip = t.expected() == "skip";
    Some(r)
}

/// One row per generated object: it must equal an object of the expected file(s), then the
/// status is compared.
fn generated_row(
    t: &TestResult,
    rule: &RuleResult,
    resp: &EngineResponse,
    generated: &serde_json::Value,
    dir: &Path,
) -> Row {
    let name = generated
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let resource = format!("/{name}");
    let mk = |outcome, reason: &str, message: &str| Row {
        policy: t.policy.clone(),
        rule: rule.name.clone(),
        resource: resource.clone(),
        outcome,
        reason: reason.to_string(),
        message: message.to_string(),
        counts_as_skip: false,
    };
    let mut expected_files: Vec<&String> = t.generated_resources.iter().collect();
    expected_files.extend(t.generated_resource.iter());
    if !expected_files.is_empty() {
        let mut found_any = false;
        let mut equal = false;
        for f in expected_files {
            match compare_patched(dir, f, generated) {
                Ok(Some(true)) => {
                    found_any = true;
                    equal = true;
                    break;
                }
                Ok(Some(false)) => found_any = true,
                Ok(None) | Err(_) => {}
            }
        }
        if !found_any {
            return mk(
                Outcome::Fail,
                "Resource error",
                "generated resource not found in the expected files",
            );
        }
        if !equal {
            return mk(
                Outcome::Fail,
                "Resource diff",
                "Generated resource didn't match any of the expected generated resources",
            );
        }
    }
    let got = report_result(resp, rule);
    let mut r = if got == t.expected() {
        mk(Outcome::Pass, "Ok", &rule.message)
    } else {
        mk(
            Outcome::Fail,
            &format!("Want {}, got {got}", t.expected()),
            &rule.message,
        )
    };
    r.counts_as_skip = t.expected() == "skip";
    r
}

fn row(
    t: &TestResult,
    rule: &str,
    key: &ResourceKey,
    outcome: Outcome,
    reason: &str,
    message: &str,
) -> Row {
    Row {
        policy: t.policy.clone(),
        rule: rule.to_string(),
        resource: key.to_string(),
        outcome,
        reason: reason.to_string(),
        message: message.to_string(),
        counts_as_skip: false,
    }
}
