//! Requests the server admits without evaluating, as Kyverno's `kyverno` ConfigMap sets them:
//! `resourceFilters` (`[Kind,Namespace,Name]`, wildcards everywhere) and the
//! `excludeUsernames`/`excludeGroups`/`excludeRoles`/`excludeClusterRoles` lists (an entry with a
//! `!` prefix includes instead, and inclusions win). Kyverno's own report and UpdateRequest kinds
//! are always filtered.

use kybern_engine::request::AdmissionRequest;
use kybern_engine::wildcard;
use serde_json::Value;

/// Kinds Kyverno never evaluates in admission.
const INTERNAL_KINDS: [&str; 5] = [
    "AdmissionReport",
    "ClusterAdmissionReport",
    "BackgroundScanReport",
    "ClusterBackgroundScanReport",
    "UpdateRequest",
];

/// A problem with the configuration document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FilterError {
    pub field: String,
    pub message: String,
}

/// One `[Kind,Namespace,Name]` entry; the kind split into its parts.
#[derive(Debug, Clone, PartialEq)]
struct ResourceFilter {
    group: String,
    version: String,
    kind: String,
    subresource: String,
    namespace: String,
    name: String,
}

impl ResourceFilter {
    /// The kind is a kind selector as in `match` (`Kind`, `Kind/subresource`, `v1/Kind`,
    /// `group/version/Kind[/subresource]`); a missing namespace or name is empty, as in Kyverno.
    fn parse(kind: &str, namespace: &str, name: &str) -> Self {
        let k = kybern_engine::matching::parse_kind(kind);
        ResourceFilter {
            group: k.group.to_string(),
            version: k.version.to_string(),
            kind: k.kind.to_string(),
            subresource: k.subresource.unwrap_or_default().to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn matches(&self, req: &AdmissionRequest, name: &str) -> bool {
        let gvk = req.gvk();
        if !(wildcard::matches(&self.group, &gvk.group)
            && wildcard::matches(&self.version, &gvk.version)
            && wildcard::matches(&self.kind, &gvk.kind)
            && wildcard::matches(&self.subresource, &req.subresource))
        {
            return false;
        }
        if wildcard::matches(&self.namespace, req.namespace())
            && wildcard::matches(&self.name, name)
        {
            return true;
        }
        // A Namespace is filtered by the namespace field too: `[*,kube-system,*]`.
        gvk.group.is_empty() && gvk.kind == "Namespace" && wildcard::matches(&self.namespace, name)
    }
}

/// Patterns of one exclusion list and the `!` entries that override them.
#[derive(Debug, Clone, Default, PartialEq)]
struct Patterns {
    exclude: Vec<String>,
    include: Vec<String>,
}

impl Patterns {
    fn parse(list: &str) -> Self {
        let mut p = Patterns::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.strip_prefix('!') {
                Some(i) => p.include.push(i.to_string()),
                None => p.exclude.push(entry.to_string()),
            }
        }
        p
    }
}

fn any_match<'a>(patterns: &[String], values: impl IntoIterator<Item = &'a String>) -> bool {
    let values: Vec<&String> = values.into_iter().collect();
    patterns
        .iter()
        .any(|p| values.iter().any(|v| wildcard::matches(p, v)))
}

/// The filters in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdmissionFilters {
    resources: Vec<ResourceFilter>,
    usernames: Patterns,
    groups: Patterns,
    roles: Patterns,
    cluster_roles: Patterns,
}

