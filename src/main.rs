//! `dualstack`: a thin CLI over the harness: parses flags, wires the session to the reporter and
//! maps outcomes to exit codes (src/exit.rs).
#![forbid(unsafe_code)]

mod cli;
mod embedded;
mod exit;
mod signals;

use clap::{CommandFactory, FromArgMatches};
use cli::{CheckArgs, Cli, ClusterCommand, Command, ListArgs, ReportCommand, RunArgs, SelectionArgs, UpArgs};
use harness::load_balancer::LoadBalancer;
use harness::network_policy::PolicyAgent;
use harness::cluster::{self, KindCluster};
use harness::kind::{ClusterFiles, ClusterSpec};
use harness::plan::{Plan, Target};
use harness::runner::RunOptions;
use harness::cni::{CniInstall, CniManifests};
use harness::session::{Clusters, Ended, Session};
use harness::table::{Selection, Tables};
use harness::{Error, Mode};
use reports::console::Verbosity;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    // `--version` names what a run is made of: the tool, and the Kubernetes and kind it builds.
    let version = format!(
        "{} (Kubernetes {}, kind {})",
        env!("CARGO_PKG_VERSION"),
        harness::machine::kubernetes_version(),
        harness::machine::pinned_version("KIND_VERSION").unwrap_or("unknown")
    );
    // clap takes a 'static version text; this one string lives as long as the process anyway.
    let matches = Cli::command().version(&*Box::leak(version.into_boxed_str())).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(cli)).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            exit::of(&e)
        }),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::ENVIRONMENT
        }
    };
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Result<u8, Error> {
    let verbosity = if cli.quiet { Verbosity::Quiet } else if cli.verbose { Verbosity::Verbose } else { Verbosity::Normal };
    match cli.command {
        Command::Prepare(args) => prepare(args.node_source.into()).await,
        Command::Cluster(ClusterCommand::Up(args)) => cluster_up(args).await,
        Command::Cluster(ClusterCommand::Down { name }) => {
            cluster::destroy_existing(&ClusterFiles::new(&name)?).await?;
            println!("deleted cluster {name}");
            Ok(exit::OK)
        }
        Command::Cluster(ClusterCommand::Convert { name, to }) => {
            let (conversion, timings) = harness::convert::convert_created(&ClusterFiles::new(&name)?, parse_mode(&to)?).await?;
            println!("converted cluster {name} ({conversion}) in {timings}");
            Ok(exit::OK)
        }
        Command::Cluster(ClusterCommand::Check(args)) => cluster_check(args).await,
        Command::Run(args) => run_suites(*args, verbosity).await,
        Command::List(args) => list(args),
        Command::Report(ReportCommand::Merge { dirs, out }) => {
            let merged = reports::merge::merge_dirs(&dirs).map_err(|e| Error::Usage(e.to_string()))?;
            write_reports(&merged, &out)?;
            Ok(exit::of_verdict(merged.passed()))
        }
    }
}

fn parse_mode(text: &str) -> Result<Mode, Error> {
    text.parse().map_err(|e: harness::mode::UnknownMode| Error::Usage(e.to_string()))
}

/// `--mode` values, `all` standing for the four, each mode once.
fn parse_modes(names: &[String]) -> Result<Vec<Mode>, Error> {
    let mut modes = Vec::new();
    for name in names {
        let named = if name == "all" { Mode::ALL.to_vec() } else { vec![parse_mode(name)?] };
        modes.extend(named.into_iter().filter(|m| !modes.contains(m)).collect::<Vec<_>>());
    }
    Ok(modes)
}

/// The built-in tables plus the vendor's, keeping the suites asked for, and the selection flags.
fn load(selection: &SelectionArgs) -> Result<(Tables, Selection), Error> {
    let builtin = embedded::source_root()?.join("suites");
    let dirs: Vec<PathBuf> = std::iter::once(builtin).chain(selection.suite_dirs.iter().cloned()).collect();
    let mut tables = harness::table::load_dirs(&dirs)?;
    tables.retain_suites(&selection.suites).map_err(Error::Usage)?;
    Ok((tables, Selection::new(&selection.filter, &selection.skip, selection.shard.as_deref())?))
}

/// `list`: the plan a `run` of the same flags would execute on clusters the harness creates.
fn list(args: ListArgs) -> Result<u8, Error> {
    let modes = match &args.mode {
        Some(m) => vec![parse_mode(m)?],
        None => Mode::ALL.to_vec(),
    };
    let (tables, selection) = load(&args.selection)?;
    let targets: Vec<Target> = modes.into_iter().map(|mode| Target { mode, nodes: ClusterSpec { workers: args.shape.workers, ..ClusterSpec::new(mode) }.node_labels(), created: true }).collect();
    print!("{}", Plan::build(&tables, &selection, &targets, None).render());
    Ok(exit::OK)
}

