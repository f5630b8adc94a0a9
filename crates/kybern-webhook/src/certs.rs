//! The serving certificate: PEM files from the operator, or a self-signed CA and serving
//! certificate created with rcgen; a resolver that always hands out the newest loaded pair, so
//! rotated files take effect on new handshakes without a restart.

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Why a certificate could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// File names inside `--cert-dir`.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// The next CA, announced in `ca.crt` before it signs.
pub const NEXT_CA_CERT: &str = "ca-next.crt";
pub const NEXT_CA_KEY: &str = "ca-next.key";

/// The paths of a generated certificate set.
#[derive(Debug, Clone)]
pub struct GeneratedCerts {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA bundle (PEM) to put in a webhook configuration's `caBundle` (base64 of it).
    pub ca_pem: String,
    /// What was renewed while starting.
    pub renewal: Renewal,
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(err)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    std::fs::rename(&tmp, path).map_err(err)
}

fn gen_err(e: rcgen::Error) -> CertError {
    CertError::Generate(e.to_string())
}

/// Lifetimes of generated certificates and how long before expiry they are replaced (Kyverno's
/// lifetimes: a year for the CA, 150 days for the serving certificate).
const CA_DAYS: i64 = 365;
const SERVING_DAYS: i64 = 150;
const CA_RENEW_BEFORE_DAYS: i64 = 60;
/// A new CA is announced in the bundle this long before it starts signing: time for every
/// webhook configuration's `caBundle` to be updated while the old CA still serves.
const CA_SWITCH_BEFORE_DAYS: i64 = 30;
const SERVING_RENEW_BEFORE_DAYS: i64 = 30;

fn validity(params: &mut CertificateParams, now: time::OffsetDateTime, days: i64) {
    // Backdated by an hour, like Kyverno, for clock skew.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn ca_params(now: time::OffsetDateTime) -> CertificateParams {
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kybern-webhook-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca_params, now, CA_DAYS);
    ca_params
}

/// Signs a serving certificate for the names (`localhost` and 127.0.0.1 when none are given)
/// and writes it with its key.
fn write_serving(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    dns_names: &[String],
    ips: &[IpAddr],
    now: time::OffsetDateTime,
) -> Result<(), CertError> {
    let names: Vec<String> = if dns_names.is_empty() && ips.is_empty() {
        vec!["localhost".into()]
    } else {
        dns_names.to_vec()
    };
    let mut params = CertificateParams::new(names.clone()).map_err(gen_err)?;
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    if dns_names.is_empty() && ips.is_empty() {
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    }
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "kybern".into()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, SERVING_DAYS);
    let key_pair = KeyPair::generate().map_err(gen_err)?;
    let serving = params.signed_by(&key_pair, issuer).map_err(gen_err)?;
    write_file(&dir.join(TLS_KEY), &key_pair.serialize_pem(), true)?;
    write_file(&dir.join(TLS_CERT), &serving.pem(), false)
}

