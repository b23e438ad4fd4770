//! `cluster convert`: a KIND cluster the harness created, moved in place between single-stack and
//! dual-stack, the way an operator reconfigures a kubeadm cluster: the API server's and the
//! controller-manager's ranges, each kubelet's node IPs and cluster DNS, the Node objects' podCIDRs,
//! kube-proxy's cluster CIDRs, cluster DNS itself and the load balancer's pool.
//!
//! Kubernetes never changes a Node's `spec.podCIDRs` once set (`ValidateNodeUpdate`: "node updates
//! may not change podCIDR except from \"\" to valid"), so each Node object is recreated, one at a
//! time, with the podCIDRs of the new mode: the range it had for the family it keeps (its running
//! pods' addresses stay inside it) and, on an upgrade, the same-numbered range of the added family.
//! The kubelet is restarted at once (it never re-registers by itself), well inside the pod
//! collector's 40 s quarantine for pods of a missing node, so no pod is lost. The recreated object
//! keeps the old one's labels, annotations, non-lifecycle taints and status (the kubelet admits its
//! static pods against that status when it restarts).
//!
//! Only the second family is ever added or removed: the primary family cannot change (every
//! Service's first clusterIP and the `kubernetes` Service address are fixed once allocated).

use crate::error::{ConversionFailure, Error, Result};
use crate::kind::{self, ClusterFiles};
use crate::mode::{IpFamily, Mode};
use crate::wait::poll;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::time::{Duration, Instant};

/// A conversion the harness performs: from a mode to the mode with the second family added or
/// removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    pub from: Mode,
    pub to: Mode,
}

impl Conversion {
    /// The conversion from `from` to `to`, or why Kubernetes (or this tool) cannot do it.
    pub fn new(from: Mode, to: Mode) -> std::result::Result<Self, String> {
        if from == to {
            return Err(format!("the cluster is already {to}"));
        }
        if from.primary() != to.primary() {
            return Err(format!(
                "{from} -> {to} would change the primary family from {} to {}: Kubernetes keeps every Service's first \
                 clusterIP and the kubernetes Service's address, so only the second family can be added or removed \
                 (possible from {from}: {})",
                from.primary(),
                to.primary(),
                Self::targets(from).iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Self { from, to })
    }

    /// The conversion of a `from` cluster in a run: the second family added, or removed.
    pub fn of(from: Mode) -> Self {
        let to = match from {
            Mode::Ipv4 => Mode::Dual,
            Mode::Ipv6 => Mode::DualIpv6Primary,
            Mode::Dual => Mode::Ipv4,
            Mode::DualIpv6Primary => Mode::Ipv6,
        };
        Self { from, to }
    }

    /// The modes a `from` cluster can be converted to.
    pub fn targets(from: Mode) -> Vec<Mode> {
        Mode::ALL.into_iter().filter(|&to| to != from && to.primary() == from.primary()).collect()
    }

    /// The dual-stack side of the conversion.
    pub fn dual(self) -> Mode {
        if self.to.is_dual() { self.to } else { self.from }
    }

    /// The family added (upgrade) or removed (downgrade).
    pub fn secondary(self) -> IpFamily {
        self.dual().families()[1]
    }

    pub fn upgrades(self) -> bool {
        self.to.is_dual()
    }
}

impl std::fmt::Display for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// A cluster the harness created and may convert: its files, and whether it has MetalLB (whose
/// pool follows the families).
#[derive(Clone, Copy)]
pub struct Convertible<'a> {
    pub files: &'a ClusterFiles,
    pub load_balancer: bool,
}

/// How long the conversion and each step took (the API server's and the controller-manager's
/// overlap), for the progress line and the reports.
#[derive(Debug, Default)]
pub struct Timings {
    pub total: Duration,
    pub steps: Vec<(String, Duration)>,
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total;
        let steps: Vec<String> = self.steps.iter().map(|(step, d)| format!("{step} {:.1}s", d.as_secs_f64())).collect();
        write!(f, "{:.1}s ({})", total.as_secs_f64(), steps.join(", "))
    }
}

