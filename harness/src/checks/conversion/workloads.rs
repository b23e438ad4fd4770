//! The workloads across a conversion: a server pod and a Service made before it, the Service then
//! switched to the new mode's policy and a server and a client pod started after it. The checks
//! judge what Kubernetes promises of them: running pods keep their addresses, new pods get the new
//! mode's families, EndpointSlices follow the pods' addresses per family, and each clusterIP is
//! answered by exactly the pods of its family, seeing the client's own address.

use crate::convert::Conversion;
use crate::error::Result;
use crate::mode::IpFamily;
use crate::probe_pod::{self, Dial, PROBE_PORT};
use crate::retry::Retries;
use crate::table::conversion::WorkloadCheck;
use crate::wait::poll;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const SERVICE: &str = "converted";
const BEFORE_SERVER: &str = "server-before";
const AFTER_SERVER: &str = "server-after";
const AFTER_CLIENT: &str = "client-after";
const SERVER_LABEL: (&str, &str) = ("app", "conversion-server");
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long EndpointSlices and kube-proxy's rules may take to follow the switched Service.
const CONVERGENCE: Duration = Duration::from_secs(20);
/// Connections per clusterIP: with two endpoints, the chance that one of them gets none is 2^-15.
const CONNECTIONS: usize = 16;

/// What was made before the conversion.
pub struct Before {
    pub namespace: String,
    /// The server pod's podIPs before the conversion.
    addresses: Vec<String>,
    /// Where the servers and the client run: the first worker, and the second (or the first).
    server_node: String,
    client_node: String,
}

/// Everything the checks look at after the conversion.
pub struct After {
    pods: BTreeMap<&'static str, Vec<IpAddr>>,
}

/// The server pod and the Service (single-stack before an upgrade, RequireDualStack before a
/// downgrade), made before the conversion.
pub async fn before(client: &Client, conversion: Conversion, retries: &Retries) -> Result<Before> {
    let namespace = probe_pod::create_namespace(client, "dualstack-conversion", retries).await?;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    // The client on another node than the server: the second worker, else the control-plane node.
    let workers = crate::objects::worker_names(&nodes);
    let control_plane = nodes.iter().find(|n| crate::objects::is_control_plane(n)).and_then(|n| n.metadata.name.clone());
    let server_node = workers.first().cloned().or_else(|| control_plane.clone()).unwrap_or_default();
    let client_node = workers.get(1).cloned().or(control_plane).unwrap_or_else(|| server_node.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    pods.create(&PostParams::default(), &probe_pod::probe_pod(BEFORE_SERVER, &server_node, &[SERVER_LABEL], false)).await?;
    let policy = if conversion.upgrades() { "SingleStack" } else { "RequireDualStack" };
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": SERVICE},
        "spec": {"ipFamilyPolicy": policy, "selector": {SERVER_LABEL.0: SERVER_LABEL.1}, "ports": [{"name": "tcp", "port": 80, "targetPort": PROBE_PORT, "protocol": "TCP"}]}
    }))
    .map_err(|e| crate::Error::Usage(e.to_string()))?;
    Api::<Service>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &service).await?;
    let ready = probe_pod::wait_pods_ready(&pods, &[BEFORE_SERVER], READY_TIMEOUT).await?;
    Ok(Before { namespace, addresses: pod_ips(&ready[0]).iter().map(ToString::to_string).collect(), server_node, client_node })
}

/// After the conversion: the Service switched to the new mode's policy (RequireDualStack after an
/// upgrade, SingleStack after a downgrade), a second server and a client started.
pub async fn after(client: &Client, conversion: Conversion, before: &Before) -> Result<After> {
    let policy = if conversion.upgrades() { "RequireDualStack" } else { "SingleStack" };
    let services: Api<Service> = Api::namespaced(client.clone(), &before.namespace);
    services.patch(SERVICE, &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"ipFamilyPolicy": policy}}))).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &before.namespace);
    pods.create(&PostParams::default(), &probe_pod::probe_pod(AFTER_SERVER, &before.server_node, &[SERVER_LABEL], false)).await?;
    pods.create(&PostParams::default(), &probe_pod::probe_pod(AFTER_CLIENT, &before.client_node, &[], false)).await?;
    let ready = probe_pod::wait_pods_ready(&pods, &[BEFORE_SERVER, AFTER_SERVER, AFTER_CLIENT], READY_TIMEOUT).await?;
    let names = [BEFORE_SERVER, AFTER_SERVER, AFTER_CLIENT];
    Ok(After { pods: names.into_iter().zip(ready.iter().map(pod_ips)).collect() })
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    crate::objects::pod_ips(pod).iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// A check's finding: passed, what was expected, what was seen.
pub struct Finding {
    pub passed: bool,
    pub expected: String,
    pub actual: String,
}

