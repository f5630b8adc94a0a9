//! CEL policy kinds in the CLI: documents go into the engine's
//! [`CelPolicySet`](kybern_engine::cel::policy_set::CelPolicySet) (which evaluates them in the
//! kyverno CLI's order and shapes), compile errors become load issues, and a test's extra
//! objects (`paramResources`, the `context` file) and values-file Namespaces reach the provider.
//! JSON, HTTP and Envoy payloads of tests are in [`payloads`].

pub mod payloads;

use crate::files::{Document, Issue};
use kybern_engine::cel::policy_set::{CelPolicySet, compile_document};
use kybern_engine::context::{ApiCall, ContextProvider, ImageData, Labels, ProviderError};
use serde_json::Value;

pub use kybern_engine::cel::policy_set::is_ruleless_kind;

/// Compiled CEL policies of a CLI run, with the bindings and exceptions seen so far.
#[derive(Default, Clone)]
pub struct CelPolicies {
    pub set: CelPolicySet,
}

impl std::ops::Deref for CelPolicies {
    type Target = CelPolicySet;
    fn deref(&self) -> &CelPolicySet {
        &self.set
    }
}

impl CelPolicies {
    /// Takes the document when it is a CEL kind this build evaluates (policies, bindings and
    /// CEL PolicyExceptions). `Ok(true)`: taken. `Err`: a document that does not compile (to
    /// report as an invalid policy).
    pub fn add(&mut self, d: &Document) -> Result<bool, Issue> {
        match compile_document(&d.value) {
            None => Ok(false),
            Some(Ok(doc)) => {
                self.set.insert(doc);
                Ok(true)
            }
            Some(Err(e)) => Err(Issue {
                file: d.file.clone(),
                index: Some(d.index),
                message: e.to_string(),
            }),
        }
    }
}

/// Adds the objects CEL policies read in a test — `paramResources` and the `context` file's
/// `spec.resources` — to the provider's cluster objects.
pub fn add_test_objects(
    test: &crate::spec::Test,
    dir: &std::path::Path,
    provider: &mut crate::provider::FileProvider,
    notes: &mut Vec<String>,
) {
    let mut objects = Vec::new();
    let params: Vec<_> = test.param_resources.iter().map(|p| dir.join(p)).collect();
    let (docs, issues) = crate::files::read_paths(&params);
    notes.extend(issues.iter().map(ToString::to_string));
    objects.extend(
        crate::files::expand_lists(docs)
            .into_iter()
            .map(|d| crate::resources::default_namespace(d.value)),
    );
    if let Some(ctx) = &test.context {
        let (docs, issues) = crate::files::read_paths(&[dir.join(ctx)]);
        notes.extend(issues.iter().map(ToString::to_string));
        for d in docs {
            if let Some(images) = d.value.pointer("/spec/images").and_then(Value::as_array) {
                provider.images.extend(images.iter().cloned());
            }
            let items = d.value.pointer("/spec/resources").and_then(Value::as_array);
            objects.extend(
                items
                    .into_iter()
                    .flatten()
                    .cloned()
                    .map(crate::resources::default_namespace),
            );
        }
    }
    if !objects.is_empty() {
        provider
            .cluster
            .get_or_insert_with(Vec::new)
            .extend(objects);
    }
}

/// The provider CEL policies see in a test: the file provider, plus the Namespace objects of the
/// values file for `namespaceObject`.
pub struct WithNamespaces<'a> {
    pub inner: &'a crate::provider::FileProvider,
    pub namespaces: &'a [Value],
}

impl ContextProvider for WithNamespaces<'_> {
    fn resource(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        if kind == "Namespace"
            && let Some(ns) = self
                .namespaces
                .iter()
                .find(|n| n.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        {
            return Ok(Some(ns.clone()));
        }
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
        self.inner.image_data(image)
    }
    fn verify_image_signature(
        &self,
        check: &kybern_engine::context::SignatureCheck,
    ) -> Result<kybern_engine::context::SignatureOutcome, ProviderError> {
        self.inner.verify_image_signature(check)
    }
    fn image_digest(&self, image: &str) -> Result<String, ProviderError> {
        self.inner.image_digest(image)
    }
    fn verify_image_attestations(
        &self,
        check: &kybern_engine::context::SignatureCheck,
    ) -> Result<kybern_engine::context::AttestationOutcome, ProviderError> {
        self.inner.verify_image_attestations(check)
    }
    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        self.inner.global_context(name)
    }
}
