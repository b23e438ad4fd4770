//! The data-plane suite: node and pod addressing, EndpointSlices, connectivity and DNS, each check
//! run once per family of the cluster and named with it (`D12/udp-ipv6`), as cilium-cli names its
//! actions. The table (`suites/dataplane/*.yaml`) chooses which checks run in which modes; the checks
//! themselves are code, since each one is a small protocol.
//!
//! The fixture puts every client on the control-plane node and every server on a worker, so all pod
//! traffic crosses nodes and a fault on one path fails the same checks every time.

use crate::error::{Error, Result};
use crate::mode::{IpFamily, Mode};
use crate::objects::{internal_ips, of_family, pod_ips};
use crate::probe_pod::{self, PROBE_PORT};
use crate::scenario::LoadError;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use reports::{CaseResult, Event, Status};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The hostNetwork probes share the node's ports with everything else there, a previous run's
/// terminating pods included: each run picks its pair of ports in this range.
const HOST_PORT_RANGE: std::ops::Range<u16> = 20000..29998;

/// How long a connection check keeps trying while the data plane converges.
const CONVERGENCE: Duration = Duration::from_secs(10);

/// Every check kind a data-plane row may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    NodeInternalIps,
    NodePodCidrs,
    PodIps,
    HostIps,
    HostNetworkPodIps,
    DownwardApiPodIps,
    EtcHosts,
    PodToPod,
    ServicePorts,
    EndpointSlices,
    LegacyEndpoints,
    PodToClusterIp,
    Sctp,
    NodeToClusterIp,
    NodeToNodePort,
    Hairpin,
    EndpointUpdate,
    SessionAffinity,
    LargePayload,
    HostNetworkEndpoints,
    DnsClusterIp,
    DnsHeadless,
    ResolvConf,
    NodePortEveryFamily,
    ExternalNodePort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Http,
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Udp => "udp",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataplaneFile {
    suite: Spanned<String>,
    group: String,
    scenarios: Vec<DataplaneRowFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataplaneRowFile {
    id: Spanned<String>,
    title: String,
    check: Check,
    #[serde(default)]
    protocols: Vec<Protocol>,
    #[serde(default)]
    modes: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    note: Option<String>,
}

/// A loaded data-plane row.
#[derive(Debug, Clone)]
pub struct DataplaneRow {
    pub suite: String,
    pub group: String,
    pub id: String,
    pub title: String,
    pub check: Check,
    pub protocols: Vec<Protocol>,
    pub modes: Vec<Mode>,
    pub note: Option<String>,
}

/// Parses a data-plane table (a file whose `suite:` is `dataplane`).
pub fn parse_file(name: &str, text: &str) -> std::result::Result<Vec<DataplaneRow>, LoadError> {
    let file: DataplaneFile = serde_saphyr::from_str(text).map_err(|e| crate::scenario::load_error(name, text, &e))?;
    let mut seen = BTreeSet::new();
    let mut rows = Vec::new();
    for row in file.scenarios {
        let at = |field: &str, message: String| LoadError {
            file: name.into(),
            line: row.id.referenced.line(),
            column: row.id.referenced.column(),
            field: field.into(),
            message,
        };
        if !seen.insert(row.id.value.clone()) {
            return Err(at("id", format!("duplicate id '{}'", row.id.value)));
        }
        let modes = match &row.modes {
            None => Mode::ALL.to_vec(),
            Some(m) => m
                .value
                .iter()
                .map(|n| n.parse::<Mode>().map_err(|e| at("modes", e.to_string())))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        };
        let protocols = if row.protocols.is_empty() { vec![Protocol::Tcp] } else { row.protocols.clone() };
        rows.push(DataplaneRow {
            suite: file.suite.value.clone(),
            group: file.group.clone(),
            id: row.id.value.clone(),
            title: row.title.clone(),
            check: row.check,
            protocols,
            modes,
            note: row.note.clone(),
        });
    }
    Ok(rows)
}

/// One verdict of an action, before it becomes a case.
struct Verdict {
    action: String,
    status: Status,
    expected: String,
    actual: String,
    message: String,
}

fn pass(action: String, expected: impl Into<String>, actual: impl Into<String>) -> Verdict {
    Verdict { action, status: Status::Passed, expected: expected.into(), actual: actual.into(), message: String::new() }
}

fn fail(action: String, expected: impl Into<String>, actual: impl Into<String>) -> Verdict {
    let actual = actual.into();
    Verdict { action, status: Status::Failed, expected: expected.into(), message: actual.clone(), actual }
}

fn skip(action: String, reason: impl Into<String>) -> Verdict {
    Verdict { action, status: Status::Skipped, expected: String::new(), actual: String::new(), message: reason.into() }
}

fn verdict(action: String, ok: bool, expected: impl Into<String>, actual: impl Into<String>) -> Verdict {
    if ok { pass(action, expected, actual) } else { fail(action, expected, actual) }
}

/// Everything the checks talk to, created once per run in one labelled namespace.
pub struct Fixture {
    client: Client,
    pub namespace: String,
    mode: Mode,
    pods: Api<Pod>,
    control_plane: Node,
    worker: Node,
    nodes: Vec<Node>,
    /// Name of the docker network the KIND nodes are on, when they are KIND nodes on this host.
    docker_network: Option<String>,
    /// The hostNetwork server's port; the hostNetwork client serves on the next one.
    host_port: u16,
    started: Instant,
}




/// A stable name for a node in action names: its role, numbered when a role repeats
/// (`control-plane`, `worker`, `worker2`), so case names do not change with cluster names.
fn node_label(nodes: &[Node], node: &Node) -> String {
    let is_cp = |n: &Node| n.metadata.labels.as_ref().is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"));
    let role = if is_cp(node) { "control-plane" } else { "worker" };
    let index = nodes.iter().filter(|n| is_cp(n) == is_cp(node)).position(|n| n.metadata.name == node.metadata.name).unwrap_or(0);
    if index == 0 { role.to_string() } else { format!("{role}{}", index + 1) }
}

fn name_of<K: kube::Resource>(obj: &K) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

fn service_ips(svc: &Service) -> Vec<String> {
    svc.spec.as_ref().and_then(|s| s.cluster_ips.clone()).unwrap_or_default()
}

fn json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Environment(format!("building a fixture object: {e}")))
}

