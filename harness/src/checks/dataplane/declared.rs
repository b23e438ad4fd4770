//! The rows that state their connection (`connect:`): the client, what it dials, the Service the
//! fixture made for the row, and who must answer, judged by the one reach primitive.

use super::fixture::{Fixture, name_of, node_port};
use super::reach::{Answers, Endpoint, Expected, Missing, SERVICE_PORT, SMALL_PAYLOAD, via_cluster_ip};
use super::external::OutsideHost;
use super::verdict::{fail, listed, skip, verdict};
use crate::checks::Outcome;
use crate::error::{Error, Result};
use crate::mode::IpFamily;
use crate::objects::{internal_ips, of_family};
use crate::probe_pod::PROBE_PORT;
use crate::table::connect::{Client, Connect, Destination, Direction, Expect, policy_pod_name};
use super::policy::Enforcement;
use crate::table::dataplane::{Action, DataplaneRow, Protocol};
use std::net::SocketAddr;

pub async fn run(fixture: &Fixture, row: &DataplaneRow, connect: &Connect, action: &Action) -> Result<Outcome> {
    if connect.policy.is_some() {
        match fixture.policy_enforcement().await {
            Enforcement::Enforced { .. } => {}
            Enforcement::NotEnforced(why) => return Ok(skip(why.clone())),
            Enforcement::Undetermined(why) => return Ok(fail(format!("{} under its NetworkPolicy", row.id), why.clone())),
        }
    }
    connection(fixture, row, connect, action).await
}

/// The row's connection, judged.
async fn connection(fixture: &Fixture, row: &DataplaneRow, connect: &Connect, action: &Action) -> Result<Outcome> {
    let family = action.family;
    let Some(proto) = action.protocol() else {
        return Err(Error::Environment(format!("{} needs a protocol, the action has {:?}", row.id, action.variant)));
    };
    let expect = connect.expect.of(family);
    let egress_policy = connect.policy.as_ref().is_some_and(|p| p.direction == Direction::Egress);
    let client = match connect.from {
        // The row's own client, made on `from-node` when the cluster has that node.
        Client::Pod if egress_policy => match fixture.node(&connect.from_node) {
            Some(_) => Connector::Pod(policy_pod_name(&row.id)),
            None => return Ok(skip(format!("the cluster has no node {} for the client", connect.from_node))),
        },
        Client::Pod => match fixture.client_on(&connect.from_node).await? {
            Some(pod) => Connector::Pod(pod),
            None => return Ok(skip(format!("the cluster has no node {} for the client", connect.from_node))),
        },
        Client::HostNetwork => Connector::Pod("host-client".to_string()),
        Client::External => match fixture.outside_host().await {
            Ok(host) => Connector::Outside(host),
            Err(why) if fixture.docker_network.is_none() => return Ok(skip(why)),
            Err(why) => return Ok(fail(format!("{} from outside the cluster", row.id), why)),
        },
    };
    let to_node = match &connect.to_node {
        Some(label) => match fixture.node(label) {
            Some(node) => Some(node.clone()),
            None => return Ok(skip(format!("the cluster has no node {label} to dial"))),
        },
        None => None,
    };
    // The servers, before narrowing them to a node.
    let servers: Expected = match connect.to {
        Destination::Outside => match fixture.outside_host().await {
            Ok(host) => host.endpoint(family),
            Err(why) if fixture.docker_network.is_none() => return Ok(skip(why)),
            Err(why) => Err(Missing { wanted: "a server outside the cluster".into(), saw: why }),
        },
        _ => fixture.endpoints(&connect.servers, family).await?,
    };
    let service = match connect.service_name(&row.id) {
        Some(name) => Some((fixture.service(&name).await?, name)),
        None => None,
    };
    let to_node_address = |family| to_node.as_ref().and_then(|n| of_family(&internal_ips(n), family));
    let to_node_name = to_node.as_ref().map(name_of).unwrap_or_default();
    let target = match (connect.to, &service) {
        (Destination::ClusterIp, Some((svc, name))) => via_cluster_ip(name, svc, family),
        (Destination::NodePort, Some((svc, name))) => match (to_node_address(family), node_port(svc, proto.service_protocol())) {
            (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
            (ip, port) => Err(Missing {
                wanted: format!("an {family} address on {to_node_name} and a nodePort of {name}"),
                saw: format!("address {}, nodePort {}", ip.map_or("none".into(), |ip| ip.to_string()), port.map_or("none".into(), |p| p.to_string())),
            }),
        },
        (Destination::LoadBalancer, Some((_, name))) => {
            let book = match fixture.load_balancers().await {
                Ok(book) => book,
                Err(why) => return Ok(skip(why)),
            };
            let ingress = book.get(name).map(|b| b.ingress.clone()).unwrap_or_default();
            match ingress.iter().find(|ip| IpFamily::of(ip) == family) {
                Some(&ip) => Ok(SocketAddr::new(ip, SERVICE_PORT)),
                None => Err(Missing { wanted: format!("an {family} address in status.loadBalancer.ingress of {name}"), saw: format!("ingress {}", listed(&ingress)) }),
            }
        }
        (Destination::HostPort, _) => to_node_address(family)
            .map(|ip| SocketAddr::new(ip, fixture.host_port_number()))
            .ok_or_else(|| Missing { wanted: format!("an {family} address on {to_node_name}"), saw: "none".into() }),
        (Destination::Outside, _) => match &servers {
            Ok(endpoints) => Ok(SocketAddr::new(endpoints[0].address, PROBE_PORT)),
            Err(missing) => Err(missing.clone()),
        },
        (Destination::Pod, _) => return reach_each(fixture, &client, proto, servers, expect, row).await,
        (Destination::ClusterIp | Destination::NodePort | Destination::LoadBalancer, None) => {
            return Err(Error::Environment(format!("{}: the fixture made no Service for the row", row.id)));
        }
    };
    // Who must answer: the servers, those on one node, or nobody.
    let client_node = match &client {
        Connector::Pod(pod) => fixture.pod(pod).await?.spec.and_then(|s| s.node_name),
        Connector::Outside(_) => None,
    };
    let on_node = |node: Option<String>, servers: Expected| servers.map(|all| all.into_iter().filter(|e| Some(&e.node) == node.as_ref()).collect::<Vec<_>>());
    let answers = match expect {
        Expect::Every => Answers::every(servers, row.source),
        Expect::None => Answers::nobody(),
        Expect::One => {
            let Connector::Pod(client) = client else { return Err(Error::Environment(format!("{}: affinity is judged from a pod", row.id))) };
            return super::connectivity::session_affinity(fixture, &client, proto, target, servers, row.source).await;
        }
        Expect::EveryOnClientNode => nobody_if_empty(on_node(client_node, servers), row.source),
        Expect::EveryOnTargetNode => nobody_if_empty(on_node(Some(to_node_name.clone()), servers), row.source),
    };
    client.reach(fixture, proto, target, answers).await
}

/// Who connects: a fixture pod by name, or the outside host on the nodes' docker network.
enum Connector<'a> {
    Pod(String),
    Outside(&'a OutsideHost),
}

impl Connector<'_> {
    async fn reach(&self, fixture: &Fixture, proto: Protocol, target: super::reach::Destination, answers: Answers) -> Result<Outcome> {
        match self {
            Self::Pod(pod) => fixture.reach(pod, proto, target, SMALL_PAYLOAD, answers).await,
            Self::Outside(host) => host.reach(proto, target, answers).await,
        }
    }
}

