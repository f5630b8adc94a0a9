//! Certificates and keyless identities against a real registry (Debian's `docker-registry` on
//! loopback): the tests' own certificate authority stands in for Fulcio, signatures carry
//! their certificate and chain as cosign writes them, and checks trust only the policy's roots.

use kybern_engine::context::{
    AttestationOutcome, KeylessIdentity, SignatureCheck, SignatureOutcome,
};
use kybern_registry::testing::{
    Signature, TestAttestation, TestCa, TestIdentity, TestRegistry, signing_key,
};
use kybern_registry::{Registry, RegistryConfig, RegistryError};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const ISSUER: &str = "https://issuer.example.com";
const REPOSITORY_EXT: u64 = 5;

struct Fixture {
    _server: TestRegistry,
    registry: Registry,
    repo: String,
    ca: TestCa,
}

fn fixture(intermediate: bool) -> Option<Fixture> {
    let server = TestRegistry::start()?;
    let registry = Registry::new(RegistryConfig {
        timeout: Duration::from_secs(5),
        ..RegistryConfig::default()
    })
    .unwrap();
    let repo = format!("{}/kybern/keyless", server.addr);
    Some(Fixture {
        _server: server,
        registry,
        repo,
        ca: TestCa::new("fulcio", intermediate),
    })
}

fn alice() -> TestIdentity<'static> {
    TestIdentity {
        subject: "alice@example.com",
        issuer: ISSUER,
        extensions: &[(REPOSITORY_EXT, "example/app")],
        expired: false,
    }
}

impl Fixture {
    /// Pushes an image and signs it with a fresh key certified for `identity`; the chain
    /// annotation is `chain` (the CA's full chain unless a test stores another).
    fn signed(&self, tag: &str, identity: &TestIdentity<'_>, chain: Option<&str>) -> String {
        self.ca
            .push_signed_image(&self.registry, &self.repo, tag, identity, chain)
            .unwrap()
    }

    fn keyless(&self, tag: &str, identity: KeylessIdentity) -> SignatureCheck {
        SignatureCheck {
            image: format!("{}:{tag}", self.repo),
            keyless: Some(KeylessIdentity {
                roots: self.ca.root_pem().to_string(),
                ..identity
            }),
            ..SignatureCheck::default()
        }
    }
}

fn outcome(result: Result<SignatureOutcome, RegistryError>) -> Result<String, String> {
    match result {
        Ok(SignatureOutcome::Verified { digest }) => Ok(digest),
        Ok(SignatureOutcome::Failed(m)) => Err(m),
        Err(e) => panic!("the registry could not be asked: {e}"),
    }
}

fn identity(subject: &str, issuer: &str) -> KeylessIdentity {
    KeylessIdentity {
        subject: subject.to_string(),
        issuer: issuer.to_string(),
        ..KeylessIdentity::default()
    }
}

#[test]
fn keyless_signatures_verify_under_the_roots_for_the_named_identity() {
    let Some(f) = fixture(false) else { return };
    let digest = f.signed("v1", &alice(), None);
    let r = &f.registry;
    for (subject, issuer) in [
        ("alice@example.com", ISSUER),
        ("*@example.com", "https://*.example.com"),
        ("", ""),
    ] {
        assert_eq!(
            outcome(r.verify_signature(&f.keyless("v1", identity(subject, issuer)))),
            Ok(digest.clone()),
            "subject {subject:?} issuer {issuer:?}"
        );
    }
    let by_regexp = KeylessIdentity {
        subject_regexp: "^alice@.*\\.com$".into(),
        issuer_regexp: "^https://issuer\\.".into(),
        extensions: BTreeMap::from([("githubWorkflowRepository".into(), "example/*".into())]),
        ..KeylessIdentity::default()
    };
    assert_eq!(
        outcome(r.verify_signature(&f.keyless("v1", by_regexp))),
        Ok(digest)
    );

    let err =
        outcome(r.verify_signature(&f.keyless("v1", identity("bob@example.com", "")))).unwrap_err();
    assert!(
        err.contains("subject mismatch: expected bob@example.com, received alice@example.com"),
        "{err}"
    );
    let err = outcome(r.verify_signature(&f.keyless("v1", identity("", "https://other.example"))))
        .unwrap_err();
    assert!(
        err.contains(
            "issuer mismatch: expected https://other.example, received https://issuer.example.com"
        ),
        "{err}"
    );
    let other_repo = KeylessIdentity {
        extensions: BTreeMap::from([("1.3.6.1.4.1.57264.1.5".into(), "evil/*".into())]),
        ..KeylessIdentity::default()
    };
    let err = outcome(r.verify_signature(&f.keyless("v1", other_repo))).unwrap_err();
    assert!(err.contains("extension mismatch: expected evil/*"), "{err}");
    let unknown = KeylessIdentity {
        extensions: BTreeMap::from([("buildTrigger".into(), "*".into())]),
        ..KeylessIdentity::default()
    };
    let err = outcome(r.verify_signature(&f.keyless("v1", unknown))).unwrap_err();
    assert!(
        err.contains("invalid certificate extension buildTrigger"),
        "{err}"
    );
}

