//! Data-plane rows: a table row names a check, its protocols and modes; each row becomes one
//! action per family (and per protocol, node or aspect where the check has several), named as
//! cilium-cli names its actions: `D12/udp-ipv6`, `D23/worker-tcp-ipv4`, `D10/echo-ipv4`.

use super::{LoadError, check_id, load_error, parse_modes};
use crate::mode::{IpFamily, Mode};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

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
    /// A node client to a hostNetwork endpoint through its Service's ClusterIP.
    HostNetworkEndpointsFromNode,
    /// A node client to a hostNetwork endpoint through its Service's NodePort on the endpoint's node.
    HostNetworkEndpointsViaNodePort,
    /// An endpoint to its own Service through the NodePort on its own node.
    HairpinNodePort,
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
    /// Only the `sctp` check speaks it (where the kernel has SCTP); tables cannot ask for it.
    #[serde(skip_deserializing)]
    Sctp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    /// The Service port protocol that carries it.
    pub fn service_protocol(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
            Self::Tcp | Self::Http => "TCP",
        }
    }
}

/// Which client address the server must see on a connection: the rule of the Kubernetes network
/// model for that path, stated per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceRule {
    /// The client pod's own address of the family: pods reach pods (and Services' pods) without NAT.
    ClientPod,
    /// An address the client node holds of the family: its InternalIPs, and for a hostNetwork
    /// client every global address on the node (an overlay CNI masquerades to its tunnel device).
    ClientNode,
    /// Any address: the path may SNAT (NodePorts with externalTrafficPolicy Cluster, hairpin).
    Any,
}

/// What an action of a check with several non-protocol parts is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aspect {
    /// The dual-stack `echo` Service's slices.
    Echo,
    /// A single-family Service (its slices, its DNS records).
    SingleFamily,
    /// The DNS record of the family: `a` for IPv4, `aaaa` for IPv6.
    Record,
    /// The slices after an endpoint is deleted.
    Slices,
}

/// What distinguishes the actions of one row in one family, besides the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    Protocol(Protocol),
    Aspect(Aspect),
}

/// One action of a data-plane row in one family: the unit a case reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action {
    pub family: IpFamily,
    /// The node the action is about, by its stable label (`control-plane`, `worker2`).
    pub node: Option<String>,
    pub variant: Option<Variant>,
}

impl Action {
    /// The part of the case id after `ID/`: `[node-][variant-]family`.
    pub fn suffix(&self) -> String {
        let variant = self.variant.map(|v| match v {
            Variant::Protocol(p) => p.name(),
            Variant::Aspect(Aspect::Echo) => "echo",
            Variant::Aspect(Aspect::SingleFamily) => "single-family",
            Variant::Aspect(Aspect::Slices) => "slices",
            Variant::Aspect(Aspect::Record) if self.family == IpFamily::IPv4 => "a",
            Variant::Aspect(Aspect::Record) => "aaaa",
        });
        let parts: Vec<&str> = self.node.as_deref().into_iter().chain(variant).chain([self.family.slug()]).collect();
        parts.join("-")
    }

    pub fn protocol(&self) -> Option<Protocol> {
        match self.variant {
            Some(Variant::Protocol(p)) => Some(p),
            _ => None,
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
    /// The client address the server must see; required exactly for checks that connect.
    #[serde(default)]
    source: Option<SourceRule>,
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
    /// The client address the server must see (checks that connect; `Any` for the others).
    pub source: SourceRule,
    pub note: Option<String>,
    /// Line and column of the row's id.
    pub position: (u64, u64),
}

/// The kinds of data-plane check, one code module each under `checks/dataplane/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckGroup {
    Addressing,
    Endpoints,
    Connectivity,
    Dns,
}

impl Check {
    pub fn group(self) -> CheckGroup {
        match self {
            Check::NodeInternalIps
            | Check::NodePodCidrs
            | Check::PodIps
            | Check::HostIps
            | Check::HostNetworkPodIps
            | Check::DownwardApiPodIps
            | Check::EtcHosts => CheckGroup::Addressing,
            Check::ServicePorts | Check::EndpointSlices | Check::LegacyEndpoints => CheckGroup::Endpoints,
            Check::DnsClusterIp | Check::DnsHeadless | Check::ResolvConf => CheckGroup::Dns,
            Check::PodToPod
            | Check::PodToClusterIp
            | Check::Sctp
            | Check::NodeToClusterIp
            | Check::NodeToNodePort
            | Check::Hairpin
            | Check::EndpointUpdate
            | Check::SessionAffinity
            | Check::LargePayload
            | Check::HostNetworkEndpoints
            | Check::HostNetworkEndpointsFromNode
            | Check::HostNetworkEndpointsViaNodePort
            | Check::HairpinNodePort
            | Check::NodePortEveryFamily
            | Check::ExternalNodePort => CheckGroup::Connectivity,
        }
    }

