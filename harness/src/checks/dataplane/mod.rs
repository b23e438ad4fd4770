//! The data-plane check kind: node and pod addressing, EndpointSlices, connectivity and DNS. Each
//! planned action (a row in one family, per protocol, node or aspect) runs against one fixture per
//! mode; the table (`suites/dataplane/*.yaml`) chooses which checks run in which modes, and the
//! checks themselves are code, since each one is a small protocol.

mod addressing;
mod connectivity;
mod declared;
mod dns;
mod endpoints;
mod external;
mod fixture;
mod load_balancer;
mod policy;
mod reach;
mod verdict;

use super::{CheckKind, Outcome, Target};
use crate::error::Result;
use crate::plan::{PlannedCase, Work};
use crate::table::connect::Client;
use crate::table::dataplane::{CheckGroup, RowKind};
use fixture::Fixture;
use std::time::Duration;

/// How long the fixture may take to be ready, and one action to finish.
const DATAPLANE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a run waits for cluster DNS to have a ready endpoint of each family.
const CLUSTER_DNS_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows whose connection may be judged as silence (over the whole convergence window), whose
/// client is outside the cluster (each batch a `docker exec`), or that wait for kube-proxy's
/// health-check count or the load balancer's addresses.
fn row_waits_long(row: &crate::table::DataplaneRow) -> bool {
    match &row.kind {
        RowKind::Connect(connect) => connect.from == Client::External || connect.expect.may_be_silence(),
        RowKind::Check(check) => matches!(check.group(), CheckGroup::Health | CheckGroup::LoadBalancer),
    }
}

pub struct DataplaneChecks {
    /// Test-only: a shell command run once the fixture is ready (fault injection), with the
    /// fixture's namespace in DUALSTACK_FIXTURE_NAMESPACE.
    pub after_fixture_hook: Option<String>,
}

impl CheckKind for DataplaneChecks {
    type Context = Fixture;

    /// Most of a data-plane case is waiting (a convergence window, a timeout, an exec round trip):
    /// at 8 at once, a dual cluster's 108 cases queued for 30 s on 2 cores.
    fn concurrency(&self) -> usize {
        16
    }

    fn case_timeout(&self) -> Duration {
        DATAPLANE_TIMEOUT
    }

    fn waits_long(&self, target: &Target<'_>, case: &PlannedCase) -> bool {
        let Work::Dataplane { row, .. } = &case.work else { return false };
        target.tables.dataplane.get(*row).is_some_and(row_waits_long)
    }

    async fn prepare(&self, target: &Target<'_>, cases: &[&PlannedCase]) -> Result<Fixture> {
        let pod_ips_row = target.tables.dataplane.iter().find(|r| r.check() == Some(crate::table::dataplane::Check::PodIps)).map(|r| r.id.clone());
        // The fixture makes what the suite's cases need (each row's Service, pod and policy), not
        // what rows of other suites, or rows left out by a filter, would.
        let mut planned: Vec<usize> = cases.iter().filter_map(|c| if let Work::Dataplane { row, .. } = c.work { Some(row) } else { None }).collect();
        planned.sort_unstable();
        planned.dedup();
        let rows: Vec<&crate::table::DataplaneRow> = planned.iter().filter_map(|&i| target.tables.dataplane.get(i)).collect();
        // Cluster DNS (which a cluster just created may still be starting) settles while the
        // fixture's pods start: the DNS checks need it, nothing before them does.
        let (fixture, dns) = tokio::join!(
            Fixture::create(target.client, target.facts.mode, pod_ips_row, &rows, DATAPLANE_TIMEOUT),
            crate::cluster::wait_cluster_dns(target.client, CLUSTER_DNS_TIMEOUT),
        );
        let fixture = fixture?;
        if let Err(e) = dns {
            fixture.delete().await;
            return Err(e);
        }
        println!("[{}] data-plane fixture ready in {:.1}s ({}), cluster DNS answering", target.facts.mode, fixture.started.elapsed().as_secs_f64(), fixture.steps);
        if let Some(hook) = &self.after_fixture_hook {
            // Test-only: the project's fault-injection tests break the cluster here.
            if let Err(e) = super::run_hook("after-fixture", hook, &[("DUALSTACK_FIXTURE_NAMESPACE", fixture.namespace.as_ref())]).await {
                fixture.delete().await;
                return Err(e);
            }
        }
        Ok(fixture)
    }

    async fn run(&self, fixture: &Fixture, target: &Target<'_>, case: &PlannedCase) -> Outcome {
        let Work::Dataplane { row, action } = &case.work else { return Outcome::error(format!("{} is not a data-plane action", case.id)) };
        let Some(row) = target.tables.dataplane.get(*row) else { return Outcome::error(format!("no data-plane row {row}")) };
        let ran = match &row.kind {
            RowKind::Connect(connect) => declared::run(fixture, row, connect, action).await,
            RowKind::Check(check) => match check.group() {
                CheckGroup::Addressing => addressing::run(fixture, *check, action).await,
                CheckGroup::Endpoints => endpoints::run(fixture, *check, action).await,
                CheckGroup::Dns => dns::run(fixture, *check, action).await,
                CheckGroup::Connectivity => connectivity::run(fixture, row, action).await,
                CheckGroup::Health => external::health_check(fixture, action).await,
                CheckGroup::LoadBalancer => load_balancer::ingress(fixture, action).await,
            },
        };
        let mut outcome = ran.unwrap_or_else(|e| Outcome::error(e.to_string()));
        outcome.diagnostics = fixture.describe();
        outcome
    }

    async fn diagnostics(&self, fixture: &Fixture) -> Option<String> {
        Some(fixture.diagnostics().await)
    }

    async fn finish(&self, fixture: Fixture) {
        fixture.delete().await;
    }
}

#[cfg(test)]
mod tests {
    use super::row_waits_long;
    use crate::table::load_dirs;
    use std::path::PathBuf;

    #[test]
    fn the_built_in_rows_that_run_in_the_waiting_lane() {
        let tables = load_dirs(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../suites")]).unwrap();
        let first: Vec<&str> = tables.dataplane.iter().filter(|r| row_waits_long(r)).map(|r| r.id.as_str()).collect();
        assert_eq!(first, ["D25", "D30", "D31", "D32", "D32-denied", "D26", "D26-other-node", "D27", "D27-no-local", "D28", "D28-no-local", "D29", "P01", "P01-service", "P02", "P03-other-pods", "P04-other-namespaces", "P05", "P05-ipv6", "P06", "P07-other-port", "P08", "P08-ipv6"]);
    }
}
