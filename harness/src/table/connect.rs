//! The `connect` block of a data-plane row: who connects, to what, through which Service, and who
//! must answer; the model, its defaults and the loader's field-by-field rules. The row around it
//! (id, protocols, modes, source rule) is `dataplane.rs`'s.

use crate::mode::IpFamily;
use serde::Deserialize;

/// Where a `connect` row's client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    /// The fixture's client pod on `from-node`.
    Pod,
    /// The fixture's hostNetwork client (on the control-plane node).
    HostNetwork,
    /// A container on the KIND nodes' docker network, outside the cluster.
    External,
}

/// What a `connect` row's client dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Destination {
    /// Each server pod's own address, one by one.
    Pod,
    /// The row's Service's clusterIP of the family.
    ClusterIp,
    /// The row's Service's nodePort on `to-node`'s InternalIP of the family.
    NodePort,
    /// The fixture's hostPort on `to-node`'s InternalIP of the family (the hostPort pod runs on
    /// the worker).
    HostPort,
    /// A server outside the cluster: a container on the KIND nodes' docker network.
    Outside,
    /// The row's Service's load-balancer ingress address of the family (type LoadBalancer).
    LoadBalancer,
}

impl Destination {
    /// Whether the fixture creates a Service for rows dialling this.
    pub fn has_service(self) -> bool {
        matches!(self, Self::ClusterIp | Self::NodePort | Self::LoadBalancer)
    }
}

/// Which servers must answer a `connect` row's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Each server, at least once, and nobody else.
    Every,
    /// Exactly one of the servers, every time (session affinity).
    One,
    /// Nobody, over the whole convergence window.
    None,
    /// Each server on the client's node, and nobody else (nobody when the node has none).
    EveryOnClientNode,
    /// Each server on `to-node`, and nobody else (nobody when the node has none).
    EveryOnTargetNode,
}

/// Who must answer over each family: the same over both, or per family (a NetworkPolicy that names
/// one family's addresses treats the two differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    pub ipv4: Expect,
    pub ipv6: Expect,
}

impl Expectation {
    pub fn same(expect: Expect) -> Self {
        Self { ipv4: expect, ipv6: expect }
    }

    pub fn of(self, family: IpFamily) -> Expect {
        match family {
            IpFamily::IPv4 => self.ipv4,
            IpFamily::IPv6 => self.ipv6,
        }
    }

    /// Whether some family's verdict may be silence (a window waited out to the end).
    pub fn may_be_silence(self) -> bool {
        [self.ipv4, self.ipv6].iter().any(|e| !matches!(e, Expect::Every | Expect::One))
    }
}

/// Which traffic of its own pod a row's NetworkPolicy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Direction {
    /// What reaches the row's own server.
    Ingress,
    /// What leaves the row's own client.
    Egress,
}

/// A NetworkPolicy a `connect` row creates for itself. It applies to the row's own pod only (its
/// `podSelector` is set to that pod's label): a server pod (`policy-<id>`, on the first worker) for
/// an Ingress policy, a client pod (`policy-<id>`, on `from-node`) for an Egress one, so that rows
/// running at once never police each other's traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub direction: Direction,
    /// The NetworkPolicy spec as the row states it (without `podSelector`).
    pub spec: serde_json::Value,
}

/// The label the fixture gives the pod of a policy row (`policy-row: d40`), and its value.
pub const POLICY_ROW_LABEL: &str = "policy-row";

/// The pod the fixture creates for the policy row `id` (`N01` -> `policy-n01`).
pub fn policy_pod_name(id: &str) -> String {
    format!("policy-{}", id.to_ascii_lowercase())
}

/// A connection a row states itself: who connects, to what, through which Service, and who must
/// answer. The Service (`cluster-ip`, `node-port`, `load-balancer`) is created for the row: it selects `servers`,
/// exposes port 80 over each of the row's protocols, is RequireDualStack on dual clusters, and
/// `service` is merged into its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub from: Client,
    /// The client's node label (`control-plane`, `worker`, `worker2`); for pod clients.
    pub from_node: String,
    pub to: Destination,
    /// The dialled node's label, for `node-port` and `host-port`.
    pub to_node: Option<String>,
    /// Merged into the row's Service spec.
    pub service: Option<serde_json::Value>,
    /// The label selector of the server pods (the row's Service selects them).
    pub servers: String,
    pub expect: Expectation,
    /// The row's own NetworkPolicy, created with the fixture.
    pub policy: Option<Policy>,
}

