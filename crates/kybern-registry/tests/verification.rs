//! Cosign signature verification against a real registry: Debian's `docker-registry` on a
//! loopback port, images pushed by the test, signatures written in cosign's layout by the test's
//! own P-256 keys. Then the engine, through a context provider backed by the registry client,
//! evaluates a `verifyImages` policy on Pods.

use kybern_engine::context::{
    ApiCall, AttestationOutcome, ContextProvider, ImageData, Labels, ProviderError, SignatureCheck,
    SignatureOutcome,
};
use kybern_engine::engine::{Engine, PolicyContext};
use kybern_engine::policy::compile_policy;
use kybern_engine::request::AdmissionRequest;
use kybern_engine::response::RuleStatus;
use kybern_registry::testing::{
    Signature, TestAttestation, TestRegistry, certificate_pem, public_key_pem, signing_key,
};
use kybern_registry::{Registry, RegistryConfig, RegistryError};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    server: TestRegistry,
    registry: Registry,
    /// `127.0.0.1:<port>/kybern/app`.
    repo: String,
    signed_digest: String,
}

/// A registry with `kybern/app:signed` (signed by key "good", with an `env: prod` claim) and
/// `kybern/app:unsigned` (different contents, no signature).
fn fixture() -> Option<Fixture> {
    let server = TestRegistry::start()?;
    let registry = Registry::new(RegistryConfig {
        timeout: Duration::from_secs(5),
        ..RegistryConfig::default()
    })
    .unwrap();
    let repo = format!("{}/kybern/app", server.addr);
    let signed_digest = registry
        .push_image(&repo, "signed", "signed image")
        .unwrap();
    registry
        .push_image(&repo, "unsigned", "unsigned image")
        .unwrap();
    let good = signing_key("good");
    let mut signature = Signature::by(&good);
    signature.optional = Some(json!({"env": "prod"}));
    registry
        .push_signatures(&repo, &signed_digest, &[signature])
        .unwrap();
    Some(Fixture {
        server,
        registry,
        repo,
        signed_digest,
    })
}

fn check(image: &str, key: &str) -> SignatureCheck {
    SignatureCheck {
        image: image.to_string(),
        public_key: public_key_pem(&signing_key(key)),
        ..SignatureCheck::default()
    }
}

fn failure(outcome: Result<SignatureOutcome, RegistryError>) -> String {
    match outcome {
        Ok(SignatureOutcome::Failed(m)) => m,
        other => panic!("expected a failed verification, got {other:?}"),
    }
}

#[test]
fn signed_image_verifies_by_tag_and_by_digest() {
    let Some(f) = fixture() else { return };
    let by_tag = f
        .registry
        .verify_signature(&check(&format!("{}:signed", f.repo), "good"))
        .unwrap();
    assert_eq!(
        by_tag,
        SignatureOutcome::Verified {
            digest: f.signed_digest.clone()
        }
    );
    let by_digest = f
        .registry
        .verify_signature(&check(&format!("{}@{}", f.repo, f.signed_digest), "good"))
        .unwrap();
    assert_eq!(by_tag, by_digest);
    // The annotation the signature carries is accepted; another value is not.
    let mut with_annotation = check(&format!("{}:signed", f.repo), "good");
    with_annotation.annotations = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    assert!(matches!(
        f.registry.verify_signature(&with_annotation),
        Ok(SignatureOutcome::Verified { .. })
    ));
    with_annotation
        .annotations
        .insert("env".to_string(), "dev".to_string());
    assert_eq!(
        failure(f.registry.verify_signature(&with_annotation)),
        "no matching signatures: no signature matched the required annotations"
    );
}

