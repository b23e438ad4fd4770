//! Services and their endpoints (D09-D11): NodePort Service ports, EndpointSlices per family and
//! of single-family Services, legacy Endpoints primary-only.

use super::fixture::{Fixture, cluster_ip, service_ips};
use super::verdict::verdict;
use crate::checks::Outcome;
use crate::error::{Error, Result};
use crate::mode::IpFamily;
use crate::table::dataplane::{Action, Aspect, Check, Variant};
use std::collections::BTreeSet;

pub async fn run(fixture: &Fixture, check: Check, action: &Action) -> Result<Outcome> {
    let family = action.family;
    Ok(match (check, action.variant) {
        (Check::ServicePorts, _) => {
            let svc = fixture.service("echo").await?;
            let spec = svc.spec.clone().unwrap_or_default();
            let families = spec.ip_families.clone().unwrap_or_default();
            let ports = spec.ports.clone().unwrap_or_default();
            let ok = ports.len() == 2
                && families.iter().any(|f| f == family.api_name())
                && cluster_ip(&svc, family).is_some()
                && ports.iter().all(|p| p.node_port.is_some());
            verdict(
                ok,
                format!("NodePort Service echo: 2 ports with nodePorts, a {family} clusterIP"),
                format!("ports {}, ipFamilies {families:?}, clusterIPs {:?}", ports.len(), service_ips(&svc)),
            )
        }
        (Check::EndpointSlices, Some(Variant::Aspect(Aspect::Echo))) => {
            let want = fixture.server_addresses(family).await?;
            let have = fixture.slice_addresses("echo", family).await?;
            verdict(have == want && !want.is_empty(), format!("{family} EndpointSlice of echo lists {want:?}"), format!("{have:?}"))
        }
        (Check::EndpointSlices, Some(Variant::Aspect(Aspect::SingleFamily))) => {
            // A single-family Service has slices of its family only.
            let want = fixture.server_addresses(family).await?;
            let single = format!("echo-only-{}", family.slug());
            let types: BTreeSet<String> = fixture.slices(&single).await?.iter().map(|s| s.address_type.clone()).collect();
            let have = fixture.slice_addresses(&single, family).await?;
            let ok = types == BTreeSet::from([family.api_name().to_string()]) && have == want && !want.is_empty();
            verdict(ok, format!("{single} has only {family} slices listing {want:?}"), format!("address types {types:?}, addresses {have:?}"))
        }
        (Check::LegacyEndpoints, _) => {
            let endpoints = fixture.legacy_endpoints("echo").await?;
            let addresses: Vec<String> =
                endpoints.subsets.unwrap_or_default().iter().flat_map(|s| s.addresses.clone().unwrap_or_default()).map(|a| a.ip).collect();
            let count = addresses.iter().filter(|a| IpFamily::of_text(a) == Some(family)).count();
            let primary = family == fixture.mode.primary();
            let ok = if primary { count == 2 } else { count == 0 };
            let expected = if primary {
                format!("legacy Endpoints hold both servers' {family} (primary) addresses")
            } else {
                format!("legacy Endpoints hold no {family} (secondary) address")
            };
            verdict(ok, expected, format!("{addresses:?}"))
        }
        (other, variant) => return Err(Error::Environment(format!("{other:?} {variant:?} is not an endpoints check"))),
    })
}
