//! `x509_decode`: a PEM certificate or certificate request as the JSON that Go's
//! `x509.Certificate` / `x509.CertificateRequest` marshals to (the fields policies use), with the
//! RSA public key replaced by `{N: "<decimal>", E: <int>}` as Kyverno does. Only RSA keys are
//! accepted, like Kyverno.

use ::jmespath::Rcvar;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest, X509Name};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use super::functions::arg_str;

type Out = Result<Rcvar, String>;

pub(super) fn x509_decode(args: &[Rcvar]) -> Out {
    let input = arg_str(args, 0)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(input.as_bytes())
        .map_err(|_| "invalid certificate".to_string())?;
    let value = match pem.label.as_str() {
        "CERTIFICATE" => {
            let (_, cert) = X509Certificate::from_der(&pem.contents)
                .map_err(|e| format!("x509: malformed certificate: {e}"))?;
            certificate(&cert)?
        }
        "CERTIFICATE REQUEST" => {
            let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
                .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
            request(&csr)?
        }
        other => return Err(format!("unsupported PEM type {other:?}")),
    };
    // Go decodes the JSON back into interface{}, so numbers become floats.
    Ok(super::strings::go_numbers(&value))
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn b64_or_null(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, b64)
}

fn certificate(cert: &X509Certificate<'_>) -> Result<Value, String> {
    let tbs = &cert.tbs_certificate;
    let spki = cert.public_key();
    let public_key = rsa_key(spki).ok_or("certificate should use rsa algorithm")?;
    let mut out = Map::new();
    out.insert("Raw".into(), b64(cert.as_raw()));
    out.insert("RawTBSCertificate".into(), b64(tbs.as_ref()));
    out.insert("RawSubjectPublicKeyInfo".into(), b64(spki.raw));
    out.insert("RawSubject".into(), b64(tbs.subject.as_raw()));
    out.insert("RawIssuer".into(), b64(tbs.issuer.as_raw()));
    out.insert("Signature".into(), b64(&cert.signature_value.data));
    out.insert(
        "SignatureAlgorithm".into(),
        json!(signature_algorithm(&cert.signature_algorithm)),
    );
    out.insert("PublicKeyAlgorithm".into(), json!(1));
    out.insert("PublicKey".into(), public_key);
    out.insert("Version".into(), json!(tbs.version.0 + 1));
    out.insert("SerialNumber".into(), json!(big_to_f64(cert.raw_serial())));
    out.insert("Issuer".into(), name(cert.issuer()));
    out.insert("Subject".into(), name(cert.subject()));
    out.insert(
        "NotBefore".into(),
        json!(timestamp(cert.validity().not_before.timestamp())),
    );
    out.insert(
        "NotAfter".into(),
        json!(timestamp(cert.validity().not_after.timestamp())),
    );

    let mut key_usage = 0u16;
    let mut ext_key_usage: Vec<Value> = Vec::new();
    let (mut basic_valid, mut is_ca, mut max_path_len, mut max_path_zero) =
        (false, false, 0i64, false);
    let (mut skid, mut akid) = (None, None);
    let mut sans = Sans::default();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => key_usage = ku.flags,
            ParsedExtension::ExtendedKeyUsage(eku) => {
                // Go's ExtKeyUsage constants.
                let known = [
                    (eku.any, 0),
                    (eku.server_auth, 1),
                    (eku.client_auth, 2),
                    (eku.code_signing, 3),
                    (eku.email_protection, 4),
                    (eku.time_stamping, 8),
                    (eku.ocsp_signing, 9),
                ];
                ext_key_usage.extend(known.iter().filter(|(set, _)| *set).map(|(_, n)| json!(n)));
            }
            ParsedExtension::BasicConstraints(bc) => {
                basic_valid = true;
                is_ca = bc.ca;
                match bc.path_len_constraint {
                    Some(n) => {
                        max_path_len = i64::from(n);
                        max_path_zero = n == 0;
                    }
                    None => max_path_len = -1,
                }
            }
            ParsedExtension::SubjectKeyIdentifier(k) => skid = Some(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                akid = a.key_identifier.as_ref().map(|k| k.0);
            }
            ParsedExtension::SubjectAlternativeName(san) => sans.add(&san.general_names),
            _ => {}
        }
    }
    out.insert("KeyUsage".into(), json!(key_usage));
    out.insert("Extensions".into(), extensions(cert.extensions()));
    out.insert("ExtraExtensions".into(), Value::Null);
    out.insert("UnhandledCriticalExtensions".into(), Value::Null);
    out.insert(
        "ExtKeyUsage".into(),
        if ext_key_usage.is_empty() {
            Value::Null
        } else {
            Value::Array(ext_key_usage)
        },
    );
    out.insert("UnknownExtKeyUsage".into(), Value::Null);
    out.insert("BasicConstraintsValid".into(), json!(basic_valid));
    out.insert("IsCA".into(), json!(is_ca));
    out.insert("MaxPathLen".into(), json!(max_path_len));
    out.insert("MaxPathLenZero".into(), json!(max_path_zero));
    out.insert("SubjectKeyId".into(), b64_or_null(skid));
    out.insert("AuthorityKeyId".into(), b64_or_null(akid));
    sans.insert_into(&mut out);
    Ok(Value::Object(out))
}

