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

/// What a KIND node takes on Docker's disk: its /var volume holds containerd's unpacked images
/// (the node image's preloaded ones, ours loaded after) and the control plane's etcd and logs.
/// Measured after a dual run: 0.86 GB on the control-plane node, 0.44 GB on the worker (the
/// images' blobs stay in the node image, outside /var); rounded up.
const DISK_PER_NODE: u64 = 1_000_000_000;

/// Bytes promised to clusters this process is creating right now: their nodes fill the disk only
/// as they start, so two creations at once would both see the same free space.
static DISK_PROMISED: std::sync::Mutex<u64> = std::sync::Mutex::new(0);

/// Space on Docker's disk promised to one cluster until its nodes are up (and using it).
pub struct DiskPromise(u64);

impl Drop for DiskPromise {
    fn drop(&mut self) {
        let mut promised = DISK_PROMISED.lock().unwrap_or_else(|e| e.into_inner());
        *promised = promised.saturating_sub(self.0);
    }
}

/// Fails with an environment error, before anything is created, when Docker's disk cannot hold
/// `nodes` more KIND nodes beside what clusters being created in this process were promised. (A
/// full disk otherwise shows up minutes later as a node that never gets Ready: containerd cannot
/// unpack the CNI's image.) An engine whose root directory is not on this machine is not checked.
pub async fn promise_disk_for(cluster: &str, nodes: usize) -> Result<DiskPromise> {
    let root = Command::new("docker").args(["info", "--format", "{{.DockerRootDir}}"]).output().await;
    let root = match root {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        _ => return Ok(DiskPromise(0)),
    };
    let Some(free) = free_bytes(&root).await else { return Ok(DiskPromise(0)) };
    let mut promised = DISK_PROMISED.lock().unwrap_or_else(|e| e.into_inner());
    let needed = DISK_PER_NODE * nodes as u64;
    if let Some(shortfall) = disk_shortfall(cluster, nodes, &root, free, *promised) {
        return Err(Error::Environment(shortfall));
    }
    *promised += needed;
    Ok(DiskPromise(needed))
}

/// Free bytes of the filesystem holding `path` (`df`), if it is on this machine.
async fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().await.ok()?;
    String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse().ok()
}

/// Why `nodes` more nodes do not fit in `free` bytes of which `promised` are already promised.
fn disk_shortfall(cluster: &str, nodes: usize, root: &std::path::Path, free: u64, promised: u64) -> Option<String> {
    let needed = DISK_PER_NODE * nodes as u64;
    let available = free.saturating_sub(promised);
    let gb = |bytes: u64| format!("{:.1} GB", bytes as f64 / 1e9);
    (available < needed).then(|| {
        let beside = if promised > 0 { format!(", {} of it promised to clusters being created beside it", gb(promised)) } else { String::new() };
        format!(
            "cluster {cluster} needs about {} free on Docker's disk ({} for each of its {nodes} nodes), but {} holds {} free{beside}; \
             free some space first (old clusters: `dualstack cluster down --name NAME`; unused images: `docker image prune`)",
            gb(needed),
            gb(DISK_PER_NODE),
            root.display(),
            gb(free),
        )
    })
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

    #[rstest::rstest]
    #[case::fits(3, 10_000_000_000, 0, None)]
    #[case::fits_exactly(3, 3_000_000_000, 0, None)]
    #[case::too_small(3, 2_500_000_000, 0, Some("holds 2.5 GB free; free some space first"))]
    #[case::taken_by_a_creation_beside_it(3, 5_000_000_000, 3_000_000_000, Some("holds 5.0 GB free, 3.0 GB of it promised to clusters being created beside it;"))]
    fn a_cluster_is_refused_when_its_nodes_do_not_fit(#[case] nodes: usize, #[case] free: u64, #[case] promised: u64, #[case] refused_with: Option<&str>) {
        let got = disk_shortfall("c1", nodes, std::path::Path::new("/var/lib/docker"), free, promised);
        match refused_with {
            None => assert_eq!(got, None),
            Some(text) => {
                let got = got.unwrap_or_else(|| panic!("not refused"));
                assert!(got.starts_with("cluster c1 needs about 3.0 GB free on Docker's disk (1.0 GB for each of its 3 nodes), but /var/lib/docker holds "), "{got}");
                assert!(got.contains(text), "{got}");
            }
        }
    }

    #[test]
    fn versions_and_image_names_are_pinned() {
        assert!(kubernetes_version().starts_with("v1."), "{}", kubernetes_version());
        for image in [offline_node_image(), upstream_node_image(), probe_image()] {
            assert!(!image.contains("unknown") && image.contains(':'), "{image}");
        }
    }
}