/// The bound on each step's wait.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Converts the KIND cluster of `files` as `conversion` says; each step waits until its component
/// is healthy again. A failed step is an `Error::Conversion` naming the step, the cause and the
/// component's last log lines; nothing is undone (the cluster is left as it is, for a look).
pub async fn convert(client: &Client, files: &ClusterFiles, conversion: Conversion, load_balancer: bool) -> Result<Timings> {
    let nodes: Vec<String> = {
        let mut names: Vec<String> = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items.into_iter().filter_map(|n| n.metadata.name).collect();
        names.sort();
        names
    };
    let control_plane = nodes.iter().find(|n| n.ends_with("-control-plane")).cloned().ok_or_else(|| {
        Error::Environment(format!("cluster {} has no node named NAME-control-plane: only KIND clusters made by dualstack can be converted", files.name))
    })?;
    let step = |name: &str| Step { cluster: files.name.clone(), conversion, name: name.to_string(), node: control_plane.clone(), kubeconfig: files.kubeconfig.display().to_string() };
    let started = Instant::now();
    let mut timings = Timings::default();
    let ranges = Ranges::of(conversion);
    // The API server first; then the controller-manager (new ranges) and the scheduler, each
    // restarted afresh against the steady API server, at once. Upgrade: before the nodes, which
    // then get podCIDRs of a family the controller-manager knows. Downgrade: after them, since a
    // controller-manager whose --cluster-cidr lacks a family some node still has fails to start.
    let control_plane_step = async || {
        let apiserver = timed(step("kube-apiserver"), reconfigure_apiserver(client, &control_plane, &ranges, conversion.to)).await?;
        let controller_manager_flags = |manifest: &str| {
            let manifest = set_flag(manifest, "cluster-cidr", &ranges.pods)?;
            labelled_converted_to(&set_flag(&manifest, "service-cluster-ip-range", &ranges.services)?, conversion.to)
        };
        let (controller_manager, scheduler) = tokio::join!(
            timed(step("kube-controller-manager"), restart_leader(client, &control_plane, "kube-controller-manager", controller_manager_flags)),
            timed(step("kube-scheduler"), restart_leader(client, &control_plane, "kube-scheduler", |m: &str| labelled_converted_to(m, conversion.to))),
        );
        Ok::<_, Error>(vec![apiserver, controller_manager?, scheduler?])
    };
    if conversion.upgrades() {
        timings.steps.extend(control_plane_step().await?);
    }
    for node in &nodes {
        let node_step = Step { node: node.clone(), ..step(&format!("node {node}")) };
        timings.steps.push(timed(node_step, recreate_node(client, node, conversion)).await?);
    }
    if !conversion.upgrades() {
        timings.steps.extend(control_plane_step().await?);
    }
    timings.steps.push(timed(step("kube-proxy"), reconfigure_kube_proxy(client, &ranges)).await?);
    timings.steps.push(timed(step("cluster DNS"), reconfigure_cluster_dns(client, conversion.to)).await?);
    timings.steps.push(timed(step("kubeadm-config"), record_in_kubeadm_config(client, &ranges)).await?);
    if load_balancer {
        let pool = async { crate::load_balancer::apply_pool(client, files, conversion.to).await.map(|_| ()) };
        timings.steps.push(timed(step("MetalLB pool"), pool).await?);
    }
    timings.total = started.elapsed();
    Ok(timings)
}

/// Runs one step: its name and time, or its failure as the step's error.
async fn timed(step: Step, work: impl std::future::Future<Output = std::result::Result<(), String>>) -> Result<(String, Duration)> {
    let started = Instant::now();
    match work.await {
        Ok(()) => Ok((step.name, started.elapsed())),
        Err(cause) => Err(step.failed(cause).await),
    }
}

/// `cluster convert`: the cluster `cluster up` made under `files`, from the mode it is in to `to`;
/// the conversion, and its steps' times once the cluster is detected as `to`.
pub async fn convert_created(files: &ClusterFiles, to: Mode) -> Result<(Conversion, Timings)> {
    if !files.kubeconfig.exists() {
        return Err(Error::ClusterNotFound { name: files.name.clone(), dir: files.dir.clone() });
    }
    crate::machine::require_docker().await?;
    let client = crate::cluster::client_from_kubeconfig(&files.kubeconfig, None).await?;
    let from = crate::detect::detect(&client).await?.mode;
    let conversion = Conversion::new(from, to).map_err(|reason| Error::Usage(format!("cluster {}: {reason}", files.name)))?;
    let load_balancer = crate::load_balancer::installed(&client).await?;
    let timings = convert(&client, files, conversion, load_balancer).await?;
    let detected = crate::detect::detect(&client).await?.mode;
    if detected != to {
        return Err(Error::Conversion(Box::new(ConversionFailure {
            cluster: files.name.clone(),
            conversion: conversion.to_string(),
            step: "the final detection".into(),
            cause: format!("every step finished, but the cluster is detected as {detected}"),
            logs: String::new(),
            kubeconfig: files.kubeconfig.display().to_string(),
        })));
    }
    Ok((conversion, timings))
}

/// The ranges of the converted cluster, primary first: kind's defaults for the added family.
struct Ranges {
    services: String,
    pods: String,
}

