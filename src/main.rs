//! `dualstack`: a thin CLI over the harness. Exit codes are decided here and only here.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use harness::cluster::{self, KindCluster};
use harness::kind::{ClusterFiles, ClusterSpec};
use harness::runner::{Plan, RunOptions, Selection, plan};
use harness::session::{self, Clusters, CniInstall, Session};
use harness::scenario::Tables;
use harness::{Error, Mode};
use reports::console::{Console, Verbosity};
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
    /// Print every case as it finishes, passed ones included.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,
    /// Print only failures and the summary.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare this machine: Docker engine, kind, the probe image and a KIND node image (idempotent, cached).
    #[command(after_help = "Examples:\n  dualstack prepare\n  dualstack prepare --node-source build\n\
Caches live in $DUALSTACK_CACHE (default /var/cache/dualstack for root, else ~/.cache/dualstack).")]
    Prepare(PrepareArgs),
    /// Create, check and delete KIND clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run the scenario tables against a cluster (created for the run, or --kubeconfig).
    #[command(after_help = "Examples:\n  dualstack run --mode all --report-dir reports-out\n  \
dualstack run --mode ipv6 --kubeconfig ~/.kube/config --filter 'S1*' --report-dir out\n  \
dualstack run --mode dual --cni-manifest my-cni.yaml --suite dataplane\n\n\
Exit codes: 0 all passed, 1 conformance failures, 2 bad input or usage, 3 environment or setup failure, \
130 interrupted (143 on SIGTERM).")]
    Run(Box<RunArgs>),
    /// Work with report directories.
    #[command(subcommand)]
    Report(ReportCommand),
    /// List every scenario id x mode that would run, and why any is skipped.
    #[command(after_help = "Example: dualstack list --mode ipv4 --skip 'U*'")]
    List(ListArgs),
}

#[derive(Args)]
struct PrepareArgs {
    /// Where the node image comes from: `auto` keeps a node image built here before, else pulls
    /// kindest/node where a registry answers, else builds one offline; `pull` fails when the pull
    /// fails; `build` never pulls.
    #[arg(long, value_enum, default_value_t = NodeSource::Auto)]
    node_source: NodeSource,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NodeSource {
    Auto,
    Pull,
    Build,
}

impl NodeSource {
    /// The value of `DUALSTACK_NODE_SOURCE`, through which prepare.sh takes it.
    fn as_env(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Pull => "pull",
            Self::Build => "build",
        }
    }
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
    /// Only this job's share of the rows: INDEX/COUNT, e.g. 1/2 (merge with `dualstack report merge`).
    #[arg(long)]
    shard: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// ipv4, ipv6, dual (IPv4 primary), dual-ipv6-primary, or all (repeatable).
    #[arg(long = "mode", default_value = "all")]
    modes: Vec<String>,
    /// Run against this cluster instead of creating one; its real mode must match --mode.
    #[arg(long, conflicts_with_all = ["cni_manifest", "cni_install_cmd", "keep", "node_image"])]
    kubeconfig: Option<PathBuf>,
    #[arg(long, requires = "kubeconfig")]
    context: Option<String>,
    /// Create clusters without the default CNI and apply this manifest (kubectl apply -f).
    #[arg(long, conflicts_with = "cni_install_cmd")]
    cni_manifest: Option<PathBuf>,
    /// Create clusters without the default CNI and run this shell command (KUBECONFIG is set).
    #[arg(long)]
    cni_install_cmd: Option<String>,
    /// Node image for created clusters (default: the prepared offline image, else kindest/node).
    #[arg(long)]
    node_image: Option<String>,
    /// Where junit.xml, results.json and summary.md go.
    #[arg(long, default_value = "dualstack-reports")]
    report_dir: PathBuf,
    /// Keep the clusters the run created.
    #[arg(long)]
    keep: bool,
    /// Modes run at once, each on its own cluster. Default 2: measured on 2 cores, `--mode all`
    /// took 166 s with 2 at once against 254 s one after another.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Scenarios in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds one scenario may take.
    #[arg(long, default_value_t = 30)]
    case_timeout: u64,
    /// Seconds to wait for nodes Ready and CoreDNS available after create (and after a CNI install).
    #[arg(long, default_value_t = 180)]
    ready_timeout: u64,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Test-only: judge with the expectations of this mode (proves verdicts follow the tables).
    #[arg(long, hide = true)]
    judge_as: Option<String>,
    /// Test-only: a shell command run once the data-plane fixture is ready (fault injection).
    #[arg(long, hide = true)]
    after_fixture_hook: Option<String>,
}

