//! `validate.manifests`: objects signed with sigstore's k8s-manifest-sigstore, checked offline.
//!
//! A signed object carries, under an annotation domain (`cosign.sigstore.dev` by default):
//! - `<domain>/message`: base64 of a gzip of the signed manifest (the YAML itself, or, in the
//!   older form, a gzip of a tar of YAML files);
//! - `<domain>/signature`, `<domain>/signature_1`, ...: base64 of ECDSA signatures (DER) over the
//!   manifest as decompressed once from the message.
//!
//! The object passes an attestor entry when one of its signatures verifies with the entry's
//! key and it equals the signed manifest of the same apiVersion, kind and name, once the fields
//! an API server or a signer changes are masked (Kyverno's and k8s-manifest-sigstore's default
//! ignore lists, and the policy's `ignoreFields`). An attestor set passes when `count` entries
//! pass (all of them without `count`); every set must pass. Public keys are ECDSA P-256 PEM
//! (`signatureAlgorithm` sha224/sha256/sha384/sha512); keys held in Secrets or KMS, certificates,
//! keyless attestors, dry-run matching and bundles in OCI repositories need a cluster or a
//! registry, and make the rule an error that names them.

use crate::response::RuleStatus;
use base64::Engine as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::Read;

const DEFAULT_DOMAIN: &str = "cosign.sigstore.dev";

/// Largest signed manifest read from a message (it is decompressed from a small annotation).
const MAX_MANIFEST_BYTES: u64 = 8 << 20;

/// Deepest nesting of `attestor` entries followed.
const MAX_NESTING: usize = 8;

/// A compiled `validate.manifests`.
#[derive(Debug, Clone)]
pub struct ManifestCheck {
    domain: String,
    sets: Vec<AttestorSet>,
    ignore: Vec<IgnoreBinding>,
    /// `repository`: the signed bundle lives in an OCI registry (used when the object carries
    /// no message).
    repository: bool,
}

#[derive(Debug, Clone)]
struct AttestorSet {
    required: usize,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    annotations: BTreeMap<String, String>,
    verifier: Verifier,
    path: String,
}

#[derive(Debug, Clone)]
enum Verifier {
    Key {
        key: Box<VerifyingKey>,
        hash: Hash,
    },
    Nested(Box<AttestorSet>),
    /// What this attestor needs that kybern does not have offline, or why its key is unusable.
    Unsupported(String),
}

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Fields ignored on objects of some kinds (`ignoreFields` entries).
#[derive(Debug, Clone)]
struct IgnoreBinding {
    fields: Vec<String>,
    /// Kind patterns; `*` matches every kind.
    kinds: Vec<String>,
}

/// k8s-manifest-sigstore's and Kyverno's default ignore lists, plus the fields every signed
/// object differs in once it is stored (its own signature annotations are added per domain).
const DEFAULT_IGNORE: &[(&[&str], &[&str])] = &[
    (
        &[
            "metadata.namespace",
            "metadata.managedFields.*",
            "metadata.resourceVersion",
            "metadata.selfLink",
            "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration",
            "metadata.annotations.namespace",
            "metadata.annotations.control-plane.alpha.kubernetes.io/leader",
            "metadata.annotations.deprecated.daemonset.template.generation",
            "metadata.annotations.deployment.kubernetes.io/revision",
            "metadata.creationTimestamp",
            "metadata.generation",
            "metadata.uid",
            "metadata.finalizers*",
            "metadata.labels.app.kubernetes.io/instance",
            "spec.containers.*.imagePullPolicy",
            "spec.containers.*.terminationMessagePath",
            "spec.containers.*.terminationMessagePolicy",
            "spec.dnsPolicy",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.terminationGracePeriodSeconds",
            "status",
        ],
        &["*"],
    ),
    (
        &[
            "spec.volumes.*.name",
            "spec.volumes.*.projected.*",
            "spec.volumes.*.configMap.defaultMode",
            "spec.containers.*.volumeMounts.*",
            "spec.tolerations.*",
            "spec.enableServiceLinks",
            "spec.preemptionPolicy",
            "spec.priority",
            "spec.serviceAccount",
        ],
        &["Pod"],
    ),
    (
        &[
            "spec.progressDeadlineSeconds",
            "spec.revisionHistoryLimit",
            "spec.strategy.*",
            "spec.template.metadata.creationTimestamp",
            "spec.containers.*.ports.*.protocol",
            "spec.containers.*.resources",
            "spec.securityContext",
        ],
        &["Deployment"],
    ),
    (
        &["spec.conversion.strategy", "spec.names.listKind"],
        &["CustomResourceDefinition"],
    ),
    (
        &[
            "spec.ports.*.nodePort",
            "spec.clusterIP",
            "spec.clusterIPs.0",
            "spec.sessionAffinity",
            "spec.type",
            "spec.ipFamilies.*",
            "spec.ipFamilyPolicy",
            "spec.internalTrafficPolicy",
        ],
        &["Service"],
    ),
    (
        &[
            "metadata.annotations.pod-policies.kyverno.io/autogen-controllers",
            "spec.failurePolicy",
            "spec.background",
            "spec.validationFailureAction",
        ],
        &["ClusterPolicy", "Policy"],
    ),
    (
        &["secrets.*.name", "imagePullSecrets.*.name"],
        &["ServiceAccount"],
    ),
    (&["spec.host"], &["Route"]),
];