impl Ranges {
    fn of(conversion: Conversion) -> Self {
        let spec = kind::ClusterSpec::new(conversion.to);
        Self { services: spec.service_subnets().join(","), pods: spec.pod_subnets().join(",") }
    }
}

/// The step of a conversion that failed, for its error.
struct Step {
    cluster: String,
    conversion: Conversion,
    name: String,
    /// Where the step's component runs.
    node: String,
    kubeconfig: String,
}

impl Step {
    async fn failed(self, cause: String) -> Error {
        let logs = match self.name.as_str() {
            "kube-apiserver" | "kube-controller-manager" => container_logs(&self.node, &self.name).await,
            name if name.starts_with("node ") => node_exec(&self.node, "journalctl -u kubelet --no-pager -n 15 -o cat").await.unwrap_or_else(|e| e),
            _ => String::new(),
        };
        Error::Conversion(Box::new(ConversionFailure { cluster: self.cluster, conversion: self.conversion.to_string(), step: self.name, cause, logs, kubeconfig: self.kubeconfig }))
    }
}

/// The last log lines of a control-plane container on `node` (the newest one of that name).
async fn container_logs(node: &str, container: &str) -> String {
    let script = format!("id=$(crictl ps -a --name '^{container}$' -q | head -n 1); [ -n \"$id\" ] && crictl logs --tail 15 \"$id\" 2>&1");
    node_exec(node, &script).await.unwrap_or_else(|e| e)
}

/// Runs `script` with sh in the KIND node container `node`; its stdout, or why it failed.
async fn node_exec(node: &str, script: &str) -> std::result::Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(["exec", node, "sh", "-c", script])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running docker exec {node}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("docker exec {node} sh -c '{script}' exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}


/// Rewrites `--FLAG=...` in a static pod manifest; an error when the manifest lacks the flag.
pub fn set_flag(manifest: &str, flag: &str, value: &str) -> std::result::Result<String, String> {
    let prefix = format!("- --{flag}=");
    let mut found = false;
    let lines: Vec<String> = manifest
        .lines()
        .map(|line| match line.trim_start().strip_prefix(&prefix) {
            Some(_) => {
                found = true;
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}{prefix}{value}")
            }
            None => line.to_string(),
        })
        .collect();
    if found { Ok(lines.join("\n") + "\n") } else { Err(format!("no --{flag} in the manifest")) }
}

/// Edits a static pod manifest of the control-plane node in place (the kubelet restarts the pod).
async fn edit_manifest(node: &str, component: &str, flags: &[(&str, &str)]) -> std::result::Result<(), String> {
    let path = format!("/etc/kubernetes/manifests/{component}.yaml");
    let mut manifest = node_exec(node, &format!("cat {path}")).await?;
    for (flag, value) in flags {
        manifest = set_flag(&manifest, flag, value).map_err(|e| format!("{path}: {e}"))?;
    }
    write_node_file(node, &path, &manifest).await
}

/// Writes `content` to `path` on `node` through a temporary file, so the kubelet never reads half of it.
async fn write_node_file(node: &str, path: &str, content: &str) -> std::result::Result<(), String> {
    use tokio::io::AsyncWriteExt;
    // The temporary file lives beside the target only outside the manifests directory, where the
    // kubelet would take it for a pod.
    let script = format!("cat > /tmp/dualstack-convert.tmp && mv /tmp/dualstack-convert.tmp {path}");
    let mut child = tokio::process::Command::new("docker")
        .args(["exec", "-i", node, "sh", "-c", &script])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running docker exec {node}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(content.as_bytes()).await.map_err(|e| format!("writing {path} on {node}: {e}"))?;
    }
    let out = child.wait_with_output().await.map_err(|e| format!("writing {path} on {node}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("writing {path} on {node}: {}", String::from_utf8_lossy(&out.stderr).trim())) }
}

/// The API server with the new service ranges; done when a dry-run PreferDualStack Service gets
/// exactly the new mode's families (the restarted server answers, with its allocators).
async fn reconfigure_apiserver(client: &Client, node: &str, ranges: &Ranges, to: Mode) -> std::result::Result<(), String> {
    edit_manifest(node, "kube-apiserver", &[("service-cluster-ip-range", &ranges.services)]).await?;
    let want: Vec<String> = to.families().iter().map(|f| f.api_name().to_string()).collect();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let probe: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "dualstack-convert-probe-"},
        "spec": {"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}
    }))
    .map_err(|e| e.to_string())?;
    poll(&format!("kube-apiserver to serve {to} Services (a dry-run PreferDualStack Service gets {want:?})"), STEP_TIMEOUT, POLL_INTERVAL, || async {
        let created = services.create(&PostParams { dry_run: true, ..Default::default() }, &probe).await?;
        let families = created.spec.and_then(|s| s.ip_families).unwrap_or_default();
        Ok(if families == want { Ok(()) } else { Err(format!("families {families:?}")) })
    })
    .await
    .map_err(|e| e.to_string())
}

