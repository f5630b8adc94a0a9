//! The inputs of one admission request that every CEL policy reads: built on first use and
//! shared, borrowed, by every policy evaluated on the request (building them per policy cost
//! more than evaluating the policies' planned expressions).

use super::match_constraints::RequestAttributes;
use super::plan::{REQUEST_INPUTS, V};
use super::validate_cel::CelInput;
use super::validating_policy::{AutogenView, autogen_resource, autogen_view};
use super::{Expression, Scope};
use crate::context::{ContextProvider, Labels};
use crate::request::AdmissionRequest;
use serde_json::Value;
use std::cell::{OnceCell, RefCell};
use std::hash::{Hash, Hasher};

/// One admission request's CEL inputs; create one per request and pass it to every policy.
pub struct RequestInputs<'r> {
    req: &'r AdmissionRequest,
    request_json: OnceCell<Value>,
    namespace_labels: OnceCell<Option<Labels>>,
    namespace_object: OnceCell<Option<Value>>,
    objects_within_limits: OnceCell<bool>,
    request_within_limits: OnceCell<bool>,
    autogen: OnceCell<AutogenView>,
    /// The request's resource when autogen can apply to it ([`autogen_applies`]).
    autogen_resource: OnceCell<Option<String>>,
    attributes: OnceCell<RequestAttributes<'r>>,
}

impl<'r> RequestInputs<'r> {
    pub fn new(req: &'r AdmissionRequest) -> Self {
        RequestInputs {
            req,
            request_json: OnceCell::new(),
            namespace_labels: OnceCell::new(),
            namespace_object: OnceCell::new(),
            objects_within_limits: OnceCell::new(),
            request_within_limits: OnceCell::new(),
            autogen: OnceCell::new(),
            autogen_resource: OnceCell::new(),
            attributes: OnceCell::new(),
        }
    }

    /// The admission request.
    pub fn request(&self) -> &'r AdmissionRequest {
        self.req
    }

    /// What matching reads from the request.
    pub fn attributes(&self) -> &RequestAttributes<'r> {
        self.attributes
            .get_or_init(|| RequestAttributes::of(self.req))
    }

    /// The `request` variable ([`CelInput::request_json`]).
    pub fn request_json(&self) -> &Value {
        self.request_json
            .get_or_init(|| CelInput::request_json(self.req))
    }

    /// Labels of the request's namespace ([`super::namespace_labels`]).
    pub fn namespace_labels(&self, provider: &dyn ContextProvider) -> Option<&Labels> {
        self.namespace_labels
            .get_or_init(|| super::namespace_labels(self.req, provider))
            .as_ref()
    }

    /// The `namespaceObject` variable
    /// ([`super::validating_policy::namespace_object`]).
    pub fn namespace_object(&self, provider: &dyn ContextProvider) -> Option<&Value> {
        self.namespace_object
            .get_or_init(|| super::validating_policy::namespace_object(self.req, provider))
            .as_ref()
    }

    /// Whether the object, old object and `namespaceObject` are within
    /// [`super::MAX_INPUT_NODES`] (the check [`super::validate_cel::base_scope`] makes, done
    /// once).
    pub fn objects_within_limits(&self, provider: &dyn ContextProvider) -> bool {
        *self.objects_within_limits.get_or_init(|| {
            let null = Value::Null;
            [
                &*self.req.object,
                &*self.req.old_object,
                self.namespace_object(provider).unwrap_or(&null),
            ]
            .into_iter()
            .all(|v| super::json_size_within(v, super::MAX_INPUT_NODES))
        })
    }

    /// Whether `request` is within [`super::MAX_INPUT_NODES`]; asked only by policies that
    /// read it (checked once).
    pub fn request_within_limits(&self) -> bool {
        *self
            .request_within_limits
            .get_or_init(|| super::json_size_within(self.request_json(), super::MAX_INPUT_NODES))
    }

    /// The request through its Pod template when autogen gives it to a Pod policy of these
    /// `controllers` (built once, whichever policy asks first).
    pub fn autogen(&self, controllers: &[String]) -> Option<&AutogenView> {
        let resource = self
            .autogen_resource
            .get_or_init(|| autogen_resource(self.req))
            .as_ref()?;
        controllers
            .contains(resource)
            .then(|| self.autogen.get_or_init(|| autogen_view(self.req)))
    }
}

/// What identifies a variable whose value depends on the request's inputs alone: a hash of its
/// expression's text (which inputs it reads is the plan's [`Expression::request_inputs`]).
#[derive(Debug, Clone)]
pub struct SharedKey {
    hash: u64,
}

impl SharedKey {
    /// The key of `e`, when its plan reads only request inputs and calls no function.
    pub fn of(e: &Expression) -> Option<SharedKey> {
        e.request_inputs()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.source.hash(&mut h);
        Some(SharedKey { hash: h.finish() })
    }
}

/// Most values kept for one request; past it, variables are evaluated per policy.
const MAX_SHARED: usize = 256;

