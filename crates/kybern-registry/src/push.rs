//! Writing an artifact to a registry: its layers, its config and one OCI image manifest naming
//! them, as `kybern oci push` stores policies.

use crate::{Registry, RegistryError};
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::{Reference, RegistryOperation};
use std::collections::BTreeMap;

/// One layer of an artifact, with the annotations its manifest descriptor carries.
#[derive(Debug, Clone)]
pub struct Layer {
    pub data: Vec<u8>,
    pub media_type: String,
    pub annotations: BTreeMap<String, String>,
}

impl Registry {
    /// Pushes the layers and config, then an OCI image manifest (`mediaType` set) naming them,
    /// under `reference`; returns the digest the registry serves for the manifest.
    pub fn push_artifact(
        &self,
        reference: &Reference,
        layers: &[Layer],
        config: Vec<u8>,
        config_media_type: &str,
    ) -> Result<String, RegistryError> {
        let client = self.client(reference);
        let auth = self.auth(reference);
        let what = format!("push {reference}");
        let layers: Vec<ImageLayer> = layers
            .iter()
            .map(|l| {
                let annotations = (!l.annotations.is_empty()).then(|| l.annotations.clone());
                ImageLayer::new(l.data.clone(), l.media_type.clone(), annotations)
            })
            .collect();
        let config = Config::new(config, config_media_type.to_string(), None);
        let mut manifest = OciImageManifest::build(&layers, &config, None);
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
        self.run(&what, async {
            client
                .auth(reference, &auth, RegistryOperation::Push)
                .await
                .map_err(|e| RegistryError::Failed(format!("{what}: {e}")))?;
            client
                .push(reference, &layers, config, &auth, Some(manifest))
                .await
                .map_err(|e| RegistryError::Failed(format!("{what}: {e}")))
        })?;
        let (_, digest) = self.manifest(reference)?;
        Ok(digest)
    }
}