/// A control-plane component that leads through a lease (kube-controller-manager, kube-scheduler),
/// restarted with its manifest edited by `edit`; done when the new process holds the lease. Run
/// once the API server is steady: a leader that loses its lease while the API server restarts
/// exits, and the kubelet restarts it only after a back-off (measured: up to a minute).
async fn restart_leader(client: &Client, node: &str, component: &str, edit: impl FnOnce(&str) -> std::result::Result<String, String>) -> std::result::Result<(), String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = |lease: k8s_openapi::api::coordination::v1::Lease| lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    let before = leases.get_opt(component).await.map_err(|e| e.to_string())?.map(holder).unwrap_or_default();
    let running = format!("crictl ps --name '^{component}$' -q");
    let old = node_exec(node, &running).await?;
    let path = format!("/etc/kubernetes/manifests/{component}.yaml");
    let manifest = edit(&node_exec(node, &format!("cat {path}")).await?).map_err(|e| format!("{path}: {e}"))?;
    write_node_file(node, &path, &manifest).await?;
    // The old process does not give up its lease when stopped; once it is gone, the lease is
    // deleted so that the new one leads at once instead of after the lease's 15 s.
    poll(&format!("the old {component} to stop"), STEP_TIMEOUT, POLL_INTERVAL, || async {
        let now = node_exec(node, &running).await.unwrap_or_default();
        Ok(if old.lines().all(|id| !now.contains(id)) { Ok(()) } else { Err(format!("still running: {}", old.trim())) })
    })
    .await
    .map_err(|e| e.to_string())?;
    match leases.delete(component, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => return Err(format!("deleting the stopped {component}'s lease: {e}")),
    }
    poll(&format!("the restarted {component} to take its lease"), STEP_TIMEOUT, POLL_INTERVAL, || async {
        let Some(lease) = leases.get_opt(component).await? else { return Ok(Err("no lease yet".to_string())) };
        let now = holder(lease);
        Ok(if now != before && !now.is_empty() { Ok(()) } else { Err(format!("lease held by {now}")) })
    })
    .await
    .map_err(|e| e.to_string())
}

/// A static pod manifest labelled with the mode it now serves (`dualstack.io/converted-to`): a
/// changed manifest is a new pod to the kubelet, started at once whatever the old one's back-off.
pub fn labelled_converted_to(manifest: &str, to: Mode) -> std::result::Result<String, String> {
    const LABEL: &str = "dualstack.io/converted-to:";
    let mut out: Vec<String> = Vec::new();
    let mut labelled = false;
    for line in manifest.lines().filter(|l| !l.trim_start().starts_with(LABEL)) {
        out.push(line.to_string());
        // kubeadm writes metadata at two spaces, its labels at four.
        if line == "  labels:" && !labelled {
            out.push(format!("    {LABEL} {}", to.name()));
            labelled = true;
        }
    }
    if labelled { Ok(out.join("\n") + "\n") } else { Err("no metadata.labels in the manifest".to_string()) }
}

/// The podCIDRs of a node after the conversion, primary first: the range it has of each family
/// it keeps and, on an upgrade, the added family's range with the same number (kind's mask sizes:
/// /24 of 10.244.0.0/16, /64 of fd00:10:244::/56), which no other node can hold.
pub fn converted_pod_cidrs(old: &[String], conversion: Conversion) -> std::result::Result<Vec<String>, String> {
    let kept: Vec<&String> = old.iter().filter(|c| conversion.to.families().contains(&IpFamily::of_text(c).unwrap_or(IpFamily::IPv4))).collect();
    let primary = kept.first().ok_or_else(|| format!("no {} podCIDR among {old:?}", conversion.to.primary()))?;
    if !conversion.upgrades() {
        return Ok(kept.into_iter().cloned().collect());
    }
    let net: ipnet::IpNet = primary.parse().map_err(|e| format!("podCIDR {primary}: {e}"))?;
    let number: u128 = match net {
        ipnet::IpNet::V4(v4) => u128::from((u32::from(v4.network()) >> 8) & 0xff),
        ipnet::IpNet::V6(v6) => (u128::from(v6.network()) >> 64) & 0xff,
    };
    let added = match conversion.secondary() {
        IpFamily::IPv4 => format!("10.244.{number}.0/24"),
        IpFamily::IPv6 => format!("{}/64", std::net::Ipv6Addr::from((u128::from(std::net::Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0))) | (number << 64))),
    };
    Ok(vec![(*primary).clone(), added])
}

