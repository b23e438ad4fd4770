//! The load balancer of the clusters the harness creates: MetalLB in L2 mode (built offline by
//! `prepare`, preloaded into the node image), with one address pool holding a range of each of the
//! cluster's families taken from the top of its docker network's subnets (docker hands out node
//! and container addresses from the bottom). The speakers answer ARP and NDP for the Services'
//! addresses on that network, so the host and any container on it reach them.
//!
//! One pool for both families: MetalLB takes every address of a dual-stack Service from a single
//! pool, so with a pool per family a RequireDualStack Service would stay pending. The first worker
//! announces every address: left to MetalLB, the announcing node is a hash of the Service's name
//! (random per run), and a path that breaks on one node would pass or fail by it.

use crate::error::{Error, Result};
use crate::cluster::kubectl;
use crate::kind::ClusterFiles;
use crate::mode::{IpFamily, Mode};
use crate::objects::worker_names;
use crate::wait::poll;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

/// Which load balancer a created cluster gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancer {
    #[default]
    Metallb,
    /// None: LoadBalancer Services stay pending, and the rows that need one are skipped.
    None,
}

crate::choice::named_choices!(LoadBalancer, "load balancer", {
    Metallb => "metallb",
    None => "none",
});

/// MetalLB's CRDs, RBAC, controller (webhooks off) and speakers, with our image.
const METALLB_MANIFEST: &str = include_str!("../../fixtures/lb/metallb.yaml");
const NAMESPACE: &str = "metallb-system";

/// What was installed, for the progress line and the reports.
pub struct Installed {
    pub pools: Vec<String>,
}

impl std::fmt::Display for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetalLB {} (L2), pool {}", crate::machine::pinned_version("METALLB_VERSION").unwrap_or("unknown"), self.pools.join(", "))
    }
}

