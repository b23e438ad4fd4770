//! The `connect` block of a data-plane row: who connects, to what, through which Service, and who
//! must answer; the model, its defaults and the loader's field-by-field rules. The row around it
//! (id, protocols, modes, source rule) is `dataplane.rs`'s.

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
    pub expect: Expect,
}

/// The label selector of the fixture's pods a `connect` row's servers default to: server-0 on the
/// worker, server-1 on worker2.
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
    expect: Expect,
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

/// A `connect` block checked field by field: (field, message) on the first problem.
pub(super) fn connect_of(file: &ConnectFile) -> Result<Connect, (&'static str, String)> {
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
    let servers = match (file.to, &file.servers) {
        (Destination::HostPort | Destination::Outside, Some(_)) => {
            return Err(("servers", "host-port and outside rows have their own server (the hostPort pod, the outside host)".into()));
        }
        (Destination::HostPort, None) => HOST_PORT_SERVERS.to_string(),
        (_, Some(selector)) if selector_terms(selector).is_err() => {
            return Err(("servers", selector_terms(selector).err().unwrap_or_default()));
        }
        (_, servers) => servers.clone().unwrap_or_else(|| DEFAULT_SERVERS.into()),
    };
    match (file.expect, file.from, file.to) {
        (Expect::EveryOnClientNode, Client::External, _) => return Err(("expect", "an external client is on no node".into())),
        (Expect::EveryOnTargetNode, _, to) if !matches!(to, Destination::NodePort | Destination::HostPort) => {
            return Err(("expect", "every-on-target-node is for node-port and host-port rows".into()));
        }
        (Expect::One, _, to) if !to.has_service() => {
            return Err(("expect", "one (affinity) is for a Service: cluster-ip, node-port or load-balancer".into()));
        }
        (Expect::One, Client::External, _) => return Err(("expect", "one (affinity) is judged from a client in the cluster".into())),
        (Expect::None | Expect::One, _, Destination::Pod) => return Err(("expect", "pod rows reach each server: every".into())),
        _ => {}
    }
    Ok(Connect { from: file.from, from_node, to: file.to, to_node, service: file.service.clone(), servers, expect: file.expect })
}
