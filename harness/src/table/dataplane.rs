//! Data-plane rows: a table row names a check, its protocols and modes; each row becomes one
//! action per family (and per protocol, node or aspect where the check has several), named as
//! cilium-cli names its actions: `D12/udp-ipv6`, `D23/worker-tcp-ipv4`, `D10/echo-ipv4`.

use super::connect::{Client, Connect, ConnectFile, connect_of};
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
    /// Pod to pod over SCTP.
    Sctp,
    /// Pod to a Service's ClusterIP over SCTP.
    SctpService,
    Hairpin,
    EndpointUpdate,
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
    /// kube-proxy's health check of an externalTrafficPolicy Local LoadBalancer Service, on each
    /// node's address of the family.
    HealthCheckNodePort,
    /// The fixture's LoadBalancer Services of the family have an ingress address of it.
    LoadBalancerIngress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Http,
    Udp,
    /// Only the SCTP checks speak it, from the fixture's SCTP pods (allowed raw sockets, for the
    /// probe's own SCTP where the kernel opens no SCTP sockets); tables cannot ask for it, since
    /// their rows' client pods may not open raw sockets.
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
    /// The outside client's own address: nothing on the path translates it (externalTrafficPolicy
    /// Local, hostPorts). Only for clients outside the cluster.
    ExternalClient,
    /// Any address: the path may SNAT (NodePorts with externalTrafficPolicy Cluster, hairpin).
    Any,
}

/// What a data-plane row does: a check written in code, or a connection stated in the row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowKind {
    Check(Check),
    Connect(Connect),
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
    /// Exactly one of `check` and `connect`.
    #[serde(default)]
    check: Option<Check>,
    #[serde(default)]
    connect: Option<Spanned<ConnectFile>>,
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
    pub kind: RowKind,
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
    /// Answers of kube-proxy itself (its per-Service health check).
    Health,
    /// What the cluster's load balancer publishes.
    LoadBalancer,
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
            Check::HealthCheckNodePort => CheckGroup::Health,
            Check::LoadBalancerIngress => CheckGroup::LoadBalancer,
            Check::PodToPod
            | Check::Sctp
            | Check::SctpService
            | Check::Hairpin
            | Check::EndpointUpdate
            | Check::LargePayload
            | Check::HostNetworkEndpoints
            | Check::HostNetworkEndpointsFromNode
            | Check::HostNetworkEndpointsViaNodePort
            | Check::HairpinNodePort
            | Check::NodePortEveryFamily => CheckGroup::Connectivity,
        }
    }

    /// Whether the check connects to something, so its row states the source address rule.
    pub fn connects(self) -> bool {
        self.group() == CheckGroup::Connectivity
    }
}

impl DataplaneRow {
    /// The coded check the row names, if it names one.
    pub fn check(&self) -> Option<Check> {
        match &self.kind {
            RowKind::Check(check) => Some(*check),
            RowKind::Connect(_) => None,
        }
    }

