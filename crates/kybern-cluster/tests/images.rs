//! `serve --cluster` with image lookups: `verifyImages` rules are decided by what the registry
//! side answers (signed, unsigned, unreachable), and the pull secrets named in the options are
//! read from kybern's namespace and handed to the registry side, again when they change, with
//! those policies name in `imageRegistryCredentials.secrets`.

mod common;

use base64::Engine as _;
use common::*;
use kybern_cluster::pull_secrets::ImageOptions;
use kybern_engine::context::{
    AttestationOutcome, ImageData, ProviderError, SignatureCheck, SignatureOutcome,
};
use kybern_webhook::images::ImageLookups;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZBtutpuYkEoShqUklsplJ9y7fk5L
XVwJVUfq93FeBtnKDF/KBA6BD7ADD6+2O+Eq6+7POsRbjOpLbZ9L8/uTrg==
-----END PUBLIC KEY-----";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// The pull secrets handed over, one list per hand-over.
type HandedOver = Vec<Vec<(String, Vec<u8>)>>;

/// A registry side that knows one signed image and one unreachable registry.
#[derive(Default)]
struct Registry {
    secrets: Mutex<HandedOver>,
    checks: Mutex<Vec<String>>,
}

impl ImageLookups for Registry {
    fn image_data(&self, image: &str) -> Result<ImageData, ProviderError> {
        Err(ProviderError::Failed(format!("no data for {image}")))
    }
    fn verify_image_signature(
        &self,
        check: &SignatureCheck,
    ) -> Result<SignatureOutcome, ProviderError> {
        self.checks.lock().unwrap().push(check.image.clone());
        assert_eq!(check.public_key.trim(), KEY);
        if check.image.starts_with("down.example/") {
            return Err(ProviderError::Failed(
                "registry down.example unreachable".into(),
            ));
        }
        Ok(
            if check.image.contains("signed") && !check.image.contains("unsigned") {
                SignatureOutcome::Verified {
                    digest: DIGEST.into(),
                }
            } else {
                SignatureOutcome::Failed("no signatures found".into())
            },
        )
    }
    fn verify_image_attestations(
        &self,
        _: &SignatureCheck,
    ) -> Result<AttestationOutcome, ProviderError> {
        Ok(AttestationOutcome::Failed("none".into()))
    }
    fn image_digest(&self, _: &str) -> Result<String, ProviderError> {
        Ok(DIGEST.into())
    }
    fn use_pull_secrets(&self, secrets: &[(String, Vec<u8>)]) -> Vec<String> {
        self.secrets.lock().unwrap().push(secrets.to_vec());
        Vec::new()
    }
}

fn policy() -> Value {
    json!({
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "verify"},
        "spec": {"webhookTimeoutSeconds": 10, "rules": [{
            "name": "check-key",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "verifyImages": [{
                "imageReferences": ["*"],
                "failureAction": "Enforce",
                "mutateDigest": false,
                "verifyDigest": false,
                "attestors": [{"entries": [{"keys": {
                    "publicKeys": KEY,
                    "rekor": {"ignoreTlog": true}, "ctlog": {"ignoreSCT": true}}}]}]
            }]
        }]}
    })
}

fn pod_review(uid: &str, image: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "app", "namespace": "team", "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "app", "namespace": "team"},
                "spec": {"containers": [{"name": "app", "image": image}]}},
            "dryRun": false
        }
    })
}

