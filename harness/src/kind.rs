//! KIND clusters driven through the `kind` CLI: the config generated per mode, create, delete,
//! log export. Each cluster gets its own docker network so concurrent runs never share one.

use crate::error::{Error, Result};
use crate::machine::{cache_dir, clusters_dir, docker_has_image};
use crate::host::HostNeeds;
use crate::mode::{IpFamily, Mode};
use crate::process_group::ProcessGroupGuard;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// Default subnets, the ones kind itself uses, per family.
fn pod_subnet(family: IpFamily) -> &'static str {
    match family {
        IpFamily::IPv4 => "10.244.0.0/16",
        IpFamily::IPv6 => "fd00:10:244::/56",
    }
}

fn service_subnet(family: IpFamily) -> &'static str {
    match family {
        IpFamily::IPv4 => "10.96.0.0/16",
        IpFamily::IPv6 => "fd00:10:96::/112",
    }
}

/// What to build: the mode, the node count and whether kind installs its default CNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub mode: Mode,
    /// Workers besides the single control-plane (HA would need a load-balancer image). One by
    /// default: the data-plane fixture puts a server on each node (server-0 on the worker, server-1
    /// on the second worker or else the control-plane node), so pod traffic crosses nodes and stays
    /// on one, and a fault on one node's path fails the endpoints behind it. A third node only adds
    /// its per-node rows, for about 15 CPU-seconds of creation and 2.5 a minute idle (measured).
    pub workers: u8,
    /// false: no CNI is installed, so a vendor installs its own before nodes become Ready.
    pub default_cni: bool,
    pub kube_proxy: KubeProxyMode,
}

/// kube-proxy's mode in a created cluster (kind's `networking.kubeProxyMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeProxyMode {
    #[default]
    Iptables,
    Nftables,
    /// No kube-proxy: for CNIs that replace it.
    None,
}

crate::choice::named_choices!(KubeProxyMode, "kube-proxy mode", {
    Iptables => "iptables",
    Nftables => "nftables",
    None => "none",
});

impl ClusterSpec {
    pub fn new(mode: Mode) -> Self {
        Self { mode, workers: 1, default_cni: true, kube_proxy: KubeProxyMode::Iptables }
    }

    pub fn node_count(&self) -> usize {
        1 + usize::from(self.workers)
    }

    /// The plan's labels of the nodes, in the order the API lists them (kind names them
    /// NAME-control-plane, NAME-worker, NAME-worker2, ...).
    pub fn node_labels(&self) -> Vec<String> {
        let roles: Vec<bool> = (0..self.node_count()).map(|i| i == 0).collect();
        crate::plan::node_labels(&roles)
    }

    /// The node names kind gives cluster `name`.
    pub fn node_names(&self, name: &str) -> Vec<String> {
        self.node_labels().iter().map(|label| format!("{name}-{label}")).collect()
    }