/// Values of variables that read only the request's inputs, kept for one request: a policy
/// evaluated after another with the same variable expression over the same inputs (the same
/// object, not merely an equal one) reads the value instead of computing it. Policy sets
/// repeat such variables (each restricted Pod Security policy defines `allContainers`).
/// Only values the planner computed are kept; an error is computed again by each policy, as
/// it was alone.
#[derive(Default)]
pub struct SharedVariables<'p> {
    entries: RefCell<Vec<Shared<'p>>>,
}

struct Shared<'p> {
    hash: u64,
    source: String,
    /// The bindings of [`REQUEST_INPUTS`] the expression read (`None` for the others).
    inputs: [Option<V<'p>>; REQUEST_INPUTS.len()],
    value: V<'p>,
}

/// Whether two bindings are the same input: the same JSON value in memory, or both null.
fn same_input(a: Option<&V<'_>>, b: Option<&V<'_>>) -> bool {
    match (a, b) {
        (None, None) | (Some(V::Null), Some(V::Null)) => true,
        (Some(V::Json(x)), Some(V::Json(y))) => std::ptr::eq(*x, *y),
        _ => false,
    }
}

impl<'p> SharedVariables<'p> {
    /// The value of `e` (whose key is `key`) over `scope`: kept from an earlier policy when its
    /// inputs are the same bindings, else evaluated (and kept when it is a value).
    pub fn value(
        &self,
        key: &SharedKey,
        e: &Expression,
        scope: &Scope<'p>,
    ) -> Result<V<'p>, String> {
        // Planned no longer (`Expression::interpreter_only`): nothing to share.
        let Some(read) = e.request_inputs() else {
            return e.eval_value(scope);
        };
        // The bindings the expression reads, borrowed (the first places of the scope's known
        // variables are the request inputs, in order).
        let read_input = |i: usize| {
            (read & (1 << i) != 0)
                .then(|| scope.known_binding(i))
                .flatten()
        };
        let found = self.entries.borrow().iter().find_map(|s| {
            (s.hash == key.hash
                && s.source == e.source
                && s.inputs
                    .iter()
                    .enumerate()
                    .all(|(i, a)| same_input(a.as_ref(), read_input(i))))
            .then(|| s.value.clone())
        });
        if let Some(v) = found {
            return Ok(v);
        }
        // Only the planner's values are kept: the interpreter's loop bound also counts the
        // policy's other inputs (`params`), so its answer may differ between policies.
        let (value, planned) = e.eval_value_by(scope);
        let value = value?;
        if !planned {
            return Ok(value);
        }
        let mut entries = self.entries.borrow_mut();
        if entries.len() < MAX_SHARED {
            let mut inputs: [Option<V<'p>>; REQUEST_INPUTS.len()] = Default::default();
            for (i, slot) in inputs.iter_mut().enumerate() {
                *slot = read_input(i).cloned();
            }
            entries.push(Shared {
                hash: key.hash,
                source: e.source.clone(),
                inputs,
                value: value.clone(),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::{SharedKey, SharedVariables};
    use crate::cel::{Expression, Scope};
    use serde_json::json;

    fn scope(object: &serde_json::Value) -> Scope<'_> {
        let mut s = Scope::default();
        s.set_json_ref("object", object);
        s
    }

    #[test]
    fn only_request_input_expressions_are_shared() {
        let key = |src: &str| SharedKey::of(&Expression::compile(src, "t").unwrap()).is_some();
        assert!(key(
            "object.spec.containers + object.spec.?initContainers.orValue([])"
        ));
        assert!(key("['a', 'b']"));
        assert!(key("request.object.metadata.name"));
        assert!(!key("params.spec.limit"));
        assert!(!key("variables.a + 1"));
        assert!(!key("object.metadata.name.lowerAscii()")); // a library call
    }

    #[test]
    fn values_are_reused_for_the_same_inputs_only() {
        let e = Expression::compile("object.spec.list + [3]", "t").unwrap();
        let key = SharedKey::of(&e).unwrap();
        let a = json!({"spec": {"list": [1, 2]}});
        let b = json!({"spec": {"list": [1, 2]}});
        let shared = SharedVariables::default();
        let (sa, sb) = (scope(&a), scope(&b));
        let first = shared.value(&key, &e, &sa).unwrap();
        assert_eq!(shared.entries.borrow().len(), 1);
        // The same object: read back, not evaluated again.
        let again = shared.value(&key, &e, &sa).unwrap();
        assert_eq!(shared.entries.borrow().len(), 1);
        assert_eq!(again.to_cel(), first.to_cel());
        // An equal object elsewhere in memory is another input.
        let other = shared.value(&key, &e, &sb).unwrap();
        assert_eq!(shared.entries.borrow().len(), 2);
        assert_eq!(other.to_cel(), first.to_cel());
        // Errors are not kept.
        let bad = Expression::compile("object.spec.missing + [1]", "t").unwrap();
        let bad_key = SharedKey::of(&bad).unwrap();
        assert!(shared.value(&bad_key, &bad, &sa).is_err());
        assert_eq!(shared.entries.borrow().len(), 2);
    }
}
