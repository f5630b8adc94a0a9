//! `kybern create`: skeletons of the files the kyverno CLI and a Kyverno install read (policy
//! exception, test, values, user info, metrics ConfigMap, aggregated ClusterRole), with
//! `kyverno create`'s subcommands and flags. Each is written to standard output or `-o FILE`.
//! Flag values that do not parse are errors naming the flag, where `kyverno create` drops them
//! silently.

mod yaml_text;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Subcommand};
use std::path::PathBuf;
use yaml_text::YamlText;

/// Flags of `kybern create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub what: CreateCommand,
}

/// What `kybern create` writes.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a PolicyException (kyverno.io/v2) exempting policy rules for the resources the
    /// `--any`/`--all` filters select.
    Exception(ExceptionArgs),
    /// Create a kyverno-test.yaml (cli.kyverno.io/v1alpha1 Test).
    Test(TestFileArgs),
    /// Create a values file (cli.kyverno.io/v1alpha1 Values) for `kybern test`/`apply`.
    Values(ValuesArgs),
    /// Create a user info file (cli.kyverno.io/v1alpha1 UserInfo) for `kybern apply --userinfo`.
    UserInfo(UserInfoArgs),
    /// Create the ConfigMap that selects the namespaces Kyverno reports metrics for.
    MetricsConfig(MetricsConfigArgs),
    /// Create a ClusterRole aggregated to Kyverno's controllers, granting them access to more
    /// resource types.
    #[command(visible_alias = "role")]
    ClusterRole(ClusterRoleArgs),
}

/// Where a skeleton goes.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Output path (standard output when not set).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Flags of `kybern create exception`.
#[derive(Debug, clap::Args)]
pub struct ExceptionArgs {
    /// Name of the policy exception.
    pub name: String,
    /// Namespace of the policy exception (`default` when not set).
    #[arg(long = "namespace")]
    pub namespace: Option<String>,
    /// Whether background scans honour the exception (`--background=false` to turn off).
    #[arg(
        short = 'b',
        long = "background",
        action = ArgAction::Set,
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true"
    )]
    pub background: bool,
    /// Policy name followed by rule names: `--policy-rules=policy,rule-1,rule-2` (repeatable).
    #[arg(long = "policy-rules", required = true, value_name = "POLICY,RULE...")]
    pub policy_rules: Vec<String>,
    /// A resource filter of `match.any`: `kind=..,name=..,namespace=..,operation=..`, each key
    /// repeatable (repeatable).
    #[arg(long = "any", value_name = "FILTER")]
    pub any: Vec<String>,
    /// A resource filter of `match.all`, same syntax as `--any` (repeatable).
    #[arg(long = "all", value_name = "FILTER")]
    pub all: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Flags of `kybern create test`.
