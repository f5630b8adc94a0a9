//! `mutate.patchStrategicMerge`: a Kubernetes strategic merge patch with Kyverno's anchors.
//!
//! Kyverno first rewrites the overlay against the resource (anchors, see [`anchors`]) and then
//! hands the result to kustomize's strategic merge (see [`merge`]), whose list merge keys come
//! from the Kubernetes OpenAPI (see [`schema`]). This module does the same on `serde_json`
//! values. Variables and `$(...)` references must already be substituted by the caller.
//!
//! ```
//! use kybern_engine::strategic_merge::{apply, PatchOutcome};
//! use serde_json::json;
//! let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
//!                  "spec": {"containers": [{"name": "app", "image": "nginx"}]}});
//! let overlay = json!({"spec": {"containers": [{"(name)": "app", "imagePullPolicy": "Always"}]}});
//! let PatchOutcome::Patched(out) = apply(&pod, &overlay).unwrap() else { panic!() };
//! assert_eq!(out["spec"]["containers"][0]["imagePullPolicy"], "Always");
//! ```

mod anchors;
mod merge;
mod schema;

use serde_json::Value;

use anchors::PreError;

/// Deepest nesting of a resource or overlay we accept.
pub(crate) const MAX_DEPTH: usize = 256;

/// The result of applying a strategic merge overlay.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOutcome {
    /// The patched resource (possibly equal to the input: the caller decides on "no change").
    Patched(Value),
    /// Conditions in the overlay did not hold: the rule is skipped. Carries Kyverno's reason
    /// (`condition failed: ...` or `global condition failed: ...`).
    Skip(String),
}

/// A patch that could not be applied: a malformed overlay or one whose shape conflicts with
/// the resource (e.g. a map where the resource has a list).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PatchError {
    /// Where it happened, as a `/`-separated path (`/` for the root).
    pub path: String,
    pub message: String,
}

/// Applies `overlay` to `resource` as Kyverno's `patchStrategicMerge` does.
pub fn apply(resource: &Value, overlay: &Value) -> Result<PatchOutcome, PatchError> {
    apply_with(resource, overlay.clone(), merge::Direction::Prepend)
}

/// [`apply`] with an overlay the caller no longer needs (it is rewritten in place).
pub fn apply_owned(resource: &Value, overlay: Value) -> Result<PatchOutcome, PatchError> {
    apply_with(resource, overlay, merge::Direction::Prepend)
}

/// Applies an apply configuration (a MutatingPolicy's `ApplyConfiguration`) as server-side
/// apply merges it: the same merge keys, with elements only the patch has after the resource's.
pub fn apply_configuration(resource: &Value, overlay: &Value) -> Result<PatchOutcome, PatchError> {
    apply_with(resource, overlay.clone(), merge::Direction::Append)
}

fn apply_with(
    resource: &Value,
    mut patch: Value,
    dir: merge::Direction,
) -> Result<PatchOutcome, PatchError> {
    // The resource is bounded where it was read (admission requests, YAML files) and every walk
    // over it checks its depth; the overlay is checked whole, once.
    if depth_exceeds(&patch, MAX_DEPTH) {
        return Err(PatchError {
            path: "/".to_string(),
            message: format!("overlay nested deeper than {MAX_DEPTH}"),
        });
    }
    if !resource.is_object() {
        return Err(PatchError {
            path: "/".to_string(),
            message: "resource is not an object".to_string(),
        });
    }
    match anchors::preprocess(&mut patch, Some(resource), &Path::Root, 0) {
        Ok(()) => {}
        Err(PreError::Condition(m)) => {
            return Ok(PatchOutcome::Skip(format!("condition failed: {m}")));
        }
        Err(PreError::Global(m)) => {
            return Ok(PatchOutcome::Skip(format!("global condition failed: {m}")));
        }
        Err(PreError::Fatal(e)) => return Err(e),
    }
    let Value::Object(map) = &mut patch else {
        return Err(PatchError {
            path: "/".to_string(),
            message: "patchStrategicMerge must be an object".to_string(),
        });
    };
    anchors::delete_condition_elements(map);
    let root = schema::root(resource).map_or(merge::Schema::None, merge::Schema::Type);
    match merge::walk(Some(resource), Some(&patch), root, &Path::Root, 0, dir)? {
        Some(v @ Value::Object(_)) => Ok(PatchOutcome::Patched(v)),
        _ => Err(PatchError {
            path: "/".to_string(),
            message: "the patch deletes the whole resource".to_string(),
        }),
    }
}

/// Where a walk is in the patch, as a chain of borrowed steps: the `/`-separated text is only
/// built for an error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    /// `/` for the root, else `/a/b/0`.
    pub(crate) fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut at = self;
        loop {
            match at {
                Path::Root => break,
                Path::Key(parent, key) => {
                    steps.push((*key).to_string());
                    at = parent;
                }
                Path::Index(parent, i) => {
                    steps.push(i.to_string());
                    at = parent;
                }
            }
        }
        if steps.is_empty() {
            return "/".to_string();
        }
        steps.iter().rev().fold(String::new(), |mut out, step| {
            out.push('/');
            out.push_str(step);
            out
        })
    }
}

/// True if `value` nests deeper than `limit` (iterative, so any depth is safe to inspect).
pub(crate) fn depth_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        if d > limit {
            return true;
        }
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests;
