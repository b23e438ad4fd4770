//! Addresses read off Kubernetes objects, shared by the cluster verification and the data-plane suite.

use crate::mode::{IpFamily, Mode};
use k8s_openapi::api::core::v1::{Node, Pod};
use std::net::IpAddr;

/// Whether kubeadm labelled the node a control-plane node.
pub fn is_control_plane(node: &Node) -> bool {
    node.metadata.labels.as_ref().is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"))
}

/// The names of the nodes that are not control-plane nodes, sorted (kind's worker, worker2, ...).
pub fn worker_names(nodes: &[Node]) -> Vec<String> {
    let mut workers: Vec<String> = nodes.iter().filter(|n| !is_control_plane(n)).filter_map(|n| n.metadata.name.clone()).collect();
    workers.sort();
    workers
}

/// A node's InternalIPs, in the order the node reports them.
pub fn internal_ips(node: &Node) -> Vec<String> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| a.iter().filter(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).collect())
        .unwrap_or_default()
}

/// A pod's `status.podIPs`, in order.
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    pod.status.as_ref().and_then(|s| s.pod_ips.as_ref()).map(|ips| ips.iter().map(|i| i.ip.clone()).collect()).unwrap_or_default()
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The first address of `family` among `values`.
pub fn of_family(values: &[String], family: IpFamily) -> Option<IpAddr> {
    values.iter().filter_map(|v| v.parse::<IpAddr>().ok()).find(|ip| IpFamily::of(ip) == family)
}

/// Whether `values` (addresses or CIDRs) hold exactly one entry of `family`, at that family's
/// position in `mode`. Each family judges itself only, so a missing IPv6 entry fails the IPv6 check
/// and not the IPv4 one.
pub fn family_at_its_position(values: &[String], mode: Mode, family: IpFamily) -> bool {
    let position = mode.families().iter().position(|f| *f == family);
    let at: Vec<usize> = values.iter().enumerate().filter(|(_, v)| IpFamily::of_text(v) == Some(family)).map(|(i, _)| i).collect();
    position.is_some_and(|p| at == vec![p])
}
