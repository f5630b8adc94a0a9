//! Test support (feature `testing`): Debian's `docker-registry` started on a free loopback port
//! with its own configuration and storage, images pushed to it blob by blob, and a signer that
//! writes cosign's signature layout (`sha256-<hex>.sig`, simple-signing payloads, the signature
//! annotation) with P-256 keys made by the `p256` crate.

use crate::Registry;
use crate::client::RegistryError;
use crate::cosign::{
    CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_TYPE,
    attestation_tag, pae, signature_tag,
};
use crate::reference;
use base64::Engine as _;
use oci_client::RegistryOperation;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the registry.
const BINARY: &str = "docker-registry";

/// A registry process on 127.0.0.1, stopped (by its PID) and cleaned up on drop.
pub struct TestRegistry {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(BINARY))
        .find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `GET /v2/` answered (200, or 401 when the registry asks for credentials).
fn answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap_or(0);
    buf.get(..n)
        .is_some_and(|b| b.starts_with(b"HTTP/1.1 200") || b.starts_with(b"HTTP/1.1 401"))
}

impl TestRegistry {
    /// Starts a registry. When `docker-registry` is not installed this prints why and returns
    /// `None` so a developer's run says what it skipped; under CI (`CI` set) it panics instead,
    /// since `.ci/run` installs the package.
    pub fn start() -> Option<TestRegistry> {
        Self::start_with(None)
    }

    /// [`TestRegistry::start`] with HTTP basic authentication: `htpasswd` is one
    /// `user:<bcrypt hash>` line.
    pub fn start_with_basic_auth(htpasswd: &str) -> Option<TestRegistry> {
        Self::start_with(Some(htpasswd))
    }

    fn start_with(htpasswd: Option<&str>) -> Option<TestRegistry> {
        let Some(binary) = find_binary() else {
            let message = "docker-registry is not installed (Debian package docker-registry; .ci/run installs it): registry tests SKIPPED";
            if std::env::var_os("CI").is_some() {
                panic!("{message}");
            }
            eprintln!("{message}");
            return None;
        };
        match Self::start_binary(&binary, htpasswd) {
            Ok(r) => Some(r),
            Err(e) => panic!("cannot start {}: {e}", binary.display()),
        }
    }

    fn start_binary(binary: &Path, htpasswd: Option<&str>) -> std::io::Result<TestRegistry> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let dir =
            std::env::temp_dir().join(format!("kybern-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data"))?;
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        if let Some(line) = htpasswd {
            let path = dir.join("htpasswd");
            std::fs::write(&path, format!("{line}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: kybern-test, path: {}}}\n",
                path.display()
            ));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut registry = TestRegistry { child, dir, addr };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if answers(&registry.addr) {
                return Ok(registry);
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                let log =
                    std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "registry exited with {status}: {log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        registry.stop();
        Err(std::io::Error::other("registry did not answer within 20 s"))
    }

    /// Stops the registry process (by its PID); later calls do nothing.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// A deterministic P-256 key named by a label (the same label gives the same key).
pub fn signing_key(label: &str) -> SigningKey {
    let seed = Sha256::digest(format!("kybern test key {label}").as_bytes());
    SigningKey::from_slice(&seed).unwrap_or_else(|e| panic!("test key {label}: {e}"))
}

/// The PEM public key of a signing key, as `cosign public-key` prints it.
pub fn public_key_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap_or_else(|e| panic!("public key PEM: {e}"))
}

/// A self-signed certificate (PEM) for a signing key, as a `certificates.cert` attestor holds.
pub fn certificate_pem(key: &SigningKey, subject: &str) -> String {
    use p256::pkcs8::EncodePrivateKey;
    let der = key
        .to_pkcs8_der()
        .unwrap_or_else(|e| panic!("test key PKCS#8: {e}"));
    let pair = rcgen::KeyPair::try_from(der.as_bytes())
        .unwrap_or_else(|e| panic!("test key for rcgen: {e}"));
    let params = rcgen::CertificateParams::new(vec![subject.to_string()])
        .unwrap_or_else(|e| panic!("certificate parameters: {e}"));
    params
        .self_signed(&pair)
        .unwrap_or_else(|e| panic!("self-signed certificate: {e}"))
        .pem()
}

/// A certificate authority standing in for Fulcio: a P-384 root, optionally an intermediate,
/// issuing code-signing certificates with Fulcio's identity extensions for signing keys.
pub struct TestCa {
    root_pem: String,
    chain_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// Who a [`TestCa`] certificate names.
pub struct TestIdentity<'a> {
    /// The subject alternative name: a URI when it has `://`, else an email address; none when
    /// empty.
    pub subject: &'a str,
    /// The OIDC issuer, written to extensions `.1.1` (raw) and `.1.8` (DER string).
    pub issuer: &'a str,
    /// Other Fulcio extensions `1.3.6.1.4.1.57264.1.<arc>` (raw strings).
    pub extensions: &'a [(u64, &'a str)],
    /// Issued and expired in the past.
    pub expired: bool,
}

