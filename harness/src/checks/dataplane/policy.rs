//! NetworkPolicy in the fixture: each policy row's own pod and NetworkPolicy, and the canary that
//! finds out whether the cluster enforces policy at all. A cluster whose CNI enforces none (ours
//! without its agent, flannel) skips the policy rows with the canary's finding; a cluster that
//! enforces policy over one family only runs them, and they fail for the other family.

use super::fixture::Fixture;
use super::reach::SMALL_PAYLOAD;
use crate::error::{Error, Result};
use crate::mode::IpFamily;
use crate::objects::of_family;
use crate::probe_pod::{self, PROBE_PORT};
use crate::table::connect::{Direction, POLICY_ROW_LABEL, Policy, policy_pod_name};
use crate::table::dataplane::{DataplaneRow, Protocol, RowKind};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::PostParams;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The canary: a server pod on the first worker that only a deny-all ingress policy selects.
pub const CANARY_POD: &str = "policy-canary";
const CANARY_LABEL: &str = "canary";
/// How long the canary waits for its server to answer before the policy (a cluster just created
/// may still be programming the path), and then for the deny to hold.
const CANARY_CONTROL: Duration = Duration::from_secs(10);
const CANARY_DENY: Duration = Duration::from_secs(20);
/// Batches in a row whose every connection went unanswered that make a family's deny a finding
/// rather than lost packets; each batch opens CANARY_BATCH new connections at once.
const DENIED_IN_A_ROW: u32 = 2;
const CANARY_BATCH: usize = 3;
/// Each canary connection's timeout.
const CANARY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the cluster enforces NetworkPolicy, as the canary found.
#[derive(Debug, Clone)]
pub enum Enforcement {
    /// The deny held over these families (within `after`); the policy rows run.
    Enforced { families: Vec<IpFamily>, after: Duration },
    /// Every family kept answering behind the deny: the policy rows are skipped with this reason.
    NotEnforced(String),
    /// The canary's server never answered, or the canary could not run: the policy rows fail with
    /// this.
    Undetermined(String),
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Enforced { families, after } => {
                let families: Vec<String> = families.iter().map(ToString::to_string).collect();
                write!(f, "enforced over {} (the canary's deny held after {:.1}s)", families.join(" and "), after.as_secs_f64())
            }
            Self::NotEnforced(why) | Self::Undetermined(why) => f.write_str(why),
        }
    }
}

/// The pods the fixture creates for the policy rows planned (and the canary when there are any):
/// an Ingress row's server on `worker`, an Egress row's client on its `from-node`.
pub fn pods(rows: &[&DataplaneRow], node_of: impl Fn(&str) -> Option<String>, worker: &str) -> Vec<Pod> {
    let mut pods: Vec<Pod> = rows
        .iter()
        .filter_map(|row| {
            let RowKind::Connect(connect) = &row.kind else { return None };
            let policy = connect.policy.as_ref()?;
            let node = match policy.direction {
                Direction::Ingress => worker.to_string(),
                Direction::Egress => node_of(&connect.from_node)?,
            };
            let label = row.id.to_ascii_lowercase();
            Some(probe_pod::probe_pod(&policy_pod_name(&row.id), &node, &[(POLICY_ROW_LABEL, label.as_str())], false))
        })
        .collect();
    if !pods.is_empty() {
        pods.push(probe_pod::probe_pod(CANARY_POD, worker, &[(POLICY_ROW_LABEL, CANARY_LABEL)], false));
    }
    pods
}

/// The NetworkPolicy of one row: its spec, selecting the row's own pod.
fn policy_object(name: &str, label: &str, spec: &serde_json::Value) -> Result<NetworkPolicy> {
    let mut spec = spec.clone();
    spec["podSelector"] = serde_json::json!({"matchLabels": {POLICY_ROW_LABEL: label}});
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
        .map_err(|e| Error::Environment(format!("NetworkPolicy {name}: {e}")))
}

/// Creates each policy row's NetworkPolicy (`row-<id>`); the API server's refusal names the row.
pub async fn create_row_policies(fixture: &Fixture, rows: &[&DataplaneRow]) -> Result<()> {
    let api: Api<NetworkPolicy> = Api::namespaced(fixture.client(), &fixture.namespace);
    let post = PostParams::default();
    // All at once, as the fixture's pods and Services.
    futures::future::try_join_all(rows.iter().filter_map(|row| {
        let RowKind::Connect(connect) = &row.kind else { return None };
        let Policy { spec, .. } = connect.policy.as_ref()?;
        let (api, post) = (&api, &post);
        Some(async move {
            let name = format!("row-{}", row.id.to_ascii_lowercase());
            let policy = policy_object(&name, &row.id.to_ascii_lowercase(), spec)?;
            api.create(post, &policy).await.map_err(|e| match e {
                kube::Error::Api(status) => Error::Environment(format!("creating the NetworkPolicy of row {}: {}", row.id, status.message)),
                other => other.into(),
            })
        })
    }))
    .await?;
    Ok(())
}

