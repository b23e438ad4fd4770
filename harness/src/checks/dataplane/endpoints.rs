//! Services and their endpoints (D09-D11): NodePort Service ports, EndpointSlices per family and
//! of single-family Services, legacy Endpoints primary-only; addresses compared exactly.

use super::fixture::{Fixture, cluster_ip, service_ips};
use super::verdict::{listed, verdict};
use crate::checks::Outcome;
use crate::error::{Error, Result};
use crate::mode::IpFamily;
use crate::table::dataplane::{Action, Aspect, Check, Variant};
use std::collections::BTreeSet;

pub async fn run(fixture: &Fixture, check: Check, action: &Action) -> Result<Outcome> {
    let family = action.family;
    if check == Check::ServicePorts {
        let svc = fixture.service("echo").await?;
        let spec = svc.spec.clone().unwrap_or_default();
        let families = spec.ip_families.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        let node_ports: Vec<String> = ports.iter().map(|p| p.node_port.map_or("no nodePort".into(), |n| n.to_string())).collect();
        let ok = ports.len() == 2
            && families.iter().any(|f| f == family.api_name())
            && cluster_ip(&svc, family).is_some()
            && ports.iter().all(|p| p.node_port.is_some());
        return Ok(verdict(
            ok,
            format!("NodePort Service echo: 2 ports with nodePorts, a {family} clusterIP"),
            format!("ports with nodePorts {}, ipFamilies {}, clusterIPs {}", listed(node_ports), listed(families), listed(service_ips(&svc))),
        ));
    }
    // Legacy Endpoints carry the primary family only: of the secondary they must hold nothing,
    // whatever the servers have.
    if check == Check::LegacyEndpoints && family != fixture.mode.primary() {
        let addresses = legacy_addresses(fixture, family).await?;
        return Ok(verdict(addresses.is_empty(), format!("legacy Endpoints of echo hold no {family} (secondary) address"), format!("they hold {}", listed(&addresses))));
    }
    // The servers' addresses of the family: what every list below must hold exactly.
    let servers: BTreeSet<String> = match fixture.endpoints("role=server", family).await? {
        Ok(servers) => servers.iter().map(|e| e.address.to_string()).collect(),
        Err(missing) => return Ok(missing.into()),
    };
    Ok(match (check, action.variant) {
        (Check::EndpointSlices, Some(Variant::Aspect(Aspect::Echo))) => {
            let have = fixture.slice_addresses("echo", family).await?;
            verdict(have == servers, format!("the {family} EndpointSlices of echo list {}", listed(&servers)), format!("they list {}", listed(&have)))
        }
        (Check::EndpointSlices, Some(Variant::Aspect(Aspect::SingleFamily))) => {
            // A single-family Service has slices of its family only.
            let single = format!("echo-only-{}", family.slug());
            let types: BTreeSet<String> = fixture.slices(&single).await?.iter().map(|s| s.address_type.clone()).collect();
            let have = fixture.slice_addresses(&single, family).await?;
            let ok = types == BTreeSet::from([family.api_name().to_string()]) && have == servers;
            verdict(
                ok,
                format!("{single} has {family} EndpointSlices only, listing {}", listed(&servers)),
                format!("slices of address types {}, listing {}", listed(&types), listed(&have)),
            )
        }
        (Check::LegacyEndpoints, _) => {
            let addresses = legacy_addresses(fixture, family).await?;
            verdict(
                addresses == servers,
                format!("legacy Endpoints of echo hold the servers' {family} (primary) addresses {}", listed(&servers)),
                format!("they hold {}", listed(&addresses)),
            )
        }
        (other, variant) => return Err(Error::Environment(format!("{other:?} {variant:?} is not an endpoints check"))),
    })
}

/// The `family` addresses the legacy Endpoints object of `echo` holds.
async fn legacy_addresses(fixture: &Fixture, family: IpFamily) -> Result<BTreeSet<String>> {
    let endpoints = fixture.legacy_endpoints("echo").await?;
    Ok(endpoints
        .subsets
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s.addresses.clone().unwrap_or_default())
        .map(|a| a.ip)
        .filter(|a| IpFamily::of_text(a) == Some(family))
        .collect())
}
