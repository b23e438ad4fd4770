//! Fault injection: the data-plane suite is only as good as its verdicts. A healthy dual-stack
//! cluster passes every check; each fault of fixtures/faults/faults.yaml makes exactly its listed
//! checks fail and no other. The cluster is recreated after each fault.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One cluster at a time: on 2 cores, concurrent clusters slow each other into timeouts.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Deserialize)]
struct Faults {
    faults: Vec<Fault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fault {
    name: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default, rename = "after-fixture")]
    after_fixture: Option<String>,
    fails: Vec<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dualstack(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dualstack")).args(args).envs(env.iter().copied()).output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("cannot run dualstack: {e}"),
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Cluster {
    name: String,
    kubeconfig: String,
}

impl Cluster {
    fn up(name: &str) -> Self {
        let up = dualstack(&["cluster", "up", "--mode", "dual", "--name", name], &[]);
        assert_eq!(up.status.code(), Some(0), "cluster up: {}", text(&up));
        let kubeconfig = cluster_files(name).kubeconfig;
        Self { name: name.into(), kubeconfig: kubeconfig.to_string_lossy().into_owned() }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = dualstack(&["cluster", "down", "--name", &self.name], &[]);
    }
}

/// Where the harness keeps a cluster's files (kubeconfig), by the rule the CLI uses.
fn cluster_files(name: &str) -> harness::kind::ClusterFiles {
    harness::kind::ClusterFiles::new(name).unwrap_or_else(|e| panic!("cluster {name}: {e}"))
}

fn kubectl() -> String {
    harness::machine::cache_dir().join("bin/kubectl").display().to_string()
}

/// The ids of the data-plane cases `dualstack list` plans to run on a dual cluster.
fn planned_dataplane_cases() -> BTreeSet<String> {
    let out = dualstack(&["list", "--mode", "dual", "--suite", "dataplane"], &[]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("run  dataplane/"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Checks that may be skipped for reasons of the machine, never of the fault: SCTP where the kernel
/// lacks it.
fn environment_skip(id: &str) -> bool {
    id.starts_with("D13/")
}

/// Every planned case other than `failing` passed (or was skipped for the machine's reasons).
fn assert_everything_else_passed(planned: &BTreeSet<String>, failing: &BTreeSet<String>, passed: &BTreeSet<String>, skipped: &BTreeSet<String>) -> Result<(), String> {
    let others: BTreeSet<&String> = planned.iter().filter(|id| !failing.contains(*id)).collect();
    let not_passed: Vec<&&String> = others.iter().filter(|id| !(passed.contains(**id) || skipped.contains(**id) && environment_skip(id))).collect();
    if not_passed.is_empty() && passed.len() + skipped.len() + failing.len() == planned.len() {
        Ok(())
    } else {
        Err(format!("of {} planned cases, {} passed, {} skipped, {} failing as declared; neither passed nor declared: {not_passed:?}", planned.len(), passed.len(), skipped.len(), failing.len()))
    }
}

/// What one data-plane run reported: its exit code, case ids by outcome, and its output.
struct DataplaneRun {
    code: Option<i32>,
    failed: BTreeSet<String>,
    errored: Vec<String>,
    passed: BTreeSet<String>,
    skipped: BTreeSet<String>,
    output: String,
}

/// Runs the data-plane suite against `cluster`, with the fault's hook.
fn run_dataplane(cluster: &Cluster, hook: Option<&str>, reports: &Path) -> DataplaneRun {
    let dir = reports.to_string_lossy().into_owned();
    let mut args = vec!["run", "--mode", "dual", "--suite", "dataplane", "--kubeconfig", &cluster.kubeconfig, "--report-dir", &dir];
    if let Some(hook) = hook {
        args.extend(["--after-fixture-hook", hook]);
    }
    let kubectl = kubectl();
    let out = dualstack(&args, &[("CLUSTER", &cluster.name), ("KUBECONFIG", &cluster.kubeconfig), ("KUBECTL", &kubectl)]);
    let xml = std::fs::read_to_string(reports.join("junit.xml")).unwrap_or_default();
    // Failed cases carry the fixture's pods and events in their system-out.
    if xml.contains("<failure") {
        assert!(xml.contains("after the failures") && xml.contains("pod server-0 on"), "no diagnostics in the JUnit system-out");
    }
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("junit: {e}\n{}", text(&out)));
    let (mut failed, mut errored, mut passed, mut skipped) = (BTreeSet::new(), Vec::new(), BTreeSet::new(), BTreeSet::new());
    for case in report.test_suites.iter().flat_map(|s| s.test_cases.iter()) {
        let id = case.name.as_str().split(' ').next().unwrap_or_default().to_string();
        match &case.status {
            quick_junit::TestCaseStatus::Success { .. } => {
                passed.insert(id);
            }
            quick_junit::TestCaseStatus::NonSuccess { kind: quick_junit::NonSuccessKind::Failure, .. } => {
                failed.insert(id);
            }
            quick_junit::TestCaseStatus::NonSuccess { .. } => errored.push(id),
            quick_junit::TestCaseStatus::Skipped { .. } => {
                skipped.insert(id);
            }
        }
    }
    DataplaneRun { code: out.status.code(), failed, errored, passed, skipped, output: text(&out) }
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn each_fault_fails_exactly_its_checks() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let faults: Faults = serde_saphyr::from_str(&std::fs::read_to_string(root().join("fixtures/faults/faults.yaml")).unwrap_or_default())
        .unwrap_or_else(|e| panic!("faults.yaml: {e}"));
    assert!(faults.faults.len() >= 6);
    let only = std::env::var("DUALSTACK_FAULT").ok();
    if let Some(name) = &only {
        assert!(faults.faults.iter().any(|f| &f.name == name), "DUALSTACK_FAULT={name}: no such fault in faults.yaml");
    }
    let planned = planned_dataplane_cases();
    let mut matrix = Vec::new();
    let mut mismatches = Vec::new();
    for fault in faults.faults.iter().filter(|f| only.as_ref().is_none_or(|o| o == &f.name)) {
        let name = format!("fault-{:x}-{}", std::process::id() & 0xffff, matrix.len());
        let cluster = Cluster::up(&name);
        if let Some(before) = &fault.before {
            let status = Command::new("sh")
                .args(["-ec", before])
                .envs([("CLUSTER", cluster.name.as_str()), ("KUBECONFIG", cluster.kubeconfig.as_str()), ("KUBECTL", kubectl().as_str())])
                .status();
            assert!(status.is_ok_and(|s| s.success()), "{}: injecting failed", fault.name);
        }
        let reports = std::env::temp_dir().join(format!("{name}-reports"));
        let DataplaneRun { code, failed, errored, passed, skipped, output } = run_dataplane(&cluster, fault.after_fixture.as_deref(), &reports);
        let expected: BTreeSet<String> = fault.fails.iter().cloned().collect();
        let unplanned: Vec<&String> = expected.difference(&planned).collect();
        assert!(unplanned.is_empty(), "{}: declares failures of cases the plan does not have: {unplanned:?}", fault.name);
        if let Err(e) = assert_everything_else_passed(&planned, &failed, &passed, &skipped) {
            mismatches.push(format!("{}: {e}", fault.name));
        }
        let missed: Vec<&String> = expected.difference(&failed).collect();
        let extra: Vec<&String> = failed.difference(&expected).collect();
        eprintln!("{:<42} failed {:>2} (expected {:>2}), passed {}, errors {errored:?}", fault.name, failed.len(), expected.len(), passed.len());
        if !missed.is_empty() || !extra.is_empty() || !errored.is_empty() || code != Some(1) {
            mismatches.push(format!("{}: exit {code:?}; not failing: {missed:?}; failing unexpectedly: {extra:?}; errors: {errored:?}\n{output}", fault.name));
        }
        matrix.push(format!("{:<42} {}", fault.name, failed.iter().cloned().collect::<Vec<_>>().join(" ")));
        let _ = std::fs::remove_dir_all(&reports);
    }
    eprintln!("fault matrix (fault -> failing checks):\n{}", matrix.join("\n"));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn healthy_cluster_passes_every_data_plane_check_repeatedly() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runs: usize = std::env::var("DUALSTACK_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    let cluster = Cluster::up(&format!("healthy-{:x}", std::process::id() & 0xffff));
    for i in 0..runs {
        let reports = std::env::temp_dir().join(format!("{}-reports-{i}", cluster.name));
        let DataplaneRun { code, failed, errored, passed, skipped, output } = run_dataplane(&cluster, None, &reports);
        eprintln!("run {i}: passed {}, skipped {skipped:?}, failed {failed:?}, errors {errored:?}", passed.len());
        assert_eq!(code, Some(0), "run {i}:\n{output}");
        assert!(failed.is_empty() && errored.is_empty());
        assert_everything_else_passed(&planned_dataplane_cases(), &BTreeSet::new(), &passed, &skipped).unwrap_or_else(|e| panic!("run {i}: {e}"));
        let _ = std::fs::remove_dir_all(&reports);
    }
}
