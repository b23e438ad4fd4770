//! What the cluster really is: its mode (from the `kubernetes` Service, the nodes' podCIDRs and a
//! dry-run PreferDualStack probe Service), its service ranges and version.

use crate::error::{Error, Result};
use crate::mode::{IpFamily, Mode};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct ClusterFacts {
    pub mode: Mode,
    /// Service ranges, primary family first.
    pub service_cidrs: Vec<IpNet>,
    /// The `default/kubernetes` Service address (always allocated).
    pub kubernetes_ip: IpAddr,
    pub server_version: String,
}

impl ClusterFacts {
    pub fn service_cidr(&self, family: IpFamily) -> Option<IpNet> {
        self.service_cidrs.iter().copied().find(|c| IpFamily::of(&c.addr()) == family)
    }
}

pub async fn detect(client: &Client) -> Result<ClusterFacts> {
    let kubernetes = Api::<Service>::namespaced(client.clone(), "default").get("kubernetes").await?;
    let kubernetes_ip: IpAddr = kubernetes
        .spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| Error::Detection("the default/kubernetes Service has no clusterIP".into()))?;

    let families = service_families(client).await?;
    let mode = Mode::from_families(&families)
        .ok_or_else(|| Error::Detection(format!("the cluster's service families {families:?} are not a known mode")))?;
    if IpFamily::of(&kubernetes_ip) != mode.primary() {
        return Err(Error::Detection(format!(
            "the kubernetes Service address {kubernetes_ip} is not of the primary service family {}",
            mode.primary()
        )));
    }

    // Every node must carry pod ranges of exactly the service families, in the same order.
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    for node in &nodes {
        let cidrs = node.spec.as_ref().and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        let node_families: Vec<Option<IpFamily>> = cidrs.iter().map(|c| IpFamily::of_text(c)).collect();
        let want: Vec<Option<IpFamily>> = mode.families().iter().copied().map(Some).collect();
        if !cidrs.is_empty() && node_families != want {
            return Err(Error::Detection(format!(
                "node {} has podCIDRs {cidrs:?}, which disagree with the service families of a {mode} cluster",
                node.metadata.name.as_deref().unwrap_or("?")
            )));
        }
    }

    // A cluster converted from dual-stack keeps a dual default ServiceCIDR: Kubernetes never
    // removes a range from it (it reports KubernetesDefaultServiceCIDRInconsistent instead); the
    // ranges of the mode's families are the ones in service.
    let listed: Vec<IpNet> = match Api::<ServiceCIDR>::all(client.clone()).get_opt("kubernetes").await? {
        Some(sc) => sc.spec.and_then(|s| s.cidrs).unwrap_or_default().iter().filter_map(|c| c.parse().ok()).collect(),
        None => Vec::new(),
    };
    let service_cidrs: Vec<IpNet> = mode.families().iter().filter_map(|&f| listed.iter().copied().find(|c| IpFamily::of(&c.addr()) == f)).collect();
    if service_cidrs.len() != mode.families().len() {
        return Err(Error::Detection(format!(
            "the default ServiceCIDR 'kubernetes' lists {listed:?}; expected a range of each family of a {mode} cluster"
        )));
    }
    let server_version = client.apiserver_version().await.map(|v| v.git_version).unwrap_or_else(|_| "unknown".into());
    Ok(ClusterFacts { mode, service_cidrs, kubernetes_ip, server_version })
}

/// The families a new PreferDualStack Service gets, in the cluster's order: what the API server's
/// allocators serve (a dry-run create, nothing persisted).
pub async fn service_families(client: &Client) -> Result<Vec<IpFamily>> {
    let probe: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "dualstack-mode-probe-"},
        "spec": {"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}
    }))
    .map_err(|e| Error::Detection(format!("building the mode probe Service: {e}")))?;
    let params = PostParams { dry_run: true, ..Default::default() };
    let probed = Api::<Service>::namespaced(client.clone(), "default").create(&params, &probe).await?;
    Ok(probed
        .spec
        .and_then(|s| s.ip_families)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(IpFamily::IPv4),
            "IPv6" => Some(IpFamily::IPv6),
            _ => None,
        })
        .collect())
}

/// kube-proxy's mode as its kubeadm ConfigMap (`kube-system/kube-proxy`) states it, for the
/// reports; a cluster without that ConfigMap runs no kubeadm-installed kube-proxy.
pub async fn kube_proxy_mode(client: &Client) -> String {
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    match config_maps.get_opt("kube-proxy").await {
        Ok(Some(config_map)) => {
            let config = config_map.data.and_then(|d| d.get("config.conf").cloned()).unwrap_or_default();
            kube_proxy_mode_of(&config)
        }
        Ok(None) => "none (no kube-system/kube-proxy ConfigMap)".to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// The `mode:` of a KubeProxyConfiguration; empty means the platform default, iptables on Linux.
fn kube_proxy_mode_of(config: &str) -> String {
    let mode = config.lines().find_map(|line| line.strip_prefix("mode:")).map(|m| m.trim().trim_matches(['"', '\'']));
    match mode {
        Some("") | None => "iptables (mode unset: the Linux default)".to_string(),
        Some(mode) => mode.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::kube_proxy_mode_of;
    use rstest::rstest;

    #[rstest]
    #[case("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nmode: nftables\n", "nftables")]
    #[case("kind: KubeProxyConfiguration\nmode: \"\"\n", "iptables (mode unset: the Linux default)")]
    #[case("kind: KubeProxyConfiguration\n", "iptables (mode unset: the Linux default)")]
    #[case("mode: 'ipvs'\n", "ipvs")]
    fn kube_proxy_mode_from_its_config(#[case] config: &str, #[case] mode: &str) {
        assert_eq!(kube_proxy_mode_of(config), mode);
    }
}