impl ManifestCheck {
    /// Compiles `validate.manifests` at `path`; keys are parsed here, once. An attestor kybern
    /// cannot use offline still compiles: it makes the rule an error when it is reached.
    pub fn compile(v: &Value, path: &str) -> Result<ManifestCheck, String> {
        if !v.is_object() {
            return Err(format!("{path}: must be an object"));
        }
        let domain = v
            .get("annotationDomain")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_DOMAIN)
            .to_string();
        let mut sets = Vec::new();
        for (i, set) in list(v.get("attestors"), &format!("{path}.attestors"))?
            .iter()
            .enumerate()
        {
            sets.push(compile_set(set, &format!(".attestors[{i}]"), 0)?);
        }
        let mut ignore: Vec<IgnoreBinding> = DEFAULT_IGNORE
            .iter()
            .map(|(fields, kinds)| IgnoreBinding {
                fields: fields.iter().map(|f| (*f).to_string()).collect(),
                kinds: kinds.iter().map(|k| (*k).to_string()).collect(),
            })
            .collect();
        // The signature annotations themselves, under the policy's domain.
        ignore.push(IgnoreBinding {
            fields: [
                "message",
                "signature*",
                "certificate*",
                "bundle*",
                "resourceBundleRef",
            ]
            .iter()
            .map(|k| format!("metadata.annotations.{domain}/{k}"))
            .collect(),
            kinds: vec!["*".into()],
        });
        let ignore_path = format!("{path}.ignoreFields");
        for (i, b) in list(v.get("ignoreFields"), &ignore_path)?
            .iter()
            .enumerate()
        {
            let strings = |k: &str| -> Vec<String> {
                b.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let kinds: Vec<String> = b
                .get("objects")
                .and_then(Value::as_array)
                .map(|objs| {
                    objs.iter()
                        .map(|o| {
                            o.get("kind")
                                .and_then(Value::as_str)
                                .unwrap_or("*")
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_else(|| vec!["*".into()]);
            if !b.is_object() {
                return Err(format!("{ignore_path}[{i}]: must be an object"));
            }
            ignore.push(IgnoreBinding {
                fields: strings("fields"),
                kinds,
            });
        }
        let repository = v
            .get("repository")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty());
        Ok(ManifestCheck {
            domain,
            sets,
            ignore,
            repository,
        })
    }

    /// Verifies `object` (the request's new object); `dry_run` requests are allowed as Kyverno
    /// allows them.
    pub fn verify(&self, object: &Value, dry_run: bool) -> (RuleStatus, String) {
        if dry_run {
            return (RuleStatus::Pass, "allowed because of DryRun request".into());
        }
        let signed = match self.signed(object) {
            Ok(s) => s,
            Err(Outcome::Fail(reason)) => return (RuleStatus::Fail, reason),
            Err(Outcome::Error(e)) => {
                return (
                    RuleStatus::Error,
                    format!("error occurred during manifest verification: {e}"),
                );
            }
        };
        let mut reasons = Vec::new();
        for set in &self.sets {
            match self.verify_set(set, object, &signed) {
                Ok((true, reason)) => reasons.push(reason),
                Ok((false, reason)) => return (RuleStatus::Fail, reason),
                Err(e) => {
                    return (
                        RuleStatus::Error,
                        format!("error occurred during manifest verification: {e}"),
                    );
                }
            }
        }
        (
            RuleStatus::Pass,
            format!("verified manifest signatures; {}", reasons.join(",")),
        )
    }

    /// The object's signatures and the manifest they sign.
    fn signed(&self, object: &Value) -> Result<Signed, Outcome> {
        let annotations = object
            .pointer("/metadata/annotations")
            .and_then(Value::as_object);
        let key_prefix = format!("{}/", self.domain);
        let annotation = |name: &str| {
            annotations
                .and_then(|a| a.get(&format!("{key_prefix}{name}")))
                .and_then(Value::as_str)
        };
        let mut signatures: Vec<(&str, &str)> = annotations
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(&key_prefix)?;
                let is_signature = rest == "signature"
                    || rest
                        .strip_prefix("signature_")
                        .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
                is_signature.then_some((k.as_str(), v.as_str().unwrap_or_default()))
            })
            .collect();
        signatures.sort_by_key(|(k, _)| (k.len(), *k));
        let Some(message) = annotation("message") else {
            if self.repository {
                return Err(Outcome::Error(
                    "the signed manifest is in an OCI repository, which kybern cannot read offline"
                        .into(),
                ));
            }
            return Err(Outcome::Fail(format!(
                "`{key_prefix}message` is not found in the annotations"
            )));
        };
        if signatures.is_empty() {
            return Err(Outcome::Fail(format!(
                "`{key_prefix}signature` is not found in the annotations"
            )));
        }
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(message.trim())
            .map_err(|e| Outcome::Error(format!("the message is not base64: {e}")))?;
        let payload = gunzip(&compressed)
            .map_err(|e| Outcome::Error(format!("the message is not gzip data: {e}")))?;
        let manifests = manifests_of(&payload).map_err(Outcome::Error)?;
        let signatures = signatures
            .into_iter()
            .filter_map(|(_, s)| {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .ok()?;
                Signature::from_der(&der).ok()
            })
            .collect();
        Ok(Signed {
            payload,
            signatures,
            manifests,
        })
    }

    fn verify_set(
        &self,
        set: &AttestorSet,
        object: &Value,
        signed: &Signed,
    ) -> Result<(bool, String), String> {
        let mut verified = Vec::new();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for entry in &set.entries {
            if let Some((key, want)) = entry.annotations.iter().find(|(k, v)| {
                object
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(k.as_str()))
                    .and_then(Value::as_str)
                    != Some(v.as_str())
            }) {
                errors.push(format!(
                    "{}: annotations mismatch: expected value {want} for key {key}",
                    entry.path
                ));
                continue;
            }
            match &entry.verifier {
                Verifier::Unsupported(why) => errors.push(format!("{}: {why}", entry.path)),
                Verifier::Nested(inner) => match self.verify_set(inner, object, signed) {
                    Ok((true, reason)) => verified.push(reason),
                    Ok((false, reason)) => failed.push(reason),
                    Err(e) => errors.push(e),
                },
                Verifier::Key { key, hash } => {
                    if !signed
                        .signatures
                        .iter()
                        .any(|s| hash.verify(key, &signed.payload, s))
                    {
                        failed.push(format!("{}: failed to verify signature.", entry.path));
                        continue;
                    }
                    match self.manifest_diff(object, &signed.manifests) {
                        Ok(()) => {
                            verified.push(format!("signed by the public key of {}", entry.path))
                        }
                        Err(diff) => failed.push(format!(
                            "{}: failed to verify signature. {diff}",
                            entry.path
                        )),
                    }
                }
            }
            if verified.len() >= set.required {
                return Ok((
                    true,
                    format!(
                        "manifest verification succeeded; verifiedCount {}; requiredCount {}; message {}",
                        verified.len(),
                        set.required,
                        verified.join(",")
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok((
            false,
            format!(
                "manifest verification failed; verifiedCount {}; requiredCount {}; message {}",
                verified.len(),
                set.required,
                failed.join(",")
            ),
        ))
    }

    /// `Ok` when a signed manifest of the object's apiVersion, kind and name equals it outside
    /// the ignored fields, else the differing fields.
    fn manifest_diff(&self, object: &Value, manifests: &[Value]) -> Result<(), String> {
        let text = |v: &Value, p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind, name, namespace) = (
            text(object, "/apiVersion"),
            text(object, "/kind"),
            text(object, "/metadata/name"),
            text(object, "/metadata/namespace"),
        );
        let Some(manifest) = manifests.iter().find(|m| {
            text(m, "/apiVersion") == api_version
                && text(m, "/kind") == kind
                && text(m, "/metadata/name") == name
                && {
                    let ns = text(m, "/metadata/namespace");
                    ns.is_empty() || namespace.is_empty() || ns == namespace
                }
        }) else {
            return Err(format!(
                "no signed manifest of {api_version} {kind} {name} found in the message"
            ));
        };
        let ignored: Vec<&str> = self
            .ignore
            .iter()
            .filter(|b| b.kinds.iter().any(|k| crate::wildcard::matches(k, &kind)))
            .flat_map(|b| b.fields.iter().map(String::as_str))
            .collect();
        let skip = |path: &str| {
            ignored.iter().any(|p| {
                crate::wildcard::matches(p, path)
                    || path
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
        };
        let mut ours = BTreeMap::new();
        let mut theirs = BTreeMap::new();
        flatten(object, String::new(), &mut ours);
        flatten(manifest, String::new(), &mut theirs);
        let mut diff: Vec<&str> = ours
            .iter()
            .filter(|(k, v)| theirs.get(*k) != Some(*v))
            .map(|(k, _)| k.as_str())
            .chain(
                theirs
                    .keys()
                    .filter(|k| !ours.contains_key(*k))
                    .map(String::as_str),
            )
            .filter(|k| !skip(k))
            .collect();
        diff.sort_unstable();
        diff.dedup();
        if diff.is_empty() {
            Ok(())
        } else {
            Err(format!("diff found in {}", diff.join(", ")))
        }
    }
}

enum Outcome {
    Fail(String),
    Error(String),
}

struct Signed {
    /// The signed bytes: the message decompressed once.
    payload: Vec<u8>,
    signatures: Vec<Signature>,
    /// The YAML documents of the signed manifest.
    manifests: Vec<Value>,
}

impl Hash {
    fn verify(self, key: &VerifyingKey, data: &[u8], sig: &Signature) -> bool {
        let digest = match self {
            Hash::Sha224 => sha2::Sha224::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        };
        key.verify_prehash(&digest, sig).is_ok()
    }
}

fn list<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a [Value], String> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{path}: must be a list")),
    }
}

fn compile_set(v: &Value, path: &str, depth: usize) -> Result<AttestorSet, String> {
    if depth >= MAX_NESTING {
        return Err(format!("{path}: attestors are nested too deeply"));
    }
    let mut entries = Vec::new();
    for (i, e) in list(v.get("entries"), &format!("{path}.entries"))?
        .iter()
        .enumerate()
    {
        let entry_path = format!("{path}.entries[{i}]");
        let annotations: BTreeMap<String, String> = e
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut push = |verifier: Verifier, path: String| {
            entries.push(Entry {
                annotations: annotations.clone(),
                verifier,
                path,
            });
        };
        if let Some(nested) = e.get("attestor").filter(|a| !a.is_null()) {
            let nested_path = format!("{entry_path}.attestor");
            let set = compile_set(nested, &nested_path, depth + 1)?;
            push(Verifier::Nested(Box::new(set)), nested_path);
        } else if let Some(keys) = e.get("keys").filter(|k| !k.is_null()) {
            let key_path = format!("{entry_path}.keys");
            let hash = match keys
                .get("signatureAlgorithm")
                .and_then(Value::as_str)
                .unwrap_or("sha256")
            {
                "sha224" => Hash::Sha224,
                "sha256" | "" => Hash::Sha256,
                "sha384" => Hash::Sha384,
                "sha512" => Hash::Sha512,
                other => return Err(format!("{key_path}.signatureAlgorithm: unknown {other:?}")),
            };
            let text = keys
                .get("publicKeys")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim();
            let blocks = pem_blocks(text);
            if blocks.is_empty() {
                let why = if keys.get("secret").is_some()
                    || keys.get("kms").is_some()
                    || !text.is_empty()
                {
                    "keys held in a Secret or a KMS need cluster access, which kybern does not have offline"
                } else {
                    "no public key"
                };
                push(Verifier::Unsupported(why.into()), key_path.clone());
            }
            // Several PEM keys in one entry are one entry each, as Kyverno expands them.
            for block in blocks {
                let verifier = match VerifyingKey::from_public_key_pem(block) {
                    Ok(key) => Verifier::Key {
                        key: Box::new(key),
                        hash,
                    },
                    Err(e) => Verifier::Unsupported(format!(
                        "kybern verifies ECDSA P-256 public keys only: {e}"
                    )),
                };
                push(verifier, key_path.clone());
            }
        } else if e.get("certificates").is_some_and(|c| !c.is_null()) {
            push(
                Verifier::Unsupported(
                    "certificates are not supported: kybern verifies signed manifests with public keys only".into(),
                ),
                format!("{entry_path}.certificates"),
            );
        } else if e.get("keyless").is_some_and(|k| !k.is_null()) {
            push(
                Verifier::Unsupported(
                    "keyless attestors need Fulcio and Rekor, which kybern does not reach offline"
                        .into(),
                ),
                format!("{entry_path}.keyless"),
            );
        } else {
            return Err(format!(
                "{entry_path}: needs keys, certificates, keyless or attestor"
            ));
        }
    }
    let count = v.get("count").and_then(Value::as_u64).unwrap_or(0);
    let required = match usize::try_from(count) {
        Ok(n) if n > 0 => n,
        _ => entries.len(),
    };
    Ok(AttestorSet { required, entries })
}

/// The PEM blocks of `text` (`-----BEGIN ...-----` to `-----END ...-----`).
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let Some(after) = rest.get(start..) else {
            break;
        };
        let Some(end_marker) = after.find("-----END ") else {
            break;
        };
        let Some(tail) = after.get(end_marker + 9..) else {
            break;
        };
        let Some(close) = tail.find("-----") else {
            break;
        };
        let len = end_marker + 9 + close + 5;
        if let Some(block) = after.get(..len) {
            out.push(block);
        }
        rest = after.get(len..).unwrap_or_default();
    }
    out
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!("more than {MAX_MANIFEST_BYTES} bytes"));
    }
    Ok(out)
}