impl Fixture {
    /// Creates the namespace, probe pods and Services, and waits until they are ready.
    pub async fn create(client: &Client, mode: Mode, timeout: Duration) -> Result<Self> {
        let started = Instant::now();
        let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
        let is_control_plane =
            |n: &Node| n.metadata.labels.as_ref().is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"));
        let control_plane = nodes.iter().find(|n| is_control_plane(n)).or(nodes.first()).cloned();
        let worker = nodes.iter().find(|n| !is_control_plane(n)).cloned();
        let (Some(control_plane), Some(worker)) = (control_plane, worker) else {
            return Err(Error::Environment("the data-plane suite needs two nodes: a control-plane and a worker".into()));
        };
        let namespace = probe_pod::create_namespace(client, "dualstack-dataplane", &crate::retry::Retries::default()).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let fixture = Self {
            client: client.clone(),
            namespace: namespace.clone(),
            mode,
            pods: pods.clone(),
            docker_network: docker_network_of(&name_of(&control_plane)).await,
            control_plane,
            worker,
            nodes,
            host_port: HOST_PORT_RANGE.start + rand::random::<u16>() % (HOST_PORT_RANGE.end - HOST_PORT_RANGE.start),
            started,
        };
        if let Err(e) = fixture.populate(timeout).await {
            probe_pod::delete_namespace(client, &namespace).await;
            return Err(e);
        }
        Ok(fixture)
    }

