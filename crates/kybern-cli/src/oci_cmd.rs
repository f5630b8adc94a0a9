//! `kybern oci push` and `kybern oci pull`: Kyverno policies stored as OCI artifacts in the
//! layout `kyverno oci` uses, so either tool reads what the other pushed: an OCI image manifest
//! whose config has media type `application/vnd.cncf.kyverno.config.v1+json` and one
//! `application/vnd.cncf.kyverno.policy.layer.v1+yaml` layer per ClusterPolicy/Policy, annotated
//! with its kind, name and apiVersion (`io.kyverno.image.*`). Credentials come from the docker
//! config; plain HTTP only for loopback registries and `--insecure-registry` hosts.

use crate::files::{Document, read_paths};
use anyhow::{Context, Result, bail};
use kybern_engine::policy::compile_policy;
use kybern_engine::yaml::{parse_all, to_yaml_string};
use kybern_registry::credentials::Credentials;
use kybern_registry::{Layer, Registry, RegistryConfig, reference};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Media type of the artifact's config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.kyverno.config.v1+json";
/// Media type of one policy layer (the policy as YAML).
pub const POLICY_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.kyverno.policy.layer.v1+yaml";
/// Media types of Kyverno's later bundle format (a tar+gzip content layer), told apart so that
/// pulling one says why it is not read.
const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.cncf.kyverno.bundle.";
const ANNOTATION_KIND: &str = "io.kyverno.image.kind";
const ANNOTATION_NAME: &str = "io.kyverno.image.name";
const ANNOTATION_API_VERSION: &str = "io.kyverno.image.apiVersion";

/// Flags of `kybern oci`.
#[derive(Debug, clap::Args)]
pub struct OciArgs {
    #[command(subcommand)]
    pub what: OciCommand,
}

/// What `kybern oci` does.
#[derive(Debug, clap::Subcommand)]
pub enum OciCommand {
    /// Push the ClusterPolicies and Policies of a file or directory as one OCI artifact.
    Push(PushArgs),
    /// Pull the policies of an OCI artifact into a directory, one `<name>.yaml` each.
    Pull(PullArgs),
}

/// Registry access of `kybern oci`.
#[derive(Debug, clap::Args)]
pub struct OciRegistryArgs {
    /// Image reference to push to or pull from (`registry/repository:tag`).
    #[arg(short = 'i', long = "image", required = true)]
    pub image: String,
    /// A registry (HOST[:PORT]) reached over plain HTTP; loopback registries always are.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST[:PORT]",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
    /// A PEM file of CA certificates trusted for registries, besides the public roots.
    #[arg(long = "registry-ca-file", value_name = "FILE", value_delimiter = ',')]
    pub registry_ca_file: Vec<PathBuf>,
    /// Seconds one registry call may take.
    #[arg(
        long = "registry-timeout",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub registry_timeout: u64,
}

/// Flags of `kybern oci push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Policy file or directory.
    pub path: PathBuf,
    #[command(flatten)]
    pub registry: OciRegistryArgs,
}

/// Flags of `kybern oci pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Directory the policies are written to (created when missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub registry: OciRegistryArgs,
}

impl OciRegistryArgs {
    fn client(&self) -> Result<Registry> {
        let mut ca_certificates = Vec::new();
        for path in &self.registry_ca_file {
            ca_certificates.push(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            );
        }
        Ok(Registry::new(RegistryConfig {
            insecure: self.insecure_registry.clone(),
            credentials: Credentials::from_environment()?,
            ca_certificates,
            timeout: Duration::from_secs(self.registry_timeout.max(1)),
            ..RegistryConfig::default()
        })?)
    }
}