#[derive(Debug, clap::Args)]
pub struct TestFileArgs {
    /// Test name.
    #[arg(short = 'n', long = "name", default_value = "test-name")]
    pub name: String,
    /// Policy files (repeatable, or comma-separated).
    #[arg(short = 'p', long = "policy", value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Resource files (repeatable, or comma-separated).
    #[arg(short = 'r', long = "resource", value_delimiter = ',')]
    pub resources: Vec<String>,
    /// Values file.
    #[arg(short = 'f', long = "values")]
    pub values: Option<String>,
    /// An expected `pass`: `policy,rule,resource,namespace,kind[,patchedResource]`; the
    /// namespace may be empty (repeatable).
    #[arg(long = "pass", value_name = "RESULT")]
    pub pass: Vec<String>,
    /// An expected `fail`, same syntax as `--pass` (repeatable).
    #[arg(long = "fail", value_name = "RESULT")]
    pub fail: Vec<String>,
    /// An expected `skip`, same syntax as `--pass` (repeatable).
    #[arg(long = "skip", value_name = "RESULT")]
    pub skip: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Flags of `kybern create values`.
#[derive(Debug, clap::Args)]
pub struct ValuesArgs {
    /// Namespace labels: `name,key=value,...` (repeatable).
    #[arg(short = 'n', long = "ns-selector", value_name = "NAMESPACE,LABELS")]
    pub ns_selector: Vec<String>,
    /// A global value `key=value` (repeatable, or comma-separated).
    #[arg(
        short = 'g',
        long = "global",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub global: Vec<String>,
    /// Values of a policy rule: `policy,rule,key=value,...` (repeatable).
    #[arg(long = "rule", value_name = "POLICY,RULE,VALUES")]
    pub rule: Vec<String>,
    /// Values for one resource: `policy,resource,key=value,...` (repeatable).
    #[arg(long = "resource", value_name = "POLICY,RESOURCE,VALUES")]
    pub resource: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Flags of `kybern create user-info`.
#[derive(Debug, clap::Args)]
pub struct UserInfoArgs {
    /// User name.
    #[arg(short = 'u', long = "username", default_value = "")]
    pub username: String,
    /// Role (repeatable, or comma-separated).
    #[arg(short = 'r', long = "role", value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Cluster role (repeatable, or comma-separated).
    #[arg(short = 'c', long = "cluster-role", value_delimiter = ',')]
    pub cluster_roles: Vec<String>,
    /// Group (repeatable, or comma-separated).
    #[arg(short = 'g', long = "group", value_delimiter = ',')]
    pub groups: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Flags of `kybern create metrics-config`.
#[derive(Debug, clap::Args)]
pub struct MetricsConfigArgs {
    /// ConfigMap name.
    #[arg(short = 'n', long = "name", default_value = "kyverno-metrics")]
    pub name: String,
    /// ConfigMap namespace.
    #[arg(long = "namespace", default_value = "kyverno")]
    pub namespace: String,
    /// Namespace to report metrics for (repeatable, or comma-separated).
    #[arg(short = 'i', long = "include", value_delimiter = ',')]
    pub include: Vec<String>,
    /// Namespace to leave out of metrics (repeatable, or comma-separated).
    #[arg(short = 'e', long = "exclude", value_delimiter = ',')]
    pub exclude: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Flags of `kybern create cluster-role`.
#[derive(Debug, clap::Args)]
pub struct ClusterRoleArgs {
    /// Name: the ClusterRole is `kyverno-<name>-permission`.
    pub name: String,
    /// API groups of the resources (comma-separated; `""` or `core` for the core group).
    #[arg(
        short = 'g',
        long = "api-groups",
        required = true,
        value_delimiter = ','
    )]
    pub api_groups: Vec<String>,
    /// Resource types (repeatable, or comma-separated).
    #[arg(long = "resources", required = true, value_delimiter = ',')]
    pub resources: Vec<String>,
    /// Verbs (repeatable, or comma-separated), or `all` for create, get, update, delete, list
    /// and watch.
    #[arg(long = "verbs", required = true, value_delimiter = ',')]
    pub verbs: Vec<String>,
    /// Kyverno controllers the role is aggregated to (repeatable, or comma-separated).
    #[arg(
        long = "controllers",
        value_delimiter = ',',
        default_value = "background-controller"
    )]
    pub controllers: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Runs `kybern create`.
pub fn execute(args: &CreateArgs) -> Result<i32> {
    let (text, out) = match &args.what {
        CreateCommand::Exception(a) => (exception(a)?, &a.out),
        CreateCommand::Test(a) => (test_file(a)?, &a.out),
        CreateCommand::Values(a) => (values(a)?, &a.out),
        CreateCommand::UserInfo(a) => (user_info(a), &a.out),
        CreateCommand::MetricsConfig(a) => (metrics_config(a), &a.out),
        CreateCommand::ClusterRole(a) => (cluster_role(a)?, &a.out),
    };
    match &out.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(0)
}

/// The trimmed parts of a comma-separated flag value (empty ones included, for the checks).
fn parts(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).collect()
}

fn key_value<'a>(flag: &str, part: &'a str) -> Result<(&'a str, &'a str)> {
    match part.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.contains('=') => Ok((k, v)),
        _ => bail!("{flag}: expected key=value, got {part:?}"),
    }
}

#[derive(Default)]
struct ResourceFilter {
    kinds: Vec<String>,
    names: Vec<String>,
    namespaces: Vec<String>,
    operations: Vec<String>,
}

