//! `verifyImages` rules (type Cosign): which images an entry covers, the attestor sets with their
//! counts, and the two passes Kyverno makes. The mutate pass verifies signatures and pins tags to
//! the verified digest (`mutateDigest`); the validate pass checks `verifyDigest` and, for
//! `required` entries, that the image still verifies. Registry work (fetching and checking
//! signatures, resolving digests) goes through the [`ContextProvider`]: this module only decides.
//! Attestations (cosign `.att` in-toto statements) are checked by key, with `conditions` on
//! each statement's predicate. What is not supported yet (certificate and keyless attestors,
//! attestations without attestors, Notary and Sigstore bundles) makes the rule an error that
//! says so, never a pass.

use crate::context::{
    AttestationOutcome, ContextProvider, KeylessIdentity, SignatureCheck, SignatureOutcome,
};
use crate::images::{Extractors, ImageInfo};
use crate::json_context::JsonContext;
use crate::response::{FailureAction, RuleStatus};
use crate::variables::SubstituteOptions;
use crate::wildcard;
use serde_json::Value;
use std::collections::BTreeMap;

/// One attestor set: `count` of its `entries` must verify (all of them when `count` is unset).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttestorSet {
    pub count: Option<usize>,
    pub entries: Vec<Attestor>,
}

/// One attestor entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Attestor {
    /// `keys.publicKeys`: one PEM key (several keys in one entry are expanded into entries),
    /// `certificates`: a PEM certificate standing for its key (checked against its `certChain`)
    /// or a chain alone trusted as roots, or `keyless`: roots and an identity.
    Key {
        /// The attestor's field, `keys`, `certificates` or `keyless` (named in messages).
        via: &'static str,
        /// What the provider checks, without the image (and predicate type).
        check: Box<SignatureCheck>,
    },
    /// `attestor`: a nested attestor set.
    Nested(AttestorSet),
    /// An attestor this engine cannot check yet, described (`keyless attestors`, ...).
    Unsupported(String),
}

/// One `attestations` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Attestation {
    /// `type` (or the older `predicateType`).
    pub predicate_type: String,
    pub attestor_sets: Vec<AttestorSet>,
    /// `conditions`: blocks that every statement of the type must satisfy, evaluated with the
    /// statement's predicate merged into the context.
    pub conditions: Vec<Value>,
}

/// One `verifyImages` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageVerification {
    /// `imageReferences` (or the older `image`): wildcard patterns of the images covered.
    pub references: Vec<String>,
    /// `skipImageReferences`.
    pub skip: Vec<String>,
    /// `attestors` (with the legacy `key` converted into one set).
    pub attestor_sets: Vec<AttestorSet>,
    /// `attestations`.
    pub attestations: Vec<Attestation>,
    /// What this entry asks for that is not supported yet (attestations, keyless roots, types).
    pub unsupported: Option<String>,
    /// `verifyDigest` (default true).
    pub verify_digest: bool,
    /// `mutateDigest` (default true).
    pub mutate_digest: bool,
    /// `required` (default true).
    pub required: bool,
    /// `failureAction` of the entry, when set.
    pub failure_action: Option<FailureAction>,
    /// `imageRegistryCredentials.secrets`: pull secrets (in the engine's own namespace) the
    /// registry side authenticates with.
    pub registry_secrets: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Splits a `publicKeys` value holding several PEM keys, as Kyverno's `ExpandStaticKeys` does.
fn split_keys(pem: &str) -> Vec<String> {
    const END: &str = "-----END PUBLIC KEY-----";
    let parts: Vec<String> = pem
        .split_inclusive(END)
        .filter(|p| p.contains(END))
        .map(|p| p.trim().to_string())
        .collect();
    if parts.is_empty() {
        vec![pem.to_string()]
    } else {
        parts
    }
}

/// Whether an attestor waives the Rekor log and the certificate's SCTs (`rekor.ignoreTlog` and
/// `ctlog.ignoreSCT`), the only way cosign verifies a certificate without the network.
fn offline(attestor: &Value) -> bool {
    attestor
        .pointer("/rekor/ignoreTlog")
        .and_then(Value::as_bool)
        == Some(true)
        && attestor
            .pointer("/ctlog/ignoreSCT")
            .and_then(Value::as_bool)
            == Some(true)
}

/// The check an attestor entry starts from: where its signatures are stored and which
/// annotations they must carry (the entry's, then the attestor's own).
fn signer(attestor: &Value, entry: &Value) -> SignatureCheck {
    let repository = match text(attestor, "repository") {
        r if r.is_empty() => text(entry, "repository"),
        r => r,
    };
    let mut annotations = string_map(entry.get("annotations"));
    annotations.extend(string_map(attestor.get("annotations")));
    SignatureCheck {
        repository,
        annotations,
        ..SignatureCheck::default()
    }
}

