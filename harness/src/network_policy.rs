//! The NetworkPolicy agent of the clusters the harness creates: kube-network-policies (built offline
//! by `prepare`, preloaded into the node image), which enforces policy beside a CNI that enforces
//! none, ours included, for both families from one `inet` nftables table. Whether a cluster enforces
//! policy at all is not taken from here: the data-plane fixture finds out with a canary
//! (`checks::dataplane::policy`), so a vendor's CNI that enforces is judged the same way.

use crate::cluster::kubectl;
use crate::error::{Error, Result};
use crate::kind::ClusterFiles;
use crate::wait::poll;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::{Api, Client};
use serde::Serialize;
use std::time::Duration;

/// Which NetworkPolicy agent a created cluster gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyAgent {
    KubeNetworkPolicies,
    /// None: unless the CNI enforces policy itself, the NetworkPolicy rows are skipped.
    None,
}

impl PolicyAgent {
    /// The agent a created cluster gets unless told: ours beside our CNI, which enforces no
    /// policy; none beside a vendor's, whose own enforcement is what is judged (an agent beside it
    /// would deny what the CNI lets through, and hide it).
    pub fn default_for(default_cni: bool) -> Self {
        if default_cni { Self::KubeNetworkPolicies } else { Self::None }
    }
}

crate::choice::named_choices!(PolicyAgent, "NetworkPolicy agent", {
    KubeNetworkPolicies => "kube-network-policies",
    None => "none",
});

/// The agent's RBAC and DaemonSet, with our image.
const MANIFEST: &str = include_str!("../../fixtures/network-policy/kube-network-policies.yaml");
const DAEMONSET: &str = "kube-network-policies";

/// Installs kube-network-policies into the cluster of `files` and waits until every node's agent is
/// Ready (its startup probe: the agent's table with its queue rules is in place).
pub async fn install(client: &Client, files: &ClusterFiles, timeout: Duration) -> Result<String> {
    let failed = |cause: String| Error::NetworkPolicyInstall { cause };
    kubectl(files, &["apply", "-f", "-"], MANIFEST).await.map_err(failed)?;
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    poll("kube-network-policies Ready on every node", timeout, Duration::from_millis(500), || async {
        let agents = daemonsets.get(DAEMONSET).await?.status.unwrap_or_default();
        Ok(if agents.desired_number_scheduled > 0 && agents.number_ready == agents.desired_number_scheduled {
            Ok(())
        } else {
            Err(format!("{} of {} agents Ready", agents.number_ready, agents.desired_number_scheduled))
        })
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    Ok(format!("kube-network-policies {}", crate::machine::pinned_version("KNP_VERSION").unwrap_or("unknown")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_runs_the_image_prepare_builds() {
        let images: std::collections::BTreeSet<&str> = MANIFEST.lines().filter_map(|l| l.trim().strip_prefix("image: ")).collect();
        assert_eq!(images, [crate::machine::knp_image()].into());
    }
}