/// A new CA key pair and its self-signed certificate (PEM).
fn new_authority(now: time::OffsetDateTime) -> Result<(String, String), CertError> {
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = ca_params(now).self_signed(&key).map_err(gen_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The certificates of a PEM bundle, each as its own PEM text.
fn pem_blocks(pem: &str) -> Vec<String> {
    pem.split_inclusive("-----END CERTIFICATE-----")
        .filter(|c| c.contains("-----BEGIN CERTIFICATE-----"))
        .map(|c| format!("{}\n", c.trim_start()))
        .collect()
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `notAfter` of the first certificate of a PEM text, as a Unix time.
fn not_after(path: &Path, pem: &str) -> Result<i64, CertError> {
    let invalid = |message: String| CertError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| invalid(format!("no certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| invalid(format!("unreadable certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The issuer of a CA certificate (PEM) and its key file.
fn issuer(
    ca_cert: &Path,
    ca_pem: &str,
    ca_key: &Path,
) -> Result<Issuer<'static, KeyPair>, CertError> {
    let key = KeyPair::from_pem(&read(ca_key)?).map_err(|e| CertError::Invalid {
        path: ca_key.to_path_buf(),
        message: e.to_string(),
    })?;
    Issuer::from_ca_cert_pem(ca_pem, key).map_err(|e| CertError::Invalid {
        path: ca_cert.to_path_buf(),
        message: e.to_string(),
    })
}

/// What [`renew_generated`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Nothing,
    /// A new serving certificate from the same CA.
    Serving,
    /// A new CA was added to the bundle (`ca.crt`); it signs from [`CA_SWITCH_BEFORE_DAYS`]
    /// before the current CA ends, so the bundle must reach the webhook configurations by then.
    AnnouncedCa,
    /// The announced CA now signs the serving certificate (the old CA stays in the bundle).
    SwitchedCa,
    /// The CA had ended: a new one (or the announced one) signs and replaces the bundle.
    ReplacedEndedCa,
}

/// Keeps generated certificates valid without breaking clients that trust the current bundle:
/// [`CA_RENEW_BEFORE_DAYS`] before the CA ends a new CA is created and added to the bundle
/// while the old one keeps signing; [`CA_SWITCH_BEFORE_DAYS`] before the end the new CA takes
/// over; the serving certificate is signed again [`SERVING_RENEW_BEFORE_DAYS`] before it ends.
pub fn renew_generated(
    dir: &Path,
    dns_names: &[String],
    ips: &[IpAddr],
    now: time::OffsetDateTime,
) -> Result<Renewal, CertError> {
    let (ca_cert, ca_key, cert) = (dir.join(CA_CERT), dir.join(CA_KEY), dir.join(TLS_CERT));
    let (next_cert, next_key) = (dir.join(NEXT_CA_CERT), dir.join(NEXT_CA_KEY));
    let bundle = pem_blocks(&read(&ca_cert)?);
    let Some(current) = bundle.first() else {
        return Err(CertError::Invalid {
            path: ca_cert,
            message: "no certificate".into(),
        });
    };
    let days_left = |end: i64| (end - now.unix_timestamp()) / 86_400;
    let ca_end = not_after(&ca_cert, current)?;
    let ca_days = days_left(ca_end);
    let has_next = next_cert.is_file() && next_key.is_file();
    if ca_end <= now.unix_timestamp() {
        // The signing CA has ended (nothing ran to renew it): no client can verify with it, so
        // there is nothing to announce first. The announced CA, or a new one, signs at once and
        // is the whole bundle.
        let next_live =
            has_next && not_after(&next_cert, &read(&next_cert)?)? > now.unix_timestamp();
        let (pem, key_pem) = if next_live {
            (read(&next_cert)?, read(&next_key)?)
        } else {
            new_authority(now)?
        };
        write_file(&ca_key, &key_pem, true)?;
        write_file(&ca_cert, &pem, false)?;
        write_serving(dir, &issuer(&ca_cert, &pem, &ca_key)?, dns_names, ips, now)?;
        for p in [&next_cert, &next_key] {
            if p.exists() {
                std::fs::remove_file(p).map_err(|source| CertError::Write {
                    path: p.clone(),
                    source,
                })?;
            }
        }
        return Ok(Renewal::ReplacedEndedCa);
    }
    if has_next && ca_days < CA_SWITCH_BEFORE_DAYS {
        let next_pem = read(&next_cert)?;
        write_serving(
            dir,
            &issuer(&next_cert, &next_pem, &next_key)?,
            dns_names,
            ips,
            now,
        )?;
        write_file(&ca_key, &read(&next_key)?, true)?;
        write_file(&ca_cert, &format!("{next_pem}{current}"), false)?;
        for p in [&next_cert, &next_key] {
            std::fs::remove_file(p).map_err(|source| CertError::Write {
                path: p.clone(),
                source,
            })?;
        }
        return Ok(Renewal::SwitchedCa);
    }
    if !has_next && ca_days < CA_RENEW_BEFORE_DAYS {
        let (next_pem, key_pem) = new_authority(now)?;
        write_file(&next_key, &key_pem, true)?;
        write_file(&next_cert, &next_pem, false)?;
        // The signing CA stays first; CAs that have ended drop out.
        write_file(&ca_cert, &format!("{current}{next_pem}"), false)?;
        return Ok(Renewal::AnnouncedCa);
    }
    let serving = read(&cert)?;
    if days_left(not_after(&cert, &serving)?) < SERVING_RENEW_BEFORE_DAYS {
        write_serving(
            dir,
            &issuer(&ca_cert, current, &ca_key)?,
            dns_names,
            ips,
            now,
        )?;
        return Ok(Renewal::Serving);
    }
    // A CA kept in the bundle after a switch drops out once it has ended.
    let live: Vec<&String> = bundle
        .iter()
        .filter(|c| not_after(&ca_cert, c).is_ok_and(|end| end > now.unix_timestamp()))
        .collect();
    if live.len() < bundle.len() && !live.is_empty() {
        let text: String = live.into_iter().map(String::as_str).collect();
        write_file(&ca_cert, &text, false)?;
    }
    Ok(Renewal::Nothing)
}

/// Creates (or reuses, when all four files exist, renewing what is close to expiry) a CA and a
/// serving certificate in `dir`.
pub fn ensure_generated(
    dir: &Path,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<GeneratedCerts, CertError> {
    let paths = [CA_CERT, CA_KEY, TLS_CERT, TLS_KEY].map(|n| dir.join(n));
    let [ca_cert, ca_key, cert, key] = paths.clone();
    let now = time::OffsetDateTime::now_utc();
    let renewal = if paths.iter().all(|p| p.is_file()) {
        renew_generated(dir, dns_names, ips, now)?
    } else {
        std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let (ca_pem, key_pem) = new_authority(now)?;
        write_file(&ca_key, &key_pem, true)?;
        write_file(&ca_cert, &ca_pem, false)?;
        write_serving(
            dir,
            &issuer(&ca_cert, &ca_pem, &ca_key)?,
            dns_names,
            ips,
            now,
        )?;
        Renewal::Nothing
    };
    let ca_pem = read(&ca_cert)?;
    Ok(GeneratedCerts {
        ca_cert,
        cert,
        key,
        ca_pem,
        renewal,
    })
}

/// The crypto provider: ring, with TLS 1.3 suites and the ECDHE AEAD suites of TLS 1.2 only.
pub fn crypto_provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

/// Loads a certificate chain and key from PEM files.
pub fn load_certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, CertError> {
    let invalid = |path: &Path, message: String| CertError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no certificate found".into()));
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(key, format!("not a PEM private key: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| invalid(key, format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| invalid(key, format!("key does not match the certificate: {e}")))?;
    Ok(ck)
}

/// Hands out the newest loaded certificate; [`CertResolver::reload_if_changed`] swaps it.
#[derive(Debug)]
pub struct CertResolver {
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    stamp: std::sync::Mutex<Option<(SystemTime, SystemTime)>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl CertResolver {
    /// Loads the pair; fails when it cannot be used.
    pub fn new(
        provider: Arc<CryptoProvider>,
        cert: PathBuf,
        key: PathBuf,
    ) -> Result<Self, CertError> {
        let ck = load_certified_key(&provider, &cert, &key)?;
        let stamp = mtime(&cert).zip(mtime(&key));
        Ok(CertResolver {
            provider,
            cert,
            key,
            current: ArcSwap::from_pointee(ck),
            stamp: std::sync::Mutex::new(stamp),
        })
    }

    /// Reloads the pair when either file changed. A broken new pair is logged and the old one kept.
    pub fn reload_if_changed(&self) -> bool {
        let now = mtime(&self.cert).zip(mtime(&self.key));
        let Ok(mut stamp) = self.stamp.lock() else {
            return false;
        };
        if now.is_none() || *stamp == now {
            return false;
        }
        match load_certified_key(&self.provider, &self.cert, &self.key) {
            Ok(ck) => {
                self.current.store(Arc::new(ck));
                *stamp = now;
                tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                true
            }
            Err(e) => {
                // Files may be mid-rotation; keep the old pair and try again next time.
                tracing::warn!(error = %e, "serving certificate not reloaded");
                false
            }
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server configuration: TLS 1.2 and 1.3, modern suites, HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
) -> Result<rustls::ServerConfig, CertError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CertError::Generate(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // h2 first: the API server's Go client offers both and gets HTTP/2, as from Go servers.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kybern-certs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn certificates_are_renewed_without_breaking_the_published_bundle() {
        let dir = temp("renew");
        let names = ["webhook.example".to_string()];
        let g = ensure_generated(&dir, &names, &[]).unwrap();
        let ca0 = std::fs::read_to_string(&g.ca_cert).unwrap();
        let tls0 = std::fs::read_to_string(&g.cert).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let day = |d: i64| now + time::Duration::days(d);
        let renew = |at| renew_generated(&dir, &names, &[], at).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();

        assert_eq!(renew(now), Renewal::Nothing);
        // The serving certificate is signed again by the same CA.
        assert_eq!(
            renew(day(SERVING_DAYS - SERVING_RENEW_BEFORE_DAYS + 1)),
            Renewal::Serving
        );
        let tls1 = read(&g.cert);
        assert_ne!(tls0, tls1);
        assert_eq!(read(&g.ca_cert), ca0);
        load_certified_key(&crypto_provider(), &g.cert, &g.key).unwrap();

        // Near the CA's end a new CA is announced; the old one still signs.
        assert_eq!(
            renew(day(CA_DAYS - CA_RENEW_BEFORE_DAYS + 1)),
            Renewal::AnnouncedCa
        );
        let announced = read(&g.ca_cert);
        assert_eq!(pem_blocks(&announced).len(), 2);
        assert!(announced.starts_with(&ca0), "the signing CA stays first");
        assert_eq!(read(&g.cert), tls1);
        // Announcing is done once; meanwhile the old CA still signs what needs signing.
        assert_eq!(
            renew(day(CA_DAYS - CA_RENEW_BEFORE_DAYS + 2)),
            Renewal::Serving
        );
        assert_eq!(read(&g.ca_cert), announced);
        assert!(dir.join(NEXT_CA_CERT).exists());
        let tls1 = read(&g.cert);

        // Later the announced CA takes over; the old one stays in the bundle.
        assert_eq!(
            renew(day(CA_DAYS - CA_SWITCH_BEFORE_DAYS + 1)),
            Renewal::SwitchedCa
        );
        let switched = read(&g.ca_cert);
        let blocks = pem_blocks(&switched);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks.get(1), pem_blocks(&ca0).first());
        assert_ne!(read(&g.cert), tls1);
        assert!(!dir.join(NEXT_CA_CERT).exists());
        load_certified_key(&crypto_provider(), &g.cert, &g.key).unwrap();

        // Once the old CA has ended it leaves the bundle.
        assert_eq!(renew(day(CA_DAYS + 1)), Renewal::Nothing);
        assert_eq!(pem_blocks(&read(&g.ca_cert)).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Whether the serving certificate verifies against the bundle for `name` at `at`.
    fn verifies(g: &GeneratedCerts, name: &str, at: time::OffsetDateTime) -> Result<(), String> {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{ServerName, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(&g.ca_cert).map_err(|e| e.to_string())? {
            roots
                .add(der.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let leaf = CertificateDer::from_pem_file(&g.cert).map_err(|e| e.to_string())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(crypto_provider()),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let when = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at.unix_timestamp()).map_err(|e| e.to_string())?,
        ));
        let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&leaf, &[], &server, &[], when)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Clock skew: certificates start an hour before they are made, so a client whose clock is
    /// behind (an API server on another node) accepts a fresh one; past that hour it would not.
    #[test]
    fn fresh_certificates_verify_for_a_client_whose_clock_is_behind() {
        let dir = temp("skew");
        let names = ["webhook.example".to_string()];
        let g = ensure_generated(&dir, &names, &[]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        verifies(&g, "webhook.example", now - time::Duration::minutes(55)).unwrap();
        let err = verifies(&g, "webhook.example", now - time::Duration::minutes(65)).unwrap_err();
        assert!(err.contains("not valid yet"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A cluster that ran nothing for longer than the CA lives: one renewal serves a
    /// certificate that verifies again, with no ended CA left in the bundle.
    #[test]
    fn an_ended_ca_is_replaced_at_once() {
        for announced_first in [false, true] {
            let dir = temp(&format!("ended-{announced_first}"));
            let names = ["webhook.example".to_string()];
            let g = ensure_generated(&dir, &names, &[]).unwrap();
            let now = time::OffsetDateTime::now_utc();
            let day = |d: i64| now + time::Duration::days(d);
            verifies(&g, "webhook.example", now).unwrap();
            // Ended long ago, or announced a successor that is still valid.
            let later = day(if announced_first {
                CA_DAYS + 10
            } else {
                CA_DAYS + 400
            });
            if announced_first {
                let at = day(CA_DAYS - CA_RENEW_BEFORE_DAYS + 1);
                assert_eq!(
                    renew_generated(&dir, &names, &[], at).unwrap(),
                    Renewal::AnnouncedCa
                );
            }
            assert!(verifies(&g, "webhook.example", later).is_err());
            assert_eq!(
                renew_generated(&dir, &names, &[], later).unwrap(),
                Renewal::ReplacedEndedCa
            );
            verifies(&g, "webhook.example", later).unwrap();
            assert_eq!(
                pem_blocks(&std::fs::read_to_string(&g.ca_cert).unwrap()).len(),
                1
            );
            assert!(!dir.join(NEXT_CA_CERT).exists());
            assert_eq!(
                renew_generated(&dir, &names, &[], later).unwrap(),
                Renewal::Nothing
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