#[test]
fn keyless_signatures_fail_under_other_roots_expired_or_without_certificate() {
    let Some(f) = fixture(false) else { return };
    f.signed("v1", &alice(), None);
    let r = &f.registry;
    // Roots of another authority: the certificate does not chain to them.
    let stranger = TestCa::new("stranger", false);
    let mut check = f.keyless("v1", identity("alice@example.com", ISSUER));
    check.keyless = Some(KeylessIdentity {
        roots: stranger.root_pem().to_string(),
        ..identity("alice@example.com", ISSUER)
    });
    let err = outcome(r.verify_signature(&check)).unwrap_err();
    assert!(err.contains("certificate verification failed"), "{err}");
    // The stranger's root stored as the signature's chain is not trusted either.
    let key = signing_key("forged");
    let forged_cert = stranger.issue(&key, &alice());
    let digest = r.push_image(&f.repo, "forged", "image forged").unwrap();
    let mut forged = Signature::by(&key);
    forged.certificate = Some((&forged_cert, stranger.chain_pem()));
    r.push_signatures(&f.repo, &digest, &[forged]).unwrap();
    let err = outcome(r.verify_signature(&f.keyless("forged", identity("", "")))).unwrap_err();
    assert!(err.contains("certificate verification failed"), "{err}");

    // An expired certificate: no log entry dates the signature, so it must be valid now.
    let expired = TestIdentity {
        expired: true,
        ..alice()
    };
    f.signed("old", &expired, None);
    let err = outcome(r.verify_signature(&f.keyless("old", identity("", "")))).unwrap_err();
    assert!(err.contains("not valid now"), "{err}");

    // A key signature without a certificate cannot satisfy a keyless attestor.
    let digest = r.push_image(&f.repo, "keyed", "image keyed").unwrap();
    let keyed = signing_key("keyed");
    r.push_signatures(&f.repo, &digest, &[Signature::by(&keyed)])
        .unwrap();
    let err = outcome(r.verify_signature(&f.keyless("keyed", identity("", "")))).unwrap_err();
    assert!(err.contains("certificate not found"), "{err}");

    // A certificate for one key over a signature made by another.
    let digest = r.push_image(&f.repo, "swapped", "image swapped").unwrap();
    let signer = signing_key("signer");
    let cert_for_other = f.ca.issue(&signing_key("other"), &alice());
    let mut swapped = Signature::by(&signer);
    swapped.certificate = Some((&cert_for_other, f.ca.chain_pem()));
    r.push_signatures(&f.repo, &digest, &[swapped]).unwrap();
    let err = outcome(r.verify_signature(&f.keyless("swapped", identity("", "")))).unwrap_err();
    assert!(err.contains("invalid signature"), "{err}");
}

#[test]
fn intermediates_come_from_the_signature_chain_and_roots_from_the_policy() {
    let Some(f) = fixture(true) else { return };
    let digest = f.signed("v1", &alice(), None);
    let r = &f.registry;
    assert_eq!(
        outcome(r.verify_signature(&f.keyless("v1", identity("alice@example.com", ISSUER)))),
        Ok(digest)
    );
    // Without the intermediate the leaf cannot reach the root.
    f.signed("bare", &alice(), Some(""));
    let err = outcome(r.verify_signature(&f.keyless("bare", identity("", "")))).unwrap_err();
    assert!(err.contains("certificate verification failed"), "{err}");
}