    /// Whether the check connects to something, so its row states the source address rule.
    pub fn connects(self) -> bool {
        self.group() == CheckGroup::Connectivity
    }
}

impl DataplaneRow {
    /// The row's actions in `family` on a cluster whose nodes carry `nodes` labels (in the order the
    /// API lists them). This is the only place that decides which cases a row becomes.
    pub fn actions(&self, family: IpFamily, nodes: &[String]) -> Vec<Action> {
        let action = |node: Option<&String>, variant: Option<Variant>| Action { family, node: node.cloned(), variant };
        let protocols = || self.protocols.iter().map(move |&p| action(None, Some(Variant::Protocol(p))));
        match self.check {
            Check::NodeInternalIps | Check::NodePodCidrs => nodes.iter().map(|n| action(Some(n), None)).collect(),
            Check::Sctp => vec![action(None, Some(Variant::Protocol(Protocol::Sctp)))],
            Check::EndpointSlices => [Aspect::Echo, Aspect::SingleFamily].map(|a| action(None, Some(Variant::Aspect(a)))).to_vec(),
            Check::DnsClusterIp | Check::DnsHeadless => [Aspect::Record, Aspect::SingleFamily].map(|a| action(None, Some(Variant::Aspect(a)))).to_vec(),
            Check::NodePortEveryFamily => self
                .protocols
                .iter()
                .flat_map(|&p| nodes.iter().map(move |n| action(Some(n), Some(Variant::Protocol(p)))))
                .collect(),
            Check::EndpointUpdate => std::iter::once(action(None, Some(Variant::Aspect(Aspect::Slices)))).chain(protocols()).collect(),
            // Every other check that connects: once per protocol; the rest once.
            check if check.connects() => protocols().collect(),
            _ => vec![action(None, None)],
        }
    }
}

/// Parses a data-plane table (a file whose `suite:` is `dataplane`).
pub fn parse_file(name: &str, text: &str) -> Result<Vec<DataplaneRow>, LoadError> {
    let file: DataplaneFile = serde_saphyr::from_str(text).map_err(|e| load_error(name, text, &e))?;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows = Vec::new();
    for row in file.scenarios {
        let (line, column) = (row.id.referenced.line(), row.id.referenced.column());
        let at = |field: &str, message: String| LoadError { file: name.into(), line, column, field: field.into(), message };
        let id = row.id.value.clone();
        check_id(&id).map_err(|message| at("id", message))?;
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(at("id", format!("duplicate id '{id}' (first defined at line {first})")));
        }
        let modes = parse_modes(name, row.modes.as_ref())?;
        let protocols = if row.protocols.is_empty() { vec![Protocol::Tcp] } else { row.protocols.clone() };
        let source = match (row.check.connects(), row.source) {
            // The outside client is no pod or node of the cluster: only `any` can be judged.
            (true, Some(rule)) if row.check == Check::ExternalNodePort && rule != SourceRule::Any => {
                return Err(at("source", "external-node-port connects from outside the cluster; its source rule is any".into()));
            }
            (true, Some(rule)) => rule,
            (true, None) => return Err(at("source", "a check that connects states the client address the server must see: client-pod, client-node or any".into())),
            (false, Some(_)) => return Err(at("source", format!("{:?} does not connect; it takes no source rule", row.check))),
            (false, None) => SourceRule::Any,
        };
        rows.push(DataplaneRow {
            suite: file.suite.value.clone(),
            group: file.group.clone(),
            id,
            title: row.title.clone(),
            check: row.check,
            protocols,
            modes,
            source,
            note: row.note.clone(),
            position: (line, column),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn row(check: Check, protocols: &[Protocol]) -> DataplaneRow {
        DataplaneRow {
            suite: "dataplane".into(),
            group: "g".into(),
            id: "D99".into(),
            title: "t".into(),
            check,
            protocols: protocols.to_vec(),
            modes: Mode::ALL.to_vec(),
            source: SourceRule::Any,
            note: None,
            position: (1, 1),
        }
    }

    #[rstest]
    #[case(Check::PodIps, &[Protocol::Tcp], IpFamily::IPv6, &["ipv6"])]
    #[case(Check::PodToClusterIp, &[Protocol::Tcp, Protocol::Http, Protocol::Udp], IpFamily::IPv4, &["tcp-ipv4", "http-ipv4", "udp-ipv4"])]
    #[case(Check::NodeInternalIps, &[Protocol::Tcp], IpFamily::IPv4, &["control-plane-ipv4", "worker-ipv4", "worker2-ipv4"])]
    #[case(Check::NodePortEveryFamily, &[Protocol::Tcp, Protocol::Udp], IpFamily::IPv6,
        &["control-plane-tcp-ipv6", "worker-tcp-ipv6", "worker2-tcp-ipv6", "control-plane-udp-ipv6", "worker-udp-ipv6", "worker2-udp-ipv6"])]
    #[case(Check::Sctp, &[Protocol::Tcp], IpFamily::IPv6, &["sctp-ipv6"])]
    #[case(Check::EndpointSlices, &[Protocol::Tcp], IpFamily::IPv4, &["echo-ipv4", "single-family-ipv4"])]
    #[case(Check::DnsClusterIp, &[Protocol::Tcp], IpFamily::IPv4, &["a-ipv4", "single-family-ipv4"])]
    #[case(Check::DnsHeadless, &[Protocol::Tcp], IpFamily::IPv6, &["aaaa-ipv6", "single-family-ipv6"])]
    #[case(Check::EndpointUpdate, &[Protocol::Tcp, Protocol::Udp], IpFamily::IPv6, &["slices-ipv6", "tcp-ipv6", "udp-ipv6"])]
    fn actions_are_named_by_node_variant_and_family(#[case] check: Check, #[case] protocols: &[Protocol], #[case] family: IpFamily, #[case] names: &[&str]) {
        let nodes: Vec<String> = ["control-plane", "worker", "worker2"].map(String::from).to_vec();
        let got: Vec<String> = row(check, protocols).actions(family, &nodes).iter().map(Action::suffix).collect();
        assert_eq!(got, names);
    }

    #[rstest]
    #[case("check: pod-to-pod\n", "t.yaml:4:9: source: a check that connects states the client address the server must see: client-pod, client-node or any")]
    #[case("check: pod-ips\n    source: any\n", "t.yaml:4:9: source: PodIps does not connect; it takes no source rule")]
    fn the_source_rule_goes_with_checks_that_connect(#[case] row: &str, #[case] error: &str) {
        let text = format!("suite: dataplane\ngroup: g\nscenarios:\n  - id: D1\n    title: t\n    {row}");
        assert_eq!(parse_file("t.yaml", &text).err().map(|e| e.to_string()).as_deref(), Some(error));
    }

    #[test]
    fn sctp_cannot_be_asked_for_in_a_table() {
        let text = "suite: dataplane\ngroup: g\nscenarios:\n  - id: D1\n    title: t\n    check: pod-to-pod\n    source: client-pod\n    protocols: [sctp]\n";
        let err = parse_file("t.yaml", text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("t.yaml:8:"), "{err}");
    }
}