fn resource_filter(flag: &str, value: &str) -> Result<ResourceFilter> {
    let mut f = ResourceFilter::default();
    for part in parts(value) {
        let (k, v) = key_value(flag, part)?;
        let list = match k {
            "kind" => &mut f.kinds,
            "name" => &mut f.names,
            "namespace" => &mut f.namespaces,
            "operation" => {
                if !matches!(v, "CREATE" | "UPDATE" | "DELETE" | "CONNECT") {
                    bail!("{flag}: operation must be CREATE, UPDATE, DELETE or CONNECT, got {v:?}");
                }
                &mut f.operations
            }
            _ => bail!("{flag}: unknown key {k:?} (expected kind, name, namespace or operation)"),
        };
        list.push(v.to_string());
    }
    Ok(f)
}

fn filters(
    y: &mut YamlText,
    indent: usize,
    key: &str,
    flag: &str,
    values: &[String],
) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    y.key(indent, key);
    for value in values {
        let f = resource_filter(flag, value)?;
        // The filter's fields sit under `resources` (Kyverno's own template leaves that level
        // out, which Kyverno's schema then rejects).
        y.item_key(indent, "resources");
        for (name, list) in [
            ("kinds", &f.kinds),
            ("names", &f.names),
            ("namespaces", &f.namespaces),
            ("operations", &f.operations),
        ] {
            if !list.is_empty() {
                y.key(indent + 4, name);
                y.items(indent + 4, list);
            }
        }
    }
    Ok(())
}

fn exception(a: &ExceptionArgs) -> Result<String> {
    if a.any.is_empty() && a.all.is_empty() {
        bail!(
            "give the resources the exception applies to with --any or --all (e.g. --any kind=Pod,namespace=dev): a PolicyException without match is rejected"
        );
    }
    let mut y = YamlText::default();
    y.field(0, "apiVersion", "kyverno.io/v2");
    y.field(0, "kind", "PolicyException");
    y.key(0, "metadata");
    y.field(2, "name", &a.name);
    y.field(2, "namespace", a.namespace.as_deref().unwrap_or("default"));
    y.key(0, "spec");
    y.raw_field(2, "background", if a.background { "true" } else { "false" });
    y.key(2, "match");
    filters(&mut y, 4, "any", "--any", &a.any)?;
    filters(&mut y, 4, "all", "--all", &a.all)?;
    y.key(2, "exceptions");
    for pr in &a.policy_rules {
        let p = parts(pr);
        let [policy, rules @ ..] = p.as_slice() else {
            bail!("--policy-rules: expected policy,rule..., got {pr:?}");
        };
        if policy.is_empty() || rules.is_empty() || rules.iter().any(|r| r.is_empty()) {
            bail!("--policy-rules: expected a policy name and at least one rule name, got {pr:?}");
        }
        y.item_field(2, "policyName", policy);
        y.key(4, "ruleNames");
        y.items(4, rules);
    }
    Ok(y.finish())
}

struct ExpectedResult<'a> {
    policy: &'a str,
    rule: &'a str,
    resource: String,
    kind: &'a str,
    patched: Option<&'a str>,
    result: &'static str,
}

fn expected_result<'a>(
    flag: &str,
    value: &'a str,
    result: &'static str,
) -> Result<ExpectedResult<'a>> {
    let p = parts(value);
    let (policy, rule, resource, namespace, kind, patched) = match p.as_slice() {
        [p, r, res, ns, k] => (*p, *r, *res, *ns, *k, None),
        [p, r, res, ns, k, patched] => (*p, *r, *res, *ns, *k, Some(*patched)),
        _ => bail!(
            "{flag}: expected policy,rule,resource,namespace,kind[,patchedResource], got {value:?}"
        ),
    };
    if policy.is_empty() || rule.is_empty() || resource.is_empty() {
        bail!("{flag}: policy, rule and resource must not be empty in {value:?}");
    }
    // A namespace is written the way kyverno-test.yaml names namespaced resources.
    let resource = if namespace.is_empty() {
        resource.to_string()
    } else {
        format!("{namespace}/{resource}")
    };
    Ok(ExpectedResult {
        policy,
        rule,
        resource,
        kind,
        patched: patched.filter(|p| !p.is_empty()),
        result,
    })
}