#[derive(Subcommand)]
enum ReportCommand {
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
    let verbosity = if cli.quiet { Verbosity::Quiet } else if cli.verbose { Verbosity::Verbose } else { Verbosity::Normal };
    match cli.command {
        Command::Prepare(args) => prepare(args.node_source).await,
        Command::Cluster(ClusterCommand::Up(args)) => cluster_up(args).await,
        Command::Cluster(ClusterCommand::Down { name }) => {
            let files = ClusterFiles::new(&name)?;
            cluster::destroy(&files).await?;
            println!("deleted cluster {name}");
            Ok(exit::OK)
        }
        Command::Cluster(ClusterCommand::Check(args)) => cluster_check(args).await,
        Command::Run(args) => run_suites(*args, verbosity).await,
        Command::List(args) => list(args),
        Command::Report(ReportCommand::Merge { dirs, out }) => merge_reports(&dirs, &out),
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
    let shard = selection.shard.as_deref().map(str::parse::<harness::runner::Shard>).transpose().map_err(Error::Usage)?;
    let selection = Selection::new(&selection.filter, &selection.skip)?.with_shard(shard);
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
        for row in tables.dataplane.iter().filter(|r| selection.in_shard(&r.suite, &r.id)) {
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
        for scenario in tables.services.iter().filter(|s| selection.in_shard(&s.suite, &s.id)) {
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

fn parse_modes(names: &[String]) -> Result<Vec<Mode>, Error> {
    let mut modes = Vec::new();
    for name in names {
        let add: Vec<Mode> = if name == "all" { Mode::ALL.to_vec() } else { vec![parse_mode(name)?] };
        for mode in add {
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
    }
    Ok(modes)
}

async fn run_suites(args: RunArgs, verbosity: Verbosity) -> Result<u8, Error> {
    let modes = parse_modes(&args.modes)?;
    let judge_as = args.judge_as.as_deref().map(parse_mode).transpose()?;
    let (tables, selection) = load_scenarios(&args.selection)?;
    check_report_dir(&args.report_dir)?;
    let clusters = match &args.kubeconfig {
        Some(kubeconfig) if modes.len() > 1 => {
            return Err(Error::Usage(format!("--kubeconfig {} is one cluster of one mode; give one --mode", kubeconfig.display())));
        }
        Some(kubeconfig) => {
            cluster::check_kubeconfig(kubeconfig, args.context.as_deref()).await?;
            Clusters::Existing { kubeconfig: kubeconfig.clone(), context: args.context.clone() }
        }
        None => {
            let cni = match (&args.cni_manifest, &args.cni_install_cmd) {
                (Some(file), _) => {
                    session::check_cni_manifest(file)?;
                    CniInstall::Manifest(file.clone())
                }
                (None, Some(command)) => CniInstall::Command(command.clone()),
                (None, None) => CniInstall::Default,
            };
            Clusters::Kind { cni, keep: args.keep, node_image: args.node_image.clone(), ready_timeout: Duration::from_secs(args.ready_timeout) }
        }
    };
    if matches!(clusters, Clusters::Kind { .. }) && args.node_image.is_none() && !machine_is_prepared().await {
        println!("this machine lacks Docker, kind or the node image: running `dualstack prepare` first");
        if prepare(NodeSource::Auto).await? != exit::OK {
            return Err(Error::Environment("`dualstack prepare` failed; see the step it names".into()));
        }
    }
    let session = Session { modes: modes.clone(), clusters, jobs: args.jobs, after_fixture_hook: args.after_fixture_hook.clone() };
    let options = RunOptions {
        concurrency: args.concurrency,
        case_timeout: Duration::from_secs(args.case_timeout),
        selection,
        judge_as,
    };
    let report = std::sync::Mutex::new(reports::Report::default());
    let console = Console::new(verbosity);
    let emit = |event: reports::Event| {
        console.on(&event);
        if let Ok(mut r) = report.lock() {
            r.record(&event);
        }
    };
    let started = Instant::now();
    let mut interrupt_code = None;
    let outcomes = tokio::select! {
        outcomes = session::run(&session, &tables, &options, &emit) => outcomes,
        code = interrupted() => {
            interrupt_code = Some(code);
            Vec::new()
        }
    };
    if interrupt_code.is_some() {
        // Every case that was planned and has no result yet is reported as interrupted.
        let finished: std::collections::BTreeSet<(String, String, String)> = report
            .lock()
            .map(|r| r.cases.iter().map(|c| (c.suite.clone(), c.id.clone(), c.mode.clone())).collect())
            .unwrap_or_default();
        for &mode in &modes {
            let unfinished = |suite: &str, id: &str| !finished.contains(&(suite.to_string(), id.to_string(), mode.name().to_string()));
            let mine = |suite: &str, id: &str| options.selection.in_shard(suite, id) && unfinished(suite, id);
            for s in tables.services.iter().filter(|s| plan(s, mode, &options.selection) == Plan::Run && mine(&s.suite, &s.id)) {
                emit(reports::Event::CaseFinished(interrupted_case(&s.suite, &s.group, &s.id, &s.title, mode)));
            }
            for row in tables.dataplane.iter().filter(|r| r.modes.contains(&mode) && options.selection.in_shard(&r.suite, &r.id)) {
                for family in mode.families() {
                    let id = format!("{}/{}", row.id, family.slug());
                    if unfinished(&row.suite, &id) {
                        emit(reports::Event::CaseFinished(interrupted_case(&row.suite, &row.group, &id, &row.title, mode)));
                    }
                }
            }
        }
    }
    console.finish();
    let report = report.into_inner().unwrap_or_default();
    reports::write_all(&report, &args.report_dir).map_err(Error::io(format!("writing reports to {}", args.report_dir.display())))?;
    print!("{}", reports::console::summary(&report));
    println!(
        "reports: {}/{{junit.xml,results.json,summary.md}}  ({:.1}s)",
        args.report_dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(code) = interrupt_code {
        return Ok(code);
    }
    // A mode that could not run is a setup failure (3), whatever the other modes found.
    if let Some((mode, Err(e))) = outcomes.into_iter().find(|(_, o)| o.is_err()) {
        eprintln!("error: [{mode}] {e}");
        return Ok(exit_code(&e));
    }
    Ok(if report.passed() { exit::OK } else { exit::CONFORMANCE_FAILURES })
}

fn merge_reports(dirs: &[PathBuf], out: &std::path::Path) -> Result<u8, Error> {
    let mut merged = reports::Report::default();
    let mut seen: std::collections::BTreeMap<(String, String), PathBuf> = std::collections::BTreeMap::new();
    for dir in dirs {
        let path = dir.join("results.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        let report = reports::json::from_json(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        for case in report.cases {
            let key = (case.name(), format!("{}.{}", case.suite, case.group));
            if let Some(first) = seen.insert(key.clone(), dir.clone()) {
                return Err(Error::Usage(format!("case '{}' is in both {} and {}", key.0, first.display(), dir.display())));
            }
            merged.cases.push(case);
        }
        merged.mode_durations.extend(report.mode_durations);
    }
    check_report_dir(out)?;
    reports::write_all(&merged, out).map_err(Error::io(format!("writing reports to {}", out.display())))?;
    print!("{}", reports::console::summary(&merged));
    Ok(if merged.passed() { exit::OK } else { exit::CONFORMANCE_FAILURES })
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
        retried: Vec::new(),
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

fn fixtures_dir() -> PathBuf {
    std::env::var_os("DUALSTACK_FIXTURES")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"), PathBuf::from)
}

/// Docker answers, kind is there, the probe image exists and so does a node image (built or pulled).
async fn machine_is_prepared() -> bool {
    harness::kind::require_docker().await.is_ok()
        && harness::kind::Kind::locate().is_ok()
        && cluster::prepared_node_image().await.is_some()
        && harness::kind::docker_has_image(&harness::probe_pod::probe_image()).await
}

async fn prepare(node_source: NodeSource) -> Result<u8, Error> {
    let script = fixtures_dir().join("offline/prepare.sh");
    if !script.is_file() {
        return Err(Error::Environment(format!(
            "{} not found; set DUALSTACK_FIXTURES to the fixtures/ directory of a dualstack checkout",
            script.display()
        )));
    }
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .env("DUALSTACK_NODE_SOURCE", node_source.as_env())
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
