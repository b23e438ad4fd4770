//! `dualstack prepare`: runs the offline build (fixtures/offline/prepare.sh) with the cache
//! directory this crate decides (`machine::cache_dir`), and tells whether a machine is prepared.

use crate::error::{Error, Result};
use std::path::Path;

/// Where the node image comes from; prepare.sh takes it as `DUALSTACK_NODE_SOURCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSource {
    /// Keep a node image built here before, else pull kindest/node where a registry answers, else build.
    Auto,
    /// Pull; fail when the pull fails.
    Pull,
    /// Build offline; never pull.
    Build,
}

impl NodeSource {
    fn as_env(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Pull => "pull",
            Self::Build => "build",
        }
    }
}

/// Runs `FIXTURES/offline/prepare.sh`; `Ok(false)` when a step failed (the script has said which,
/// and where its log is).
pub async fn prepare(node_source: NodeSource, fixtures: &Path) -> Result<bool> {
    let script = fixtures.join("offline/prepare.sh");
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .env("DUALSTACK_CACHE", crate::machine::cache_dir())
        .env("DUALSTACK_NODE_SOURCE", node_source.as_env())
        .status()
        .await
        .map_err(Error::io(format!("running {}", script.display())))?;
    Ok(status.success())
}

/// Docker answers, kind is there, the probe image exists and so does a node image (built or pulled).
pub async fn machine_is_prepared() -> bool {
    crate::machine::require_docker().await.is_ok()
        && crate::kind::Kind::locate().is_ok()
        && crate::cluster::prepared_node_image().await.is_some()
        && crate::machine::docker_has_image(&crate::machine::probe_image()).await
}
