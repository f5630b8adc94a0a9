//! `jwt.Decode(token, key)` of Kyverno's CEL library: the token's `Header` and `Claims`, and
//! `Valid` when its HMAC signature (HS256/384/512) matches `key` and its `exp`/`nbf` claims hold
//! now. Tokens signed otherwise decode with `Valid: false` (no public keys here).

use super::value::{from_json, map};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use kube_cel::cel;
use kube_cel::cel::{FunctionContext, ResolveResult};
use serde_json::Value;
use std::sync::Arc;

/// Largest token decoded: JWTs travel in headers, which are far smaller.
const MAX_TOKEN_LEN: usize = 64 * 1024;

fn part(
    ftx: &FunctionContext,
    text: &str,
    what: &str,
) -> Result<Value, kube_cel::cel::ExecutionError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| ftx.error(format!("jwt.Decode: {what} is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ftx.error(format!("jwt.Decode: {what} is not JSON: {e}")))
}

fn signature_holds(alg: &str, signed: &str, signature: &str, key: &[u8]) -> bool {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')) else {
        return false;
    };
    fn verify<M: Mac + hmac::digest::KeyInit>(key: &[u8], signed: &str, sig: &[u8]) -> bool {
        <M as Mac>::new_from_slice(key).is_ok_and(|mut m| {
            m.update(signed.as_bytes());
            m.verify_slice(sig).is_ok()
        })
    }
    match alg {
        "HS256" => verify::<Hmac<sha2::Sha256>>(key, signed, &sig),
        "HS384" => verify::<Hmac<sha2::Sha384>>(key, signed, &sig),
        "HS512" => verify::<Hmac<sha2::Sha512>>(key, signed, &sig),
        _ => false,
    }
}

/// `exp` in the future and `nbf` in the past, when present.
fn times_hold(claims: &Value, now: i64) -> bool {
    let at = |k: &str| claims.get(k).and_then(Value::as_f64);
    at("exp").is_none_or(|exp| now < exp as i64) && at("nbf").is_none_or(|nbf| now >= nbf as i64)
}

/// `jwt.Decode(token, key)`.
pub fn decode(ftx: &FunctionContext, token: Arc<String>, key: Arc<String>) -> ResolveResult {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ftx.error(format!(
            "jwt.Decode: token longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ftx.error("jwt.Decode: a token has three dot-separated parts"));
    };
    let header_json = part(ftx, header, "header")?;
    let claims_json = part(ftx, claims, "claims")?;
    let alg = header_json
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let signed = token
        .len()
        .checked_sub(signature.len() + 1)
        .and_then(|end| token.get(..end))
        .unwrap_or_default();
    let valid = signature_holds(alg, signed, signature, key.as_bytes())
        && times_hold(&claims_json, chrono::Utc::now().timestamp());
    Ok(map([
        ("Valid".to_string(), cel::Value::Bool(valid)),
        ("Header".to_string(), from_json(&header_json)),
        ("Claims".to_string(), from_json(&claims_json)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(alg: &str, claims: &Value, key: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": alg, "typ": "JWT"}).to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{h}.{c}");
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
        m.update(signed.as_bytes());
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    }

    #[test]
    fn signatures_and_times_decide_validity() {
        let claims = serde_json::json!({"role": "admin", "exp": 4102444800_i64});
        let t = token("HS256", &claims, b"secret");
        let (h, rest) = t.split_once('.').unwrap();
        let (c, s) = rest.split_once('.').unwrap();
        assert!(signature_holds("HS256", &format!("{h}.{c}"), s, b"secret"));
        assert!(!signature_holds("HS256", &format!("{h}.{c}"), s, b"other"));
        assert!(!signature_holds("RS256", &format!("{h}.{c}"), s, b"secret"));
        assert!(times_hold(&claims, 1_700_000_000));
        assert!(!times_hold(&serde_json::json!({"exp": 1}), 1_700_000_000));
        assert!(!times_hold(
            &serde_json::json!({"nbf": 4102444800_i64}),
            1_700_000_000
        ));
    }
}