fn docker_config(user: &str) -> Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
    let config = json!({"auths": {"registry.example": {"auth": auth}}}).to_string();
    json!(base64::engine::general_purpose::STANDARD.encode(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_images_is_decided_by_the_registry_side_with_pull_secret_credentials() {
    let c = cluster().await;
    let store = c.api.store();
    store
        .create(
            "v1",
            "secrets",
            json!({"metadata": {"name": "regcred", "namespace": NS},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": docker_config("first")}}),
        )
        .unwrap();
    store
        .create("kyverno.io/v1", "clusterpolicies", policy())
        .unwrap();
    let registry = Arc::new(Registry::default());
    let mut opts = options(&c, "a");
    opts.images = Some(ImageOptions {
        lookups: registry.clone(),
        pull_secrets: vec!["regcred".into(), "missing".into()],
        refresh: Duration::from_millis(200),
    });
    let server = kybern_cluster::serve::start(opts).await.unwrap();
    live_vwc(&c).await;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(server.ca_bundle.borrow().as_bytes());
    let client = client_from_ca_bundle(&encoded, &server);
    ready(&client, &server).await;

    // The existing secret is handed over; the missing one does not stop it.
    wait_for("the pull secrets", Duration::from_secs(5), || {
        !registry.secrets.lock().unwrap().is_empty()
    })
    .await;
    {
        let seen = registry.secrets.lock().unwrap();
        assert_eq!(seen[0].len(), 1);
        assert_eq!(seen[0][0].0, "regcred");
        assert!(String::from_utf8_lossy(&seen[0][0].1).contains("registry.example"));
    }

    let path = "/validate/fail";
    let signed = send(
        &client,
        &server,
        path,
        &pod_review("u1", "registry.example/app/signed:1"),
    )
    .await;
    assert_eq!(signed["allowed"], true, "{signed}");
    let unsigned = send(
        &client,
        &server,
        path,
        &pod_review("u2", "registry.example/app/unsigned:1"),
    )
    .await;
    assert_eq!(unsigned["allowed"], false, "{unsigned}");
    assert!(
        unsigned["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no signatures found"),
        "{unsigned}"
    );
    // An unreachable registry is a rule error: denied under failurePolicy Fail.
    let down = send(
        &client,
        &server,
        path,
        &pod_review("u3", "down.example/app:1"),
    )
    .await;
    assert_eq!(down["allowed"], false, "{down}");
    assert!(
        down["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{down}"
    );
    let checks = registry.checks.lock().unwrap().clone();
    for image in ["signed:1", "unsigned:1", "down.example/app:1"] {
        assert!(
            checks.iter().any(|c| c.ends_with(image)),
            "{image} not checked: {checks:?}"
        );
    }

    // A policy naming its own pull secret: it is read from kybern's namespace too.
    store
        .create(
            "v1",
            "secrets",
            json!({"metadata": {"name": "rulecred", "namespace": NS},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": docker_config("rule")}}),
        )
        .unwrap();
    let mut with_credentials = policy();
    with_credentials["metadata"]["name"] = json!("verify-private");
    with_credentials["spec"]["rules"][0]["verifyImages"][0]["imageRegistryCredentials"] =
        json!({"secrets": ["rulecred"]});
    store
        .create("kyverno.io/v1", "clusterpolicies", with_credentials)
        .unwrap();
    wait_for("the policy's pull secret", Duration::from_secs(5), || {
        registry.secrets.lock().unwrap().iter().any(|s| {
            s.iter().any(|(name, _)| name == "rulecred") && s.iter().any(|(n, _)| n == "regcred")
        })
    })
    .await;

    // A rotated secret is used without a restart.
    let mut secret = store.get("v1", "secrets", Some(NS), "regcred").unwrap();
    secret["data"][".dockerconfigjson"] = docker_config("second");
    store.put("v1", "secrets", secret).unwrap();
    wait_for("the rotated pull secret", Duration::from_secs(5), || {
        registry.secrets.lock().unwrap().iter().any(|s| {
            s.first().is_some_and(|(_, b)| {
                let config: Value = serde_json::from_slice(b).unwrap_or_default();
                config["auths"]["registry.example"]["auth"]
                    == base64::engine::general_purpose::STANDARD.encode("second:secret")
            })
        })
    })
    .await;
    server.shutdown().await;
    c.api.shutdown().await;
}
