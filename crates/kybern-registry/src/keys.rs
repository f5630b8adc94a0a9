//! Public keys as cosign loads them for verification: a PEM `PUBLIC KEY` or a certificate's
//! subject key, ECDSA P-256 or P-384 (ASN.1 signatures), RSA (PKCS #1 v1.5, as cosign signs
//! with RSA keys) or Ed25519, with the hash `signatureAlgorithm` names (`sha256` by default;
//! Ed25519 signs the message itself).

use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A key that verifies signatures with one algorithm.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: &'static dyn VerificationAlgorithm,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The hash a `signatureAlgorithm` value names.
fn hash_name(signature_algorithm: &str) -> Result<&'static str, String> {
    match signature_algorithm.to_ascii_lowercase().as_str() {
        "" | "sha256" => Ok("sha256"),
        "sha384" => Ok("sha384"),
        "sha512" => Ok("sha512"),
        other => Err(format!(
            "invalid signature algorithm provided {other} (sha256, sha384 or sha512)"
        )),
    }
}

impl PublicKey {
    /// The key of a PEM public key or of a PEM certificate's subject.
    pub fn from_pem(pem: &str, signature_algorithm: &str) -> Result<PublicKey, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim().as_bytes())
            .map_err(|_| "the key is not PEM".to_string())?;
        match block.label.as_str() {
            "CERTIFICATE" => {
                let cert = block
                    .parse_x509()
                    .map_err(|e| format!("the certificate does not parse: {e}"))?;
                PublicKey::from_spki(cert.public_key(), signature_algorithm)
            }
            "PUBLIC KEY" => {
                let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents)
                    .map_err(|e| format!("the public key does not parse: {e}"))?;
                PublicKey::from_spki(&spki, signature_algorithm)
            }
            other => Err(format!(
                "a PEM {other} block is not a public key or certificate"
            )),
        }
    }

    /// The key of a subject public key info.
    pub fn from_spki(
        spki: &SubjectPublicKeyInfo<'_>,
        signature_algorithm: &str,
    ) -> Result<PublicKey, String> {
        let hash = hash_name(signature_algorithm)?;
        let oid = &spki.algorithm.algorithm;
        let algorithm: &'static dyn VerificationAlgorithm = if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match (curve, hash) {
                (Some(c), "sha256") if c == OID_EC_P256 => &signature::ECDSA_P256_SHA256_ASN1,
                (Some(c), "sha384") if c == OID_EC_P256 => &signature::ECDSA_P256_SHA384_ASN1,
                (Some(c), "sha256") if c == OID_NIST_EC_P384 => &signature::ECDSA_P384_SHA256_ASN1,
                (Some(c), "sha384") if c == OID_NIST_EC_P384 => &signature::ECDSA_P384_SHA384_ASN1,
                (Some(c), _) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => {
                    return Err(format!(
                        "{hash} with ECDSA keys is not supported yet (sha256 and sha384 are)"
                    ));
                }
                _ => {
                    return Err(
                        "ECDSA keys on curves other than P-256 and P-384 are not supported yet"
                            .to_string(),
                    );
                }
            }
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            match hash {
                "sha384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "sha512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                _ => &signature::RSA_PKCS1_2048_8192_SHA256,
            }
        } else if *oid == OID_SIG_ED25519 {
            &signature::ED25519
        } else {
            return Err(format!(
                "keys of algorithm {oid} are not supported (ECDSA P-256/P-384, RSA and Ed25519 are)"
            ));
        };
        Ok(PublicKey {
            algorithm,
            bytes: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Checks a base64 signature over `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| "signature is not base64".to_string())?;
        UnparsedPublicKey::new(self.algorithm, &self.bytes)
            .verify(message, &raw)
            .map_err(|_| "invalid signature".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256_pem() -> String {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem")
    }

    /// Signatures of `MESSAGE` made with `openssl dgst -sign` (RSA PKCS #1 v1.5 with SHA-256,
    /// P-384 with SHA-384) and `openssl pkeyutl -sign -rawin` (Ed25519).
    const MESSAGE: &[u8] = b"kybern signed payload";
    const VECTORS: [(&str, &str, &str); 3] = [
        (
            "sha256",
            "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjJCheT4CBuNTQ94g3Sed
cvFw1kQ2I/QmLHEtbsXQHIJQiDTbj7ib6DderdZjXQolpscc60ZNTPWxiU63+e0r
B5xPk0udzdcjkgiG63VsFx7x1xBDhnaDvG02Dui0Gw0GuRvtFYBM1KCoh2NEwDB4
c/iovzwfeR4kWN+0l0T4w4U3X3bq1PlCVD2vkCwrVp0AhqmV4UocdooZH20k+sDI
NloG1MptlhrSJA+xV0Sd2zAYFEcJW9hqpAGTWA5sn0v5kSg/xbeqjwlRD4WHjkro
r1KulxDVRmpfHfC7K43lDIAu2cWtKLiyL6Vxn99sSyvbP7X8zDUGOwYVyxw5P8iS
8QIDAQAB
-----END PUBLIC KEY-----",
            "eDlq+ZeMK81IgrdVrIv1YeThHwx9xYSUtP0ty8Y3W6cLIrSTRCaeWHV7H7746ZQCtxIlN40AZ5r8TiavWFbZs9JoUtfoPlEej69Xn7eMUcFxC30GrglF5vfubTrdpfeF5OPvSzDIY2crGSjpUdL7mXnasDMzWjflaJm6PmGaYwmF89lpS+RFDLsyyfS6TcW1c1RoE8LdoIceG0wDLnOyH3RqH8SNJ/fkbt9d22ziBZSEJ+qukWsIyAnrdUl2AikNYfGntGyowhsIvDi3epDiuELUg1GKKZ+8rKu6OUlKSbXahmExLw1vVE5aNxlnL+u45XR4GcUE9mAlSUR8wfiAjg==",
        ),
        (
            "sha384",
            "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEojra3MWOQqpLjf4YTzGqkQaAb957N9IY
oDIgzu4gvNIsZad70fBCxuD4nm+Q3n/JSZU3sewl41t5JyxpHa6lLeXrhKi+4W61
dMiVM6GBgRNCrbfw0POzgWAuyVbercnR
-----END PUBLIC KEY-----",
            "MGUCMQC6sM5Y+/odmypE0HM71M+AB7jAQWtoKfXvm7Hc94N9SqOn4f0AYWbDYB1MFb0SuWUCMEqpqVYxUP20pUb/Qkrymn7vYsbny6GoKaRj+Kk3AvmilOJITvJPK0/5QvzHwctlIA==",
        ),
        (
            "",
            "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGoGX+Lkae9xh3ymaNFHUycWY9LBGUDAui4p62B5mD6Q=
-----END PUBLIC KEY-----",
            "96pO7vFUAOe3+dUUATcgZDothnds4EM0OCdR6fZti90iQBgCrzYf8uKD9AJ9h+h8grt3obJ/OC4qB+ae/Ct/Cw==",
        ),
    ];

    #[test]
    fn rsa_p384_and_ed25519_keys_verify_what_they_signed() {
        for (hash, pem, signature) in VECTORS {
            let key = PublicKey::from_pem(pem, hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
            key.verify(MESSAGE, signature)
                .unwrap_or_else(|e| panic!("{pem}: {e}"));
            assert_eq!(
                key.verify(b"another payload", signature),
                Err("invalid signature".to_string())
            );
        }
        // The RSA key with another hash than it signed with does not verify.
        let rsa = PublicKey::from_pem(VECTORS[0].1, "sha512").expect("rsa key");
        assert!(rsa.verify(MESSAGE, VECTORS[0].2).is_err());
    }

    #[test]
    fn hashes_are_named_as_kyverno_names_them() {
        assert!(PublicKey::from_pem(&p256_pem(), "").is_ok());
        assert!(PublicKey::from_pem(&p256_pem(), "SHA384").is_ok());
        let err = PublicKey::from_pem(&p256_pem(), "sha512").unwrap_err();
        assert!(err.contains("sha512 with ECDSA"), "{err}");
        let err = PublicKey::from_pem(&p256_pem(), "md5").unwrap_err();
        assert!(
            err.contains("invalid signature algorithm provided md5"),
            "{err}"
        );
    }

    #[test]
    fn other_pem_blocks_are_refused_by_label() {
        let err = PublicKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "",
        )
        .unwrap_err();
        assert!(err.contains("PRIVATE KEY"), "{err}");
        assert!(PublicKey::from_pem("not pem", "").is_err());
    }
}