fn test_file(a: &TestFileArgs) -> Result<String> {
    let mut rows = Vec::new();
    for (flag, values, result) in [
        ("--pass", &a.pass, "pass"),
        ("--fail", &a.fail, "fail"),
        ("--skip", &a.skip, "skip"),
    ] {
        for v in values {
            rows.push(expected_result(flag, v, result)?);
        }
    }
    let mut y = YamlText::default();
    y.field(0, "apiVersion", "cli.kyverno.io/v1alpha1");
    y.field(0, "kind", "Test");
    y.key(0, "metadata");
    y.field(2, "name", &a.name);
    y.list(0, "policies", &a.policies);
    y.list(0, "resources", &a.resources);
    if let Some(v) = &a.values {
        y.field(0, "variables", v);
    }
    if rows.is_empty() {
        y.raw_field(0, "results", "[]");
    } else {
        y.key(0, "results");
    }
    for r in &rows {
        y.item_field(0, "policy", r.policy);
        y.field(2, "rule", r.rule);
        y.key(2, "resources");
        y.items(2, [r.resource.as_str()]);
        if !r.kind.is_empty() {
            y.field(2, "kind", r.kind);
        }
        if let Some(p) = r.patched {
            y.field(2, "patchedResources", p);
        }
        y.field(2, "result", r.result);
    }
    Ok(y.finish())
}

/// `key=value` pairs of a flag; the value is read as a YAML scalar, as a hand-written values
/// file would be (`replicas=3` is the number 3).
fn key_values<'a>(flag: &str, items: &[&'a str]) -> Result<Vec<(&'a str, serde_json::Value)>> {
    items
        .iter()
        .map(|part| {
            let (k, v) = key_value(flag, part)?;
            Ok((k, yaml_text::scalar_value(v)))
        })
        .collect()
}

type NamedValues<'a> = (&'a str, Vec<(&'a str, serde_json::Value)>);

fn values(a: &ValuesArgs) -> Result<String> {
    // Policies in the order first named, each with its rules and resources.
    let mut policies: Vec<(&str, Vec<NamedValues>, Vec<NamedValues>)> = Vec::new();
    for (flag, list, is_rule) in [
        ("--rule", &a.rule, true),
        ("--resource", &a.resource, false),
    ] {
        for v in list {
            let p = parts(v);
            let [policy, name, rest @ ..] = p.as_slice() else {
                bail!("{flag}: expected policy,name,key=value..., got {v:?}");
            };
            if policy.is_empty() || name.is_empty() {
                bail!("{flag}: policy and name must not be empty in {v:?}");
            }
            let kv = key_values(flag, rest)?;
            let i = match policies.iter().position(|p| p.0 == *policy) {
                Some(i) => i,
                None => {
                    policies.push((policy, Vec::new(), Vec::new()));
                    policies.len() - 1
                }
            };
            let entry = &mut policies[i];
            if is_rule {
                entry.1.push((name, kv));
            } else {
                entry.2.push((name, kv));
            }
        }
    }
    let global_parts: Vec<&str> = a.global.iter().map(String::as_str).collect();
    let globals = key_values("--global", &global_parts)?;
    let mut selectors = Vec::new();
    for v in &a.ns_selector {
        let p = parts(v);
        let [namespace, labels @ ..] = p.as_slice() else {
            bail!("--ns-selector: expected namespace,key=value..., got {v:?}");
        };
        if namespace.is_empty() || labels.is_empty() {
            bail!("--ns-selector: expected a namespace and at least one label, got {v:?}");
        }
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|l| key_value("--ns-selector", l))
            .collect::<Result<_>>()?;
        selectors.push((*namespace, labels));
    }

    let mut y = YamlText::default();
    y.field(0, "apiVersion", "cli.kyverno.io/v1alpha1");
    y.field(0, "kind", "Values");
    y.comment(0, "values of policy rules and of single resources");
    if policies.is_empty() {
        y.raw_field(0, "policies", "[]");
    } else {
        y.key(0, "policies");
    }
    for (policy, rules, resources) in &policies {
        y.item_field(0, "name", policy);
        for (key, entries) in [("rules", rules), ("resources", resources)] {
            if entries.is_empty() {
                continue;
            }
            y.key(2, key);
            for (name, kv) in entries {
                y.item_field(2, "name", name);
                y.map(4, "values", kv);
            }
        }
    }
    y.comment(0, "values for every policy and resource");
    y.map(0, "globalValues", &globals);
    y.comment(
        0,
        "labels of the namespaces policies select with namespaceSelector",
    );
    if selectors.is_empty() {
        y.raw_field(0, "namespaceSelector", "[]");
    } else {
        y.key(0, "namespaceSelector");
    }
    for (namespace, labels) in &selectors {
        y.item_field(0, "name", namespace);
        let labels: Vec<(&str, serde_json::Value)> = labels
            .iter()
            .map(|(k, v)| (*k, serde_json::Value::from(*v)))
            .collect();
        y.map(2, "labels", &labels);
    }
    Ok(y.finish())
}