/// Fails early (bad input) when the report directory cannot be written.
fn check_report_dir(dir: &Path) -> Result<(), Error> {
    let probe = dir.join(".dualstack-write-test");
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b""))
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| Error::Usage(format!("report dir {}: cannot write: {e}", dir.display())))
}

fn write_reports(report: &reports::Report, dir: &Path) -> Result<(), Error> {
    check_report_dir(dir)?;
    reports::write_all(report, dir).map_err(Error::io(format!("writing reports to {}", dir.display())))?;
    print!("{}", reports::console::summary(report));
    Ok(())
}

/// Writes the reports of a run that could not start: a setup error per mode. Hands `error` back.
fn report_setup_failure(modes: &[Mode], phase: &str, error: Error, dir: &Path, verbosity: Verbosity) -> Error {
    let reporter = reports::Reporter::new(verbosity);
    for mode in modes {
        reporter.write_event(reports::Event::SetupFailed { mode: mode.name().into(), phase: phase.into(), message: error.to_string() });
    }
    if let Err(e) = write_reports(&reporter.finish(), dir) {
        eprintln!("warning: {e}");
    }
    error
}

async fn run_suites(args: RunArgs, verbosity: Verbosity) -> Result<u8, Error> {
    let modes = parse_modes(&args.modes)?;
    let judge_as = args.judge_as.as_deref().map(parse_mode).transpose()?;
    let (tables, selection) = load(&args.selection)?;
    check_report_dir(&args.report_dir)?;
    let clusters = match &args.kubeconfig {
        Some(kubeconfig) if modes.len() > 1 => {
            return Err(Error::Usage(format!("--kubeconfig {} is one cluster of one mode; give one --mode", kubeconfig.display())));
        }
        Some(kubeconfig) => {
            match cluster::check_kubeconfig(kubeconfig, args.context.as_deref()).await {
                // The cluster is down, not the input bad: CI still gets a report that says so.
                Err(e @ Error::Unreachable { .. }) => return Err(report_setup_failure(&modes, "connect", e, &args.report_dir, verbosity)),
                checked => checked?,
            }
            Clusters::Existing { kubeconfig: kubeconfig.clone(), context: args.context.clone() }
        }
        None => {
            let cni = match (args.cni_manifest.as_slice(), &args.cni_install_cmd) {
                ([], Some(command)) => CniInstall::Command(command.clone()),
                ([], None) => CniInstall::Default,
                (values, _) => {
                    let manifests = CniManifests::parse(values)?;
                    manifests.check(&modes)?;
                    CniInstall::Manifests(manifests)
                }
            };
            let images = args.images.images();
            harness::cni::check_images(&images).await?;
            let network_policy = args.network_policy.unwrap_or(PolicyAgent::default_for(cni == CniInstall::Default));
            Clusters::Kind { cni, images, workers: args.shape.workers, kube_proxy: args.kube_proxy, load_balancer: args.load_balancer, network_policy, keep: args.keep, node_image: args.node_image.clone(), ready_timeout: Duration::from_secs(args.ready_timeout) }
        }
    };
    if matches!(clusters, Clusters::Kind { .. }) && args.node_image.is_none() && !harness::prepare::machine_is_prepared().await {
        println!("this machine lacks Docker, kind or the node image: running `dualstack prepare` first");
        if prepare(harness::prepare::NodeSource::Auto).await? != exit::OK {
            return Err(Error::Environment("`dualstack prepare` failed; see the step it names".into()));
        }
    }
    let session = Session { modes, clusters, jobs: args.jobs };
    let plan = Plan::build(&tables, &selection, &session.targets().await?, judge_as);
    let options = RunOptions {
        concurrency: args.concurrency,
        case_timeout: Duration::from_secs(args.case_timeout),
        judge_as,
        after_fixture_hook: args.after_fixture_hook.clone(),
    };
    let reporter = reports::Reporter::new(verbosity);
    let emit = |event| reporter.write_event(event);
    let started = Instant::now();
    let ended = session.run(&tables, &plan, &options, &emit, signals::interrupted()).await;
    emit(reports::Event::RunFinished { duration: started.elapsed() });
    let report = reporter.finish();
    write_reports(&report, &args.report_dir)?;
    println!("reports: {}/{{junit.xml,results.json,summary.md}}  ({:.1}s)", args.report_dir.display(), started.elapsed().as_secs_f64());
    match ended {
        Ended::Interrupted(code) => Ok(code),
        // A mode that could not run is a setup failure, whatever the other modes found.
        Ended::Finished(outcomes) => match outcomes.into_iter().find_map(|(mode, o)| o.err().map(|stopped| (mode, stopped.error))) {
            Some((mode, e)) => {
                eprintln!("error: [{mode}] {e}");
                Ok(exit::of(&e))
            }
            None => Ok(exit::of_verdict(report.passed())),
        },
    }
}