impl AdmissionFilters {
    /// Reads a `kyverno` ConfigMap (its `data`); keys this server does not use are ignored.
    pub fn from_config_map(doc: &Value) -> Result<Self, FilterError> {
        let data = match doc.get("data") {
            None | Some(Value::Null) => return Ok(AdmissionFilters::default()),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(FilterError {
                    field: "data".into(),
                    message: "must be a map of strings".into(),
                });
            }
        };
        let text = |key: &str| -> Result<&str, FilterError> {
            match data.get(key) {
                None | Some(Value::Null) => Ok(""),
                Some(Value::String(s)) => Ok(s),
                Some(_) => Err(FilterError {
                    field: format!("data.{key}"),
                    message: "must be a string".into(),
                }),
            }
        };
        Ok(AdmissionFilters {
            resources: parse_resource_filters(text("resourceFilters")?)?,
            usernames: Patterns::parse(text("excludeUsernames")?),
            groups: Patterns::parse(text("excludeGroups")?),
            roles: Patterns::parse(text("excludeRoles")?),
            cluster_roles: Patterns::parse(text("excludeClusterRoles")?),
        })
    }

    /// Why the request is admitted without evaluation, or `None` when it is evaluated. `name` is
    /// the AdmissionRequest's `name` (empty: the object's). `request.roles` and
    /// `request.cluster_roles` must already be resolved.
    pub fn skip_reason(&self, req: &AdmissionRequest, name: &str) -> Option<String> {
        let kind = req.gvk().kind;
        if INTERNAL_KINDS.contains(&kind.as_str()) {
            return Some(format!("{kind} is one of Kyverno's own kinds"));
        }
        let name = match name {
            "" => kybern_engine::objects::str_at(req.resource(), &["metadata", "name"]),
            n => n,
        };
        if self.resources.iter().any(|f| f.matches(req, name)) {
            return Some("the resource matches resourceFilters".into());
        }
        let user = &req.user_info;
        let username = [user.username.clone()];
        let lists = [
            (&self.usernames, &username[..]),
            (&self.groups, &user.groups[..]),
            (&self.roles, &req.roles[..]),
            (&self.cluster_roles, &req.cluster_roles[..]),
        ];
        if lists.iter().any(|(p, v)| any_match(&p.include, v.iter())) {
            return None;
        }
        lists
            .iter()
            .any(|(p, v)| any_match(&p.exclude, v.iter()))
            .then(|| "the requester is excluded by the configuration".to_string())
    }
}

/// Reads the filters of a `kyverno` ConfigMap file (YAML or JSON; the first ConfigMap document).
/// Errors name the file and, for a bad value, the document and field.
pub fn read_config_map(path: &std::path::Path) -> Result<AdmissionFilters, String> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
    let limits = kybern_engine::yaml::Limits::default();
    let (docs, err) = kybern_engine::yaml::parse_documents(&text, &limits);
    if let Some(e) = err {
        return Err(format!("{file}: {e}"));
    }
    let (index, doc) = docs
        .into_iter()
        .find(|(_, d)| d.get("kind").and_then(Value::as_str) == Some("ConfigMap"))
        .ok_or_else(|| format!("{file}: no ConfigMap document"))?;
    AdmissionFilters::from_config_map(&doc)
        .map_err(|e| format!("{file}: document {}: {e}", index + 1))
}