#[test]
fn unsigned_wrong_key_forged_and_tampered_signatures_fail() {
    let Some(f) = fixture() else { return };
    let r = &f.registry;
    assert_eq!(
        failure(r.verify_signature(&check(&format!("{}:unsigned", f.repo), "good"))),
        "no signatures found"
    );
    assert_eq!(
        failure(r.verify_signature(&check(&format!("{}:signed", f.repo), "other"))),
        "no matching signatures: invalid signature"
    );
    // A signature by the right key whose payload names another image's digest.
    let forged_digest = r.push_image(&f.repo, "forged", "forged image").unwrap();
    let good = signing_key("good");
    let mut forged = Signature::by(&good);
    forged.claimed_digest = Some(&f.signed_digest);
    r.push_signatures(&f.repo, &forged_digest, &[forged])
        .unwrap();
    assert_eq!(
        failure(r.verify_signature(&check(&format!("{}:forged", f.repo), "good"))),
        "no matching signatures: invalid or missing digest in claim"
    );
    // A payload changed after signing.
    let tampered_digest = r.push_image(&f.repo, "tampered", "tampered image").unwrap();
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}"}},"image":{{"docker-manifest-digest":"{tampered_digest}"}},"type":"cosign container image signature"}},"optional":{{"env":"prod"}}}}"#,
        f.repo
    );
    let mut tampered = Signature::by(&good);
    tampered.tampered_payload = Some(&payload);
    r.push_signatures(&f.repo, &tampered_digest, &[tampered])
        .unwrap();
    assert_eq!(
        failure(r.verify_signature(&check(&format!("{}:tampered", f.repo), "good"))),
        "no matching signatures: invalid signature"
    );
    // Several signatures: one by the right key is enough.
    let multi = r.push_image(&f.repo, "multi", "multi image").unwrap();
    let other = signing_key("other");
    r.push_signatures(
        &f.repo,
        &multi,
        &[Signature::by(&other), Signature::by(&good)],
    )
    .unwrap();
    assert!(matches!(
        r.verify_signature(&check(&format!("{}:multi", f.repo), "good")),
        Ok(SignatureOutcome::Verified { .. })
    ));
    // An image that does not exist fails (the registry answered), it is not an error.
    let missing = failure(r.verify_signature(&check(&format!("{}:nothing", f.repo), "good")));
    assert!(missing.contains("not found"), "{missing}");
}

#[test]
fn a_tag_moved_after_verification_is_verified_again() {
    let Some(f) = fixture() else { return };
    let image = format!("{}:moving", f.repo);
    f.registry
        .push_image(&f.repo, "moving", "signed image")
        .unwrap();
    assert!(matches!(
        f.registry.verify_signature(&check(&image, "good")),
        Ok(SignatureOutcome::Verified { .. })
    ));
    // The tag now points at unsigned contents: the cache is by digest, so this is checked anew.
    f.registry
        .push_image(&f.repo, "moving", "unsigned image")
        .unwrap();
    assert_eq!(
        failure(f.registry.verify_signature(&check(&image, "good"))),
        "no signatures found"
    );
}

#[test]
fn a_registry_that_is_down_is_an_error_not_a_failure() {
    let Some(mut f) = fixture() else { return };
    f.server.stop();
    let started = std::time::Instant::now();
    let outcome = f
        .registry
        .verify_signature(&check(&format!("{}:unsigned", f.repo), "good"));
    assert!(
        matches!(outcome, Err(RegistryError::Unreachable(_))),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The engine's view of the registry.
struct RegistryProvider<'a>(&'a Registry);

impl ContextProvider for RegistryProvider<'_> {
    fn resource(&self, _: &str, _: &str, _: &str, _: &str) -> Result<Option<Value>, ProviderError> {
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
    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        self.0
            .image_data(image)
            .map(|data| ImageData { data })
            .map_err(|e| ProviderError::Failed(e.to_string()))
    }
    fn global_context(&self, _: &str) -> Result<Option<Value>, ProviderError> {
        Ok(None)
    }
    fn verify_image_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError> {
        self.0.verify_for_provider(check)
    }
    fn image_digest(&self, image: &str) -> Result<String, ProviderError> {
        self.0.digest_for_provider(image)
    }
    fn verify_image_attestations(
        &self,
        check: &SignatureCheck,
    ) -> Result<AttestationOutcome, ProviderError> {
        self.0.attestations_for_provider(check)
    }
}

fn policy(addr: &str, key: &str) -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "verify-signature"},
        "spec": {"rules": [{
            "name": "check-key",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "verifyImages": [{
                "imageReferences": [format!("{addr}/kybern/*")],
                "failureAction": "Enforce",
                "attestors": [{"entries": [{"keys": {
                    "publicKeys": public_key_pem(&signing_key(key)),
                    "rekor": {"ignoreTlog": true}, "ctlog": {"ignoreSCT": true}}}]}]
            }]
        }]}
    })
}

fn pod(image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": image}]}})
}

