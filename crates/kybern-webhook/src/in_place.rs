//! Evaluation on the async worker that received the request, without the hand-off to the
//! blocking pool (two thread wake-ups, a large share of a small request's cost).
//!
//! Only evaluations that cannot wait run there: the provider's lookups that can wait (API calls,
//! registries) are refused through [`NoWait`] and recorded; such an evaluation is discarded and
//! done again on the blocking pool with the real provider, and its policy set is remembered so
//! that later requests go to the pool at once.

use kybern_engine::context::{
    ApiCall, AttestationOutcome, ContextProvider, ImageData, Labels, ProviderError, SignatureCheck,
    SignatureOutcome,
};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bodies up to this size are evaluated in place; larger ones take long enough to stall the
/// worker's other connections.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The provider as seen by an in-place evaluation.
pub struct NoWait<'a> {
    inner: &'a dyn ContextProvider,
    waited: AtomicBool,
}

impl<'a> NoWait<'a> {
    pub fn new(inner: &'a dyn ContextProvider) -> Self {
        NoWait {
            inner,
            waited: AtomicBool::new(false),
        }
    }

    /// Whether the evaluation asked for a lookup that could wait (its result is then void).
    pub fn waited(&self) -> bool {
        self.waited.load(Ordering::Relaxed)
    }

    fn refuse<T>(&self, what: &str) -> Result<T, ProviderError> {
        self.waited.store(true, Ordering::Relaxed);
        Err(ProviderError::Unavailable {
            what: what.to_string(),
            reason: "not answered on the async worker (the evaluation is redone)".into(),
        })
    }

    fn may_wait(&self) -> bool {
        self.inner.lookups_wait()
    }
}

impl ContextProvider for NoWait<'_> {
    fn resource(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        if self.may_wait() {
            return self.refuse("resource");
        }
        self.inner.resource(api_version, kind, namespace, name)
    }
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        if self.may_wait() {
            return self.refuse("resource list");
        }
        self.inner.list(api_version, kind, namespace)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ProviderError> {
        self.inner.config_map(namespace, name)
    }
    fn api_call(&self, call: &ApiCall) -> Result<Value, ProviderError> {
        if self.may_wait() {
            return self.refuse("apiCall");
        }
        self.inner.api_call(call)
    }
    fn namespace_labels(&self, namespace: &str) -> Result<Option<Labels>, ProviderError> {
        // A cluster's lookup asks the API server when its cache misses (the server has already
        // asked for the request's own namespace, so this is rare).
        if self.may_wait() && !namespace.is_empty() {
            return self.refuse("namespace labels");
        }
        self.inner.namespace_labels(namespace)
    }
    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        if self.may_wait() {
            return self.refuse("image registry data");
        }
        self.inner.image_data(image)
    }
    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        self.inner.global_context(name)
    }
    fn verify_image_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError> {
        if self.may_wait() {
            return self.refuse("signature verification");
        }
        self.inner.verify_image_signature(check)
    }
    fn verify_image_attestations(
        &self,
        check: &SignatureCheck,
    ) -> Result<AttestationOutcome, ProviderError> {
        if self.may_wait() {
            return self.refuse("attestation verification");
        }
        self.inner.verify_image_attestations(check)
    }
    fn image_digest(&self, image: &str) -> Result<String, ProviderError> {
        if self.may_wait() {
            return self.refuse("image digest");
        }
        self.inner.image_digest(image)
    }
    fn lookups_wait(&self) -> bool {
        false
    }
}

/// The generations of policy sets some evaluation of which asked for a lookup that can wait.
/// Sets change rarely, so the last one is enough: 0 is no set (generations start at 1).
#[derive(Default)]
pub struct WaitingSets(AtomicU64);

impl WaitingSets {
    pub fn waits(&self, generation: u64) -> bool {
        self.0.load(Ordering::Relaxed) == generation
    }
    pub fn remember(&self, generation: u64) {
        self.0.store(generation, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kybern_engine::context::NoProvider;

    struct Waiting;
    impl ContextProvider for Waiting {
        fn resource(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<Value>, ProviderError> {
            Ok(Some(Value::Null))
        }
        fn list(&self, _: &str, _: &str, _: &str) -> Result<Vec<Value>, ProviderError> {
            Ok(Vec::new())
        }
        fn config_map(&self, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(Some(Value::Bool(true)))
        }
        fn api_call(&self, _: &ApiCall) -> Result<Value, ProviderError> {
            Ok(Value::Null)
        }
        fn namespace_labels(&self, _: &str) -> Result<Option<Labels>, ProviderError> {
            Ok(None)
        }
        fn image_data(&self, _: &str) -> Result<ImageData, ProviderError> {
            Ok(ImageData { data: Value::Null })
        }
        fn global_context(&self, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
    }

    #[test]
    fn lookups_that_can_wait_are_refused_and_recorded() {
        let view = NoWait::new(&Waiting);
        assert_eq!(
            view.config_map("a", "b").ok(),
            Some(Some(Value::Bool(true)))
        );
        assert!(!view.waited());
        assert!(view.resource("v1", "Namespace", "", "a").is_err());
        assert!(view.waited());
    }

    #[test]
    fn a_provider_that_answers_from_memory_is_asked() {
        let view = NoWait::new(&NoProvider);
        let _ = view.resource("v1", "Namespace", "", "a");
        assert!(!view.waited());
    }

    #[test]
    fn the_last_waiting_set_is_remembered() {
        let sets = WaitingSets::default();
        assert!(!sets.waits(1));
        sets.remember(3);
        assert!(sets.waits(3));
        assert!(!sets.waits(4));
    }
}
