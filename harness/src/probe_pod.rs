//! Probe pods: the `probe` binary (workspace crate `probe`) running `probe serve` in a pod, and
//! client commands executed inside it. The only thing shared with the probe is its JSON wire format.

use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{AttachParams, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use std::collections::BTreeMap;
use crate::wait::poll;
use std::time::Duration;
use tokio::io::AsyncReadExt;

use crate::machine::probe_image;

/// Label on everything the suite creates, so leftovers of a crashed run can be found and removed.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dualstack");
/// When a namespace the suite created may be collected by a later run: no run lives this long, so
/// a namespace past it belongs to a run that crashed (live runs' namespaces are left alone).
pub const EXPIRES_AT: &str = "dualstack.io/expires-at";
const NAMESPACE_LIFETIME_SECONDS: u64 = 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Deletes the suite's namespaces whose expiry has passed (left by crashed runs); returns their names.
pub async fn collect_expired_namespaces(client: &Client) -> Result<Vec<String>> {
    let api = Api::<Namespace>::all(client.clone());
    let label = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let now = unix_now();
    let mut collected = Vec::new();
    for ns in api.list(&kube::api::ListParams::default().labels(&label)).await?.items {
        let expires = ns.metadata.annotations.as_ref().and_then(|a| a.get(EXPIRES_AT)).and_then(|v| v.parse::<u64>().ok());
        let terminating = ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if let (Some(expires), Some(name), false) = (expires, ns.metadata.name.clone(), terminating)
            && expires < now
        {
            delete_namespace(client, &name).await;
            collected.push(name);
        }
    }
    Ok(collected)
}
pub const PROBE_PORT: u16 = 8080;

/// What the probe's server saw (relayed by the client).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Answer {
    pub hostname: String,
    pub client: String,
    pub bytes: usize,
}

/// `probe connect` output.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectResult {
    pub ok: bool,
    pub answer: Option<Answer>,
    pub error: Option<String>,
}

/// `probe resolve` output.
#[derive(Debug, Clone, Deserialize)]
pub struct ResolveResult {
    pub ok: bool,
    pub server: String,
    pub addresses: Vec<std::net::IpAddr>,
    pub rcode: Option<u8>,
    pub error: Option<String>,
}

/// Creates a labelled namespace with a unique name.
pub async fn create_namespace(client: &Client, prefix: &str, retries: &crate::retry::Retries) -> Result<String> {
    let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())])),
            annotations: Some(BTreeMap::from([(EXPIRES_AT.to_string(), (unix_now() + NAMESPACE_LIFETIME_SECONDS).to_string())])),
            ..Default::default()
        },
        ..Default::default()
    };
    let api = Api::<Namespace>::all(client.clone());
    let post = PostParams::default();
    retries.call("create namespace", || api.create(&post, &ns)).await?;
    wait_default_service_account(client, &name).await?;
    Ok(name)
}

/// Waits until the ServiceAccount controller has made the namespace's `default` ServiceAccount:
/// until then the API server refuses every pod posted there (`error looking up service account
/// NS/default: serviceaccount "default" not found`), which a loaded machine showed as a conversion
/// suite's first pod refused. Upstream's e2e framework waits the same way. An identity that may not
/// read ServiceAccounts (the runner role before it granted that) goes on without waiting, as before.
async fn wait_default_service_account(client: &Client, namespace: &str) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    poll(&format!("ServiceAccount {namespace}/default"), Duration::from_secs(60), Duration::from_millis(100), || async {
        Ok(match accounts.get_opt("default").await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("not made yet".to_string()),
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
            Err(e) => return Err(e.into()),
        })
    })
    .await
}

/// Starts deleting a namespace; does not wait for its finalizers.
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone()).delete(name, &DeleteParams::background()).await;
}

