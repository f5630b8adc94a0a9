//! Answers to the image verifications of ImageValidatingPolicies (`verifyImageSignatures`,
//! `verifyAttestationSignatures`): one cosign attestor on one image, asked of the context
//! provider as the `verifyImages` rules of ClusterPolicies ask it. What the provider cannot
//! check (keyless without roots, notary, KMS, the Rekor log) is an error naming the field,
//! never a count.

use super::value::from_json;
use crate::context::{
    AttestationOutcome, ContextProvider, KeylessIdentity, SignatureCheck, SignatureOutcome,
};
use kube_cel::cel;
use serde_json::{Value, json};

/// `check`: `{image, attestor, attestation?}` as the library's fetch key carries it.
pub(super) fn answer(provider: &dyn ContextProvider, check: &str) -> Result<cel::Value, String> {
    let check: Value = serde_json::from_str(check).map_err(|e| e.to_string())?;
    let image = check
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let attestor = check.get("attestor").unwrap_or(&Value::Null);
    let mut checks = signature_checks(image, attestor)?;
    let Some(attestation) = check.get("attestation") else {
        // Any of the attestor's checks (one per keyless identity) verifying is enough.
        let mut last = json!({"verified": false, "reason": "no checks"});
        for sig in &checks {
            let outcome = provider
                .verify_image_signature(sig)
                .map_err(|e| format!("verifyImageSignatures: {e}"))?;
            last = match outcome {
                SignatureOutcome::Verified { digest } => {
                    return Ok(from_json(&json!({"verified": true, "digest": digest})));
                }
                SignatureOutcome::Failed(reason) => json!({"verified": false, "reason": reason}),
            };
        }
        return Ok(from_json(&last));
    };
    let name = attestation
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(predicate_type) = attestation.pointer("/intoto/type").and_then(Value::as_str) else {
        return Err(format!(
            "verifyAttestationSignatures: attestation {name:?}: only intoto attestations are supported yet (referrer is not)"
        ));
    };
    let mut last = json!({"verified": false, "reason": "no checks"});
    for sig in &mut checks {
        sig.predicate_type = predicate_type.to_string();
        let outcome = provider
            .verify_image_attestations(sig)
            .map_err(|e| format!("verifyAttestationSignatures: {e}"))?;
        last = match outcome {
            AttestationOutcome::Verified { digest, statements } => {
                let of_type = statements.into_iter().find(|s| {
                    s.get("predicateType").and_then(Value::as_str) == Some(predicate_type)
                        || s.get("type").and_then(Value::as_str) == Some(predicate_type)
                });
                match of_type {
                    Some(payload) => {
                        return Ok(from_json(
                            &json!({"verified": true, "digest": digest, "payload": payload}),
                        ));
                    }
                    None => json!({"verified": false,
                        "reason": format!("no attestation of type {predicate_type}")}),
                }
            }
            AttestationOutcome::Failed(reason) => json!({"verified": false, "reason": reason}),
        };
    }
    Ok(from_json(&last))
}

/// The provider's checks for one `attestors[]` entry: a cosign public key or certificate (with
/// its chain), or keyless roots with one check per identity (any may match), read without the
/// Rekor log (`ctlog.insecureIgnoreTlog: true`, as Kyverno reads it offline).
fn signature_checks(image: &str, attestor: &Value) -> Result<Vec<SignatureCheck>, String> {
    let name = attestor
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let unsupported = |what: &str| {
        Err(format!(
            "attestor {name:?}: {what} is not supported yet (cosign keys, certificates and keyless roots are)"
        ))
    };
    let Some(cosign) = attestor.get("cosign").filter(|c| c.is_object()) else {
        return if attestor.get("notary").is_some() {
            unsupported("notary")
        } else {
            Err(format!("attestor {name:?} has no cosign or notary block"))
        };
    };
    if cosign.get("tuf").is_some_and(|v| !v.is_null()) {
        return unsupported("cosign.tuf");
    }
    let flag = |field: &str| {
        cosign
            .pointer(&format!("/ctlog/{field}"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    if !flag("insecureIgnoreTlog") {
        return unsupported(
            "checking the Rekor transparency log (set cosign.ctlog.insecureIgnoreTlog: true to verify without it)",
        );
    }
    let annotations = cosign
        .get("annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let key = cosign.get("key").filter(|k| !k.is_null());
    let base = SignatureCheck {
        image: image.to_string(),
        signature_algorithm: key
            .and_then(|k| k.get("hashAlgorithm"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        repository: cosign
            .pointer("/source/repository")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        annotations,
        ..SignatureCheck::default()
    };
    if let Some(keyless) = cosign.get("keyless").filter(|k| !k.is_null()) {
        let roots = keyless
            .get("roots")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if roots.trim().is_empty() {
            return unsupported("cosign.keyless without roots (Fulcio's roots come from TUF)");
        }
        if !flag("insecureIgnoreSCT") {
            return unsupported(
                "checking certificate timestamps (set cosign.ctlog.insecureIgnoreSCT: true for keyless roots)",
            );
        }
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let identities: Vec<&Value> = keyless
            .get("identities")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if identities.is_empty() {
            return Err(format!(
                "attestor {name:?}: cosign.keyless needs at least one identity"
            ));
        }
        return Ok(identities
            .into_iter()
            .map(|identity| SignatureCheck {
                keyless: Some(KeylessIdentity {
                    roots: roots.to_string(),
                    subject: text(identity, "subject"),
                    subject_regexp: text(identity, "subjectRegExp"),
                    issuer: text(identity, "issuer"),
                    issuer_regexp: text(identity, "issuerRegExp"),
                    extensions: Default::default(),
                    exact: true,
                }),
                ..base.clone()
            })
            .collect());
    }
    let certificate = cosign.get("certificate").filter(|c| !c.is_null());
    let mut cert_chain = String::new();
    let pem = match (key, certificate) {
        (Some(k), _) => {
            for field in ["kms", "expression", "secretRef"] {
                if k.get(field).is_some_and(|v| !v.is_null()) {
                    return unsupported(&format!("cosign.key.{field}"));
                }
            }
            k.get("data").and_then(Value::as_str)
        }
        (None, Some(c)) => {
            for field in ["cert", "certChain"] {
                if c.get(field).and_then(|f| f.get("expression")).is_some() {
                    return unsupported(&format!("cosign.certificate.{field}.expression"));
                }
            }
            if let Some(chain) = c.pointer("/certChain/value").and_then(Value::as_str) {
                cert_chain = chain.to_string();
            }
            c.pointer("/cert/value").and_then(Value::as_str)
        }
        (None, None) => None,
    };
    let Some(pem) = pem.filter(|p| !p.trim().is_empty()) else {
        return Err(format!(
            "attestor {name:?}: cosign needs key.data, certificate.cert.value or keyless"
        ));
    };
    Ok(vec![SignatureCheck {
        public_key: pem.to_string(),
        cert_chain,
        ..base
    }])
}
