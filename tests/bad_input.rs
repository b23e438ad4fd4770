//! Bad input: every malformed scenario table and CLI flag gives one clear line naming the file,
//! line, column and field, and exit code 2 (usage) or 3 (environment), before any cluster work.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use rstest::rstest;
use std::path::PathBuf;
use std::process::Command;

fn dualstack() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dualstack"))
}

/// A scratch directory of one test, removed when the test ends.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("dualstack-bad-input-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok();
    TempDir(dir)
}

/// Runs `dualstack` and returns (exit code, stderr).
fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().ok();
    let code = out.as_ref().and_then(|o| o.status.code()).unwrap_or(-1);
    let stderr = out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
    (code, stderr)
}

const HEAD: &str = "suite: vendor\ngroup: g\n";

#[rstest]
#[case::malformed_yaml("scenarios:\n  - id: V1\n    title: [unclosed\n", "5:12: title: unclosed bracket '['")]
#[case::unknown_top_level_field("owner: me\nscenarios: []\n", "3:1: owner: unknown field `owner`, expected one of suite, group, base, scenarios")]
#[case::unknown_row_field("scenarios:\n  - id: V1\n    titel: typo\n    create: {}\n    expect: { all: { policy: SingleStack } }\n",
    "5:5: titel: unknown field `titel`, expected one of id, title, modes, note, create, dryRun, update, created, expect")]
#[case::missing_title("scenarios:\n  - id: V1\n    create: {}\n    expect:\n      all: { policy: SingleStack }\n", "6:5: title: missing field `title`")]
#[case::duplicate_id("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect: { all: { policy: SingleStack } }\n  - id: V1\n    title: two\n    create: {}\n    expect: { all: { policy: SingleStack } }\n",
    "8:9: id: duplicate id 'V1' (first defined at line 4)")]
#[case::unknown_mode("scenarios:\n  - id: V1\n    title: one\n    modes: [ipv4, dual4]\n    create: {}\n    expect: { all: { policy: SingleStack } }\n",
    "6:12: modes: unknown mode 'dual4' (expected one of: ipv4, ipv6, dual, dual-ipv6-primary)")]
#[case::empty_modes("scenarios:\n  - id: V1\n    title: one\n    modes: []\n    create: {}\n    expect: { all: { policy: SingleStack } }\n", "6:12: modes: must name at least one mode")]
#[case::claimed_mode_without_expectation("scenarios:\n  - id: V1\n    title: one\n    modes: [ipv4, dual]\n    create: {}\n    expect: { ipv4: { policy: SingleStack } }\n",
    "8:13: expect: no expectation for mode 'dual', which the row claims")]
#[case::unknown_expect_key("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect: { dual-stak: { policy: SingleStack } }\n",
    "7:26: expect: unknown key 'dual-stak' (expected a mode, single-stack, dual-stack or all)")]
#[case::expectation_for_unclaimed_mode("scenarios:\n  - id: V1\n    title: one\n    modes: [ipv4]\n    create: {}\n    expect:\n      ipv4: { policy: SingleStack }\n      ipv6: { policy: SingleStack }\n",
    "10:13: expect: expectation for mode 'ipv6', which the row does not claim")]
#[case::rejection_with_acceptance("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { policy: SingleStack, rejected: { status: 422 } }\n",
    "8:12: expect.all.rejected: a rejection cannot also expect policy, families, clusterIPs, unset or nodePorts")]
#[case::unknown_family("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { families: [tertiary] }\n",
    "8:12: expect.all.families: unknown family 'tertiary' (expected one of primary, secondary, IPv4, IPv6)")]
#[case::unknown_policy("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { policy: DualStack }\n",
    "8:12: expect.all.policy: unknown policy 'DualStack' (expected one of SingleStack, PreferDualStack, RequireDualStack)")]
#[case::bad_placeholder("scenarios:\n  - id: V1\n    title: one\n    create: { spec: { clusterIP: $ip(IPv7) } }\n    expect:\n      all: { policy: SingleStack }\n",
    "4:9: create: placeholder '$ip(IPv7)': unknown family 'IPv7' (expected one of primary, secondary, IPv4, IPv6)")]
