//! A cluster to test: a kube client plus, for clusters we created, the means to delete them.

use crate::error::{Error, Result};
use crate::host::HostNeeds;
use crate::kind::{self, ClusterFiles, ClusterSpec, Kind};
use crate::machine;
use crate::wait::poll;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use std::path::Path;
use std::time::{Duration, Instant};

/// Checks that a kubeconfig file can be read and has the context, before any work starts.
pub async fn check_kubeconfig(path: &Path, context: Option<&str>) -> Result<()> {
    client_from_kubeconfig(path, context).await.map(|_| ())
}

/// A kube client for a kubeconfig file and optional context.
pub async fn client_from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Client> {
    // Parser errors may carry a multi-line source snippet; one line is enough to point at the file.
    let bad = |cause: String| Error::Kubeconfig {
        path: path.to_path_buf(),
        cause: cause.lines().next().unwrap_or_default().to_string(),
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
    let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| bad(e.to_string()))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| bad(e.to_string()))?;
    // One round trip now, so that a server that does not answer is named with its URL and the whole
    // cause ("tcp connect error: Connection refused"), not a bare "client error (Connect)" later.
    match client.apiserver_version().await {
        Ok(_) => Ok(client),
        Err(e) => Err(Error::Unreachable { url, kubeconfig: path.to_path_buf(), cause: causes(&e) }),
    }
}

/// An error and its sources, outermost first, each once.
fn causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// A KIND cluster created by the harness.
pub struct KindCluster {
    pub files: ClusterFiles,
    pub spec: ClusterSpec,
    pub node_image: String,
    pub client: Client,
}

/// Timings of `KindCluster::up`, for progress lines and benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct UpTimings {
    pub create: Duration,
    pub ready: Duration,
}

impl KindCluster {
    /// Creates the cluster and waits until every node is Ready (registered, without the default
    /// CNI). Cluster DNS is not waited for here: the data-plane fixture waits for it while its pods
    /// start, and `cluster up` after this. Anything created is removed again when this fails.
    pub async fn up(
        name: &str,
        spec: ClusterSpec,
        node_image: Option<String>,
        ready_timeout: Duration,
    ) -> Result<(Self, UpTimings)> {
        machine::require_docker().await?;
        // Held until the nodes are up, when the space they take shows as used.
        let _disk = machine::promise_disk_for(name, spec.node_count()).await?;
        let kind = Kind::locate()?;
        let node_image = match node_image {
            Some(image) => image,
            None => default_node_image().await,
        };
        let files = ClusterFiles::new(name)?;
        files.create_dir()?;
        let config = kind::kind_config(&spec, HostNeeds::detect());
        let started = Instant::now();
        kind.create(&files, &config, &node_image).await?;
        let create = started.elapsed();
        let cleanup_on_error = async |e: Error| {
            kind.export_logs(&files, &files.dir.join("kind-logs")).await;
            let _ = kind.delete(&files).await;
            e
        };
        let client = match client_from_kubeconfig(&files.kubeconfig, None).await {
            Ok(c) => c,
            Err(e) => return Err(cleanup_on_error(e).await),
        };
        // Without a CNI nodes stay NotReady until the vendor installs one: wait for the API only.
        let waited = if spec.default_cni {
            wait_nodes_ready(&client, spec.node_count(), ready_timeout).await
        } else {
            wait_nodes_registered(&client, spec.node_count(), ready_timeout).await
        };
        if let Err(e) = waited {
            let e = match e {
                // Why, as the pods say it (a CNI pod whose image containerd cannot unpack, ...).
                Error::Timeout { what, seconds, last_seen } => Error::Timeout {
                    what,
                    seconds,
                    last_seen: format!(
                        "{last_seen}; {}; node logs exported to {}",
                        crate::cni::diagnose(&client).await.summary,
                        files.dir.join("kind-logs").display()
                    ),
                },
                other => other,
            };
            return Err(cleanup_on_error(e).await);
        }
        if spec.mode.is_dual()
            && let Err(e) = serve_dns_on_both_families(&client, spec.mode).await
        {
            return Err(cleanup_on_error(e).await);
        }
        // The offline node image carries the probe, MetalLB and kube-network-policies; any other (kindest/node on a
        // machine with a registry) gets them loaded, since they are built here and never pulled.
        if node_image != machine::offline_node_image() {
            for image in [machine::probe_image().as_str(), machine::metallb_image(), machine::knp_image()] {
                if let Err(e) = kind.load_image(&files, image).await {
                    return Err(cleanup_on_error(e).await);
                }
            }
        }
        let ready = started.elapsed() - create;
        Ok((Self { files, spec, node_image, client }, UpTimings { create, ready }))
    }
}