/// The YAML documents of a signed payload: YAML text, or a gzip of a tar of YAML files.
fn manifests_of(payload: &[u8]) -> Result<Vec<Value>, String> {
    let texts: Vec<Vec<u8>> = if payload.starts_with(&[0x1f, 0x8b]) {
        let tar =
            gunzip(payload).map_err(|e| format!("the signed bundle is not gzip data: {e}"))?;
        tar_files(&tar)?
    } else {
        vec![payload.to_vec()]
    };
    let mut docs = Vec::new();
    for text in texts {
        let text = String::from_utf8(text)
            .map_err(|e| format!("the signed manifest is not UTF-8: {e}"))?;
        let parsed = crate::yaml::parse_all(&text)
            .map_err(|e| format!("the signed manifest is not YAML: {e}"))?;
        docs.extend(parsed);
    }
    Ok(docs)
}

/// The regular files of a tar archive (ustar headers; other entries are skipped).
fn tar_files(tar: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while let Some(header) = tar.get(offset..offset + 512) {
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size_field = header.get(124..136).unwrap_or_default();
        let size_text: String = size_field
            .iter()
            .take_while(|&&b| b != 0 && b != b' ')
            .map(|&b| char::from(b))
            .collect();
        let size = usize::from_str_radix(size_text.trim(), 8)
            .map_err(|_| "the signed bundle is not a tar archive".to_string())?;
        let start = offset + 512;
        let body = tar
            .get(start..start.saturating_add(size))
            .ok_or_else(|| "the signed bundle's tar archive is truncated".to_string())?;
        if matches!(header.get(156), Some(&(b'0' | 0))) {
            out.push(body.to_vec());
        }
        offset = start.saturating_add(size.div_ceil(512) * 512);
    }
    Ok(out)
}

