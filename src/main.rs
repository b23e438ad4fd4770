//! `dualstack`: a thin CLI over the harness. Exit codes are decided here and only here.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use harness::cluster::{self, KindCluster};
use harness::kind::{ClusterFiles, ClusterSpec};
use harness::runner::{self, Plan, RunOptions, Selection, plan};
use harness::scenario::Tables;
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
    pub const TERMINATED: u8 = 143;
}

const EXIT_CODES_HELP: &str = "Exit codes: 0 all passed, 1 conformance failures, 2 bad input or usage, \
3 environment or setup failure, 130 interrupted (143 on SIGTERM).";

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
    /// Run the scenario tables against a cluster (created for the run, or --kubeconfig).
    #[command(after_help = "Examples:\n  dualstack run --mode dual --report-dir reports-out\n  \
dualstack run --mode ipv6 --kubeconfig ~/.kube/config --filter 'S1*' --report-dir out")]
    Run(RunArgs),
    /// List every scenario id x mode that would run, and why any is skipped.
    #[command(after_help = "Example: dualstack list --mode ipv4 --skip 'U*'")]
    List(ListArgs),
}

#[derive(Args, Clone)]
struct SelectionArgs {
    /// Run only this suite (repeatable): services, dataplane, or a vendor suite. Default: all.
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// Extra directory of scenario tables (repeatable), added to the built-in suites/.
    #[arg(long = "suite-dir")]
    suite_dirs: Vec<PathBuf>,
    /// Run only scenarios whose ID or SUITE/ID matches this glob (repeatable).
    #[arg(long)]
    filter: Vec<String>,
    /// Skip scenarios whose ID or SUITE/ID matches this glob (repeatable).
    #[arg(long)]
    skip: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// ipv4, ipv6, dual (IPv4 primary) or dual-ipv6-primary.
    #[arg(long)]
    mode: String,
    /// Run against this cluster instead of creating one; its real mode must match --mode.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, requires = "kubeconfig")]
    context: Option<String>,
    /// Where junit.xml goes.
    #[arg(long, default_value = "dualstack-reports")]
    report_dir: PathBuf,
    /// Keep the cluster the run created.
    #[arg(long)]
    keep: bool,
    /// Scenarios in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds one scenario may take.
    #[arg(long, default_value_t = 30)]
    case_timeout: u64,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Test-only: judge with the expectations of this mode (proves verdicts follow the tables).
    #[arg(long, hide = true)]
    judge_as: Option<String>,
    /// Test-only: a shell command run once the data-plane fixture is ready (fault injection).
    #[arg(long, hide = true)]
    after_fixture_hook: Option<String>,
}

#[derive(Args)]
struct ListArgs {
    /// Only this mode (default: all four).
    #[arg(long)]
    mode: Option<String>,
    #[command(flatten)]
    selection: SelectionArgs,
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
        Error::Interrupted => exit::INTERRUPTED,
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
        Command::Run(args) => run_suites(args).await,
        Command::List(args) => list(args),
    }
}

fn suites_dir() -> PathBuf {
    std::env::var_os("DUALSTACK_SUITES").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites"), PathBuf::from)
}

/// Loads the built-in tables plus the vendor's, keeping the suites asked for; any table error is
/// a usage error naming file:line.
fn load_scenarios(selection: &SelectionArgs) -> Result<(Tables, Selection), Error> {
    let mut dirs = vec![suites_dir()];
    dirs.extend(selection.suite_dirs.iter().cloned());
    let mut tables = harness::scenario::load_dirs(&dirs).map_err(|e| Error::Usage(e.to_string()))?;
    if !selection.suites.is_empty() {
        let known: Vec<&str> = tables.services.iter().map(|s| s.suite.as_str()).chain(tables.dataplane.iter().map(|r| r.suite.as_str())).collect();
        if let Some(unknown) = selection.suites.iter().find(|s| !known.contains(&s.as_str())) {
            return Err(Error::Usage(format!("--suite {unknown}: no such suite (have: {})", {
                let mut k = known.clone();
                k.dedup();
                k.join(", ")
            })));
        }
        tables.services.retain(|s| selection.suites.contains(&s.suite));
        tables.dataplane.retain(|r| selection.suites.contains(&r.suite));
    }
    let selection = Selection::new(&selection.filter, &selection.skip)?;
    Ok((tables, selection))
}

