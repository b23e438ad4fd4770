//! The conversion's edits of text and objects, pure: a static pod manifest's flags and label,
//! the kubelet's flags and configuration, a ConfigMap's keys, a node's podCIDRs and its
//! replacement Node object.

use super::Conversion;
use crate::mode::{IpFamily, Mode};

/// Rewrites `--FLAG=...` in a static pod manifest; an error when the manifest lacks the flag.
pub(super) fn set_flag(manifest: &str, flag: &str, value: &str) -> std::result::Result<String, String> {
    with_line(manifest, &format!("- --{flag}="), value).ok_or_else(|| format!("no --{flag} in the manifest"))
}

/// `text` with each line that starts with `key` (after its indent) ending in `value` instead, at
/// the same indent; `None` when no line does.
pub(super) fn with_line(text: &str, key: &str, value: &str) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            if line.trim_start().starts_with(key) {
                found = true;
                format!("{indent}{key}{value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    found.then(|| lines.join("\n") + "\n")
}


/// A static pod manifest labelled with the mode it now serves (`dualstack.io/converted-to`): a
/// changed manifest is a new pod to the kubelet, started at once whatever the old one's back-off.
pub(super) fn labelled_converted_to(manifest: &str, to: Mode) -> std::result::Result<String, String> {
    const LABEL: &str = "dualstack.io/converted-to:";
    let mut out: Vec<String> = Vec::new();
    let mut labelled = false;
    for line in manifest.lines().filter(|l| !l.trim_start().starts_with(LABEL)) {
        out.push(line.to_string());
        // kubeadm writes metadata at two spaces, its labels at four.
        if line == "  labels:" && !labelled {
            out.push(format!("    {LABEL} {}", to.name()));
            labelled = true;
        }
    }
    if labelled { Ok(out.join("\n") + "\n") } else { Err("no metadata.labels in the manifest".to_string()) }
}

/// The podCIDRs of a node after the conversion, primary first: the range it has of each family
/// it keeps and, on an upgrade, the added family's range with the same number (kind's mask sizes:
/// /24 of 10.244.0.0/16, /64 of fd00:10:244::/56), which no other node can hold.
pub(super) fn converted_pod_cidrs(old: &[String], conversion: Conversion) -> std::result::Result<Vec<String>, String> {
    let kept: Vec<&String> = old.iter().filter(|c| conversion.to.families().contains(&IpFamily::of_text(c).unwrap_or(IpFamily::IPv4))).collect();
    let primary = kept.first().ok_or_else(|| format!("no {} podCIDR among {old:?}", conversion.to.primary()))?;
    if !conversion.upgrades() {
        return Ok(kept.into_iter().cloned().collect());
    }
    let net: ipnet::IpNet = primary.parse().map_err(|e| format!("podCIDR {primary}: {e}"))?;
    let number: u128 = match net {
        ipnet::IpNet::V4(v4) => u128::from((u32::from(v4.network()) >> 8) & 0xff),
        ipnet::IpNet::V6(v6) => (u128::from(v6.network()) >> 64) & 0xff,
    };
    let added = match conversion.secondary() {
        IpFamily::IPv4 => format!("10.244.{number}.0/24"),
        IpFamily::IPv6 => format!("{}/64", std::net::Ipv6Addr::from((u128::from(std::net::Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0))) | (number << 64))),
    };
    Ok(vec![(*primary).clone(), added])
}

/// The Node object to create in place of `old`: its labels, annotations, taints (less the
/// lifecycle ones the node controller owns) and status, with `pod_cidrs`.
pub(super) fn recreated_node(old: &serde_json::Value, pod_cidrs: &[String]) -> serde_json::Value {
    let mut node = old.clone();
    if let Some(metadata) = node.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for field in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "deletionTimestamp", "ownerReferences"] {
            metadata.remove(field);
        }
    }
    let taints: Vec<serde_json::Value> = old["spec"]["taints"]
        .as_array()
        .map(|t| t.iter().filter(|t| !t["key"].as_str().unwrap_or_default().starts_with("node.kubernetes.io/")).cloned().collect())
        .unwrap_or_default();
    node["spec"]["podCIDR"] = serde_json::json!(pod_cidrs.first());
    node["spec"]["podCIDRs"] = serde_json::json!(pod_cidrs);
    node["spec"]["taints"] = serde_json::json!(taints);
    node
}