/// Gives the kube-dns Service the secondary family's address the kubelets name in clusterDNS
/// (`kind::cluster_dns`): kubeadm creates it single-stack.
pub(crate) async fn serve_dns_on_both_families(client: &Client, mode: crate::mode::Mode) -> Result<()> {
    let ips: Vec<String> = kind::cluster_dns(mode).iter().map(ToString::to_string).collect();
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "kube-system");
    let patch = serde_json::json!({"spec": {"ipFamilyPolicy": "PreferDualStack", "clusterIPs": ips}});
    poll("the kube-dns Service to take both cluster DNS addresses", Duration::from_secs(60), POLL_INTERVAL, || async {
        match services.patch("kube-dns", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
            Ok(_) => Ok(Ok(())),
            // kubeadm creates the Service a moment after the API server answers.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Err("kube-dns does not exist yet".to_string())),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// A ready endpoint of kube-dns: the CoreDNS replica behind it.
#[derive(Debug, Clone)]
pub struct DnsReplica {
    /// The EndpointSlice's addressType: IPv4 or IPv6.
    pub address_type: String,
    pub address: String,
    /// "coredns-x on NODE (ADDRESS)", for messages.
    pub described: String,
}

/// kube-dns's ready endpoints, from its EndpointSlices.
pub async fn dns_replicas(client: &Client) -> Result<Vec<DnsReplica>> {
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=kube-dns")).await?;
    let mut replicas = Vec::new();
    for slice in list.items {
        let ready = slice.endpoints.into_iter().flatten().filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
        for endpoint in ready {
            let Some(address) = endpoint.addresses.first().cloned() else { continue };
            let pod = endpoint.target_ref.as_ref().and_then(|r| r.name.clone()).unwrap_or_else(|| "a CoreDNS pod".into());
            let described = format!("{pod} on {} ({address})", endpoint.node_name.as_deref().unwrap_or("?"));
            replicas.push(DnsReplica { address_type: slice.address_type.clone(), address, described });
        }
    }
    Ok(replicas)
}

/// Waits until the kube-dns Service has a ready endpoint of every family it has an address of:
/// cluster DNS answers before any check asks it (a cluster brought by the user may still be settling).
pub async fn wait_cluster_dns(client: &Client, timeout: Duration) -> Result<()> {
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "kube-system");
    poll("cluster DNS (kube-system/kube-dns) to have a ready endpoint of each of its families", timeout, POLL_INTERVAL, || async {
        let families = services.get("kube-dns").await?.spec.and_then(|s| s.ip_families).unwrap_or_default();
        let replicas = dns_replicas(client).await?;
        let waiting: Vec<&str> = families.iter().filter(|f| !replicas.iter().any(|r| &r.address_type == *f)).map(String::as_str).collect();
        Ok(if waiting.is_empty() { Ok(()) } else { Err(format!("no ready {} endpoint", waiting.join(" or "))) })
    })
    .await
}

/// Deletes a cluster created by `dualstack cluster up` (or left by an interrupted run) by name.
pub async fn destroy(files: &ClusterFiles) -> Result<()> {
    machine::require_docker().await?;
    Kind::locate()?.delete(files).await?;
    files.remove_dir()
}

/// `cluster down`: like `destroy`, but a name with neither KIND nodes nor files is an error.
pub async fn destroy_existing(files: &ClusterFiles) -> Result<()> {
    machine::require_docker().await?;
    let kind = Kind::locate()?;
    if !kind.clusters().await?.contains(&files.name) && !files.dir.exists() {
        return Err(Error::ClusterNotFound { name: files.name.clone(), dir: files.dir.clone() });
    }
    kind.delete(files).await?;
    files.remove_dir()
}

/// The node image `dualstack prepare` left on this machine: the one it built, else the upstream one
/// it pulled; `None` when it has not run (or neither image is there any more).
pub async fn prepared_node_image() -> Option<String> {
    for image in [machine::offline_node_image(), machine::upstream_node_image()] {
        if machine::docker_has_image(&image).await {
            return Some(image);
        }
    }
    None
}

/// The prepared node image, else the upstream one (kind pulls it).
async fn default_node_image() -> String {
    prepared_node_image().await.unwrap_or_else(machine::upstream_node_image)
}

const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub(crate) fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_nodes_registered(client: &Client, expected: usize, timeout: Duration) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    poll(&format!("{expected} nodes to register"), timeout, POLL_INTERVAL, || async {
        let list = nodes.list(&ListParams::default()).await?;
        Ok(if list.items.len() >= expected { Ok(()) } else { Err(format!("{} nodes registered", list.items.len())) })
    })
    .await
}

/// Waits until `expected` nodes are Ready.
pub async fn wait_nodes_ready(client: &Client, expected: usize, timeout: Duration) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    poll(&format!("{expected} nodes Ready"), timeout, POLL_INTERVAL, || async {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list.items.iter().filter(|n| node_ready(n)).count();
        Ok(if ready >= expected {
            Ok(())
        } else {
            let names: Vec<String> = list
                .items
                .iter()
                .map(|n| format!("{}={}", n.metadata.name.as_deref().unwrap_or("?"), if node_ready(n) { "Ready" } else { "NotReady" }))
                .collect();
            Err(format!("{ready}/{expected} Ready ({})", names.join(", ")))
        })
    })
    .await
}

/// `kubectl ARGS` against the cluster of `files`, `input` on its stdin (for `apply -f -`); its error
/// output when it fails.
pub async fn kubectl(files: &ClusterFiles, args: &[&str], input: &str) -> std::result::Result<(), String> {
    let mut command = tokio::process::Command::new(crate::machine::kubectl());
    command.arg("--kubeconfig").arg(&files.kubeconfig).args(args);
    let out = crate::machine::output_with_input(&mut command, input.as_bytes()).await.map_err(|e| format!("running kubectl {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("kubectl {} exited with {}: {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}