fn user_info(a: &UserInfoArgs) -> String {
    let mut y = YamlText::default();
    y.field(0, "apiVersion", "cli.kyverno.io/v1alpha1");
    y.field(0, "kind", "UserInfo");
    y.list(0, "roles", &a.roles);
    y.list(0, "clusterRoles", &a.cluster_roles);
    y.key(0, "userInfo");
    y.field(2, "username", &a.username);
    y.list(2, "groups", &a.groups);
    y.finish()
}

fn metrics_config(a: &MetricsConfigArgs) -> String {
    // Kyverno reads `namespaces` as JSON with optional `include` and `exclude` lists.
    let mut json = String::from("{");
    let lists = [("include", &a.include), ("exclude", &a.exclude)];
    let present: Vec<_> = lists.iter().filter(|(_, l)| !l.is_empty()).collect();
    for (i, (key, list)) in present.iter().enumerate() {
        json.push_str(&format!("\n  \"{key}\": ["));
        for (j, ns) in list.iter().enumerate() {
            let sep = if j + 1 < list.len() { "," } else { "" };
            json.push_str(&format!(
                "\n    {}{sep}",
                serde_json::Value::from(ns.as_str())
            ));
        }
        let sep = if i + 1 < present.len() { "," } else { "" };
        json.push_str(&format!("\n  ]{sep}"));
    }
    json.push_str(if present.is_empty() { "}" } else { "\n}" });
    let mut y = YamlText::default();
    y.field(0, "apiVersion", "v1");
    y.field(0, "kind", "ConfigMap");
    y.key(0, "metadata");
    y.field(2, "name", &a.name);
    y.field(2, "namespace", &a.namespace);
    y.key(0, "data");
    y.block(2, "namespaces", &json);
    y.finish()
}

fn cluster_role(a: &ClusterRoleArgs) -> Result<String> {
    if a.name.is_empty() {
        bail!("the name must not be empty");
    }
    if a.resources.iter().any(String::is_empty) || a.resources.is_empty() {
        bail!("--resources: resource types must not be empty");
    }
    if a.controllers.iter().any(String::is_empty) || a.controllers.is_empty() {
        bail!("--controllers: controller names must not be empty");
    }
    let verbs: Vec<String> = if a.verbs.iter().any(|v| v == "all") {
        ["create", "get", "update", "delete", "list", "watch"]
            .map(String::from)
            .to_vec()
    } else if a.verbs.is_empty() || a.verbs.iter().any(String::is_empty) {
        bail!("--verbs: verbs must not be empty");
    } else {
        a.verbs.clone()
    };
    // `core` names the core group, whose name in RBAC rules is the empty string.
    let groups: Vec<&str> = a
        .api_groups
        .iter()
        .map(|g| if g == "core" { "" } else { g.as_str() })
        .collect();
    let mut y = YamlText::default();
    y.field(0, "apiVersion", "rbac.authorization.k8s.io/v1");
    y.field(0, "kind", "ClusterRole");
    y.key(0, "metadata");
    y.field(2, "name", &format!("kyverno-{}-permission", a.name));
    y.key(2, "labels");
    for c in &a.controllers {
        y.field(4, &format!("rbac.kyverno.io/aggregate-to-{c}"), "true");
    }
    y.key(0, "rules");
    y.item_key(0, "apiGroups");
    y.items(2, &groups);
    y.list(2, "resources", &a.resources);
    y.list(2, "verbs", &verbs);
    Ok(y.finish())
}