impl AttestorSet {
    fn from_json(set: &Value, entry: &Value) -> AttestorSet {
        let count = set
            .get("count")
            .and_then(Value::as_u64)
            .filter(|c| *c > 0)
            .and_then(|c| usize::try_from(c).ok());
        let mut entries = Vec::new();
        for a in set
            .get("entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(keys) = a.get("keys").filter(|k| !k.is_null()) {
                let pem = text(keys, "publicKeys");
                if pem.is_empty() {
                    // Keys from a Secret or a KMS need cluster or cloud access.
                    let what = if non_empty(keys.get("secret")) {
                        "keys from a Secret (keys.secret)"
                    } else if non_empty(keys.get("kms")) {
                        "keys from a KMS (keys.kms)"
                    } else {
                        "keys without publicKeys"
                    };
                    entries.push(Attestor::Unsupported(what.into()));
                    continue;
                }
                // Without `rekor.ignoreTlog: true` Kyverno also checks the signature's entry in
                // the Rekor transparency log, which this engine cannot do: never pass without it.
                if keys.pointer("/rekor/ignoreTlog").and_then(Value::as_bool) != Some(true) {
                    entries.push(Attestor::Unsupported(
                        "Rekor transparency log checks (keys without rekor.ignoreTlog: true)"
                            .into(),
                    ));
                    continue;
                }
                let base = SignatureCheck {
                    signature_algorithm: text(keys, "signatureAlgorithm"),
                    ..signer(a, entry)
                };
                for public_key in split_keys(&pem) {
                    entries.push(Attestor::Key {
                        via: "keys",
                        check: Box::new(SignatureCheck {
                            public_key,
                            ..base.clone()
                        }),
                    });
                }
            } else if let Some(nested) = a.get("attestor").filter(|n| !n.is_null()) {
                entries.push(Attestor::Nested(AttestorSet::from_json(nested, entry)));
            } else if let Some(certs) = a.get("certificates").filter(|c| non_empty(Some(c))) {
                // Without the log and SCT waivers cosign also asks Rekor and the CT logs.
                if !offline(certs) {
                    entries.push(Attestor::Unsupported(
                        "certificates attestors without rekor.ignoreTlog and ctlog.ignoreSCT (Rekor and CT log checks)"
                            .into(),
                    ));
                    continue;
                }
                let cert = text(certs, "cert");
                let chain = text(certs, "certChain");
                let mut check = signer(a, entry);
                if cert.is_empty() {
                    if chain.is_empty() {
                        entries.push(Attestor::Unsupported(
                            "certificates attestors without cert or certChain".into(),
                        ));
                        continue;
                    }
                    // A chain alone is the trusted roots of the signatures' own certificates.
                    check.keyless = Some(KeylessIdentity {
                        roots: chain,
                        ..KeylessIdentity::default()
                    });
                } else {
                    check.public_key = cert;
                    check.cert_chain = chain;
                }
                entries.push(Attestor::Key {
                    via: "certificates",
                    check: Box::new(check),
                });
            } else if let Some(keyless) = a.get("keyless").filter(|k| non_empty(Some(k))) {
                let roots = text(keyless, "roots");
                if roots.is_empty() {
                    entries.push(Attestor::Unsupported(
                        "keyless attestors without roots (Fulcio's roots come from its TUF repository)"
                            .into(),
                    ));
                    continue;
                }
                if !offline(keyless) {
                    entries.push(Attestor::Unsupported(
                        "keyless attestors without rekor.ignoreTlog and ctlog.ignoreSCT (Rekor and CT log checks)"
                            .into(),
                    ));
                    continue;
                }
                let mut check = signer(a, entry);
                check.keyless = Some(KeylessIdentity {
                    roots,
                    subject: text(keyless, "subject"),
                    subject_regexp: text(keyless, "subjectRegExp"),
                    issuer: text(keyless, "issuer"),
                    issuer_regexp: text(keyless, "issuerRegExp"),
                    extensions: string_map(keyless.get("additionalExtensions")),
                    exact: false,
                });
                entries.push(Attestor::Key {
                    via: "keyless",
                    check: Box::new(check),
                });
            } else {
                entries.push(Attestor::Unsupported("attestors without keys".into()));
            }
        }
        AttestorSet { count, entries }
    }

    /// How many entries must verify.
    fn required(&self) -> usize {
        self.count.unwrap_or(self.entries.len())
    }

    /// The first unsupported attestor kind, searching nested sets too.
    fn unsupported(&self) -> Option<&str> {
        self.entries.iter().find_map(|e| match e {
            Attestor::Unsupported(what) => Some(what.as_str()),
            Attestor::Nested(set) => set.unsupported(),
            Attestor::Key { .. } => None,
        })
    }
}

impl ImageVerification {
    /// Reads one entry of `verifyImages`.
    pub fn from_json(entry: &Value) -> Self {
        let flag = |k: &str| entry.get(k).and_then(Value::as_bool).unwrap_or(true);
        let mut references = strings(entry.get("imageReferences"));
        references.extend(strings(entry.get("image")));
        let mut attestor_sets: Vec<AttestorSet> = entry
            .get("attestors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|set| AttestorSet::from_json(set, entry))
            .collect();
        // The legacy `key` field is one set with one keys entry (Kyverno's `Convert`).
        let legacy_key = text(entry, "key");
        if !legacy_key.is_empty() {
            let legacy = serde_json::json!({"entries": [{"keys": {"publicKeys": legacy_key}}]});
            attestor_sets.push(AttestorSet::from_json(&legacy, entry));
        }
        let attestations: Vec<Attestation> = entry
            .get("attestations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| Attestation {
                predicate_type: match text(a, "type") {
                    t if t.is_empty() => text(a, "predicateType"),
                    t => t,
                },
                attestor_sets: a
                    .get("attestors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|set| AttestorSet::from_json(set, entry))
                    .collect(),
                conditions: match a.get("conditions") {
                    Some(Value::Array(blocks)) => blocks.clone(),
                    Some(Value::Object(block)) => vec![Value::Object(block.clone())],
                    _ => Vec::new(),
                },
            })
            .collect();
        let kind = text(entry, "type");
        let unsupported = if !kind.is_empty() && kind != "Cosign" {
            Some(format!("type {kind}"))
        } else if non_empty(entry.get("roots")) || non_empty(entry.get("subject")) {
            // Kyverno turns them into a keyless attestor without `rekor`: log checks.
            Some("the legacy keyless fields roots and subject (Rekor log checks)".to_string())
        } else if attestations.iter().any(|a| a.attestor_sets.is_empty()) {
            // Kyverno then fetches with an empty attestor: keyless, trusting Fulcio.
            Some("attestations without attestors (keyless)".to_string())
        } else {
            attestor_sets
                .iter()
                .chain(attestations.iter().flat_map(|a| &a.attestor_sets))
                .find_map(AttestorSet::unsupported)
                .map(str::to_string)
                .or_else(|| {
                    let nested = attestations
                        .iter()
                        .flat_map(|a| &a.attestor_sets)
                        .any(|s| s.entries.iter().any(|e| matches!(e, Attestor::Nested(_))));
                    nested.then(|| "nested attestors in attestations".to_string())
                })
        };
        ImageVerification {
            references,
            skip: strings(entry.get("skipImageReferences")),
            attestor_sets,
            attestations,
            unsupported,
            verify_digest: flag("verifyDigest"),
            mutate_digest: flag("mutateDigest"),
            required: flag("required"),
            failure_action: match entry.get("failureAction").and_then(Value::as_str) {
                Some(a) if a.eq_ignore_ascii_case("enforce") => Some(FailureAction::Enforce),
                Some(a) if a.eq_ignore_ascii_case("audit") => Some(FailureAction::Audit),
                _ => None,
            },
            registry_secrets: strings(
                entry
                    .get("imageRegistryCredentials")
                    .and_then(|c| c.get("secrets")),
            ),
        }
    }

    /// True when checking this entry involves signatures (or something not supported yet).
    pub fn checks_signatures(&self) -> bool {
        !self.attestor_sets.is_empty()
            || !self.attestations.is_empty()
            || self.unsupported.is_some()
    }

    /// True when attestation conditions read the JSON context.
    pub fn reads_context(&self) -> bool {
        self.attestations.iter().any(|a| !a.conditions.is_empty())
    }

    fn covers(&self, image: &str, normalized: &str) -> bool {
        let any = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| wildcard::matches(p, image) || wildcard::matches(p, normalized))
        };
        any(&self.references) && !any(&self.skip)
    }
}