/// A probe pod pinned to `node` serving TCP/HTTP/UDP on PROBE_PORT.
pub fn probe_pod(name: &str, node: &str, labels: &[(&str, &str)], host_network: bool) -> Pod {
    let mut labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    let spec = serde_json::json!({
        "nodeName": node,
        "hostNetwork": host_network,
        "terminationGracePeriodSeconds": 0,
        "tolerations": [{"operator": "Exists"}],
        "containers": [{
            "name": "probe",
            "image": probe_image(),
            "imagePullPolicy": "IfNotPresent",
            "command": [PROBE_BINARY, "serve", "--port", PROBE_PORT.to_string()],
            "ports": [{"name": "probe-tcp", "containerPort": PROBE_PORT, "protocol": "TCP"}, {"name": "probe-udp", "containerPort": PROBE_PORT, "protocol": "UDP"}],
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 65534, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}
            },
            "startupProbe": startup_probe(PROBE_PORT)
        }]
    });
    Pod {
        metadata: ObjectMeta { name: Some(name.into()), labels: Some(labels), ..Default::default() },
        // The JSON above is a valid PodSpec; a mismatch would be a programming error caught by tests.
        spec: serde_json::from_value(spec).ok(),
        ..Default::default()
    }
}

/// A hostNetwork probe serving on `port` (the node's ports are shared, so not PROBE_PORT), labelled
/// `role=NAME`.
pub fn host_network_probe_pod(name: &str, node: &str, port: u16) -> Pod {
    let mut pod = probe_pod(name, node, &[("role", name)], true);
    if let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        container.command = Some(vec![PROBE_BINARY.into(), "serve".into(), "--port".into(), port.to_string()]);
        container.startup_probe = serde_json::from_value(startup_probe(port)).ok();
        container.ports = None;
    }
    pod
}

/// A probe pod that also serves on `host_port` of its node, TCP and UDP.
pub fn host_port_probe_pod(name: &str, node: &str, labels: &[(&str, &str)], host_port: u16) -> Pod {
    let mut pod = probe_pod(name, node, labels, false);
    if let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        let ports = ["TCP", "UDP"].map(|protocol| serde_json::json!({"containerPort": PROBE_PORT, "hostPort": host_port, "protocol": protocol}));
        container.ports = serde_json::from_value(serde_json::json!(ports)).ok();
    }
    pod
}

/// A probe pod of the SCTP rows: root with CAP_NET_RAW alone, which the probe's own SCTP over raw
/// IP needs (a non-root user would not keep the capability across exec).
pub fn sctp_probe_pod(name: &str, node: &str, labels: &[(&str, &str)]) -> Pod {
    let mut pod = probe_pod(name, node, labels, false);
    if let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        container.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(k8s_openapi::api::core::v1::Capabilities { add: Some(vec!["NET_RAW".into()]), drop: Some(vec!["ALL".into()]) }),
            ..Default::default()
        });
    }
    pod
}