pub async fn check(client: &Client, conversion: Conversion, before: &Before, after: &After, check: WorkloadCheck) -> Result<Finding> {
    let families = conversion.to.families();
    let servers_of = |family: IpFamily| -> BTreeSet<String> {
        [BEFORE_SERVER, AFTER_SERVER]
            .into_iter()
            .filter(|pod| after.pods.get(pod).is_some_and(|ips| ips.iter().any(|ip| IpFamily::of(ip) == family)))
            .map(str::to_string)
            .collect()
    };
    Ok(match check {
        WorkloadCheck::PodKeepsItsAddresses => {
            let now: Vec<String> = after.pods.get(BEFORE_SERVER).map(|ips| ips.iter().map(ToString::to_string).collect()).unwrap_or_default();
            Finding { passed: now == before.addresses, expected: format!("{BEFORE_SERVER} podIPs {:?}, as before the conversion", before.addresses), actual: format!("podIPs {now:?}") }
        }
        WorkloadCheck::NewPodGetsTheNewFamilies => {
            let ips = after.pods.get(AFTER_SERVER).cloned().unwrap_or_default();
            let got: Vec<IpFamily> = ips.iter().map(IpFamily::of).collect();
            Finding { passed: got == families, expected: format!("{AFTER_SERVER} podIPs of {families:?}, in that order"), actual: format!("podIPs {ips:?}") }
        }
        WorkloadCheck::EndpointSlicesFollowThePods => {
            let want: BTreeMap<String, BTreeSet<String>> = families.iter().map(|&f| (f.api_name().to_string(), servers_of(f))).collect();
            let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &before.namespace);
            let label = format!("kubernetes.io/service-name={SERVICE}");
            let converged = poll("EndpointSlices to follow the pods", CONVERGENCE, Duration::from_millis(500), || async {
                let seen = endpoints_by_family(&slices.list(&ListParams::default().labels(&label)).await?.items);
                Ok(if seen == want { Ok(format!("{seen:?}")) } else { Err(format!("{seen:?}")) })
            })
            .await;
            let (passed, actual) = settled(converged)?;
            Finding { passed, expected: format!("ready endpoints per addressType {want:?}"), actual }
        }
        WorkloadCheck::ServiceAnswersOverEachFamily => {
            let service = Api::<Service>::namespaced(client.clone(), &before.namespace).get(SERVICE).await?;
            let cluster_ips: Vec<IpAddr> = service.spec.and_then(|s| s.cluster_ips).unwrap_or_default().iter().filter_map(|ip| ip.parse().ok()).collect();
            let pods: Api<Pod> = Api::namespaced(client.clone(), &before.namespace);
            let client_ips = after.pods.get(AFTER_CLIENT).cloned().unwrap_or_default();
            // The families at once: each may wait out the convergence bound within one case's time.
            let per_family = families.iter().map(|&family| {
                let (pods, client_ips, cluster_ips) = (&pods, &client_ips, &cluster_ips);
                let servers = servers_of(family);
                async move {
                    let source = client_ips.iter().copied().find(|ip| IpFamily::of(ip) == family);
                    let expected = format!(
                        "{family}: every one of {CONNECTIONS} connections answered, by each of {servers:?} and no other, seeing the client as {}",
                        source.map_or("?".into(), |ip| ip.to_string())
                    );
                    let Some(&cluster_ip) = cluster_ips.iter().find(|ip| IpFamily::of(ip) == family) else {
                        return Ok((false, expected, format!("{family}: the Service has no clusterIP of the family ({cluster_ips:?})")));
                    };
                    let dial = Dial::at_once("tcp", SocketAddr::new(cluster_ip, 80), 64, CONNECTIONS);
                    let answered = poll(&format!("{cluster_ip} to answer as expected"), CONVERGENCE, Duration::from_millis(500), || async {
                        let results = probe_pod::connect_batch(pods, AFTER_CLIENT, &dial).await?;
                        let (ok, text) = judge_answers(&results, &servers, source);
                        Ok(if ok { Ok(text) } else { Err(text) })
                    })
                    .await;
                    let (answered, last) = settled(answered)?;
                    Ok::<_, crate::Error>((answered, expected, format!("{family} {cluster_ip}: {last}")))
                }
            });
            let mut passed = cluster_ips.iter().map(IpFamily::of).collect::<Vec<_>>() == families;
            let (mut expected, mut actual) = (Vec::new(), Vec::new());
            for found in futures::future::join_all(per_family).await {
                let (answered, wanted, seen) = found?;
                passed &= answered;
                expected.push(wanted);
                actual.push(seen);
            }
            Finding { passed, expected: expected.join("; "), actual: actual.join("; ") }
        }
    })
}

