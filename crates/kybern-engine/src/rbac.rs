//! The Roles and ClusterRoles a requester holds through RoleBindings and ClusterRoleBindings, as
//! Kyverno computes `request.roles` (`namespace:name`) and `request.clusterRoles` for matching.

use crate::request::UserInfo;
use serde_json::Value;

fn field<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// True when one of the binding's subjects is the requester: the user by name, one of its
/// groups, or the service account (a subject without a namespace takes the binding's).
fn binds(binding: &Value, user: &UserInfo, namespace: &str) -> bool {
    let subjects = binding.get("subjects").and_then(Value::as_array);
    subjects.into_iter().flatten().any(|s| {
        let name = field(s, "/name");
        match field(s, "/kind") {
            "ServiceAccount" => {
                let ns = match field(s, "/namespace") {
                    "" => namespace,
                    ns => ns,
                };
                !ns.is_empty() && user.username == format!("system:serviceaccount:{ns}:{name}")
            }
            "Group" => user.groups.iter().any(|g| g == name),
            "User" => user.username == name,
            _ => false,
        }
    })
}

/// Roles (`namespace:name`) and ClusterRoles bound to the requester by the given objects; other
/// kinds among them are ignored. Both lists are sorted and without duplicates.
pub fn requester_roles<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
    user: &UserInfo,
) -> (Vec<String>, Vec<String>) {
    let mut roles = Vec::new();
    let mut cluster_roles = Vec::new();
    for o in objects {
        let role_kind = field(o, "/roleRef/kind");
        let role_name = field(o, "/roleRef/name");
        match field(o, "/kind") {
            "RoleBinding" => {
                let ns = field(o, "/metadata/namespace");
                if !binds(o, user, ns) {
                    continue;
                }
                match role_kind {
                    "Role" => roles.push(format!("{ns}:{role_name}")),
                    "ClusterRole" => cluster_roles.push(role_name.to_string()),
                    _ => {}
                }
            }
            "ClusterRoleBinding" if role_kind == "ClusterRole" && binds(o, user, "") => {
                cluster_roles.push(role_name.to_string());
            }
            _ => {}
        }
    }
    roles.sort();
    roles.dedup();
    cluster_roles.sort();
    cluster_roles.dedup();
    (roles, cluster_roles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn bindings_give_roles_by_user_group_and_service_account() {
        let objects = [
            json!({"kind": "RoleBinding", "metadata": {"name": "a", "namespace": "shop"},
                "roleRef": {"kind": "Role", "name": "editor"},
                "subjects": [{"kind": "User", "name": "jane"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "shop"},
                "roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "devs"}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "c"},
                "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "d", "namespace": "ci"},
                "roleRef": {"kind": "Role", "name": "runner"},
                "subjects": [{"kind": "ServiceAccount", "name": "deployer"}]}),
            json!({"kind": "ConfigMap", "metadata": {"name": "x"}}),
        ];
        let cases = [
            (user("jane", &[]), vec!["shop:editor"], vec![]),
            (user("joe", &["devs"]), vec![], vec!["view"]),
            (
                user("system:serviceaccount:ci:deployer", &[]),
                vec!["ci:runner"],
                vec!["cluster-admin"],
            ),
            (user("nobody", &["others"]), vec![], vec![]),
        ];
        for (u, roles, cluster_roles) in cases {
            let (r, c) = requester_roles(&objects, &u);
            assert_eq!(r, roles, "{}", u.username);
            assert_eq!(c, cluster_roles, "{}", u.username);
        }
    }
}
