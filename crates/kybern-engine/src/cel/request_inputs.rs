//! The inputs of one admission request that every CEL policy reads: built on first use and
//! shared, borrowed, by every policy evaluated on the request (building them per policy cost
//! more than evaluating the policies' planned expressions).

use super::match_constraints::RequestAttributes;
use super::validate_cel::CelInput;
use super::validating_policy::{AutogenView, autogen_applies, autogen_view};
use crate::context::{ContextProvider, Labels};
use crate::request::AdmissionRequest;
use serde_json::Value;
use std::cell::OnceCell;

/// One admission request's CEL inputs; create one per request and pass it to every policy.
pub struct RequestInputs<'r> {
    req: &'r AdmissionRequest,
    request_json: OnceCell<Value>,
    namespace_labels: OnceCell<Option<Labels>>,
    namespace_object: OnceCell<Option<Value>>,
    objects_within_limits: OnceCell<bool>,
    request_within_limits: OnceCell<bool>,
    autogen: OnceCell<AutogenView>,
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
        autogen_applies(controllers, self.req)
            .then(|| self.autogen.get_or_init(|| autogen_view(self.req)))
    }
}