    async fn populate(&self, timeout: Duration) -> Result<()> {
        let (cp, worker) = (name_of(&self.control_plane), name_of(&self.worker));
        let mut client_pod = probe_pod::probe_pod("client", &cp, &[("role", "client")], false);
        if let Some(container) = client_pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            container.env = Some(json(serde_json::json!([
                {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}
            ]))?);
        }
        let mut host_server = probe_pod::probe_pod("host-server", &worker, &[("role", "host-server")], true);
        if let Some(container) = host_server.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            container.command = Some(vec!["/usr/local/bin/probe".into(), "serve".into(), "--port".into(), self.host_port.to_string()]);
            container.readiness_probe = Some(json(serde_json::json!({"tcpSocket": {"port": self.host_port}, "periodSeconds": 1}))?);
            container.ports = None;
        }
        let mut host_client = probe_pod::probe_pod("host-client", &cp, &[("role", "host-client")], true);
        if let Some(container) = host_client.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            container.command = Some(vec!["/usr/local/bin/probe".into(), "serve".into(), "--port".into(), (self.host_port + 1).to_string()]);
            container.readiness_probe = Some(json(serde_json::json!({"tcpSocket": {"port": self.host_port + 1}, "periodSeconds": 1}))?);
            container.ports = None;
        }
        let pods = [
            client_pod,
            probe_pod::probe_pod("server-0", &worker, &[("role", "server"), ("hairpin", "yes")], false),
            probe_pod::probe_pod("server-1", &worker, &[("role", "server")], false),
            host_server,
            host_client,
        ];
        for pod in &pods {
            self.pods.create(&PostParams::default(), pod).await?;
        }
        let dual = if self.mode.is_dual() { "RequireDualStack" } else { "SingleStack" };
        let ports = serde_json::json!([
            {"name": "tcp", "port": 80, "targetPort": PROBE_PORT, "protocol": "TCP"},
            {"name": "udp", "port": 80, "targetPort": PROBE_PORT, "protocol": "UDP"}
        ]);
        let mut services = vec![
            serde_json::json!({"metadata": {"name": "echo"}, "spec": {"type": "NodePort", "ipFamilyPolicy": dual,
                "selector": {"role": "server"}, "ports": ports}}),
            serde_json::json!({"metadata": {"name": "echo-headless"}, "spec": {"clusterIP": "None", "ipFamilyPolicy": dual,
                "selector": {"role": "server"}, "ports": ports}}),
            serde_json::json!({"metadata": {"name": "echo-affinity"}, "spec": {"ipFamilyPolicy": dual, "sessionAffinity": "ClientIP",
                "selector": {"role": "server"}, "ports": ports}}),
            serde_json::json!({"metadata": {"name": "echo-hairpin"}, "spec": {"ipFamilyPolicy": dual,
                "selector": {"hairpin": "yes"}, "ports": ports}}),
            serde_json::json!({"metadata": {"name": "echo-host"}, "spec": {"ipFamilyPolicy": dual, "selector": {"role": "host-server"},
                "ports": [{"name": "tcp", "port": 80, "targetPort": self.host_port, "protocol": "TCP"},
                          {"name": "udp", "port": 80, "targetPort": self.host_port, "protocol": "UDP"}]}}),
        ];
        for &family in self.mode.families() {
            services.push(serde_json::json!({"metadata": {"name": format!("echo-only-{}", family.slug())},
                "spec": {"ipFamilyPolicy": "SingleStack", "ipFamilies": [family.api_name()], "selector": {"role": "server"}, "ports": ports}}));
        }
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        for svc in services {
            api.create(&PostParams::default(), &json(svc)?).await?;
        }
        let names: Vec<&str> = pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        probe_pod::wait_pods_ready(&self.pods, &names, timeout).await?;
        // Services are usable once their EndpointSlices list both servers in every family.
        let deadline = Instant::now() + timeout;
        loop {
            let servers = self.server_ips().await?;
            let mut missing = Vec::new();
            for &family in self.mode.families() {
                let want: BTreeSet<String> = servers.iter().filter_map(|ips| of_family(ips, family)).map(|ip| ip.to_string()).collect();
                let have = self.slice_addresses("echo", family).await?;
                if have != want {
                    missing.push(format!("{family} slice of echo lists {have:?}, pods have {want:?}"));
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "EndpointSlices of the echo Service".into(),
                    seconds: timeout.as_secs(),
                    last_seen: missing.join("; "),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn delete(&self) {
        probe_pod::delete_namespace(&self.client, &self.namespace).await;
    }

    /// The fixture's pods (node, state, IPs) and the namespace's latest events, for failed cases.
    async fn diagnostics(&self) -> String {
        let mut out = format!("fixture namespace {} after the failures:\n", self.namespace);
        if let Ok(pods) = self.pods.list(&ListParams::default()).await {
            for pod in pods.items {
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                out.push_str(&format!("  pod {} on {node}: {}; podIPs {:?}\n", name_of(&pod), probe_pod::pod_state(&pod), pod_ips(&pod)));
            }
        }
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Ok(list) = events.list(&ListParams::default()).await {
            let mut items = list.items;
            items.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
            for e in items.iter().rev().take(30).rev() {
                let object = e.involved_object.name.clone().unwrap_or_default();
                out.push_str(&format!(
                    "  event {} {} {object}: {}\n",
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default().trim()
                ));
            }
        }
        out
    }

    async fn pod(&self, name: &str) -> Result<Pod> {
        Ok(self.pods.get(name).await?)
    }

    async fn server_ips(&self) -> Result<Vec<Vec<String>>> {
        let list = self.pods.list(&ListParams::default().labels("role=server")).await?;
        Ok(list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(pod_ips).collect())
    }

    async fn service(&self, name: &str) -> Result<Service> {
        Ok(Api::<Service>::namespaced(self.client.clone(), &self.namespace).get(name).await?)
    }

    async fn slices(&self, service: &str) -> Result<Vec<EndpointSlice>> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await?.items)
    }

    /// Ready endpoint addresses of `service` in its `family` slices.
    async fn slice_addresses(&self, service: &str, family: IpFamily) -> Result<BTreeSet<String>> {
        Ok(self
            .slices(service)
            .await?
            .iter()
            .filter(|s| s.address_type == family.api_name())
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .flat_map(|e| e.addresses.iter().cloned())
            .collect())
    }

    async fn connect(&self, from: &str, proto: &str, target: SocketAddr, bytes: usize) -> Result<probe_pod::ConnectResult> {
        probe_pod::connect(&self.pods, from, proto, target, bytes).await
    }

    /// Runs a connection and judges it: answered, and by one of `responders`. kube-proxy and the CNI
    /// program the data plane asynchronously after the API objects exist, so a connection is retried
    /// for up to CONVERGENCE; the check fails when no attempt in that window got the right answer.
    async fn expect_answer(&self, action: String, from: &str, proto: Protocol, target: SocketAddr, bytes: usize, responders: &[String]) -> Result<Verdict> {
        let expected = format!("{from} -> {target} over {} answered by one of {responders:?}", proto.name());
        let deadline = Instant::now() + CONVERGENCE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let got = self.connect(from, proto.name(), target, bytes).await?;
            let failure = match (got.ok, got.answer) {
                (true, Some(answer)) if responders.contains(&answer.hostname) => {
                    let retried = if attempts > 1 { format!(" on attempt {attempts}") } else { String::new() };
                    return Ok(pass(action, expected, format!("answered by {} (saw client {}){retried}", answer.hostname, answer.client)));
                }
                (true, Some(answer)) => format!("wrong responder {} (saw client {})", answer.hostname, answer.client),
                (_, _) => format!("{from} -> {target}: {}", got.error.unwrap_or_else(|| "no answer".into())),
            };
            if Instant::now() >= deadline {
                return Ok(fail(action, expected, format!("{failure} ({attempts} attempts over {}s)", CONVERGENCE.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn raw_exec(&self, pod: &str, command: &[&str]) -> Result<String> {
        probe_pod::exec_command(&self.pods, pod, command.iter().map(|s| s.to_string()).collect()).await
    }

    fn worker_name(&self) -> String {
        name_of(&self.worker)
    }

    fn servers(&self) -> Vec<String> {
        vec!["server-0".into(), "server-1".into()]
    }

    fn cluster_ip(svc: &Service, family: IpFamily) -> Option<IpAddr> {
        of_family(&service_ips(svc), family)
    }

    fn node_port(svc: &Service, protocol: &str) -> Option<u16> {
        svc.spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.protocol.as_deref() == Some(protocol)))
            .and_then(|p| p.node_port)
            .and_then(|n| u16::try_from(n).ok())
    }
}

/// The docker network of a KIND node container named `node` on this host, if there is one.
async fn docker_network_of(node: &str) -> Option<String> {
    let out = tokio::process::Command::new("docker")
        .args(["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", node])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(str::to_string)
}

/// The verdict on one family of an ordered list of addresses or CIDRs: exactly one entry of that
/// family, at the family's position in the mode. Each family's action judges its own family only.
fn ordered(action: String, mode: Mode, family: IpFamily, subject: &str, values: &[String]) -> Verdict {
    let position = mode.families().iter().position(|f| *f == family).unwrap_or(0);
    let ok = crate::objects::family_at_its_position(values, mode, family);
    verdict(action, ok, format!("{subject}: one {family} entry, at position {position}"), format!("{subject}: {values:?}"))
}

impl Fixture {
    /// Runs one row for one family; returns one verdict per protocol (or one when protocol-free).
    async fn run_check(&self, row: &DataplaneRow, family: IpFamily) -> Result<Vec<Verdict>> {
        let slug = family.slug();
        let named = |what: &str| format!("{}/{what}-{slug}", row.id);
        let plain = || format!("{}/{slug}", row.id);
        let mode = self.mode;
        let mut out = Vec::new();
        match row.check {
            Check::NodeInternalIps => {
                for node in &self.nodes {
                    let (n, label) = (name_of(node), node_label(&self.nodes, node));
                    out.push(ordered(format!("{}/{label}-{slug}", row.id), mode, family, &format!("node {n} InternalIPs"), &internal_ips(node)));
                }
            }
            Check::NodePodCidrs => {
                for node in &self.nodes {
                    let (n, label) = (name_of(node), node_label(&self.nodes, node));
                    let spec = node.spec.clone().unwrap_or_default();
                    let cidrs = spec.pod_cidrs.unwrap_or_default();
                    let mut v = ordered(format!("{}/{label}-{slug}", row.id), mode, family, &format!("node {n} podCIDRs"), &cidrs);
                    if v.status == Status::Passed && spec.pod_cidr.as_ref() != cidrs.first() {
                        v = fail(v.action, "spec.podCIDR == spec.podCIDRs[0]", format!("podCIDR {:?}", spec.pod_cidr));
                    }
                    out.push(v);
                }
            }
            Check::PodIps => {
                let pod = self.pod("client").await?;
                let ips = pod_ips(&pod);
                let mut v = ordered(plain(), mode, family, "client podIPs", &ips);
                let primary = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
                if v.status == Status::Passed && primary.as_ref() != ips.first() {
                    v = fail(v.action, "status.podIP == status.podIPs[0]", format!("podIP {primary:?}, podIPs {ips:?}"));
                }
                out.push(v);
            }
            Check::HostIps => {
                let pod = self.pod("client").await?;
                let host_ips: Vec<String> =
                    pod.status.as_ref().and_then(|s| s.host_ips.clone()).unwrap_or_default().into_iter().map(|h| h.ip).collect();
                let node_ips = internal_ips(&self.control_plane);
                let mut v = ordered(plain(), mode, family, "client hostIPs", &host_ips);
                if v.status == Status::Passed && of_family(&host_ips, family) != of_family(&node_ips, family) {
                    v = fail(v.action, format!("hostIPs equal the node's InternalIPs {node_ips:?}"), format!("hostIPs {host_ips:?}"));
                }
                out.push(v);
            }
            Check::HostNetworkPodIps => {
                let pod = self.pod("host-client").await?;
                let ips = pod_ips(&pod);
                let node_ips = internal_ips(&self.control_plane);
                let ok = of_family(&ips, family).is_some() && of_family(&ips, family) == of_family(&node_ips, family);
                out.push(verdict(plain(), ok, format!("hostNetwork pod's {family} podIP is the node's {family} InternalIP ({node_ips:?})"), format!("podIPs {ips:?}")));
            }
            Check::DownwardApiPodIps => {
                let pod = self.pod("client").await?;
                let ips = pod_ips(&pod);
                let env = self.raw_exec("client", &["printenv", "POD_IPS"]).await?;
                let seen: Vec<String> = env.trim().split(',').map(str::to_string).collect();
                let ok = of_family(&seen, family).is_some() && seen == ips;
                out.push(verdict(plain(), ok, format!("POD_IPS from status.podIPs is {}", ips.join(",")), format!("POD_IPS={}", env.trim())));
            }
            Check::EtcHosts => {
                let pod = self.pod("client").await?;
                let hosts = self.raw_exec("client", &["cat", "/etc/hosts"]).await?;
                let ip = of_family(&pod_ips(&pod), family);
                let ok = ip.is_some_and(|ip| {
                    hosts.lines().any(|l| {
                        let mut words = l.split_whitespace();
                        words.next() == Some(ip.to_string().as_str()) && words.any(|w| w == "client")
                    })
                });
                out.push(verdict(plain(), ok, format!("/etc/hosts maps the {family} pod IP {ip:?} to client"), hosts.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" | ")));
            }
            Check::PodToPod => {
                let server = self.pod("server-0").await?;
                for &proto in &row.protocols {
                    match of_family(&pod_ips(&server), family) {
                        Some(ip) => out.push(self.expect_answer(named(proto.name()), "client", proto, SocketAddr::new(ip, PROBE_PORT), 16, &["server-0".into()]).await?),
                        None => out.push(fail(named(proto.name()), format!("server-0 has a {family} IP"), format!("podIPs {:?}", pod_ips(&server)))),
                    }
                }
            }
            Check::ServicePorts => {
                let svc = self.service("echo").await?;
                let spec = svc.spec.clone().unwrap_or_default();
                let families = spec.ip_families.clone().unwrap_or_default();
                let ports = spec.ports.clone().unwrap_or_default();
                let ok = ports.len() == 2 && families.iter().any(|f| f == family.api_name()) && Fixture::cluster_ip(&svc, family).is_some()
                    && ports.iter().all(|p| p.node_port.is_some());
                out.push(verdict(plain(), ok, format!("NodePort Service echo: 2 ports with nodePorts, a {family} clusterIP"),
                    format!("ports {}, ipFamilies {families:?}, clusterIPs {:?}", ports.len(), service_ips(&svc))));
            }
            Check::EndpointSlices => {
                let servers = self.server_ips().await?;
                let want: BTreeSet<String> = servers.iter().filter_map(|ips| of_family(ips, family)).map(|ip| ip.to_string()).collect();
                let have = self.slice_addresses("echo", family).await?;
                out.push(verdict(named("echo"), have == want && !want.is_empty(), format!("{family} EndpointSlice of echo lists {want:?}"), format!("{have:?}")));
                // A single-family Service has slices of its family only.
                let single = format!("echo-only-{slug}");
                let slices = self.slices(&single).await?;
                let types: BTreeSet<String> = slices.iter().map(|s| s.address_type.clone()).collect();
                let have = self.slice_addresses(&single, family).await?;
                let ok = types == BTreeSet::from([family.api_name().to_string()]) && have == want && !want.is_empty();
                out.push(verdict(named("single-family"), ok, format!("{single} has only {family} slices listing {want:?}"), format!("address types {types:?}, addresses {have:?}")));
            }
            Check::LegacyEndpoints => {
                let endpoints = Api::<Endpoints>::namespaced(self.client.clone(), &self.namespace).get("echo").await?;
                let addresses: Vec<String> = endpoints.subsets.unwrap_or_default().iter().flat_map(|s| s.addresses.clone().unwrap_or_default()).map(|a| a.ip).collect();
                let count = addresses.iter().filter(|a| IpFamily::of_text(a) == Some(family)).count();
                let primary = family == mode.primary();
                let ok = if primary { count == 2 } else { count == 0 };
                let expected = if primary { format!("legacy Endpoints hold both servers' {family} (primary) addresses") } else { format!("legacy Endpoints hold no {family} (secondary) address") };
                out.push(verdict(plain(), ok, expected, format!("{addresses:?}")));
            }
            Check::PodToClusterIp => {
                let svc = self.service("echo").await?;
                for &proto in &row.protocols {
                    match Fixture::cluster_ip(&svc, family) {
                        Some(ip) => out.push(self.expect_answer(named(proto.name()), "client", proto, SocketAddr::new(ip, 80), 16, &self.servers()).await?),
                        None => out.push(fail(named(proto.name()), format!("echo has a {family} clusterIP"), format!("{:?}", service_ips(&svc)))),
                    }
                }
            }
            Check::Sctp => {
                let supported = probe_pod::exec(&self.pods, "client", &["sctp-supported".into()]).await?;
                if supported.contains("\"ok\":false") {
                    out.push(skip(named("sctp"), format!("the kernel cannot open SCTP sockets: {}", supported.trim())));
                } else {
                    let server = self.pod("server-0").await?;
                    let target = of_family(&pod_ips(&server), family).map(|ip| SocketAddr::new(ip, PROBE_PORT));
                    match target {
                        Some(t) => {
                            let got = self.connect("client", "sctp", t, 16).await?;
                            let responder = got.answer.map(|a| a.hostname);
                            out.push(verdict(named("sctp"), got.ok && responder.as_deref() == Some("server-0"), format!("client -> {t} over sctp answered by server-0"), format!("{responder:?} {}", got.error.unwrap_or_default())));
                        }
                        None => out.push(fail(named("sctp"), format!("server-0 has a {family} IP"), "none")),
                    }
                }
            }
            Check::NodeToClusterIp => {
                let svc = self.service("echo").await?;
                for &proto in &row.protocols {
                    match Fixture::cluster_ip(&svc, family) {
                        Some(ip) => out.push(self.expect_answer(named(proto.name()), "host-client", proto, SocketAddr::new(ip, 80), 16, &self.servers()).await?),
                        None => out.push(fail(named(proto.name()), format!("echo has a {family} clusterIP"), "none")),
                    }
                }
            }
            Check::NodeToNodePort => {
                let svc = self.service("echo").await?;
                for &proto in &row.protocols {
                    let port = Fixture::node_port(&svc, if proto == Protocol::Udp { "UDP" } else { "TCP" });
                    match (of_family(&internal_ips(&self.worker), family), port) {
                        (Some(ip), Some(port)) => out.push(self.expect_answer(named(proto.name()), "host-client", proto, SocketAddr::new(ip, port), 16, &self.servers()).await?),
                        (ip, port) => out.push(fail(named(proto.name()), format!("a {family} worker address and a nodePort"), format!("{ip:?} {port:?}"))),
                    }
                }
            }
            Check::Hairpin => {
                let svc = self.service("echo-hairpin").await?;
                for &proto in &row.protocols {
                    match Fixture::cluster_ip(&svc, family) {
                        Some(ip) => out.push(self.expect_answer(named(proto.name()), "server-0", proto, SocketAddr::new(ip, 80), 16, &["server-0".into()]).await?),
                        None => out.push(fail(named(proto.name()), format!("echo-hairpin has a {family} clusterIP"), "none")),
                    }
                }
            }
            Check::SessionAffinity => {
                let svc = self.service("echo-affinity").await?;
                for &proto in &row.protocols {
                    let Some(ip) = Fixture::cluster_ip(&svc, family) else {
                        out.push(fail(named(proto.name()), format!("echo-affinity has a {family} clusterIP"), "none"));
                        continue;
                    };
                    // Reachable first (bounded convergence), then 8 requests must stick to one endpoint.
                    let reachable = self.expect_answer(named(proto.name()), "client", proto, SocketAddr::new(ip, 80), 16, &self.servers()).await?;
                    if reachable.status != Status::Passed {
                        out.push(reachable);
                        continue;
                    }
                    let mut responders = Vec::new();
                    let mut errors = Vec::new();
                    for _ in 0..8 {
                        let got = self.connect("client", proto.name(), SocketAddr::new(ip, 80), 16).await?;
                        match got.answer {
                            Some(a) => responders.push(a.hostname),
                            None => errors.push(got.error.unwrap_or_default()),
                        }
                    }
                    let distinct: BTreeSet<&String> = responders.iter().collect();
                    out.push(verdict(named(proto.name()), errors.is_empty() && distinct.len() == 1,
                        format!("8 requests to {} over {} all answered by one endpoint", SocketAddr::new(ip, 80), proto.name()),
                        format!("responders {distinct:?}, errors {errors:?}")));
                }
            }
            Check::LargePayload => {
                let svc = self.service("echo").await?;
                for &proto in &row.protocols {
                    // 1 MiB over TCP; over UDP a datagram larger than the 1500-byte MTU, so it is fragmented.
                    let bytes = if proto == Protocol::Udp { 8000 } else { 1 << 20 };
                    match Fixture::cluster_ip(&svc, family) {
                        Some(ip) => out.push(self.expect_answer(named(proto.name()), "client", proto, SocketAddr::new(ip, 80), bytes, &self.servers()).await?),
                        None => out.push(fail(named(proto.name()), format!("echo has a {family} clusterIP"), "none")),
                    }
                }
            }
            Check::HostNetworkEndpoints => {
                let svc = self.service("echo-host").await?;
                for &proto in &row.protocols {
                    match Fixture::cluster_ip(&svc, family) {
                        Some(ip) => out.push(self.expect_answer(named(proto.name()), "client", proto, SocketAddr::new(ip, 80), 16, &[self.worker_name()]).await?),
                        None => out.push(fail(named(proto.name()), format!("echo-host has a {family} clusterIP"), "none")),
                    }
                }
            }
            Check::DnsClusterIp | Check::DnsHeadless => {
                let (service, qtype) = (if row.check == Check::DnsClusterIp { "echo" } else { "echo-headless" }, if family == IpFamily::IPv4 { "A" } else { "AAAA" });
                let want: BTreeSet<IpAddr> = if row.check == Check::DnsClusterIp {
                    Fixture::cluster_ip(&self.service("echo").await?, family).into_iter().collect()
                } else {
                    self.server_ips().await?.iter().filter_map(|ips| of_family(ips, family)).collect()
                };
                let name = format!("{service}.{}.svc.cluster.local", self.namespace);
                let got = probe_pod::resolve(&self.pods, "client", &name, qtype, None).await?;
                let have: BTreeSet<IpAddr> = got.addresses.iter().copied().collect();
                out.push(verdict(named(&qtype.to_lowercase()), got.ok && have == want && !want.is_empty(),
                    format!("{qtype} {name} via {} = {want:?}", got.server), format!("{have:?} rcode {:?} {}", got.rcode, got.error.unwrap_or_default())));
            }
            Check::ResolvConf => {
                let conf = self.raw_exec("client", &["cat", "/etc/resolv.conf"]).await?;
                let dns = Api::<Service>::namespaced(self.client.clone(), "kube-system").get("kube-dns").await?;
                let dns_ips = service_ips(&dns);
                let nameservers: Vec<String> = conf.lines().filter_map(|l| l.strip_prefix("nameserver")).map(|s| s.trim().to_string()).collect();
                let searches = format!("{}.svc.cluster.local", self.namespace);
                // A nameserver of this family is expected where kube-dns has an address of it.
                let want = of_family(&dns_ips, family);
                let ok = conf.contains(&searches) && of_family(&nameservers, family) == want;
                if want.is_none() {
                    out.push(skip(plain(), format!("kube-dns has no {family} address ({dns_ips:?}), so pods get no {family} nameserver")));
                } else {
                    out.push(verdict(plain(), ok, format!("nameserver {want:?} (kube-dns) and search {searches}"), conf.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" | ")));
                }
            }
            Check::NodePortEveryFamily => {
                let svc = self.service("echo").await?;
                for &proto in &row.protocols {
                    let port = Fixture::node_port(&svc, if proto == Protocol::Udp { "UDP" } else { "TCP" });
                    for node in &self.nodes {
                        let n = name_of(node);
                        let action = format!("{}/{}-{}-{slug}", row.id, node_label(&self.nodes, node), proto.name());
                        match (of_family(&internal_ips(node), family), port) {
                            (Some(ip), Some(port)) => out.push(self.expect_answer(action, "client", proto, SocketAddr::new(ip, port), 16, &self.servers()).await?),
                            (ip, port) => out.push(fail(action, format!("a {family} address on {n} and a nodePort"), format!("{ip:?} {port:?}"))),
                        }
                    }
                }
            }
            Check::ExternalNodePort => {
                let svc = self.service("echo").await?;
                for &proto in &row.protocols {
                    let port = Fixture::node_port(&svc, if proto == Protocol::Udp { "UDP" } else { "TCP" });
                    let action = named(proto.name());
                    match (&self.docker_network, of_family(&internal_ips(&self.worker), family), port) {
                        (None, _, _) => out.push(skip(action, "the nodes are not KIND containers on this host, so no client can join their docker network")),
                        (Some(network), Some(ip), Some(port)) => out.push(external_connect(action, network, proto, SocketAddr::new(ip, port), &self.servers()).await),
                        (_, ip, port) => out.push(fail(action, format!("a {family} worker address and a nodePort"), format!("{ip:?} {port:?}"))),
                    }
                }
            }
            Check::EndpointUpdate => out.extend(self.endpoint_update(row, family).await?),
        }
        Ok(out)
    }

    /// After a server is deleted, its addresses leave the slices and only the other server answers.
    async fn endpoint_update(&self, row: &DataplaneRow, family: IpFamily) -> Result<Vec<Verdict>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let remaining: BTreeSet<String> = self.pod("server-0").await.map(|p| pod_ips(&p))?.into_iter().filter(|ip| IpFamily::of_text(ip) == Some(family)).collect();
        let mut have = BTreeSet::new();
        while Instant::now() < deadline {
            have = self.slice_addresses("echo", family).await?;
            if have == remaining {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut out = vec![verdict(format!("{}/slices-{}", row.id, family.slug()), have == remaining,
            format!("after server-1 is deleted the {family} slice lists only server-0 {remaining:?}"), format!("{have:?}"))];
        let svc = self.service("echo").await?;
        for &proto in &row.protocols {
            let action = format!("{}/{}-{}", row.id, proto.name(), family.slug());
            let Some(ip) = Fixture::cluster_ip(&svc, family) else { continue };
            // kube-proxy converges a moment after the slice changes: within the bound, 12
            // consecutive answers must come from server-0. With a stale rule still sending half the
            // connections to the deleted pod, a chance streak of 12 has odds of 1 in 4096.
            let target = SocketAddr::new(ip, 80);
            let (mut streak, mut seen) = (0, Vec::new());
            let converge_by = Instant::now() + Duration::from_secs(20);
            while streak < 12 && Instant::now() < converge_by {
                let got = self.connect("client", proto.name(), target, 16).await?;
                match got.answer {
                    Some(a) if a.hostname == "server-0" => streak += 1,
                    Some(a) => {
                        streak = 0;
                        seen.push(format!("answered by {}", a.hostname));
                    }
                    None => {
                        streak = 0;
                        seen.push(got.error.unwrap_or_default());
                    }
                }
            }
            seen.truncate(5);
            out.push(verdict(action, streak >= 12, format!("within 20s, 12 consecutive requests to {target} over {} answered by server-0", proto.name()),
                format!("{streak} consecutive answers by server-0; before that: {}", if seen.is_empty() { "nothing else".to_string() } else { seen.join("; ") })));
        }
        Ok(out)
    }
}

/// A client container on the cluster's docker network (outside every node), started through
/// testcontainers from the probe image, connecting to a NodePort.
async fn external_connect(action: String, network: &str, proto: Protocol, target: SocketAddr, responders: &[String]) -> Verdict {
    use testcontainers::core::ExecCommand;
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};
    let image = probe_pod::probe_image();
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let expected = format!("a container on docker network {network} -> {target} over {} answered by one of {responders:?}", proto.name());
    let container = GenericImage::new(name, tag)
        .with_entrypoint("/usr/local/bin/probe")
        .with_cmd(["serve", "--port", "8080"])
        .with_network(network)
        .start()
        .await;
    let container = match container {
        Ok(c) => c,
        Err(e) => return fail(action, expected, format!("starting the client container: {e}")),
    };
    let command = ExecCommand::new(["/usr/local/bin/probe", "connect", proto.name(), &target.to_string(), "--timeout-ms", "3000"]);
    let output = match container.exec(command).await {
        Ok(mut result) => result.stdout_to_vec().await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
        Err(e) => return fail(action, expected, format!("running the client: {e}")),
    };
    let _ = container.rm().await;
    match serde_json::from_str::<probe_pod::ConnectResult>(output.trim()) {
        Ok(got) => match got.answer {
            Some(a) if got.ok && responders.contains(&a.hostname) => pass(action, expected, format!("answered by {} (saw client {})", a.hostname, a.client)),
            Some(a) => fail(action, expected, format!("wrong responder {}", a.hostname)),
            None => fail(action, expected, got.error.unwrap_or_else(|| "no answer".into())),
        },
        Err(e) => fail(action, expected, format!("client printed {output:?}: {e}")),
    }
}

/// Runs every data-plane row that applies to the cluster's mode and emits one case per action.
pub async fn run_dataplane(
    client: &Client,
    mode: Mode,
    rows: &[DataplaneRow],
    selection: &crate::runner::Selection,
    timeout: Duration,
    after_fixture_hook: Option<&str>,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<Vec<CaseResult>> {
    let case = |row: &DataplaneRow, v: Verdict, duration: Duration, diagnostics: String| CaseResult {
        suite: row.suite.clone(),
        group: row.group.clone(),
        id: v.action,
        title: row.title.clone(),
        mode: mode.name().into(),
        status: v.status,
        duration,
        expected: v.expected,
        actual: v.actual,
        message: v.message,
        diagnostics,
        retried: Vec::new(),
    };
    let mut results = Vec::new();
    let mut runnable = Vec::new();
    for row in rows.iter().filter(|r| selection.in_shard(&r.suite, &r.id)) {
        let skip_reason = if !row.modes.contains(&mode) {
            Some(format!("applies to {} only", row.modes.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")))
        } else {
            selection.excludes_id(&row.suite, &row.id)
        };
        match skip_reason {
            Some(reason) => {
                let r = case(row, skip(row.id.clone(), reason), Duration::ZERO, String::new());
                emit(Event::CaseFinished(r.clone()));
                results.push(r);
            }
            None => runnable.push(row),
        }
    }
    if runnable.is_empty() {
        return Ok(results);
    }
    let fixture = Fixture::create(client, mode, timeout).await?;
    if let Some(hook) = after_fixture_hook {
        // Test-only: the project's fault-injection tests break the cluster here.
        let status = tokio::process::Command::new("sh").args(["-ec", hook]).status().await;
        if !status.is_ok_and(|s| s.success()) {
            fixture.delete().await;
            return Err(Error::Environment(format!("the after-fixture hook failed: {hook}")));
        }
    }
    let diagnostics = format!("fixture namespace {}; clients on {}, servers on {}; ready in {:.1}s",
        fixture.namespace, name_of(&fixture.control_plane), fixture.worker_name(), fixture.started.elapsed().as_secs_f64());
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let failures = &failures;
    // Endpoint updates delete a server, so they run after everything else.
    let (last, first): (Vec<&DataplaneRow>, Vec<&DataplaneRow>) = runnable.into_iter().partition(|r| r.check == Check::EndpointUpdate);
    let run_rows = async |rows: Vec<&DataplaneRow>, concurrency: usize| -> Vec<CaseResult> {
        use futures::StreamExt;
        let jobs: Vec<(&DataplaneRow, IpFamily)> = rows.iter().flat_map(|r| mode.families().iter().map(move |&f| (*r, f))).collect();
        futures::stream::iter(jobs)
            .map(|(row, family)| {
                let fixture = &fixture;
                let diagnostics = &diagnostics;
                async move {
                    let started = Instant::now();
                    let verdicts = match tokio::time::timeout(timeout, fixture.run_check(row, family)).await {
                        Ok(Ok(v)) => v,
                        Ok(Err(e)) => vec![Verdict { action: format!("{}/{}", row.id, family.slug()), status: Status::Error, expected: String::new(), actual: String::new(), message: e.to_string() }],
                        Err(_) => vec![Verdict { action: format!("{}/{}", row.id, family.slug()), status: Status::Error, expected: String::new(), actual: String::new(),
                            message: format!("timed out after {}s", timeout.as_secs()) }],
                    };
                    let each = started.elapsed() / u32::try_from(verdicts.len().max(1)).unwrap_or(1);
                    let cases: Vec<CaseResult> = verdicts.into_iter().map(|v| case(row, v, each, diagnostics.clone())).collect();
                    for c in &cases {
                        if matches!(c.status, Status::Failed | Status::Error) {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        emit(Event::CaseFinished(c.clone()));
                    }
                    cases
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect()
    };
    results.extend(run_rows(first, 8).await);
    if !last.is_empty() {
        let deleted = fixture.pods.delete("server-1", &DeleteParams::default()).await;
        if let Err(e) = deleted {
            fixture.delete().await;
            return Err(e.into());
        }
        results.extend(run_rows(last, 1).await);
    }
    if failures.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        emit(Event::Diagnostics { mode: mode.name().into(), text: fixture.diagnostics().await });
    }
    fixture.delete().await;
    Ok(results)
}
