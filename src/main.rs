//! `dualstack`: a thin CLI over the harness. Exit codes are decided here and only here.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use harness::cluster::{self, KindCluster};
use harness::kind::{ClusterFiles, ClusterSpec};
use harness::{Error, Mode};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit codes, documented in the README and in `--help`.
mod exit {
    pub const OK: u8 = 0;
    pub const CONFORMANCE_FAILURES: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ENVIRONMENT: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES_HELP: &str = "Exit codes: 0 all passed, 1 conformance failures, 2 bad input or usage, \
3 environment or setup failure, 130 interrupted.";

#[derive(Parser)]
#[command(name = "dualstack", version, about = "Conformance suite for Kubernetes IPv4/IPv6 dual-stack networking",
    after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare this machine: Docker engine, kind, and an offline KIND node image (idempotent, cached).
    #[command(after_help = "Example: dualstack prepare\nCaches live in $DUALSTACK_CACHE (default /var/cache/dualstack).")]
    Prepare,
    /// Create, check and delete KIND clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Create a KIND cluster in MODE and wait until nodes are Ready and CoreDNS is available.
    #[command(after_help = "Example: dualstack cluster up --mode dual --name my-dual")]
    Up(UpArgs),
    /// Delete a cluster created by `cluster up`, with its docker network and files.
    #[command(after_help = "Example: dualstack cluster down --name my-dual")]
    Down {
        #[arg(long)]
        name: String,
    },
    /// Verify a cluster's addressing, DNS and cross-node traffic for every family of MODE.
    #[command(after_help = "Example: dualstack cluster check --mode dual --name my-dual")]
    Check(CheckArgs),
}

#[derive(Args)]
struct UpArgs {
    /// ipv4, ipv6, dual (IPv4 primary) or dual-ipv6-primary.
    #[arg(long)]
    mode: String,
    /// Cluster name; a unique one is generated when absent.
    #[arg(long)]
    name: Option<String>,
    /// Node image; default: the offline image from `dualstack prepare` if present, else kindest/node.
    #[arg(long)]
    node_image: Option<String>,
    /// Do not install the default CNI (install your own; nodes stay NotReady until then).
    #[arg(long)]
    no_default_cni: bool,
    /// Worker nodes besides the control-plane.
    #[arg(long, default_value_t = 1)]
    workers: u8,
    /// Seconds to wait for nodes Ready and CoreDNS available.
    #[arg(long, default_value_t = 180)]
    ready_timeout: u64,
}

#[derive(Args)]
struct CheckArgs {
    /// The mode the cluster is expected to be in.
    #[arg(long)]
    mode: String,
    /// A cluster created by `cluster up`.
    #[arg(long, conflicts_with = "kubeconfig", required_unless_present = "kubeconfig")]
    name: Option<String>,
    /// Any cluster, by kubeconfig file.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, requires = "kubeconfig")]
    context: Option<String>,
}

fn parse_mode(text: &str) -> Result<Mode, Error> {
    text.parse().map_err(|e: harness::mode::UnknownMode| Error::Usage(e.to_string()))
}

fn exit_code(error: &Error) -> u8 {
    match error {
        Error::Usage(_) | Error::Kubeconfig { .. } => exit::USAGE,
        _ => exit::ENVIRONMENT,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ENVIRONMENT);
        }
    };
    let code = runtime.block_on(async {
        match run(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                exit_code(&e)
            }
        }
    });
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Prepare => prepare().await,
        Command::Cluster(ClusterCommand::Up(args)) => cluster_up(args).await,
        Command::Cluster(ClusterCommand::Down { name }) => {
            let files = ClusterFiles::new(&name)?;
            cluster::destroy(&files).await?;
            println!("deleted cluster {name}");
            Ok(exit::OK)
        }
        Command::Cluster(ClusterCommand::Check(args)) => cluster_check(args).await,
    }
}

fn fixtures_dir() -> PathBuf {
    std::env::var_os("DUALSTACK_FIXTURES")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"), PathBuf::from)
}

async fn prepare() -> Result<u8, Error> {
    let script = fixtures_dir().join("offline/prepare.sh");
    if !script.is_file() {
        return Err(Error::Environment(format!(
            "{} not found; set DUALSTACK_FIXTURES to the fixtures/ directory of a dualstack checkout",
            script.display()
        )));
    }
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .status()
        .await
        .map_err(Error::io(format!("running {}", script.display())))?;
    Ok(if status.success() { exit::OK } else { exit::ENVIRONMENT })
}

async fn cluster_up(args: UpArgs) -> Result<u8, Error> {
    let mode = parse_mode(&args.mode)?;
    let name = args.name.unwrap_or_else(|| harness::kind::unique_cluster_name(mode));
    let files = ClusterFiles::new(&name)?;
    let spec = ClusterSpec { mode, workers: args.workers, default_cni: !args.no_default_cni };
    println!("creating {mode} cluster {name} ({} nodes)", spec.node_count());
    let started = Instant::now();
    let up = KindCluster::up(&name, spec, args.node_image, Duration::from_secs(args.ready_timeout));
    tokio::select! {
        result = up => {
            let (cluster, timings) = result?;
            println!(
                "cluster {name} ready in {:.1}s (create {:.1}s, nodes Ready + CoreDNS {:.1}s), node image {}",
                started.elapsed().as_secs_f64(), timings.create.as_secs_f64(), timings.ready.as_secs_f64(), cluster.node_image
            );
            println!("kubeconfig: {}", cluster.files.kubeconfig.display());
            println!("context:    kind-{name}");
            println!("use:        export KUBECONFIG={}", cluster.files.kubeconfig.display());
            Ok(exit::OK)
        }
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: deleting cluster {name}");
            cluster::destroy(&files).await?;
            Ok(exit::INTERRUPTED)
        }
    }
}

async fn cluster_check(args: CheckArgs) -> Result<u8, Error> {
    let mode = parse_mode(&args.mode)?;
    let (kubeconfig, context) = match (&args.name, args.kubeconfig) {
        (Some(name), _) => (ClusterFiles::new(name)?.kubeconfig, None),
        (None, Some(path)) => (path, args.context),
        (None, None) => return Err(Error::Usage("give --name or --kubeconfig".into())),
    };
    let client = cluster::client_from_kubeconfig(&kubeconfig, context.as_deref()).await?;
    let started = Instant::now();
    let checks = harness::verify::verify_cluster(&client, mode).await?;
    let failed = checks.iter().filter(|c| !c.passed).count();
    for check in &checks {
        println!("{} {:<48} {}", if check.passed { "PASS" } else { "FAIL" }, check.name, check.detail);
    }
    println!(
        "{} checks, {} passed, {failed} failed in {:.1}s [{mode}]",
        checks.len(),
        checks.len() - failed,
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 { exit::OK } else { exit::CONFORMANCE_FAILURES })
}