/// An image of the resource: as written, parsed, and where it is.
struct FoundImage {
    written: String,
    info: ImageInfo,
    pointer: String,
}

/// The images of a resource: where the rule's extractors say for their kinds, else its pod
/// spec's in Kyverno's order; for extracted images also the `images` variable the rule then
/// sees. An extractor's error (a value that is no image, a `jmesPath` that gives no string) is
/// the rule's error.
fn images_of(
    resource: &Value,
    extractors: &Extractors,
) -> Result<(Vec<FoundImage>, Option<Value>), String> {
    let kind = resource
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(custom) = extractors.for_kind(kind) {
        let mut found = Vec::new();
        for extractor in custom {
            found.extend(extractor.extract(resource)?);
        }
        let mut out = Vec::with_capacity(found.len());
        for f in &found {
            let Some(info) = ImageInfo::parse(&f.image) else {
                return Err(format!("invalid image '{}'", f.image));
            };
            out.push(FoundImage {
                written: f.image.clone(),
                info,
                pointer: f.pointer.clone(),
            });
        }
        return Ok((out, Some(crate::images::images_variable(&found))));
    }
    let extracted = crate::images::extract(resource);
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(by_name) = extracted.get(field).and_then(Value::as_object) {
            for info in by_name.values() {
                let Some(pointer) = info.get("jsonPointer").and_then(Value::as_str) else {
                    continue;
                };
                // The pointer gives the image as written.
                let Some(written) = resource.pointer(pointer).and_then(Value::as_str) else {
                    continue;
                };
                if let Some(parsed) = ImageInfo::parse(written) {
                    out.push(FoundImage {
                        written: written.to_string(),
                        info: parsed,
                        pointer: pointer.to_string(),
                    });
                }
            }
        }
    }
    Ok((out, None))
}

/// The context a rule with `imageExtractors` evaluates in: for the kinds they name, `images`
/// lists the extracted images instead of the pod spec's (as Kyverno replaces it).
fn with_custom_images<'c>(
    ctx: &'c JsonContext,
    images: Option<&Value>,
) -> std::borrow::Cow<'c, JsonContext> {
    match images {
        Some(images) => {
            let mut scoped = ctx.clone();
            scoped.set("images", images);
            std::borrow::Cow::Owned(scoped)
        }
        None => std::borrow::Cow::Borrowed(ctx),
    }
}

/// Why an attestor set did not verify.
enum SetError {
    /// Signatures did not verify: the messages, each with its attestor path.
    Failed(Vec<String>),
    /// The registry could not be asked.
    Unreachable(String),
}

/// Verifies one attestor set: `Ok` with the digest of the last verified signature.
fn verify_set(
    set: &AttestorSet,
    image: &str,
    path: &str,
    provider: &dyn ContextProvider,
) -> Result<String, SetError> {
    let required = set.required();
    let mut verified = 0usize;
    let mut errors = Vec::new();
    for (i, entry) in set.entries.iter().enumerate() {
        let entry_path = format!("{path}.entries[{i}]");
        let outcome = match entry {
            Attestor::Key { via, check } => {
                let check = SignatureCheck {
                    image: image.to_string(),
                    ..(**check).clone()
                };
                match provider.verify_image_signature(&check) {
                    Ok(SignatureOutcome::Verified { digest }) => Ok(digest),
                    Ok(SignatureOutcome::Failed(m)) => Err(format!("{entry_path}.{via}: {m}")),
                    Err(e) => {
                        return Err(SetError::Unreachable(format!("{entry_path}.{via}: {e}")));
                    }
                }
            }
            Attestor::Nested(nested) => {
                match verify_set(nested, image, &format!("{entry_path}.attestor"), provider) {
                    Ok(d) => Ok(d),
                    Err(SetError::Failed(m)) => Err(m.join("; ")),
                    Err(unreachable) => return Err(unreachable),
                }
            }
            Attestor::Unsupported(what) => Err(format!("{entry_path}: {what}: not supported yet")),
        };
        match outcome {
            Ok(digest) => {
                verified += 1;
                if verified >= required {
                    return Ok(digest);
                }
            }
            Err(m) => errors.push(m),
        }
    }
    if errors.is_empty() {
        errors.push(format!(
            "{path}: {verified} of {required} attestors verified"
        ));
    }
    Err(SetError::Failed(errors))
}

/// Checks the statements one key verified against an attestation: some must have its type, and
/// each of those must satisfy the conditions.
fn check_statements(
    att: &Attestation,
    statements: &[Value],
    image: &str,
    ctx: &JsonContext,
    opts: SubstituteOptions,
) -> Result<(), String> {
    let of_type: Vec<&Value> = statements
        .iter()
        .filter(|s| s.get("predicateType").and_then(Value::as_str) == Some(&att.predicate_type))
        .collect();
    if of_type.is_empty() {
        // Kyverno's wording, spelling included.
        return Err(format!(
            "attestions not found for predicate type {}",
            att.predicate_type
        ));
    }
    if att.conditions.is_empty() {
        return Ok(());
    }
    for statement in of_type {
        let Some(predicate) = statement.get("predicate").and_then(Value::as_object) else {
            return Err(
                "failed to check attestations: failed to extract predicate from statement"
                    .to_string(),
            );
        };
        // The predicate's fields are read at the top level (`{{ repo.uri }}`), as in Kyverno.
        let mut scoped = ctx.clone();
        for (k, v) in predicate {
            scoped.set(k, v);
        }
        for (b, block) in att.conditions.iter().enumerate() {
            match crate::preconditions::evaluate_block(
                block,
                &scoped,
                opts,
                &format!("conditions[{b}]"),
            ) {
                Ok(o) if o.met => {}
                Ok(_) => {
                    return Err(format!(
                        "attestation checks failed for {image} and predicate {}",
                        att.predicate_type
                    ));
                }
                Err(e) => return Err(format!("failed to check attestations: {e}")),
            }
        }
    }
    Ok(())
}

