//! The data-plane fixture: one labelled namespace per mode with the probe pods and Services every
//! action talks to, and the queries the actions make of it. The main client runs on the
//! control-plane node; the servers of each Service are spread over two nodes (server-0 on the first
//! worker, server-1 on the second worker, or on the control-plane node of a two-node cluster), and
//! a second client runs on the last worker, so pod traffic crosses nodes and a fault on one node's
//! path fails the endpoints behind it, every time. Every node has a client pod (for the `connect`
//! rows that place theirs), the first worker a pod with a hostPort, and each `connect` row that
//! dials a Service gets its own (`row-<id>`).

use crate::error::{Error, Result};
use crate::mode::{IpFamily, Mode};
use crate::objects::{internal_ips, is_control_plane, of_family, pod_ips};
use crate::plan::node_labels;
use crate::probe_pod::{self, PROBE_PORT};
use crate::retry::Retries;
use crate::wait::poll;
use super::reach::{Endpoint, Expected, Missing, SERVICE_PORT};
use crate::table::connect::{self, Destination};
use crate::table::dataplane::{Check, DataplaneRow, RowKind};
use super::verdict::listed;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The hostNetwork probes and the hostPort share the node's ports with everything else there, a
/// previous run's terminating pods included: each run picks its three ports in this range.
const HOST_PORT_RANGE: std::ops::Range<u16> = 20000..29997;

/// The endpoint-update action deletes this pod of the `echo-update` Service's two (`update-0`
/// stays); no other action uses them, so the deletion disturbs nothing else.
pub const DELETED_UPDATE_POD: &str = "update-1";
pub const REMAINING_UPDATE_POD: &str = "update-0";

/// The client on the last worker (the main one, `client`, is on the control-plane node).
pub const SECOND_CLIENT: &str = "client-b";
/// The client on the first worker (for rows whose client runs there).
const WORKER_CLIENT: &str = "client-a";
/// The pod serving on the fixture's hostPort, on the first worker.
const HOST_PORT_POD: &str = "host-port-0";
/// The SCTP rows' client, on the control-plane node; their servers (`role=sctp-server`) are on
/// the workers, the first labelled `sctp-peer=yes` for the pod-to-pod row. Only these pods may open
/// raw sockets: the probe's own SCTP needs them where the kernel has no SCTP sockets.
pub const SCTP_CLIENT: &str = "sctp-client";
/// The SCTP rows' Service (SCTP only, so the other rows' Services never carry an SCTP port).
pub const SCTP_SERVICE: &str = "echo-sctp";
/// How long a cluster's load balancer may take to give the fixture's LoadBalancer Services their
/// addresses; none by then, and the cluster has none.
const LOAD_BALANCER_WAIT: Duration = Duration::from_secs(20);
/// The LoadBalancer Service with externalTrafficPolicy Local; its servers are the first worker's
/// alone (LOCAL_LB_SERVERS), so every cluster has a node without a local endpoint.
pub const LOCAL_LB_SERVICE: &str = "echo-local-lb";
pub const LOCAL_LB_SERVERS: &str = "role=server,node=worker";

/// Everything the actions talk to, created once per mode in one labelled namespace.
pub struct Fixture {
    client: Client,
    pub namespace: String,
    pub mode: Mode,
    pub pods: Api<Pod>,
    pub control_plane: Node,
    /// The first worker: server-0, the hostNetwork server and the NodePort targets are there.
    pub worker: Node,
    /// The node of the second server of each Service: the second worker, or the control-plane node
    /// of a two-node cluster.
    second_server_node: Node,
    /// The last worker: the second client's.
    last_worker: Node,
    /// The nodes as the API lists them, with their stable labels (`control-plane`, `worker`).
    pub nodes: Vec<(String, Node)>,
    /// Name of the docker network the KIND nodes are on, when they are KIND nodes on this host.
    pub docker_network: Option<String>,
    /// The hostNetwork server's port; the hostNetwork client serves on the next one, and the
    /// hostPort pod's hostPort is the one after.
    host_port: u16,
    /// The host outside the cluster, started with the fixture when a row dials it or dials from it.
    outside: OnceCell<std::result::Result<super::external::OutsideHost, String>>,
    pub started: Instant,
    /// How long its steps took, for the progress line.
    pub steps: SetupSteps,
    /// The fixture's LoadBalancer Services' ingress addresses, waited for once by the first action
    /// that dials one, or why the cluster has no load balancer.
    load_balancers: OnceCell<std::result::Result<BTreeMap<String, Balanced>, String>>,
    /// Whether the cluster enforces NetworkPolicy: the canary, run once by the first policy row.
    policy_enforcement: OnceCell<super::policy::Enforcement>,
    /// The endpoint-update pod's deletion, done once by whichever endpoint-update action runs first.
    update_pod_deleted: OnceCell<std::result::Result<(), String>>,
    /// What `probe sctp-supported` said in the SCTP client, asked once by the first SCTP action.
    sctp_support: OnceCell<std::result::Result<String, String>>,
    /// The id of the row that checks pod IPs (D03), which every path through a pod depends on.
    pod_ips_row: Option<String>,
}