fn list(args: ListArgs) -> Result<u8, Error> {
    let modes = match &args.mode {
        Some(m) => vec![parse_mode(m)?],
        None => Mode::ALL.to_vec(),
    };
    let (tables, selection) = load_scenarios(&args.selection)?;
    let (mut run, mut skipped) = (0, 0);
    for mode in &modes {
        for row in &tables.dataplane {
            let reason = if row.modes.contains(mode) { selection.excludes_id(&row.suite, &row.id) } else { Some("does not apply".into()) };
            match reason {
                None => {
                    run += mode.families().len();
                    let actions: Vec<String> = mode.families().iter().map(|f| format!("{}/{}", row.id, f.slug())).collect();
                    println!("run  {}/{:<14} [{mode}] {} ({})", row.suite, row.id, row.title, actions.join(", "));
                }
                Some(reason) => {
                    skipped += 1;
                    println!("skip {}/{:<14} [{mode}] {reason}", row.suite, row.id);
                }
            }
        }
        for scenario in &tables.services {
            match plan(scenario, *mode, &selection) {
                Plan::Run => {
                    run += 1;
                    println!("run  {}/{:<14} [{mode}] {}", scenario.suite, scenario.id, scenario.title);
                }
                Plan::Skip(reason) => {
                    skipped += 1;
                    println!("skip {}/{:<14} [{mode}] {reason}", scenario.suite, scenario.id);
                }
            }
        }
    }
    println!(
        "{run} to run, {skipped} skipped; {} Service scenarios and {} data-plane rows in the tables",
        tables.services.len(),
        tables.dataplane.len()
    );
    Ok(exit::OK)
}

/// Fails early (usage) when the report directory cannot be written.
fn check_report_dir(dir: &std::path::Path) -> Result<(), Error> {
    let probe = dir.join(".dualstack-write-test");
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b""))
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| Error::Usage(format!("report dir {}: cannot write: {e}", dir.display())))
}

async fn run_suites(args: RunArgs) -> Result<u8, Error> {
    let mode = parse_mode(&args.mode)?;
    let judge_as = args.judge_as.as_deref().map(parse_mode).transpose()?;
    let (tables, selection) = load_scenarios(&args.selection)?;
    check_report_dir(&args.report_dir)?;
    let options = RunOptions {
        concurrency: args.concurrency,
        case_timeout: Duration::from_secs(args.case_timeout),
        selection,
        judge_as,
    };
    let report = std::sync::Mutex::new(reports::Report::default());
    let emit = |event: reports::Event| {
        if let Some(line) = reports::console::line(&event) {
            println!("{line}");
        }
        if let Ok(mut r) = report.lock() {
            r.record(&event);
        }
    };
    let started = Instant::now();
    let mut interrupt_code = exit::INTERRUPTED;
    let outcome = tokio::select! {
        outcome = run_mode(&args, mode, &tables, &options, &emit) => outcome,
        code = interrupted() => {
            interrupt_code = code;
            Err(Error::Interrupted)
        }
    };
    match &outcome {
        Err(Error::Interrupted) => {
            // Every case that was planned and has no result yet is reported as interrupted.
            let finished: std::collections::BTreeSet<(String, String)> = report
                .lock()
                .map(|r| r.cases.iter().map(|c| (c.suite.clone(), c.id.clone())).collect())
                .unwrap_or_default();
            let unfinished = |suite: &str, id: &str| !finished.contains(&(suite.to_string(), id.to_string()));
            for s in tables.services.iter().filter(|s| plan(s, mode, &options.selection) == Plan::Run && unfinished(&s.suite, &s.id)) {
                emit(reports::Event::CaseFinished(interrupted_case(&s.suite, &s.group, &s.id, &s.title, mode)));
            }
            for row in tables.dataplane.iter().filter(|r| r.modes.contains(&mode)) {
                for family in mode.families() {
                    let id = format!("{}/{}", row.id, family.slug());
                    if unfinished(&row.suite, &id) {
                        emit(reports::Event::CaseFinished(interrupted_case(&row.suite, &row.group, &id, &row.title, mode)));
                    }
                }
            }
        }
        Err(e) => emit(reports::Event::SetupFailed { mode: mode.name().into(), phase: phase_of(e).into(), message: e.to_string() }),
        Ok(()) => {}
    }
    emit(reports::Event::ModeFinished { mode: mode.name().into(), duration: started.elapsed() });
    let report = report.into_inner().unwrap_or_default();
    reports::write_all(&report, &args.report_dir).map_err(Error::io(format!("writing reports to {}", args.report_dir.display())))?;
    print!("{}", reports::console::summary(&report));
    println!(
        "reports: {}/{{junit.xml,results.json,summary.md}}  ({:.1}s)",
        args.report_dir.display(),
        started.elapsed().as_secs_f64()
    );
    match outcome {
        Err(Error::Interrupted) => Ok(interrupt_code),
        Err(e) => Err(e),
        Ok(()) if report.passed() => Ok(exit::OK),
        Ok(()) => Ok(exit::CONFORMANCE_FAILURES),
    }
}

fn interrupted_case(suite: &str, group: &str, id: &str, title: &str, mode: Mode) -> reports::CaseResult {
    reports::CaseResult {
        suite: suite.into(),
        group: group.into(),
        id: id.into(),
        title: title.into(),
        mode: mode.name().into(),
        status: reports::Status::Error,
        duration: Duration::ZERO,
        expected: "the case finishes".into(),
        actual: "interrupted".into(),
        message: "interrupted".into(),
        diagnostics: String::new(),
    }
}