/// Verifies the entry's attestations of one image (`target` names it, by digest when the
/// signatures already gave one): the digest the attestations cover, or the rule status and
/// message.
fn verify_attestations(
    e: &ImageVerification,
    image: &str,
    target: &str,
    provider: &dyn ContextProvider,
    ctx: &JsonContext,
    opts: SubstituteOptions,
) -> Result<String, (RuleStatus, String)> {
    let mut digest = String::new();
    for (i, att) in e.attestations.iter().enumerate() {
        let path = format!(".attestations[{i}]");
        if att.predicate_type.is_empty() {
            return Err((RuleStatus::Fail, format!("{path}: missing predicateType")));
        }
        for (j, set) in att.attestor_sets.iter().enumerate() {
            let required = set.required();
            let mut verified = 0usize;
            for entry in &set.entries {
                // Kyverno numbers the entry with the attestation's index; kept for equal messages.
                let entry_path = format!("{path}.attestors[{j}].entries[{i}]");
                let Attestor::Key { via, check } = entry else {
                    return Err(unsupported_error(
                        image,
                        "this attestor kind in attestations",
                    ));
                };
                let check = SignatureCheck {
                    image: target.to_string(),
                    predicate_type: att.predicate_type.clone(),
                    ..(**check).clone()
                };
                let (d, statements) = match provider.verify_image_attestations(&check) {
                    Ok(AttestationOutcome::Verified { digest, statements }) => (digest, statements),
                    Ok(AttestationOutcome::Failed(m)) => {
                        return Err((
                            RuleStatus::Fail,
                            format!("failed to verify image {image}: {m}"),
                        ));
                    }
                    Err(err) => {
                        return Err((
                            RuleStatus::Error,
                            format!("failed to verify image {image}: {err}"),
                        ));
                    }
                };
                if digest.is_empty() {
                    digest = d;
                }
                if let Err(m) = check_statements(att, &statements, image, ctx, opts) {
                    return Err((RuleStatus::Fail, format!("{entry_path}.{via}: {m}")));
                }
                verified += 1;
                if verified >= required {
                    break;
                }
            }
            if verified < required {
                return Err((
                    RuleStatus::Fail,
                    format!(
                        "image attestations verification failed, verifiedCount: {verified}, requiredCount: {required}"
                    ),
                ));
            }
        }
    }
    Ok(digest)
}

/// Verifies an image against an entry, signatures first and then attestations: the verified
/// digest and the pass message, or the rule status and message.
fn verify_image(
    e: &ImageVerification,
    info: &ImageInfo,
    provider: &dyn ContextProvider,
    ctx: &JsonContext,
    opts: SubstituteOptions,
) -> Result<(String, String), (RuleStatus, String)> {
    let name = info.reference();
    let mut digest = String::new();
    let mut message = format!("verified image signatures for {name}");
    if !e.attestor_sets.is_empty() {
        digest = verify_attestors(e, &name, provider)?;
    }
    if !e.attestations.is_empty() {
        // Attestations are read for the digest the signatures were verified for, so a tag
        // moved in between cannot mix two images.
        let target = match (digest.is_empty(), info.digest.is_empty()) {
            (false, true) => format!("{}/{}@{digest}", info.registry, info.path),
            _ => name.clone(),
        };
        let d = verify_attestations(e, &name, &target, provider, ctx, opts)?;
        if digest.is_empty() {
            digest = d;
        }
        message = format!("verified image attestations for {name}");
    }
    Ok((digest, message))
}

/// Verifies all attestor sets of an entry for one image: the verified digest, or the rule
/// status and message.
fn verify_attestors(
    e: &ImageVerification,
    image: &str,
    provider: &dyn ContextProvider,
) -> Result<String, (RuleStatus, String)> {
    let mut digest = String::new();
    for (i, set) in e.attestor_sets.iter().enumerate() {
        match verify_set(set, image, &format!(".attestors[{i}]"), provider) {
            Ok(d) => digest = d,
            Err(SetError::Failed(m)) => {
                return Err((
                    RuleStatus::Fail,
                    format!("failed to verify image {image}: {}", m.join("; ")),
                ));
            }
            Err(SetError::Unreachable(m)) => {
                return Err((
                    RuleStatus::Error,
                    format!("failed to verify image {image}: {m}"),
                ));
            }
        }
    }
    Ok(digest)
}

fn unsupported_error(image: &str, what: &str) -> (RuleStatus, String) {
    (
        RuleStatus::Error,
        format!("verifying {image} needs {what}, which kybern does not support yet"),
    )
}

/// Pins the tags of the pod-spec images that `selects` picks (called with the image as written)
/// to their digests in the registry, for an ImageValidatingPolicy's `mutateDigest`: the patched
/// resource when any tag was pinned, and one message per image whose digest could not be
/// resolved or selected (the other images are still pinned, as in Kyverno).
pub fn pin_digests(
    resource: &Value,
    provider: &dyn ContextProvider,
    mut selects: impl FnMut(&str) -> Result<bool, String>,
) -> (Option<Value>, Vec<String>) {
    let mut patched: Option<Value> = None;
    let mut errors = Vec::new();
    let images = match images_of(resource, &Extractors::default()) {
        Ok((images, _)) => images,
        Err(e) => return (None, vec![format!("failed to extract images: {e}")]),
    };
    for found in images {
        if !found.info.digest.is_empty() {
            continue;
        }
        match selects(&found.written) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        }
        let name = found.info.reference();
        match provider.image_digest(&name) {
            Ok(digest) => {
                let pinned = format!(
                    "{}/{}:{}@{digest}",
                    found.info.registry, found.info.path, found.info.tag
                );
                let target = patched.get_or_insert_with(|| resource.clone());
                if let Some(slot) = target.pointer_mut(&found.pointer) {
                    *slot = Value::String(pinned);
                }
            }
            Err(e) => errors.push(format!("failed to update digest of {name}: {e}")),
        }
    }
    (patched, errors)
}