/// The fixture's setup steps' durations (cluster DNS is waited for beside them).
#[derive(Debug, Default, Clone, Copy)]
pub struct SetupSteps {
    pods_ready: Duration,
    endpoint_slices: Duration,
    canary_and_outside_host: Duration,
}

impl std::fmt::Display for SetupSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pods Ready {:.1}s, EndpointSlices {:.1}s, NetworkPolicy canary and outside host {:.1}s",
            self.pods_ready.as_secs_f64(),
            self.endpoint_slices.as_secs_f64(),
            self.canary_and_outside_host.as_secs_f64()
        )
    }
}

pub fn name_of<K: kube::Resource>(obj: &K) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

/// The labels of `nodes` by the plan's rule.
pub fn labelled(nodes: Vec<Node>) -> Vec<(String, Node)> {
    let roles: Vec<bool> = nodes.iter().map(is_control_plane).collect();
    node_labels(&roles).into_iter().zip(nodes).collect()
}

/// A LoadBalancer Service of the fixture: its `ipFamilies` and its ingress addresses.
pub struct Balanced {
    pub families: Vec<String>,
    pub ingress: Vec<IpAddr>,
}

/// A Service's `status.loadBalancer.ingress` IPs, in their order.
pub fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

pub fn service_ips(svc: &Service) -> Vec<String> {
    svc.spec.as_ref().and_then(|s| s.cluster_ips.clone()).unwrap_or_default()
}

fn json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Environment(format!("building a fixture object: {e}")))
}

impl Fixture {
    /// Creates the namespace, probe pods and Services, and waits until they are ready.
    /// `pod_ips_row` is the id of the table's pod-IPs row, named by the cases that need pod IPs.
    /// `rows` are the data-plane rows planned in `mode`: each `connect` row's Service is created too.
    pub async fn create(client: &Client, mode: Mode, pod_ips_row: Option<String>, rows: &[&DataplaneRow], timeout: Duration) -> Result<Self> {
        let started = Instant::now();
        let nodes = labelled(Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items);
        let control_plane = nodes.iter().map(|(_, n)| n).find(|n| is_control_plane(n)).or(nodes.first().map(|(_, n)| n)).cloned();
        let workers: Vec<&Node> = nodes.iter().map(|(_, n)| n).filter(|n| !is_control_plane(n)).collect();
        let (Some(control_plane), Some(&worker)) = (control_plane, workers.first()) else {
            return Err(Error::Environment("the data-plane suite needs two nodes: a control-plane and a worker".into()));
        };
        let second_server_node = workers.get(1).map_or_else(|| control_plane.clone(), |&w| w.clone());
        let last_worker = workers.last().map_or_else(|| worker.clone(), |&w| w.clone());
        let namespace = probe_pod::create_namespace(client, "dualstack-dataplane", &Retries::default()).await?;
        let mut fixture = Self {
            client: client.clone(),
            namespace: namespace.clone(),
            mode,
            pods: Api::namespaced(client.clone(), &namespace),
            docker_network: super::external::docker_network_of(&name_of(&control_plane)).await,
            control_plane,
            worker: worker.clone(),
            second_server_node,
            last_worker,
            nodes,
            host_port: HOST_PORT_RANGE.start + rand::random::<u16>() % (HOST_PORT_RANGE.end - HOST_PORT_RANGE.start),
            outside: OnceCell::new(),
            load_balancers: OnceCell::new(),
            policy_enforcement: OnceCell::new(),
            started,
            steps: SetupSteps::default(),
            update_pod_deleted: OnceCell::new(),
            sctp_support: OnceCell::new(),
            pod_ips_row,
        };
        let (pods_ready, endpoint_slices) = match fixture.populate(rows, timeout).await {
            Ok(durations) => durations,
            Err(e) => {
                probe_pod::delete_namespace(client, &namespace).await;
                return Err(e);
            }
        };
        let last_steps = Instant::now();
        // The outside host starts with the fixture, so it is there (by its name) for whoever
        // looks before the first row uses it; a failure to start is reported by those rows.
        let outside = async {
            if rows.iter().any(|r| matches!(&r.kind, RowKind::Connect(c) if c.to == Destination::Outside || c.from == connect::Client::External)) && fixture.docker_network.is_some() {
                let _ = fixture.outside_host().await;
            }
        };
        // The NetworkPolicy canary runs before any case, while the machine is quiet: an agent
        // that programs its rules late under the cases' load would look like no enforcement.
        let canary = async {
            if rows.iter().any(|r| matches!(&r.kind, RowKind::Connect(c) if c.policy.is_some())) {
                fixture.policy_enforcement().await;
            }
        };
        tokio::join!(outside, canary);
        fixture.steps = SetupSteps { pods_ready, endpoint_slices, canary_and_outside_host: last_steps.elapsed() };
        Ok(fixture)
    }

