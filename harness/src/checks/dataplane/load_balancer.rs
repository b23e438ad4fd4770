//! What a cluster's load balancer publishes: each LoadBalancer Service of the fixture gets an
//! ingress address of each of its families. In no particular order: the API gives
//! `status.loadBalancer.ingress` none (core/v1 LoadBalancerStatus: "a list containing ingress points
//! for the load-balancer"), and MetalLB v0.16.2 lists IPv4 first whatever `ipFamilies` says; the
//! order seen is reported.

use super::fixture::Fixture;
use super::verdict::{listed, skip, verdict};
use crate::checks::Outcome;
use crate::error::Result;
use crate::mode::IpFamily;
use crate::table::dataplane::Action;
use std::net::IpAddr;

pub async fn ingress(fixture: &Fixture, action: &Action) -> Result<Outcome> {
    let book = match fixture.load_balancers().await {
        Ok(book) => book,
        Err(why) => return Ok(skip(why)),
    };
    let family = action.family;
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (name, balanced) in book {
        seen.push(format!("{name}: ipFamilies [{}], ingress {}", balanced.families.join(", "), listed(&balanced.ingress)));
        if let Some(problem) = missing(family, &balanced.families, &balanced.ingress) {
            problems.push(format!("{name}: {problem}"));
        }
    }
    let expected = format!("every LoadBalancer Service of {family} has an {family} address in status.loadBalancer.ingress");
    let mut outcome = verdict(problems.is_empty(), expected, seen.join("; "));
    if !problems.is_empty() {
        outcome.message = problems.join("; ");
    }
    Ok(outcome)
}

/// What `family` lacks in the ingress of a Service of `families`, if anything.
fn missing(family: IpFamily, families: &[String], ingress: &[IpAddr]) -> Option<String> {
    let wanted = families.iter().any(|f| f == family.api_name());
    (wanted && !ingress.iter().any(|ip| IpFamily::of(ip) == family)).then(|| format!("no {family} address in status.loadBalancer.ingress ({})", listed(ingress)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[rstest]
    #[case(IpFamily::IPv4, &["IPv4", "IPv6"], &["172.18.255.200", "fc00::c8"], None)]
    #[case(IpFamily::IPv6, &["IPv6", "IPv4"], &["172.18.255.200", "fc00::c8"], None)]
    #[case(IpFamily::IPv6, &["IPv4"], &["172.18.255.200"], None)]
    #[case(IpFamily::IPv6, &["IPv4", "IPv6"], &["172.18.255.200"], Some("no IPv6 address in status.loadBalancer.ingress (172.18.255.200)"))]
    #[case(IpFamily::IPv4, &["IPv4"], &[], Some("no IPv4 address in status.loadBalancer.ingress (none)"))]
    fn an_ingress_address_of_each_of_the_service_families(#[case] family: IpFamily, #[case] families: &[&str], #[case] ingress: &[&str], #[case] problem: Option<&str>) {
        let families: Vec<String> = families.iter().map(ToString::to_string).collect();
        assert_eq!(missing(family, &families, &ips(ingress)).as_deref(), problem);
    }
}