/// The mutate pass of a `verifyImages` rule: signature checks and digest pinning. `None` when
/// the rule has nothing to do for this resource; otherwise the status, the message and, when
/// tags were pinned, the patched resource.
pub fn verify_and_patch(
    entries: &[ImageVerification],
    extractors: &Extractors,
    resource: &Value,
    provider: &dyn ContextProvider,
    ctx: &JsonContext,
    opts: SubstituteOptions,
) -> Option<(RuleStatus, String, Option<Value>)> {
    let (images, variable) = match images_of(resource, extractors) {
        Ok(found) => found,
        Err(e) => {
            return Some((
                RuleStatus::Error,
                format!("failed to extract images: {e}"),
                None,
            ));
        }
    };
    let ctx = &*with_custom_images(ctx, variable.as_ref());
    let mut patched: Option<Value> = None;
    let mut messages = Vec::new();
    let mut pinned = false;
    for e in entries {
        for found in &images {
            let name = found.info.reference();
            if !e.covers(&found.written, &name) {
                continue;
            }
            if let Some(what) = &e.unsupported {
                let (status, message) = unsupported_error(&name, what);
                return Some((status, message, None));
            }
            let mut digest = String::new();
            if !e.attestor_sets.is_empty() || !e.attestations.is_empty() {
                match verify_image(e, &found.info, provider, ctx, opts) {
                    Ok((d, message)) => {
                        digest = d;
                        messages.push(message);
                    }
                    Err((status, message)) => return Some((status, message, None)),
                }
            }
            if !e.mutate_digest || !found.info.digest.is_empty() {
                continue;
            }
            if digest.is_empty() {
                digest = match provider.image_digest(&name) {
                    Ok(d) => d,
                    Err(err) => {
                        return Some((
                            RuleStatus::Error,
                            format!("failed to update digest of {name}: {err}"),
                            None,
                        ));
                    }
                };
            }
            let tagged = format!(
                "{}/{}:{}@{digest}",
                found.info.registry, found.info.path, found.info.tag
            );
            let target = patched.get_or_insert_with(|| resource.clone());
            if let Some(slot) = target.pointer_mut(&found.pointer) {
                *slot = Value::String(tagged);
                pinned = true;
            }
        }
    }
    if !messages.is_empty() {
        return Some((RuleStatus::Pass, messages.join("; "), patched));
    }
    if pinned {
        return Some((RuleStatus::Pass, "mutated image digest".into(), patched));
    }
    None
}