    /// The row's actions in `family` on a cluster whose nodes carry `nodes` labels (in the order the
    /// API lists them). This is the only place that decides which cases a row becomes.
    pub fn actions(&self, family: IpFamily, nodes: &[String]) -> Vec<Action> {
        let action = |node: Option<&String>, variant: Option<Variant>| Action { family, node: node.cloned(), variant };
        let protocols = || self.protocols.iter().map(move |&p| action(None, Some(Variant::Protocol(p))));
        let check = match &self.kind {
            RowKind::Check(check) => *check,
            RowKind::Connect(_) => return protocols().collect(),
        };
        match check {
            Check::NodeInternalIps | Check::NodePodCidrs | Check::HealthCheckNodePort => nodes.iter().map(|n| action(Some(n), None)).collect(),
            Check::Sctp | Check::SctpService => vec![action(None, Some(Variant::Protocol(Protocol::Sctp)))],
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

/// Parses a data-plane table (a file whose `suite:` is one of DATAPLANE_SUITES).
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
        let kind = match (row.check, &row.connect) {
            (Some(check), None) => RowKind::Check(check),
            (None, Some(connect)) => {
                let (line, column) = (connect.referenced.line(), connect.referenced.column());
                let at = |field: &str, message: String| LoadError { file: name.into(), line, column, field: format!("connect.{field}"), message };
                RowKind::Connect(connect_of(&id, &connect.value).map_err(|(field, message)| at(field, message))?)
            }
            (Some(_), Some(_)) => return Err(at("check", "a row names a check or states a connect, not both".into())),
            (None, None) => return Err(at("check", "a row names a check or states a connect".into())),
        };
        let source = source_rule(&kind, row.source).map_err(|message| at("source", message))?;
        rows.push(DataplaneRow {
            suite: file.suite.value.clone(),
            group: file.group.clone(),
            id,
            title: row.title.clone(),
            kind,
            protocols,
            modes,
            source,
            note: row.note.clone(),
            position: (line, column),
        });
    }
    Ok(rows)
}

/// The row's source rule, checked against what the row connects from.
fn source_rule(kind: &RowKind, stated: Option<SourceRule>) -> Result<SourceRule, String> {
    let outside = match kind {
        RowKind::Check(check) if !check.connects() => {
            return match stated {
                Some(_) => Err(format!("{check:?} does not connect; it takes no source rule")),
                None => Ok(SourceRule::Any),
            };
        }
        // Every coded check connects from a pod or a node.
        RowKind::Check(_) => false,
        RowKind::Connect(connect) => connect.from == Client::External,
    };
    match (stated, outside) {
        (None, _) => Err("a row that connects states the client address the server must see: client-pod, client-node, external-client or any".into()),
        (Some(SourceRule::ClientPod | SourceRule::ClientNode), true) => {
            Err("the client is outside the cluster, no pod or node: its source rule is external-client or any".into())
        }
        (Some(SourceRule::ExternalClient), false) => Err("external-client is the rule of a client outside the cluster (from: external)".into()),
        (Some(rule), _) => {
            if let RowKind::Connect(Connect { from: Client::HostNetwork, .. }) = kind
                && rule == SourceRule::ClientPod
            {
                return Err("a hostNetwork client has the node's addresses: client-node or any".into());
            }
            Ok(rule)
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::connect::{DEFAULT_SERVERS, Destination, Direction, Expect, Expectation, Policy};
    use rstest::rstest;

    fn row(check: Check, protocols: &[Protocol]) -> DataplaneRow {
        DataplaneRow {
            suite: "dataplane".into(),
            group: "g".into(),
            id: "D99".into(),
            title: "t".into(),
            kind: RowKind::Check(check),
            protocols: protocols.to_vec(),
            modes: Mode::ALL.to_vec(),
            source: SourceRule::Any,
            note: None,
            position: (1, 1),
        }
    }

    #[rstest]
    #[case(Check::PodIps, &[Protocol::Tcp], IpFamily::IPv6, &["ipv6"])]
    #[case(Check::LargePayload, &[Protocol::Tcp, Protocol::Http, Protocol::Udp], IpFamily::IPv4, &["tcp-ipv4", "http-ipv4", "udp-ipv4"])]
    #[case(Check::NodeInternalIps, &[Protocol::Tcp], IpFamily::IPv4, &["control-plane-ipv4", "worker-ipv4", "worker2-ipv4"])]
    #[case(Check::NodePortEveryFamily, &[Protocol::Tcp, Protocol::Udp], IpFamily::IPv6,
        &["control-plane-tcp-ipv6", "worker-tcp-ipv6", "worker2-tcp-ipv6", "control-plane-udp-ipv6", "worker-udp-ipv6", "worker2-udp-ipv6"])]
    #[case(Check::Sctp, &[Protocol::Tcp], IpFamily::IPv6, &["sctp-ipv6"])]
    #[case(Check::SctpService, &[Protocol::Tcp], IpFamily::IPv4, &["sctp-ipv4"])]
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
    #[case("check: pod-to-pod\n", "t.yaml:4:9: source: a row that connects states the client address the server must see: client-pod, client-node, external-client or any")]
    #[case("check: pod-ips\n    source: any\n", "t.yaml:4:9: source: PodIps does not connect; it takes no source rule")]
    #[case("source: any\n", "t.yaml:4:9: check: a row names a check or states a connect")]
    #[case("check: pod-to-pod\n    source: any\n    connect: {from: pod, to: pod, expect: every}\n", "t.yaml:4:9: check: a row names a check or states a connect, not both")]
    fn a_row_states_what_it_does_and_the_source_rule_fits(#[case] row: &str, #[case] error: &str) {
        let text = format!("suite: dataplane\ngroup: g\nscenarios:\n  - id: D1\n    title: t\n    {row}");
        assert_eq!(parse_file("t.yaml", &text).err().map(|e| e.to_string()).as_deref(), Some(error));
    }

    /// A connect row's fields, each wrong in one way: the error names the connect block's position
    /// (line 6, column 14) and the field.
    #[rstest]
    #[case("{from: pod, from-node: node7, to: cluster-ip, expect: every}", "client-pod", "connect.from-node: 'node7' is no node label: control-plane, worker, worker2, ...")]
    #[case("{from: host-network, from-node: worker, to: cluster-ip, expect: every}", "client-node", "connect.from-node: the fixture's hostNetwork client runs on the control-plane node")]
    #[case("{from: external, from-node: worker, to: node-port, expect: every}", "any", "connect.from-node: an external client runs on no node")]
    #[case("{from: pod, to: cluster-ip, to-node: worker, expect: every}", "client-pod", "connect.to-node: only node-port and host-port dial a node")]
    #[case("{from: pod, to: outside, service: {type: NodePort}, expect: every}", "client-node", "connect.service: only cluster-ip, node-port and load-balancer rows create a Service")]
    #[case("{from: pod, to: cluster-ip, service: [1], expect: every}", "client-pod", "connect.service: a mapping of Service spec fields, merged into the row's Service")]
    #[case("{from: external, to: host-port, servers: role=x, expect: every}", "any", "connect.servers: host-port and outside rows have their own server (the hostPort pod, the outside host)")]
    #[case("{from: pod, to: cluster-ip, servers: 'role in (a)', expect: every}", "client-pod", "connect.servers: 'role in (a)' is no key=value term (a Service selects by equality)")]
    #[case("{from: external, to: node-port, expect: every-on-client-node}", "any", "connect.expect: an external client is on no node")]
    #[case("{from: pod, to: cluster-ip, expect: every-on-target-node}", "client-pod", "connect.expect: every-on-target-node is for node-port and host-port rows")]
    #[case("{from: pod, to: outside, expect: one}", "client-node", "connect.expect: one (affinity) is for a Service: cluster-ip, node-port or load-balancer")]
    #[case("{from: external, to: node-port, expect: every}", "client-pod", "source: the client is outside the cluster, no pod or node: its source rule is external-client or any")]
    #[case("{from: pod, to: cluster-ip, expect: every}", "external-client", "source: external-client is the rule of a client outside the cluster (from: external)")]
    #[case("{from: host-network, to: cluster-ip, expect: every}", "client-pod", "source: a hostNetwork client has the node's addresses: client-node or any")]
    #[case("{from: pod, to: pod, expect: one}", "client-pod", "connect.expect: one (affinity) is for a Service: cluster-ip, node-port or load-balancer")]
    #[case("{from: pod, to: pod, policy: [Ingress], expect: none}", "any", "connect.policy: a mapping of NetworkPolicy spec fields")]
    #[case("{from: pod, to: pod, policy: {podSelector: {}, policyTypes: [Ingress]}, expect: none}", "any", "connect.policy.podSelector: set by dualstack: the policy applies to the row's own pod")]
    #[case("{from: pod, to: pod, policy: {policyTypes: [Ingress, Egress]}, expect: none}", "any", "connect.policy.policyTypes: exactly one of [Ingress] (the row's server is policed) or [Egress] (its client is)")]
    #[case("{from: pod, to: pod, policy: {ingress: []}, expect: none}", "any", "connect.policy.policyTypes: exactly one of [Ingress] (the row's server is policed) or [Egress] (its client is)")]
    #[case("{from: pod, to: pod, servers: role=x, policy: {policyTypes: [Ingress]}, expect: none}", "any", "connect.servers: an Ingress policy row's server is its own pod")]
    #[case("{from: pod, to: node-port, policy: {policyTypes: [Ingress]}, expect: none}", "any", "connect.to: an Ingress policy row dials its own server: pod or cluster-ip")]
    #[case("{from: host-network, to: pod, policy: {policyTypes: [Egress]}, expect: none}", "any", "connect.from: an Egress policy row's client is its own pod: from: pod")]
    #[case("{from: pod, to: cluster-ip, policy: {policyTypes: [Ingress]}, expect: one}", "any", "connect.expect: a policy row expects every or none")]
    #[case("{from: pod, to: pod, expect: {IPv4: every, IPv6: one}}", "client-pod", "connect.expect: one (affinity) is for a Service: cluster-ip, node-port or load-balancer")]
    fn a_connect_row_is_checked_field_by_field(#[case] connect: &str, #[case] source: &str, #[case] error: &str) {
        let text = format!("suite: dataplane\ngroup: g\nscenarios:\n  - id: D1\n    title: t\n    connect: {connect}\n    source: {source}\n");
        let got = parse_file("t.yaml", &text).err().map(|e| e.to_string()).unwrap_or_default();
        let (position, message) = got.split_once(' ').unwrap_or_default();
        let want_position = if error.starts_with("source:") { "t.yaml:4:9:" } else { "t.yaml:6:14:" };
        assert_eq!((position, message), (want_position, error));
    }

    #[test]
    fn sctp_cannot_be_asked_for_in_a_table() {
        let text = "suite: dataplane\ngroup: g\nscenarios:\n  - id: D1\n    title: t\n    connect: {from: pod, to: cluster-ip, expect: every}\n    source: client-pod\n    protocols: [sctp]\n";
        let err = parse_file("t.yaml", text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("t.yaml:8:"), "{err}");
    }

    #[test]
    fn a_connect_row_gets_its_defaults_and_one_action_per_protocol() {
        let text = "suite: dataplane\ngroup: g\nscenarios:\n  - id: D27\n    title: t\n    connect:\n      from: pod\n      to: node-port\n      service: {internalTrafficPolicy: Local}\n      expect: every-on-target-node\n    source: client-pod\n    protocols: [tcp, udp]\n";
        let rows = parse_file("t.yaml", text).unwrap();
        let RowKind::Connect(connect) = &rows[0].kind else { panic!("{:?}", rows[0].kind) };
        assert_eq!(
            connect,
            &Connect {
                from: Client::Pod,
                from_node: "control-plane".into(),
                to: Destination::NodePort,
                to_node: Some("worker".into()),
                service: Some(serde_json::json!({"internalTrafficPolicy": "Local"})),
                servers: DEFAULT_SERVERS.into(),
                expect: Expectation::same(Expect::EveryOnTargetNode),
                policy: None,
            }
        );
        assert_eq!(connect.service_name("D27").as_deref(), Some("row-d27"));
        let got: Vec<String> = rows[0].actions(IpFamily::IPv6, &[]).iter().map(Action::suffix).collect();
        assert_eq!(got, ["tcp-ipv6", "udp-ipv6"]);
    }

    #[test]
    fn a_policy_row_serves_from_its_own_pod_and_may_expect_per_family() {
        let text = "suite: network-policy\ngroup: g\nscenarios:\n  - id: P05\n    title: t\n    connect:\n      from: pod\n      to: pod\n      policy: {policyTypes: [Ingress], ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}\n      expect: {IPv4: every, IPv6: none}\n    source: client-pod\n";
        let rows = parse_file("t.yaml", text).unwrap();
        let RowKind::Connect(connect) = &rows[0].kind else { panic!("{:?}", rows[0].kind) };
        assert_eq!(rows[0].suite, "network-policy");
        assert_eq!(connect.servers, "policy-row=p05");
        assert_eq!((connect.expect.of(IpFamily::IPv4), connect.expect.of(IpFamily::IPv6)), (Expect::Every, Expect::None));
        assert!(connect.expect.may_be_silence());
        assert_eq!(
            connect.policy,
            Some(Policy { direction: Direction::Ingress, spec: serde_json::json!({"policyTypes": ["Ingress"], "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}) })
        );
    }
}
