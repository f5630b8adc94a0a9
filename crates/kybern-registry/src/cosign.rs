//! Cosign signatures in the layout cosign writes by default for Kyverno's `type: Cosign`: the
//! tag `sha256-<hex>.sig` in the image's repository (or in `repository`) holds a manifest whose
//! layers are simple-signing payloads, each with its signature in the
//! `dev.cosignproject.cosign/signature` annotation (base64 over the payload bytes). A payload
//! counts when the key verifies it, its `critical.image.docker-manifest-digest` is the image's
//! digest, and its `optional` claims hold the required annotations.
//!
//! Attestations live beside them under `sha256-<hex>.att`: each layer a DSSE envelope whose
//! signature covers the PAE encoding of an in-toto statement; a statement counts when the key
//! verifies the envelope and one of its subjects carries the image's digest.
//!
//! The key is the attestor's (a public key, or a certificate, checked first against its
//! `certChain` when there is one), or for keyless attestors each layer's own certificate
//! (`dev.sigstore.cosign/certificate`, intermediates in `dev.sigstore.cosign/chain`) once it
//! chains to the attestor's roots and names its identity (see [`crate::certs`]). Not yet: Rekor
//! bundles and SCTs (attestors must waive them), Sigstore bundles (OCI referrers).

use crate::certs;
use crate::client::{Registry, RegistryError};
use crate::keys::PublicKey;
use crate::reference;
use base64::Engine as _;
use kybern_engine::context::{
    AttestationOutcome, KeylessIdentity, ProviderError, SignatureCheck, SignatureOutcome,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::time::Instant;

/// The annotation holding a layer's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding a keyless layer's signing certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding a keyless layer's intermediate and root certificates (PEM).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The media type of simple-signing payload layers.
pub const SIMPLE_SIGNING_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// How many signature layers are looked at, at most (cosign appends one per signing).
const MAX_SIGNATURES: usize = 64;

/// The signature tag of a digest: `sha256:<hex>` becomes `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The attestation tag of a digest: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &str) -> String {
    format!("{}.att", digest.replacen(':', "-", 1))
}

/// DSSE's pre-authentication encoding, what an envelope's signatures cover.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// How a check trusts signatures: one key for every layer, or each layer's own certificate.
enum Trust {
    Key(PublicKey),
    Keyless {
        roots: Vec<Vec<u8>>,
        identity: KeylessIdentity,
        hash: String,
    },
}

impl Trust {
    fn from_check(check: &SignatureCheck) -> Result<Trust, String> {
        if let Some(identity) = &check.keyless {
            let roots = certs::pem_roots(&identity.roots)
                .map_err(|e| format!("failed to load Root certificates: {e}"))?;
            return Ok(Trust::Keyless {
                roots,
                identity: identity.clone(),
                hash: check.signature_algorithm.clone(),
            });
        }
        if !check.cert_chain.trim().is_empty() {
            let leaf = certs::pem_certificates(&check.public_key)?
                .into_iter()
                .next()
                .unwrap_or_default();
            certs::verify_against_chain(&leaf, &check.cert_chain)
                .map_err(|e| format!("failed to load validate certificate chain: {e}"))?;
        }
        PublicKey::from_pem(&check.public_key, &check.signature_algorithm).map(Trust::Key)
    }

    /// The key that verifies a layer: the attestor's, or the layer's certificate once it
    /// chains to the roots.
    fn key_for(&self, layer: &Value) -> Result<Cow<'_, PublicKey>, String> {
        match self {
            Trust::Key(key) => Ok(Cow::Borrowed(key)),
            Trust::Keyless { roots, hash, .. } => {
                let leaf = layer_certificate(layer)?;
                let chain = layer_annotation(layer, CHAIN_ANNOTATION);
                certs::verify_signing_certificate(&leaf, chain, roots)?;
                let cert = certs::parse(&leaf)?;
                PublicKey::from_spki(cert.public_key(), hash).map(Cow::Owned)
            }
        }
    }

    /// For keyless trust, whether the layer's certificate names the identity.
    fn identity_of(&self, layer: &Value) -> Result<(), String> {
        match self {
            Trust::Key(_) => Ok(()),
            Trust::Keyless { identity, .. } => {
                certs::match_identity(&layer_certificate(layer)?, identity)
            }
        }
    }
}