/// Leaves of `v` by dotted path (`spec.ports.0.port`); empty objects and lists have no leaves.
fn flatten(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                flatten(child, join(k), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                flatten(child, join(&i.to_string()), out);
            }
        }
        leaf => {
            out.insert(path, leaf.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pem_blocks_split_several_keys() {
        let two = "-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n-----BEGIN PUBLIC KEY-----\nBBB\n-----END PUBLIC KEY-----";
        let blocks = pem_blocks(two);
        assert_eq!(blocks.len(), 2);
        assert!(
            blocks
                .iter()
                .all(|b| b.ends_with("-----END PUBLIC KEY-----"))
        );
        assert!(pem_blocks("k8s://ns/secret").is_empty());
    }

    #[test]
    fn ignored_fields_and_masks_do_not_count_as_differences() {
        let check = ManifestCheck::compile(
            &json!({"attestors": [], "ignoreFields": [{"fields": ["spec.extra"], "objects": [{"kind": "Service"}]}]}),
            "validate.manifests",
        )
        .unwrap();
        let manifest = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                              "spec": {"ports": [{"port": 80}]}});
        let stored = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "default", "uid": "u",
                         "annotations": {"cosign.sigstore.dev/signature_1": "x"}},
            "spec": {"ports": [{"port": 80, "nodePort": 31000}], "clusterIP": "10.0.0.1", "extra": 1},
            "status": {"loadBalancer": {}}});
        assert_eq!(
            check.manifest_diff(&stored, std::slice::from_ref(&manifest)),
            Ok(())
        );
        let changed = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                             "spec": {"ports": [{"port": 8080}]}});
        assert_eq!(
            check.manifest_diff(&changed, &[manifest]),
            Err("diff found in spec.ports.0.port".into())
        );
    }

    /// Signs `yaml` as k8s-manifest-sigstore does: the message is base64 of a gzip of the YAML,
    /// the signature covers the YAML.
    fn signed_object(key: &p256::ecdsa::SigningKey, yaml: &str, object: Value) -> Value {
        use p256::ecdsa::signature::Signer;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(yaml.as_bytes()).unwrap();
        let message = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let sig: Signature = key.sign(yaml.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
        let mut object = object;
        object["metadata"]["annotations"] = json!({
            "cosign.sigstore.dev/message": message,
            "cosign.sigstore.dev/signature": sig,
        });
        object
    }

    #[test]
    fn signatures_verify_against_the_keys_and_the_manifest() {
        use p256::pkcs8::EncodePublicKey;
        let signer = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let pem = |k: &p256::ecdsa::SigningKey| {
            k.verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .unwrap()
        };
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n";
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "cm", "namespace": "default"}, "data": {"a": "b"}});
        let signed = signed_object(&signer, yaml, object.clone());
        let check = |keys: &str, count: u64| {
            ManifestCheck::compile(
                &json!({"attestors": [{"count": count, "entries": [{"keys": {"publicKeys": keys}}]}]}),
                "m",
            )
            .unwrap()
        };
        let both = format!("{}{}", pem(&other), pem(&signer));
        let cases: Vec<(&str, ManifestCheck, Value, RuleStatus)> = vec![
            (
                "signed with the key",
                check(&pem(&signer), 0),
                signed.clone(),
                RuleStatus::Pass,
            ),
            (
                "another key",
                check(&pem(&other), 0),
                signed.clone(),
                RuleStatus::Fail,
            ),
            (
                "one of two keys, count 1",
                check(&both, 1),
                signed.clone(),
                RuleStatus::Pass,
            ),
            (
                "one of two keys, both required",
                check(&both, 0),
                signed.clone(),
                RuleStatus::Fail,
            ),
            (
                "no signature",
                check(&pem(&signer), 0),
                object.clone(),
                RuleStatus::Fail,
            ),
            (
                "changed after signing",
                check(&pem(&signer), 0),
                {
                    let mut o = signed.clone();
                    o["data"]["a"] = json!("changed");
                    o
                },
                RuleStatus::Fail,
            ),
            (
                "a key in a Secret",
                check("k8s://ns/secret", 0),
                signed.clone(),
                RuleStatus::Error,
            ),
        ];
        for (name, check, object, want) in cases {
            let (got, message) = check.verify(&object, false);
            assert_eq!(got, want, "{name}: {message}");
        }
        assert_eq!(
            check(&pem(&other), 0).verify(&object, true).0,
            RuleStatus::Pass
        );
    }
}
