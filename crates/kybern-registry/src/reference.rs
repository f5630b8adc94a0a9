//! Image references: parsing them into registry, repository, tag and digest, and deciding which
//! registries may be reached over plain HTTP.

use oci_client::Reference;
use std::net::IpAddr;

/// An image reference could not be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("invalid image reference {image:?}: {reason}")]
pub struct ReferenceError {
    pub image: String,
    pub reason: String,
}

/// Parses `[registry/]repository[:tag][@digest]` (short names are Docker Hub images).
pub fn parse(image: &str) -> Result<Reference, ReferenceError> {
    image.parse::<Reference>().map_err(|e| ReferenceError {
        image: image.to_string(),
        reason: e.to_string(),
    })
}

/// The host of `host[:port]`, without brackets around an IPv6 address.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        // A single colon separates a port; more than one is a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => registry,
    }
}

/// True for registries on this machine (`localhost`, `*.localhost`, 127.0.0.0/8, `::1`), which
/// Docker and go-containerregistry reach over plain HTTP by default.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for r in [
            "localhost",
            "localhost:5000",
            "registry.localhost:80",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "ghcr.io",
            "10.0.0.1:5000",
            "example.com:5000",
            "[fe80::1]:80",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn references_are_parsed_with_docker_hub_defaults() {
        let r = parse("nginx:1.27").unwrap();
        assert_eq!(r.resolve_registry(), "index.docker.io");
        assert_eq!(r.repository(), "library/nginx");
        assert_eq!(r.tag(), Some("1.27"));
        let r = parse("127.0.0.1:5000/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert!(r.digest().is_some());
        assert!(parse("Not A Reference").is_err());
    }
}
