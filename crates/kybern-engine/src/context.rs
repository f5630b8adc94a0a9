//! The seam to the outside world: everything evaluation may need beyond the admission request.

use serde_json::Value;
use std::collections::BTreeMap;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// Why the outside world could not answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// This provider has no access to that source (e.g. the CLI without cluster resources).
    #[error("{what} is not available: {reason}")]
    Unavailable { what: String, reason: String },
    #[error("{0}")]
    Failed(String),
}

/// An API call from a rule's `context` (`apiCall`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// `urlPath` for Kubernetes API calls, or the service URL.
    pub url: String,
    /// True when `url` is a service URL, false for a Kubernetes API path.
    pub is_service: bool,
    pub method: String,
    pub body: Option<Value>,
    /// A CEL `http.Get`/`http.Post` call, which sees the response as an object with its
    /// `statusCode`: providers that mock responses answer with the whole mocked response.
    pub cel_http: bool,
}

/// Image metadata for `imageRegistry` context entries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageData {
    pub data: Value,
}

/// One signature check a `verifyImages` rule asks for: an image against one `keys` attestor
/// entry, in cosign's format. Fetching and verifying happen outside the engine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignatureCheck {
    /// The image as the rule names it: `registry/path:tag` or `registry/path@digest`.
    pub image: String,
    /// One PEM public key, or a PEM certificate standing for its key; empty for keyless.
    pub public_key: String,
    /// `certChain`: PEM certificates the `public_key` certificate must chain to (the last one
    /// the root), checked before its key is used.
    pub cert_chain: String,
    /// Keyless: each signature's own certificate must chain to these roots and name this
    /// identity; `public_key` is then empty.
    pub keyless: Option<KeylessIdentity>,
    /// `signatureAlgorithm`: the hash (`sha256` when empty, `sha384`, `sha512`).
    pub signature_algorithm: String,
    /// `repository`: where the signatures are stored, when not beside the image.
    pub repository: String,
    /// `annotations`: values a verified signature's `optional` claims must carry.
    pub annotations: BTreeMap<String, String>,
    /// For attestations: the `predicateType` asked for (informational; every verified
    /// statement is returned and the engine selects by type).
    pub predicate_type: String,
}

/// Who a keyless signature must come from: its certificate chains to `roots` (PEM) and names
/// the identity. Empty fields are not checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeylessIdentity {
    pub roots: String,
    /// `subject`: a wildcard pattern over the certificate's subject alternative names.
    pub subject: String,
    pub subject_regexp: String,
    /// `issuer`: a wildcard pattern over the OIDC issuer extension.
    pub issuer: String,
    pub issuer_regexp: String,
    /// `additionalExtensions`: Fulcio extension (by OID or name) to wildcard pattern.
    pub extensions: BTreeMap<String, String>,
    /// cosign's own identity rules (ImageValidatingPolicy): exact `subject` and `issuer`, each
    /// regular expression taking precedence over its exact value. Otherwise Kyverno's
    /// ClusterPolicy rules: wildcards, subject skipped for a certificate without alternative names.
    pub exact: bool,
}

/// What an attestation check found, when the registry could be asked.
#[derive(Debug, Clone, PartialEq)]
pub enum AttestationOutcome {
    /// In-toto statements signed by the key whose subject is the image's digest; each carries
    /// its `predicateType` also as `type`.
    Verified {
        digest: String,
        statements: Vec<Value>,
    },
    /// No attestation verifies: the reason.
    Failed(String),
}

/// What a signature check found, when the registry could be asked.
#[derive(Debug, Clone, PartialEq)]
pub enum SignatureOutcome {
    /// A signature by the key covers the image's manifest with this digest.
    Verified { digest: String },
    /// No signature verifies: the reason (no signatures, wrong key, digest mismatch, ...).
    Failed(String),
}

/// What evaluation may need from outside the admission request.
/// Implemented from files (CLI), from informer caches (cluster), from recorded data (replay).
pub trait ContextProvider: Send + Sync {
    /// One object by apiVersion, kind, namespace and name.
    fn resource(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError>;
    /// Objects of one apiVersion and kind, in a namespace (empty: all).
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, ProviderError>;
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ProviderError>;
    fn api_call(&self, call: &ApiCall) -> Result<Value, ProviderError>;
    fn namespace_labels(&self, namespace: &str) -> Result<Option<Labels>, ProviderError>;
    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError>;
    fn global_context(&self, name: &str) -> Result<Option<Value>, ProviderError>;
    /// Verifies an image's signatures against one key. `Err` means the registry could not be
    /// asked (a rule error); a signature that does not verify is `Ok(Failed)`.
    fn verify_image_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError> {
        Err(ProviderError::Unavailable {
            what: format!("signature verification of {}", check.image),
            reason: "no image registry access".to_string(),
        })
    }
    /// Verifies an image's cosign attestations (DSSE in-toto statements) against one key.
    /// `Err` means the registry could not be asked.
    fn verify_image_attestations(
        &self,
        check: &SignatureCheck,
    ) -> Result<AttestationOutcome, ProviderError> {
        Err(ProviderError::Unavailable {
            what: format!("attestation verification of {}", check.image),
            reason: "no image registry access".to_string(),
        })
    }
    /// The digest an image reference resolves to in its registry (for `mutateDigest`).
    fn image_digest(&self, image: &str) -> Result<String, ProviderError> {
        Err(ProviderError::Unavailable {
            what: format!("the digest of {image}"),
            reason: "no image registry access".to_string(),
        })
    }
    /// Whether `resource`, `list`, `api_call` or the image methods can wait on the network.
    /// `config_map` and `global_context` always answer from memory, `namespace_labels` unless its
    /// cache misses (a cluster then asks the API server). A server
    /// runs evaluations that cannot wait on its async threads, saving a thread hand-off.
    fn lookups_wait(&self) -> bool {
        true
    }
}

/// A provider that knows nothing: every lookup is unavailable. The CLI's local mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProvider;

fn unavailable(what: &str) -> ProviderError {
    ProviderError::Unavailable {
        what: what.to_string(),
        reason: "no cluster access".to_string(),
    }
}

impl ContextProvider for NoProvider {
    fn resource(&self, _: &str, _: &str, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
        Err(unavailable("resource"))
    }
    fn list(&self, _: &str, _: &str, _: &str) -> Result<Vec<Value>, ProviderError> {
        Err(unavailable("resource list"))
    }
    fn config_map(&self, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
        Err(unavailable("configMap"))
    }
    fn api_call(&self, _: &ApiCall) -> Result<Value, ProviderError> {
        Err(unavailable("apiCall"))
    }
    fn namespace_labels(&self, _: &str) -> Result<Option<Labels>, ProviderError> {
        Ok(None)
    }
    fn image_data(&self, _: &str) -> Result<ImageData, ProviderError> {
        Err(unavailable("image registry"))
    }
    fn global_context(&self, _: &str) -> Result<Option<Value>, ProviderError> {
        Err(unavailable("globalContext"))
    }
    fn lookups_wait(&self) -> bool {
        false
    }
}
