//! Image registries for kybern: reading images over the OCI distribution API (tags resolved to
//! digests, manifests, blobs, credentials from a docker config) and verifying cosign signatures
//! with public keys, certificates and keyless identities under given roots. The engine never reaches a registry itself: a context provider hands its
//! `verify_image_signature`/`image_digest` questions to [`Registry`].
//!
//! Plain HTTP is used only for loopback registries and for hosts listed as insecure; everything
//! else is HTTPS. Every call is bounded in time and every blob in size. This crate must not
//! depend on the CLI, the webhook or the cluster crates.

pub mod certs;
mod client;
pub mod cosign;
pub mod credentials;
pub mod keys;
mod push;
pub mod reference;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{Registry, RegistryConfig, RegistryError};
pub use push::Layer;
