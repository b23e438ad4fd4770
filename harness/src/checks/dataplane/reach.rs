//! The one reach primitive: connect from a fixture pod to a target, retrying within the convergence
//! window while kube-proxy and the CNI program the data plane, and record what answered.

use super::fixture::{Fixture, cluster_ip, service_ips};
use super::verdict::{fail, pass};
use crate::checks::Outcome;
use crate::error::Result;
use crate::mode::IpFamily;
use crate::probe_pod::{self, ConnectResult};
use crate::table::dataplane::Protocol;
use k8s_openapi::api::core::v1::Service;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a connection check keeps trying while the data plane converges.
pub const CONVERGENCE: Duration = Duration::from_secs(10);

/// The port every fixture Service exposes.
pub const SERVICE_PORT: u16 = 80;

/// What a target needed and did not have (a Service without a clusterIP of the family, a node
/// without an address of it): reported as the failure instead of connecting.
pub struct Missing {
    pub wanted: String,
    pub saw: String,
}

impl From<Missing> for Outcome {
    fn from(missing: Missing) -> Self {
        fail(missing.wanted, missing.saw)
    }
}

/// Where to connect, or what was missing to know it.
pub type Destination = std::result::Result<SocketAddr, Missing>;

/// `service`'s `family` clusterIP on the Service port, or the failure that it has none.
pub fn via_cluster_ip(name: &str, service: &Service, family: IpFamily) -> Destination {
    cluster_ip(service, family)
        .map(|ip| SocketAddr::new(ip, SERVICE_PORT))
        .ok_or_else(|| Missing { wanted: format!("{name} has a {family} clusterIP"), saw: format!("clusterIPs {:?}", service_ips(service)) })
}

impl Fixture {
    /// One connection attempt from `from`.
    pub async fn connect(&self, from: &str, proto: Protocol, target: SocketAddr, bytes: usize) -> Result<ConnectResult> {
        probe_pod::connect(&self.pods, from, proto.name(), target, bytes).await
    }

    /// Connects and judges: answered, and by one of `responders`. The data plane is programmed
    /// asynchronously after the API objects exist, so a connection is retried for up to
    /// CONVERGENCE; the check fails when no attempt in that window got the right answer.
    pub async fn reach(&self, from: &str, proto: Protocol, target: Destination, bytes: usize, responders: &[String]) -> Result<Outcome> {
        let target = match target {
            Ok(target) => target,
            Err(missing) => return Ok(missing.into()),
        };
        let expected = format!("{from} -> {target} over {} answered by one of {responders:?}", proto.name());
        let deadline = Instant::now() + CONVERGENCE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let got = self.connect(from, proto, target, bytes).await?;
            let failure = match (got.ok, got.answer) {
                (true, Some(answer)) if responders.contains(&answer.hostname) => {
                    let retried = if attempts > 1 { format!(" on attempt {attempts}") } else { String::new() };
                    return Ok(pass(expected, format!("answered by {} (saw client {}){retried}", answer.hostname, answer.client)));
                }
                (true, Some(answer)) => format!("wrong responder {} (saw client {})", answer.hostname, answer.client),
                (_, _) => format!("{from} -> {target}: {}", got.error.unwrap_or_else(|| "no answer".into())),
            };
            if Instant::now() >= deadline {
                return Ok(fail(expected, format!("{failure} ({attempts} attempts over {}s)", CONVERGENCE.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