#[case::patch_with_set("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    update: { method: merge-patch, set: { spec.type: NodePort } }\n    expect:\n      all: { policy: SingleStack }\n",
    "4:9: update: a patch takes only a body")]
#[case::unknown_update_method("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    update: { method: json-patch, body: [] }\n    expect:\n      all: { policy: SingleStack }\n",
    "7:23: method: unknown variant `json-patch`, expected one of put, merge-patch, strategic-patch")]
#[case::expects_nothing("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: {}\n",
    "8:12: expect.all: expects nothing: give policy/families/clusterIPs/unset/nodePorts or rejected")]
#[case::kept_without_update("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { clusterIPs: [kept] }\n",
    "8:12: expect.all.clusterIPs: 'kept' is not a family symbol, None, kept (updates and rows created before a conversion only) or a placeholder")]
#[case::created_outside_the_conversion_suite("scenarios:\n  - id: V1\n    title: one\n    created: before-conversion\n    create: {}\n    expect:\n      all: { policy: SingleStack }\n",
    "6:14: created: only rows of suite 'conversion' straddle a conversion")]
#[case::non_error_status("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { rejected: { status: 200, causes: [{ field: spec, message: x }] } }\n",
    "8:12: expect.all.rejected.status: 200 is not a 4xx validation status (5xx, 409 and 429 are retried, never judged)")]
#[case::server_error_status("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { rejected: { status: 500, causes: [{ field: spec, message: x }] } }\n",
    "8:12: expect.all.rejected.status: 500 is not a 4xx validation status (5xx, 409 and 429 are retried, never judged)")]
#[case::no_causes("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { rejected: { status: 422, causes: [] } }\n",
    "8:12: expect.all.rejected.causes: name at least one cause (field and message): without one any rejection would pass")]
fn malformed_tables_are_usage_errors(#[case] body: &str, #[case] expected: &str) {
    // Named by the body's content: cases run at once, so each needs its own directory.
    let dir = temp_dir(&format!("{:x}", body.bytes().fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))));
    let file = dir.join("vendor.yaml");
    std::fs::write(&file, format!("{HEAD}{body}")).ok();
    let (code, stderr) = run(dualstack().args(["list", "--suite-dir"]).arg(&*dir));
    assert_eq!(stderr, format!("error: {}:{expected}\n", file.display()));
    assert_eq!(code, 2);
}

/// The conversion suite's own rules: its Service rows say when they are created, and its workload
/// rows name a known check.
#[rstest]
#[case::conversion_row_without_created("scenarios:\n  - id: V1\n    title: one\n    create: {}\n    expect:\n      all: { policy: SingleStack }\n",
    "4:9: created: a conversion row says when its Service is created: before-conversion or after-conversion")]
#[case::unknown_created("scenarios:\n  - id: V1\n    title: one\n    created: during-conversion\n    create: {}\n    expect:\n      all: { policy: SingleStack }\n",
    "6:14: created: unknown variant `during-conversion`, expected one of before-conversion, after-conversion")]
#[case::unknown_workload_check("checks:\n  - id: W9\n    title: one\n    check: pod-keeps-its-name\n    note: why\n",
    "6:12: check: unknown variant `pod-keeps-its-name`, expected one of pod-keeps-its-addresses, new-pod-gets-the-new-families, endpoint-slices-follow-the-pods, service-answers-over-each-family")]
#[case::workload_check_without_note("checks:\n  - id: W9\n    title: one\n    check: pod-keeps-its-addresses\n", "6:5: note: missing field `note`")]
fn malformed_conversion_tables_are_usage_errors(#[case] body: &str, #[case] expected: &str) {
    let dir = temp_dir(&format!("conversion-{:x}", body.bytes().fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))));
    let file = dir.join("conversion.yaml");
    std::fs::write(&file, format!("suite: conversion\ngroup: g\n{body}")).ok();
    let (code, stderr) = run(dualstack().args(["list", "--suite", "conversion", "--suite-dir"]).arg(&*dir));
    assert_eq!(stderr, format!("error: {}:{expected}\n", file.display()));
    assert_eq!(code, 2);
}