/// The canary, run once with the fixture when policy rows are planned: the fixture's client
/// reaches the canary pod over each family, a deny-all ingress policy is put in front of it, and
/// each family whose batches of new connections then go unanswered DENIED_IN_A_ROW times in a row
/// within CANARY_DENY is enforced.
pub async fn canary(fixture: &Fixture) -> Result<Enforcement> {
    let started = Instant::now();
    let canary = fixture.pod(CANARY_POD).await?;
    let ips = &crate::objects::pod_ips(&canary);
    // The families at once, here and behind the deny: each waits on its own timeouts.
    let controls = futures::future::join_all(fixture.mode.families().iter().map(|&family| async move {
        let Some(ip) = of_family(ips, family) else {
            return Ok::<_, Error>(Err(format!("{family}: the canary has no {family} address")));
        };
        let target = SocketAddr::new(ip, PROBE_PORT);
        let deadline = Instant::now() + CANARY_CONTROL;
        loop {
            match connect_once(fixture, target).await? {
                Ok(()) => return Ok(Ok((family, target))),
                Err(last) if Instant::now() >= deadline => return Ok(Err(format!("{family} {target}: {last}"))),
                Err(_) => {}
            }
        }
    }))
    .await;
    let mut answering = Vec::new();
    let mut silent = Vec::new();
    for control in controls {
        match control? {
            Ok(reached) => answering.push(reached),
            Err(why) => silent.push(why),
        }
    }
    if answering.is_empty() {
        return Ok(judge(&[], &silent, &[], started.elapsed()));
    }
    let api: Api<NetworkPolicy> = Api::namespaced(fixture.client(), &fixture.namespace);
    let deny = policy_object("canary-deny-all-ingress", CANARY_LABEL, &serde_json::json!({"policyTypes": ["Ingress"]}))?;
    api.create(&PostParams::default(), &deny).await?;
    let denied_since = Instant::now();
    let denials = futures::future::join_all(answering.iter().map(|&(family, target)| async move {
        let mut failures_in_a_row = 0;
        while failures_in_a_row < DENIED_IN_A_ROW && denied_since.elapsed() < CANARY_DENY {
            failures_in_a_row = if connect_once(fixture, target).await?.is_ok() { 0 } else { failures_in_a_row + 1 };
        }
        Ok::<_, Error>((family, failures_in_a_row >= DENIED_IN_A_ROW))
    }))
    .await;
    let mut enforced = Vec::new();
    for denial in denials {
        if let (family, true) = denial? {
            enforced.push(family);
        }
    }
    let reached: Vec<IpFamily> = answering.iter().map(|&(family, _)| family).collect();
    Ok(judge(&reached, &silent, &enforced, started.elapsed()))
}

/// The canary's finding: the families the client `reached` before the policy (the others `silent`,
/// saying why), and those of them `denied` behind it. Enforced where any family was denied (a
/// family that was not then fails its rows); not enforced where every reached family kept
/// answering; undetermined where no family was reached.
fn judge(reached: &[IpFamily], silent: &[String], denied: &[IpFamily], after: Duration) -> Enforcement {
    if reached.is_empty() {
        return Enforcement::Undetermined(format!("the NetworkPolicy canary {CANARY_POD} did not answer the client before any policy: {}", silent.join("; ")));
    }
    if denied.is_empty() {
        let families: Vec<String> = reached.iter().map(ToString::to_string).collect();
        return Enforcement::NotEnforced(format!(
            "no NetworkPolicy enforcement: the canary {CANARY_POD} kept answering over {} for {}s behind a deny-all ingress policy",
            families.join(" and "),
            CANARY_DENY.as_secs()
        ));
    }
    Enforcement::Enforced { families: denied.to_vec(), after }
}

/// CANARY_BATCH new TCP connections at once from the fixture's client to `target`: Ok when any was
/// answered, else what the probe said.
async fn connect_once(fixture: &Fixture, target: SocketAddr) -> Result<std::result::Result<(), String>> {
    let started = Instant::now();
    let dial = probe_pod::Dial { timeout: CANARY_CONNECT_TIMEOUT, ..probe_pod::Dial::at_once(Protocol::Tcp.name(), target, SMALL_PAYLOAD, CANARY_BATCH) };
    let results = fixture.dial("client", dial).await?;
    let answered = results.iter().any(|r| r.ok);
    // A refusal comes back at once: pace the attempts so that a deny has time to show.
    if let Some(rest) = Duration::from_millis(300).checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    Ok(if answered { Ok(()) } else { Err(results.iter().filter_map(|r| r.error.clone()).next().unwrap_or_else(|| "no answer".into())) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use IpFamily::{IPv4, IPv6};

    #[test]
    fn one_family_denied_is_enforcement_and_names_that_family() {
        let found = judge(&[IPv4, IPv6], &[], &[IPv4], Duration::from_millis(2500));
        assert_eq!(found.to_string(), "enforced over IPv4 (the canary's deny held after 2.5s)");
    }

    #[test]
    fn every_reached_family_answering_behind_the_deny_is_no_enforcement() {
        let found = judge(&[IPv4, IPv6], &[], &[], Duration::from_secs(21));
        assert!(matches!(found, Enforcement::NotEnforced(_)));
        assert_eq!(found.to_string(), "no NetworkPolicy enforcement: the canary policy-canary kept answering over IPv4 and IPv6 for 20s behind a deny-all ingress policy");
    }

    #[test]
    fn a_canary_never_reached_is_undetermined_and_says_why() {
        let found = judge(&[], &["IPv6 [fd00::5]:8080: connect: timeout".into()], &[], Duration::from_secs(10));
        assert!(matches!(found, Enforcement::Undetermined(_)));
        assert_eq!(found.to_string(), "the NetworkPolicy canary policy-canary did not answer the client before any policy: IPv6 [fd00::5]:8080: connect: timeout");
    }
}