/// The Node object to create in place of `old`: its labels, annotations, taints (less the
/// lifecycle ones the node controller owns) and status, with `pod_cidrs`.
pub fn recreated_node(old: &serde_json::Value, pod_cidrs: &[String]) -> serde_json::Value {
    let mut node = old.clone();
    if let Some(metadata) = node.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for field in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "deletionTimestamp", "ownerReferences"] {
            metadata.remove(field);
        }
    }
    let taints: Vec<serde_json::Value> = old["spec"]["taints"]
        .as_array()
        .map(|t| t.iter().filter(|t| !t["key"].as_str().unwrap_or_default().starts_with("node.kubernetes.io/")).cloned().collect())
        .unwrap_or_default();
    node["spec"]["podCIDR"] = serde_json::json!(pod_cidrs.first());
    node["spec"]["podCIDRs"] = serde_json::json!(pod_cidrs);
    node["spec"]["taints"] = serde_json::json!(taints);
    node
}

/// `--node-ip=...` set to `ips` in the kubelet's kubeadm flags file.
pub fn with_node_ips(flags_env: &str, ips: &[String]) -> std::result::Result<String, String> {
    let joined = ips.join(",");
    let mut found = false;
    let words: Vec<String> = flags_env
        .split(' ')
        .map(|word| {
            if let Some(rest) = word.strip_prefix("--node-ip=").or_else(|| word.strip_prefix("KUBELET_KUBEADM_ARGS=\"--node-ip=")) {
                found = true;
                let quote = if word.starts_with("KUBELET") { "KUBELET_KUBEADM_ARGS=\"" } else { "" };
                let tail = if rest.ends_with('"') { "\"" } else { "" };
                format!("{quote}--node-ip={joined}{tail}")
            } else {
                word.to_string()
            }
        })
        .collect();
    if found { Ok(words.join(" ")) } else { Err(format!("no --node-ip in {flags_env:?}")) }
}

/// The kubelet configuration with `clusterDNS` set to `dns`.
pub fn with_cluster_dns(config: &str, dns: &[std::net::IpAddr]) -> std::result::Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    let mut lines = config.lines().peekable();
    let mut found = false;
    while let Some(line) = lines.next() {
        if line == "clusterDNS:" {
            found = true;
            out.push(line.to_string());
            while lines.peek().is_some_and(|l| l.starts_with("- ")) {
                lines.next();
            }
            out.extend(dns.iter().map(|ip| format!("- {ip}")));
        } else {
            out.push(line.to_string());
        }
    }
    if found { Ok(out.join("\n") + "\n") } else { Err("no clusterDNS in the kubelet configuration".to_string()) }
}

/// One node: forwarding of both families, the kubelet's node IPs and cluster DNS for the new mode, the Node object recreated
/// with the new podCIDRs, the kubelet restarted; done when the node is Ready with an InternalIP
/// and a podCIDR of each family of the new mode.
async fn recreate_node(client: &Client, node: &str, conversion: Conversion) -> std::result::Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    // Forwarding of both families (kind enables IPv6 and its forwarding only in the node
    // containers of IPv6 and dual clusters).
    node_exec(node, "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.all.forwarding=1 net.ipv4.ip_forward=1").await?;
    let addresses = node_exec(node, "ip -o addr show dev eth0 scope global").await?;
    let ips: Vec<String> = conversion
        .to
        .families()
        .iter()
        .map(|&family| {
            addresses
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next().map(str::to_string))
                .find(|ip| IpFamily::of_text(ip) == Some(family))
                .ok_or_else(|| format!("eth0 of {node} has no global {family} address (ip addr: {})", addresses.trim()))
        })
        .collect::<std::result::Result<_, _>>()?;
    let flags_path = "/var/lib/kubelet/kubeadm-flags.env";
    let flags = with_node_ips(node_exec(node, &format!("cat {flags_path}")).await?.trim_end(), &ips)?;
    write_node_file(node, flags_path, &(flags + "\n")).await?;
    let config_path = "/var/lib/kubelet/config.yaml";
    let config = with_cluster_dns(&node_exec(node, &format!("cat {config_path}")).await?, &kind::cluster_dns(conversion.to))?;
    write_node_file(node, config_path, &config).await?;

    let old = serde_json::to_value(nodes.get(node).await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let old_cidrs: Vec<String> = serde_json::from_value(old["spec"]["podCIDRs"].clone()).unwrap_or_default();
    let cidrs = converted_pod_cidrs(&old_cidrs, conversion)?;
    let replacement: Node = serde_json::from_value(recreated_node(&old, &cidrs)).map_err(|e| e.to_string())?;
    nodes.delete(node, &DeleteParams::default()).await.map_err(|e| format!("deleting Node {node}: {e}"))?;
    poll(&format!("Node {node} to be gone"), STEP_TIMEOUT, Duration::from_millis(100), || async {
        Ok(match nodes.get_opt(node).await? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        })
    })
    .await
    .map_err(|e| e.to_string())?;
    nodes.create(&PostParams::default(), &replacement).await.map_err(|e| format!("creating Node {node} with podCIDRs {cidrs:?}: {e}"))?;
    node_exec(node, "systemctl restart kubelet").await?;
    let want_families = conversion.to.families();
    poll(&format!("node {node} Ready with InternalIPs {ips:?} and podCIDRs {cidrs:?}"), STEP_TIMEOUT, POLL_INTERVAL, || async {
        let got = nodes.get(node).await?;
        let internal = crate::objects::internal_ips(&got);
        let families: Vec<IpFamily> = internal.iter().filter_map(|ip| IpFamily::of_text(ip)).collect();
        let ready = got.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Ok(if ready && families == want_families { Ok(()) } else { Err(format!("Ready {ready}, InternalIPs {internal:?}")) })
    })
    .await
    .map_err(|e| e.to_string())
}

