//! The connectivity checks written in code (D08, D13, D15, D16, D18, D19, D23, D33): pod to pod,
//! hairpin, endpoint updates, large payloads, hostNetwork endpoints, SCTP pod to pod and through a
//! Service, and a NodePort on every node; and
//! the session-affinity verdict the `connect` rows use. Every connection goes through
//! `Fixture::reach` and names its family, source and destination.

use super::fixture::{DELETED_UPDATE_POD, Fixture, REMAINING_UPDATE_POD, SCTP_CLIENT, SCTP_SERVICE, SECOND_CLIENT, name_of, node_port};
use super::reach::{Answers, Destination, Endpoint, Expected, Missing, SMALL_PAYLOAD, direct, via_cluster_ip};
use super::verdict::{fail, listed, skip, verdict};
use crate::checks::Outcome;
use crate::error::{Error, Result};
use crate::objects::{internal_ips, of_family, pod_ips};
use crate::probe_pod::PROBE_PORT;
use crate::table::dataplane::{Action, Aspect, Check, DataplaneRow, Protocol, SourceRule, Variant};
use crate::wait::poll;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes a plain connection sends (and gets back).
const SMALL: usize = SMALL_PAYLOAD;

pub async fn run(fixture: &Fixture, row: &DataplaneRow, action: &Action) -> Result<Outcome> {
    let (rule, family) = (row.source, action.family);
    let Some(check) = row.check() else { return Err(Error::Environment(format!("{} states a connect, not a check", row.id))) };
    if check == Check::EndpointUpdate {
        return endpoint_update(fixture, action).await;
    }
    let Some(proto) = action.protocol() else {
        return Err(Error::Environment(format!("{check:?} needs a protocol, the action has {:?}", action.variant)));
    };
    let servers = || fixture.endpoints("role=server", family);
    // server-0 is the only pod labelled hairpin=yes: the target of the pod-to-pod paths.
    let server_0 = || fixture.endpoints("hairpin=yes", family);
    let echo = || async { fixture.service("echo").await };
    let nodeport_on = |address: Option<std::net::IpAddr>, svc: &k8s_openapi::api::core::v1::Service, node: &str| -> Destination {
        match (address, node_port(svc, proto.service_protocol())) {
            (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
            (ip, port) => Err(Missing { wanted: format!("a {family} address on {node} and a nodePort"), saw: format!("address {}, nodePort {}", ip.map_or("none".into(), |ip| ip.to_string()), port.map_or("none".into(), |p| p.to_string())) }),
        }
    };
    match check {
        Check::PodToPod => pod_to_pod(fixture, proto, family, rule).await,
        Check::Sctp | Check::SctpService => {
            // The kernel's SCTP sockets, or the probe's own SCTP over raw IP: skipped only where
            // neither works.
            let supported = fixture.sctp_support().await?;
            if supported.contains("\"ok\":false") {
                return Ok(skip(format!("the probe cannot speak SCTP in pod {SCTP_CLIENT}: {}", supported.trim())));
            }
            if check == Check::Sctp {
                let peer = fixture.endpoints("sctp-peer=yes", family).await?;
                return fixture.reach(SCTP_CLIENT, proto, direct(&peer, PROBE_PORT), SMALL, Answers::every(peer, rule)).await;
            }
            let target = via_cluster_ip(SCTP_SERVICE, &fixture.service(SCTP_SERVICE).await?, family);
            fixture.reach(SCTP_CLIENT, proto, target, SMALL, Answers::every(fixture.endpoints("role=sctp-server", family).await?, rule)).await
        }
        Check::NodePortEveryFamily => {
            let label = action.node.as_deref().unwrap_or_default();
            let node = fixture.node(label).ok_or_else(|| Error::Environment(format!("no node labelled {label} in the cluster")))?;
            let target = nodeport_on(of_family(&internal_ips(node), family), &echo().await?, &name_of(node));
            fixture.reach("client", proto, target, SMALL, Answers::every(servers().await?, rule)).await
        }
        Check::Hairpin => {
            let target = via_cluster_ip("echo-hairpin", &fixture.service("echo-hairpin").await?, family);
            fixture.reach("server-0", proto, target, SMALL, Answers::every(server_0().await?, rule)).await
        }
        Check::LargePayload => {
            // 1 MiB over TCP; over UDP a datagram larger than the 1500-byte MTU, so it is fragmented.
            let bytes = if proto == Protocol::Udp { 8000 } else { 1 << 20 };
            fixture.reach("client", proto, via_cluster_ip("echo", &echo().await?, family), bytes, Answers::every(servers().await?, rule)).await
        }
        Check::HostNetworkEndpoints => {
            let target = via_cluster_ip("echo-host", &fixture.service("echo-host").await?, family);
            fixture.reach("client", proto, target, SMALL, Answers::every(fixture.endpoints("role=host-server", family).await?, rule)).await
        }
        Check::HostNetworkEndpointsFromNode => {
            let target = via_cluster_ip("echo-host", &fixture.service("echo-host").await?, family);
            fixture.reach("host-client", proto, target, SMALL, Answers::every(fixture.endpoints("role=host-server", family).await?, rule)).await
        }
        Check::HostNetworkEndpointsViaNodePort => {
            let target = nodeport_on(fixture.worker_address(family), &fixture.service("echo-host").await?, &fixture.worker_name());
            fixture.reach("host-client", proto, target, SMALL, Answers::every(fixture.endpoints("role=host-server", family).await?, rule)).await
        }
        Check::HairpinNodePort => {
            // server-0 runs on the first worker: the NodePort of its own node.
            let target = nodeport_on(fixture.worker_address(family), &fixture.service("echo-hairpin").await?, &fixture.worker_name());
            fixture.reach("server-0", proto, target, SMALL, Answers::every(server_0().await?, rule)).await
        }
        other => Err(Error::Environment(format!("{other:?} is not a connectivity check"))),
    }
}

/// Every client against every server, directly, each pair continuously reachable: the network
/// model's pod-to-pod promise, pair by pair, so a broken path is named by its two ends.
async fn pod_to_pod(fixture: &Fixture, proto: Protocol, family: crate::mode::IpFamily, rule: SourceRule) -> Result<Outcome> {
    let servers = match fixture.endpoints("role=server", family).await? {
        Ok(servers) => servers,
        Err(missing) => return Ok(missing.into()),
    };
    let pairs: Vec<(&str, &Endpoint)> = ["client", SECOND_CLIENT].iter().flat_map(|&c| servers.iter().map(move |s| (c, s))).collect();
    // The pairs at once: each is a few probe runs, and on a loaded machine a run is slow.
    let outcomes = futures::future::join_all(pairs.iter().map(|&(client, server)| fixture.reach_continuously(client, proto, server, PROBE_PORT, rule))).await;
    let (mut seen, mut broken, mut retried) = (Vec::new(), Vec::new(), Vec::new());
    for (&(client, server), outcome) in pairs.iter().zip(outcomes) {
        let outcome = outcome?;
        let pair = format!("{client} -> {} on {}", server.pod, server.node);
        if outcome.status == reports::Status::Passed {
            retried.extend(outcome.retried);
        } else {
            broken.push(format!("{pair}: {}", outcome.message));
        }
        seen.push(format!("{pair}: {}", outcome.actual));
    }
    let expected = format!("client and {SECOND_CLIENT} each reach {} over {} directly and continuously", listed(servers.iter().map(|s| format!("{} on {}", s.pod, s.node))), proto.name());
    let mut outcome = verdict(broken.is_empty(), expected, seen.join(" | "));
    if !broken.is_empty() {
        outcome.message = broken.join(" | ");
    }
    outcome.retried = retried;
    Ok(outcome)
}

/// Requests with ClientIP affinity that must all reach one endpoint: with two endpoints and no
/// affinity, 15 answers from one endpoint happen by chance once in 2^14 (< 1 in 10^4).
const AFFINITY_REQUESTS: usize = 15;

/// Reachable first from the fixture pod `client` (bounded convergence, any endpoint), then every
/// request sticks to one endpoint.
pub async fn session_affinity(fixture: &Fixture, client: &str, proto: Protocol, target: Destination, servers: Expected, rule: SourceRule) -> Result<Outcome> {
    let reachable = fixture.reach(client, proto, target.clone(), SMALL, Answers::any(servers, rule)).await?;
    let (Ok(address), reports::Status::Passed) = (target, reachable.status) else { return Ok(reachable) };
    let (mut responders, mut errors) = (Vec::new(), Vec::new());
    for got in fixture.connect_batch(client, proto, address, SMALL, AFFINITY_REQUESTS).await? {
        match got.answer {
            Some(a) => responders.push(a.hostname),
            None => errors.push(got.error.unwrap_or_default()),
        }
    }
    let mut counts: std::collections::BTreeMap<&String, usize> = std::collections::BTreeMap::new();
    responders.iter().for_each(|r| *counts.entry(r).or_default() += 1);
    let seen: Vec<String> = counts.iter().map(|(who, n)| format!("{who} x{n}")).collect();
    Ok(verdict(
        errors.is_empty() && counts.len() == 1,
        format!("{AFFINITY_REQUESTS} requests to {address} over {} all answered by one endpoint", proto.name()),
        format!("answered by {}{}", if seen.is_empty() { "nobody".to_string() } else { seen.join(", ") }, if errors.is_empty() { String::new() } else { format!("; failed: {}", errors.join("; ")) }),
    ))
}

/// Consecutive answers from the remaining pod that show kube-proxy converged. A stale rule still sends
/// half the connections to the deleted pod, and those fail fast (no route), so the 20 s window holds a
/// few thousand requests: a streak of 12 then came by chance about once in seven runs (seen in CI). A
/// streak of 40 has odds of 2^-40 per start, below 1 in 10^8 over the window.
const STREAK: usize = 40;
/// Requests per probe exec while waiting for the streak (two batches make a streak on a healthy cluster).
const STREAK_BATCH: usize = 20;

/// After an endpoint pod is deleted, its addresses leave the slices and only the other pod answers.
async fn endpoint_update(fixture: &Fixture, action: &Action) -> Result<Outcome> {
    let family = action.family;
    fixture.delete_update_pod().await?;
    // Nothing to compare is a failure that says so, never an empty set matching an empty slice.
    let remaining = match fixture.pod_of_family(REMAINING_UPDATE_POD, family).await? {
        Ok(pod) => pod_ips(&pod),
        Err(missing) => return Ok(missing.into()),
    };
    let remaining: BTreeSet<String> = remaining.into_iter().filter(|ip| crate::mode::IpFamily::of_text(ip) == Some(family)).collect();
    match action.variant {
        Some(Variant::Aspect(Aspect::Slices)) => {
            let expected = format!("after {DELETED_UPDATE_POD} is deleted the {family} slice of echo-update lists only {REMAINING_UPDATE_POD}: {}", listed(&remaining));
            let converged = poll("the slice to drop the deleted pod", Duration::from_secs(30), Duration::from_millis(300), || async {
                let have = fixture.slice_addresses("echo-update", family).await?;
                Ok(if have == remaining { Ok(have) } else { Err(listed(&have)) })
            })
            .await;
            Ok(match converged {
                Ok(have) => verdict(true, expected, listed(&have)),
                Err(Error::Timeout { last_seen, .. }) => fail(expected, format!("after 30s still {last_seen}")),
                Err(e) => return Err(e),
            })
        }
        Some(Variant::Protocol(proto)) => {
            if let Err(missing) = fixture.pod_of_family("client", family).await? {
                return Ok(missing.into());
            }
            let target = via_cluster_ip("echo-update", &fixture.service("echo-update").await?, family);
            let target = match target {
                Ok(target) => target,
                Err(missing) => return Ok(missing.into()),
            };
            // kube-proxy converges a moment after the slice changes: a run of STREAK consecutive
            // answers from the remaining pod must start within the bound (and may finish after it:
            // a run that began in time is convergence in time, however busy the machine; on 2 cores
            // with two dual clusters at once one probe exec took over 10 s). Any other answer or a
            // failure after the bound ends it.
            let (mut streak, mut seen) = (0, Vec::new());
            let (converge, finish) = (Duration::from_secs(20), Duration::from_secs(60));
            let converge_by = Instant::now() + converge;
            let give_up = converge_by + finish;
            let mut streak_began = None;
            while streak < STREAK && Instant::now() < give_up && (Instant::now() < converge_by || streak > 0) {
                let batch_began = Instant::now();
                for got in fixture.connect_batch("client", proto, target, SMALL, STREAK_BATCH).await? {
                    match got.answer {
                        Some(a) if a.hostname == REMAINING_UPDATE_POD => {
                            if streak == 0 {
                                streak_began = Some(batch_began);
                            }
                            streak += 1;
                        }
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
            }
            seen.truncate(5);
            Ok(verdict(
                streak >= STREAK && streak_began.is_some_and(|began| began <= converge_by),
                format!("from within 20s on, {STREAK} consecutive requests to {target} over {} answered by {REMAINING_UPDATE_POD}", proto.name()),
                format!(
                    "{streak} consecutive answers by {REMAINING_UPDATE_POD}{}; before that: {}",
                    if streak > 0 && streak < STREAK { format!(" when the {}s bound ran out", (converge + finish).as_secs()) } else { String::new() },
                    if seen.is_empty() { "nothing else".to_string() } else { seen.join("; ") }
                ),
            ))
        }
        other => Err(Error::Environment(format!("endpoint-update has no action {other:?}"))),
    }
}