/// Ready once the probe accepts on `port`, probed every second until then and never after: the
/// kubelet would otherwise probe every pod of the fixture every second for its whole life. The
/// threshold is generous (the kubelet restarts the container once it is spent): on a loaded 2-core
/// machine a container may take many seconds to start.
pub fn startup_probe(port: u16) -> serde_json::Value {
    serde_json::json!({"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 120})
}

/// Waits until every named pod is Ready; returns them. One list of the namespace per poll, not a
/// request per pod: the data-plane fixture's 29 pods, polled every 300 ms, were about 100 requests
/// a second to the API server of a cluster busy starting them.
pub async fn wait_pods_ready(pods: &Api<Pod>, names: &[&str], timeout: Duration) -> Result<Vec<Pod>> {
    poll(&format!("probe pods {} Ready", names.join(", ")), timeout, Duration::from_millis(300), || async {
        Ok(all_ready(&pods.list(&ListParams::default()).await?.items, names))
    })
    .await
}

/// The named pods if each is Ready, else the states of those that are not, the pods in one state
/// named together (a missing image fails every pod on a node the same way).
fn all_ready(listed: &[Pod], names: &[&str]) -> std::result::Result<Vec<Pod>, String> {
    let mut ready = Vec::new();
    let mut waiting: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for &name in names {
        match listed.iter().find(|pod| pod.metadata.name.as_deref() == Some(name)) {
            Some(pod) if crate::objects::pod_ready(pod) => ready.push(pod.clone()),
            Some(pod) => waiting.entry(pod_state(pod)).or_default().push(name),
            None => waiting.entry("not found".into()).or_default().push(name),
        }
    }
    if waiting.is_empty() {
        return Ok(ready);
    }
    Err(waiting.into_iter().map(|(state, names)| format!("{}: {state}", names.join(", "))).collect::<Vec<_>>().join("; "))
}

/// A one-line account of a pod's state: phase, and the waiting reason of its containers.
pub fn pod_state(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let mut parts = vec![status.phase.unwrap_or_else(|| "Unknown".into())];
    for cs in status.container_statuses.unwrap_or_default() {
        if let Some(waiting) = cs.state.and_then(|s| s.waiting) {
            parts.push(format!(
                "{} waiting: {} {}",
                cs.name,
                waiting.reason.unwrap_or_default(),
                waiting.message.unwrap_or_default()
            ));
        }
    }
    parts.join(", ")
}

/// Where the probe image has the probe.
pub const PROBE_BINARY: &str = "/usr/local/bin/probe";

/// Runs a probe client command inside `pod` and returns its stdout.
pub async fn exec(pods: &Api<Pod>, pod: &str, args: &[String]) -> Result<String> {
    let mut command = vec![PROBE_BINARY.to_string()];
    command.extend(args.iter().cloned());
    exec_command(pods, pod, command).await
}

/// Runs any command inside `pod` (the probe image has coreutils) and returns its stdout.
pub async fn exec_command(pods: &Api<Pod>, pod: &str, command: Vec<String>) -> Result<String> {
    let params = AttachParams::default().stdin(false).stdout(true).stderr(false);
    let mut attached = pods.exec(pod, command, &params).await?;
    let mut output = String::new();
    if let Some(mut stdout) = attached.stdout() {
        stdout
            .read_to_string(&mut output)
            .await
            .map_err(Error::io(format!("reading command output from {pod}")))?;
    }
    let _ = attached.join().await;
    Ok(output)
}

/// `probe connect PROTO ADDR:PORT --bytes N` from inside `pod` (3 s timeout).
pub async fn connect(pods: &Api<Pod>, pod: &str, proto: &str, target: std::net::SocketAddr, bytes: usize) -> Result<ConnectResult> {
    let args = ["connect", proto, &target.to_string(), "--timeout-ms", "3000", "--bytes", &bytes.to_string()].map(str::to_string);
    parse(&exec(pods, pod, &args).await?, pod)
}

/// One run of `probe connect`: `count` connections to `target` at once (or with their starts spread
/// over `spread`), each given `timeout`. The one place the harness writes the probe's command line,
/// for pods and for the outside host alike.
#[derive(Debug, Clone, Copy)]
pub struct Dial {
    pub proto: &'static str,
    pub target: std::net::SocketAddr,
    pub bytes: usize,
    pub count: usize,
    pub timeout: Duration,
    pub spread: Duration,
}

impl Dial {
    /// `count` connections at once, each with the usual timeout.
    pub fn at_once(proto: &'static str, target: std::net::SocketAddr, bytes: usize, count: usize) -> Self {
        Self { proto, target, bytes, count, timeout: CONNECT_TIMEOUT, spread: Duration::ZERO }
    }

    /// The probe's command line (`/usr/local/bin/probe connect ...`).
    pub fn command(&self) -> Vec<String> {
        let millis = |d: Duration| d.as_millis().to_string();
        [PROBE_BINARY, "connect", self.proto, &self.target.to_string(), "--timeout-ms", &millis(self.timeout), "--bytes", &self.bytes.to_string(), "--count", &self.count.to_string(), "--spread-ms", &millis(self.spread)]
            .map(str::to_string)
            .to_vec()
    }
}

/// How long a probe connection may take before it counts as unanswered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `dial` inside `pod`; one result per connection.
pub async fn connect_batch(pods: &Api<Pod>, pod: &str, dial: &Dial) -> Result<Vec<ConnectResult>> {
    parse(&exec_command(pods, pod, dial.command()).await?, pod)
}

/// `probe resolve NAME TYPE [--server IP]` from inside `pod`; without a server, the pod's resolv.conf.
pub async fn resolve(pods: &Api<Pod>, pod: &str, name: &str, qtype: &str, server: Option<std::net::IpAddr>) -> Result<ResolveResult> {
    let mut args = vec!["resolve".to_string(), name.into(), qtype.into()];
    if let Some(server) = server {
        args.extend(["--server".into(), server.to_string()]);
    }
    parse(&exec(pods, pod, &args).await?, pod)
}

fn parse<T: for<'de> Deserialize<'de>>(out: &str, pod: &str) -> Result<T> {
    serde_json::from_str(out.trim()).map_err(|source| Error::Probe { pod: pod.into(), output: out.trim().into(), source })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn a_probe_pod_is_ready_once_it_accepts_and_never_probed_after() {
        let pod = super::probe_pod("client", "node", &[("role", "client")], false);
        let spec = pod.spec.expect("the probe pod's JSON is a PodSpec");
        let container = &spec.containers[0];
        let startup = container.startup_probe.as_ref().and_then(|p| p.tcp_socket.as_ref()).map(|t| t.port.clone());
        assert_eq!(startup, Some(IntOrString::Int(i32::from(super::PROBE_PORT))));
        assert!(container.readiness_probe.is_none(), "{:?}", container.readiness_probe);
    }

    #[test]
    fn the_variants_change_only_what_they_are_for() {
        let host = super::host_network_probe_pod("host-server", "node", 31000).spec.expect("a PodSpec");
        let container = &host.containers[0];
        assert_eq!((host.host_network, container.command.as_ref().map(|c| c.join(" "))), (Some(true), Some(format!("{} serve --port 31000", super::PROBE_BINARY))));
        assert_eq!(container.startup_probe.as_ref().and_then(|p| p.tcp_socket.as_ref()).map(|t| t.port.clone()), Some(IntOrString::Int(31000)));
        assert_eq!(container.ports, None);
        let port = super::host_port_probe_pod("host-port-0", "node", &[("role", "host-port")], 31002).spec.expect("a PodSpec");
        let ports: Vec<(i32, Option<i32>, Option<String>)> = port.containers[0].ports.iter().flatten().map(|p| (p.container_port, p.host_port, p.protocol.clone())).collect();
        let probe_port = i32::from(super::PROBE_PORT);
        assert_eq!(ports, [(probe_port, Some(31002), Some("TCP".into())), (probe_port, Some(31002), Some("UDP".into()))]);
        let sctp = super::sctp_probe_pod("sctp-client", "node", &[("role", "sctp-client")]).spec.expect("a PodSpec");
        let security = sctp.containers[0].security_context.clone().expect("a securityContext");
        assert_eq!((security.run_as_user, security.capabilities.and_then(|c| c.add)), (Some(0), Some(vec!["NET_RAW".to_string()])));
    }

    fn pod(name: &str, phase: &str, ready: bool, waiting: Option<&str>) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": waiting.map(|reason| vec![serde_json::json!({
                    "name": "probe", "image": "probe", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": "no such host"}}
                })]).unwrap_or_default()
            }
        }))
        .expect("a Pod")
    }

    #[test]
    fn pods_in_one_state_are_named_together_and_a_missing_one_is_said() {
        let listed = [
            pod("server-0", "Pending", false, Some("ImagePullBackOff")),
            pod("client", "Running", true, None),
            pod("client-a", "Pending", false, Some("ImagePullBackOff")),
            pod("update-0", "Running", false, None),
        ];
        let got = super::all_ready(&listed, &["client", "server-0", "client-a", "update-0", "host-server"]);
        assert_eq!(
            got.map(|pods| pods.len()),
            Err("server-0, client-a: Pending, probe waiting: ImagePullBackOff no such host; update-0: Running; host-server: not found".to_string())
        );
    }

    #[test]
    fn the_named_pods_are_returned_once_each_is_ready() {
        let listed = [pod("client", "Running", true, None), pod("other", "Pending", false, None), pod("server", "Running", true, None)];
        let got = super::all_ready(&listed, &["client", "server"]).map(|pods| pods.iter().filter_map(|p| p.metadata.name.clone()).collect::<Vec<_>>());
        assert_eq!(got, Ok(vec!["client".to_string(), "server".to_string()]));
    }
}