/// The label selector of the fixture's pods a `connect` row's servers default to: server-0 on the
/// worker, server-1 on the control-plane node (on worker2 when the cluster has one).
pub const DEFAULT_SERVERS: &str = "role=server";
/// The label of the fixture's hostPort pod, the only server of `host-port` rows.
pub const HOST_PORT_SERVERS: &str = "role=host-port";

impl Connect {
    /// The name of the Service the fixture creates for row `id` (`D27` -> `row-d27`), when its
    /// destination needs one.
    pub fn service_name(&self, id: &str) -> Option<String> {
        self.to.has_service().then(|| format!("row-{}", id.to_ascii_lowercase()))
    }
}


#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ConnectFile {
    from: Client,
    #[serde(default)]
    from_node: Option<String>,
    to: Destination,
    #[serde(default)]
    to_node: Option<String>,
    #[serde(default)]
    service: Option<serde_json::Value>,
    #[serde(default)]
    servers: Option<String>,
    expect: ExpectFile,
    #[serde(default)]
    policy: Option<serde_json::Value>,
}

/// `expect:` as written: one expectation, or one per family.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ExpectFile {
    Same(Expect),
    PerFamily(PerFamilyFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PerFamilyFile {
    #[serde(rename = "IPv4")]
    ipv4: Expect,
    #[serde(rename = "IPv6")]
    ipv6: Expect,
}

/// A node label as the plan names nodes: `control-plane`, `worker`, `worker2`, ...
fn node_label(text: &str) -> bool {
    ["control-plane", "worker"].iter().any(|role| text.strip_prefix(role).is_some_and(|n| n.is_empty() || (n.parse::<u32>().is_ok_and(|n| n >= 2) && !n.starts_with('0'))))
}

/// The `key=value` terms of a `servers` selector (`role=server,tier=web`): a Service selects by
/// equality only.
pub fn selector_terms(selector: &str) -> Result<Vec<(String, String)>, String> {
    selector
        .split(',')
        .map(|term| match term.trim().split_once('=') {
            Some((key, value)) if !key.is_empty() && !value.is_empty() && !key.ends_with('!') && !value.contains('=') => Ok((key.to_string(), value.to_string())),
            _ => Err(format!("'{}' is no key=value term (a Service selects by equality)", term.trim())),
        })
        .collect()
}

/// The policy of row `id` checked: (field, message) on the first problem.
fn policy_of(value: &serde_json::Value) -> Result<Policy, (&'static str, String)> {
    let Some(fields) = value.as_object() else {
        return Err(("policy", "a mapping of NetworkPolicy spec fields".into()));
    };
    if fields.contains_key("podSelector") {
        return Err(("policy.podSelector", "set by dualstack: the policy applies to the row's own pod".into()));
    }
    let types: Vec<&str> = fields.get("policyTypes").and_then(|t| t.as_array()).map(|t| t.iter().filter_map(|t| t.as_str()).collect()).unwrap_or_default();
    let direction = match types.as_slice() {
        ["Ingress"] => Direction::Ingress,
        ["Egress"] => Direction::Egress,
        _ => return Err(("policy.policyTypes", "exactly one of [Ingress] (the row's server is policed) or [Egress] (its client is)".into())),
    };
    Ok(Policy { direction, spec: value.clone() })
}

/// A `connect` block of row `id` checked field by field: (field, message) on the first problem.
pub(super) fn connect_of(id: &str, file: &ConnectFile) -> Result<Connect, (&'static str, String)> {
    let node = |field: &'static str, value: &Option<String>| match value {
        Some(label) if !node_label(label) => Err((field, format!("'{label}' is no node label: control-plane, worker, worker2, ..."))),
        _ => Ok(value.clone()),
    };
    let from_node = node("from-node", &file.from_node)?;
    let to_node = node("to-node", &file.to_node)?;
    let from_node = match (file.from, from_node) {
        (Client::External, Some(_)) => return Err(("from-node", "an external client runs on no node".into())),
        (Client::HostNetwork, Some(label)) if label != "control-plane" => {
            return Err(("from-node", "the fixture's hostNetwork client runs on the control-plane node".into()));
        }
        (_, label) => label.unwrap_or_else(|| "control-plane".into()),
    };
    let dials_a_node = matches!(file.to, Destination::NodePort | Destination::HostPort);
    let to_node = match (dials_a_node, to_node) {
        (true, label) => Some(label.unwrap_or_else(|| "worker".into())),
        (false, Some(_)) => return Err(("to-node", "only node-port and host-port dial a node".into())),
        (false, None) => None,
    };
    if file.service.is_some() && !file.to.has_service() {
        return Err(("service", "only cluster-ip, node-port and load-balancer rows create a Service".into()));
    }
    if let Some(service) = &file.service
        && !service.is_object()
    {
        return Err(("service", "a mapping of Service spec fields, merged into the row's Service".into()));
    }
    let policy = file.policy.as_ref().map(policy_of).transpose()?;
    let servers = match (file.to, &file.servers, &policy) {
        (_, Some(_), Some(Policy { direction: Direction::Ingress, .. })) => {
            return Err(("servers", "an Ingress policy row's server is its own pod".into()));
        }
        (Destination::Pod | Destination::ClusterIp, None, Some(Policy { direction: Direction::Ingress, .. })) => format!("{POLICY_ROW_LABEL}={}", id.to_ascii_lowercase()),
        (_, _, Some(Policy { direction: Direction::Ingress, .. })) => {
            return Err(("to", "an Ingress policy row dials its own server: pod or cluster-ip".into()));
        }
        (_, _, Some(Policy { direction: Direction::Egress, .. })) if file.from != Client::Pod => {
            return Err(("from", "an Egress policy row's client is its own pod: from: pod".into()));
        }
        _ => match (file.to, &file.servers) {
        (Destination::HostPort | Destination::Outside, Some(_)) => {
            return Err(("servers", "host-port and outside rows have their own server (the hostPort pod, the outside host)".into()));
        }
        (Destination::HostPort, None) => HOST_PORT_SERVERS.to_string(),
        (_, Some(selector)) if selector_terms(selector).is_err() => {
            return Err(("servers", selector_terms(selector).err().unwrap_or_default()));
        }
        (_, servers) => servers.clone().unwrap_or_else(|| DEFAULT_SERVERS.into()),
        },
    };
    let expect = match file.expect {
        ExpectFile::Same(expect) => Expectation::same(expect),
        ExpectFile::PerFamily(PerFamilyFile { ipv4, ipv6 }) => Expectation { ipv4, ipv6 },
    };
    for family in [IpFamily::IPv4, IpFamily::IPv6] {
        expect_allowed(expect.of(family), file, policy.is_some())?;
    }
    Ok(Connect { from: file.from, from_node, to: file.to, to_node, service: file.service.clone(), servers, expect, policy })
}

/// Whether one family's expectation fits the row's client and destination.
fn expect_allowed(expect: Expect, file: &ConnectFile, has_policy: bool) -> Result<(), (&'static str, String)> {
    match (expect, file.from, file.to) {
        (Expect::EveryOnClientNode, Client::External, _) => return Err(("expect", "an external client is on no node".into())),
        (Expect::EveryOnTargetNode, _, to) if !matches!(to, Destination::NodePort | Destination::HostPort) => {
            return Err(("expect", "every-on-target-node is for node-port and host-port rows".into()));
        }
        (Expect::One, _, to) if !to.has_service() => {
            return Err(("expect", "one (affinity) is for a Service: cluster-ip, node-port or load-balancer".into()));
        }
        (Expect::One, Client::External, _) => return Err(("expect", "one (affinity) is judged from a client in the cluster".into())),
        (Expect::EveryOnClientNode | Expect::EveryOnTargetNode | Expect::One, _, _) if has_policy => {
            return Err(("expect", "a policy row expects every or none".into()));
        }
        _ => {}
    }
    Ok(())
}