fn ca_params(name: &str, path_len: u8) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap_or_else(|e| panic!("CA parameters: {e}"));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(path_len));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params
}

fn fulcio_oid(arc: u64) -> [u64; 9] {
    [1, 3, 6, 1, 4, 1, 57264, 1, arc]
}

impl TestCa {
    /// A new authority; with `intermediate`, leaves are issued by an intermediate under the root.
    pub fn new(name: &str, intermediate: bool) -> TestCa {
        let fail = |e: rcgen::Error| -> ! { panic!("test CA {name}: {e}") };
        let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .unwrap_or_else(|e| fail(e));
        let root_params = ca_params(&format!("{name} root"), 1);
        let root = root_params
            .self_signed(&root_key)
            .unwrap_or_else(|e| fail(e));
        let root_issuer = rcgen::Issuer::new(root_params, root_key);
        if !intermediate {
            return TestCa {
                root_pem: root.pem(),
                chain_pem: root.pem(),
                issuer: root_issuer,
            };
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap_or_else(|e| fail(e));
        let params = ca_params(&format!("{name} intermediate"), 0);
        let cert = params
            .signed_by(&key, &root_issuer)
            .unwrap_or_else(|e| fail(e));
        TestCa {
            chain_pem: format!("{}{}", cert.pem(), root.pem()),
            root_pem: root.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The root certificate (PEM), as a policy's `roots` holds it.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The chain cosign stores beside a signature: intermediates, then the root.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// A code-signing certificate (PEM) for `key` naming `identity`.
    pub fn issue(&self, key: &SigningKey, identity: &TestIdentity<'_>) -> String {
        use p256::pkcs8::EncodePrivateKey;
        let der = key
            .to_pkcs8_der()
            .unwrap_or_else(|e| panic!("test key PKCS#8: {e}"));
        let pair = rcgen::KeyPair::try_from(der.as_bytes())
            .unwrap_or_else(|e| panic!("test key for rcgen: {e}"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|e| panic!("leaf parameters: {e}"));
        if !identity.subject.is_empty() {
            let name = rcgen::string::Ia5String::try_from(identity.subject)
                .unwrap_or_else(|e| panic!("subject {}: {e}", identity.subject));
            params.subject_alt_names = vec![if identity.subject.contains("://") {
                rcgen::SanType::URI(name)
            } else {
                rcgen::SanType::Rfc822Name(name)
            }];
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let mut issuer_der = vec![0x0c, u8::try_from(identity.issuer.len()).unwrap_or(0)];
        issuer_der.extend_from_slice(identity.issuer.as_bytes());
        params.custom_extensions = vec![
            rcgen::CustomExtension::from_oid_content(
                &fulcio_oid(1),
                identity.issuer.as_bytes().to_vec(),
            ),
            rcgen::CustomExtension::from_oid_content(&fulcio_oid(8), issuer_der),
        ];
        for (arc, value) in identity.extensions {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &fulcio_oid(*arc),
                    value.as_bytes().to_vec(),
                ));
        }
        if identity.expired {
            params.not_before = rcgen::date_time_ymd(2021, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 2);
        } else {
            params.not_before = rcgen::date_time_ymd(2022, 1, 1);
        }
        params
            .signed_by(&pair, &self.issuer)
            .unwrap_or_else(|e| panic!("leaf certificate: {e}"))
            .pem()
    }
}

impl TestCa {
    /// Pushes the image `repository:tag` (its content the tag) and signs it keylessly: a key
    /// labelled by the tag, certified for `identity`, with `chain` stored beside the signature
    /// (the authority's own chain unless given). Returns the image's digest.
    pub fn push_signed_image(
        &self,
        registry: &Registry,
        repository: &str,
        tag: &str,
        identity: &TestIdentity<'_>,
        chain: Option<&str>,
    ) -> Result<String, RegistryError> {
        let digest = registry.push_image(repository, tag, tag)?;
        let key = signing_key(tag);
        let cert = self.issue(&key, identity);
        let mut signature = Signature::by(&key);
        signature.certificate = Some((&cert, chain.unwrap_or(self.chain_pem())));
        registry.push_signatures(repository, &digest, &[signature])?;
        Ok(digest)
    }
}

/// One tar file entry (a 512-byte header, the content, padding) followed by the end marker.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, value: &[u8]| {
        for (i, b) in value.iter().enumerate() {
            if let Some(slot) = h.get_mut(at + i) {
                *slot = *b;
            }
        }
    };
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000644\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(
        &mut header,
        124,
        format!("{:011o}\0", content.len()).as_bytes(),
    );
    put(&mut header, 136, b"00000000000\0");
    put(&mut header, 156, b"0");
    put(&mut header, 257, b"ustar\x0000");
    put(&mut header, 148, b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

impl Registry {
    /// Pushes one blob to `target`'s repository; returns its digest.
    pub fn push_blob(&self, target: &str, data: &[u8]) -> Result<String, RegistryError> {
        let r = reference::parse(target).map_err(|e| RegistryError::Failed(e.to_string()))?;
        let client = self.client(&r);
        let auth = self.auth(&r);
        let digest = digest_of(data);
        let what = format!("push blob to {target}");
        self.run(&what, async {
            client
                .auth(&r, &auth, RegistryOperation::Push)
                .await
                .map_err(|e| RegistryError::Failed(format!("{what}: {e}")))?;
            client
                .push_blob(&r, data, &digest)
                .await
                .map_err(|e| RegistryError::Failed(format!("{what}: {e}")))
        })?;
        Ok(digest)
    }

    /// Pushes a manifest under `target` (`registry/repo:tag`); returns its digest.
    pub fn push_manifest(&self, target: &str, manifest: &Value) -> Result<String, RegistryError> {
        let r = reference::parse(target).map_err(|e| RegistryError::Failed(e.to_string()))?;
        let client = self.client(&r);
        let body =
            serde_json::to_vec(manifest).map_err(|e| RegistryError::Failed(e.to_string()))?;
        let digest = digest_of(&body);
        let media_type = manifest
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_string();
        let what = format!("push manifest to {target}");
        let auth = self.auth(&r);
        self.run(&what, async {
            let content_type = http::HeaderValue::from_str(&media_type)
                .map_err(|e| RegistryError::Failed(e.to_string()))?;
            client
                .auth(&r, &auth, RegistryOperation::Push)
                .await
                .map_err(|e| RegistryError::Failed(format!("{what}: {e}")))?;
            client
                .push_manifest_raw(&r, body, content_type)
                .await
                .map_err(|e| RegistryError::Failed(format!("{what}: {e}")))
        })?;
        Ok(digest)
    }

    /// Pushes a one-layer linux/amd64 image whose only file holds `content`, tagged
    /// `repository:tag` (`repository` includes the registry); returns the manifest digest.
    /// Different contents give different digests.
    pub fn push_image(
        &self,
        repository: &str,
        tag: &str,
        content: &str,
    ) -> Result<String, RegistryError> {
        let layer = tar_with_file("hello.txt", content.as_bytes());
        let layer_digest = self.push_blob(repository, &layer)?;
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| RegistryError::Failed(e.to_string()))?;
        let config_digest = self.push_blob(repository, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer.len()}],
        });
        self.push_manifest(&format!("{repository}:{tag}"), &manifest)
    }

    /// Writes cosign's signature manifest for `digest` in `repository`: one simple-signing
    /// layer per signature, each payload claiming `claimed_digest` (the image's digest unless a
    /// test forges another) with `optional` claims, signed by its key.
    pub fn push_signatures(
        &self,
        repository: &str,
        digest: &str,
        signatures: &[Signature<'_>],
    ) -> Result<String, RegistryError> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for s in signatures {
            let payload = json!({
                "critical": {
                    "identity": {"docker-reference": repository},
                    "image": {"docker-manifest-digest": s.claimed_digest.unwrap_or(digest)},
                    "type": "cosign container image signature",
                },
                "optional": s.optional.clone().unwrap_or(Value::Null),
            });
            let payload =
                serde_json::to_vec(&payload).map_err(|e| RegistryError::Failed(e.to_string()))?;
            let signature: p256::ecdsa::Signature = s.key.sign(&payload);
            let signature =
                base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
            // A tampered payload is stored in place of the signed one.
            let stored = match s.tampered_payload {
                Some(t) => t.as_bytes().to_vec(),
                None => payload,
            };
            let layer_digest = self.push_blob(repository, &stored)?;
            diff_ids.push(layer_digest.clone());
            let mut annotations = json!({SIGNATURE_ANNOTATION: signature});
            add_certificate(&mut annotations, s.certificate);
            layers.push(json!({
                "mediaType": SIMPLE_SIGNING_TYPE,
                "digest": layer_digest,
                "size": stored.len(),
                "annotations": annotations,
            }));
        }
        // cosign's config: an empty image config listing the layers.
        let config = json!({
            "architecture": "", "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {},
        });
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| RegistryError::Failed(e.to_string()))?;
        let config_digest = self.push_blob(repository, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_bytes.len()},
            "layers": layers,
        });
        self.push_manifest(
            &format!("{repository}:{}", signature_tag(digest)),
            &manifest,
        )
    }
}

