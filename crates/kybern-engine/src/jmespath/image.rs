//! `image_normalize` (Kyverno's image-info parsing) and `is_external_url` (without DNS).

use std::net::IpAddr;

use ::jmespath::Rcvar;

use super::functions::{arg_str, boolean, string};

type Out = Result<Rcvar, String>;

/// Kyverno's default registry (ConfigMap `defaultRegistry`).
const DEFAULT_REGISTRY: &str = "docker.io";

pub(super) fn image_normalize(args: &[Rcvar]) -> Out {
    normalize(arg_str(args, 0)?).map(string)
}

/// `registry/path:tag` or `registry/path@digest`. Kyverno prefixes the default registry when the
/// first segment is not a host (no `.`/`:`, not `localhost`, all lower case) and then parses the
/// reference without Docker's `library/` normalisation; a missing tag becomes `latest`.
pub(super) fn normalize(image: &str) -> Result<String, String> {
    let full = match image.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            image.to_string()
        }
        _ => format!("{DEFAULT_REGISTRY}/{image}"),
    };
    let invalid = || format!("bad image: {image:?}, invalid reference format");
    let (name, digest) = match full.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (full.as_str(), None),
    };
    let (name, tag) = match name.rfind(':') {
        Some(i) if !name.get(i..).unwrap_or("").contains('/') => {
            (name.get(..i).unwrap_or(""), name.get(i + 1..))
        }
        _ => (name, None),
    };
    let (domain, path) = name.split_once('/').ok_or_else(invalid)?;
    if !valid_domain(domain) || !valid_path(path) || name.len() > 255 {
        return Err(invalid());
    }
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(invalid());
    }
    if let Some(d) = digest
        && !valid_digest(d)
    {
        return Err(invalid());
    }
    Ok(match (digest, tag) {
        (Some(d), _) => format!("{domain}/{path}@{d}"),
        (None, Some(t)) => format!("{domain}/{path}:{t}"),
        (None, None) => format!("{domain}/{path}:latest"),
    })
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(inner) = d.strip_prefix('[') {
        // Bracketed IPv6 literal, optionally with a port.
        let Some((v6, rest)) = inner.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match rest.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if rest.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if host.is_empty() {
        return d.starts_with('[');
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path(p: &str) -> bool {
    p.split('/').all(|c| {
        let b = c.as_bytes();
        let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            match b.get(i) {
                Some(x) if alnum(x) => i += 1,
                Some(b'.') => {
                    i += 1;
                    if !b.get(i).is_some_and(alnum) {
                        return false;
                    }
                }
                Some(b'_') => {
                    i += 1;
                    if b.get(i) == Some(&b'_') {
                        i += 1;
                    }
                    if !b.get(i).is_some_and(alnum) {
                        return false;
                    }
                }
                Some(b'-') => {
                    while b.get(i) == Some(&b'-') {
                        i += 1;
                    }
                    if !b.get(i).is_some_and(alnum) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        true
    })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    b.first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `algorithm:hex` with at least 32 hex digits.
fn valid_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    !algo.is_empty()
        && algo
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'_' | b'-'))
        && hex.len() >= 32
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// False for loopback and private hosts. Kyverno resolves names through DNS; the engine is pure,
/// so only IP literals and `localhost` are recognised as internal and other names count as
/// external.
pub(super) fn is_external_url(args: &[Rcvar]) -> Out {
    let url = arg_str(args, 0)?;
    let host = hostname(url).ok_or_else(|| format!("parse {url:?}: invalid URL"))?;
    if host.is_empty() {
        return Err(format!("lookup {url:?}: no such host"));
    }
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Ok(boolean(false));
    }
    Ok(boolean(match host.parse::<IpAddr>() {
        Ok(ip) => !is_internal(ip),
        Err(_) => true,
    }))
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_loopback() || v4.is_private();
            }
            // fc00::/7 is Go's IPv6 "private" range.
            v6.is_loopback() || (v6.segments().first().is_some_and(|s| s & 0xfe00 == 0xfc00))
        }
    }
}

/// The host of a URL as Go's `url.Parse(..).Hostname()` gives it (brackets removed, no port);
/// `None` when the URL cannot be parsed. URLs without `scheme://` have no host.
fn hostname(url: &str) -> Option<String> {
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(String::new());
    };
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(inner) = host_port.strip_prefix('[') {
        return inner.split_once(']').map(|(h, _)| h.to_string());
    }
    Some(
        host_port
            .split_once(':')
            .map_or(host_port, |(h, _)| h)
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use crate::jmespath::compile;
    use serde_json::{Value, json};

    fn eval(expr: &str) -> Result<Value, String> {
        compile(expr)
            .map_err(|e| e.to_string())?
            .search(&json!({}))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn normalizes_images() {
        let digest = "sha256:4c1e997385b8fb4ad4d1d3c7e5af7ff3f882e9d07cf16b88e16c7b4b1cd8e9b7";
        let cases = [
            ("nginx", "docker.io/nginx:latest".to_string()),
            ("nginx:1.25", "docker.io/nginx:1.25".to_string()),
            (
                "library/nginx",
                "docker.io/library/nginx:latest".to_string(),
            ),
            ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1".to_string()),
            (
                "localhost:5000/app",
                "localhost:5000/app:latest".to_string(),
            ),
            ("localhost/app", "localhost/app:latest".to_string()),
            (
                &*format!("nginx@{digest}"),
                format!("docker.io/nginx@{digest}"),
            ),
            (
                &*format!("nginx:1.0@{digest}"),
                format!("docker.io/nginx@{digest}"),
            ),
        ];
        for (image, want) in cases {
            assert_eq!(
                eval(&format!("image_normalize('{image}')")),
                Ok(json!(want)),
                "{image}"
            );
        }
        for bad in ["Nginx", "nginx:", "nginx@sha256:12", "a//b", "-x"] {
            assert!(eval(&format!("image_normalize('{bad}')")).is_err(), "{bad}");
        }
    }

    #[test]
    fn classifies_urls() {
        let cases = [
            ("https://example.com/x", true),
            ("http://8.8.8.8:80/", true),
            ("http://127.0.0.1:8080/x", false),
            ("http://10.1.2.3", false),
            ("http://192.168.0.1", false),
            ("http://172.16.0.1", false),
            ("http://localhost:3000", false),
            ("http://[::1]:80/", false),
            ("http://[fd00::1]/", false),
            ("http://[2001:db8::1]/", true),
            ("http://user:pw@10.0.0.1/", false),
        ];
        for (url, want) in cases {
            assert_eq!(
                eval(&format!("is_external_url('{url}')")),
                Ok(json!(want)),
                "{url}"
            );
        }
        assert!(eval("is_external_url('no-scheme')").is_err());
        assert!(eval("is_external_url('http://a b')").is_err());
    }
}
