//! Cluster DNS per family (D20-D22): A/AAAA of a ClusterIP Service and of a headless Service, and
//! the pod's resolv.conf.

use super::fixture::{Fixture, cluster_ip, service_ips};
use super::verdict::{skip, verdict};
use crate::checks::Outcome;
use crate::error::{Error, Result};
use crate::mode::IpFamily;
use crate::objects::of_family;
use crate::probe_pod;
use crate::table::dataplane::{Action, Check};
use std::collections::BTreeSet;
use std::net::IpAddr;

pub async fn run(fixture: &Fixture, check: Check, action: &Action) -> Result<Outcome> {
    let family = action.family;
    Ok(match check {
        Check::DnsClusterIp | Check::DnsHeadless => {
            let qtype = if family == IpFamily::IPv4 { "A" } else { "AAAA" };
            let (service, want): (&str, BTreeSet<IpAddr>) = if check == Check::DnsClusterIp {
                ("echo", cluster_ip(&fixture.service("echo").await?, family).into_iter().collect())
            } else {
                ("echo-headless", fixture.server_addresses(family).await?.iter().filter_map(|a| a.parse().ok()).collect())
            };
            let name = format!("{service}.{}.svc.cluster.local", fixture.namespace);
            let got = probe_pod::resolve(&fixture.pods, "client", &name, qtype, None).await?;
            let have: BTreeSet<IpAddr> = got.addresses.iter().copied().collect();
            verdict(
                got.ok && have == want && !want.is_empty(),
                format!("{qtype} {name} via {} = {want:?}", got.server),
                format!("{have:?} rcode {:?} {}", got.rcode, got.error.unwrap_or_default()),
            )
        }
        Check::ResolvConf => {
            let conf = fixture.exec("client", &["cat", "/etc/resolv.conf"]).await?;
            let dns_ips = service_ips(&fixture.kube_dns().await?);
            let nameservers: Vec<String> = conf.lines().filter_map(|l| l.strip_prefix("nameserver")).map(|s| s.trim().to_string()).collect();
            let searches = format!("{}.svc.cluster.local", fixture.namespace);
            // A nameserver of this family is expected where kube-dns has an address of it.
            let want = of_family(&dns_ips, family);
            if want.is_none() {
                skip(format!("kube-dns has no {family} address ({dns_ips:?}), so pods get no {family} nameserver"))
            } else {
                let ok = conf.contains(&searches) && of_family(&nameservers, family) == want;
                verdict(
                    ok,
                    format!("nameserver {want:?} (kube-dns) and search {searches}"),
                    conf.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" | "),
                )
            }
        }
        other => return Err(Error::Environment(format!("{other:?} is not a DNS check"))),
    })
}
