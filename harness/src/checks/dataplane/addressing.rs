//! Node and pod addressing (D01-D07): InternalIPs, podCIDRs, pod IPs and their order, hostIPs,
//! hostNetwork pods, the downward API and /etc/hosts, each judged for one family.

use super::fixture::{Fixture, name_of};
use super::verdict::{fail, listed, ordered, verdict};
use crate::checks::Outcome;
use crate::error::Result;
use crate::objects::{internal_ips, of_family, pod_ips};
use crate::table::dataplane::{Action, Check};

pub async fn run(fixture: &Fixture, check: Check, action: &Action) -> Result<Outcome> {
    let (mode, family) = (fixture.mode, action.family);
    let node = || {
        let label = action.node.as_deref().unwrap_or_default();
        fixture.node(label).ok_or_else(|| crate::error::Error::Environment(format!("no node labelled {label} in the cluster")))
    };
    Ok(match check {
        Check::NodeInternalIps => {
            let node = node()?;
            ordered(mode, family, &format!("node {} InternalIPs", name_of(node)), &internal_ips(node))
        }
        Check::NodePodCidrs => {
            let node = node()?;
            let spec = node.spec.clone().unwrap_or_default();
            let cidrs = spec.pod_cidrs.unwrap_or_default();
            let v = ordered(mode, family, &format!("node {} podCIDRs", name_of(node)), &cidrs);
            if v.status == reports::Status::Passed && spec.pod_cidr.as_ref() != cidrs.first() {
                fail("spec.podCIDR == spec.podCIDRs[0]", format!("podCIDR {}, podCIDRs {}", spec.pod_cidr.as_deref().unwrap_or("unset"), listed(&cidrs)))
            } else {
                v
            }
        }
        Check::PodIps => {
            let pod = fixture.pod("client").await?;
            let ips = pod_ips(&pod);
            let v = ordered(mode, family, "client podIPs", &ips);
            let primary = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            if v.status == reports::Status::Passed && primary.as_ref() != ips.first() {
                fail("status.podIP == status.podIPs[0]", format!("podIP {}, podIPs {}", primary.as_deref().unwrap_or("unset"), listed(&ips)))
            } else {
                v
            }
        }
        Check::HostIps => {
            let pod = fixture.pod("client").await?;
            let host_ips: Vec<String> = pod.status.as_ref().and_then(|s| s.host_ips.clone()).unwrap_or_default().into_iter().map(|h| h.ip).collect();
            let node_ips = internal_ips(&fixture.control_plane);
            let v = ordered(mode, family, "client hostIPs", &host_ips);
            if v.status == reports::Status::Passed && of_family(&host_ips, family) != of_family(&node_ips, family) {
                fail(format!("hostIPs equal the node's InternalIPs {}", listed(&node_ips)), format!("hostIPs {}", listed(&host_ips)))
            } else {
                v
            }
        }
        Check::HostNetworkPodIps => {
            let ips = pod_ips(&fixture.pod("host-client").await?);
            let node_ips = internal_ips(&fixture.control_plane);
            let ok = of_family(&ips, family).is_some() && of_family(&ips, family) == of_family(&node_ips, family);
            verdict(
                ok,
                format!("the hostNetwork pod's {family} podIP is its node's {family} InternalIP (node has {})", listed(&node_ips)),
                format!("podIPs {}", listed(&ips)),
            )
        }
        Check::DownwardApiPodIps => {
            let pod = match fixture.pod_of_family("client", family).await? {
                Ok(pod) => pod,
                Err(missing) => return Ok(missing.into()),
            };
            let ips = pod_ips(&pod);
            let env = fixture.exec("client", &["printenv", "POD_IPS"]).await?;
            let seen: Vec<String> = env.trim().split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
            let ok = of_family(&seen, family).is_some() && seen == ips;
            verdict(
                ok,
                format!("POD_IPS (status.podIPs through the downward API) holds a {family} address and equals podIPs {}", listed(&ips)),
                format!("POD_IPS={}", env.trim()),
            )
        }
        Check::EtcHosts => {
            let pod = fixture.pod("client").await?;
            let Some(ip) = of_family(&pod_ips(&pod), family) else {
                return Ok(fixture.pod_without_address(&pod, family).into());
            };
            let hosts = fixture.exec("client", &["cat", "/etc/hosts"]).await?;
            let ok = hosts.lines().any(|l| {
                let mut words = l.split_whitespace();
                words.next() == Some(ip.to_string().as_str()) && words.any(|w| w == "client")
            });
            verdict(ok, format!("/etc/hosts maps the {family} pod IP {ip} to client"), hosts.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" | "))
        }
        other => return Err(crate::error::Error::Environment(format!("{other:?} is not an addressing check"))),
    })
}