    /// Creates the pods, policies and Services; says how long the pods took to be Ready (from the
    /// first post) and then their EndpointSlices to list them.
    async fn populate(&self, rows: &[&DataplaneRow], timeout: Duration) -> Result<(Duration, Duration)> {
        let (cp, worker, second, last) = (name_of(&self.control_plane), name_of(&self.worker), name_of(&self.second_server_node), name_of(&self.last_worker));
        let second_label = self.label_of(&self.second_server_node);
        let mut client_pod = probe_pod::probe_pod("client", &cp, &[("role", "client")], false);
        if let Some(container) = client_pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            container.env = Some(json(serde_json::json!([
                {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}
            ]))?);
        }
        let mut pods = vec![
            client_pod,
            probe_pod::probe_pod("server-0", &worker, &[("role", "server"), ("node", "worker"), ("hairpin", "yes"), ("affinity", "yes")], false),
            probe_pod::probe_pod("server-1", &second, &[("role", "server"), ("node", second_label.as_str())], false),
            probe_pod::probe_pod(SECOND_CLIENT, &last, &[("role", "client")], false),
            probe_pod::probe_pod(WORKER_CLIENT, &worker, &[("role", "client")], false),
            probe_pod::host_port_probe_pod(HOST_PORT_POD, &worker, &[("role", "host-port")], self.host_port_number()),
            probe_pod::probe_pod(REMAINING_UPDATE_POD, &worker, &[("role", "update"), ("affinity", "yes")], false),
            probe_pod::probe_pod(DELETED_UPDATE_POD, &second, &[("role", "update")], false),
            probe_pod::host_network_probe_pod("host-server", &worker, self.host_port),
            probe_pod::host_network_probe_pod("host-client", &cp, self.host_port + 1),
        ];
        pods.extend(super::policy::pods(rows, |label| self.node(label).map(name_of), &worker));
        let sctp = rows.iter().any(|r| matches!(r.check(), Some(Check::Sctp | Check::SctpService)));
        if sctp {
            pods.extend([
                probe_pod::sctp_probe_pod(SCTP_CLIENT, &cp, &[("role", "sctp-client")]),
                probe_pod::sctp_probe_pod("sctp-server-0", &worker, &[("role", "sctp-server"), ("sctp-peer", "yes")]),
                probe_pod::sctp_probe_pod("sctp-server-1", &second, &[("role", "sctp-server")]),
            ]);
        }
        // All at once: one by one, on a loaded 2-core machine, the last of 29 pods was posted
        // seconds after the first and started that much later.
        let post = PostParams::default();
        let posted = Instant::now();
        futures::future::try_join_all(pods.iter().map(|pod| self.pods.create(&post, pod))).await?;
        super::policy::create_row_policies(self, rows).await?;
        let dual = if self.mode.is_dual() { "RequireDualStack" } else { "SingleStack" };
        let ports = |target: u16, protocols: &[&str]| {
            let ports: Vec<serde_json::Value> = protocols
                .iter()
                .map(|p| serde_json::json!({"name": p.to_ascii_lowercase(), "port": SERVICE_PORT, "targetPort": target, "protocol": p}))
                .collect();
            serde_json::Value::Array(ports)
        };
        let service_with = |name: &str, selector: serde_json::Value, extra: &serde_json::Value, target: u16, protocols: &[&str]| {
            let mut spec = serde_json::json!({"ipFamilyPolicy": dual, "selector": selector, "ports": ports(target, protocols)});
            crate::table::services::merge(&mut spec, extra);
            serde_json::json!({"metadata": {"name": name}, "spec": spec})
        };
        let service = |name: &str, selector: serde_json::Value, extra: serde_json::Value, target: u16| service_with(name, selector, &extra, target, &["TCP", "UDP"]);
        let none = serde_json::json!({});
        let mut services = vec![
            service("echo", serde_json::json!({"role": "server"}), serde_json::json!({"type": "NodePort"}), PROBE_PORT),
            service("echo-headless", serde_json::json!({"role": "server"}), serde_json::json!({"clusterIP": "None"}), PROBE_PORT),
            service("echo-hairpin", serde_json::json!({"hairpin": "yes"}), serde_json::json!({"type": "NodePort"}), PROBE_PORT),
            service("echo-update", serde_json::json!({"role": "update"}), none.clone(), PROBE_PORT),
            service("echo-host", serde_json::json!({"role": "host-server"}), serde_json::json!({"type": "NodePort"}), self.host_port),
            // A LoadBalancer with externalTrafficPolicy Local gets a healthCheckNodePort (no load
            // balancer needs to exist for that): kube-proxy answers it per node.
            service(LOCAL_LB_SERVICE, selector_of(LOCAL_LB_SERVERS)?, serde_json::json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}), PROBE_PORT),
        ];
        for &family in self.mode.families() {
            let single = serde_json::json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": [family.api_name()]});
            services.push(service(&format!("echo-only-{}", family.slug()), serde_json::json!({"role": "server"}), single.clone(), PROBE_PORT));
            let mut headless = single;
            crate::table::services::merge(&mut headless, &serde_json::json!({"clusterIP": "None"}));
            services.push(service(&format!("echo-headless-only-{}", family.slug()), serde_json::json!({"role": "server"}), headless, PROBE_PORT));
            // A single-family LoadBalancer per family: a load balancer that serves one family
            // still gives these addresses, so it is told from a cluster without any.
            let balanced = serde_json::json!({"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack", "ipFamilies": [family.api_name()]});
            services.push(service(&format!("echo-lb-only-{}", family.slug()), serde_json::json!({"role": "server"}), balanced, PROBE_PORT));
        }
        if sctp {
            services.push(service_with(SCTP_SERVICE, serde_json::json!({"role": "sctp-server"}), &none, PROBE_PORT, &["SCTP"]));
        }
        for row in rows {
            let RowKind::Connect(connect) = &row.kind else { continue };
            let Some(name) = connect.service_name(&row.id) else { continue };
            let mut protocols: Vec<&str> = row.protocols.iter().map(|p| p.service_protocol()).collect();
            protocols.dedup();
            let mut extra = match connect.to {
                Destination::NodePort => serde_json::json!({"type": "NodePort"}),
                Destination::LoadBalancer => serde_json::json!({"type": "LoadBalancer"}),
                _ => serde_json::json!({}),
            };
            crate::table::services::merge(&mut extra, connect.service.as_ref().unwrap_or(&serde_json::json!({})));
            services.push(service_with(&name, selector_of(&connect.servers)?, &extra, PROBE_PORT, &protocols));
        }
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        futures::future::try_join_all(services.into_iter().map(|svc| {
            let (api, post) = (&api, &post);
            async move {
                let name = svc["metadata"]["name"].as_str().unwrap_or_default().to_string();
                api.create(post, &json(svc)?).await.map_err(|e| match e {
                    // A row's Service the API server refuses (a vendor's `service:` fields) names the row.
                    kube::Error::Api(status) => Error::Environment(format!("creating the fixture's Service {name}: {}", status.message)),
                    other => other.into(),
                })
            }
        }))
        .await?;
        let names: Vec<&str> = pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        probe_pod::wait_pods_ready(&self.pods, &names, timeout).await?;
        let pods_ready = posted.elapsed();
        let ready = Instant::now();
        // Services are usable once their EndpointSlices list all of their pods in every family.
        let mut awaited: Vec<(String, String)> = vec![("echo".into(), "role=server".into()), ("echo-update".into(), "role=update".into())];
        if sctp {
            awaited.push((SCTP_SERVICE.into(), "role=sctp-server".into()));
        }
        awaited.extend(rows.iter().filter_map(|row| match &row.kind {
            RowKind::Connect(connect) => connect.service_name(&row.id).map(|name| (name, connect.servers.clone())),
            RowKind::Check(_) => None,
        }));
        poll("EndpointSlices of the fixture's Services", timeout, Duration::from_millis(300), || async {
            let mut missing = Vec::new();
            for (service, selector) in &awaited {
                let pods = self.ips_of(selector).await?;
                for &family in self.mode.families() {
                    let want: BTreeSet<String> = pods.iter().filter_map(|ips| of_family(ips, family)).map(|ip| ip.to_string()).collect();
                    let have = self.slice_addresses(service, family).await?;
                    if have != want {
                        missing.push(format!("the {family} slice of {service} lists {}, its pods have {}", listed(&have), listed(&want)));
                    }
                }
            }
            Ok(if missing.is_empty() { Ok(()) } else { Err(missing.join("; ")) })
        })
        .await?;
        Ok((pods_ready, ready.elapsed()))
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Whether the cluster enforces NetworkPolicy, as the canary found (run once, with the fixture).
    pub async fn policy_enforcement(&self) -> &super::policy::Enforcement {
        self.policy_enforcement
            .get_or_init(|| async {
                let found = super::policy::canary(self).await.unwrap_or_else(|e| super::policy::Enforcement::Undetermined(format!("the NetworkPolicy canary: {e}")));
                println!("[{}] NetworkPolicy: {found}", self.mode);
                found
            })
            .await
    }

    pub async fn delete(self) {
        if let Some(Ok(host)) = self.outside.into_inner() {
            host.remove().await;
        }
        probe_pod::delete_namespace(&self.client, &self.namespace).await;
    }

    /// The host outside the cluster (container `dualstack-outside-NAMESPACE`), started once, or why
    /// there is none.
    pub async fn outside_host(&self) -> std::result::Result<&super::external::OutsideHost, String> {
        let started = self
            .outside
            .get_or_init(|| async {
                match &self.docker_network {
                    Some(network) => super::external::OutsideHost::start(network, &self.namespace).await,
                    None => Err(super::external::NOT_ON_THIS_HOST.into()),
                }
            })
            .await;
        started.as_ref().map_err(Clone::clone)
    }

    /// The ingress addresses of every LoadBalancer Service of the fixture, once each has one of
    /// each of its families or LOAD_BALANCER_WAIT has passed; why there is no load balancer when
    /// none got any address by then.
    pub async fn load_balancers(&self) -> std::result::Result<&BTreeMap<String, Balanced>, String> {
        let book = self
            .load_balancers
            .get_or_init(|| async {
                let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
                let started = Instant::now();
                loop {
                    let listed = match api.list(&ListParams::default()).await {
                        Ok(list) => list.items,
                        Err(e) => return Err(format!("listing the fixture's Services: {e}")),
                    };
                    let balancers: Vec<&Service> = listed.iter().filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")).collect();
                    let book: BTreeMap<String, Balanced> = balancers
                        .iter()
                        .map(|s| (name_of(*s), Balanced { families: s.spec.as_ref().and_then(|s| s.ip_families.clone()).unwrap_or_default(), ingress: ingress_ips(s) }))
                        .collect();
                    let settled = book.values().all(|b| b.families.iter().all(|f| b.ingress.iter().any(|ip| IpFamily::of(ip).api_name() == f.as_str())));
                    if settled || started.elapsed() >= LOAD_BALANCER_WAIT {
                        return if book.values().all(|b| b.ingress.is_empty()) {
                            Err(format!(
                                "no LoadBalancer implementation: none of the fixture's {} LoadBalancer Services ({}) got an address in status.loadBalancer.ingress within {}s",
                                book.len(),
                                book.keys().cloned().collect::<Vec<_>>().join(", "),
                                LOAD_BALANCER_WAIT.as_secs()
                            ))
                        } else {
                            Ok(book)
                        };
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
            .await;
        book.as_ref().map_err(Clone::clone)
    }

    /// The hostPort of the fixture's hostPort pod.
    pub fn host_port_number(&self) -> u16 {
        self.host_port + 2
    }

    /// The fixture's client pod on the node labelled `label`, if the cluster has that node.
    pub async fn client_on(&self, label: &str) -> Result<Option<String>> {
        let Some(node) = self.node(label).map(name_of) else { return Ok(None) };
        let clients = self.pods.list(&ListParams::default().labels("role=client")).await?;
        Ok(clients.items.iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())).map(name_of))
    }

    /// The fixture's pods (node, state, IPs) and the namespace's latest events, for failed cases.
    pub async fn diagnostics(&self) -> String {
        let mut out = format!("fixture namespace {} after the failures:\n", self.namespace);
        if let Ok(pods) = self.pods.list(&ListParams::default()).await {
            for pod in pods.items {
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                out.push_str(&format!("  pod {} on {node}: {}; podIPs {}\n", name_of(&pod), probe_pod::pod_state(&pod), listed(pod_ips(&pod))));
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

    /// Where the fixture's pods run, for each case's system-out.
    pub fn describe(&self) -> String {
        format!(
            "fixture namespace {}; client on {}, server-1 on {}, {SECOND_CLIENT} on {}, server-0, {WORKER_CLIENT} and {HOST_PORT_POD} on {}; ready in {:.1}s",
            self.namespace,
            name_of(&self.control_plane),
            name_of(&self.second_server_node),
            name_of(&self.last_worker),
            name_of(&self.worker),
            self.started.elapsed().as_secs_f64()
        )
    }

    pub async fn pod(&self, name: &str) -> Result<Pod> {
        Ok(self.pods.get(name).await?)
    }

    /// The pod IPs of the live pods `selector` selects.
    pub async fn ips_of(&self, selector: &str) -> Result<Vec<Vec<String>>> {
        let list = self.pods.list(&ListParams::default().labels(selector)).await?;
        Ok(list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(pod_ips).collect())
    }

    pub async fn service(&self, name: &str) -> Result<Service> {
        Ok(Api::<Service>::namespaced(self.client.clone(), &self.namespace).get(name).await?)
    }

    pub async fn kube_dns(&self) -> Result<Service> {
        Ok(Api::<Service>::namespaced(self.client.clone(), "kube-system").get("kube-dns").await?)
    }

    /// The global addresses of the node a hostNetwork fixture pod runs on (`ip -o addr`).
    pub async fn host_addresses(&self, pod: &str) -> Result<Vec<String>> {
        let command = ["ip", "-o", "addr", "show", "scope", "global"].map(String::from).to_vec();
        let out = probe_pod::exec_command(&self.pods, pod, command).await?;
        Ok(global_addresses(&out))
    }

    /// kube-dns's ready endpoints of `family`: ("coredns-x on NODE (ADDRESS)", address).
    pub async fn coredns_replicas(&self, family: IpFamily) -> Result<Vec<(String, IpAddr)>> {
        let replicas = crate::cluster::dns_replicas(&self.client).await?;
        let of_family = replicas.into_iter().filter(|r| r.address_type == family.api_name());
        Ok(of_family.filter_map(|r| Some((r.described, r.address.parse().ok()?))).collect())
    }

    /// The kubelets' clusterDNS (kubeadm's kube-system/kubelet-config), primary first; `Err` says
    /// why it cannot be read (not a kubeadm cluster, or no permission).
    pub async fn kubelet_cluster_dns(&self) -> Result<std::result::Result<Vec<String>, String>> {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(self.client.clone(), "kube-system");
        let config = match api.get("kubelet-config").await {
            Ok(config) => config,
            Err(kube::Error::Api(status)) if status.code == 403 || status.code == 404 => {
                return Ok(Err(format!("kube-system/kubelet-config cannot be read: {}", status.message)));
            }
            Err(e) => return Err(e.into()),
        };
        let text = config.data.and_then(|d| d.get("kubelet").cloned()).unwrap_or_default();
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_default();
        Ok(match parsed.get("clusterDNS").and_then(|v| v.as_array()) {
            Some(list) => Ok(list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
            None => Err("kube-system/kubelet-config names no clusterDNS".into()),
        })
    }

    pub async fn legacy_endpoints(&self, service: &str) -> Result<k8s_openapi::api::core::v1::Endpoints> {
        Ok(Api::namespaced(self.client.clone(), &self.namespace).get(service).await?)
    }

    pub async fn slices(&self, service: &str) -> Result<Vec<EndpointSlice>> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await?.items)
    }

    /// Ready endpoint addresses of `service` in its `family` slices.
    pub async fn slice_addresses(&self, service: &str, family: IpFamily) -> Result<BTreeSet<String>> {
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

    /// Deletes the endpoint-update pod once, whichever endpoint-update action asks first.
    pub async fn delete_update_pod(&self) -> Result<()> {
        let deleted = self
            .update_pod_deleted
            .get_or_init(|| async { self.pods.delete(DELETED_UPDATE_POD, &DeleteParams::default()).await.map(|_| ()).map_err(|e| e.to_string()) })
            .await;
        deleted.clone().map_err(|e| Error::Environment(format!("deleting pod {DELETED_UPDATE_POD}: {e}")))
    }

    /// Whether (and how) the probe speaks SCTP in the SCTP client: `probe sctp-supported`'s JSON,
    /// asked once for every SCTP action of the fixture.
    pub async fn sctp_support(&self) -> Result<String> {
        let said = self
            .sctp_support
            .get_or_init(|| async { probe_pod::exec(&self.pods, SCTP_CLIENT, &["sctp-supported".into()]).await.map_err(|e| e.to_string()) })
            .await;
        said.clone().map_err(|e| Error::Environment(format!("asking pod {SCTP_CLIENT} whether the probe speaks SCTP: {e}")))
    }

    /// Runs a command inside a fixture pod and returns its stdout.
    pub async fn exec(&self, pod: &str, command: &[&str]) -> Result<String> {
        probe_pod::exec_command(&self.pods, pod, command.iter().map(|s| s.to_string()).collect()).await
    }

    pub fn node(&self, label: &str) -> Option<&Node> {
        self.nodes.iter().find(|(l, _)| l == label).map(|(_, n)| n)
    }

    /// The stable label of one of the fixture's nodes (`control-plane`, `worker`, `worker2`).
    fn label_of(&self, node: &Node) -> String {
        self.nodes.iter().find(|(_, n)| name_of(n) == name_of(node)).map(|(l, _)| l.clone()).unwrap_or_default()
    }

    pub fn worker_name(&self) -> String {
        name_of(&self.worker)
    }

    /// The live pods selected by `selector` (`role=server`, `hairpin=yes`) as endpoints of
    /// `family`, or what is missing: no such pod, or one without an address of the family.
    pub async fn endpoints(&self, selector: &str, family: IpFamily) -> Result<Expected> {
        let list = self.pods.list(&ListParams::default().labels(selector)).await?;
        let mut endpoints = Vec::new();
        for pod in list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let spec = pod.spec.clone().unwrap_or_default();
            let node = spec.node_name.unwrap_or_default();
            let ips = pod_ips(pod);
            let Some(address) = of_family(&ips, family) else {
                return Ok(Err(self.pod_without_address(pod, family)));
            };
            let answers_as = if spec.host_network == Some(true) { node.clone() } else { name_of(pod) };
            endpoints.push(Endpoint { pod: name_of(pod), node, address, answers_as });
        }
        if endpoints.is_empty() {
            return Ok(Err(Missing { wanted: format!("a live pod with {selector}"), saw: "none".into() }));
        }
        endpoints.sort_by(|a, b| a.pod.cmp(&b.pod));
        Ok(Ok(endpoints))
    }

    /// What a case through `pod` lacks when the pod has no address of `family`.
    pub fn pod_without_address(&self, pod: &Pod, family: IpFamily) -> Missing {
        pod_without_address(self.pod_ips_row.as_deref(), pod, family)
    }

    /// The fixture pod `name`, or what it lacks to be a client or server of `family`.
    pub async fn pod_of_family(&self, name: &str, family: IpFamily) -> Result<std::result::Result<Pod, Missing>> {
        let pod = self.pod(name).await?;
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        Ok(if host_network || of_family(&pod_ips(&pod), family).is_some() { Ok(pod) } else { Err(self.pod_without_address(&pod, family)) })
    }

    pub fn worker_address(&self, family: IpFamily) -> Option<IpAddr> {
        of_family(&internal_ips(&self.worker), family)
    }
}

/// A pod (not hostNetwork) without an address of `family`: the prerequisite every path through it
/// lacks, named after the pod-IPs row (`pod_ips_row`), so twenty cases say one thing instead of
/// twenty "network is unreachable".
fn pod_without_address(pod_ips_row: Option<&str>, pod: &Pod, family: IpFamily) -> Missing {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let needs = match pod_ips_row {
        Some(id) => format!("needs {id}/{} (a pod IP of each family), which fails here", family.slug()),
        None => "needs a pod IP of each family".into(),
    };
    Missing {
        wanted: format!("{} has an {family} pod IP", name_of(pod)),
        saw: format!("{needs}: {} on {node} has no {family} address (podIPs {})", name_of(pod), listed(pod_ips(pod))),
    }
}

/// A Service selector from a row's `servers` (checked by the loader).
fn selector_of(selector: &str) -> Result<serde_json::Value> {
    let terms = crate::table::connect::selector_terms(selector).map_err(|e| Error::Environment(format!("servers '{selector}': {e}")))?;
    Ok(serde_json::Value::Object(terms.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect()))
}

/// The addresses of `ip -o addr` output: `2: eth0    inet 172.18.0.2/16 brd ...` -> 172.18.0.2.
fn global_addresses(ip_addr: &str) -> Vec<String> {
    ip_addr
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip_while(|w| *w != "inet" && *w != "inet6").skip(1);
            words.next().and_then(|cidr| cidr.split('/').next()).map(str::to_string)
        })
        .collect()
}

/// The Service's clusterIP of `family`.
pub fn cluster_ip(svc: &Service, family: IpFamily) -> Option<IpAddr> {
    of_family(&service_ips(svc), family)
}

/// The Service's nodePort carrying `protocol` (`TCP`, `UDP`).
pub fn node_port(svc: &Service, protocol: &str) -> Option<u16> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.protocol.as_deref() == Some(protocol)))
        .and_then(|p| p.node_port)
        .and_then(|n| u16::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_global_addresses_include_an_overlay_device() {
        let out = "2: eth0    inet 172.18.0.2/16 brd 172.18.255.255 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                   2: eth0    inet6 fc00:f853:ccd:e793::2/64 scope global nodad \\       valid_lft forever preferred_lft forever\n\
                   5: flannel.1    inet 10.244.0.0/32 scope global flannel.1\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(global_addresses(out), ["172.18.0.2", "fc00:f853:ccd:e793::2", "10.244.0.0"]);
    }

    #[test]
    fn a_pod_without_an_address_of_the_family_names_the_row_it_needs() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "client"},
            "spec": {"nodeName": "dual-control-plane", "containers": []},
            "status": {"podIPs": [{"ip": "10.244.0.2"}]}
        }))
        .unwrap();
        let missing = pod_without_address(Some("D03"), &pod, IpFamily::IPv6);
        assert_eq!(missing.wanted, "client has an IPv6 pod IP");
        assert_eq!(missing.saw, "needs D03/ipv6 (a pod IP of each family), which fails here: client on dual-control-plane has no IPv6 address (podIPs 10.244.0.2)");
        let missing = pod_without_address(None, &pod, IpFamily::IPv6);
        assert!(missing.saw.starts_with("needs a pod IP of each family: client on"), "{}", missing.saw);
    }
}