/// kube-proxy's `clusterCIDR` set to the new pod ranges, its pods restarted; done when every one
/// of them is new and Ready.
async fn reconfigure_kube_proxy(client: &Client, ranges: &Ranges) -> std::result::Result<(), String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let Some(map) = config_maps.get_opt("kube-proxy").await.map_err(|e| e.to_string())? else {
        // `--kube-proxy none`: nothing to reconfigure.
        return Ok(());
    };
    let config = map.data.as_ref().and_then(|d| d.get("config.conf")).cloned().ok_or("kube-proxy's ConfigMap has no config.conf")?;
    let edited: Vec<String> = config
        .lines()
        .map(|line| match line.trim_start().strip_prefix("clusterCIDR:") {
            Some(_) => format!("{}clusterCIDR: {}", &line[..line.len() - line.trim_start().len()], ranges.pods),
            None => line.to_string(),
        })
        .collect();
    let patch = serde_json::json!({"data": {"config.conf": edited.join("\n") + "\n"}});
    config_maps.patch("kube-proxy", &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|e| e.to_string())?;
    restart_daemon_set(client, "kube-proxy").await
}

/// Every pod of a kube-system DaemonSet restarted at once (a rolling update would restart them
/// one by one, each waiting for the last); done when as many new pods as the DaemonSet wants are
/// Ready.
async fn restart_daemon_set(client: &Client, name: &str) -> std::result::Result<(), String> {
    let daemon_sets: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "kube-system");
    let selector = daemon_sets.get(name).await.map_err(|e| e.to_string())?.spec.and_then(|s| s.selector.match_labels).unwrap_or_default();
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let params = ListParams::default().labels(&labels.join(","));
    let old: Vec<String> = pods.list(&params).await.map_err(|e| e.to_string())?.items.into_iter().filter_map(|p| p.metadata.uid).collect();
    // Deleted at once (no grace): the DaemonSet controller replaces a pod only once its old one is
    // gone, and a kubelet whose API server just restarted can take a minute to confirm a graceful
    // deletion (measured: 30-70 s). kube-proxy's rules outlive it, and the kubelet stops the old
    // container as soon as it sees the pod gone.
    let delete = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    pods.delete_collection(&delete, &params).await.map_err(|e| e.to_string())?;
    poll(&format!("DaemonSet {name}'s pods to be replaced and Ready"), STEP_TIMEOUT, POLL_INTERVAL, || async {
        let wanted = daemon_sets.get(name).await?.status.map_or(0, |s| s.desired_number_scheduled);
        let listed = pods.list(&params).await?.items;
        let new: Vec<_> = listed.iter().filter(|p| p.metadata.uid.as_ref().is_some_and(|uid| !old.contains(uid))).collect();
        let ready = new.iter().filter(|p| crate::objects::pod_ready(p)).count();
        let stale = listed.len() - new.len();
        Ok(if ready == usize::try_from(wanted).unwrap_or(0) && stale == 0 {
            Ok(())
        } else {
            Err(format!("{ready} of {wanted} new pods Ready, {stale} old ones left"))
        })
    })
    .await
    .map_err(|e| e.to_string())
}