/// `--node-ip=...` set to `ips` in the kubelet's kubeadm flags file.
pub(super) fn with_node_ips(flags_env: &str, ips: &[String]) -> std::result::Result<String, String> {
    let joined = ips.join(",");
    let mut found = false;
    let words: Vec<String> = flags_env
        .split(' ')
        .map(|word| {
            if let Some(rest) = word.strip_prefix("--node-ip=").or_else(|| word.strip_prefix("KUBELET_KUBEADM_ARGS=\"--node-ip=")) {
                found = true;
                let quote = if word.starts_with("KUBELET") { "KUBELET_KUBEADM_ARGS=\"" } else { "" };
                let tail = if rest.ends_with('"') { "\"" } else { "" };
                format!("{quote}--node-ip={joined}{tail}")
            } else {
                word.to_string()
            }
        })
        .collect();
    if found { Ok(words.join(" ")) } else { Err(format!("no --node-ip in {flags_env:?}")) }
}

/// The kubelet configuration with `clusterDNS` set to `dns`.
pub(super) fn with_cluster_dns(config: &str, dns: &[std::net::IpAddr]) -> std::result::Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    let mut lines = config.lines().peekable();
    let mut found = false;
    while let Some(line) = lines.next() {
        if line == "clusterDNS:" {
            found = true;
            out.push(line.to_string());
            while lines.peek().is_some_and(|l| l.starts_with("- ")) {
                lines.next();
            }
            out.extend(dns.iter().map(|ip| format!("- {ip}")));
        } else {
            out.push(line.to_string());
        }
    }
    if found { Ok(out.join("\n") + "\n") } else { Err("no clusterDNS in the kubelet configuration".to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind;
    use rstest::rstest;

    #[test]
    fn config_keys_are_rewritten_at_their_indent() {
        let kube_proxy = "clientConnection:\n  qps: 0\nclusterCIDR: 10.244.0.0/16\nmode: iptables\n";
        assert_eq!(
            with_line(kube_proxy, "clusterCIDR: ", "10.244.0.0/16,fd00:10:244::/56").as_deref(),
            Some("clientConnection:\n  qps: 0\nclusterCIDR: 10.244.0.0/16,fd00:10:244::/56\nmode: iptables\n")
        );
        let kubeadm = "networking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16\n";
        assert_eq!(with_line(kubeadm, "podSubnet: ", "10.244.0.0/16,fd00:10:244::/56").as_deref(), Some("networking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n"));
        assert_eq!(with_line(kubeadm, "serviceSubnet: ", "x"), None);
    }

    #[rstest]
    #[case(Mode::Ipv4, Mode::Dual, &["10.244.2.0/24"], &["10.244.2.0/24", "fd00:10:244:2::/64"])]
    #[case(Mode::Ipv4, Mode::Dual, &["10.244.0.0/24"], &["10.244.0.0/24", "fd00:10:244::/64"])]
    #[case(Mode::Ipv6, Mode::DualIpv6Primary, &["fd00:10:244:3::/64"], &["fd00:10:244:3::/64", "10.244.3.0/24"])]
    #[case(Mode::Dual, Mode::Ipv4, &["10.244.1.0/24", "fd00:10:244:1::/64"], &["10.244.1.0/24"])]
    #[case(Mode::DualIpv6Primary, Mode::Ipv6, &["fd00:10:244:1::/64", "10.244.1.0/24"], &["fd00:10:244:1::/64"])]
    fn pod_cidrs_keep_the_kept_family_and_number_the_added_one_alike(#[case] from: Mode, #[case] to: Mode, #[case] old: &[&str], #[case] new: &[&str]) {
        let old: Vec<String> = old.iter().map(ToString::to_string).collect();
        let conversion = Conversion::new(from, to).unwrap();
        assert_eq!(converted_pod_cidrs(&old, conversion), Ok(new.iter().map(ToString::to_string).collect()));
    }

    #[test]
    fn a_node_without_a_range_of_the_primary_family_is_an_error() {
        let conversion = Conversion::new(Mode::Ipv4, Mode::Dual).unwrap();
        assert_eq!(converted_pod_cidrs(&[], conversion), Err("no IPv4 podCIDR among []".to_string()));
    }

    #[test]
    fn flags_are_rewritten_in_place_and_a_missing_one_is_named() {
        let manifest = "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --service-cluster-ip-range=10.96.0.0/16\n    - --tls-cert-file=x\n";
        assert_eq!(
            set_flag(manifest, "service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/112").as_deref(),
            Ok("spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112\n    - --tls-cert-file=x\n")
        );
        assert_eq!(set_flag(manifest, "cluster-cidr", "x"), Err("no --cluster-cidr in the manifest".to_string()));
    }

    #[test]
    fn the_converted_to_label_is_added_once_and_follows_the_mode() {
        let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: kube-scheduler\n    tier: control-plane\n  name: kube-scheduler\nspec:\n  containers:\n  - command:\n    - kube-scheduler\n";
        let dual = labelled_converted_to(manifest, Mode::Dual).unwrap();
        assert_eq!(dual, manifest.replace("  labels:\n", "  labels:\n    dualstack.io/converted-to: dual\n"));
        assert_eq!(labelled_converted_to(&dual, Mode::Ipv4).unwrap(), manifest.replace("  labels:\n", "  labels:\n    dualstack.io/converted-to: ipv4\n"));
        assert_eq!(labelled_converted_to("kind: Pod\n", Mode::Dual), Err("no metadata.labels in the manifest".to_string()));
    }

    #[rstest]
    #[case("KUBELET_KUBEADM_ARGS=\"--node-ip=172.18.0.2 --provider-id=kind://docker/c/c-worker --node-labels=\"", "KUBELET_KUBEADM_ARGS=\"--node-ip=172.18.0.2,fc00::2 --provider-id=kind://docker/c/c-worker --node-labels=\"")]
    #[case("KUBELET_KUBEADM_ARGS=\"--provider-id=p --node-ip=172.18.0.2\"", "KUBELET_KUBEADM_ARGS=\"--provider-id=p --node-ip=172.18.0.2,fc00::2\"")]
    fn node_ips_replace_the_kubelet_flag(#[case] flags: &str, #[case] expected: &str) {
        assert_eq!(with_node_ips(flags, &["172.18.0.2".into(), "fc00::2".into()]).as_deref(), Ok(expected));
    }

    #[test]
    fn cluster_dns_replaces_the_list() {
        let config = "authorization:\n  mode: Webhook\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\n";
        let dns = kind::cluster_dns(Mode::Dual);
        assert_eq!(
            with_cluster_dns(config, &dns).as_deref(),
            Ok("authorization:\n  mode: Webhook\nclusterDNS:\n- 10.96.0.10\n- fd00:10:96::a\nclusterDomain: cluster.local\n")
        );
        assert_eq!(with_cluster_dns(&with_cluster_dns(config, &dns).unwrap(), &kind::cluster_dns(Mode::Ipv4)).as_deref(), Ok(config));
    }

    #[test]
    fn a_recreated_node_keeps_its_identity_but_not_its_server_fields_or_lifecycle_taints() {
        let old = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "c-control-plane", "uid": "u", "resourceVersion": "7", "creationTimestamp": "t", "managedFields": [],
                         "labels": {"node-role.kubernetes.io/control-plane": ""}, "annotations": {"a": "b"}},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": "kind://docker/c/c-control-plane",
                     "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"pods": "110"}}
        });
        let cidrs = vec!["10.244.0.0/24".to_string(), "fd00:10:244::/64".to_string()];
        assert_eq!(
            recreated_node(&old, &cidrs),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "c-control-plane", "labels": {"node-role.kubernetes.io/control-plane": ""}, "annotations": {"a": "b"}},
                "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24", "fd00:10:244::/64"], "providerID": "kind://docker/c/c-control-plane",
                         "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"pods": "110"}}
            })
        );
    }
}