/// Installs MetalLB into the cluster of `files` and waits until its controller and every speaker
/// are Ready and its pool exists.
pub async fn install(client: &Client, files: &ClusterFiles, mode: Mode, timeout: Duration) -> Result<Installed> {
    let failed = |cause: String| Error::LoadBalancerInstall { cause };
    kubectl(files, &["apply", "-f", "-"], METALLB_MANIFEST).await.map_err(failed)?;
    kubectl(files, &["wait", "--for", "condition=established", "--timeout", "60s", "crd/ipaddresspools.metallb.io", "crd/l2advertisements.metallb.io"], "").await.map_err(failed)?;
    let pools = apply_pool(client, files, mode).await.map_err(failed)?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    poll("MetalLB's controller and speakers Ready", timeout, Duration::from_millis(500), || async {
        let controller = deployments.get("controller").await?.status.unwrap_or_default();
        let speakers = daemonsets.get("speaker").await?.status.unwrap_or_default();
        let ready = controller.ready_replicas.unwrap_or(0) >= 1 && speakers.desired_number_scheduled > 0 && speakers.number_ready == speakers.desired_number_scheduled;
        Ok(if ready {
            Ok(())
        } else {
            Err(format!("controller {} ready, speakers {} of {} ready", controller.ready_replicas.unwrap_or(0), speakers.number_ready, speakers.desired_number_scheduled))
        })
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    Ok(Installed { pools })
}

/// MetalLB's pool for a `mode` cluster (a range of each family) and its announcement, applied
/// over what is there (a converted cluster's pool gains or loses a family); the ranges.
pub async fn apply_pool(client: &Client, files: &ClusterFiles, mode: Mode) -> std::result::Result<Vec<String>, String> {
    let subnets = docker_subnets(&files.network).await?;
    let pools = mode.families().iter().map(|&family| pool_range(family, &subnets)).collect::<std::result::Result<Vec<String>, String>>()?;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
    let workers = worker_names(&nodes);
    kubectl(files, &["apply", "-f", "-"], &pool_manifest(&pools, workers.first().map(String::as_str))).await?;
    Ok(pools)
}

/// Whether the cluster runs the MetalLB this module installs.
pub async fn installed(client: &Client) -> Result<bool> {
    Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get_opt(NAMESPACE).await?.is_some())
}

/// The subnets of a docker network, IPv4 and IPv6.
async fn docker_subnets(network: &str) -> std::result::Result<Vec<String>, String> {
    let out = tokio::process::Command::new("docker")
        .args(["network", "inspect", network, "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"])
        .output()
        .await
        .map_err(|e| format!("running docker network inspect {network}: {e}"))?;
    if !out.status.success() {
        return Err(format!("docker network inspect {network}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect())
}

/// The pool range of `family`: the last /28 of the network's IPv4 subnet, the last /120 of its IPv6
/// one.
fn pool_range(family: IpFamily, subnets: &[String]) -> std::result::Result<String, String> {
    let parsed = |subnet: &String| -> Option<(IpAddr, u8)> {
        let (address, length) = subnet.split_once('/')?;
        Some((address.parse().ok()?, length.parse().ok()?))
    };
    let Some((address, length)) = subnets.iter().filter_map(parsed).find(|(ip, _)| IpFamily::of(ip) == family) else {
        return Err(format!("the nodes' docker network has no {family} subnet (it has {})", subnets.join(", ")));
    };
    match address {
        IpAddr::V4(v4) if length <= 28 => {
            let last = u32::from(v4) | (u32::MAX >> length);
            Ok(format!("{}/28", std::net::Ipv4Addr::from(last & !0xf)))
        }
        IpAddr::V6(v6) if length <= 120 => {
            let last = u128::from(v6) | (u128::MAX >> length);
            Ok(format!("{}/120", std::net::Ipv6Addr::from(last & !0xff)))
        }
        _ => Err(format!("the {family} subnet {address}/{length} of the nodes' docker network is too small for a pool")),
    }
}

/// One IPAddressPool of `ranges` and an L2Advertisement of every pool from `announcer` (every
/// eligible node without one).
fn pool_manifest(ranges: &[String], announcer: Option<&str>) -> String {
    let pool = serde_json::json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "dualstack", "namespace": NAMESPACE},
        "spec": {"addresses": ranges},
    });
    let mut advertisement = serde_json::json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
        "metadata": {"name": "dualstack", "namespace": NAMESPACE},
    });
    if let Some(node) = announcer {
        advertisement["spec"] = serde_json::json!({"nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": node}}]});
    }
    format!("{pool}\n---\n{advertisement}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(IpFamily::IPv4, &["172.22.0.0/16", "fc00:653d:2a24:aa1a::/64"], Ok("172.22.255.240/28"))]
    #[case(IpFamily::IPv6, &["172.22.0.0/16", "fc00:653d:2a24:aa1a::/64"], Ok("fc00:653d:2a24:aa1a:ffff:ffff:ffff:ff00/120"))]
    #[case(IpFamily::IPv4, &["192.168.16.0/20"], Ok("192.168.31.240/28"))]
    #[case(IpFamily::IPv6, &["172.22.0.0/16"], Err("the nodes' docker network has no IPv6 subnet (it has 172.22.0.0/16)"))]
    #[case(IpFamily::IPv4, &["172.22.0.0/30"], Err("the IPv4 subnet 172.22.0.0/30 of the nodes' docker network is too small for a pool"))]
    fn the_pool_is_the_top_of_each_subnet(#[case] family: IpFamily, #[case] subnets: &[&str], #[case] range: std::result::Result<&str, &str>) {
        let subnets: Vec<String> = subnets.iter().map(ToString::to_string).collect();
        assert_eq!(pool_range(family, &subnets), range.map(str::to_string).map_err(str::to_string));
    }

    #[test]
    fn the_manifest_runs_the_image_prepare_builds() {
        let images: std::collections::BTreeSet<&str> = METALLB_MANIFEST.lines().filter_map(|l| l.trim().strip_prefix("image: ")).collect();
        assert_eq!(images, [crate::machine::metallb_image()].into());
    }

    #[test]
    fn one_pool_of_every_range_and_an_advertisement_of_it_from_the_first_worker() {
        let manifest = pool_manifest(&["172.22.255.240/28".into(), "fc00::ff00/120".into()], Some("c-worker"));
        insta::assert_snapshot!(manifest, @r#"
        {"apiVersion":"metallb.io/v1beta1","kind":"IPAddressPool","metadata":{"name":"dualstack","namespace":"metallb-system"},"spec":{"addresses":["172.22.255.240/28","fc00::ff00/120"]}}
        ---
        {"apiVersion":"metallb.io/v1beta1","kind":"L2Advertisement","metadata":{"name":"dualstack","namespace":"metallb-system"},"spec":{"nodeSelectors":[{"matchLabels":{"kubernetes.io/hostname":"c-worker"}}]}}
        "#);
        assert!(!pool_manifest(&["172.22.255.240/28".into()], None).contains("nodeSelectors"));
    }
}