fn request(csr: &X509CertificationRequest<'_>) -> Result<Value, String> {
    let info = &csr.certification_request_info;
    let public_key = rsa_key(&info.subject_pki).ok_or("certificate should use rsa algorithm")?;
    let mut out = Map::new();
    out.insert("Raw".into(), b64(csr.as_ref()));
    out.insert("RawTBSCertificateRequest".into(), b64(info.raw));
    out.insert("RawSubjectPublicKeyInfo".into(), b64(info.subject_pki.raw));
    out.insert("RawSubject".into(), b64(info.subject.as_raw()));
    out.insert("Version".into(), json!(info.version.0));
    out.insert("Signature".into(), b64(&csr.signature_value.data));
    out.insert(
        "SignatureAlgorithm".into(),
        json!(signature_algorithm(&csr.signature_algorithm)),
    );
    out.insert("PublicKeyAlgorithm".into(), json!(1));
    out.insert("PublicKey".into(), public_key);
    out.insert("Subject".into(), name(&info.subject));
    let mut sans = Sans::default();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                sans.add(&san.general_names);
            }
        }
    }
    sans.insert_into(&mut out);
    Ok(Value::Object(out))
}

#[derive(Default)]
struct Sans {
    dns: Vec<Value>,
    email: Vec<Value>,
    ip: Vec<Value>,
    uri: Vec<Value>,
}

impl Sans {
    fn add(&mut self, names: &[GeneralName<'_>]) {
        for n in names {
            match n {
                GeneralName::DNSName(s) => self.dns.push(json!(s)),
                GeneralName::RFC822Name(s) => self.email.push(json!(s)),
                GeneralName::URI(s) => self.uri.push(json!(s)),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        self.ip.push(json!(ip));
                    }
                }
                _ => {}
            }
        }
    }

    fn insert_into(self, out: &mut Map<String, Value>) {
        let list = |v: Vec<Value>| {
            if v.is_empty() {
                Value::Null
            } else {
                Value::Array(v)
            }
        };
        out.insert("DNSNames".into(), list(self.dns));
        out.insert("EmailAddresses".into(), list(self.email));
        out.insert("IPAddresses".into(), list(self.ip));
        out.insert("URIs".into(), list(self.uri));
    }
}

fn extensions(exts: &[x509_parser::extensions::X509Extension<'_>]) -> Value {
    Value::Array(
        exts.iter()
            .map(|e| {
                json!({
                    "Id": oid_arcs(&e.oid),
                    "Critical": e.critical,
                    "Value": b64(e.value),
                })
            })
            .collect(),
    )
}

fn oid_arcs(oid: &x509_parser::der_parser::oid::Oid<'_>) -> Value {
    oid.iter().map_or(Value::Null, |arcs| {
        Value::Array(arcs.map(|a| json!(a)).collect())
    })
}

/// `pkix.Name` as JSON.
fn name(n: &X509Name<'_>) -> Value {
    let mut fields: [(&str, &str, Vec<Value>); 7] = [
        ("2.5.4.6", "Country", vec![]),
        ("2.5.4.10", "Organization", vec![]),
        ("2.5.4.11", "OrganizationalUnit", vec![]),
        ("2.5.4.7", "Locality", vec![]),
        ("2.5.4.8", "Province", vec![]),
        ("2.5.4.9", "StreetAddress", vec![]),
        ("2.5.4.17", "PostalCode", vec![]),
    ];
    let (mut common_name, mut serial) = (String::new(), String::new());
    let mut names = Vec::new();
    for attr in n.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        let value = attr.as_str().unwrap_or_default().to_string();
        names.push(json!({"Type": oid_arcs(attr.attr_type()), "Value": value}));
        match oid.as_str() {
            "2.5.4.3" => common_name = value,
            "2.5.4.5" => serial = value,
            _ => {
                if let Some(f) = fields.iter_mut().find(|f| f.0 == oid) {
                    f.2.push(json!(value));
                }
            }
        }
    }
    let mut out = Map::new();
    for (_, key, values) in fields {
        out.insert(
            key.into(),
            if values.is_empty() {
                Value::Null
            } else {
                Value::Array(values)
            },
        );
    }
    out.insert("SerialNumber".into(), json!(serial));
    out.insert("CommonName".into(), json!(common_name));
    out.insert("Names".into(), Value::Array(names));
    out.insert("ExtraNames".into(), Value::Null);
    Value::Object(out)
}