fn layer_annotation<'a>(layer: &'a Value, name: &str) -> Option<&'a str> {
    layer
        .get("annotations")
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
}

/// The DER of a layer's signing certificate.
fn layer_certificate(layer: &Value) -> Result<Vec<u8>, String> {
    let pem = layer_annotation(layer, CERTIFICATE_ANNOTATION)
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| "certificate not found".to_string())?;
    certs::pem_certificates(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| "certificate not found".to_string())
}

/// The statement of one `.att` layer, when the key verifies it and it names the digest.
fn check_envelope(key: &PublicKey, envelope: &[u8], digest: &str) -> Result<Value, String> {
    let envelope: Value =
        serde_json::from_slice(envelope).map_err(|_| "envelope is not JSON".to_string())?;
    let payload_type = envelope
        .get("payloadType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = envelope
        .get("payload")
        .and_then(Value::as_str)
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .ok_or_else(|| "envelope has no base64 payload".to_string())?;
    let message = pae(payload_type, &body);
    let signatures = envelope
        .get("signatures")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut last = "envelope has no signatures".to_string();
    let verified = signatures.iter().take(MAX_SIGNATURES).any(|s| {
        let sig = s.get("sig").and_then(Value::as_str).unwrap_or_default();
        match key.verify(&message, sig) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    if !verified {
        return Err(last);
    }
    let mut statement: Value =
        serde_json::from_slice(&body).map_err(|_| "statement is not JSON".to_string())?;
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let names_digest = statement
        .get("subject")
        .and_then(Value::as_array)
        .is_some_and(|subjects| {
            subjects
                .iter()
                .any(|s| s.pointer("/digest/sha256").and_then(Value::as_str) == Some(hex))
        });
    if !names_digest {
        return Err("no matching subject digest found".to_string());
    }
    // Kyverno exposes the predicate type also as `type`.
    if let Some(t) = statement.get("predicateType").cloned()
        && let Some(obj) = statement.as_object_mut()
    {
        obj.insert("type".to_string(), t);
    }
    Ok(statement)
}

fn cache_key(check: &SignatureCheck, digest: &str, repository: &str) -> String {
    let mut h = Sha256::new();
    let keyless = check
        .keyless
        .as_ref()
        .map(|k| format!("{k:?}"))
        .unwrap_or_default();
    for part in [
        repository,
        digest,
        check.public_key.trim(),
        check.cert_chain.trim(),
        &keyless,
        &check.signature_algorithm,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in &check.annotations {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// Why one signature layer does not count.
fn check_layer(
    key: &PublicKey,
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
    check: &SignatureCheck,
) -> Result<(), String> {
    key.verify(payload, signature_b64)?;
    let claims: Value =
        serde_json::from_slice(payload).map_err(|_| "payload is not JSON".to_string())?;
    let claimed = claims
        .pointer("/critical/image/docker-manifest-digest")
        .and_then(Value::as_str);
    if claimed != Some(digest) {
        return Err("invalid or missing digest in claim".to_string());
    }
    for (k, want) in &check.annotations {
        let got = claims.pointer("/optional").and_then(|o| o.get(k));
        let got = got.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        if got.as_deref() != Some(want.as_str()) {
            return Err("no signature matched the required annotations".to_string());
        }
    }
    Ok(())
}

/// The layers of one manifest already looked at: a layer repeated with the same digest and
/// annotations gives the same answer, so it is not fetched again; a layer whose descriptor
/// declares more than the blob bound is not fetched at all.
#[derive(Default)]
struct SeenLayers(std::collections::HashSet<String>);

impl SeenLayers {
    /// `Some` when the layer is not to be fetched, with the reason to report (none for a
    /// repeat).
    fn skip(&mut self, layer: &Value, max_bytes: usize) -> Option<Option<String>> {
        let size = layer.get("size").and_then(Value::as_u64).unwrap_or(0);
        if usize::try_from(size).map_or(true, |s| s > max_bytes) {
            return Some(Some(format!(
                "a layer of {size} bytes exceeds the {max_bytes}-byte bound"
            )));
        }
        let key = format!(
            "{}{}",
            layer.get("digest").unwrap_or(&Value::Null),
            layer.get("annotations").unwrap_or(&Value::Null)
        );
        (!self.0.insert(key)).then_some(None)
    }
}

/// What a signature or attestation check is about: the key, the image's digest (its tag
/// resolved once) and the repository holding the signatures.
struct Subject {
    trust: Trust,
    digest: String,
    repo: String,
}

impl Registry {
    /// The [`Subject`] of `check`; `Ok(Err(message))` when the check fails before any signature
    /// is read (unsupported key or algorithm, bad reference, image not found).
    fn subject(&self, check: &SignatureCheck) -> Result<Result<Subject, String>, RegistryError> {
        let trust = match Trust::from_check(check) {
            Ok(t) => t,
            Err(m) => return Ok(Err(m)),
        };
        let image = match reference::parse(&check.image) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        // The tag (if any) is resolved once; everything after refers to the digest.
        let digest = match image.digest() {
            Some(d) => d.to_string(),
            None => match self.manifest(&image) {
                Ok((_, d)) => d,
                Err(RegistryError::NotFound(m) | RegistryError::Failed(m)) => return Ok(Err(m)),
                Err(e) => return Err(e),
            },
        };
        let repo = if check.repository.is_empty() {
            format!("{}/{}", image.registry(), image.repository())
        } else {
            check.repository.clone()
        };
        Ok(Ok(Subject {
            trust,
            digest,
            repo,
        }))
    }

    /// Checks the image's cosign signatures against the key of `check`. `Err` only when the
    /// registry could not be asked; a missing or wrong signature is `Ok(Failed)`.
    pub fn verify_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, RegistryError> {
        let failed = |m: String| Ok(SignatureOutcome::Failed(m));
        let Subject {
            trust,
            digest,
            repo: sig_repo,
        } = match self.subject(check)? {
            Ok(s) => s,
            Err(m) => return failed(m),
        };
        let key_id = cache_key(check, &digest, &sig_repo);
        if let Some(hit) = self.cached(&key_id) {
            return Ok(SignatureOutcome::Verified { digest: hit });
        }
        let sig_ref = match reference::parse(&format!("{sig_repo}:{}", signature_tag(&digest))) {
            Ok(r) => r,
            Err(e) => return failed(e.to_string()),
        };
        let manifest = match self.manifest(&sig_ref) {
            Ok((bytes, _)) => bytes,
            Err(RegistryError::NotFound(_)) => return failed("no signatures found".to_string()),
            Err(RegistryError::Failed(m)) => return failed(m),
            Err(e) => return Err(e),
        };
        let manifest: Value = match serde_json::from_slice(&manifest) {
            Ok(v) => v,
            Err(_) => return failed("the signature manifest is not JSON".to_string()),
        };
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut reasons: Vec<String> = Vec::new();
        let mut seen = SeenLayers::default();
        for layer in layers.iter().take(MAX_SIGNATURES) {
            let Some(signature) = layer
                .pointer("/annotations")
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let Some(layer_digest) = layer.get("digest").and_then(Value::as_str) else {
                continue;
            };
            if let Some(skip) = seen.skip(layer, self.config().max_blob_bytes) {
                reasons.extend(skip);
                continue;
            }
            let payload = match self.blob(&sig_ref, layer_digest) {
                Ok(p) => p,
                Err(RegistryError::Unreachable(m)) => return Err(RegistryError::Unreachable(m)),
                Err(e) => {
                    reasons.push(e.to_string());
                    continue;
                }
            };
            let verified = trust.key_for(layer).and_then(|key| {
                check_layer(&key, &payload, signature, &digest, check)?;
                trust.identity_of(layer)
            });
            match verified {
                Ok(()) => {
                    self.remember(key_id, &digest);
                    return Ok(SignatureOutcome::Verified { digest });
                }
                Err(r) => reasons.push(r),
            }
        }
        if reasons.is_empty() {
            return failed("no signatures found".to_string());
        }
        reasons.dedup();
        failed(format!("no matching signatures: {}", reasons.join("; ")))
    }

    /// Checks the image's cosign attestations against the key of `check`: every statement the
    /// key signed for this digest. `Err` only when the registry could not be asked.
    pub fn verify_attestations(
        &self,
        check: &SignatureCheck,
    ) -> Result<AttestationOutcome, RegistryError> {
        let failed = |m: String| Ok(AttestationOutcome::Failed(m));
        let Subject {
            trust,
            digest,
            repo,
        } = match self.subject(check)? {
            Ok(s) => s,
            Err(m) => return failed(m),
        };
        let att_ref = match reference::parse(&format!("{repo}:{}", attestation_tag(&digest))) {
            Ok(r) => r,
            Err(e) => return failed(e.to_string()),
        };
        let manifest = match self.manifest(&att_ref) {
            Ok((bytes, _)) => bytes,
            // Kyverno's wording when the attestation manifest is unknown.
            Err(RegistryError::NotFound(_)) => {
                return failed("no matching attestations: not found".to_string());
            }
            Err(RegistryError::Failed(m)) => return failed(m),
            Err(e) => return Err(e),
        };
        let manifest: Value = match serde_json::from_slice(&manifest) {
            Ok(v) => v,
            Err(_) => return failed("the attestation manifest is not JSON".to_string()),
        };
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut statements = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut seen = SeenLayers::default();
        for layer in layers.iter().take(MAX_SIGNATURES) {
            let Some(layer_digest) = layer.get("digest").and_then(Value::as_str) else {
                continue;
            };
            if let Some(skip) = seen.skip(layer, self.config().max_blob_bytes) {
                reasons.extend(skip);
                continue;
            }
            let envelope = match self.blob(&att_ref, layer_digest) {
                Ok(p) => p,
                Err(RegistryError::Unreachable(m)) => return Err(RegistryError::Unreachable(m)),
                Err(e) => {
                    reasons.push(e.to_string());
                    continue;
                }
            };
            let verified = trust.key_for(layer).and_then(|key| {
                let statement = check_envelope(&key, &envelope, &digest)?;
                trust.identity_of(layer).map(|()| statement)
            });
            match verified {
                Ok(statement) => statements.push(statement),
                Err(r) => reasons.push(r),
            }
        }
        if statements.is_empty() {
            if reasons.is_empty() {
                return failed("no matching attestations: no attestations found".to_string());
            }
            reasons.dedup();
            return failed(format!("no matching attestations: {}", reasons.join("; ")));
        }
        Ok(AttestationOutcome::Verified { digest, statements })
    }

    /// [`Registry::verify_attestations`] for a context provider.
    pub fn attestations_for_provider(
        &self,
        check: &SignatureCheck,
    ) -> Result<AttestationOutcome, ProviderError> {
        self.verify_attestations(check)
            .map_err(|e| ProviderError::Failed(e.to_string()))
    }

    fn cached(&self, key: &str) -> Option<String> {
        let map = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.config().cache_ttl)
            .map(|(_, d)| d.clone())
    }

    fn remember(&self, key: String, digest: &str) {
        let mut map = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: expired entries go first, then everything if it is still too large.
        if map.len() >= 4096 {
            let ttl = self.config().cache_ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= 4096 {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), digest.to_string()));
    }

    /// [`Registry::verify_signature`] for a context provider: registry failures become provider
    /// errors (rule errors).
    pub fn verify_for_provider(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError> {
        self.verify_signature(check)
            .map_err(|e| ProviderError::Failed(e.to_string()))
    }

    /// [`Registry::resolve_digest`] for a context provider.
    pub fn digest_for_provider(&self, image: &str) -> Result<String, ProviderError> {
        self.resolve_digest(image)
            .map_err(|e| ProviderError::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_tags_follow_cosign() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
        assert_eq!(attestation_tag("sha256:abc"), "sha256-abc.att");
    }

    #[test]
    fn pae_follows_dsse() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }
}
