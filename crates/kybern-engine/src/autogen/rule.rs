//! Building one generated rule from one rule (`generateRule`, `createRule`, `convertRule`).

use serde_json::{Map, Value, json};

use super::kinds::{contains_kind, gvk_array, kinds_of};
use super::text::{self, Target};
use super::{CRON_JOB, autogen_rule_name, is_autogen_rule_name, non_null, rule_name};

/// True if the rule has a non-empty `generate` block (autogen is then off for the policy).
pub(super) fn has_generate(rule: &Value) -> bool {
    non_null(rule.get("generate")).is_some_and(|g| !is_empty_object(g))
}

/// True if the rule mutates with `patchesJson6902`, at top level or in a foreach entry.
pub(super) fn has_json6902(rule: &Value) -> bool {
    let Some(mutate) = non_null(rule.get("mutate")) else {
        return false;
    };
    let non_empty = |v: &Value| {
        v.get("patchesJson6902")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    non_empty(mutate) || array(mutate.get("foreach")).iter().any(non_empty)
}

/// The resource descriptions of a match/exclude block: inline `resources`, then each `any`, then
/// each `all` filter's `resources` (`None` where a block has none).
pub(super) fn resource_descriptions(block: Option<&Value>) -> impl Iterator<Item = Option<&Value>> {
    let inline = block.map(|b| non_null(b.get("resources")));
    let filters = block
        .into_iter()
        .flat_map(|b| array(b.get("any")).iter().chain(array(b.get("all"))))
        .map(|f| non_null(f.get("resources")));
    inline.into_iter().chain(filters)
}

/// All kinds a match/exclude block names, inline first (`MatchResources.GetKinds`).
fn block_kinds(block: Option<&Value>) -> Vec<&str> {
    resource_descriptions(block).flat_map(kinds_of).collect()
}

/// How `any`/`all` filters get their kinds replaced.
#[derive(Clone, Copy)]
enum Filters {
    /// Only filters naming `Pod` (rules for the ordinary controllers).
    NamingPod,
    /// Every filter (the CronJob rule).
    Every,
}

/// The `autogen-<rule>` rule for `kinds`, before field projection and path rewriting; `None` if
/// the rule is itself generated, does not match `Pod`, excludes kinds without `Pod`, or has
/// nothing Kyverno knows how to carry over.
pub(super) fn generate_for_controllers(rule: &Value, kinds: &[String]) -> Option<Value> {
    let name = rule_name(rule);
    if is_autogen_rule_name(name) {
        return None;
    }
    let match_kinds = block_kinds(rule.get("match"));
    let exclude_kinds = block_kinds(non_null(rule.get("exclude")));
    if !contains_kind(&match_kinds, "Pod")
        || (!exclude_kinds.is_empty() && !contains_kind(&exclude_kinds, "Pod"))
    {
        return None;
    }
    generate(
        rule,
        autogen_rule_name("autogen", name),
        "template",
        "spec/template",
        kinds,
        Filters::NamingPod,
    )
}

/// The `autogen-cronjob-<rule>` rule, derived (as Kyverno does) from the controllers rule
/// `intermediate`, so patterns are wrapped twice and message references shifted twice.
pub(super) fn generate_for_cron_job(intermediate: &Value, original: &Value) -> Option<Value> {
    generate(
        intermediate,
        autogen_rule_name("autogen-cronjob", rule_name(original)),
        "jobTemplate",
        "spec/jobTemplate/spec/template",
        &[CRON_JOB.to_string()],
        Filters::Every,
    )
}

/// Kyverno's `generateRule`: new name and kinds, then the first applicable body rewrite.
fn generate(
    rule: &Value,
    name: String,
    template_key: &str,
    shift: &str,
    kinds: &[String],
    filters: Filters,
) -> Option<Value> {
    let mut out = rule.as_object()?.clone();
    out.insert("name".into(), Value::String(name));

    let match_block = out
        .entry("match")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(block) = match_block.as_object_mut() {
        replace_kinds(block, kinds, filters, true);
    }
    if let Some(block) = out.get_mut("exclude").and_then(Value::as_object_mut) {
        replace_kinds(block, kinds, filters, false);
    }

    let wrap = |target: &Value| json!({"spec": {template_key: target}});

    if let Some(mutate) = non_null(rule.get("mutate")) {
        if let Some(patch) = non_null(mutate.get("patchStrategicMerge")) {
            out.insert("mutate".into(), json!({"patchStrategicMerge": wrap(patch)}));
            return Some(Value::Object(out));
        }
        let foreach = array(mutate.get("foreach"));
        if !foreach.is_empty() {
            let entries: Vec<Value> = foreach
                .iter()
                .map(|entry| foreach_mutation(entry, &wrap))
                .collect();
            out.insert("mutate".into(), json!({"foreach": entries}));
            return Some(Value::Object(out));
        }
    }

    if let Some(validate) = non_null(rule.get("validate"))
        && let Some(new_validate) = generate_validate(validate, shift, &wrap)
    {
        out.insert("validate".into(), new_validate);
        return Some(Value::Object(out));
    }

    if non_null(rule.get("verifyImages")).is_some() {
        return Some(Value::Object(out));
    }
    None
}

/// The replacement `validate` block, or `None` when the block has nothing autogen carries.
fn generate_validate(
    validate: &Value,
    shift: &str,
    wrap: &dyn Fn(&Value) -> Value,
) -> Option<Value> {
    let field = |k: &str| non_null(validate.get(k));
    if let Some(pattern) = field("pattern") {
        let mut v = kept_validate_fields(validate, shift, "pattern");
        v.insert("pattern".into(), wrap(pattern));
        return Some(Value::Object(v));
    }
    if let Some(deny) = field("deny") {
        let mut v = kept_validate_fields(validate, shift, "deny");
        v.insert("deny".into(), deny.clone());
        return Some(Value::Object(v));
    }
    if let Some(pod_security) = field("podSecurity") {
        let mut v = kept_validate_fields(validate, shift, "podSecurity");
        // Kyverno rebuilds the block from these three fields only.
        let mut pss = Map::new();
        for key in ["level", "version", "exclude"] {
            if let Some(x) = non_null(pod_security.get(key)).filter(|x| !is_empty_value(x)) {
                pss.insert(key.into(), x.clone());
            }
        }
        v.insert("podSecurity".into(), Value::Object(pss));
        return Some(Value::Object(v));
    }
    if let Some(any_pattern) = field("anyPattern") {
        let mut v = kept_validate_fields(validate, shift, "anyPattern");
        // A non-array anyPattern fails to decode in Kyverno and yields no patterns at all.
        let wrapped: Vec<Value> = array(Some(any_pattern)).iter().map(wrap).collect();
        if !wrapped.is_empty() {
            v.insert("anyPattern".into(), Value::Array(wrapped));
        }
        return Some(Value::Object(v));
    }
    let foreach = array(validate.get("foreach"));
    if !foreach.is_empty() {
        // Foreach bodies are copied: their element paths are fixed only by the path rewrite.
        let mut v = kept_validate_fields(validate, shift, "pattern");
        v.insert("foreach".into(), Value::Array(foreach.to_vec()));
        return Some(Value::Object(v));
    }
    if field("cel").is_some() {
        // CEL validation is kept whole; the CEL path rewrite does the work.
        return Some(validate.clone());
    }
    if let Some(assert) = field("assert") {
        let mut v = validate.as_object()?.clone();
        v.insert("assert".into(), wrap_assertion(assert, wrap));
        return Some(Value::Object(v));
    }
    None
}

/// The fields every rebuilt `validate` keeps: the shifted message and the failure settings.
fn kept_validate_fields(validate: &Value, shift: &str, pivot: &str) -> Map<String, Value> {
    let mut v = Map::new();
    if let Some(message) = validate.get("message").and_then(Value::as_str)
        && !message.is_empty()
    {
        v.insert(
            "message".into(),
            Value::String(text::shift_references(message, shift, pivot)),
        );
    }
    for key in [
        "failureAction",
        "failureActionOverrides",
        "allowExistingViolations",
    ] {
        if let Some(x) = non_null(validate.get(key)).filter(|x| !is_empty_value(x)) {
            v.insert(key.into(), x.clone());
        }
    }
    v
}

/// A foreach mutation entry keeps only `list`, `context`, `preconditions` and the wrapped
/// `patchStrategicMerge` (so `order`, nested `foreach` and the rest are dropped, as in Kyverno).
fn foreach_mutation(entry: &Value, wrap: &dyn Fn(&Value) -> Value) -> Value {
    let mut out = Map::new();
    for key in ["list", "context", "preconditions"] {
        // `list` is a Go string with omitempty, so an empty one disappears too.
        if let Some(x) =
            non_null(entry.get(key)).filter(|x| !is_empty_value(x) && x.as_str() != Some(""))
        {
            out.insert(key.into(), x.clone());
        }
    }
    let patch = entry
        .get("patchStrategicMerge")
        .cloned()
        .unwrap_or(Value::Null);
    out.insert("patchStrategicMerge".into(), wrap(&patch));
    Value::Object(out)
}

/// Kyverno's `createAutogenAssertion`: top-level `object`/`oldObject` maps move under the template.
fn wrap_assertion(assert: &Value, wrap: &dyn Fn(&Value) -> Value) -> Value {
    let Some(map) = assert.as_object() else {
        return assert.clone();
    };
    let mut out = map.clone();
    for node in ["object", "oldObject"] {
        if let Some(obj) = map.get(node).filter(|v| v.is_object()) {
            out.insert(node.into(), wrap(obj));
        }
    }
    Value::Object(out)
}

/// Kind replacement in one match/exclude block: `any` if non-empty, else `all` if non-empty,
/// else the inline kinds (for exclude only when it already names kinds).
fn replace_kinds(
    block: &mut Map<String, Value>,
    kinds: &[String],
    filters: Filters,
    is_match: bool,
) {
    for key in ["any", "all"] {
        if let Some(list) = block.get_mut(key).and_then(Value::as_array_mut)
            && !list.is_empty()
        {
            for filter in list.iter_mut().filter_map(Value::as_object_mut) {
                let names_pod = contains_kind(&kinds_of(filter.get("resources")), "Pod");
                if matches!(filters, Filters::Every) || names_pod {
                    set_kinds(filter, kinds);
                }
            }
            return;
        }
    }
    let has_kinds = !kinds_of(block.get("resources")).is_empty();
    if is_match || has_kinds {
        set_kinds(block, kinds);
    }
}

fn set_kinds(holder: &mut Map<String, Value>, kinds: &[String]) {
    let resources = holder
        .entry("resources")
        .or_insert_with(|| Value::Object(Map::new()));
    if !resources.is_object() {
        *resources = Value::Object(Map::new());
    }
    if let Some(resources) = resources.as_object_mut() {
        resources.insert("kinds".into(), gvk_array(kinds));
    }
}

/// Kyverno's `createRule` + `convertRule`: keep only the fields its intermediate rule type has
/// (dropping e.g. `imageExtractors` and `reportProperties`), then rewrite request paths.
pub(super) fn finish(rule: Value, target: Target) -> Value {
    let Value::Object(mut map) = rule else {
        return rule;
    };
    let mut out = Map::new();
    if let Some(name) = map.remove("name") {
        out.insert("name".into(), name);
    }
    for key in [
        "match",
        "exclude",
        "celPreconditions",
        "context",
        "preconditions",
        "mutate",
        "validate",
        "verifyImages",
        "skipBackgroundRequests",
    ] {
        let blank = match key {
            // Kyverno compares these structs with their zero value; their pattern, deny and
            // patch fields are JSON pointers, so any value given there (even null leaves, as in
            // `pattern: {spec: {hostIPC: null}}`) makes the block non-zero.
            "validate" | "mutate" => is_zero_struct,
            _ => is_blank,
        };
        if let Some(v) = map.remove(key).filter(|v| !blank(v)) {
            out.insert(key.into(), v);
        }
    }
    let cel = out
        .get("validate")
        .is_some_and(|v| non_null(v.get("cel")).is_some());
    text::rewrite_paths(Value::Object(out), target, cel)
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

/// Empty objects and arrays count as absent (Go's `omitempty` and zero-value checks).
fn is_empty_value(v: &Value) -> bool {
    is_empty_object(v) || v.as_array().is_some_and(Vec::is_empty)
}

/// Null, or an object whose fields are all null or empty strings: the only way a JSON-decoded
/// Go struct made of strings, pointers and slices compares equal to its zero value.
fn is_zero_struct(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(map) => map.values().all(|f| f.is_null() || f.as_str() == Some("")),
        _ => false,
    }
}

/// Null, or containers holding only blanks: what Go's deep comparison with a zero struct
/// (e.g. `exclude: {resources: {}}`) treats as not set.
fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_blank),
        _ => false,
    }
}