/// Mutate then validate, as admission does: the statuses and messages of both passes and the
/// image after mutation.
fn admit(registry: &Registry, policy: &Value, image: &str) -> (Vec<(RuleStatus, String)>, String) {
    let policy = compile_policy(policy).unwrap();
    let provider = RegistryProvider(registry);
    let engine = Engine::new(&provider);
    let request = AdmissionRequest {
        object: Arc::new(pod(image)),
        old_object: Arc::new(Value::Null),
        ..AdmissionRequest::default()
    };
    let mutated = engine.mutate(
        &policy,
        &PolicyContext::new(&request),
        &[],
        &BTreeMap::new(),
    );
    let patched = AdmissionRequest {
        object: Arc::clone(&mutated.patched_resource),
        ..request.clone()
    };
    let validated = engine.validate(
        &policy,
        &PolicyContext::new(&patched),
        &[],
        &BTreeMap::new(),
    );
    let results = mutated
        .rules
        .iter()
        .chain(&validated.rules)
        .map(|r| (r.status, r.message.clone()))
        .collect();
    let image = mutated.patched_resource["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    (results, image)
}

#[test]
fn engine_pins_signed_images_to_their_digest_and_fails_the_others() {
    let Some(f) = fixture() else { return };
    let addr = &f.server.addr;
    let signed = format!("{}:signed", f.repo);
    let (results, image) = admit(&f.registry, &policy(addr, "good"), &signed);
    assert_eq!(
        results,
        vec![
            (
                RuleStatus::Pass,
                format!("verified image signatures for {signed}")
            ),
            (RuleStatus::Pass, "image verified".to_string()),
        ]
    );
    assert_eq!(image, format!("{signed}@{}", f.signed_digest));

    let unsigned = format!("{}:unsigned", f.repo);
    let (results, image) = admit(&f.registry, &policy(addr, "good"), &unsigned);
    assert_eq!(image, unsigned, "a failed image is not pinned");
    let want = format!(
        "failed to verify image {unsigned}: .attestors[0].entries[0].keys: no signatures found"
    );
    assert_eq!(
        results,
        vec![(RuleStatus::Fail, want.clone()), (RuleStatus::Fail, want)]
    );

    let (results, _) = admit(&f.registry, &policy(addr, "other"), &signed);
    assert_eq!(results[0].0, RuleStatus::Fail);
    assert!(
        results[0]
            .1
            .ends_with("no matching signatures: invalid signature"),
        "{}",
        results[0].1
    );
}

/// `kybern:registry-secret` (bcrypt, as distribution's htpasswd auth wants it).
const HTPASSWD: &str = "kybern:$2b$05$wRV/6yywZ7rjs9PFLEIkaOEbXjGByukrWYOZ.Oh/WTlwsyLMvVEfq";

#[test]
fn a_private_registry_is_read_with_the_docker_config_credentials() {
    use kybern_registry::credentials::Credentials;
    let Some(server) = TestRegistry::start_with_basic_auth(HTPASSWD) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("kybern-docker-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    // The docker CLI's form: base64 of user:password under the registry's host:port.
    let auth = base64_user_password("kybern", "registry-secret");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap();
    let with_credentials = Registry::new(RegistryConfig {
        credentials: Credentials::from_file(&config).unwrap(),
        ..RegistryConfig::default()
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let repo = format!("{}/private/app", server.addr);
    let digest = with_credentials.push_image(&repo, "v1", "private").unwrap();
    let good = signing_key("good");
    with_credentials
        .push_signatures(&repo, &digest, &[Signature::by(&good)])
        .unwrap();
    let image = format!("{repo}:v1");
    assert_eq!(
        with_credentials
            .verify_signature(&check(&image, "good"))
            .unwrap(),
        SignatureOutcome::Verified {
            digest: digest.clone()
        }
    );
    // Without credentials the registry refuses: a failure (as in Kyverno), not a pass.
    let anonymous = Registry::new(RegistryConfig::default()).unwrap();
    let refused = failure(anonymous.verify_signature(&check(&image, "good")));
    assert!(refused.contains("Not authorized"), "{refused}");
    // Credentials from a pull secret (`serve --cluster --image-pull-secrets`) are used from then on.
    let secret = format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
        server.addr
    );
    anonymous.set_pull_secret_credentials(
        Credentials::from_docker_config(secret.as_bytes(), "pull secret regcred").unwrap(),
    );
    assert_eq!(
        anonymous.verify_signature(&check(&image, "good")).unwrap(),
        SignatureOutcome::Verified { digest }
    );
}

fn base64_user_password(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

const REVIEW: &str = "https://example.com/CodeReview/v1";

#[test]
fn attestations_are_verified_by_key_and_subject_and_their_conditions_decide() {
    let Some(f) = fixture() else { return };
    let r = &f.registry;
    let good = signing_key("good");
    let digest = r.push_image(&f.repo, "attested", "attested image").unwrap();
    r.push_signatures(&f.repo, &digest, &[Signature::by(&good)])
        .unwrap();
    let review = TestAttestation {
        certificate: None,
        key: &good,
        predicate_type: REVIEW,
        predicate: json!({"repo": {"branch": "main"}, "reviewers": ["bob@example.com"]}),
        subject_digest: None,
    };
    r.push_attestations(&f.repo, &digest, &[review]).unwrap();
    let image = format!("{}:attested", f.repo);

    let mut ask = check(&image, "good");
    ask.predicate_type = REVIEW.to_string();
    match r.verify_attestations(&ask).unwrap() {
        AttestationOutcome::Verified {
            digest: d,
            statements,
        } => {
            assert_eq!(d, digest);
            assert_eq!(statements.len(), 1);
            assert_eq!(statements[0]["type"], REVIEW);
            assert_eq!(statements[0]["predicate"]["repo"]["branch"], "main");
        }
        other => panic!("{other:?}"),
    }
    let attestation_failure = |outcome| match outcome {
        Ok(AttestationOutcome::Failed(m)) => m,
        other => panic!("expected a failure, got {other:?}"),
    };
    let mut wrong_key = check(&image, "other");
    wrong_key.predicate_type = REVIEW.to_string();
    assert_eq!(
        attestation_failure(r.verify_attestations(&wrong_key)),
        "no matching attestations: invalid signature"
    );
    let mut none = check(&format!("{}:signed", f.repo), "good");
    none.predicate_type = REVIEW.to_string();
    assert_eq!(
        attestation_failure(r.verify_attestations(&none)),
        "no matching attestations: not found"
    );
    // A statement signed by the right key about another image does not count.
    let other = r.push_image(&f.repo, "other", "other image").unwrap();
    let stray = TestAttestation {
        certificate: None,
        key: &good,
        predicate_type: REVIEW,
        predicate: json!({"repo": {"branch": "main"}}),
        subject_digest: Some(&f.signed_digest),
    };
    r.push_attestations(&f.repo, &other, &[stray]).unwrap();
    let mut misdirected = check(&format!("{}:other", f.repo), "good");
    misdirected.predicate_type = REVIEW.to_string();
    assert_eq!(
        attestation_failure(r.verify_attestations(&misdirected)),
        "no matching attestations: no matching subject digest found"
    );

    // Through the engine: signatures and attestations, conditions on the predicate.
    let policy_with = |branch: &str| {
        let mut p = policy(&f.server.addr, "good");
        p["spec"]["rules"][0]["verifyImages"][0]["attestations"] = json!([{
            "type": REVIEW,
            "attestors": [{"entries": [{"keys": {"publicKeys": public_key_pem(&good),
                "rekor": {"ignoreTlog": true}}}]}],
            "conditions": [{"all": [
                {"key": "{{ repo.branch }}", "operator": "Equals", "value": branch}]}]
        }]);
        p
    };
    let (results, pinned) = admit(&f.registry, &policy_with("main"), &image);
    assert_eq!(
        results,
        vec![
            (
                RuleStatus::Pass,
                format!("verified image attestations for {image}")
            ),
            (RuleStatus::Pass, "image verified".to_string()),
        ]
    );
    assert_eq!(pinned, format!("{image}@{digest}"));
    let (results, _) = admit(&f.registry, &policy_with("release"), &image);
    assert_eq!(
        results[0],
        (
            RuleStatus::Fail,
            format!(
                ".attestations[0].attestors[0].entries[0].keys: attestation checks failed for {image} and predicate {REVIEW}"
            )
        )
    );
}

#[test]
fn image_data_is_read_from_the_registry_for_context_entries() {
    let Some(f) = fixture() else { return };
    let image = format!("{}:signed", f.repo);
    let data = f.registry.image_data(&image).unwrap();
    assert_eq!(data["image"], image.as_str());
    assert_eq!(
        data["resolvedImage"],
        format!("{}@{}", f.repo, f.signed_digest).as_str()
    );
    assert_eq!(
        data["identifier"],
        format!("signed@{}", f.signed_digest).as_str()
    );
    assert_eq!(data["manifestList"], Value::Null);
    assert_eq!(data["configData"]["config"]["Cmd"], json!(["/hello"]));
    assert_eq!(data["manifest"]["layers"].as_array().unwrap().len(), 1);

    // A validate rule reading it through an imageRegistry context entry.
    let policy = json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "image-cmd"},
        "spec": {"validationFailureAction": "Enforce", "rules": [{
            "name": "cmd",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "context": [{"name": "imageData", "imageRegistry": {
                "reference": "{{ request.object.spec.containers[0].image }}"}}],
            "validate": {"message": "runs {{ imageData.configData.config.Cmd[0] }}",
                "deny": {"conditions": {"any": [{
                    "key": "{{ imageData.configData.config.Cmd[0] }}",
                    "operator": "Equals", "value": "/hello"}]}}}
        }]}
    });
    let policy = compile_policy(&policy).unwrap();
    let provider = RegistryProvider(&f.registry);
    let request = AdmissionRequest {
        object: Arc::new(pod(&image)),
        old_object: Arc::new(Value::Null),
        ..AdmissionRequest::default()
    };
    let response = Engine::new(&provider).validate(
        &policy,
        &PolicyContext::new(&request),
        &[],
        &BTreeMap::new(),
    );
    assert_eq!(
        response.rules[0].status,
        RuleStatus::Fail,
        "{:?}",
        response.rules
    );
    assert_eq!(response.rules[0].message, "runs /hello");
}

#[test]
fn a_certificate_attestor_verifies_with_the_certificate_key() {
    let Some(f) = fixture() else { return };
    let signed = format!("{}:signed", f.repo);
    let with_cert = |cert: String| {
        let mut p = policy(&f.server.addr, "good");
        p["spec"]["rules"][0]["verifyImages"][0]["attestors"] = json!([{"entries": [{
            "certificates": {"cert": cert, "rekor": {"ignoreTlog": true},
                             "ctlog": {"ignoreSCT": true}}}]}]);
        p
    };
    let good = certificate_pem(&signing_key("good"), "signer.example.com");
    let (results, image) = admit(&f.registry, &with_cert(good.clone()), &signed);
    assert_eq!(results[0].0, RuleStatus::Pass, "{results:?}");
    assert_eq!(image, format!("{signed}@{}", f.signed_digest));
    let other = certificate_pem(&signing_key("other"), "signer.example.com");
    let (results, _) = admit(&f.registry, &with_cert(other), &signed);
    assert_eq!(
        results[0],
        (
            RuleStatus::Fail,
            format!(
                "failed to verify image {signed}: .attestors[0].entries[0].certificates: no matching signatures: invalid signature"
            )
        )
    );
    // A chain the certificate does not verify against fails, as Kyverno fails it.
    let mut chained = with_cert(good.clone());
    chained["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]["certificates"]
        ["certChain"] = json!("-----BEGIN CERTIFICATE-----");
    let (results, _) = admit(&f.registry, &chained, &signed);
    assert_eq!(results[0].0, RuleStatus::Fail, "{results:?}");
    assert!(
        results[0]
            .1
            .contains("failed to load validate certificate chain"),
        "{results:?}"
    );
    // The transparency log asked for is not supported: an error, not a pass.
    let mut logged = with_cert(good);
    logged["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]["certificates"]["ctlog"] =
        json!(null);
    let (results, _) = admit(&f.registry, &logged, &signed);
    assert_eq!(results[0].0, RuleStatus::Error, "{results:?}");
}

/// A registry that accepts connections and drops them unanswered (a restart, a proxy cut) is
/// unreachable too: it never answered, so nothing about the image was learnt.
#[test]
fn a_registry_that_drops_connections_is_an_error_not_a_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let registry = Registry::new(RegistryConfig {
        timeout: Duration::from_secs(5),
        ..RegistryConfig::default()
    })
    .unwrap();
    let outcome = registry.verify_signature(&check(&format!("{addr}/kybern/app:v1"), "good"));
    assert!(
        matches!(outcome, Err(RegistryError::Unreachable(_))),
        "{outcome:?}"
    );
}
