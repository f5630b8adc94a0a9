//! Registries that misbehave: a fake registry on a loopback port answers `/v2/` normally and
//! manifests badly (too large, endless, with a forged digest, redirecting in a loop), and a real
//! one holds hostile signature manifests (a thousand layers, gzip bombs, oversized payloads).
//! Every call must end in bounded time and bytes with a failure or an error, never a pass.

use kybern_engine::context::{SignatureCheck, SignatureOutcome};
use kybern_registry::testing::{public_key_pem, signing_key};
use kybern_registry::{Registry, RegistryConfig, RegistryError};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// 64 MiB of manifest without a length.
    Huge,
    /// One byte every 200 ms, for 30 s at most.
    Trickle,
    /// A valid manifest whose content does not have the digest asked for.
    WrongDigest,
    /// A redirect to itself.
    RedirectLoop,
}

fn serve(stream: TcpStream, mode: Misbehaviour) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut out = stream;
    if path == "/v2/" {
        let _ = out.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
        return;
    }
    let header = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n";
    match mode {
        Misbehaviour::Huge => {
            let _ = out.write_all(format!("{header}\r\n").as_bytes());
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..64 {
                if out.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
        Misbehaviour::Trickle => {
            let _ = out.write_all(format!("{header}\r\n{{").as_bytes());
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if out.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Misbehaviour::WrongDigest => {
            let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
            let _ = out.write_all(
                format!("{header}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
            );
        }
        Misbehaviour::RedirectLoop => {
            let _ = out.write_all(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
        }
    }
}

/// Starts the fake registry; returns `127.0.0.1:<port>`. Connections are served until the
/// test process ends.
fn fake_registry(mode: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100).flatten() {
            std::thread::spawn(move || serve(stream, mode));
        }
    });
    addr
}

fn registry(timeout: Duration) -> Registry {
    Registry::new(RegistryConfig {
        timeout,
        ..RegistryConfig::default()
    })
    .unwrap()
}

fn check(image: String) -> SignatureCheck {
    SignatureCheck {
        image,
        public_key: public_key_pem(&signing_key("good")),
        ..SignatureCheck::default()
    }
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn an_oversized_manifest_is_refused_after_the_bound() {
    let addr = fake_registry(Misbehaviour::Huge);
    let start = Instant::now();
    let outcome =
        registry(Duration::from_secs(20)).verify_signature(&check(format!("{addr}/a/b:v1")));
    match outcome {
        Ok(SignatureOutcome::Failed(m)) => {
            assert!(m.contains("manifest is larger than 4194304 bytes"), "{m}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn an_endless_manifest_ends_at_the_time_bound_as_an_error() {
    let addr = fake_registry(Misbehaviour::Trickle);
    let start = Instant::now();
    let outcome =
        registry(Duration::from_secs(2)).verify_signature(&check(format!("{addr}/a/b:v1")));
    assert!(
        matches!(outcome, Err(RegistryError::Unreachable(_))),
        "{outcome:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_manifest_that_is_not_the_digest_asked_for_is_refused() {
    let addr = fake_registry(Misbehaviour::WrongDigest);
    let outcome =
        registry(Duration::from_secs(5)).verify_signature(&check(format!("{addr}/a/b@{DIGEST}")));
    // The signature manifest this registry serves has no signature layers: a failure.
    assert!(
        matches!(outcome, Ok(SignatureOutcome::Failed(_))),
        "{outcome:?}"
    );
    let outcome = registry(Duration::from_secs(5)).resolve_digest(&format!("{addr}/a/b@{DIGEST}"));
    assert_eq!(
        outcome,
        Ok(DIGEST.to_string()),
        "a pinned reference needs no lookup"
    );
    let reference = format!("{addr}/a/b@{DIGEST}").parse().unwrap();
    let outcome = registry(Duration::from_secs(5)).manifest(&reference);
    match outcome {
        Err(RegistryError::Failed(m)) => assert!(m.contains("content has digest"), "{m}"),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

#[test]
fn a_redirect_loop_ends_as_a_failure() {
    let addr = fake_registry(Misbehaviour::RedirectLoop);
    let start = Instant::now();
    let outcome =
        registry(Duration::from_secs(5)).verify_signature(&check(format!("{addr}/a/b:v1")));
    assert!(
        matches!(outcome, Ok(SignatureOutcome::Failed(_)) | Err(_)),
        "{outcome:?}"
    );
    assert!(!matches!(outcome, Ok(SignatureOutcome::Verified { .. })));
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A signature manifest of a thousand layers, each a gzip bomb (256 KiB that inflates to
/// 256 MiB) or a payload over the blob bound, with a signature annotation: at most 64 layers
/// are read, none is inflated (payloads are JSON, never decompressed), and the check fails.
#[test]
fn a_thousand_gzip_bomb_and_oversized_signature_layers_fail_within_bounds() {
    use flate2::{Compression, write::GzEncoder};
    use kybern_registry::cosign::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_TYPE, signature_tag};
    use kybern_registry::testing::TestRegistry;
    let Some(server) = TestRegistry::start() else {
        return;
    };
    let registry = registry(Duration::from_secs(10));
    let repo = format!("{}/kybern/hostile", server.addr);
    let digest = registry.push_image(&repo, "v1", "hostile").unwrap();
    let mut bomb = GzEncoder::new(Vec::new(), Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    let bomb_digest = registry.push_blob(&repo, &bomb).unwrap();
    let oversized = vec![b'{'; 5 << 20];
    let oversized_digest = registry.push_blob(&repo, &oversized).unwrap();
    let layers: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            let (d, size) = if i % 2 == 0 {
                (&bomb_digest, bomb.len())
            } else {
                (&oversized_digest, oversized.len())
            };
            serde_json::json!({"mediaType": SIMPLE_SIGNING_TYPE, "digest": d, "size": size,
                "annotations": {SIGNATURE_ANNOTATION: "MEUCIQ=="}})
        })
        .collect();
    // One more that understates its size: the read itself stops at the bound.
    let mut layers = layers;
    layers.insert(
        0,
        serde_json::json!({"mediaType": SIMPLE_SIGNING_TYPE, "digest": oversized_digest,
            "size": 100, "annotations": {SIGNATURE_ANNOTATION: "MEUCIQ=="}}),
    );
    let config = registry.push_blob(&repo, b"{}").unwrap();
    registry
        .push_manifest(
            &format!("{repo}:{}", signature_tag(&digest)),
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config, "size": 2},
                "layers": layers,
            }),
        )
        .unwrap();
    let started = Instant::now();
    let outcome = registry.verify_signature(&check(format!("{repo}:v1")));
    eprintln!("1,000 hostile layers: {:?}", started.elapsed());
    match outcome {
        Ok(SignatureOutcome::Failed(m)) => {
            assert!(m.starts_with("no matching signatures"), "{m}");
            assert!(
                m.contains("malformed signature") || m.contains("invalid signature"),
                "{m}"
            );
            // The understated layer stops at the bound; the declared ones are not fetched.
            assert!(m.contains("exceeds the 4194304-byte bound"), "{m}");
            assert!(m.contains("blob is larger than 4194304 bytes"), "{m}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