/// Each of `servers` must answer; none left on the node means nobody may.
fn nobody_if_empty(servers: Expected, rule: crate::table::dataplane::SourceRule) -> Answers {
    match servers {
        Ok(list) if list.is_empty() => Answers::nobody(),
        servers => Answers::every(servers, rule),
    }
}

/// `to: pod`: each server's own address, one reach per server (at once: a window waited out for
/// one need not wait for the other), all of which must pass (each server answers, or with
/// `expect: none` none does).
async fn reach_each(fixture: &Fixture, client: &Connector<'_>, proto: Protocol, servers: Expected, expect: Expect, row: &DataplaneRow) -> Result<Outcome> {
    let servers: Vec<Endpoint> = match servers {
        Ok(servers) => servers,
        Err(missing) => return Ok(missing.into()),
    };
    let outcomes = futures::future::join_all(servers.iter().map(|server| {
        let target = Ok(SocketAddr::new(server.address, PROBE_PORT));
        let answers = if expect == Expect::None { Answers::nobody() } else { Answers::every(Ok(vec![server.clone()]), row.source) };
        client.reach(fixture, proto, target, answers)
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<Outcome>>>()?;
    let broken: Vec<String> = servers.iter().zip(&outcomes).filter(|(_, o)| o.status != reports::Status::Passed).map(|(s, o)| format!("{}: {}", s.pod, o.message)).collect();
    let seen: Vec<String> = servers.iter().zip(&outcomes).map(|(s, o)| format!("{}: {}", s.pod, o.actual)).collect();
    let expected: Vec<String> = outcomes.iter().map(|o| o.expected.clone()).collect();
    let mut outcome = verdict(broken.is_empty(), expected.join("; "), seen.join(" | "));
    if !broken.is_empty() {
        outcome.message = broken.join(" | ");
    }
    outcome.retried = outcomes.into_iter().flat_map(|o| o.retried).collect();
    Ok(outcome)
}