#[test]
fn a_certificate_attestor_checks_its_cert_chain_first() {
    let Some(f) = fixture(true) else { return };
    let key = signing_key("release");
    let cert = f.ca.issue(&key, &alice());
    let digest = f
        .registry
        .push_image(&f.repo, "release", "image release")
        .unwrap();
    f.registry
        .push_signatures(&f.repo, &digest, &[Signature::by(&key)])
        .unwrap();
    let check = |chain: &str| SignatureCheck {
        image: format!("{}:release", f.repo),
        public_key: cert.clone(),
        cert_chain: chain.to_string(),
        ..SignatureCheck::default()
    };
    assert_eq!(
        outcome(f.registry.verify_signature(&check(f.ca.chain_pem()))),
        Ok(digest)
    );
    let stranger = TestCa::new("stranger", true);
    let err = outcome(f.registry.verify_signature(&check(stranger.chain_pem()))).unwrap_err();
    assert!(
        err.contains("failed to load validate certificate chain"),
        "{err}"
    );
    let too_long = f.ca.chain_pem().repeat(6);
    let err = outcome(f.registry.verify_signature(&check(&too_long))).unwrap_err();
    assert!(err.contains("certificate chain too long (12)"), "{err}");
}

#[test]
fn keyless_attestations_verify_for_the_named_identity() {
    let Some(f) = fixture(false) else { return };
    let digest = f
        .registry
        .push_image(&f.repo, "attested", "image attested")
        .unwrap();
    let key = signing_key("attester");
    let cert = f.ca.issue(&key, &alice());
    f.registry
        .push_attestations(
            &f.repo,
            &digest,
            &[TestAttestation {
                certificate: Some((&cert, f.ca.chain_pem())),
                key: &key,
                predicate_type: "https://example.com/CodeReview/v1",
                predicate: json!({"reviewed": true}),
                subject_digest: None,
            }],
        )
        .unwrap();
    let check = |subject: &str| SignatureCheck {
        predicate_type: "https://example.com/CodeReview/v1".into(),
        ..f.keyless("attested", identity(subject, ISSUER))
    };
    match f.registry.verify_attestations(&check("alice@example.com")) {
        Ok(AttestationOutcome::Verified {
            digest: d,
            statements,
        }) => {
            assert_eq!(d, digest);
            assert_eq!(statements.len(), 1);
            assert_eq!(statements[0]["predicate"]["reviewed"], json!(true));
        }
        other => panic!("expected verified attestations, got {other:?}"),
    }
    match f
        .registry
        .verify_attestations(&check("mallory@example.com"))
    {
        Ok(AttestationOutcome::Failed(m)) => assert!(m.contains("subject mismatch"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn image_validating_policy_identities_follow_cosign_exact_rules() {
    let Some(f) = fixture(false) else { return };
    let digest = f.signed("v1", &alice(), None);
    let no_san = TestIdentity {
        subject: "",
        ..alice()
    };
    f.signed("anonymous", &no_san, None);
    let r = &f.registry;
    let exact = |subject: &str, subject_regexp: &str, issuer: &str| KeylessIdentity {
        subject: subject.into(),
        subject_regexp: subject_regexp.into(),
        issuer: issuer.into(),
        exact: true,
        ..KeylessIdentity::default()
    };
    assert_eq!(
        outcome(r.verify_signature(&f.keyless("v1", exact("alice@example.com", "", ISSUER)))),
        Ok(digest.clone())
    );
    // The regular expression takes precedence over the exact subject.
    assert_eq!(
        outcome(r.verify_signature(&f.keyless("v1", exact("bob@example.com", "^alice@", ISSUER)))),
        Ok(digest)
    );
    // No wildcards in cosign's identities.
    let err =
        outcome(r.verify_signature(&f.keyless("v1", exact("*@example.com", "", "")))).unwrap_err();
    assert!(err.contains("subject mismatch"), "{err}");
    let err = outcome(r.verify_signature(&f.keyless("v1", exact("", "", "https://*.example.com"))))
        .unwrap_err();
    assert!(err.contains("issuer mismatch"), "{err}");
    // A certificate without alternative names: cosign matches no subject; Kyverno's
    // ClusterPolicy rules skip the subject check for it.
    let err =
        outcome(r.verify_signature(&f.keyless("anonymous", exact("alice@example.com", "", ""))))
            .unwrap_err();
    assert!(err.contains("subject mismatch"), "{err}");
    assert!(
        outcome(r.verify_signature(&f.keyless("anonymous", identity("alice@example.com", ""))))
            .is_ok()
    );
}