fn rsa_key(spki: &SubjectPublicKeyInfo<'_>) -> Option<Value> {
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => Some(json!({
            "N": big_to_decimal(rsa.modulus),
            "E": big_to_f64(rsa.exponent),
        })),
        _ => None,
    }
}

/// Go's `x509.SignatureAlgorithm` numbering.
fn signature_algorithm(alg: &AlgorithmIdentifier<'_>) -> u32 {
    match alg.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.2" => 1,
        "1.2.840.113549.1.1.4" => 2,
        "1.2.840.113549.1.1.5" => 3,
        "1.2.840.113549.1.1.11" => 4,
        "1.2.840.113549.1.1.12" => 5,
        "1.2.840.113549.1.1.13" => 6,
        "1.2.840.10040.4.3" => 7,
        "2.16.840.1.101.3.4.3.2" => 8,
        "1.2.840.10045.4.1" => 9,
        "1.2.840.10045.4.3.2" => 10,
        "1.2.840.10045.4.3.3" => 11,
        "1.2.840.10045.4.3.4" => 12,
        "1.2.840.113549.1.1.10" => 13,
        "1.3.101.112" => 16,
        _ => 0,
    }
}

/// Go's RFC3339Nano rendering of a UTC time.
fn timestamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Big-endian unsigned bytes as a float (Go's big.Int JSON number, decoded into float64).
fn big_to_f64(bytes: &[u8]) -> f64 {
    bytes.iter().fold(0.0, |acc, b| acc * 256.0 + f64::from(*b))
}

/// Big-endian unsigned bytes in decimal.
fn big_to_decimal(bytes: &[u8]) -> String {
    // Little-endian base-1e9 limbs.
    let mut limbs: Vec<u64> = vec![0];
    for &b in bytes {
        let mut carry = u64::from(b);
        for limb in &mut limbs {
            let v = *limb * 256 + carry;
            *limb = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push(carry % 1_000_000_000);
            carry /= 1_000_000_000;
        }
    }
    let mut out = String::new();
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&limb.to_string());
        } else {
            out.push_str(&format!("{limb:09}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::jmespath::compile;
    use serde_json::{Value, json};

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIICXzCCAcigAwIBAgICMDkwDQYJKoZIhvcNAQELBQAwMjELMAkGA1UEBhMCVVMx\nDTALBgNVBAoMBEFjbWUxFDASBgNVBAMMC2V4YW1wbGUuY29tMB4XDTI2MTEyNzAz\nNDEyN1oXDTM2MTEyNDAzNDEyN1owMjELMAkGA1UEBhMCVVMxDTALBgNVBAoMBEFj\nbWUxFDASBgNVBAMMC2V4YW1wbGUuY29tMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB\niQKBgQC70lIagXMW37zu4ghqcgdfBHMEtnYSoKh8f+nfFivpPHsaaJYkNqlebpXN\nK9BmogbX/wIyMfBkmmFQr5rDsCFYaT7FShQfZUKpOH95V/4gsfcYdKGnek9URhRP\nw5LMUYjORFpzi9QsKKNm14ij4S3o5VBFWy9sssRsFlydLl6T1QIDAQABo4GDMIGA\nMB0GA1UdDgQWBBTLt/KDbmMMatigrEJpau1+yrdMOjAfBgNVHSMEGDAWgBTLt/KD\nbmMMatigrEJpau1+yrdMOjAtBgNVHREEJjAkggtleGFtcGxlLmNvbYIPd3d3LmV4\nYW1wbGUuY29thwQKAAABMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQELBQAD\ngYEAeW1B5lbGOCslQOK3Rp744hoZa/Rtv6SEgGKEVHoD7/kfXZV6ec1dQqYtw+bO\nbbScm03DIT2D1UkvtF98oJp9fgF7OAexqAtqi7QZtxguZaBE82ROWO3WF5zhRPdy\nr5BVrMytuRUGu73OJWLDxWFVkPMGRDAQdr12AyXBSK0jsKE=\n-----END CERTIFICATE-----\n";
    const REQUEST: &str = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBVTCBvwIBADAWMRQwEgYDVQQDDAtyZXEuZXhhbXBsZTCBnzANBgkqhkiG9w0B\nAQEFAAOBjQAwgYkCgYEAu9JSGoFzFt+87uIIanIHXwRzBLZ2EqCofH/p3xYr6Tx7\nGmiWJDapXm6VzSvQZqIG1/8CMjHwZJphUK+aw7AhWGk+xUoUH2VCqTh/eVf+ILH3\nGHShp3pPVEYUT8OSzFGIzkRac4vULCijZteIo+Et6OVQRVsvbLLEbBZcnS5ek9UC\nAwEAAaAAMA0GCSqGSIb3DQEBCwUAA4GBAIvNUEUUfFjtRNsMQJVzHNeVdLZCt+JI\nBSK82C1iyMDk0XAm/TZSSxlqy6A3kwP1CYh78n3yD3uFg1z/otSKOxjUNdt9dQo0\nJ7YalxnjtdjaNJyZDYzYTyh7d9qPFxOVDj/KatirAI0j/GiQwrqUrPbP6Bp/cKoJ\nIrNyyKZXUvVA\n-----END CERTIFICATE REQUEST-----\n";
    const EC_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBbzCCARWgAwIBAgIUfrh0C2AyK0iZC7PYpIWrD2R+44wwCgYIKoZIzj0EAwIw\nDTELMAkGA1UEAwwCZWMwHhcNMjYxMTI3MDM0MTMwWhcNMjYxMTI4MDM0MTMwWjAN\nMQswCQYDVQQDDAJlYzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABB+qXprsXBN5\n6MaKZxXcDNMJDWvEoMljV7T5CTXaG0+2mm7XjNgk6LlyttvbtEuMlnuNACTJgKQQ\nOw9oL/Lk5xajUzBRMB0GA1UdDgQWBBSWokIroQ2EkRUS+R/iFd3WlWa8XTAfBgNV\nHSMEGDAWgBSWokIroQ2EkRUS+R/iFd3WlWa8XTAPBgNVHRMBAf8EBTADAQH/MAoG\nCCqGSM49BAMCA0gAMEUCIDovsseIRZ5ePhkKjaA56zWOhx/Ypvtd3BK2Z6iM6o+P\nAiEA2h3wDokl24E+QEQ/9ymopGOPbAd57cJWats0iF97Rto=\n-----END CERTIFICATE-----\n";
    const MODULUS: &str = "131892788484342797258572408531235122433884833536584672148972885634476790659372696038762873476705155597933254888658380644312076393806206460260608090377212034242311293580526084729652671468801244991590902375631906871717650222926954596076985302035125050230220637146644888083149277283278866430841685466863430964181";

    fn decode(pem: &str) -> Result<Value, String> {
        compile("x509_decode(@)")
            .map_err(|e| e.to_string())?
            .search(&json!(pem))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn decodes_certificates() {
        let v = decode(CERT).unwrap();
        assert_eq!(v["Subject"]["CommonName"], json!("example.com"));
        assert_eq!(v["Subject"]["Organization"], json!(["Acme"]));
        assert_eq!(v["Subject"]["Country"], json!(["US"]));
        assert_eq!(v["Subject"]["Locality"], json!(null));
        assert_eq!(v["Issuer"]["CommonName"], json!("example.com"));
        assert_eq!(
            v["Subject"]["Names"][2],
            json!({"Type": [2, 5, 4, 3], "Value": "example.com"})
        );
        assert_eq!(v["SerialNumber"], json!(12345));
        assert_eq!(v["Version"], json!(3));
        assert_eq!(v["IsCA"], json!(true));
        assert_eq!(v["BasicConstraintsValid"], json!(true));
        assert_eq!(v["MaxPathLen"], json!(-1));
        assert_eq!(v["DNSNames"], json!(["example.com", "www.example.com"]));
        assert_eq!(v["IPAddresses"], json!(["10.0.0.1"]));
        assert_eq!(v["PublicKey"], json!({"N": MODULUS, "E": 65537}));
        assert_eq!(v["PublicKeyAlgorithm"], json!(1));
        assert_eq!(v["SignatureAlgorithm"], json!(4));
        assert_eq!(v["NotBefore"], json!("2026-11-27T03:41:27Z"));
        assert_eq!(v["NotAfter"], json!("2036-11-24T03:41:27Z"));
    }

    #[test]
    fn decodes_requests() {
        let v = decode(REQUEST).unwrap();
        assert_eq!(v["Subject"]["CommonName"], json!("req.example"));
        assert_eq!(v["PublicKey"]["N"], json!(MODULUS));
    }

    #[test]
    fn rejects_non_rsa_and_garbage() {
        assert!(decode(EC_CERT).unwrap_err().contains("rsa"));
        assert!(decode("not a pem").is_err());
        assert!(decode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
