//! The command line: every subcommand and flag, with its help text.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The exit codes (src/exit.rs), as `--help` states them.
macro_rules! exit_codes {
    () => {
        "Exit codes: 0 all passed, 1 conformance failures, 2 bad input or usage, 3 environment or setup failure, \
130 interrupted (143 on SIGTERM)."
    };
}

#[derive(Parser)]
#[command(name = "dualstack", version, about = "Conformance suite for Kubernetes IPv4/IPv6 dual-stack networking",
    after_help = exit_codes!())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print every case as it finishes, passed ones included.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only failures and the summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Prepare this machine: Docker engine, kind, the probe image and a KIND node image (idempotent, cached).
    #[command(after_help = "Examples:\n  dualstack prepare\n  dualstack prepare --node-source build\n\
Caches live in $DUALSTACK_CACHE (default /var/cache/dualstack for root, else ~/.cache/dualstack).")]
    Prepare(PrepareArgs),
    /// Create, check and delete KIND clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run the scenario tables against a cluster (created for the run, or --kubeconfig).
    #[command(after_help = concat!("Examples:\n  dualstack run --mode all --report-dir reports-out\n  \
dualstack run --mode ipv6 --kubeconfig ~/.kube/config --filter 'S1*' --report-dir out\n  \
dualstack run --mode dual --cni-manifest my-cni.yaml --suite dataplane\n\n", exit_codes!()))]
    Run(Box<RunArgs>),
    /// Work with report directories.
    #[command(subcommand)]
    Report(ReportCommand),
    /// List every scenario id x mode that would run, and why any is skipped.
    #[command(after_help = "Example: dualstack list --mode ipv4 --skip 'U*'")]
    List(ListArgs),
}

