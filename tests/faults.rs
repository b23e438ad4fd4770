//! Fault injection: the data-plane suites are only as good as their verdicts. Each fault of
//! fixtures/faults/faults.yaml makes exactly its listed checks fail and no other (every other
//! planned case of its suite passes: on every run, a healthy cluster's pass of everything the
//! fault leaves alone), the same set on every run. Faults run on one cluster per mode: each is injected, judged
//! and reverted, and a fault without a revert (or whose revert fails) gets the cluster recreated.
//!
//! `DUALSTACK_FAULT=NAME[,NAME...]` runs those faults; `DUALSTACK_FAULT_RUNS=N` runs each fault N times (the
//! determinism check: `DUALSTACK_FAULT_RUNS=3 cargo test --test faults -- --include-ignored`).
//! Without it, each fault runs once and the two with the most failing checks twice.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    /// Shell functions every fault script can use.
    prelude: String,
    faults: Vec<Fault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fault {
    name: String,
    /// The mode of the cluster the fault is injected into.
    mode: String,
    /// The suite the fault is judged on: every case of it must pass but those of `fails`.
    #[serde(default = "dataplane")]
    suite: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default, rename = "after-fixture")]
    after_fixture: Option<String>,
    /// Restores the healthy cluster after the run; without it the cluster is recreated.
    #[serde(default)]
    revert: Option<String>,
    fails: Vec<String>,
}

