//! Signing certificates as cosign trusts them without a transparency log: the certificate
//! chains to the given roots (intermediates from the signature's chain or the policy's
//! `certChain`), checked at the certificate's own `notBefore` as cosign does, with the code
//! signing usage wherever a certificate states usages (Go's rule); a keyless certificate must
//! also be valid now, since no log entry dates the signature. Then the keyless identity:
//! `subject` over the subject alternative names, `issuer` over Fulcio's OIDC issuer extension,
//! and the GitHub workflow extensions, by wildcard or regular expression (Kyverno's matching).

use kybern_engine::context::KeylessIdentity;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::time::Duration;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer;

/// At most this many certificates in a chain (Kyverno's guard against unbounded chain
/// building: ten intermediates and a root).
pub const MAX_CHAIN: usize = 11;

/// At most this many certificates in a policy's roots bundle (a pool; only bounded in size).
pub const MAX_ROOTS: usize = 256;

/// Extended key usage `codeSigning` (1.3.6.1.5.5.7.3.3), DER contents.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Fulcio's extensions (`1.3.6.1.4.1.57264.1.N`) the identity may name, with cosign's names.
/// `.1.8` is the issuer as a DER string; the others are raw strings.
const FULCIO_EXTENSIONS: [(u64, &str); 6] = [
    (1, "oidcIssuer"),
    (2, "githubWorkflowTrigger"),
    (3, "githubWorkflowSha"),
    (4, "githubWorkflowName"),
    (5, "githubWorkflowRepository"),
    (6, "githubWorkflowRef"),
];

/// Signature algorithms of certificates (the ones Go's x509 verifies, less DSA and SHA-1).
static CERTIFICATE_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The DER certificates of a PEM chain, at most `MAX_CHAIN`.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    pem_bundle(pem, MAX_CHAIN)
}

/// The DER certificates of a PEM bundle of roots, at most `MAX_ROOTS`.
pub fn pem_roots(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    pem_bundle(pem, MAX_ROOTS)
}

fn pem_bundle(pem: &str, max: usize) -> Result<Vec<Vec<u8>>, String> {
    // Counted before parsing, so a huge bundle costs no ASN.1 work.
    let blocks = pem.matches("-----BEGIN CERTIFICATE-----").count();
    if blocks > max {
        return Err(format!(
            "certificate chain too long ({blocks}), maximum allowed is {max}"
        ));
    }
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.trim().as_bytes()) {
        let block = block.map_err(|e| format!("certificates do not parse as PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err("no certificates found in PEM".to_string());
    }
    Ok(out)
}

/// The PEM of one certificate, parsed.
pub fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("the certificate does not parse: {e}"))
}

fn self_signed(der: &[u8]) -> bool {
    parse(der).is_ok_and(|c| c.subject().as_raw() == c.issuer().as_raw())
}

/// Checks that `leaf` chains to one of `roots` through `intermediates`, at the leaf's
/// `notBefore` (cosign treats a certificate as trusted for the time it was issued).
pub fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
) -> Result<(), String> {
    let parsed = parse(leaf)?;
    let issued = u64::try_from(parsed.validity().not_before.timestamp()).unwrap_or(0);
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a root certificate is not usable: {e:?}"))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("the signing certificate is not usable: {e:?}"))?;
    end_entity
        .verify_for_usage(
            CERTIFICATE_ALGORITHMS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(issued)),
            KeyUsage::required_if_present(CODE_SIGNING),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("certificate verification failed: {e:?}"))
}

/// Checks a signature's own certificate: its chain to the roots (intermediates from the
/// signature's `chain` annotation; its roots are never trusted) and that it is valid now.
pub fn verify_signing_certificate(
    leaf: &[u8],
    chain_pem: Option<&str>,
    roots: &[Vec<u8>],
) -> Result<(), String> {
    let intermediates = match chain_pem.filter(|c| !c.trim().is_empty()) {
        Some(pem) => pem_certificates(pem)?
            .into_iter()
            .filter(|c| !self_signed(c))
            .collect(),
        None => Vec::new(),
    };
    verify_chain(leaf, &intermediates, roots)?;
    if !parse(leaf)?.validity().is_valid() {
        return Err("the signing certificate is not valid now (expired or not yet valid)".into());
    }
    Ok(())
}

/// Checks a certificate against a `certChain`: the last certificate is the root, the others
/// intermediates (cosign's `ValidateAndUnpackCertWithChain`).
pub fn verify_against_chain(leaf: &[u8], chain_pem: &str) -> Result<(), String> {
    let mut chain = pem_certificates(chain_pem)?;
    let root = chain.pop().into_iter().collect::<Vec<_>>();
    verify_chain(leaf, &chain, &root)
}

/// The value of Fulcio extension `1.3.6.1.4.1.57264.1.<arc>`, raw or DER string.
fn fulcio_extension(cert: &X509Certificate<'_>, arc: u64) -> Option<String> {
    let oid = Oid::from(&[1, 3, 6, 1, 4, 1, 57264, 1, arc]).ok()?;
    let ext = cert.get_extension_unique(&oid).ok().flatten()?;
    if arc == 8 {
        return der_string(ext.value);
    }
    std::str::from_utf8(ext.value).ok().map(str::to_string)
}

