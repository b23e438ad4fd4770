//! What this machine holds for dualstack, and where: pinned versions and image names (shared with
//! the offline build through fixtures/offline/versions.env), the cache and state directories, and
//! the Docker engine. Defined here once; `dualstack prepare` hands the cache directory to the build.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::Command;

/// Pinned toolchain versions, shared with the offline build scripts (one source of truth).
const VERSIONS_ENV: &str = include_str!("../../fixtures/offline/versions.env");

/// Value of a `KEY=value` line of fixtures/offline/versions.env.
pub fn pinned_version(key: &str) -> Option<&'static str> {
    VERSIONS_ENV.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The Kubernetes version dualstack's node images carry, e.g. `v1.36.3`.
pub fn kubernetes_version() -> &'static str {
    pinned_version("K8S_VERSION").unwrap_or("unknown")
}

fn pinned(key: &str) -> &'static str {
    pinned_version(key).unwrap_or("unknown")
}

/// The node image `dualstack prepare` builds from Debian packages and the Go module proxy.
pub fn offline_node_image() -> String {
    format!("{}:{}", pinned("NODE_IMAGE_REPO"), kubernetes_version())
}

/// The upstream node image of the same Kubernetes version, for machines that can pull.
pub fn upstream_node_image() -> String {
    format!("{}:{}", pinned("UPSTREAM_NODE_IMAGE_REPO"), kubernetes_version())
}

/// The probe image `dualstack prepare` builds (and preloads into the node image it builds).
pub fn probe_image() -> String {
    pinned("PROBE_IMAGE").to_string()
}

/// MetalLB's image `dualstack prepare` builds (and preloads into the node image it builds).
pub fn metallb_image() -> &'static str {
    pinned("METALLB_IMAGE")
}

/// kube-network-policies' image `dualstack prepare` builds (and preloads into the node image it
/// builds).
pub fn knp_image() -> &'static str {
    pinned("KNP_IMAGE")
}

/// The machine-local cache of `dualstack prepare` (binaries, images, logs): `$DUALSTACK_CACHE`, else
/// `/var/cache/dualstack` for root and `~/.cache/dualstack` for anyone else. The only place the rule
/// lives: `dualstack prepare` hands it to prepare.sh as `DUALSTACK_CACHE`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DUALSTACK_CACHE") {
        return PathBuf::from(dir);
    }
    if effective_uid() == 0 {
        return PathBuf::from("/var/cache/dualstack");
    }
    let user_cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    user_cache.join("dualstack")
}

/// Where the clusters' directories are.
/// `kubectl`: the prepared one, else PATH.
pub fn kubectl() -> PathBuf {
    let prepared = cache_dir().join("bin/kubectl");
    if prepared.is_file() { prepared } else { PathBuf::from("kubectl") }
}

pub fn clusters_dir() -> PathBuf {
    state_dir().join("clusters")
}

/// Where logs of failed runs' clusters are exported; they outlive the clusters.
pub fn logs_dir() -> PathBuf {
    state_dir().join("logs")
}

/// `$DUALSTACK_STATE_DIR`, else `/tmp/dualstack` for root and `/tmp/dualstack-UID` for anyone else
/// (each user's directory is 0700, so users must not share one).
fn state_dir() -> PathBuf {
    std::env::var_os("DUALSTACK_STATE_DIR").map_or_else(
        || match effective_uid() {
            0 => std::env::temp_dir().join("dualstack"),
            uid => std::env::temp_dir().join(format!("dualstack-{uid}")),
        },
        PathBuf::from,
    )
}

/// The process's effective user id: /proc/self belongs to it (no libc call needed). `u32::MAX`
/// (nobody) if /proc is unreadable.
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| std::os::unix::fs::MetadataExt::uid(&m))
}

/// Whether docker has `image` locally.
pub async fn docker_has_image(image: &str) -> bool {
    docker_image_id(image).await.is_some()
}

/// The image's ID (`sha256:...`) in this machine's Docker engine, if it has the image.
pub async fn docker_image_id(image: &str) -> Option<String> {
    let out = Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image]).stderr(Stdio::null()).output().await.ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !id.is_empty()).then_some(id)
}

/// Fails with an environment error when no Docker engine answers.
pub async fn require_docker() -> Result<()> {
    let out = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().await;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(Error::Environment(format!(
            "no Docker engine answers ({}); run `dualstack prepare`",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("docker info failed").trim()
        ))),
        Err(e) => Err(Error::Environment(format!("the docker CLI cannot be run ({e}); run `dualstack prepare`"))),
    }
}

/// Runs `command` with `input` on its stdin; its output (stdout and stderr captured).
pub async fn output_with_input(command: &mut Command, input: &[u8]) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncWriteExt;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).await?;
    }
    child.wait_with_output().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_image_names_are_pinned() {
        assert!(kubernetes_version().starts_with("v1."), "{}", kubernetes_version());
        for image in [offline_node_image(), upstream_node_image(), probe_image()] {
            assert!(!image.contains("unknown") && image.contains(':'), "{image}");
        }
    }
}