/// A rollout restart of a kube-system Deployment (its replicas replaced one by one, so the Service
/// keeps answering), waited for.
async fn restart_deployment(client: &Client, name: &str) -> std::result::Result<(), String> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "kube-system");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs().to_string()).unwrap_or_default();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"dualstack.io/converted-at": stamp}}}}});
    let deployment = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|e| e.to_string())?;
    let (generation, replicas) = (deployment.metadata.generation, deployment.spec.and_then(|s| s.replicas).unwrap_or(1));
    poll(&format!("Deployment {name} to roll out"), STEP_TIMEOUT, POLL_INTERVAL, || async {
        let status = api.get(name).await?.status.unwrap_or_default();
        let done = status.observed_generation >= generation
            && status.updated_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && status.available_replicas == Some(replicas);
        Ok(if done { Ok(()) } else { Err(format!("{} of {replicas} updated, {} available", status.updated_replicas.unwrap_or(0), status.available_replicas.unwrap_or(0))) })
    })
    .await
    .map_err(|e| e.to_string())
}

/// kube-dns with an address of each family of the new mode (the kubelets name both), CoreDNS
/// restarted so that its pods get addresses of each.
async fn reconfigure_cluster_dns(client: &Client, to: Mode) -> std::result::Result<(), String> {
    if to.is_dual() {
        crate::cluster::serve_dns_on_both_families(client, to).await.map_err(|e| e.to_string())?;
    } else {
        let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
        let patch = serde_json::json!({"spec": {"ipFamilyPolicy": "SingleStack"}});
        services.patch("kube-dns", &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|e| e.to_string())?;
    }
    // Done when the new replicas are available: whether they have an address of each family is
    // the CNI's doing, judged by the suites (a conversion that waited for it would hide a CNI that
    // ignores the new podCIDRs behind a setup failure).
    restart_deployment(client, "coredns").await
}

