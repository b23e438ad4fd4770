//! The readiness verification of a fresh cluster (what `dualstack cluster check` prints): node
//! addressing, pod addressing, a PreferDualStack Service, CoreDNS over each family and pod-to-pod
//! traffic across nodes over each family. Every check is named with its family.

use crate::error::Result;
use crate::mode::Mode;
use crate::objects::{internal_ips, of_family, pod_ips};
use crate::probe_pod::{self, PROBE_PORT};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One named verdict with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> Self {
        Self { name: name.into(), passed, detail: detail.into() }
    }
}

/// The per-family verdicts for an ordered list: family present, and at the mode's position.
fn ordered_family_checks(prefix: &str, subject: &str, mode: Mode, values: &[String]) -> Vec<Check> {
    mode.families()
        .iter()
        .enumerate()
        .map(|(position, &family)| {
            let passed = crate::objects::family_at_its_position(values, mode, family);
            Check::new(format!("{prefix}-{}", family.slug()), passed, format!("{subject}: {values:?} (want one {family} at position {position})"))
        })
        .collect()
}

/// Runs every check against the cluster `client` talks to, expecting `mode`.
pub async fn verify_cluster(client: &Client, mode: Mode) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    for node in &nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        checks.extend(ordered_family_checks(&format!("node-internalip/{name}"), &name, mode, &internal_ips(node)));
        let cidrs = node.spec.as_ref().and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        checks.extend(ordered_family_checks(&format!("node-podcidrs/{name}"), &name, mode, &cidrs));
    }

    let namespace = probe_pod::create_namespace(client, "dualstack-verify", &crate::retry::Retries::default()).await?;
    let outcome = verify_workloads(client, mode, &namespace, &nodes, &mut checks).await;
    probe_pod::delete_namespace(client, &namespace).await;
    outcome?;
    Ok(checks)
}

async fn verify_workloads(client: &Client, mode: Mode, namespace: &str, nodes: &[Node], checks: &mut Vec<Check>) -> Result<()> {
    let node_names: Vec<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
    let client_node = node_names.first().cloned().unwrap_or_default();
    // Cross-node traffic needs a second node; on a single node both pods share it.
    let server_node = node_names.get(1).cloned().unwrap_or_else(|| client_node.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &probe_pod::probe_pod("client", &client_node, &[("role", "client")], false)).await?;
    pods.create(&PostParams::default(), &probe_pod::probe_pod("server", &server_node, &[("role", "server")], false)).await?;

    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "prefer-dual"},
        "spec": {"ipFamilyPolicy": "PreferDualStack", "selector": {"role": "server"},
                 "ports": [{"port": 80, "targetPort": PROBE_PORT}]}
    }))
    .map_err(|e| crate::error::Error::Environment(format!("building the verification Service: {e}")))?;
    let created = services.create(&PostParams::default(), &service).await?;
    let cluster_ips = created.spec.and_then(|s| s.cluster_ips).unwrap_or_default();
    checks.extend(ordered_family_checks("service-preferdualstack-clusterips", "clusterIPs", mode, &cluster_ips));

    let ready = probe_pod::wait_pods_ready(&pods, &["client", "server"], Duration::from_secs(90)).await?;
    let (client_pod, server_pod) = (&ready[0], &ready[1]);
    checks.extend(ordered_family_checks("pod-podips", "client podIPs", mode, &pod_ips(client_pod)));
    let server_ips = pod_ips(server_pod);

    let kubernetes = Api::<Service>::namespaced(client.clone(), "default").get("kubernetes").await?;
    let kubernetes_ip: Option<IpAddr> = kubernetes.spec.and_then(|s| s.cluster_ip).and_then(|ip| ip.parse().ok());
    let coredns_pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await?
        .items;
    let coredns_ips: Vec<String> = coredns_pods.first().map(pod_ips).unwrap_or_default();

    for &family in mode.families() {
        let slug = family.slug();
        // CoreDNS reached over this family answers for kubernetes.default with the Service's IP.
        let check_name = format!("dns-kubernetes-default-over-{slug}");
        match (of_family(&coredns_ips, family), kubernetes_ip) {
            (Some(dns), Some(want)) => {
                let qtype = if want.is_ipv4() { "A" } else { "AAAA" };
                let got = probe_pod::resolve(&pods, "client", "kubernetes.default.svc.cluster.local", qtype, Some(dns)).await?;
                let passed = got.ok && got.addresses == vec![want];
                let detail = format!("{qtype} via CoreDNS {dns}: {:?} {}(want [{want}])", got.addresses, got.error.map(|e| e + " ").unwrap_or_default());
                checks.push(Check::new(check_name, passed, detail));
            }
            (dns, want) => checks.push(Check::new(check_name, false, format!("CoreDNS {family} address {dns:?}, kubernetes Service IP {want:?}"))),
        }
        // Pod to pod across the two nodes.
        let check_name = format!("pod-to-pod-cross-node/tcp-{slug}");
        match of_family(&server_ips, family) {
            Some(ip) => {
                let got = probe_pod::connect(&pods, "client", "tcp", SocketAddr::new(ip, PROBE_PORT), 16).await?;
                let responder = got.answer.as_ref().map(|a| a.hostname.clone());
                let passed = got.ok && responder.as_deref() == Some("server");
                let detail = format!(
                    "client on {client_node} -> server {} on {server_node}: {}",
                    SocketAddr::new(ip, PROBE_PORT),
                    got.error.unwrap_or_else(|| format!("answered by {}", responder.unwrap_or_default()))
                );
                checks.push(Check::new(check_name, passed, detail));
            }
            None => checks.push(Check::new(check_name, false, format!("server has no {family} pod IP: {server_ips:?}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Mode::Dual, &["10.0.0.1", "fd00::1"], &[true, true])]
    #[case(Mode::Dual, &["fd00::1", "10.0.0.1"], &[false, false])]
    #[case(Mode::Dual, &["10.0.0.1"], &[true, false])]
    #[case(Mode::Dual, &["10.0.0.1", "10.0.0.2"], &[false, false])]
    #[case(Mode::DualIpv6Primary, &["fd00::/64", "10.0.0.0/24"], &[true, true])]
    #[case(Mode::Ipv4, &["10.0.0.1", "fd00::1"], &[true])]
    #[case(Mode::Ipv4, &["fd00::1", "10.0.0.1"], &[false])]
    #[case(Mode::Ipv6, &["fd00::1"], &[true])]
    fn ordered_family_verdicts(#[case] mode: Mode, #[case] values: &[&str], #[case] expected: &[bool]) {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let verdicts: Vec<bool> = ordered_family_checks("x", "y", mode, &values).iter().map(|c| c.passed).collect();
        assert_eq!(verdicts, expected);
    }
}
