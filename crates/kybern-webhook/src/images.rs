//! Image registry lookups added to a server's request context: the context (files, or the
//! cluster's caches) answers everything else. The registry client lives in its own crate; the
//! binary hands it in as [`ImageLookups`].

use crate::provider::RequestContext;
use kybern_engine::context::{
    ApiCall, AttestationOutcome, ContextProvider, ImageData, Labels, ProviderError, SignatureCheck,
    SignatureOutcome,
};
use kybern_engine::request::UserInfo;
use serde_json::Value;
use std::sync::Arc;

/// What the server asks image registries.
pub trait ImageLookups: Send + Sync {
    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError>;
    fn verify_image_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError>;
    fn verify_image_attestations(
        &self,
        check: &SignatureCheck,
    ) -> Result<AttestationOutcome, ProviderError>;
    fn image_digest(&self, image: &str) -> Result<String, ProviderError>;
    /// Uses these pull secrets (name, `.dockerconfigjson` contents) from now on, in place of the
    /// ones given before. Returns one message per secret that could not be read.
    fn use_pull_secrets(&self, secrets: &[(String, Vec<u8>)]) -> Vec<String>;
}

/// A request context whose image lookups go to registries.
pub struct WithImages {
    inner: Arc<dyn RequestContext>,
    images: Arc<dyn ImageLookups>,
}

impl WithImages {
    pub fn new(inner: Arc<dyn RequestContext>, images: Arc<dyn ImageLookups>) -> Self {
        WithImages { inner, images }
    }
}

impl ContextProvider for WithImages {
    fn resource(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        self.inner.resource(api_version, kind, namespace, name)
    }
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        self.inner.list(api_version, kind, namespace)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ProviderError> {
        self.inner.config_map(namespace, name)
    }
    fn api_call(&self, call: &ApiCall) -> Result<Value, ProviderError> {
        self.inner.api_call(call)
    }
    fn namespace_labels(&self, namespace: &str) -> Result<Option<Labels>, ProviderError> {
        self.inner.namespace_labels(namespace)
    }
    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        self.images.image_data(image)
    }
    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        self.inner.global_context(name)
    }
    fn verify_image_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError> {
        self.images.verify_image_signature(check)
    }
    fn verify_image_attestations(
        &self,
        check: &SignatureCheck,
    ) -> Result<AttestationOutcome, ProviderError> {
        self.images.verify_image_attestations(check)
    }
    fn image_digest(&self, image: &str) -> Result<String, ProviderError> {
        self.images.image_digest(image)
    }
    fn lookups_wait(&self) -> bool {
        true
    }
}

impl RequestContext for WithImages {
    fn roles_of(&self, user: &UserInfo) -> (Vec<String>, Vec<String>) {
        self.inner.roles_of(user)
    }
    fn labels_of(&self, namespace: &str) -> Option<Labels> {
        self.inner.labels_of(namespace)
    }
    fn labels_may_lag(&self) -> bool {
        self.inner.labels_may_lag()
    }
}