impl Registry {
    /// Writes cosign's attestation manifest for `digest` in `repository` (`sha256-<hex>.att`):
    /// one DSSE envelope layer per attestation, each an in-toto statement about the image
    /// signed by its key over the DSSE pre-authentication encoding.
    pub fn push_attestations(
        &self,
        repository: &str,
        digest: &str,
        attestations: &[TestAttestation<'_>],
    ) -> Result<String, RegistryError> {
        const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for a in attestations {
            let subject_hex = a
                .subject_digest
                .map_or(hex, |d| d.strip_prefix("sha256:").unwrap_or(d));
            let statement = json!({
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": a.predicate_type,
                "subject": [{"name": repository, "digest": {"sha256": subject_hex}}],
                "predicate": a.predicate,
            });
            let body =
                serde_json::to_vec(&statement).map_err(|e| RegistryError::Failed(e.to_string()))?;
            let signature: p256::ecdsa::Signature = a.key.sign(&pae(PAYLOAD_TYPE, &body));
            let b64 = base64::engine::general_purpose::STANDARD;
            let envelope = json!({
                "payloadType": PAYLOAD_TYPE,
                "payload": b64.encode(&body),
                "signatures": [{"keyid": "", "sig": b64.encode(signature.to_der().as_bytes())}],
            });
            let envelope =
                serde_json::to_vec(&envelope).map_err(|e| RegistryError::Failed(e.to_string()))?;
            let layer_digest = self.push_blob(repository, &envelope)?;
            diff_ids.push(layer_digest.clone());
            let mut annotations =
                json!({SIGNATURE_ANNOTATION: "", "predicateType": a.predicate_type});
            add_certificate(&mut annotations, a.certificate);
            layers.push(json!({
                "mediaType": "application/vnd.dsse.envelope.v1+json",
                "digest": layer_digest,
                "size": envelope.len(),
                "annotations": annotations,
            }));
        }
        let config = json!({
            "architecture": "", "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {},
        });
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| RegistryError::Failed(e.to_string()))?;
        let config_digest = self.push_blob(repository, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_bytes.len()},
            "layers": layers,
        });
        self.push_manifest(
            &format!("{repository}:{}", attestation_tag(digest)),
            &manifest,
        )
    }
}