/// Runs `kybern oci`.
pub fn execute(args: &OciArgs) -> Result<i32> {
    match &args.what {
        OciCommand::Push(a) => push(a),
        OciCommand::Pull(a) => pull(a),
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn is_kyverno_policy(v: &Value) -> bool {
    text(v, "/apiVersion").starts_with("kyverno.io/")
        && matches!(text(v, "/kind"), "ClusterPolicy" | "Policy")
}

fn push(a: &PushArgs) -> Result<i32> {
    let (docs, issues) = read_paths(std::slice::from_ref(&a.path));
    if let Some(issue) = issues.first() {
        bail!("{issue}");
    }
    let policies: Vec<&Document> = docs
        .iter()
        .filter(|d| is_kyverno_policy(&d.value))
        .collect();
    if policies.is_empty() {
        bail!("no ClusterPolicy or Policy found in {}", a.path.display());
    }
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for d in &policies {
        // A policy the engine rejects is not published.
        compile_policy(&d.value)
            .map_err(|e| anyhow::anyhow!("{} (document {}): {e}", d.file.display(), d.index + 1))?;
        let name = text(&d.value, "/metadata/name");
        let kind = text(&d.value, "/kind");
        eprintln!(
            "Adding {} [{name}]",
            if kind == "Policy" {
                "policy"
            } else {
                "cluster policy"
            }
        );
        let data = to_yaml_string(&d.value).into_bytes();
        diff_ids.push(Value::from(sha256_digest(&data)));
        layers.push(Layer {
            data,
            media_type: POLICY_LAYER_MEDIA_TYPE.into(),
            annotations: BTreeMap::from([
                (ANNOTATION_KIND.to_string(), kind.to_string()),
                (ANNOTATION_NAME.to_string(), name.to_string()),
                (
                    ANNOTATION_API_VERSION.to_string(),
                    text(&d.value, "/apiVersion").to_string(),
                ),
            ]),
        });
    }
    // The image config an empty image gets once layers are appended (uncompressed layers: the
    // diff ids are the layer digests).
    let config = serde_json::json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let registry = a.registry.client()?;
    let target = reference::parse(&a.registry.image).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("Uploading [{}]...", a.registry.image);
    let digest = registry.push_artifact(
        &target,
        &layers,
        config.to_string().into_bytes(),
        CONFIG_MEDIA_TYPE,
    )?;
    println!(
        "{}@{digest}",
        a.registry.image.split('@').next().unwrap_or_default()
    );
    Ok(0)
}

fn sha256_digest(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A policy name usable as a file name inside the target directory.
fn safe_file_name(name: &str) -> Option<String> {
    let file = format!("{name}.yaml");
    let mut parts = Path::new(&file).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) if !name.is_empty() => Some(file),
        _ => None,
    }
}

fn pull(a: &PullArgs) -> Result<i32> {
    let registry = a.registry.client()?;
    let source = reference::parse(&a.registry.image).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "Downloading policies from an image [{}]...",
        a.registry.image
    );
    let (manifest, _) = registry.manifest(&source)?;
    let manifest: Value = serde_json::from_slice(&manifest)
        .with_context(|| format!("the manifest of {} is not JSON", a.registry.image))?;
    let layers = manifest
        .get("layers")
        .and_then(Value::as_array)
        .with_context(|| format!("{} is not an image manifest (no layers)", a.registry.image))?;
    if a.dir.exists() && !a.dir.is_dir() {
        bail!("{} must be a directory", a.dir.display());
    }
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let mut written = 0;
    for layer in layers {
        if text(layer, "/mediaType").starts_with(BUNDLE_MEDIA_TYPE_PREFIX) {
            bail!(
                "{} is in Kyverno's newer bundle format ({}), which kybern does not read yet",
                a.registry.image,
                text(layer, "/mediaType")
            );
        }
        if text(layer, "/mediaType") != POLICY_LAYER_MEDIA_TYPE {
            continue;
        }
        let digest = text(layer, "/digest");
        let blob = registry.blob(&source, digest)?;
        let yaml =
            String::from_utf8(blob).with_context(|| format!("layer {digest} is not UTF-8"))?;
        let docs = parse_all(&yaml).map_err(|e| anyhow::anyhow!("layer {digest}: {e}"))?;
        for policy in docs.iter().filter(|d| is_kyverno_policy(d)) {
            let name = text(policy, "/metadata/name");
            let file = safe_file_name(name).with_context(|| {
                format!("layer {digest}: policy name {name:?} is not a file name")
            })?;
            let path = a.dir.join(file);
            eprintln!("Saving policy into disk [{}]...", path.display());
            std::fs::write(&path, to_yaml_string(policy))
                .with_context(|| format!("cannot write {}", path.display()))?;
            written += 1;
        }
    }
    if written == 0 {
        bail!("{} holds no Kyverno policy layer", a.registry.image);
    }
    eprintln!("Done.");
    Ok(0)
}
