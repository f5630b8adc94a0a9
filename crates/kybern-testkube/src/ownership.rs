//! Which field manager set which field, kept only as far as server-side apply conflicts need.
//!
//! The real server records this in `metadata.managedFields`; the fake keeps it beside the
//! object and never shows it. Ownership is per leaf (a scalar or a whole list; lists are not
//! split by merge key). An apply by manager M conflicts when it sets a leaf that another manager
//! owns to a different value, unless forced: that is how `kube-lease-manager` learns that
//! someone else took a lease first. Updates (PUT and non-apply PATCH) never conflict and take
//! ownership of the leaves they change, as on the real server.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A manager identity: the real server keys managers by name and operation.
fn apply_id(manager: &str) -> String {
    format!("Apply:{manager}")
}

fn update_id(manager: &str) -> String {
    format!("Update:{manager}")
}

/// Leaf paths of one object and the managers owning each.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Owners(BTreeMap<Vec<String>, BTreeSet<String>>);

/// An apply that would overwrite other managers' fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApplyConflicts(pub Vec<(String, String)>);

impl ApplyConflicts {
    /// The message the real server gives, e.g.
    /// `Apply failed with 1 conflict: conflict with "m": .spec.holderIdentity`.
    pub(crate) fn message(&self) -> String {
        let n = self.0.len();
        let list: Vec<String> = self
            .0
            .iter()
            .map(|(who, path)| format!("conflict with \"{who}\": {path}"))
            .collect();
        let s = if n == 1 { "" } else { "s" };
        format!("Apply failed with {n} conflict{s}: {}", list.join("; "))
    }
}

impl Owners {
    /// Records an apply by `manager` of `applied` onto `live` (the object before the apply),
    /// whose result is `result`. Without `force`, other managers' leaves set to a new value
    /// are conflicts and nothing is recorded.
    pub(crate) fn apply(
        &mut self,
        manager: &str,
        force: bool,
        applied: &Value,
        live: &Value,
        result: &Value,
    ) -> Result<(), ApplyConflicts> {
        let me = apply_id(manager);
        let mut applied_leaves = Vec::new();
        leaves(applied, Vec::new(), &mut applied_leaves);
        let mut conflicts = Vec::new();
        for (path, value) in &applied_leaves {
            let others: Vec<&String> = self
                .0
                .get(path)
                .map(|set| set.iter().filter(|o| **o != me).collect())
                .unwrap_or_default();
            if !others.is_empty() && leaf_at(live, path) != Some(*value) {
                for o in others {
                    let name = o.split_once(':').map_or(o.as_str(), |(_, n)| n);
                    conflicts.push((name.to_string(), dotted(path)));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(ApplyConflicts(conflicts));
        }
        for (path, value) in &applied_leaves {
            let set = self.0.entry(path.clone()).or_default();
            if leaf_at(live, path) != Some(*value) {
                set.clear();
            }
            set.insert(me.clone());
        }
        self.prune(result);
        Ok(())
    }

    /// Records an update by `manager` from `before` to `after`: changed leaves become its own.
    pub(crate) fn update(&mut self, manager: &str, before: Option<&Value>, after: &Value) {
        let me = update_id(manager);
        let mut after_leaves = Vec::new();
        leaves(after, Vec::new(), &mut after_leaves);
        for (path, value) in after_leaves {
            if before.and_then(|b| leaf_at(b, &path)) != Some(value) {
                self.0.insert(path, BTreeSet::from([me.clone()]));
            }
        }
        self.prune(after);
    }

    /// Forgets leaves that the object no longer has.
    fn prune(&mut self, object: &Value) {
        self.0
            .retain(|path, set| !set.is_empty() && leaf_at(object, path).is_some());
    }
}

/// A path as the real server prints it: `.spec.holderIdentity`.
fn dotted(path: &[String]) -> String {
    path.iter().map(|s| format!(".{s}")).collect()
}

/// Fields that belong to the server, not to a manager.
fn ignored(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        p.as_slice(),
        ["apiVersion" | "kind"]
            | [
                "metadata",
                "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "generation"
                    | "creationTimestamp"
                    | "deletionTimestamp"
                    | "managedFields"
            ]
    )
}

/// Collects `(path, value)` for every scalar or list below `value`.
fn leaves<'a>(value: &'a Value, path: Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() || path.is_empty() => {
            for (k, v) in map {
                let mut child = path.clone();
                child.push(k.clone());
                leaves(v, child, out);
            }
        }
        Value::Null => {}
        _ if ignored(&path) => {}
        _ => out.push((path, value)),
    }
}

fn leaf_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |cur, seg| cur.get(seg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn second_manager_conflicts_unless_values_agree_or_forced() {
        let mut o = Owners::default();
        let empty = json!({"spec": {}});
        let a = json!({"spec": {"holder": "a", "ttl": 5}});
        o.apply("ma", false, &a, &empty, &a).unwrap();

        let b = json!({"spec": {"holder": "b", "ttl": 5}});
        let err = o.apply("mb", false, &b, &a, &b).unwrap_err();
        assert_eq!(err.0, vec![("ma".to_string(), ".spec.holder".to_string())]);
        assert!(
            err.message()
                .starts_with("Apply failed with 1 conflict: conflict with \"ma\"")
        );

        // The same value is shared ownership, not a conflict.
        let same = json!({"spec": {"ttl": 5}});
        o.apply("mb", false, &same, &a, &a).unwrap();
        // The owner itself may change its fields.
        let a2 = json!({"spec": {"holder": "a2"}});
        o.apply(
            "ma",
            false,
            &a2,
            &a,
            &json!({"spec": {"holder": "a2", "ttl": 5}}),
        )
        .unwrap();
        // Forcing takes the field over.
        o.apply("mb", true, &b, &a, &b).unwrap();
        assert!(o.apply("ma", false, &a, &b, &a).is_err());
    }

    #[test]
    fn updates_take_changed_fields_and_removed_fields_are_forgotten() {
        let mut o = Owners::default();
        let a = json!({"spec": {"holder": "a"}});
        o.apply("ma", false, &a, &json!({}), &a).unwrap();
        // An update that removes the field frees it for anyone.
        let cleared = json!({"spec": {}});
        o.update("mb", Some(&a), &cleared);
        let c = json!({"spec": {"holder": "c"}});
        o.apply("mc", false, &c, &cleared, &c).unwrap();
        // An update that changes it makes the updater the owner, which conflicts with applies.
        let d = json!({"spec": {"holder": "d"}});
        o.update("md", Some(&c), &d);
        let err = o.apply("mc", false, &c, &d, &c).unwrap_err();
        assert_eq!(err.0[0].0, "md");
    }

    #[test]
    fn server_fields_are_nobody_s() {
        let mut o = Owners::default();
        let a = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "resourceVersion": "5"}});
        o.apply("ma", false, &a, &json!({}), &a).unwrap();
        let b = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "resourceVersion": "6"}});
        assert!(o.apply("mb", false, &b, &a, &b).is_ok());
    }
}