async fn prepare(node_source: harness::prepare::NodeSource) -> Result<u8, Error> {
    Ok(if harness::prepare::prepare(node_source, &embedded::source_root()?.join("fixtures")).await? { exit::OK } else { exit::ENVIRONMENT })
}

async fn cluster_up(args: UpArgs) -> Result<u8, Error> {
    let mode = parse_mode(&args.mode)?;
    let name = args.name.unwrap_or_else(|| harness::kind::unique_cluster_name(mode));
    let files = ClusterFiles::new(&name)?;
    let spec = ClusterSpec { mode, workers: args.shape.workers, default_cni: !args.no_default_cni, kube_proxy: args.kube_proxy };
    let images = args.images.images();
    harness::cni::check_images(&images).await?;
    println!("creating {mode} cluster {name} ({} nodes)", spec.node_count());
    let started = Instant::now();
    let up = KindCluster::up(&name, spec, args.node_image, Duration::from_secs(args.ready_timeout));
    tokio::select! {
        result = up => {
            let (cluster, timings) = result?;
            if !images.is_empty() {
                let loading = Instant::now();
                if let Err(e) = harness::cni::load_images(&harness::kind::Kind::locate()?, &cluster.files, &images).await {
                    // `cluster up` leaves a whole cluster or none.
                    cluster::destroy(&files).await?;
                    return Err(e);
                }
                println!("loaded into every node in {:.1}s: {}", loading.elapsed().as_secs_f64(), images.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
            }
            if !cluster.spec.default_cni {
                // Without a CNI the nodes stay NotReady: the cluster is up, not ready.
                println!(
                    "cluster {name} created in {:.1}s ({} nodes registered, NotReady until a CNI is installed), node image {}",
                    started.elapsed().as_secs_f64(), cluster.spec.node_count(), cluster.node_image
                );
            } else {
                if args.load_balancer == LoadBalancer::Metallb {
                    let installing = Instant::now();
                    match harness::load_balancer::install(&cluster.client, &files, mode, Duration::from_secs(args.ready_timeout)).await {
                        Ok(installed) => println!("load balancer ready in {:.1}s: {installed}", installing.elapsed().as_secs_f64()),
                        Err(e) => {
                            cluster::destroy(&files).await?;
                            return Err(e);
                        }
                    }
                }
                if args.network_policy == PolicyAgent::KubeNetworkPolicies {
                    let installing = Instant::now();
                    match harness::network_policy::install(&cluster.client, &files, Duration::from_secs(args.ready_timeout)).await {
                        Ok(installed) => println!("NetworkPolicy agent ready in {:.1}s: {installed}", installing.elapsed().as_secs_f64()),
                        Err(e) => {
                            cluster::destroy(&files).await?;
                            return Err(e);
                        }
                    }
                }
                let dns_started = Instant::now();
                cluster::wait_cluster_dns(&cluster.client, Duration::from_secs(args.ready_timeout)).await?;
                println!(
                    "cluster {name} ready in {:.1}s (create {:.1}s, nodes Ready {:.1}s, cluster DNS {:.1}s), node image {}",
                    started.elapsed().as_secs_f64(), timings.create.as_secs_f64(), timings.ready.as_secs_f64(),
                    dns_started.elapsed().as_secs_f64(), cluster.node_image
                );
            }
            println!("kubeconfig: {}", cluster.files.kubeconfig.display());
            println!("context:    kind-{name}");
            println!("use:        export KUBECONFIG={}", cluster.files.kubeconfig.display());
            Ok(exit::OK)
        }
        code = signals::interrupted() => {
            eprintln!("deleting cluster {name}");
            cluster::destroy(&files).await?;
            Ok(code)
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
    println!("{} checks, {} passed, {failed} failed in {:.1}s [{mode}]", checks.len(), checks.len() - failed, started.elapsed().as_secs_f64());
    Ok(exit::of_verdict(failed == 0))
}
