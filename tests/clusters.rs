//! End to end against real KIND clusters built by the harness (needs `dualstack prepare` first; the
//! README's test command runs it). Cluster tests take a lock: on 2 cores one cluster at a time is
//! both faster and steadier than several.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use harness::Mode;
use harness::table::load_dirs;
use harness::table::services::concrete;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn dualstack(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dualstack")).args(args).output();
    match out {
        Ok(o) => {
            eprintln!("$ dualstack {}\n{}{}", args.join(" "), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            o
        }
        Err(e) => panic!("cannot run dualstack: {e}"),
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", std::process::id() & 0xfffff)
}

/// Names of docker containers and networks that mention `name`.
fn docker_leftovers(name: &str) -> Vec<String> {
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut names = list(&["ps", "-a", "--format", "{{.Names}}"]);
    names.extend(list(&["network", "ls", "--format", "{{.Name}}"]));
    names.into_iter().filter(|n| n.contains(name)).collect()
}

fn validate_junit(path: &Path) {
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/junit/junit-10.xsd");
    let out = Command::new("xmllint").arg("--noout").arg("--schema").arg(&schema).arg(path).output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    assert!(ok, "{} does not validate against junit-10.xsd: {:?}", path.display(), out.map(|o| stderr(&o)));
}

/// (testcase name, failed?) of every executed or skipped case in a JUnit file.
fn junit_cases(path: &Path) -> Vec<(String, quick_junit::TestCaseStatus)> {
    let xml = std::fs::read_to_string(path).unwrap_or_default();
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    report.test_suites.into_iter().flat_map(|s| s.test_cases).map(|c| (c.name.to_string(), c.status)).collect()
}

fn is_failure(status: &quick_junit::TestCaseStatus) -> bool {
    matches!(status, quick_junit::TestCaseStatus::NonSuccess { kind: quick_junit::NonSuccessKind::Failure, .. })
}

fn is_success(status: &quick_junit::TestCaseStatus) -> bool {
    matches!(status, quick_junit::TestCaseStatus::Success { .. })
}

/// Ids of rows that claim both modes and whose expectations differ between them: exactly these
/// must fail when `judge` expectations are applied to a `real` cluster.
fn rows_that_differ(real: Mode, judge: Mode) -> (BTreeSet<String>, BTreeSet<String>) {
    let scenarios = load_dirs(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites")]).unwrap_or_default().services;
    let (mut differ, mut same) = (BTreeSet::new(), BTreeSet::new());
    for s in scenarios.iter().filter(|s| s.modes.contains(&real) && s.modes.contains(&judge)) {
        let (Some(a), Some(b)) = (s.expect.get(&real), s.expect.get(&judge)) else { continue };
        if concrete(a, real) == concrete(b, judge) { same.insert(s.id.clone()) } else { differ.insert(s.id.clone()) };
    }
    (differ, same)
}

/// Where the harness keeps a cluster's files (kubeconfig), by the rule the CLI uses.
fn cluster_files(name: &str) -> harness::kind::ClusterFiles {
    harness::kind::ClusterFiles::new(name).unwrap_or_else(|e| panic!("cluster {name}: {e}"))
}

fn kubectl(kubeconfig: &str, args: &[&str]) -> Output {
    let out = Command::new(harness::machine::cache_dir().join("bin/kubectl")).arg("--kubeconfig").arg(kubeconfig).args(args).output();
    out.unwrap_or_else(|e| panic!("kubectl: {e}"))
}

/// Case names (with their classname) of a JUnit file.
fn case_names(path: &Path) -> BTreeSet<String> {
    junit_cases(path).into_iter().map(|(name, _)| name).collect()
}

/// One case as `dualstack list` prints it: (suite, id, mode) -> the skip reason, `None` when it runs.
type Listed = std::collections::BTreeMap<(String, String, String), Option<String>>;

/// The plan `dualstack list ARGS` prints, and its last line's total.
fn listed(args: &[&str]) -> Listed {
    let out = dualstack(&[&["list"], args].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let mut cases = Listed::new();
    for line in text.lines().filter(|l| l.starts_with("run ") || l.starts_with("skip ")) {
        let mut words = line.split_whitespace();
        let (verdict, name, mode) = (words.next().unwrap(), words.next().unwrap(), words.next().unwrap());
        let (suite, id) = name.split_once('/').unwrap();
        let rest: Vec<&str> = words.collect();
        let key = (suite.to_string(), id.to_string(), mode.trim_matches(|c| c == '[' || c == ']').to_string());
        let reason = (verdict == "skip").then(|| rest.join(" "));
        assert!(cases.insert(key.clone(), reason).is_none(), "list prints {key:?} twice");
    }
    let total: usize = text.lines().last().and_then(|l| l.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert_eq!(total, cases.len(), "list's total disagrees with its lines");
    cases
}

/// `DIR/results.json`, parsed.
fn results_json(dir: &Path) -> serde_json::Value {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (suite, id, mode) -> (status, message) of every case in a results.json; names are unique.
fn reported(dir: &Path) -> std::collections::BTreeMap<(String, String, String), (String, String)> {
    let results = results_json(dir);
    let mut cases = std::collections::BTreeMap::new();
    for case in results["cases"].as_array().unwrap() {
        let text = |k: &str| case[k].as_str().unwrap_or_default().to_string();
        let key = (text("suite"), text("id"), text("mode"));
        assert!(cases.insert(key.clone(), (text("status"), text("message"))).is_none(), "{key:?} reported twice");
    }
    cases
}

/// The run reported exactly the cases `list` planned: the same names, each planned skip skipped
/// with its reason, and (unless interrupted) every planned case finished.
fn assert_reports_the_plan(plan: &Listed, dir: &Path, interrupted: bool) {
    let got = reported(dir);
    let (reported_names, planned_names): (BTreeSet<_>, BTreeSet<_>) = (got.keys().collect(), plan.keys().collect());
    assert_eq!(reported_names, planned_names, "reported cases differ from the plan");
    for (key, reason) in plan {
        let (status, message) = &got[key];
        match reason {
            Some(reason) => assert_eq!((status.as_str(), message), ("skipped", reason), "{key:?}"),
            None if interrupted => {}
            None => assert!(message != "interrupted", "{key:?} was interrupted in a finished run"),
        }
    }
}

/// The live progress denominator (`[MODE] running N cases`) is the plan's count of cases to run.
fn assert_progress_counts_the_plan(run_output: &str, mode: Mode, plan: &Listed) {
    let planned = plan.values().filter(|reason| reason.is_none()).count();
    let line = format!("[{}] running {planned} cases", mode.name());
    assert!(run_output.contains(&line), "no '{line}' in:\n{run_output}");
}

/// A 2-way shard plus `report merge` gives the same set of cases as the unsharded run.
fn shards_merge_to_the_whole(mode: Mode, kubeconfig: &str, whole: &Path) {
    let base = std::env::temp_dir().join(format!("dualstack-shards-{:x}", std::process::id()));
    let mut dirs = Vec::new();
    for shard in ["1/2", "2/2"] {
        let dir = base.join(shard.replace('/', "-of-"));
        let d = dir.to_string_lossy().into_owned();
        let run = dualstack(&["run", "--mode", mode.name(), "--suite", "services", "--kubeconfig", kubeconfig, "--report-dir", &d, "--shard", shard]);
        assert_eq!(run.status.code(), Some(0), "shard {shard}: {}", stdout(&run));
        let plan = listed(&["--mode", mode.name(), "--suite", "services", "--shard", shard]);
        assert_progress_counts_the_plan(&stdout(&run), mode, &plan);
        assert_reports_the_plan(&plan, &dir, false);
        dirs.push(d);
    }
    let merged = base.join("merged").to_string_lossy().into_owned();
    let merge = dualstack(&["report", "merge", &dirs[0], &dirs[1], "--out", &merged]);
    assert_eq!(merge.status.code(), Some(0), "{}", stderr(&merge));
    let merged_junit = PathBuf::from(&merged).join("junit.xml");
    validate_junit(&merged_junit);
    let parts: Vec<BTreeSet<String>> = dirs.iter().map(|d| case_names(&PathBuf::from(d).join("junit.xml"))).collect();
    assert!(parts[0].is_disjoint(&parts[1]), "shards overlap");
    assert!(!parts[0].is_empty() && !parts[1].is_empty(), "a shard is empty");
    // The whole run had every suite; the shards ran the Service suite (the data plane's cases are
    // D.., NetworkPolicy's P..).
    let whole_services: BTreeSet<String> = case_names(whole).into_iter().filter(|n| !n.starts_with('D') && !n.starts_with('P')).collect();
    assert_eq!(case_names(&merged_junit), whole_services);
    let _ = std::fs::remove_dir_all(&base);
}

/// The shipped least-privilege role is enough for a full run (both suites).
fn run_under_least_privilege(mode: Mode, admin: &str) {
    let rbac = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/rbac/dualstack-runner.yaml");
    let applied = kubectl(admin, &["apply", "-f", &rbac.to_string_lossy()]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let token = kubectl(admin, &["-n", "default", "create", "token", "dualstack-runner", "--duration", "1h"]);
    assert!(token.status.success(), "{}", stderr(&token));
    let server = stdout(&kubectl(admin, &["config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.server}"]));
    let ca = stdout(&kubectl(admin, &["config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"]));
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{server}', certificate-authority-data: '{ca}'}}\n\
users:\n- name: runner\n  user: {{token: '{}'}}\ncontexts:\n- name: runner\n  context: {{cluster: c, user: runner}}\ncurrent-context: runner\n",
        stdout(&token).trim()
    );
    let dir = std::env::temp_dir().join(format!("dualstack-rbac-{:x}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig).ok();
    // Sanity: the identity really is limited (it may not read secrets).
    let denied = kubectl(&path.to_string_lossy(), &["auth", "can-i", "get", "secrets", "-n", "kube-system"]);
    assert_eq!(stdout(&denied).trim(), "no");
    let reports = dir.join("reports").to_string_lossy().into_owned();
    let run = dualstack(&["run", "--mode", mode.name(), "--kubeconfig", &path.to_string_lossy(), "--report-dir", &reports]);
    assert_eq!(run.status.code(), Some(0), "run under the least-privilege role:\n{}{}", stdout(&run), stderr(&run));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every secret a kubeconfig holds (token, client key and certificate data, and the PEM bodies the
/// base64 fields decode to, line by line) - none may appear in any output or report.
fn secrets_of(kubeconfig: &str) -> Vec<String> {
    let text = std::fs::read_to_string(kubeconfig).unwrap_or_default();
    let mut secrets = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        for key in ["client-key-data:", "client-certificate-data:", "token:"] {
            if let Some(value) = line.strip_prefix(key) {
                let value = value.trim().to_string();
                if let Ok(out) = Command::new("base64").arg("-d").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().and_then(|mut child| {
                    use std::io::Write;
                    if let Some(mut stdin) = child.stdin.take() {
                        let _ = stdin.write_all(value.as_bytes());
                    }
                    child.wait_with_output()
                }) {
                    secrets.extend(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.len() > 40).map(str::to_string));
                }
                secrets.push(value);
            }
        }
    }
    secrets.into_iter().filter(|s| s.len() > 20).collect()
}

fn assert_no_secrets(secrets: &[String], place: &str, text: &str) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "a kubeconfig secret appears in {place}");
    }
}

/// Up, check, run the Service suites, prove detection, down: everything `.ci/run` needs of a mode.
fn end_to_end(mode: Mode, judge_as: Mode, min_executed: usize) {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique(&format!("e2e-{}", mode.name()));
    let up = dualstack(&["cluster", "up", "--mode", mode.name(), "--name", &name]);
    assert_eq!(up.status.code(), Some(0), "cluster up: {}", stderr(&up));
    assert!(stdout(&up).contains("ready in"), "{}", stdout(&up));
    let kubeconfig = cluster_files(&name).kubeconfig;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();

    let outcome = std::panic::catch_unwind(|| {
        // The readiness verification: addressing, DNS and cross-node traffic per family.
        let check = dualstack(&["cluster", "check", "--mode", mode.name(), "--name", &name]);
        assert_eq!(check.status.code(), Some(0), "cluster check failed:\n{}", stdout(&check));
        // Per family: InternalIP and podCIDR of each of the two nodes, then a Service, pod IPs, DNS
        // and pod-to-pod.
        let checks = (2 * 2 + 4) * mode.families().len();
        assert!(stdout(&check).contains(&format!("{checks} checks, {checks} passed, 0 failed")), "{}", stdout(&check));

        // Every applicable Service scenario passes.
        let reports = std::env::temp_dir().join(format!("{name}-reports"));
        let dir = reports.to_string_lossy().into_owned();
        // A namespace left by a crashed run (expired) is collected; a live run's would not be.
        let crashed = format!("dualstack-crashed-{:x}", std::process::id());
        assert!(kubectl(&kubeconfig, &["create", "namespace", &crashed]).status.success());
        assert!(kubectl(&kubeconfig, &["label", "namespace", &crashed, "app.kubernetes.io/managed-by=dualstack"]).status.success());
        assert!(kubectl(&kubeconfig, &["annotate", "namespace", &crashed, "dualstack.io/expires-at=1"]).status.success());
        let run = dualstack(&["run", "--mode", mode.name(), "--kubeconfig", &kubeconfig, "--report-dir", &dir]);
        assert_eq!(run.status.code(), Some(0), "run failed:\n{}", stdout(&run));
        assert!(stdout(&run).contains(&crashed), "the expired namespace was not collected:\n{}", stdout(&run));
        // The run reports exactly what `list` plans for this mode, and counts it in its progress.
        let plan = listed(&["--mode", mode.name()]);
        assert_reports_the_plan(&plan, &reports, false);
        assert_progress_counts_the_plan(&stdout(&run), mode, &plan);
        // Filters select data-plane rows too, and the progress counts only what they select.
        let filtered_dir = reports.join("filtered");
        let filters = ["--filter", "D1[02]", "--filter", "S0*", "--skip", "S05"];
        let filtered = dualstack(&[&["run", "--mode", mode.name(), "--kubeconfig", &kubeconfig, "--report-dir", &filtered_dir.to_string_lossy()], &filters[..]].concat());
        assert_eq!(filtered.status.code(), Some(0), "filtered run failed:\n{}", stdout(&filtered));
        let filtered_plan = listed(&[&["--mode", mode.name()], &filters[..]].concat());
        assert_reports_the_plan(&filtered_plan, &filtered_dir, false);
        assert_progress_counts_the_plan(&stdout(&filtered), mode, &filtered_plan);
        // No secret of the kubeconfig in the output or any report of a full run.
        let secrets = secrets_of(&kubeconfig);
        assert!(!secrets.is_empty(), "no secrets found in the kubeconfig to look for");
        assert_no_secrets(&secrets, "the run's output", &format!("{}{}", stdout(&run), stderr(&run)));
        for file in ["junit.xml", "results.json", "summary.md"] {
            assert_no_secrets(&secrets, file, &std::fs::read_to_string(reports.join(file)).unwrap_or_default());
        }
        // results.json follows its schema; summary.md renders to an HTML table.
        let schema: serde_json::Value = serde_json::from_str(include_str!("../reports/results.schema.json")).unwrap();
        let results = results_json(&reports);
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&results).map(|e| e.to_string()).collect();
        assert_eq!(errors, Vec::<String>::new());
        let html = Command::new("cmark-gfm").args(["-e", "table"]).arg(reports.join("summary.md")).output().unwrap();
        let html = String::from_utf8_lossy(&html.stdout);
        assert!(html.contains("<table>") && html.contains("dataplane/connectivity"), "summary.md did not render as a table:\n{html}");
        let junit = reports.join("junit.xml");
        validate_junit(&junit);
        let cases = junit_cases(&junit);
        let executed = cases.iter().filter(|(n, s)| is_success(s) && !n.starts_with('D') && !n.starts_with('P')).count();
        assert!(executed >= min_executed, "{executed} Service cases executed, expected at least {min_executed}");
        let dataplane = cases.iter().filter(|(n, _)| n.starts_with('D')).count();
        assert!(dataplane > 30, "only {dataplane} data-plane cases");
        shards_merge_to_the_whole(mode, &kubeconfig, &junit);
        run_under_least_privilege(mode, &kubeconfig);
        vendor_dataplane_rows(mode, &kubeconfig);

        // The runner refuses a cluster whose real mode is not the requested one.
        let wrong = dualstack(&["run", "--mode", judge_as.name(), "--kubeconfig", &kubeconfig, "--report-dir", &dir]);
        assert_eq!(wrong.status.code(), Some(3));
        assert!(stderr(&wrong).contains(&format!("the cluster is {}", mode.name())), "{}", stderr(&wrong));
        // The setup failure names the phase it happened in (detection), not a kind of error's guess.
        assert!(stdout(&wrong).contains(&format!("[{}] SETUP FAILED in detect: ", judge_as.name())), "{}", stdout(&wrong));

        // Detection: judged with another mode's expectations, exactly the rows whose expectations
        // differ fail, each naming a difference.
        let forced =
            dualstack(&["run", "--mode", mode.name(), "--suite", "services", "--kubeconfig", &kubeconfig, "--report-dir", &dir, "--judge-as", judge_as.name()]);
        assert_eq!(forced.status.code(), Some(1), "{}", stdout(&forced));
        let cases = junit_cases(&junit);
        let failed: BTreeSet<String> = cases
            .iter()
            .filter(|(_, s)| is_failure(s))
            .map(|(n, _)| n.split(' ').next().unwrap_or_default().to_string())
            .collect();
        let passed: BTreeSet<String> =
            cases.iter().filter(|(_, s)| is_success(s)).map(|(n, _)| n.split(' ').next().unwrap_or_default().to_string()).collect();
        let (differ, same) = rows_that_differ(mode, judge_as);
        assert!(!differ.is_empty(), "no row differs between {mode} and {judge_as}");
        assert_eq!(failed, differ, "failing rows differ from the rows whose expectations differ");
        assert_eq!(passed, same);
        let _ = std::fs::remove_dir_all(&reports);
    });

    let down = dualstack(&["cluster", "down", "--name", &name]);
    assert_eq!(down.status.code(), Some(0), "cluster down: {}", stderr(&down));
    assert_eq!(docker_leftovers(&name), Vec::<String>::new(), "containers or networks left behind");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A vendor's data-plane rows, stated as `connect:` in a table of its own directory, run beside the
/// built-in ones: the row the cluster honours passes in every family, the row that asks what the
/// cluster does not do fails in every family and says who answered.
fn vendor_dataplane_rows(mode: Mode, kubeconfig: &str) {
    let dir = std::env::temp_dir().join(unique("vendor-rows"));
    std::fs::create_dir_all(&dir).unwrap();
    let table = "suite: dataplane\ngroup: vendor\nscenarios:\n\
        \x20 - id: V1\n    title: the hostNetwork client reaches every server through the worker's NodePort\n\
        \x20   connect: {from: host-network, to: node-port, to-node: worker, service: {sessionAffinity: None}, expect: every}\n    source: any\n\
        \x20 - id: V2\n    title: a row the cluster cannot pass, nobody answering a ClusterIP\n\
        \x20   connect: {from: pod, from-node: worker, to: cluster-ip, expect: none}\n    source: any\n";
    std::fs::write(dir.join("vendor.yaml"), table).unwrap();
    let reports = dir.join("reports");
    let suite_dir = dir.to_string_lossy().into_owned();
    let run = dualstack(&[
        "run", "--mode", mode.name(), "--kubeconfig", kubeconfig, "--suite-dir", &suite_dir, "--suite", "dataplane", "--filter", "V*", "--report-dir", &reports.to_string_lossy(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    // The built-in rows are reported too, as skipped by the filter.
    let got: BTreeSet<(String, String)> = reported(&reports).into_iter().filter(|((_, id, _), _)| id.starts_with('V')).map(|((_, id, _), (status, _))| (id, status)).collect();
    let want: BTreeSet<(String, String)> = mode
        .families()
        .iter()
        .flat_map(|f| [(format!("V1/tcp-{}", f.slug()), "passed".to_string()), (format!("V2/tcp-{}", f.slug()), "failed".to_string())])
        .collect();
    assert_eq!(got, want);
    let results = std::fs::read_to_string(reports.join("results.json")).unwrap();
    assert!(results.contains("unexpected responder server-"), "V2 does not name who answered:\n{results}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn dual_cluster_end_to_end() {
    end_to_end(Mode::Dual, Mode::Ipv4, 60);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn ipv6_cluster_end_to_end() {
    end_to_end(Mode::Ipv6, Mode::DualIpv6Primary, 40);
}

/// Our default CNI's manifest standing in for a vendor's: its image re-tagged under a name no node
/// has (`imagePullPolicy: Never`, so only --load-image can bring it), plus a ConfigMap whose data
/// are the variables the manifest may use. Returns (image, manifest file).
fn vendor_cni(dir: &std::path::Path) -> (String, PathBuf) {
    let cni_image = pin("CNI_IMAGE");
    let vendor_image = format!("dualstack.local/vendor-cni:e2e-{:x}", std::process::id());
    let tagged = Command::new("docker").args(["tag", &cni_image, &vendor_image]).status();
    assert!(tagged.is_ok_and(|s| s.success()), "docker tag {cni_image} {vendor_image}");
    let ours = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cni/dualstack-cni.yaml")).unwrap_or_default();
    assert!(ours.contains(&format!("image: {cni_image}\n")) && ours.contains("imagePullPolicy: IfNotPresent"), "the CNI manifest changed shape");
    let manifest = ours.replace(&format!("image: {cni_image}\n"), &format!("image: {vendor_image}\n")).replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Never")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: install-env, namespace: kube-system }\ndata:\n"
        + "  cluster: ${DUALSTACK_CLUSTER}\n  mode: ${DUALSTACK_MODE}\n  pods: \"${DUALSTACK_POD_SUBNETS}\"\n  services: \"${DUALSTACK_SERVICE_SUBNETS}\"\n  nodes: ${DUALSTACK_NODES}\n";
    std::fs::create_dir_all(dir).unwrap();
    let manifest_file = dir.join("vendor-cni.yaml");
    std::fs::write(&manifest_file, manifest).unwrap();
    (vendor_image, manifest_file)
}

/// A pin of fixtures/offline/versions.env.
fn pin(key: &str) -> String {
    let pins = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/offline/versions.env")).unwrap_or_default();
    pins.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or_default().to_string()
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn a_vendor_cni_from_a_manifest_passes() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let reports = std::env::temp_dir().join(format!("dualstack-cni-{:x}", std::process::id()));
    // Given for the dual mode only.
    let (vendor_image, manifest_file) = vendor_cni(&reports);
    let dir = reports.join("reports").to_string_lossy().into_owned();
    // Without a load balancer too: its rows are skipped for that reason. A vendor's CNI gets no
    // NetworkPolicy agent unless asked, and the canary finds that this one enforces no policy.
    let run = dualstack(&[
        "run", "--mode", "dual", "--cni-manifest", &format!("dual={}", manifest_file.display()), "--load-image", &vendor_image, "--load-balancer", "none", "--keep", "--report-dir", &dir,
    ]);
    let out = stdout(&run);
    let kept = out.lines().find_map(|l| l.split("kept cluster ").nth(1)).and_then(|rest| rest.split(';').next()).unwrap_or_default().to_string();
    let install_env = if kept.is_empty() { String::new() } else {
        let kubeconfig = cluster_files(&kept).kubeconfig.to_string_lossy().into_owned();
        let got = stdout(&kubectl(&kubeconfig, &["-n", "kube-system", "get", "configmap", "install-env", "-o", "jsonpath={.data}"]));
        let _ = dualstack(&["cluster", "down", "--name", &kept]);
        got
    };
    let _ = Command::new("docker").args(["rmi", &vendor_image]).output();
    assert_eq!(run.status.code(), Some(0), "{out}");
    assert!(out.contains("[dual] phase load:") && out.contains("phase cni:"), "{out}");
    // kubectl apply's output, told apart by its mode.
    assert!(out.contains("[dual] cni: daemonset.apps/"), "{out}");
    // The reports say what was tested.
    let results = results_json(&reports.join("reports"));
    let property = |name: &str| {
        let found = results["properties"].as_array().into_iter().flatten().find(|p| p["name"] == name);
        found.map(|p| (p["mode"].as_str().unwrap_or("run").to_string(), p["value"].as_str().unwrap_or_default().to_string())).unwrap_or_default()
    };
    let (cni_mode, cni) = property("cni");
    assert_eq!(cni_mode, "dual");
    assert!(cni.starts_with(&format!("manifest {} (sha256:", manifest_file.display())) && cni.len() == format!("manifest {} (sha256:)", manifest_file.display()).len() + 64, "{cni}");
    let (_, loaded) = property("images loaded");
    assert!(loaded.starts_with(&format!("{vendor_image} (sha256:")), "{loaded}");
    assert_eq!(property("kube-proxy"), ("dual".to_string(), "iptables".to_string()));
    assert_eq!(property("load balancer"), ("dual".to_string(), "none".to_string()));
    let balanced: Vec<&serde_json::Value> = results["cases"].as_array().into_iter().flatten().filter(|c| c["group"] == "load-balancer").collect();
    assert_eq!(balanced.len(), 14, "{results}");
    for case in balanced {
        assert_eq!(case["status"], "skipped", "{case}");
        assert!(case["message"].as_str().is_some_and(|m| m.starts_with("no LoadBalancer implementation: none of the fixture's")), "{case}");
    }
    assert_eq!(property("network policy agent"), ("dual".to_string(), "none".to_string()));
    let policed: Vec<&serde_json::Value> = results["cases"].as_array().into_iter().flatten().filter(|c| c["suite"] == "network-policy").collect();
    assert_eq!(policed.len(), 34, "{results}");
    for case in policed {
        assert_eq!(case["status"], "skipped", "{case}");
        assert_eq!(case["message"], "no NetworkPolicy enforcement: the canary policy-canary kept answering over IPv4 and IPv6 for 20s behind a deny-all ingress policy", "{case}");
    }
    assert_eq!(property("kubernetes").1, pin("K8S_VERSION"));
    assert!(property("node image").1.starts_with("dualstack.local/kind-node:"), "{results}");
    let junit = std::fs::read_to_string(reports.join("reports/junit.xml")).unwrap_or_default();
    assert!(junit.contains(r#"<property name="kube-proxy" value="iptables"/>"#), "{junit}");
    let data: serde_json::Value = serde_json::from_str(&install_env).unwrap_or_else(|e| panic!("{e}: {install_env:?}"));
    assert_eq!(
        data,
        serde_json::json!({
            "cluster": kept, "mode": "dual", "pods": "10.244.0.0/16,fd00:10:244::/56", "services": "10.96.0.0/16,fd00:10:96::/112",
            "nodes": format!("{kept}-control-plane,{kept}-worker")
        })
    );
    validate_junit(&reports.join("reports/junit.xml"));
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn flannel_passes_through_the_vendor_flags_alone() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The README's vendor command line: the image prepare built, a manifest per mode, no glue.
    // Dual and ipv6 here; all four modes by the README's command.
    let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cni/flannel");
    let reports = std::env::temp_dir().join(format!("dualstack-flannel-{:x}", std::process::id()));
    let mut args: Vec<String> = ["run", "--mode", "dual", "--mode", "ipv6", "--load-image", &pin("FLANNEL_IMAGE")].map(String::from).to_vec();
    for mode in ["dual", "ipv6"] {
        args.extend(["--cni-manifest".to_string(), format!("{mode}={}", manifests.join(format!("{mode}.yaml")).display())]);
    }
    args.extend(["--report-dir".to_string(), reports.to_string_lossy().into_owned()]);
    let run = dualstack(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = stdout(&run);
    assert_eq!(run.status.code(), Some(0), "{out}");
    let results = results_json(&reports);
    for mode in ["dual", "ipv6"] {
        // Every planned case of the mode ran and passed, but NetworkPolicy, which flannel does not
        // enforce (no agent is installed beside a vendor's CNI unless asked): the canary finds
        // that, and the suite is skipped saying so.
        let planned = planned_cases(mode);
        let of_mode: Vec<&serde_json::Value> = results["cases"].as_array().into_iter().flatten().filter(|c| c["mode"] == mode).collect();
        let passed = of_mode.iter().filter(|c| c["status"] == "passed").count();
        let skipped_at_run: Vec<&str> = of_mode
            .iter()
            .filter(|c| c["status"] == "skipped" && planned.contains(&format!("{}/{}", c["suite"].as_str().unwrap_or(""), c["id"].as_str().unwrap_or(""))))
            .map(|c| c["id"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(passed + skipped_at_run.len(), planned.len(), "{mode}: {passed} passed + {skipped_at_run:?} skipped at run time of {} planned", planned.len());
        let (policy, other): (Vec<&str>, Vec<&str>) = skipped_at_run.iter().partition(|id| id.starts_with('P'));
        assert!(other.is_empty(), "{mode}: only the NetworkPolicy suite may skip at run time: {other:?}");
        assert_eq!(policy.len(), planned.iter().filter(|c| c.starts_with("network-policy/")).count(), "{mode}: {policy:?}");
        let canary = format!("no NetworkPolicy enforcement: the canary policy-canary kept answering over {} for 20s behind a deny-all ingress policy", if mode == "dual" { "IPv4 and IPv6" } else { "IPv6" });
        assert!(of_mode.iter().filter(|c| c["suite"] == "network-policy").all(|c| c["message"] == canary.as_str()), "{mode}: {results}");
        let cni = results["properties"].as_array().into_iter().flatten().find(|p| p["name"] == "cni" && p["mode"] == mode);
        assert!(cni.is_some_and(|p| p["value"].as_str().unwrap_or("").contains(&format!("flannel/{mode}.yaml (sha256:"))), "{results}");
    }
    let _ = std::fs::remove_dir_all(&reports);
}

/// SUITE/ID of every case `dualstack list` plans to run in `mode`.
fn planned_cases(mode: &str) -> BTreeSet<String> {
    stdout(&dualstack(&["list", "--mode", mode]))
        .lines()
        .filter_map(|l| l.strip_prefix("run  "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn a_vendor_cni_whose_image_is_not_loaded_fails_in_the_cni_phase() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("dualstack-cni-unloaded-{:x}", std::process::id()));
    let (vendor_image, manifest_file) = vendor_cni(&dir);
    let reports = dir.join("reports").to_string_lossy().into_owned();
    // No --load-image: the DaemonSet's pods wait for an image no node has.
    let run = dualstack(&["run", "--mode", "ipv4", "--cni-manifest", &manifest_file.to_string_lossy(), "--ready-timeout", "30", "--report-dir", &reports]);
    let _ = Command::new("docker").args(["rmi", &vendor_image]).output();
    let out = stdout(&run);
    assert_eq!(run.status.code(), Some(3), "{out}");
    let failed = out.lines().find(|l| l.contains("[ipv4] SETUP FAILED in cni: ")).unwrap_or_else(|| panic!("no CNI failure line: {out}"));
    let name = out.lines().find_map(|l| l.split("creating cluster ").nth(1)).and_then(|r| r.split(' ').next()).unwrap_or_default().to_string();
    let nodes = format!("{name}-control-plane, {name}-worker");
    assert!(failed.contains(&format!("image {vendor_image} is not on node {nodes} and is not pulled (ErrImageNeverPull")), "{failed}");
    assert!(failed.contains("timed out after 30s waiting for 2 nodes Ready"), "{failed}");
    let logs = failed.split("KIND logs exported to ").nth(1).and_then(|r| r.split(';').next()).unwrap_or_default();
    assert!(std::path::Path::new(logs).join(format!("{name}-control-plane")).is_dir(), "no exported logs at {logs}: {failed}");
    assert!(failed.ends_with("run again with --keep to keep the cluster for a look"), "{failed}");
    assert_eq!(docker_leftovers(&name), Vec::<String>::new());
    // The pods' states and events reach JUnit beside the setup error.
    let junit = std::fs::read_to_string(dir.join("reports/junit.xml")).unwrap_or_default();
    assert!(junit.contains(r#"<testcase name="cni cluster setup [ipv4]""#) && junit.contains("ErrImageNeverPull") && junit.contains("event "), "{junit}");
    // Beside the setup case, every planned case is reported: those the plan runs as not run, saying why.
    let plan = listed(&["--mode", "ipv4"]);
    let got = reported(&dir.join("reports"));
    for (key, reason) in &plan {
        let why = reason.clone().unwrap_or_else(|| "not run: the ipv4 cluster's setup failed in cni".into());
        assert_eq!(got.get(key), Some(&("skipped".to_string(), why)), "{key:?}");
    }
    assert_eq!(got.len(), plan.len() + 1, "the plan and the setup case");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(logs);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn a_node_image_that_does_not_exist_fails_cleanly() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique("e2e-noimage");
    let out = dualstack(&["cluster", "up", "--mode", "ipv4", "--name", &name, "--node-image", "dualstack.local/kind-node:does-not-exist"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("error: creating cluster {name} failed: ")), "{err}");
    assert_eq!(docker_leftovers(&name), Vec::<String>::new());
    // The logs the message points at stay until the user removes them, as here.
    assert_eq!(dualstack(&["cluster", "down", "--name", &name]).status.code(), Some(0));
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn kind_failing_mid_create_leaves_nothing_behind() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique("e2e-midcreate");
    // An image that exists but is no KIND node: kind starts the containers, then fails.
    let out = dualstack(&["cluster", "up", "--mode", "dual", "--name", &name, "--node-image", "dualstack.local/base-iptables:bookworm"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("exported logs: "), "{err}");
    assert_eq!(docker_leftovers(&name), Vec::<String>::new());
    let exported = err.split("exported logs: ").nth(1).and_then(|rest| rest.split(')').next()).unwrap_or_default();
    assert!(std::path::Path::new(exported).is_dir(), "exported logs {exported} are not there: {err}");
    assert_eq!(dualstack(&["cluster", "down", "--name", &name]).status.code(), Some(0));
}

/// Starts `dualstack run`, waits until its output shows `marker`, sends `signal`, and checks the
/// exit code, the reports, and that nothing the run created is left.
fn interrupt_run(signal: &str, marker: &str, delay: std::time::Duration, code: i32) {
    use std::io::BufRead;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let reports = std::env::temp_dir().join(format!("dualstack-signal-{signal}-{:x}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualstack"))
        .args(["run", "--mode", "ipv4", "--report-dir", &reports.to_string_lossy()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = String::new();
    let mut cluster = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("creating cluster ").nth(1) {
            cluster = rest.split(' ').next().unwrap_or_default().to_string();
        }
        if line.contains(marker) {
            break;
        }
    }
    std::thread::sleep(delay);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args([signal, &pid]).status().is_ok_and(|s| s.success()));
    let rest: Vec<String> = lines.map(|l| l.unwrap_or_default()).collect();
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), Some(code), "output:\n{seen}{}", rest.join("\n"));
    let junit = reports.join("junit.xml");
    validate_junit(&junit);
    for file in ["results.json", "summary.md"] {
        assert!(reports.join(file).is_file(), "{file} missing");
    }
    let cases = junit_cases(&junit);
    assert!(!cases.is_empty());
    // Finished + interrupted = planned: every planned name once, none invented.
    assert_reports_the_plan(&listed(&["--mode", "ipv4"]), &reports, true);
    // Nothing left: no KIND cluster of this run, no container, no network.
    assert!(!cluster.is_empty(), "no cluster name in the output:\n{seen}");
    assert_eq!(docker_leftovers(&cluster), Vec::<String>::new(), "left behind after {signal}");
    assert!(!cluster_files(&cluster).dir.exists(), "the cluster's files (kubeconfig) were left");
    if signal == "-TERM" {
        assert!(cases.iter().any(|(_, s)| matches!(s, quick_junit::TestCaseStatus::NonSuccess { kind: quick_junit::NonSuccessKind::Error, message: Some(m), .. } if m.as_str() == "interrupted")),
            "no case marked interrupted");
    }
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn sigint_during_create_cleans_up_and_reports() {
    // Five seconds in, kind is creating the node containers.
    interrupt_run("-INT", "creating cluster", std::time::Duration::from_secs(5), 130);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn sigterm_during_the_suites_cleans_up_and_reports() {
    interrupt_run("-TERM", "running", std::time::Duration::from_millis(300), 143);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn deleting_a_cluster_that_does_not_exist_is_bad_input() {
    let name = unique("never-created");
    let out = dualstack(&["cluster", "down", "--name", &name]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with(&format!("error: no cluster named {name} on this machine")), "{}", stderr(&out));
}

/// Clusters a test keeps, deleted when it ends however it ends: a failed assertion must not leave
/// nodes filling Docker's disk for the tests after it.
struct DownAtTheEnd(Vec<String>);

impl Drop for DownAtTheEnd {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = dualstack(&["cluster", "down", "--name", name]);
        }
    }
}

/// The conversion suite in every mode, on clusters the run creates and keeps: every planned case
/// passes (upgrades ipv4 -> dual and ipv6 -> dual-ipv6-primary, downgrades back), each cluster then
/// checks out as its new mode, a conversion that would change the primary family is refused, and
/// one that fails midway (a node container paused) keeps the cluster and names the step.
#[test]
#[ignore = "needs a prepared machine (dualstack prepare); run with --include-ignored"]
fn conversions_pass_every_row_and_a_failed_one_keeps_the_cluster() {
    use std::io::BufRead;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let reports = std::env::temp_dir().join(format!("dualstack-conversion-{:x}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualstack"))
        .args(["run", "--mode", "all", "--suite", "conversion", "--keep", "--report-dir", &reports.to_string_lossy()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout_pipe = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let output: Vec<String> = std::io::BufReader::new(stdout_pipe).lines().map(|l| l.unwrap_or_default()).collect();
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    let output = output.join("\n");
    eprintln!("{output}");
    // Each mode's cluster, by the mode it was created in.
    let clusters: std::collections::BTreeMap<String, String> = output
        .lines()
        .filter_map(|l| {
            let (mode, rest) = l.strip_prefix('[')?.split_once("] creating cluster ")?;
            Some((mode.to_string(), rest.split(' ').next()?.to_string()))
        })
        .collect();
    let mut kept = DownAtTheEnd(clusters.values().cloned().collect());
    assert_eq!(clusters.len(), 4, "four clusters created:\n{output}");
    assert_eq!(status.code(), Some(0), "the conversion suite failed:\n{output}");
    let plan = listed(&["--suite", "conversion"]);
    assert_reports_the_plan(&plan, &reports, false);
    let got = reported(&reports);
    let passed: Vec<_> = got.iter().filter(|(_, (status, _))| status == "passed").map(|(key, _)| key.clone()).collect();
    let to_run: Vec<_> = plan.iter().filter(|(_, reason)| reason.is_none()).map(|(key, _)| key.clone()).collect();
    assert_eq!(passed, to_run, "every planned conversion case passes");
    // 13 cases per upgrade (9 Service rows, 4 workload checks), 12 per downgrade (8 and 4).
    assert_eq!(to_run.len(), 50);
    for mode in Mode::ALL {
        let to = harness::convert::Conversion::of(mode).to;
        let kubeconfig = cluster_files(&clusters[mode.name()]).kubeconfig;
        let check = dualstack(&["cluster", "check", "--mode", to.name(), "--kubeconfig", &kubeconfig.to_string_lossy()]);
        assert_eq!(check.status.code(), Some(0), "{mode} converted to {to} does not check out as {to}");
    }

    // The ipv4 cluster is dual now: ipv6 would change its primary family.
    let name = &clusters["ipv4"];
    let refused = dualstack(&["cluster", "convert", "--name", name, "--to", "ipv6"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("dual -> ipv6 would change the primary family from IPv4 to IPv6"), "{}", stderr(&refused));
    // Converting it back to ipv4 with its worker paused: a downgrade converts the nodes first, so
    // the control-plane node is converted and the worker fails; the cluster is kept and the error
    // names the step.
    let worker = format!("{name}-worker");
    assert!(Command::new("docker").args(["pause", &worker]).status().is_ok_and(|s| s.success()));
    let failed = dualstack(&["cluster", "convert", "--name", name, "--to", "ipv4"]);
    assert!(Command::new("docker").args(["unpause", &worker]).status().is_ok_and(|s| s.success()));
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    let err = stderr(&failed);
    assert!(err.contains(&format!("converting cluster {name} (dual -> ipv4) failed at node {worker}: ")), "{err}");
    assert!(err.contains(&format!("the cluster is kept as it is (KUBECONFIG={})", cluster_files(name).kubeconfig.display())), "{err}");
    assert!(!docker_leftovers(&worker).is_empty(), "the cluster was not kept");

    for name in std::mem::take(&mut kept.0) {
        assert_eq!(dualstack(&["cluster", "down", "--name", &name]).status.code(), Some(0));
        assert_eq!(docker_leftovers(&name), Vec::<String>::new());
    }
    let _ = std::fs::remove_dir_all(&reports);
}
