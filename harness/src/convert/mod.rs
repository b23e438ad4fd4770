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

mod edits;

use edits::{converted_pod_cidrs, labelled_converted_to, recreated_node, set_flag, with_cluster_dns, with_line, with_node_ips};

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

/// Runs one step: its name (with what it had to say, if anything) and time, or its failure as the
/// step's error.
async fn timed<T: StepNote>(step: Step, work: impl std::future::Future<Output = std::result::Result<T, String>>) -> Result<(String, Duration)> {
    let started = Instant::now();
    match work.await {
        Ok(done) => {
            let name = match done.note() {
                Some(note) => format!("{} ({note})", step.name),
                None => step.name,
            };
            Ok((name, started.elapsed()))
        }
        Err(cause) => Err(step.failed(cause).await),
    }
}

/// What a finished step adds to its name in the timings.
trait StepNote {
    fn note(self) -> Option<String>;
}

impl StepNote for () {
    fn note(self) -> Option<String> {
        None
    }
}

/// A step that may have had to repeat itself, saying so.
impl StepNote for Option<String> {
    fn note(self) -> Option<String> {
        self
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
            "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" => static_pod_logs(&self.node, &self.name).await,
            name if name.starts_with("node ") => node_exec(&self.node, "journalctl -u kubelet --no-pager -n 15 -o cat").await.unwrap_or_else(|e| e),
            _ => String::new(),
        };
        Error::Conversion(Box::new(ConversionFailure { cluster: self.cluster, conversion: self.conversion.to_string(), step: self.name, cause, logs, kubeconfig: self.kubeconfig }))
    }
}

/// The last log lines of a control-plane component's container on `node` (the newest one of that
/// name); when the kubelet never started one, what the kubelet last said about its pod.
async fn static_pod_logs(node: &str, component: &str) -> String {
    let script = format!(
        "id=$(crictl ps -a --name '^{component}$' -q | head -n 1); \
         if [ -n \"$id\" ]; then crictl logs --tail 15 \"$id\" 2>&1; \
         else echo 'no {component} container (running or exited); the kubelet on {component}'\\''s pod:'; \
         journalctl -u kubelet --no-pager -o cat | grep -F '{component}' | tail -n 15; fi"
    );
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


/// Rewrites the text under `key` of the kube-system ConfigMap `name` as `edit` says; whether the
/// ConfigMap exists.
async fn edit_config_map(client: &Client, name: &str, key: &str, edit: impl FnOnce(&str) -> String) -> std::result::Result<bool, String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let Some(map) = config_maps.get_opt(name).await.map_err(|e| e.to_string())? else { return Ok(false) };
    let text = map.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| format!("the ConfigMap {name} has no {key}"))?;
    let patch = serde_json::json!({"data": {key: edit(text)}});
    config_maps.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// Where the kubelet of the control-plane node reads `component`'s static pod (an edit restarts it).
fn manifest_path(component: &str) -> String {
    format!("/etc/kubernetes/manifests/{component}.yaml")
}

/// Rewrites the file `path` on `node` as `edit` says.
async fn edit_node_file(node: &str, path: &str, edit: impl FnOnce(&str) -> std::result::Result<String, String>) -> std::result::Result<(), String> {
    let edited = edit(&node_exec(node, &format!("cat {path}")).await?).map_err(|e| format!("{path} on {node}: {e}"))?;
    write_node_file(node, path, &edited).await
}

/// Writes `content` to `path` on `node` through a temporary file, so the kubelet never reads half of it.
async fn write_node_file(node: &str, path: &str, content: &str) -> std::result::Result<(), String> {
    // Not beside the target: in the manifests directory the kubelet would take it for a pod. Named
    // after the target: the controller-manager's and the scheduler's manifests are written at once,
    // and through one shared file one's content could land in the other's manifest (seen: a
    // failed `mv`, and a controller-manager that never started).
    let file = path.rsplit('/').next().unwrap_or(path);
    let script = format!("cat > /tmp/dualstack-convert-{file}.tmp && mv /tmp/dualstack-convert-{file}.tmp {path}");
    let mut command = tokio::process::Command::new("docker");
    command.args(["exec", "-i", node, "sh", "-c", &script]);
    let out = crate::machine::output_with_input(&mut command, content.as_bytes()).await.map_err(|e| format!("writing {path} on {node}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("writing {path} on {node}: {}", String::from_utf8_lossy(&out.stderr).trim())) }
}

/// The API server with the new service ranges; done when a dry-run PreferDualStack Service gets
/// exactly the new mode's families (the restarted server answers, with its allocators).
async fn reconfigure_apiserver(client: &Client, node: &str, ranges: &Ranges, to: Mode) -> std::result::Result<(), String> {
    edit_node_file(node, &manifest_path("kube-apiserver"), |m| set_flag(m, "service-cluster-ip-range", &ranges.services)).await?;
    let want = to.families();
    poll(&format!("kube-apiserver to serve {to} Services (a dry-run PreferDualStack Service gets {want:?})"), STEP_TIMEOUT, POLL_INTERVAL, || async {
        let families = crate::detect::service_families(client).await?;
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
    let holder_before = leases.get_opt(component).await.map_err(|e| e.to_string())?.map(holder).unwrap_or_default();
    let running = format!("crictl ps --name '^{component}$' -q");
    let old = node_exec(node, &running).await?;
    edit_node_file(node, &manifest_path(component), edit).await?;
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
        Ok(if now != holder_before && !now.is_empty() { Ok(()) } else { Err(format!("lease held by {now}")) })
    })
    .await
    .map_err(|e| e.to_string())
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
    edit_node_file(node, "/var/lib/kubelet/kubeadm-flags.env", |flags| with_node_ips(flags.trim_end(), &ips).map(|f| f + "\n")).await?;
    edit_node_file(node, "/var/lib/kubelet/config.yaml", |config| with_cluster_dns(config, &kind::cluster_dns(conversion.to))).await?;

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
        let ready = crate::cluster::node_ready(&got);
        Ok(if ready && families == want_families { Ok(()) } else { Err(format!("Ready {ready}, InternalIPs {internal:?}")) })
    })
    .await
    .map_err(|e| e.to_string())
}