#[test]
fn converting_a_cluster_that_does_not_exist_is_bad_input() {
    let (code, stderr) = run(dualstack().args(["cluster", "convert", "--name", "never-made-convert", "--to", "dual"]));
    assert!(stderr.starts_with("error: no cluster named never-made-convert on this machine"), "stderr: {stderr}");
    assert_eq!(code, 2);
}

#[test]
fn bad_suite_name_is_a_usage_error() {
    let dir = temp_dir("suitename");
    let file = dir.join("vendor.yaml");
    std::fs::write(&file, "suite: Vendor Suite\ngroup: g\nscenarios: []\n").ok();
    let (code, stderr) = run(dualstack().args(["list", "--suite-dir"]).arg(&*dir));
    assert_eq!(stderr, format!("error: {}:1:8: suite: 'Vendor Suite' must be lower-case letters, digits and '-'\n", file.display()));
    assert_eq!(code, 2);
}

#[test]
fn a_vendor_row_clashing_with_a_built_in_id_names_the_vendor_file() {
    let dir = temp_dir("clash");
    let file = dir.join("vendor.yaml");
    std::fs::write(&file, "suite: services\ngroup: g\nscenarios:\n  - id: S01\n    title: t\n    create: {}\n    expect: { all: { policy: SingleStack } }\n").ok();
    let (code, stderr) = run(dualstack().args(["list", "--suite-dir"]).arg(&*dir));
    assert_eq!(stderr, format!("error: {}:4:9: id: duplicate id 'S01' in suite 'services' (defined in another file)\n", file.display()));
    assert_eq!(code, 2);
}

#[rstest]
#[case::unknown_mode(&["cluster", "up", "--mode", "dualstack"], "error: unknown mode 'dualstack' (expected one of: ipv4, ipv6, dual, dual-ipv6-primary)\n", 2)]
#[case::unknown_mode_in_run(&["run", "--mode", "v6", "--kubeconfig", "/nonexistent"], "error: unknown mode 'v6' (expected one of: ipv4, ipv6, dual, dual-ipv6-primary)\n", 2)]
#[case::bad_cluster_name(&["cluster", "down", "--name", "Bad_Name"], "error: invalid cluster name 'Bad_Name': use 1-40 lower-case letters, digits and '-', not starting or ending with '-'\n", 2)]
#[case::bad_glob(&["list", "--filter", "S[1"], "error: --filter 'S[1': error parsing glob 'S[1': unclosed character class; missing ']'\n", 2)]
#[case::missing_suite_dir(&["list", "--suite-dir", "/nonexistent/suites"], "error: /nonexistent/suites:0:0: suite-dir: cannot read directory: No such file or directory (os error 2)\n", 2)]
#[case::unreadable_report_dir(&["run", "--mode", "dual", "--kubeconfig", "/nonexistent", "--report-dir", "/proc/dualstack"],
    "error: report dir /proc/dualstack: cannot write: No such file or directory (os error 2)\n", 2)]
#[case::missing_kubeconfig(&["run", "--mode", "dual", "--kubeconfig", "/nonexistent/kubeconfig", "--report-dir", "/tmp/dualstack-bad-input-reports"],
    "error: kubeconfig /nonexistent/kubeconfig: failed to read kubeconfig from '\"/nonexistent/kubeconfig\"': No such file or directory (os error 2)\n", 2)]
#[case::unknown_mode_to_convert_to(&["cluster", "convert", "--name", "c", "--to", "dual4"], "error: unknown mode 'dual4' (expected one of: ipv4, ipv6, dual, dual-ipv6-primary)\n", 2)]
#[case::unknown_node_source(&["prepare", "--node-source", "registry"],
    "error: invalid value 'registry' for '--node-source <NODE_SOURCE>'\n  [possible values: auto, pull, build]\n\nFor more information, try '--help'.\n", 2)]
fn bad_flags(#[case] args: &[&str], #[case] expected: &str, #[case] code: i32) {
    let (got_code, stderr) = run(dualstack().args(args));
    assert!(stderr.ends_with(expected), "stderr: {stderr}");
    assert_eq!(got_code, code, "stderr: {stderr}");
}