#[derive(Args)]
pub struct PrepareArgs {
    /// Where the node image comes from: `auto` keeps a node image built here before, else pulls
    /// kindest/node where a registry answers, else builds one offline; `pull` fails when the pull
    /// fails; `build` never pulls.
    #[arg(long, value_enum, default_value_t = NodeSource::Auto)]
    pub node_source: NodeSource,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum NodeSource {
    Auto,
    Pull,
    Build,
}

impl From<NodeSource> for harness::prepare::NodeSource {
    fn from(source: NodeSource) -> Self {
        match source {
            NodeSource::Auto => Self::Auto,
            NodeSource::Pull => Self::Pull,
            NodeSource::Build => Self::Build,
        }
    }
}

#[derive(Args, Clone)]
pub struct SelectionArgs {
    /// Run only this suite (repeatable): services, dataplane, or a vendor suite. Default: all.
    #[arg(long = "suite")]
    pub suites: Vec<String>,
    /// Extra directory of scenario tables (repeatable), added to the built-in suites/.
    #[arg(long = "suite-dir")]
    pub suite_dirs: Vec<PathBuf>,
    /// Run only scenarios whose ID or SUITE/ID matches this glob (repeatable).
    #[arg(long)]
    pub filter: Vec<String>,
    /// Skip scenarios whose ID or SUITE/ID matches this glob (repeatable).
    #[arg(long)]
    pub skip: Vec<String>,
    /// Only this job's share of the rows: INDEX/COUNT, e.g. 1/2 (merge with `dualstack report merge`).
    #[arg(long)]
    pub shard: Option<String>,
}

/// Images a vendor's CNI needs in the nodes (an offline cluster pulls nothing).
#[derive(Args, Clone)]
pub struct ImageArgs {
    /// Load this image from the machine's Docker engine into every node of each created cluster
    /// before the CNI install (repeatable).
    #[arg(long, value_name = "IMAGE")]
    pub load_image: Vec<String>,
    /// Load the images of this `docker save` tarball into every node of each created cluster
    /// before the CNI install (repeatable).
    #[arg(long, value_name = "FILE.tar")]
    pub load_archive: Vec<PathBuf>,
}

impl ImageArgs {
    pub fn images(&self) -> Vec<harness::cni::ImageToLoad> {
        use harness::cni::ImageToLoad;
        let images = self.load_image.iter().cloned().map(ImageToLoad::Image);
        images.chain(self.load_archive.iter().cloned().map(ImageToLoad::Archive)).collect()
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// ipv4, ipv6, dual (IPv4 primary), dual-ipv6-primary, or all (repeatable).
    #[arg(long = "mode", default_value = "all")]
    pub modes: Vec<String>,
    /// Run against this cluster instead of creating one; its real mode must match --mode.
    #[arg(long, conflicts_with_all = ["cni_manifest", "cni_install_cmd", "load_image", "load_archive", "workers", "kube_proxy", "load_balancer", "network_policy", "keep", "node_image"])]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
    /// Create clusters without the default CNI and apply this manifest (kubectl apply -f):
    /// FILE for every mode, or MODE=FILE for one (repeatable). `${DUALSTACK_CLUSTER}`,
    /// `${DUALSTACK_MODE}`, `${DUALSTACK_POD_SUBNETS}`, `${DUALSTACK_SERVICE_SUBNETS}`,
    /// `${DUALSTACK_NODES}` and `${DUALSTACK_KIND}` are substituted.
    #[arg(long, value_name = "[MODE=]FILE", conflicts_with = "cni_install_cmd")]
    pub cni_manifest: Vec<String>,
    /// Create clusters without the default CNI and run this shell command, with KUBECONFIG, the
    /// DUALSTACK_* variables of --cni-manifest set and kind and kubectl on PATH.
    #[arg(long)]
    pub cni_install_cmd: Option<String>,
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// kube-proxy's mode in created clusters: iptables, nftables, or none (for a CNI that
    /// replaces kube-proxy).
    #[arg(long, default_value = "iptables")]
    pub kube_proxy: harness::kind::KubeProxyMode,
    /// The load balancer of created clusters: metallb (L2, a pool of each family from the nodes'
    /// docker network) or none (the LoadBalancer rows are then skipped).
    #[arg(long, default_value = "metallb")]
    pub load_balancer: harness::load_balancer::LoadBalancer,
    /// The NetworkPolicy agent of created clusters, beside the CNI: kube-network-policies or none.
    /// Default: kube-network-policies with the default CNI (which enforces no policy), none with
    /// yours (its own enforcement is what is judged; where nothing enforces, the NetworkPolicy
    /// rows are skipped).
    #[arg(long)]
    pub network_policy: Option<harness::network_policy::PolicyAgent>,
    #[command(flatten)]
    pub images: ImageArgs,
    /// Node image for created clusters (default: the prepared offline image, else kindest/node).
    #[arg(long)]
    pub node_image: Option<String>,
    /// Where junit.xml, results.json and summary.md go.
    #[arg(long, default_value = "dualstack-reports")]
    pub report_dir: PathBuf,
    /// Keep the clusters the run created.
    #[arg(long)]
    pub keep: bool,
    /// Modes run at once, each on its own cluster. Default 2: measured on 2 cores with three-node
    /// clusters, `--mode all` took 214 s with 2 at once; creating the next clusters while the
    /// first two run their suites took longer (220 s): cluster creation is CPU-bound.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Scenarios in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds one scenario may take.
    #[arg(long, default_value_t = 30)]
    pub case_timeout: u64,
    /// Seconds to wait for nodes Ready after create (and after a CNI install).
    #[arg(long, default_value_t = 180)]
    pub ready_timeout: u64,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Test-only: judge with the expectations of this mode (proves verdicts follow the tables).
    #[arg(long, hide = true)]
    pub judge_as: Option<String>,
    /// Test-only: a shell command run once a phase's own objects exist (fault injection): the
    /// data-plane fixture, ready; the conversion suite's, before it converts.
    #[arg(long, hide = true)]
    pub after_fixture_hook: Option<String>,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Merge the report directories of a CI matrix (one job per mode or per --shard) into one set.
    #[command(after_help = "Example: dualstack report merge reports-ipv4 reports-dual --out reports")]
    Merge {
        /// Report directories, each with a results.json.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged junit.xml, results.json and summary.md go.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The shape of the clusters the harness creates (`run`, `list` and `cluster up` share it).
#[derive(Args)]
pub struct ShapeArgs {
    /// Workers besides the control-plane node in created clusters. Default 1: every row has the
    /// nodes it needs on two; a second worker adds its per-node rows (the fault catalogue runs on
    /// three nodes) and costs about 15 CPU-seconds to create.
    #[arg(long, default_value_t = 1)]
    pub workers: u8,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this mode (default: all four).
    #[arg(long)]
    pub mode: Option<String>,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Create a KIND cluster in MODE and wait until nodes are Ready and cluster DNS answers.
    #[command(after_help = "Example: dualstack cluster up --mode dual --name my-dual")]
    Up(UpArgs),
    /// Delete a cluster created by `cluster up`, with its docker network and files.
    #[command(after_help = "Example: dualstack cluster down --name my-dual")]
    Down {
        #[arg(long)]
        name: String,
    },
    /// Convert a cluster created by `cluster up` in place: add the second family (ipv4 -> dual,
    /// ipv6 -> dual-ipv6-primary) or remove it (dual -> ipv4, dual-ipv6-primary -> ipv6).
    #[command(after_help = "Example: dualstack cluster convert --name my-v4 --to dual")]
    Convert {
        #[arg(long)]
        name: String,
        /// The mode to convert to; the primary family stays.
        #[arg(long)]
        to: String,
    },
    /// Verify a cluster's addressing, DNS and cross-node traffic for every family of MODE.
    #[command(after_help = "Example: dualstack cluster check --mode dual --name my-dual")]
    Check(CheckArgs),
}

#[derive(Args)]
pub struct UpArgs {
    /// ipv4, ipv6, dual (IPv4 primary) or dual-ipv6-primary.
    #[arg(long)]
    pub mode: String,
    /// Cluster name; a unique one is generated when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// Node image; default: the offline image from `dualstack prepare` if present, else kindest/node.
    #[arg(long)]
    pub node_image: Option<String>,
    /// Do not install the default CNI (install your own; nodes stay NotReady until then).
    #[arg(long)]
    pub no_default_cni: bool,
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// kube-proxy's mode: iptables, nftables, or none (for a CNI that replaces kube-proxy).
    #[arg(long, default_value = "iptables")]
    pub kube_proxy: harness::kind::KubeProxyMode,
    /// The load balancer: metallb (L2, a pool of each family from the nodes' docker network) or
    /// none. Without the default CNI there is none (its pods need the CNI you install).
    #[arg(long, default_value = "metallb")]
    pub load_balancer: harness::load_balancer::LoadBalancer,
    /// The NetworkPolicy agent, beside the CNI: kube-network-policies or none. Without the default
    /// CNI there is none (its pods need the CNI you install).
    #[arg(long, default_value = "kube-network-policies")]
    pub network_policy: harness::network_policy::PolicyAgent,
    /// Seconds to wait for nodes Ready, and again for cluster DNS to have ready endpoints.
    #[arg(long, default_value_t = 180)]
    pub ready_timeout: u64,
    #[command(flatten)]
    pub images: ImageArgs,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The mode the cluster is expected to be in.
    #[arg(long)]
    pub mode: String,
    /// A cluster created by `cluster up`.
    #[arg(long, conflicts_with = "kubeconfig", required_unless_present = "kubeconfig")]
    pub name: Option<String>,
    /// Any cluster, by kubeconfig file.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
}