    /// The pod subnets, primary first.
    pub fn pod_subnets(&self) -> Vec<&'static str> {
        self.mode.families().iter().map(|&f| pod_subnet(f)).collect()
    }

    /// The Service subnets, primary first.
    pub fn service_subnets(&self) -> Vec<&'static str> {
        self.mode.families().iter().map(|&f| service_subnet(f)).collect()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KindConfig {
    kind: &'static str,
    api_version: &'static str,
    networking: Networking,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    containerd_config_patches: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kubeadm_config_patches: Vec<String>,
    nodes: Vec<KindNode>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Networking {
    ip_family: &'static str,
    /// IPv4 loopback in every mode: kubectl on the host then reaches the API server through an IPv4
    /// port-forward, which works where Docker cannot publish ports on IPv6.
    api_server_address: &'static str,
    pod_subnet: String,
    service_subnet: String,
    #[serde(rename = "disableDefaultCNI")]
    disable_default_cni: bool,
    kube_proxy_mode: KubeProxyMode,
}

#[derive(Serialize)]
struct KindNode {
    role: &'static str,
}

const RESTRICT_OOM_SCORE_ADJ: &str =
    "[plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n";

/// The cluster DNS addresses of a `mode` cluster, primary first: kubeadm's choice (the tenth
/// address of the primary service subnet) and, on dual-stack clusters, the tenth address of the
/// secondary one, so that pods get a nameserver of each family.
pub fn cluster_dns(mode: Mode) -> Vec<std::net::IpAddr> {
    mode.families()
        .iter()
        .filter_map(|&f| service_subnet(f).parse::<ipnet::IpNet>().ok())
        .map(|net| match net.network() {
            std::net::IpAddr::V4(a) => std::net::IpAddr::V4((u32::from(a) + 10).into()),
            std::net::IpAddr::V6(a) => std::net::IpAddr::V6((u128::from(a) + 10).into()),
        })
        .collect()
}

/// The kubelets' configuration patch: cgroup v1 allowed where the host has it (kubelets 1.35+
/// refuse it otherwise), and both cluster DNS addresses on dual-stack clusters.
fn kubelet_patch(mode: Mode, host: HostNeeds) -> Option<String> {
    let mut lines = Vec::new();
    if host.cgroup_v1 {
        lines.push("failCgroupV1: false".to_string());
    }
    if mode.is_dual() {
        let dns: Vec<String> = cluster_dns(mode).iter().map(|ip| format!("\"{ip}\"")).collect();
        lines.push(format!("clusterDNS: [{}]", dns.join(", ")));
    }
    (!lines.is_empty()).then(|| format!("kind: KubeletConfiguration\n{}\n", lines.join("\n")))
}

/// The KIND cluster config for `spec` on a host with `host` needs, as YAML.
pub fn kind_config(spec: &ClusterSpec, host: HostNeeds) -> String {
    let config = KindConfig {
        kind: "Cluster",
        api_version: "kind.x-k8s.io/v1alpha4",
        networking: Networking {
            ip_family: match spec.mode {
                Mode::Ipv4 => "ipv4",
                Mode::Ipv6 => "ipv6",
                Mode::Dual | Mode::DualIpv6Primary => "dual",
            },
            api_server_address: "127.0.0.1",
            pod_subnet: spec.pod_subnets().join(","),
            service_subnet: spec.service_subnets().join(","),
            disable_default_cni: !spec.default_cni,
            kube_proxy_mode: spec.kube_proxy,
        },
        containerd_config_patches: if host.restrict_oom_score_adj { vec![RESTRICT_OOM_SCORE_ADJ] } else { vec![] },
        kubeadm_config_patches: kubelet_patch(spec.mode, host).into_iter().collect(),
        nodes: std::iter::once(KindNode { role: "control-plane" })
            .chain((0..spec.workers).map(|_| KindNode { role: "worker" }))
            .collect(),
    };
    // Serializing plain strings and lists cannot fail; an empty config would make kind fail loudly.
    serde_saphyr::to_string(&config).unwrap_or_default()
}

/// The `kind` binary and where its clusters keep their files.
#[derive(Debug, Clone)]
pub struct Kind {
    binary: PathBuf,
}

impl Kind {
    /// `$DUALSTACK_KIND`, else the prepared `$DUALSTACK_CACHE/bin/kind`, else `kind` on PATH.
    pub fn locate() -> Result<Self> {
        if let Some(path) = std::env::var_os("DUALSTACK_KIND") {
            return Ok(Self { binary: path.into() });
        }
        let prepared = cache_dir().join("bin/kind");
        if prepared.is_file() {
            return Ok(Self { binary: prepared });
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join("kind"))
            .find(|p| p.is_file());
        on_path
            .map(|binary| Self { binary })
            .ok_or_else(|| Error::Environment("the kind CLI was not found; run `dualstack prepare` first".into()))
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Creates the cluster; on failure exports its logs, removes what was created and says where the
    /// logs are.
    pub async fn create(&self, cluster: &ClusterFiles, config_yaml: &str, node_image: &str) -> Result<()> {
        let config_path = cluster.dir.join("kind-config.yaml");
        write_private(&config_path, config_yaml.as_bytes())?;
        let log_path = cluster.dir.join("kind-create.log");
        let log = std::fs::File::create(&log_path).map_err(Error::io(format!("creating {}", log_path.display())))?;
        let log_err = log.try_clone().map_err(Error::io("cloning log handle"))?;
        let mut child = self
            .command()
            .args(["create", "cluster", "--name", &cluster.name, "--image", node_image, "--retain", "--wait", "0s"])
            .arg("--config")
            .arg(&config_path)
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .env("KIND_EXPERIMENTAL_DOCKER_NETWORK", &cluster.network)
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(Error::io(format!("running {}", self.binary.display())))?;
        // Interrupted, kind stops at once; a node's `docker run` already under way finishes, so
        // that the cleanup's `kind delete` finds the node.
        let group = ProcessGroupGuard::of(&child, |argv| argv.get(1).is_some_and(|a| a == "run"));
        let status = child.wait().await.map_err(Error::io(format!("waiting for {}", self.binary.display())))?;
        group.ended();
        if status.success() {
            return Ok(());
        }
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        let cause = output
            .lines()
            .rev()
            .find(|l| l.starts_with("ERROR") || l.contains("failed") || l.contains("error"))
            .unwrap_or("kind create cluster failed")
            .trim()
            .to_string();
        let exported = cluster.dir.join("kind-logs");
        self.export_logs(cluster, &exported).await;
        self.delete(cluster).await?;
        Err(Error::ClusterCreate { name: cluster.name.clone(), cause, kind_log: log_path, exported_logs: exported })
    }

    /// `kind load docker-image IMAGE` into every node of the cluster.
    pub async fn load_image(&self, cluster: &ClusterFiles, image: &str) -> Result<()> {
        if !docker_has_image(image).await {
            return Err(Error::Environment(format!("image {image} is not built on this machine; run `dualstack prepare`")));
        }
        let out = self
            .command()
            .args(["load", "docker-image", image, "--name", &cluster.name])
            .output()
            .await
            .map_err(Error::io(format!("running {}", self.binary.display())))?;
        command_result(&format!("kind load docker-image {image} --name {}", cluster.name), &out)
    }

    /// `kind load image-archive FILE`: the images of a `docker save` tarball, into every node.
    pub async fn load_archive(&self, cluster: &ClusterFiles, archive: &Path) -> Result<()> {
        let out = self
            .command()
            .args(["load", "image-archive"])
            .arg(archive)
            .args(["--name", &cluster.name])
            .output()
            .await
            .map_err(Error::io(format!("running {}", self.binary.display())))?;
        command_result(&format!("kind load image-archive {} --name {}", archive.display(), cluster.name), &out)
    }

    /// The names of the KIND clusters on this machine.
    pub async fn clusters(&self) -> Result<Vec<String>> {
        let out = self.command().args(["get", "clusters"]).output().await.map_err(Error::io(format!("running {}", self.binary.display())))?;
        command_result("kind get clusters", &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    }

    /// `kind export logs`; best effort, since it runs when something already went wrong.
    pub async fn export_logs(&self, cluster: &ClusterFiles, dir: &Path) {
        let _ = self
            .command()
            .args(["export", "logs", "--name", &cluster.name])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// Deletes the cluster's nodes and its docker network. Deleting what does not exist is fine.
    pub async fn delete(&self, cluster: &ClusterFiles) -> Result<()> {
        let out = self
            .command()
            .args(["delete", "cluster", "--name", &cluster.name])
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .output()
            .await
            .map_err(Error::io(format!("running {}", self.binary.display())))?;
        command_result(&format!("kind delete cluster --name {}", cluster.name), &out)?;
        remove_docker_network(&cluster.network).await
    }
}

async fn remove_docker_network(network: &str) -> Result<()> {
    let exists = Command::new("docker")
        .args(["network", "inspect", network])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !exists {
        return Ok(());
    }
    let out = Command::new("docker")
        .args(["network", "rm", network])
        .output()
        .await
        .map_err(Error::io("running docker network rm"))?;
    command_result(&format!("docker network rm {network}"), &out)
}

/// A finished command's outcome: its stderr names the cause when it failed.
fn command_result(command: &str, out: &std::process::Output) -> Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command { command: command.into(), output: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// Where a cluster's files live: `$DUALSTACK_STATE_DIR/clusters/NAME/` (mode 0700), holding its
/// kubeconfig (0600), the generated kind config, kind's output and exported logs.
#[derive(Debug, Clone)]
pub struct ClusterFiles {
    pub name: String,
    pub network: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ClusterFiles {
    pub fn new(name: &str) -> Result<Self> {
        validate_cluster_name(name)?;
        let dir = clusters_dir().join(name);
        Ok(Self { name: name.into(), network: format!("{name}-net"), kubeconfig: dir.join("kubeconfig"), dir })
    }

    pub fn create_dir(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(Error::io(format!("creating {}", self.dir.display())))
    }

    pub fn remove_dir(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Io { context: format!("removing {}", self.dir.display()), source: e })
            }
            _ => Ok(()),
        }
    }
}

/// A unique cluster name, so two runs on one machine never collide: `dualstack-MODE-XXXXXX`.
pub fn unique_cluster_name(mode: Mode) -> String {
    let suffix: u32 = rand::random::<u32>() & 0xff_ffff;
    format!("dualstack-{}-{suffix:06x}", mode.name().replace("-ipv6-primary", "6"))
}

/// kind names become docker container and network names and DNS labels.
pub fn validate_cluster_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid cluster name '{name}': use 1-40 lower-case letters, digits and '-', not starting or ending with '-'"
        )))
    }
}

fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    file.write_all(content).map_err(Error::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const THIS_HOST: HostNeeds = HostNeeds { restrict_oom_score_adj: true, cgroup_v1: true };

    #[rstest]
    #[case::ipv4(Mode::Ipv4)]
    #[case::ipv6(Mode::Ipv6)]
    #[case::dual(Mode::Dual)]
    #[case::dual_ipv6_primary(Mode::DualIpv6Primary)]
    fn kind_config_per_mode(#[case] mode: Mode) {
        insta::assert_snapshot!(format!("kind_config_{}", mode.name()), kind_config(&ClusterSpec::new(mode), THIS_HOST));
    }

    #[test]
    fn kind_config_without_default_cni_on_a_plain_host() {
        let spec = ClusterSpec { mode: Mode::Dual, workers: 2, default_cni: false, kube_proxy: KubeProxyMode::Nftables };
        let plain = HostNeeds { restrict_oom_score_adj: false, cgroup_v1: false };
        insta::assert_snapshot!(kind_config(&spec, plain));
    }

    #[rstest]
    #[case("dualstack-dual-a1b2c3", true)]
    #[case("a", true)]
    #[case("", false)]
    #[case("Upper", false)]
    #[case("-lead", false)]
    #[case("trail-", false)]
    #[case("has_underscore", false)]
    #[case("x123456789012345678901234567890123456789012", false)]
    fn cluster_names(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(validate_cluster_name(name).is_ok(), valid);
    }

    #[test]
    fn unique_names_are_valid_and_differ() {
        let (a, b) = (unique_cluster_name(Mode::DualIpv6Primary), unique_cluster_name(Mode::DualIpv6Primary));
        assert!(validate_cluster_name(&a).is_ok(), "{a}");
        assert_ne!(a, b);
    }
}
