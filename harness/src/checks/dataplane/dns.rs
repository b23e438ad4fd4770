//! Cluster DNS per family (D20-D22): A/AAAA of a ClusterIP Service and of a headless Service (and
//! of their single-family twins, which must have no record of the other family), and the pod's
//! resolv.conf. Answers are retried within the convergence window, as connections are.

use super::fixture::{Fixture, cluster_ip, service_ips};
use super::reach::CONVERGENCE;
use super::verdict::{fail, listed, skip, verdict};
use crate::checks::Outcome;
use crate::error::{Error, Result};
use crate::mode::IpFamily;
use crate::objects::of_family;
use crate::probe_pod::{self, ResolveResult};
use crate::table::dataplane::{Action, Aspect, Check, Variant};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn qtype(family: IpFamily) -> &'static str {
    if family == IpFamily::IPv4 { "A" } else { "AAAA" }
}

fn other(family: IpFamily) -> IpFamily {
    if family == IpFamily::IPv4 { IpFamily::IPv6 } else { IpFamily::IPv4 }
}

/// A DNS response code by its name.
fn rcode_name(rcode: Option<u8>) -> String {
    match rcode {
        Some(0) => "NOERROR".into(),
        Some(2) => "SERVFAIL".into(),
        Some(3) => "NXDOMAIN".into(),
        Some(5) => "REFUSED".into(),
        Some(other) => format!("rcode {other}"),
        None => "no response".into(),
    }
}

/// What one answer said, in words.
fn describe(got: &ResolveResult) -> String {
    let mut text = format!("{} from {}: {}", rcode_name(got.rcode), got.server, listed(&got.addresses));
    if let Some(error) = &got.error {
        text.push_str(&format!(" ({error})"));
    }
    text
}

/// Asks `server` (the client pod's own nameserver when `None`) for `name`'s `family` records until
/// the answer is `want` (an empty `want` asks for a successful answer with no address), or the
/// window passes.
async fn lookup(fixture: &Fixture, server: Option<IpAddr>, name: &str, family: IpFamily, want: &BTreeSet<IpAddr>) -> Result<(bool, ResolveResult)> {
    let started = Instant::now();
    loop {
        let got = probe_pod::resolve(&fixture.pods, "client", name, qtype(family), server).await?;
        let have: BTreeSet<IpAddr> = got.addresses.iter().copied().collect();
        let matches = got.rcode == Some(0) && &have == want;
        if matches || started.elapsed() >= CONVERGENCE {
            return Ok((matches, got));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `service` resolves to exactly `want` for `family`, asked over `family`'s transport (kube-dns's
/// address of the family, where it has one), and, for a single-family Service, to no address of
/// the other family.
async fn resolves(fixture: &Fixture, service: &str, family: IpFamily, want: BTreeSet<IpAddr>, single_family: bool) -> Result<Outcome> {
    let name = format!("{service}.{}.svc.cluster.local", fixture.namespace);
    let server = of_family(&service_ips(&fixture.kube_dns().await?), family);
    if server.is_some()
        && let Err(missing) = fixture.pod_of_family("client", family).await?
    {
        return Ok(missing.into());
    }
    let (ok, got) = lookup(fixture, server, &name, family, &want).await?;
    let expected = format!("{} {name} = {}", qtype(family), listed(&want));
    if !ok {
        return Ok(verdict(false, expected, describe(&got)));
    }
    // Through the Service, kube-proxy picks one CoreDNS per query: a replica the client cannot reach
    // over this family would fail a query now and then. Each is asked directly too, so such a
    // cluster fails every time and the failure names the replica.
    if server.is_some() {
        for (replica, address) in fixture.coredns_replicas(family).await? {
            let (answered, got) = lookup(fixture, Some(address), &name, family, &want).await?;
            if !answered {
                return Ok(fail(format!("{expected}, from the Service and from each CoreDNS replica"), format!("{replica}: {}", describe(&got))));
            }
        }
    }
    if !single_family {
        return Ok(verdict(true, expected, describe(&got)));
    }
    let none = BTreeSet::new();
    let (empty, other_got) = lookup(fixture, server, &name, other(family), &none).await?;
    Ok(verdict(
        empty,
        format!("{expected}, and no {} record (a {family}-only Service)", qtype(other(family))),
        format!("{}; {} {}", describe(&got), qtype(other(family)), describe(&other_got)),
    ))
}


pub async fn run(fixture: &Fixture, check: Check, action: &Action) -> Result<Outcome> {
    let family = action.family;
    let single_family = action.variant == Some(Variant::Aspect(Aspect::SingleFamily));
    match check {
        Check::DnsClusterIp => {
            let service = if single_family { format!("echo-only-{}", family.slug()) } else { "echo".to_string() };
            let svc = fixture.service(&service).await?;
            let Some(ip) = cluster_ip(&svc, family) else {
                return Ok(fail(format!("{service} has a {family} clusterIP"), format!("clusterIPs {}", listed(service_ips(&svc)))));
            };
            resolves(fixture, &service, family, BTreeSet::from([ip]), single_family).await
        }
        Check::DnsHeadless => {
            let service = if single_family { format!("echo-headless-only-{}", family.slug()) } else { "echo-headless".to_string() };
            let servers = match fixture.endpoints("role=server", family).await? {
                Ok(servers) => servers,
                Err(missing) => return Ok(missing.into()),
            };
            resolves(fixture, &service, family, servers.iter().map(|e| e.address).collect(), single_family).await
        }
        Check::ResolvConf => {
            // The kubelet writes the nameservers from its clusterDNS; kube-dns stands in where the
            // kubelets' configuration cannot be read, and the case says so.
            let (dns, source) = match fixture.kubelet_cluster_dns().await? {
                Ok(dns) => (dns, "the kubelets' clusterDNS".to_string()),
                Err(why) => (service_ips(&fixture.kube_dns().await?), format!("kube-dns's clusterIPs ({why})")),
            };
            let Some(want) = of_family(&dns, family) else {
                return Ok(skip(format!("{source} has no {family} address ({}), so pods get no {family} nameserver", listed(&dns))));
            };
            let conf = fixture.exec("client", &["cat", "/etc/resolv.conf"]).await?;
            let nameservers: Vec<String> = conf.lines().filter_map(|l| l.strip_prefix("nameserver")).map(|s| s.trim().to_string()).collect();
            let searches = format!("{}.svc.cluster.local", fixture.namespace);
            let ok = conf.contains(&searches) && of_family(&nameservers, family) == Some(want);
            Ok(verdict(
                ok,
                format!("nameserver {want} (from {source}) and search {searches}"),
                conf.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" | "),
            ))
        }
        other => Err(Error::Environment(format!("{other:?} is not a DNS check"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_described_in_words() {
        let got = ResolveResult { ok: true, server: "10.96.0.10".into(), addresses: vec![], rcode: Some(0), error: None };
        assert_eq!(describe(&got), "NOERROR from 10.96.0.10: none");
        let got = ResolveResult { ok: false, server: "fd00:10:96::a".into(), addresses: vec![], rcode: Some(3), error: None };
        assert_eq!(describe(&got), "NXDOMAIN from fd00:10:96::a: none");
        assert_eq!(listed(["10.0.0.1", "10.0.0.2"]), "10.0.0.1, 10.0.0.2");
    }
}