/// Waits for Ctrl-C or SIGTERM; returns the exit code (130 or 143). A second signal, while the run
/// is cleaning up, ends the process at once.
async fn interrupted() -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    let code = tokio::select! {
        _ = int.recv() => exit::INTERRUPTED,
        _ = term.recv() => exit::TERMINATED,
    };
    eprintln!("interrupted: cleaning up (interrupt again to stop at once)");
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        let left = std::fs::read_dir(std::env::temp_dir().join("dualstack/clusters"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        eprintln!("stopped at once; clusters possibly left behind: [{left}] (remove with `dualstack cluster down --name NAME`)");
        std::process::exit(i32::from(code));
    });
    code
}

fn phase_of(error: &Error) -> &'static str {
    match error {
        Error::ClusterCreate { .. } | Error::Timeout { .. } => "create",
        Error::Interrupted => "interrupted",
        _ => "setup",
    }
}

/// One mode: the cluster (given or created), its detected facts, the suites, then cleanup.
async fn run_mode(
    args: &RunArgs,
    mode: Mode,
    tables: &Tables,
    options: &RunOptions,
    emit: &(dyn Fn(reports::Event) + Sync),
) -> Result<(), Error> {
    let hook = args.after_fixture_hook.as_deref();
    if let Some(path) = &args.kubeconfig {
        let client = cluster::client_from_kubeconfig(path, args.context.as_deref()).await?;
        return run_on(&client, mode, tables, options, hook, emit).await;
    }
    let name = harness::kind::unique_cluster_name(mode);
    let files = ClusterFiles::new(&name)?;
    let created = KindCluster::up(&name, ClusterSpec::new(mode), None, Duration::from_secs(180));
    // Whatever happens next (failure or Ctrl-C dropping this future), the cluster goes away.
    let guard = ClusterGuard { files: files.clone(), keep: args.keep };
    let (cluster, timings) = created.await?;
    println!(
        "[{mode}] phase create: {:.1}s (kind {:.1}s, Ready + CoreDNS {:.1}s), cluster {name}",
        (timings.create + timings.ready).as_secs_f64(),
        timings.create.as_secs_f64(),
        timings.ready.as_secs_f64()
    );
    let outcome = run_on(&cluster.client, mode, tables, options, hook, emit).await;
    if args.keep {
        println!("kept cluster {name}; kubeconfig {}", files.kubeconfig.display());
    }
    let deleting = Instant::now();
    guard.finish().await;
    if !args.keep {
        println!("[{mode}] phase delete: {:.1}s", deleting.elapsed().as_secs_f64());
    }
    outcome
}

/// Deletes a created cluster on every path out of `run_mode`, including an interrupt.
struct ClusterGuard {
    files: ClusterFiles,
    keep: bool,
}

impl ClusterGuard {
    async fn finish(self) {
        if !self.keep {
            if let Err(e) = cluster::destroy(&self.files).await {
                eprintln!("warning: deleting cluster {}: {e}", self.files.name);
            }
        }
        std::mem::forget(self);
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Dropped without finish(): an error or an interrupt. Delete synchronously.
        let _ = std::process::Command::new(harness::kind::Kind::locate().map(|k| k.binary().to_path_buf()).unwrap_or_else(|_| "kind".into()))
            .args(["delete", "cluster", "--name", &self.files.name])
            .status();
        let _ = std::process::Command::new("docker").args(["network", "rm", &self.files.network]).output();
        let _ = self.files.remove_dir();
    }
}

async fn run_on(
    client: &kube::Client,
    mode: Mode,
    tables: &Tables,
    options: &RunOptions,
    after_fixture_hook: Option<&str>,
    emit: &(dyn Fn(reports::Event) + Sync),
) -> Result<(), Error> {
    let facts = harness::detect::detect(client).await?;
    if facts.mode != mode {
        return Err(Error::Environment(format!(
            "the cluster is {} (service ranges {:?}), not {mode} as requested; refusing to run",
            facts.mode, facts.service_cidrs
        )));
    }
    println!("[{mode}] cluster detected: {} service ranges {:?}, Kubernetes {}", facts.mode, facts.service_cidrs, facts.server_version);
    let services = tables.services.iter().filter(|s| plan(s, mode, &options.selection) == Plan::Run).count();
    let dataplane = tables.dataplane.iter().filter(|r| r.modes.contains(&mode)).count() * mode.families().len();
    emit(reports::Event::ModeStarted { mode: mode.name().into(), cases: services + dataplane });
    if !tables.services.is_empty() {
        let started = Instant::now();
        runner::run_services(client, &facts, &tables.services, options, emit).await;
        println!("[{mode}] phase services: {:.1}s", started.elapsed().as_secs_f64());
    }
    if !tables.dataplane.is_empty() {
        let started = Instant::now();
        harness::dataplane::run_dataplane(client, mode, &tables.dataplane, &options.selection, Duration::from_secs(90), after_fixture_hook, emit)
            .await?;
        println!("[{mode}] phase dataplane: {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(())
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
        code = interrupted() => {
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
    println!(
        "{} checks, {} passed, {failed} failed in {:.1}s [{mode}]",
        checks.len(),
        checks.len() - failed,
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 { exit::OK } else { exit::CONFORMANCE_FAILURES })
}