/// Writes a keyless layer's certificate and chain annotations, as cosign does.
fn add_certificate(annotations: &mut Value, certificate: Option<(&str, &str)>) {
    if let (Some((cert, chain)), Some(map)) = (certificate, annotations.as_object_mut()) {
        map.insert(CERTIFICATE_ANNOTATION.into(), Value::from(cert));
        if !chain.is_empty() {
            map.insert(CHAIN_ANNOTATION.into(), Value::from(chain));
        }
    }
}

/// One attestation for [`Registry::push_attestations`].
pub struct TestAttestation<'a> {
    pub key: &'a SigningKey,
    /// For keyless signing: the signing certificate and the chain (PEM) stored beside it.
    pub certificate: Option<(&'a str, &'a str)>,
    pub predicate_type: &'a str,
    pub predicate: Value,
    /// The subject digest, when it is not the image's (an attestation about another image).
    pub subject_digest: Option<&'a str>,
}

/// One signature for [`Registry::push_signatures`].
pub struct Signature<'a> {
    pub key: &'a SigningKey,
    /// For keyless signing: the signing certificate and the chain (PEM) stored beside it.
    pub certificate: Option<(&'a str, &'a str)>,
    /// `optional` claims of the payload.
    pub optional: Option<Value>,
    /// The digest the payload claims, when it is not the image's (a forged claim).
    pub claimed_digest: Option<&'a str>,
    /// Bytes stored instead of the signed payload (tampering after signing).
    pub tampered_payload: Option<&'a str>,
}

impl<'a> Signature<'a> {
    /// A plain signature of the image by `key`.
    pub fn by(key: &'a SigningKey) -> Self {
        Signature {
            key,
            certificate: None,
            optional: None,
            claimed_digest: None,
            tampered_payload: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_entries_are_well_formed() {
        let t = tar_with_file("a.txt", b"hi");
        assert_eq!(t.len(), 512 + 512 + 1024);
        assert_eq!(&t[257..262], b"ustar");
    }
}