/// kubeadm's record of the cluster (`kube-system/kubeadm-config`) with the new ranges, so that
/// kubeadm (a join, an upgrade) sees the cluster as it now is.
async fn record_in_kubeadm_config(client: &Client, ranges: &Ranges) -> std::result::Result<(), String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let map = config_maps.get("kubeadm-config").await.map_err(|e| e.to_string())?;
    let config = map.data.as_ref().and_then(|d| d.get("ClusterConfiguration")).cloned().ok_or("kubeadm-config has no ClusterConfiguration")?;
    let edited: Vec<String> = config
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            if line.trim_start().starts_with("podSubnet:") {
                format!("{indent}podSubnet: {}", ranges.pods)
            } else if line.trim_start().starts_with("serviceSubnet:") {
                format!("{indent}serviceSubnet: {}", ranges.services)
            } else {
                line.to_string()
            }
        })
        .collect();
    let patch = serde_json::json!({"data": {"ClusterConfiguration": edited.join("\n") + "\n"}});
    config_maps.patch("kubeadm-config", &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Mode::Ipv4, Mode::Dual, Ok(()))]
    #[case(Mode::Ipv6, Mode::DualIpv6Primary, Ok(()))]
    #[case(Mode::Dual, Mode::Ipv4, Ok(()))]
    #[case(Mode::DualIpv6Primary, Mode::Ipv6, Ok(()))]
    #[case(Mode::Ipv4, Mode::Ipv4, Err("the cluster is already ipv4"))]
    #[case(Mode::Ipv4, Mode::DualIpv6Primary, Err("ipv4 -> dual-ipv6-primary would change the primary family from IPv4 to IPv6: Kubernetes keeps every Service's first clusterIP and the kubernetes Service's address, so only the second family can be added or removed (possible from ipv4: dual)"))]
    #[case(Mode::Dual, Mode::Ipv6, Err("dual -> ipv6 would change the primary family from IPv4 to IPv6: Kubernetes keeps every Service's first clusterIP and the kubernetes Service's address, so only the second family can be added or removed (possible from dual: ipv4)"))]
    fn conversions_keep_the_primary_family(#[case] from: Mode, #[case] to: Mode, #[case] expected: std::result::Result<(), &str>) {
        assert_eq!(Conversion::new(from, to).map(|_| ()), expected.map_err(str::to_string));
    }

    #[rstest]
    #[case(Mode::Ipv4, Mode::Dual, &["10.244.2.0/24"], &["10.244.2.0/24", "fd00:10:244:2::/64"])]
    #[case(Mode::Ipv4, Mode::Dual, &["10.244.0.0/24"], &["10.244.0.0/24", "fd00:10:244::/64"])]
    #[case(Mode::Ipv6, Mode::DualIpv6Primary, &["fd00:10:244:3::/64"], &["fd00:10:244:3::/64", "10.244.3.0/24"])]
    #[case(Mode::Dual, Mode::Ipv4, &["10.244.1.0/24", "fd00:10:244:1::/64"], &["10.244.1.0/24"])]
    #[case(Mode::DualIpv6Primary, Mode::Ipv6, &["fd00:10:244:1::/64", "10.244.1.0/24"], &["fd00:10:244:1::/64"])]
    fn pod_cidrs_keep_the_kept_family_and_number_the_added_one_alike(#[case] from: Mode, #[case] to: Mode, #[case] old: &[&str], #[case] new: &[&str]) {
        let old: Vec<String> = old.iter().map(ToString::to_string).collect();
        let conversion = Conversion::new(from, to).unwrap();
        assert_eq!(converted_pod_cidrs(&old, conversion), Ok(new.iter().map(ToString::to_string).collect()));
    }

    #[test]
    fn a_node_without_a_range_of_the_primary_family_is_an_error() {
        let conversion = Conversion::new(Mode::Ipv4, Mode::Dual).unwrap();
        assert_eq!(converted_pod_cidrs(&[], conversion), Err("no IPv4 podCIDR among []".to_string()));
    }

    #[test]
    fn flags_are_rewritten_in_place_and_a_missing_one_is_named() {
        let manifest = "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --service-cluster-ip-range=10.96.0.0/16\n    - --tls-cert-file=x\n";
        assert_eq!(
            set_flag(manifest, "service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/112").as_deref(),
            Ok("spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112\n    - --tls-cert-file=x\n")
        );
        assert_eq!(set_flag(manifest, "cluster-cidr", "x"), Err("no --cluster-cidr in the manifest".to_string()));
    }

    #[test]
    fn the_converted_to_label_is_added_once_and_follows_the_mode() {
        let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: kube-scheduler\n    tier: control-plane\n  name: kube-scheduler\nspec:\n  containers:\n  - command:\n    - kube-scheduler\n";
        let dual = labelled_converted_to(manifest, Mode::Dual).unwrap();
        assert_eq!(dual, manifest.replace("  labels:\n", "  labels:\n    dualstack.io/converted-to: dual\n"));
        assert_eq!(labelled_converted_to(&dual, Mode::Ipv4).unwrap(), manifest.replace("  labels:\n", "  labels:\n    dualstack.io/converted-to: ipv4\n"));
        assert_eq!(labelled_converted_to("kind: Pod\n", Mode::Dual), Err("no metadata.labels in the manifest".to_string()));
    }

    #[rstest]
    #[case("KUBELET_KUBEADM_ARGS=\"--node-ip=172.18.0.2 --provider-id=kind://docker/c/c-worker --node-labels=\"", "KUBELET_KUBEADM_ARGS=\"--node-ip=172.18.0.2,fc00::2 --provider-id=kind://docker/c/c-worker --node-labels=\"")]
    #[case("KUBELET_KUBEADM_ARGS=\"--provider-id=p --node-ip=172.18.0.2\"", "KUBELET_KUBEADM_ARGS=\"--provider-id=p --node-ip=172.18.0.2,fc00::2\"")]
    fn node_ips_replace_the_kubelet_flag(#[case] flags: &str, #[case] expected: &str) {
        assert_eq!(with_node_ips(flags, &["172.18.0.2".into(), "fc00::2".into()]).as_deref(), Ok(expected));
    }

    #[test]
    fn cluster_dns_replaces_the_list() {
        let config = "authorization:\n  mode: Webhook\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\n";
        let dns = kind::cluster_dns(Mode::Dual);
        assert_eq!(
            with_cluster_dns(config, &dns).as_deref(),
            Ok("authorization:\n  mode: Webhook\nclusterDNS:\n- 10.96.0.10\n- fd00:10:96::a\nclusterDomain: cluster.local\n")
        );
        assert_eq!(with_cluster_dns(&with_cluster_dns(config, &dns).unwrap(), &kind::cluster_dns(Mode::Ipv4)).as_deref(), Ok(config));
    }

    #[test]
    fn a_recreated_node_keeps_its_identity_but_not_its_server_fields_or_lifecycle_taints() {
        let old = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "c-control-plane", "uid": "u", "resourceVersion": "7", "creationTimestamp": "t", "managedFields": [],
                         "labels": {"node-role.kubernetes.io/control-plane": ""}, "annotations": {"a": "b"}},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": "kind://docker/c/c-control-plane",
                     "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"pods": "110"}}
        });
        let cidrs = vec!["10.244.0.0/24".to_string(), "fd00:10:244::/64".to_string()];
        assert_eq!(
            recreated_node(&old, &cidrs),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "c-control-plane", "labels": {"node-role.kubernetes.io/control-plane": ""}, "annotations": {"a": "b"}},
                "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24", "fd00:10:244::/64"], "providerID": "kind://docker/c/c-control-plane",
                         "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"pods": "110"}}
            })
        );
    }
}
