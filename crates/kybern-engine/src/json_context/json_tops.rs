//! Values inside the request's objects, named by their place in them: a foreach element taken
//! from `request.object` is set in the context as such a reference, read in place by
//! expressions evaluated over JSON and converted for the interpreter only if it reads it.

use super::DeferredObjects;
use serde_json::Value;
use std::sync::Arc;

/// Deepest place searched for a value (foreach lists come from near the top of a resource).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A value inside `request.object` (or `request.oldObject`), by its path.
#[derive(Clone)]
pub(crate) struct JsonRef {
    objects: Arc<DeferredObjects>,
    old: bool,
    path: Arc<[Seg]>,
}

impl JsonRef {
    /// The value (always found: the objects never change).
    pub(crate) fn get(&self) -> Option<&Value> {
        let mut cur: &Value = if self.old {
            &self.objects.old_object
        } else {
            &self.objects.object
        };
        for seg in self.path.iter() {
            cur = match seg {
                Seg::Key(k) => cur.get(k.as_str())?,
                Seg::Index(i) => cur.get(*i)?,
            };
        }
        Some(cur)
    }
}

/// The place of each target (found by address) inside the objects, with one walk for all;
/// `None` for a target that is not part of them (a value an expression built).
pub(crate) fn locate(objects: &Arc<DeferredObjects>, targets: &[&Value]) -> Vec<Option<JsonRef>> {
    let mut found: Vec<Option<JsonRef>> = vec![None; targets.len()];
    for old in [false, true] {
        let root: &Value = if old {
            &objects.old_object
        } else {
            &objects.object
        };
        let mut walk = Walk {
            objects,
            old,
            targets,
            found: &mut found,
            path: Vec::new(),
            scalars: targets.iter().any(|t| !t.is_object() && !t.is_array()),
        };
        walk.visit(root, 0);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found
}

/// A step of the path being walked, borrowed from the objects.
#[derive(Clone, Copy)]
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

struct Walk<'a, 'v> {
    objects: &'a Arc<DeferredObjects>,
    old: bool,
    targets: &'a [&'a Value],
    found: &'a mut Vec<Option<JsonRef>>,
    path: Vec<Step<'v>>,
    /// Some target is a scalar (then scalars under objects are visited too).
    scalars: bool,
}

impl<'v> Walk<'_, 'v> {
    /// Visits `v`; false once every target is found.
    fn visit(&mut self, v: &'v Value, depth: usize) -> bool {
        for (i, t) in self.targets.iter().enumerate() {
            if std::ptr::eq(*t, v)
                && let Some(slot) = self.found.get_mut(i)
                && slot.is_none()
            {
                let path: Vec<Seg> = self
                    .path
                    .iter()
                    .map(|s| match s {
                        Step::Key(k) => Seg::Key((*k).to_string()),
                        Step::Index(i) => Seg::Index(*i),
                    })
                    .collect();
                *slot = Some(JsonRef {
                    objects: Arc::clone(self.objects),
                    old: self.old,
                    path: path.into(),
                });
            }
        }
        if self.found.iter().all(Option::is_some) {
            return false;
        }
        if depth >= MAX_DEPTH {
            return true;
        }
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if !child.is_object() && !child.is_array() && !self.scalars {
                        continue;
                    }
                    self.path.push(Step::Key(k));
                    let go_on = self.visit(child, depth + 1);
                    self.path.pop();
                    if !go_on {
                        return false;
                    }
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    let go_on = self.visit(child, depth + 1);
                    self.path.pop();
                    if !go_on {
                        return false;
                    }
                }
            }
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_found_by_address_in_either_object() {
        let objects = Arc::new(DeferredObjects::new(
            Arc::new(json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "n": 3}})),
            Arc::new(json!({"spec": {"volumes": [{"name": "v"}]}})),
        ));
        let a = &objects.object["spec"]["containers"][1];
        let v = &objects.old_object["spec"]["volumes"][0];
        let n = &objects.object["spec"]["n"];
        let copy = json!({"name": "b"});
        let found = locate(&objects, &[a, v, n, &copy]);
        assert_eq!(found[0].as_ref().and_then(JsonRef::get), Some(a));
        assert!(std::ptr::eq(found[0].as_ref().unwrap().get().unwrap(), a));
        assert!(std::ptr::eq(found[1].as_ref().unwrap().get().unwrap(), v));
        assert!(std::ptr::eq(found[2].as_ref().unwrap().get().unwrap(), n));
        assert!(found[3].is_none());
    }
}