/// `[Event,*,*] [*/*,kube-system,*]`: bracketed triples, separated by anything.
fn parse_resource_filters(text: &str) -> Result<Vec<ResourceFilter>, FilterError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        let Some(len) = rest[start..].find(']') else {
            return Err(FilterError {
                field: "data.resourceFilters".into(),
                message: format!("unclosed entry {:?}", &rest[start..]),
            });
        };
        let entry = &rest[start + 1..start + len];
        let parts: Vec<&str> = entry.split(',').map(str::trim).collect();
        let filter = match parts.as_slice() {
            [kind] => ResourceFilter::parse(kind, "", ""),
            [kind, namespace] => ResourceFilter::parse(kind, namespace, ""),
            [kind, namespace, name] => ResourceFilter::parse(kind, namespace, name),
            _ => {
                return Err(FilterError {
                    field: "data.resourceFilters".into(),
                    message: format!("entry [{entry}] is not [Kind,Namespace,Name]"),
                });
            }
        };
        out.push(filter);
        rest = &rest[start + len + 1..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybern_engine::request::{Gvk, Operation, UserInfo};
    use serde_json::json;

    fn request(kind: &str, namespace: &str, name: &str, sub: &str, user: &str) -> AdmissionRequest {
        AdmissionRequest {
            operation: Operation::Create,
            object: json!({"apiVersion": "v1", "kind": kind,
                "metadata": {"name": name, "namespace": namespace}})
            .into(),
            subresource: sub.into(),
            kind_override: Some(Gvk {
                group: String::new(),
                version: "v1".into(),
                kind: kind.into(),
            }),
            user_info: UserInfo {
                username: user.into(),
                groups: vec!["system:authenticated".into()],
                ..UserInfo::default()
            },
            ..AdmissionRequest::default()
        }
    }

    fn filters(data: Value) -> AdmissionFilters {
        AdmissionFilters::from_config_map(&json!({"kind": "ConfigMap", "data": data})).unwrap()
    }

    #[test]
    fn resource_filters_match_kind_subresource_namespace_and_name() {
        let f = filters(json!({"resourceFilters":
            "[Event,*,*] [*/*,kube-system,*] [Node,*,*] [Node/?*,*,*] [Pod/binding,*,*] [ConfigMap,*,kube-root-ca.crt] [v1/Secret,*,*] [Lease] [Service,shop]"}));
        let cases = [
            (request("Event", "shop", "e", "", "u"), true),
            (request("Pod", "kube-system", "p", "", "u"), true),
            (request("Pod", "kube-system", "p", "exec", "u"), true),
            (request("Namespace", "", "kube-system", "", "u"), true),
            (request("Node", "", "n1", "", "u"), true),
            (request("Node", "", "n1", "status", "u"), true),
            (request("Pod", "shop", "p", "binding", "u"), true),
            (request("Pod", "shop", "p", "exec", "u"), false),
            (
                request("ConfigMap", "shop", "kube-root-ca.crt", "", "u"),
                true,
            ),
            (request("ConfigMap", "shop", "settings", "", "u"), false),
            (request("Pod", "shop", "p", "", "u"), false),
            (request("UpdateRequest", "kyverno", "ur", "", "u"), true),
            (request("Secret", "shop", "s", "", "u"), true),
            // Entries without a namespace or name match only an empty one, as in Kyverno.
            (request("Lease", "", "l", "", "u"), false),
            (request("Service", "shop", "svc", "", "u"), false),
        ];
        for (req, skipped) in cases {
            assert_eq!(
                f.skip_reason(&req, "").is_some(),
                skipped,
                "{} {} {} {}",
                req.gvk().kind,
                req.namespace(),
                req.subresource,
                req.resource()["metadata"]["name"]
            );
        }
    }

    #[test]
    fn the_requests_name_is_used_for_subresources() {
        let f = filters(json!({"resourceFilters": "[Pod/exec,*,debug-pod]"}));
        let mut exec = request("Pod", "shop", "", "exec", "u");
        exec.object = json!({"kind": "PodExecOptions", "apiVersion": "v1"}).into();
        assert!(f.skip_reason(&exec, "debug-pod").is_some());
        assert!(f.skip_reason(&exec, "web").is_none());
    }

    #[test]
    fn exclusions_skip_requesters_and_bang_entries_include() {
        let f = filters(json!({
            "excludeUsernames": "system:serviceaccount:kube-system:*, !system:serviceaccount:kube-system:replicaset-controller",
            "excludeGroups": "system:nodes",
            "excludeClusterRoles": "cluster-admin"}));
        let mut node = request("Pod", "shop", "p", "", "kubelet");
        node.user_info.groups.push("system:nodes".into());
        let mut admin = request("Pod", "shop", "p", "", "jane");
        admin.cluster_roles = vec!["cluster-admin".into()];
        let cases = [
            (
                request(
                    "Pod",
                    "shop",
                    "p",
                    "",
                    "system:serviceaccount:kube-system:job-controller",
                ),
                true,
            ),
            (
                request(
                    "Pod",
                    "shop",
                    "p",
                    "",
                    "system:serviceaccount:kube-system:replicaset-controller",
                ),
                false,
            ),
            (request("Pod", "shop", "p", "", "jane"), false),
            (node, true),
            (admin, true),
        ];
        for (req, skipped) in cases {
            assert_eq!(
                f.skip_reason(&req, "").is_some(),
                skipped,
                "{}",
                req.user_info.username
            );
        }
    }

    #[test]
    fn malformed_configuration_names_the_field() {
        let bad = [
            (
                json!({"data": {"resourceFilters": "[Event,*,*,*]"}}),
                "data.resourceFilters",
            ),
            (
                json!({"data": {"resourceFilters": "[Event,*,*"}}),
                "data.resourceFilters",
            ),
            (
                json!({"data": {"excludeGroups": ["a"]}}),
                "data.excludeGroups",
            ),
            (json!({"data": "x"}), "data"),
        ];
        for (doc, field) in bad {
            let e = AdmissionFilters::from_config_map(&doc).unwrap_err();
            assert_eq!(e.field, field, "{doc}");
        }
    }

    #[test]
    fn configmap_files_report_the_file_and_document() {
        let dir = std::env::temp_dir().join(format!("kybern-filters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("none.yaml", "kind: Secret\n", "no ConfigMap document"),
            (
                "bad.yaml",
                "kind: Secret\n---\nkind: ConfigMap\ndata:\n  excludeGroups: [a]\n",
                "document 2: data.excludeGroups",
            ),
            ("missing.yaml", "", "cannot read"),
        ];
        for (name, text, want) in cases {
            let path = dir.join(name);
            if !text.is_empty() {
                std::fs::write(&path, text).unwrap();
            }
            let e = read_config_map(&path).unwrap_err();
            assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        }
        let ok = dir.join("ok.yaml");
        std::fs::write(
            &ok,
            "kind: ConfigMap\ndata:\n  resourceFilters: '[Event,*,*]'\n",
        )
        .unwrap();
        assert_ne!(read_config_map(&ok).unwrap(), AdmissionFilters::default());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