/// kube-proxy's `clusterCIDR` set to the new pod ranges, its pods restarted; done when every one
/// of them is new and Ready.
async fn reconfigure_kube_proxy(client: &Client, ranges: &Ranges) -> std::result::Result<(), String> {
    let edit = |config: &str| with_line(config, "clusterCIDR: ", &ranges.pods).unwrap_or_else(|| config.to_string());
    if !edit_config_map(client, "kube-proxy", "config.conf", edit).await? {
        // `--kube-proxy none`: nothing to reconfigure.
        return Ok(());
    }
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
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis().to_string()).unwrap_or_default();
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
async fn reconfigure_cluster_dns(client: &Client, to: Mode) -> std::result::Result<Option<String>, String> {
    if to.is_dual() {
        crate::cluster::serve_dns_on_both_families(client, to).await.map_err(|e| e.to_string())?;
    } else {
        let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
        let patch = serde_json::json!({"spec": {"ipFamilyPolicy": "SingleStack"}});
        services.patch("kube-dns", &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|e| e.to_string())?;
    }
    // Done when the new replicas are available. A CNI adopts a node's new podCIDRs on its own
    // schedule (ours as soon as it sees the node change), so a replica started on a node just recreated may get
    // the old families only: CoreDNS is rolled again, a few seconds apart, until every replica has
    // exactly the new mode's families, at most `DNS_ROLLS` times. Past that, the replicas are left
    // as they are for the suites to judge (a conversion that failed here would hide a CNI that
    // ignores the new podCIDRs behind a setup failure).
    let mut short = Vec::new();
    for roll in 1..=DNS_ROLLS {
        if roll > 1 {
            tokio::time::sleep(CNI_RESYNC).await;
        }
        restart_deployment(client, "coredns").await?;
        short = replicas_without_families(client, "k8s-app=kube-dns", to).await?;
        if short.is_empty() {
            return Ok((roll > 1).then(|| format!("rolled {roll} times: the CNI gave the earlier replicas the old families")));
        }
    }
    Ok(Some(format!("rolled {DNS_ROLLS} times, and still {} (left for the suites to judge)", short.join(", "))))
}

/// How many times CoreDNS is rolled for its replicas to get the new mode's families.
const DNS_ROLLS: u32 = 3;
/// The pause between two rolls, for the CNI to adopt the nodes' new podCIDRs.
const CNI_RESYNC: Duration = Duration::from_secs(5);

/// The running kube-system pods matching `selector` whose addresses are not exactly one of each
/// of `mode`'s families, in order; each named with the addresses it has.
async fn replicas_without_families(client: &Client, selector: &str, mode: Mode) -> std::result::Result<Vec<String>, String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "kube-system");
    let listed = pods.list(&ListParams::default().labels(selector)).await.map_err(|e| e.to_string())?.items;
    Ok(listed
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let ips = crate::objects::pod_ips(pod);
            let families: Vec<IpFamily> = ips.iter().filter_map(|ip| IpFamily::of_text(ip)).collect();
            (families != mode.families()).then(|| format!("pod {} has {ips:?}", pod.metadata.name.clone().unwrap_or_default()))
        })
        .collect())
}

/// kubeadm's record of the cluster (`kube-system/kubeadm-config`) with the new ranges, so that
/// kubeadm (a join, an upgrade) sees the cluster as it now is.
async fn record_in_kubeadm_config(client: &Client, ranges: &Ranges) -> std::result::Result<(), String> {
    let edit = |config: &str| {
        let config = with_line(config, "podSubnet: ", &ranges.pods).unwrap_or_else(|| config.to_string());
        with_line(&config, "serviceSubnet: ", &ranges.services).unwrap_or(config)
    };
    match edit_config_map(client, "kubeadm-config", "ClusterConfiguration", edit).await? {
        true => Ok(()),
        false => Err("kube-system has no kubeadm-config ConfigMap".to_string()),
    }
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
    #[case(None, "kube-controller-manager")]
    #[case(Some("started by restarting the kubelet"), "kube-controller-manager (started by restarting the kubelet)")]
    #[tokio::test]
    async fn a_step_that_needed_help_says_so_in_its_timing(#[case] help: Option<&str>, #[case] expected: &str) {
        let step = Step {
            cluster: "c".into(),
            conversion: Conversion::of(Mode::Dual),
            name: "kube-controller-manager".into(),
            node: "c-control-plane".into(),
            kubeconfig: "k".into(),
        };
        let (name, _) = timed(step, async { Ok(help.map(str::to_string)) }).await.map_err(|e| e.to_string()).unwrap();
        assert_eq!(name, expected);
    }

}