fn dataplane() -> String {
    "dataplane".into()
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

/// The fault clusters' workers: three nodes, as the faults' scripts name them ($CLUSTER-worker2), so
/// a fault on one worker's path is told from a healthy worker's.
const WORKERS: &str = "2";

struct Cluster {
    name: String,
    kubeconfig: String,
}

impl Cluster {
    fn up(name: &str, mode: &str) -> Self {
        let up = dualstack(&["cluster", "up", "--mode", mode, "--name", name, "--workers", WORKERS], &[]);
        assert_eq!(up.status.code(), Some(0), "cluster up: {}", text(&up));
        let kubeconfig = cluster_files(name).kubeconfig.to_string_lossy().into_owned();
        // The declared failing sets assume cluster DNS beside the control-plane's client pod. Left
        // to the scheduler, CoreDNS may land on the worker a fault cuts off, and the DNS cases then
        // fail or pass by which endpoint kube-proxy picks for each query (seen: D21/aaaa-ipv6 in
        // one cluster, not in others).
        let pinned = Command::new(kubectl())
            .args(["--kubeconfig", &kubeconfig, "-n", "kube-system", "patch", "deployment", "coredns", "--type", "merge", "-p"])
            .arg(r#"{"spec":{"template":{"spec":{"nodeSelector":{"node-role.kubernetes.io/control-plane":""}}}}}"#)
            .output();
        assert!(pinned.as_ref().is_ok_and(|o| o.status.success()), "pinning CoreDNS: {pinned:?}");
        let rolled = Command::new(kubectl())
            .args(["--kubeconfig", &kubeconfig, "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s"])
            .output();
        assert!(rolled.as_ref().is_ok_and(|o| o.status.success()), "CoreDNS rollout: {rolled:?}");
        // The replaced replicas linger while terminating (lameduck): a fault that picks "a CoreDNS
        // pod" must not pick one of them.
        let started = Instant::now();
        loop {
            let listed = Command::new(kubectl())
                .args(["--kubeconfig", &kubeconfig, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o"])
                .arg("jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let nodes: Vec<&str> = listed.lines().collect();
            if nodes.len() == 2 && nodes.iter().all(|n| n.ends_with("-control-plane")) {
                break;
            }
            assert!(started.elapsed().as_secs() < 120, "CoreDNS pods still {nodes:?} after 120 s");
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        Self { name: name.into(), kubeconfig }
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

/// The ids of the cases of `suite` that `dualstack list` plans to run on a fault cluster of `mode`.
fn planned_cases(mode: &str, suite: &str) -> BTreeSet<String> {
    let out = dualstack(&["list", "--mode", mode, "--workers", WORKERS, "--suite", suite], &[]);
    let prefix = format!("run  {suite}/");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every planned case other than `failing` passed: nothing is skipped at run time on this machine
/// (SCTP included: where the kernel has no SCTP sockets the probe speaks it over raw IP).
fn assert_everything_else_passed(planned: &BTreeSet<String>, failing: &BTreeSet<String>, passed: &BTreeSet<String>) -> Result<(), String> {
    let not_passed: Vec<&String> = planned.iter().filter(|id| !failing.contains(*id) && !passed.contains(*id)).collect();
    if not_passed.is_empty() && passed.len() + failing.len() == planned.len() {
        Ok(())
    } else {
        Err(format!("of {} planned cases, {} passed, {} failing as declared; neither passed nor declared: {not_passed:?}", planned.len(), passed.len(), failing.len()))
    }
}

/// What one run of a suite reported: its exit code, case ids by outcome, and its output.
struct SuiteRun {
    code: Option<i32>,
    failed: BTreeSet<String>,
    errored: Vec<String>,
    passed: BTreeSet<String>,
    output: String,
}

/// Runs `suite` against `cluster` of `mode`, with the fault's hook.
fn run_suite(cluster: &Cluster, mode: &str, suite: &str, hook: Option<&str>, reports: &Path) -> SuiteRun {
    let dir = reports.to_string_lossy().into_owned();
    let mut args = vec!["run", "--mode", mode, "--suite", suite, "--kubeconfig", &cluster.kubeconfig, "--report-dir", &dir];
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
    let (mut failed, mut errored, mut passed) = (BTreeSet::new(), Vec::new(), BTreeSet::new());
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
            // The plan's skips; a planned case skipped at run time is one that did not pass.
            quick_junit::TestCaseStatus::Skipped { .. } => {}
        }
    }
    SuiteRun { code: out.status.code(), failed, errored, passed, output: text(&out) }
}

/// Runs a fault script (the prelude first) against `cluster`; whether it succeeded.
fn script(prelude: &str, body: &str, cluster: &Cluster) -> bool {
    Command::new("sh")
        .args(["-ec", &format!("{prelude}\n{body}")])
        .envs([("CLUSTER", cluster.name.as_str()), ("KUBECONFIG", cluster.kubeconfig.as_str()), ("KUBECTL", kubectl().as_str())])
        .status()
        .is_ok_and(|s| s.success())
}

/// How often each fault runs: `DUALSTACK_FAULT_RUNS`, and at least twice for the two faults with
/// the most failing checks (the widest verdicts, where nondeterminism would show first).
fn runs_per_fault(faults: &[Fault]) -> Vec<usize> {
    let requested: usize = std::env::var("DUALSTACK_FAULT_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let mut widest: Vec<(usize, usize)> = faults.iter().enumerate().map(|(i, f)| (f.fails.len(), i)).collect();
    widest.sort_by(|a, b| b.cmp(a));
    let twice: BTreeSet<usize> = widest.iter().take(2).map(|&(_, i)| i).collect();
    (0..faults.len()).map(|i| if twice.contains(&i) { requested.max(2) } else { requested }).collect()
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn each_fault_fails_exactly_its_checks_every_time() {
    let catalogue: Faults = serde_saphyr::from_str(&std::fs::read_to_string(root().join("fixtures/faults/faults.yaml")).unwrap_or_default())
        .unwrap_or_else(|e| panic!("faults.yaml: {e}"));
    let modes: BTreeSet<&str> = catalogue.faults.iter().map(|f| f.mode.as_str()).collect();
    assert!(catalogue.faults.len() >= 16, "the catalogue has {} faults", catalogue.faults.len());
    assert!(modes.contains("dual") && modes.contains("dual-ipv6-primary") && (modes.contains("ipv4") || modes.contains("ipv6")), "faults cover {modes:?}");
    let only: Option<Vec<String>> = std::env::var("DUALSTACK_FAULT").ok().map(|names| names.split(',').map(str::to_string).collect());
    for name in only.iter().flatten() {
        assert!(catalogue.faults.iter().any(|f| &f.name == name), "DUALSTACK_FAULT={name}: no such fault in faults.yaml");
    }
    let runs = runs_per_fault(&catalogue.faults);
    let (mut matrix, mut timings, mut mismatches) = (Vec::new(), Vec::new(), Vec::new());
    // One cluster per mode, in the order the modes first appear.
    let mut ordered_modes: Vec<&str> = Vec::new();
    catalogue.faults.iter().for_each(|f| if !ordered_modes.contains(&f.mode.as_str()) { ordered_modes.push(&f.mode) });
    for mode in ordered_modes {
        let faults: Vec<(usize, &Fault)> = catalogue.faults.iter().enumerate().filter(|(_, f)| f.mode == mode && only.as_ref().is_none_or(|o| o.contains(&f.name))).collect();
        if faults.is_empty() {
            continue;
        }
        let (mut cluster, mut clusters, mut previous): (Option<Cluster>, usize, Option<&str>) = (None, 0, None);
        for (index, fault) in faults {
            let planned = planned_cases(mode, &fault.suite);
            let expected: BTreeSet<String> = fault.fails.iter().cloned().collect();
            let unplanned: Vec<&String> = expected.difference(&planned).collect();
            assert!(unplanned.is_empty(), "{}: declares failures of cases the {mode} plan of {} does not have: {unplanned:?}", fault.name, fault.suite);
            let mut failing_sets = Vec::new();
            for run in 0..runs[index] {
                let current = cluster.get_or_insert_with(|| {
                    clusters += 1;
                    previous = None;
                    Cluster::up(&format!("fault-{:x}-{mode}-{clusters}", std::process::id() & 0xffff), mode)
                });
                let after = previous.map_or(String::new(), |p| format!(" (on the cluster {p} was reverted on)"));
                let started = Instant::now();
                if let Some(before) = &fault.before {
                    assert!(script(&catalogue.prelude, before, current), "{}: injecting failed{after}", fault.name);
                }
                let reports = std::env::temp_dir().join(format!("{}-{}-{run}-reports", current.name, fault.name));
                let hook = fault.after_fixture.as_ref().map(|h| format!("{}\n{h}", catalogue.prelude));
                let SuiteRun { code, failed, errored, passed, output } = run_suite(current, mode, &fault.suite, hook.as_deref(), &reports);
                let judged = started.elapsed();
                let reverted = fault.revert.as_ref().is_some_and(|revert| script(&catalogue.prelude, revert, current));
                timings.push(format!(
                    "{:<48} {mode:<17} run {run}: failed {:>2} (expected {:>2}), passed {}, errors {errored:?}; {:.0}s, reverted {}",
                    fault.name,
                    failed.len(),
                    expected.len(),
                    passed.len(),
                    judged.as_secs_f64(),
                    if reverted { format!("in {:.0}s", (started.elapsed() - judged).as_secs_f64()) } else { "no: the cluster is recreated".into() }
                ));
                if let Err(e) = assert_everything_else_passed(&planned, &failed, &passed) {
                    mismatches.push(format!("{} run {run}{after}: {e}", fault.name));
                }
                let missed: Vec<&String> = expected.difference(&failed).collect();
                let extra: Vec<&String> = failed.difference(&expected).collect();
                if !missed.is_empty() || !extra.is_empty() || !errored.is_empty() || code != Some(1) {
                    mismatches.push(format!("{} run {run}{after}: exit {code:?}; not failing: {missed:?}; failing unexpectedly: {extra:?}; errors: {errored:?}\n{output}", fault.name));
                }
                failing_sets.push(failed);
                let _ = std::fs::remove_dir_all(&reports);
                if reverted {
                    previous = Some(&fault.name);
                } else {
                    cluster = None;
                }
            }
            if failing_sets.windows(2).any(|w| w[0] != w[1]) {
                mismatches.push(format!("{}: the failing set differs between runs: {failing_sets:?}", fault.name));
            }
            let first = failing_sets.first().map(|f| f.iter().cloned().collect::<Vec<_>>().join(" ")).unwrap_or_default();
            matrix.push(format!("{:<48} {mode:<17} x{} {first}", fault.name, failing_sets.len()));
        }
    }
    // Kept where a passing run leaves it too (libtest shows stderr only on failure).
    let report = format!("fault matrix (fault, mode, runs -> failing checks):\n{}\n\nruns:\n{}\n", matrix.join("\n"), timings.join("\n"));
    let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-matrix.txt"), &report);
    eprintln!("{report}");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversionFaults {
    faults: Vec<ConversionFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversionFault {
    name: String,
    /// The mode of the cluster before its conversion; one fault per mode.
    mode: String,
    #[allow(dead_code)] // read by people: what breaks, and why exactly `fails` fails
    description: String,
    #[serde(rename = "before-conversion")]
    before_conversion: String,
    fails: Vec<String>,
}

/// The conversion suite's checks are only as good as their verdicts too: each fault of
/// fixtures/faults/conversion.yaml, injected before its mode's cluster is converted, fails exactly
/// its listed cases, and every other planned case passes. One run converts a cluster per fault.
#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn each_conversion_fault_fails_exactly_its_checks() {
    let table = std::fs::read_to_string(root().join("fixtures/faults/conversion.yaml")).unwrap();
    let faults: ConversionFaults = serde_saphyr::from_str(&table).unwrap_or_else(|e| panic!("fixtures/faults/conversion.yaml: {e}"));
    let modes: BTreeSet<&str> = faults.faults.iter().map(|f| f.mode.as_str()).collect();
    assert_eq!(modes.len(), faults.faults.len(), "one conversion fault per mode");
    // One hook for the run: each mode's cluster gets its own fault.
    let arms: Vec<String> = faults.faults.iter().map(|f| format!("{})\n{}\n;;", f.mode, f.before_conversion)).collect();
    let hook = format!("CLUSTER=$DUALSTACK_CLUSTER\ncase \"$DUALSTACK_MODE\" in\n{}\nesac", arms.join("\n"));
    let reports = std::env::temp_dir().join(format!("dualstack-conversion-faults-{:x}", std::process::id()));
    let dir = reports.to_string_lossy().into_owned();
    // No load balancer nor policy agent: no conversion row needs them, and the machine is spared.
    let mut args = vec!["run", "--suite", "conversion", "--workers", WORKERS, "--load-balancer", "none", "--network-policy", "none", "--report-dir", &dir, "--after-fixture-hook", &hook];
    for mode in &modes {
        args.extend(["--mode", mode]);
    }
    let started = Instant::now();
    let out = dualstack(&args, &[("KUBECTL", &kubectl())]);
    eprintln!("conversion faults {modes:?}: {:.0}s", started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(1), "conformance failures expected:\n{}", text(&out));
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reports.join("results.json")).unwrap()).unwrap();
    for fault in &faults.faults {
        let of = |status: &str| -> BTreeSet<String> {
            results["cases"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["mode"] == fault.mode.as_str() && c["status"] == status)
                .filter_map(|c| c["id"].as_str().map(str::to_string))
                .collect()
        };
        let failing: BTreeSet<String> = fault.fails.iter().cloned().collect();
        assert_eq!(of("failed"), failing, "{}: the failing set", fault.name);
        assert_eq!(of("error"), BTreeSet::new(), "{}: errors", fault.name);
        let planned = planned_cases(&fault.mode, "conversion");
        assert_everything_else_passed(&planned, &failing, &of("passed")).unwrap_or_else(|e| panic!("{}: {e}", fault.name));
    }
    let _ = std::fs::remove_dir_all(&reports);
}