/// A DER UTF8String (or other string type) as text.
fn der_string(der: &[u8]) -> Option<String> {
    let (_, obj) = x509_parser::der_parser::der::parse_der(der).ok()?;
    obj.as_str().ok().map(str::to_string)
}

/// The OIDC issuer: extension `.1.8`, else the older `.1.1` (cosign's `GetIssuer`).
fn issuer(cert: &X509Certificate<'_>) -> String {
    fulcio_extension(cert, 8)
        .or_else(|| fulcio_extension(cert, 1))
        .unwrap_or_default()
}

/// Subject alternative names as cosign lists them: DNS names, emails, IP addresses, URIs and
/// Fulcio's username other-name.
fn subject_alternative_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    let username = Oid::from(&[1, 3, 6, 1, 4, 1, 57264, 1, 7]).ok();
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_string())
            }
            GeneralName::IPAddress(b) => <[u8; 4]>::try_from(*b)
                .map(std::net::IpAddr::from)
                .or_else(|_| <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from))
                .ok()
                .map(|ip| ip.to_string()),
            GeneralName::OtherName(oid, value) if Some(oid) == username.as_ref() => {
                // [0] EXPLICIT UTF8String.
                let (_, inner) = x509_parser::der_parser::der::parse_der(value).ok()?;
                inner
                    .as_slice()
                    .ok()
                    .and_then(der_string)
                    .or_else(|| der_string(value))
            }
            _ => None,
        })
        .collect()
}

fn regex(pattern: &str, what: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regexp for {what}: {pattern} : {e}"))
}

/// Checks a certificate's identity as cosign's `Identity` does (ImageValidatingPolicy
/// identities): `issuerRegExp`, else `issuer` exactly, and `subjectRegExp`, else `subject`
/// exactly against one of the alternative names (a certificate without any matches no subject).
fn match_cosign_identity(
    cert: &X509Certificate<'_>,
    identity: &KeylessIdentity,
) -> Result<(), String> {
    let issuer = [issuer(cert)];
    let sans = subject_alternative_names(cert);
    let checks = [
        (
            "issuer",
            &issuer[..],
            &identity.issuer,
            &identity.issuer_regexp,
        ),
        (
            "subject",
            &sans[..],
            &identity.subject,
            &identity.subject_regexp,
        ),
    ];
    for (what, values, exact, regexp) in checks {
        let ok = if regexp.is_empty() {
            exact.is_empty() || values.contains(exact)
        } else {
            let re = regex(regexp, what)?;
            values.iter().any(|v| re.is_match(v))
        };
        if !ok {
            let expected = if regexp.is_empty() { exact } else { regexp };
            return Err(format!(
                "{what} mismatch: expected {expected}, received {}",
                values.join(", ")
            ));
        }
    }
    Ok(())
}

/// Checks a keyless certificate's identity: cosign's exact rules for ImageValidatingPolicy
/// identities (`identity.exact`), else Kyverno's ClusterPolicy rules with its messages.
pub fn match_identity(leaf: &[u8], identity: &KeylessIdentity) -> Result<(), String> {
    let cert = parse(leaf)?;
    if identity.exact {
        return match_cosign_identity(&cert, identity);
    }
    if !identity.subject.is_empty() || !identity.subject_regexp.is_empty() {
        let sans = subject_alternative_names(&cert);
        // Kyverno checks the subject only when the certificate has alternative names.
        if !sans.is_empty() {
            let mut matched = !identity.subject.is_empty()
                && sans
                    .iter()
                    .any(|s| kybern_engine::wildcard::matches(&identity.subject, s));
            if !identity.subject_regexp.is_empty() {
                let re = regex(&identity.subject_regexp, "subject")?;
                matched |= sans.iter().any(|s| re.is_match(s));
            }
            if !matched {
                let expected = if identity.subject.is_empty() {
                    &identity.subject_regexp
                } else {
                    &identity.subject
                };
                return Err(format!(
                    "subject mismatch: expected {expected}, received {}",
                    sans.join(", ")
                ));
            }
        }
    }
    if !identity.issuer.is_empty() || !identity.issuer_regexp.is_empty() {
        let got = issuer(&cert);
        if !identity.issuer.is_empty() && !kybern_engine::wildcard::matches(&identity.issuer, &got)
        {
            return Err(format!(
                "issuer mismatch: expected {}, received {got}",
                identity.issuer
            ));
        }
        if !identity.issuer_regexp.is_empty()
            && !regex(&identity.issuer_regexp, "issuer")?.is_match(&got)
        {
            return Err(format!(
                "issuer mismatch: expected {}, received {got}",
                identity.issuer_regexp
            ));
        }
    }
    for (key, want) in &identity.extensions {
        let arc = FULCIO_EXTENSIONS.iter().find_map(|(arc, name)| {
            (key == name || *key == format!("1.3.6.1.4.1.57264.1.{arc}")).then_some(*arc)
        });
        let Some(arc) = arc else {
            return Err(format!("invalid certificate extension {key}"));
        };
        let got = if arc == 1 {
            issuer(&cert)
        } else {
            fulcio_extension(&cert, arc).unwrap_or_default()
        };
        if !kybern_engine::wildcard::matches(want, &got) {
            return Err(format!(
                "extension mismatch: expected {want} for key {key}, received {got}"
            ));
        }
    }
    Ok(())
}