#[test]
fn a_kubeconfig_that_is_not_yaml_is_a_usage_error() {
    let dir = temp_dir("kubeconfig");
    let file = dir.join("kubeconfig");
    std::fs::write(&file, "clusters: [unclosed\n").ok();
    let (code, stderr) = run(dualstack().args(["cluster", "check", "--mode", "dual", "--kubeconfig"]).arg(&file));
    assert!(stderr.starts_with(&format!("error: kubeconfig {}: ", file.display())), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert_eq!(code, 2);
}

#[test]
fn an_api_server_that_does_not_answer_is_named_with_its_url_and_reported() {
    let dir = temp_dir("unreachable");
    let file = dir.join("kubeconfig");
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n",
    )
    .ok();
    let reports = dir.join("reports");
    let (code, stderr) = run(dualstack().args(["run", "--mode", "dual", "--kubeconfig"]).arg(&file).arg("--report-dir").arg(&reports));
    let expected = format!("error: the API server https://127.0.0.1:1/ (kubeconfig {}) does not answer: ", file.display());
    assert!(stderr.starts_with(&expected) && stderr.contains("Connection refused"), "stderr: {stderr}");
    assert_eq!(code, 3);
    let junit = std::fs::read_to_string(reports.join("junit.xml")).unwrap_or_default();
    assert!(junit.contains(r#"<testcase name="connect cluster setup [dual]""#) && junit.contains("Connection refused"), "{junit}");
}

#[test]
fn no_docker_is_an_environment_error() {
    // A PATH without docker stands for a machine where Docker is missing.
    let empty = temp_dir("nopath");
    let (code, stderr) = run(dualstack().args(["cluster", "up", "--mode", "dual", "--name", "never-created"]).env("PATH", &*empty));
    assert!(stderr.contains("error: the docker CLI cannot be run"), "stderr: {stderr}");
    assert_eq!(code, 3);
}

#[test]
fn version_names_the_kubernetes_and_kind_it_builds() {
    let out = dualstack().arg("--version").output().ok();
    let stdout = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let pins = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/offline/versions.env")).unwrap_or_default();
    let pin = |key: &str| pins.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or("missing").to_string();
    assert_eq!(stdout.trim(), format!("dualstack {} (Kubernetes {}, kind {})", env!("CARGO_PKG_VERSION"), pin("K8S_VERSION"), pin("KIND_VERSION")));
}

#[test]
fn a_vendor_cni_is_checked_before_any_cluster_work() {
    let dir = temp_dir("cni");
    let manifest = dir.join("cni.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: net-conf }\ndata: { net: \"${DUALSTACK_POD_CIDR}\" }\n").ok();
    let reports = dir.join("reports");
    let run_with = |args: &[&str]| run(dualstack().args(["run", "--report-dir"]).arg(&reports).args(args));
    let file = manifest.display().to_string();
    let (code, stderr) = run_with(&["--mode", "dual", "--cni-manifest", &file]);
    assert_eq!(
        stderr,
        format!("error: CNI manifest {file}: line 4, column 15: unknown variable ${{DUALSTACK_POD_CIDR}} (known: DUALSTACK_CLUSTER, DUALSTACK_MODE, DUALSTACK_POD_SUBNETS, DUALSTACK_SERVICE_SUBNETS, DUALSTACK_NODES, DUALSTACK_KIND)\n")
    );
    assert_eq!(code, 2);
    let (code, stderr) = run_with(&["--mode", "ipv4", "--mode", "dual", "--cni-manifest", &format!("dual={file}")]);
    assert_eq!(stderr, "error: no --cni-manifest for mode ipv4: give FILE for every mode or ipv4=FILE\n");
    assert_eq!(code, 2);
    let (code, stderr) = run_with(&["--mode", "dual", "--load-archive", "/nonexistent/cni.tar"]);
    assert_eq!(stderr, "error: cannot load archive /nonexistent/cni.tar into the nodes: it cannot be read: No such file or directory (os error 2)\n");
    assert_eq!(code, 2);
    let (code, stderr) = run_with(&["--mode", "dual", "--load-image", "dualstack.local/no-such-image:v0"]);
    assert!(stderr.starts_with("error: cannot load image dualstack.local/no-such-image:v0 into the nodes: it is not in this machine's Docker engine"), "{stderr}");
    assert_eq!(code, 2);
}