/// A convergence wait as a finding: whether it settled, and the last state seen (with the wait's
/// bound when it did not); other errors stay errors.
fn settled(waited: Result<String>) -> Result<(bool, String)> {
    match waited {
        Ok(state) => Ok((true, state)),
        Err(crate::Error::Timeout { seconds, last_seen, .. }) => Ok((false, format!("{last_seen} (still, after {seconds}s)"))),
        Err(e) => Err(e),
    }
}

/// Ready endpoints of the slices, by addressType: the names of their pods.
fn endpoints_by_family(slices: &[EndpointSlice]) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_family: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for slice in slices {
        let ready = slice.endpoints.iter().flatten().filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
        let pods = ready.filter_map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()));
        by_family.entry(slice.address_type.clone()).or_default().extend(pods);
    }
    by_family.retain(|_, pods| !pods.is_empty());
    by_family
}

/// Whether every connection was answered, by exactly `servers` between them, each seeing `source`;
/// and what was seen.
fn judge_answers(results: &[probe_pod::ConnectResult], servers: &BTreeSet<String>, source: Option<IpAddr>) -> (bool, String) {
    let failed = results.iter().filter(|r| !r.ok).count();
    let answered_by: BTreeSet<String> = results.iter().filter_map(|r| r.answer.as_ref()).map(|a| a.hostname.clone()).collect();
    let seen_as: BTreeSet<String> = results.iter().filter_map(|r| r.answer.as_ref()).map(|a| a.client.clone()).collect();
    // The probe's server reports its peer as ADDRESS:PORT.
    let peer = |seen: &String| seen.parse::<SocketAddr>().map(|s| s.ip()).or_else(|_| seen.parse::<IpAddr>());
    let seen_as: BTreeSet<String> = seen_as.iter().map(|seen| peer(seen).map_or_else(|_| seen.clone(), |ip| ip.to_string())).collect();
    let source_ok = source.is_some_and(|ip| seen_as.iter().all(|seen| seen.parse::<IpAddr>().is_ok_and(|s| s == ip)));
    let ok = failed == 0 && !results.is_empty() && &answered_by == servers && source_ok;
    let errors: BTreeSet<&str> = results.iter().filter_map(|r| r.error.as_deref()).collect();
    let text = format!(
        "{} of {} answered, by {answered_by:?}, seeing the client as {seen_as:?}{}",
        results.len() - failed,
        results.len(),
        if errors.is_empty() { String::new() } else { format!("; errors {errors:?}") }
    );
    (ok, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_pod::{Answer, ConnectResult};

    fn answered(host: &str, client: &str) -> ConnectResult {
        ConnectResult { ok: true, answer: Some(Answer { hostname: host.into(), client: client.into(), bytes: 64 }), error: None }
    }

    fn servers(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_server_of_the_family_must_answer_and_see_the_client_itself() {
        let source = "fd00:10:244:2::5".parse().ok();
        let both = [answered("server-before", "[fd00:10:244:2::5]:40100"), answered("server-after", "[fd00:10:244:2::5]:40102")];
        assert!(judge_answers(&both, &servers(&["server-before", "server-after"]), source).0);
        // One server too many: the pod without an address of the family cannot answer over it.
        assert!(!judge_answers(&both, &servers(&["server-after"]), source).0);
        // One server never answered.
        assert!(!judge_answers(&both[..1], &servers(&["server-before", "server-after"]), source).0);
        // Answered, but the server saw another source: the traffic was masqueraded.
        let natted = [answered("server-after", "[fd00:10:244:1::1]:5000")];
        let (ok, seen) = judge_answers(&natted, &servers(&["server-after"]), source);
        assert!(!ok);
        assert_eq!(seen, "1 of 1 answered, by {\"server-after\"}, seeing the client as {\"fd00:10:244:1::1\"}");
    }

    #[test]
    fn a_refused_connection_fails_and_is_named() {
        let refused = ConnectResult { ok: false, answer: None, error: Some("connection refused".into()) };
        let results = [answered("server-after", "10.244.1.3:41000"), refused];
        let (ok, seen) = judge_answers(&results, &servers(&["server-after"]), "10.244.1.3".parse().ok());
        assert!(!ok);
        assert_eq!(seen, "1 of 2 answered, by {\"server-after\"}, seeing the client as {\"10.244.1.3\"}; errors {\"connection refused\"}");
    }

    #[test]
    fn slices_are_grouped_by_address_type_with_ready_pods_only() {
        let slice = |family: &str, endpoints: serde_json::Value| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("s-{family}")}, "addressType": family, "endpoints": endpoints})).unwrap()
        };
        let slices = [
            slice("IPv4", serde_json::json!([
                {"addresses": ["10.244.1.2"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "server-before"}},
                {"addresses": ["10.244.1.3"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "server-after"}}
            ])),
            slice("IPv6", serde_json::json!([])),
        ];
        assert_eq!(endpoints_by_family(&slices), BTreeMap::from([("IPv4".to_string(), servers(&["server-before"]))]));
    }
}
