//! kybern-engine: a pure, deterministic Kyverno-compatible policy engine.
//!
//! Policies and resources come in as bytes or JSON values; rule results, patches and generated
//! objects come out as data. This crate owns the policy model, matching, variables and JMESPath,
//! the pattern language, validation, auto-generated rules, Pod Security Standards and exceptions.
//! It must not touch the file system, the network, a clock-driven runtime or global loggers:
//! everything from outside the request comes through [`context::ContextProvider`].
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod autogen;
pub mod cel;
pub mod conditions;
pub mod context;
pub mod context_loader;
pub mod convert;
pub mod duration;
pub mod engine;
pub mod exceptions;
pub mod explain;
pub mod generation;
pub mod image_verification;
pub mod images;
pub mod jmespath;
pub mod json_context;
pub mod json_patch;
pub mod lint;
pub mod matching;
pub mod mutation;
pub mod objects;
pub mod pattern;
pub mod pod_security;
pub mod policy;
pub mod preconditions;
pub mod quantity;
pub mod rbac;
pub mod report;
pub mod request;
pub mod response;
pub mod signed_manifests;
pub mod strategic_merge;
pub mod validation;
pub mod variables;
pub mod wildcard;
pub mod yaml;