/// The validate pass: `verifyDigest` for every covered image and, for `required` entries with
/// attestors, the signatures again (kybern does not record verification in annotations, so the
/// check itself is what proves it); a `required` entry without attestors or attestations
/// verifies nothing, so its images fail as unverified. `None` when no entry covers any of the
/// resource's images.
pub fn check(
    entries: &[ImageVerification],
    extractors: &Extractors,
    resource: &Value,
    provider: &dyn ContextProvider,
    ctx: &JsonContext,
    opts: SubstituteOptions,
) -> Option<(RuleStatus, String)> {
    let (images, variable) = match images_of(resource, extractors) {
        Ok(found) => found,
        Err(e) => return Some((RuleStatus::Error, format!("failed to extract images: {e}"))),
    };
    let ctx = &*with_custom_images(ctx, variable.as_ref());
    let mut covered = false;
    let mut missing = Vec::new();
    let mut unverified = Vec::new();
    for e in entries {
        for found in &images {
            let name = found.info.reference();
            if !e.covers(&found.written, &name) {
                continue;
            }
            covered = true;
            if let Some(what) = &e.unsupported {
                return Some(unsupported_error(&name, what));
            }
            if e.required
                && (!e.attestor_sets.is_empty() || !e.attestations.is_empty())
                && let Err(failure) = verify_image(e, &found.info, provider, ctx, opts)
            {
                return Some(failure);
            }
            if found.info.digest.is_empty() && e.verify_digest {
                missing.push(found.written.clone());
            } else if e.required && e.attestor_sets.is_empty() && e.attestations.is_empty() {
                // Kyverno passes a required image only when its verification annotation,
                // written by a rule that checked signatures, says so; an entry that checks
                // nothing writes none. kybern never trusts that annotation from the request (a
                // client could forge it), so such an image is unverified.
                let failure = format!("unverified image {name}");
                if !unverified.contains(&failure) {
                    unverified.push(failure);
                }
            }
        }
    }
    if !covered {
        return None;
    }
    let mut failures = Vec::new();
    if !missing.is_empty() {
        failures.push(format!("missing digest for {}", missing.join(", ")));
    }
    failures.extend(unverified);
    if failures.is_empty() {
        Some((RuleStatus::Pass, "image verified".into()))
    } else {
        Some((RuleStatus::Fail, failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{ApiCall, Labels, ProviderError};
    use serde_json::json;
    use std::sync::Mutex;

    fn vp(
        entries: &[ImageVerification],
        resource: &Value,
        provider: &dyn ContextProvider,
    ) -> Option<(RuleStatus, String, Option<Value>)> {
        verify_and_patch(
            entries,
            &Extractors::default(),
            resource,
            provider,
            &JsonContext::default(),
            SubstituteOptions::default(),
        )
    }

    fn ck(
        entries: &[ImageVerification],
        resource: &Value,
        provider: &dyn ContextProvider,
    ) -> Option<(RuleStatus, String)> {
        check(
            entries,
            &Extractors::default(),
            resource,
            provider,
            &JsonContext::default(),
            SubstituteOptions::default(),
        )
    }

    fn pod(images: &[&str]) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": containers}})
    }

    /// Answers signature checks from a table: key -> outcome; records the checks it was asked.
    struct Registry {
        good_key: &'static str,
        digest: &'static str,
        down: bool,
        asked: Mutex<Vec<SignatureCheck>>,
    }

    impl Registry {
        fn new(good_key: &'static str) -> Self {
            Registry {
                good_key,
                digest: "sha256:feed",
                down: false,
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    impl ContextProvider for Registry {
        fn resource(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
        fn list(&self, _: &str, _: &str, _: &str) -> Result<Vec<Value>, ProviderError> {
            Ok(Vec::new())
        }
        fn config_map(&self, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
        fn api_call(&self, _: &ApiCall) -> Result<Value, ProviderError> {
            Ok(Value::Null)
        }
        fn namespace_labels(&self, _: &str) -> Result<Option<Labels>, ProviderError> {
            Ok(None)
        }
        fn image_data(&self, _: &str) -> Result<crate::context::ImageData, ProviderError> {
            Ok(crate::context::ImageData::default())
        }
        fn global_context(&self, _: &str) -> Result<Option<Value>, ProviderError> {
            Ok(None)
        }
        fn verify_image_signature(
            &self,
            check: &SignatureCheck,
        ) -> Result<SignatureOutcome, ProviderError> {
            self.asked.lock().unwrap().push(check.clone());
            if self.down {
                return Err(ProviderError::Failed("connection refused".into()));
            }
            if check.public_key.contains(self.good_key) {
                Ok(SignatureOutcome::Verified {
                    digest: self.digest.into(),
                })
            } else {
                Ok(SignatureOutcome::Failed("no matching signatures".into()))
            }
        }
        fn image_digest(&self, _: &str) -> Result<String, ProviderError> {
            Ok(self.digest.into())
        }
        fn verify_image_attestations(
            &self,
            check: &SignatureCheck,
        ) -> Result<AttestationOutcome, ProviderError> {
            self.asked.lock().unwrap().push(check.clone());
            if !check.public_key.contains(self.good_key) {
                return Ok(AttestationOutcome::Failed(
                    "no matching attestations".into(),
                ));
            }
            let statement = |t: &str, branch: &str| {
                json!({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": t, "type": t,
                       "predicate": {"repo": {"branch": branch}, "reviewers": ["bob"]}})
            };
            Ok(AttestationOutcome::Verified {
                digest: self.digest.into(),
                statements: vec![
                    statement("https://example.com/CodeReview/v1", "main"),
                    statement("https://slsa.dev/provenance/v0.2", "dev"),
                ],
            })
        }
    }

    fn key(name: &str) -> String {
        format!("-----BEGIN PUBLIC KEY-----\n{name}\n-----END PUBLIC KEY-----")
    }

    fn keyed(keys: &[&str], count: Option<usize>) -> ImageVerification {
        let entries: Vec<Value> = keys
            .iter()
            .map(|k| json!({"keys": {"publicKeys": key(k), "rekor": {"ignoreTlog": true}}}))
            .collect();
        let mut set = json!({"entries": entries});
        if let Some(c) = count {
            set["count"] = json!(c);
        }
        ImageVerification::from_json(&json!({"imageReferences": ["ghcr.io/*"], "attestors": [set]}))
    }

    #[test]
    fn digests_are_checked_without_a_registry() {
        let digest_only = ImageVerification::from_json(&json!({
            "imageReferences": ["*"], "mutateDigest": false, "verifyDigest": true,
            "required": false}));
        let none = crate::context::NoProvider;
        // `required` (the default) with nothing to verify the image by: unverified, as Kyverno
        // finds no verification annotation for it (a digest is checked first).
        let required = ImageVerification::from_json(&json!({
            "imageReferences": ["*"], "mutateDigest": false, "verifyDigest": false}));
        let (status, message) = ck(
            std::slice::from_ref(&required),
            &pod(&["nginx:1.27@sha256:abc", "redis:7"]),
            &none,
        )
        .unwrap();
        assert_eq!(status, RuleStatus::Fail);
        assert_eq!(
            message,
            "unverified image docker.io/nginx@sha256:abc; unverified image docker.io/redis:7"
        );
        let cases = [
            (pod(&["nginx:1.27@sha256:abc"]), Some(RuleStatus::Pass)),
            (pod(&["nginx:1.27"]), Some(RuleStatus::Fail)),
            (
                pod(&["nginx@sha256:abc", "redis:7"]),
                Some(RuleStatus::Fail),
            ),
        ];
        for (resource, want) in cases {
            let got = ck(std::slice::from_ref(&digest_only), &resource, &none).map(|(s, _)| s);
            assert_eq!(got, want, "{resource}");
        }
        let (_, message) = ck(
            std::slice::from_ref(&digest_only),
            &pod(&["redis:7"]),
            &none,
        )
        .unwrap();
        assert_eq!(message, "missing digest for redis:7");
        assert_eq!(vp(&[digest_only], &pod(&["redis:7"]), &none), None);

        let only_ghcr = ImageVerification::from_json(&json!({
            "imageReferences": ["ghcr.io/*"], "mutateDigest": false}));
        assert_eq!(ck(&[only_ghcr], &pod(&["nginx:1"]), &none), None);
    }

    #[test]
    fn signed_images_pass_and_are_pinned_to_the_verified_digest() {
        let registry = Registry::new("good");
        let rule = keyed(&["good"], None);
        let resource = pod(&["ghcr.io/team/app:v1"]);
        let (status, message, patched) =
            vp(std::slice::from_ref(&rule), &resource, &registry).unwrap();
        assert_eq!(status, RuleStatus::Pass, "{message}");
        assert_eq!(message, "verified image signatures for ghcr.io/team/app:v1");
        let patched = patched.unwrap();
        assert_eq!(
            patched["spec"]["containers"][0]["image"],
            "ghcr.io/team/app:v1@sha256:feed"
        );
        // The validate pass sees the pinned image: the digest is there and it still verifies.
        assert_eq!(
            ck(&[rule], &patched, &registry).map(|(s, _)| s),
            Some(RuleStatus::Pass)
        );
        let asked = registry.asked.lock().unwrap();
        assert_eq!(asked[0].image, "ghcr.io/team/app:v1");
        assert_eq!(asked[1].image, "ghcr.io/team/app@sha256:feed");
    }

    #[test]
    fn wrong_key_fails_with_the_attestor_path_and_unreachable_registry_is_an_error() {
        let rule = keyed(&["other"], None);
        let resource = pod(&["ghcr.io/team/app:v1"]);
        let (status, message, patched) = vp(
            std::slice::from_ref(&rule),
            &resource,
            &Registry::new("good"),
        )
        .unwrap();
        assert_eq!(status, RuleStatus::Fail);
        assert_eq!(
            message,
            "failed to verify image ghcr.io/team/app:v1: .attestors[0].entries[0].keys: no matching signatures"
        );
        assert!(patched.is_none());
        let mut down = Registry::new("good");
        down.down = true;
        let (status, message, _) = vp(&[rule], &resource, &down).unwrap();
        assert_eq!(status, RuleStatus::Error, "{message}");
    }

    #[test]
    fn counts_and_several_keys_in_one_entry() {
        let registry = Registry::new("good");
        let resource = pod(&["ghcr.io/team/app:v1"]);
        // Two keys, count 1: one good key is enough.
        let one_of_two = keyed(&["other", "good"], Some(1));
        assert_eq!(
            vp(&[one_of_two], &resource, &registry).map(|r| r.0),
            Some(RuleStatus::Pass)
        );
        // No count: every entry must verify.
        let all = keyed(&["good", "other"], None);
        assert_eq!(
            vp(&[all], &resource, &registry).map(|r| r.0),
            Some(RuleStatus::Fail)
        );
        // Several PEM keys in one publicKeys value are separate entries.
        let both = format!("{}\n{}", key("other"), key("good"));
        let rule = ImageVerification::from_json(&json!({"imageReferences": ["*"],
            "attestors": [{"count": 1, "entries": [{"keys": {"publicKeys": both, "rekor": {"ignoreTlog": true}}}]}]}));
        assert_eq!(rule.attestor_sets[0].entries.len(), 2);
        assert_eq!(
            vp(&[rule], &resource, &registry).map(|r| r.0),
            Some(RuleStatus::Pass)
        );
    }

    #[test]
    fn keyless_and_chained_certificate_attestors_carry_their_trust_to_the_provider() {
        let offline = json!({"rekor": {"ignoreTlog": true}, "ctlog": {"ignoreSCT": true}});
        let mut keyless = json!({"roots": "ROOTS", "subject": "*@example.com",
            "issuer": "https://issuer", "subjectRegExp": "s", "issuerRegExp": "i",
            "additionalExtensions": {"githubWorkflowRepository": "org/*"}});
        keyless["rekor"] = offline["rekor"].clone();
        keyless["ctlog"] = offline["ctlog"].clone();
        let mut chained = json!({"cert": "CERT", "certChain": "CHAIN"});
        chained["rekor"] = offline["rekor"].clone();
        chained["ctlog"] = offline["ctlog"].clone();
        let mut chain_alone = json!({"certChain": "CHAIN"});
        chain_alone["rekor"] = offline["rekor"].clone();
        chain_alone["ctlog"] = offline["ctlog"].clone();
        let rule = ImageVerification::from_json(&json!({"imageReferences": ["*"],
            "repository": "mirror.example.com/sigs",
            "attestors": [{"entries": [{"keyless": keyless}, {"certificates": chained},
                                       {"certificates": chain_alone}]}]}));
        assert_eq!(rule.unsupported, None);
        let checks: Vec<(&str, &SignatureCheck)> = rule.attestor_sets[0]
            .entries
            .iter()
            .map(|e| match e {
                Attestor::Key { via, check } => (*via, &**check),
                other => panic!("expected a key attestor, got {other:?}"),
            })
            .collect();
        assert_eq!(checks[0].0, "keyless");
        assert_eq!(
            checks[0].1.keyless,
            Some(KeylessIdentity {
                roots: "ROOTS".into(),
                subject: "*@example.com".into(),
                subject_regexp: "s".into(),
                issuer: "https://issuer".into(),
                issuer_regexp: "i".into(),
                extensions: BTreeMap::from([("githubWorkflowRepository".into(), "org/*".into())]),
                exact: false,
            })
        );
        assert_eq!(checks[0].1.repository, "mirror.example.com/sigs");
        assert_eq!(
            (
                checks[1].1.public_key.as_str(),
                checks[1].1.cert_chain.as_str()
            ),
            ("CERT", "CHAIN")
        );
        // A chain alone is the roots of the signatures' own certificates.
        assert_eq!(
            checks[2].1.keyless.as_ref().map(|k| k.roots.as_str()),
            Some("CHAIN")
        );
        assert!(checks[2].1.public_key.is_empty());
        // Without roots (Fulcio's from TUF) or without the log waivers: named, not checked.
        for keyless in [
            json!({"subject": "x", "rekor": {"ignoreTlog": true}, "ctlog": {"ignoreSCT": true}}),
            json!({"roots": "R", "subject": "x", "rekor": {"ignoreTlog": true}}),
        ] {
            let rule = ImageVerification::from_json(&json!({"imageReferences": ["*"],
                "attestors": [{"entries": [{"keyless": keyless}]}]}));
            assert!(
                rule.unsupported
                    .as_deref()
                    .is_some_and(|u| u.starts_with("keyless attestors without")),
                "{:?}",
                rule.unsupported
            );
        }
    }

    #[test]
    fn unsupported_attestors_and_missing_registry_are_errors_never_passes() {
        let resource = pod(&["ghcr.io/team/app:v1"]);
        for entry in [
            json!({"imageReferences": ["*"], "attestors": [{"entries": [{"keyless": {"subject": "x"}}]}]}),
            json!({"imageReferences": ["*"], "attestations": [{"type": "x"}]}),
            json!({"imageReferences": ["*"], "type": "Notary", "attestors": [{"entries": [{"certificates": {"cert": "c"}}]}]}),
        ] {
            let rule = ImageVerification::from_json(&entry);
            let (status, message, _) = vp(
                std::slice::from_ref(&rule),
                &resource,
                &Registry::new("good"),
            )
            .unwrap();
            assert_eq!(status, RuleStatus::Error, "{entry}");
            assert!(message.contains("not support"), "{message}");
            let (status, _) = ck(&[rule], &resource, &Registry::new("good")).unwrap();
            assert_eq!(status, RuleStatus::Error);
        }
        // Keys whose signatures Kyverno would also look up in Rekor.
        for keys in [
            json!({"publicKeys": key("good")}),
            json!({"publicKeys": key("good"), "rekor": {"url": "https://rekor.sigstore.dev"}}),
        ] {
            let rule = ImageVerification::from_json(&json!({"imageReferences": ["*"],
                "attestors": [{"entries": [{"keys": keys}]}]}));
            let (status, message, _) = vp(&[rule], &resource, &Registry::new("good")).unwrap();
            assert_eq!(status, RuleStatus::Error);
            assert!(
                message.contains(
                    "Rekor transparency log checks (keys without rekor.ignoreTlog: true)"
                ),
                "{message}"
            );
        }
        let rule = keyed(&["good"], None);
        let (status, message, _) = vp(&[rule], &resource, &crate::context::NoProvider).unwrap();
        assert_eq!(status, RuleStatus::Error);
        assert!(message.contains("no image registry access"), "{message}");
    }

    fn attested(key_name: &str, predicate_type: &str, branch: &str) -> ImageVerification {
        ImageVerification::from_json(&json!({"imageReferences": ["*"], "attestations": [{
            "type": predicate_type,
            "attestors": [{"entries": [{"keys": {"publicKeys": key(key_name), "rekor": {"ignoreTlog": true}}}]}],
            "conditions": [{"all": [{"key": "{{ repo.branch }}", "operator": "Equals", "value": branch}]}]
        }]}))
    }

    #[test]
    fn attestations_are_checked_by_key_type_and_conditions_on_the_predicate() {
        let registry = Registry::new("good");
        let resource = pod(&["ghcr.io/team/app:v1"]);
        let review = "https://example.com/CodeReview/v1";
        let (status, message, patched) =
            vp(&[attested("good", review, "main")], &resource, &registry).unwrap();
        assert_eq!(status, RuleStatus::Pass, "{message}");
        assert_eq!(
            message,
            "verified image attestations for ghcr.io/team/app:v1"
        );
        assert_eq!(
            patched.unwrap()["spec"]["containers"][0]["image"],
            "ghcr.io/team/app:v1@sha256:feed"
        );
        assert_eq!(
            registry.asked.lock().unwrap()[0].predicate_type,
            review.to_string()
        );
        let (status, message, _) =
            vp(&[attested("good", review, "release")], &resource, &registry).unwrap();
        assert_eq!(status, RuleStatus::Fail);
        assert_eq!(
            message,
            ".attestations[0].attestors[0].entries[0].keys: attestation checks failed for ghcr.io/team/app:v1 and predicate https://example.com/CodeReview/v1"
        );
        let (status, message, _) = vp(
            &[attested("good", "https://cyclonedx.org/bom", "main")],
            &resource,
            &registry,
        )
        .unwrap();
        assert_eq!(status, RuleStatus::Fail);
        assert!(
            message.ends_with("attestions not found for predicate type https://cyclonedx.org/bom"),
            "{message}"
        );
        let (status, message, _) =
            vp(&[attested("other", review, "main")], &resource, &registry).unwrap();
        assert_eq!(status, RuleStatus::Fail);
        assert_eq!(
            message,
            "failed to verify image ghcr.io/team/app:v1: no matching attestations"
        );
        // The validate pass checks the attestations again for required entries.
        assert_eq!(
            ck(&[attested("good", review, "release")], &resource, &registry).map(|r| r.0),
            Some(RuleStatus::Fail)
        );
    }

    #[test]
    fn extracted_images_are_the_images_variable_of_the_rule() {
        let registry = Registry::new("good");
        let extractors = Extractors::from_json(Some(&json!({"Disk": [{
            "name": "disks", "path": "/spec/url", "jmesPath": "trim_prefix(@, 'docker://')"}]})))
        .unwrap();
        let disk = json!({"kind": "Disk", "spec": {"url": "docker://ghcr.io/team/disk:v1"}});
        let rule = |tag: &str| {
            ImageVerification::from_json(&json!({"imageReferences": ["*"], "attestations": [{
                "type": "https://example.com/CodeReview/v1",
                "attestors": [{"entries": [{"keys": {"publicKeys": key("good"),
                    "rekor": {"ignoreTlog": true}}}]}],
                "conditions": [{"all": [{"key": "{{ images.disks.\"/spec/url\".tag }}",
                    "operator": "Equals", "value": tag}]}]
            }]}))
        };
        let run = |entry: ImageVerification| {
            verify_and_patch(
                &[entry],
                &extractors,
                &disk,
                &registry,
                &JsonContext::default(),
                SubstituteOptions::default(),
            )
        };
        let (status, message, patched) = run(rule("v1")).unwrap();
        assert_eq!(status, RuleStatus::Pass, "{message}");
        // The extracted path is pinned.
        assert_eq!(
            patched.unwrap()["spec"]["url"],
            "ghcr.io/team/disk:v1@sha256:feed"
        );
        assert_eq!(run(rule("v2")).unwrap().0, RuleStatus::Fail);
    }

    #[test]
    fn attestations_after_signatures_are_read_by_the_verified_digest() {
        let registry = Registry::new("good");
        let mut rule = attested("good", "https://example.com/CodeReview/v1", "main");
        rule.attestor_sets = keyed(&["good"], None).attestor_sets;
        let (status, message, _) = vp(&[rule], &pod(&["ghcr.io/team/app:v1"]), &registry).unwrap();
        assert_eq!(status, RuleStatus::Pass, "{message}");
        let asked = registry.asked.lock().unwrap();
        assert_eq!(asked[0].image, "ghcr.io/team/app:v1");
        assert_eq!(asked[1].image, "ghcr.io/team/app@sha256:feed");
    }

    #[test]
    fn mutate_digest_without_attestors_resolves_the_tag() {
        let rule = ImageVerification::from_json(&json!({"imageReferences": ["*"]}));
        let (status, message, patched) =
            vp(&[rule], &pod(&["nginx:1"]), &Registry::new("good")).unwrap();
        assert_eq!(
            (status, message.as_str()),
            (RuleStatus::Pass, "mutated image digest")
        );
        assert_eq!(
            patched.unwrap()["spec"]["containers"][0]["image"],
            "docker.io/nginx:1@sha256:feed"
        );
    }
}
