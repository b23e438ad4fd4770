//! The shipped GitHub Action and example workflow pass actionlint (which also checks the workflow
//! against the action's declared inputs), every input of the action reaches dualstack's command
//! line, and every shell script passes shellcheck.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare builds actionlint); run with --include-ignored"]
fn action_and_workflow_pass_actionlint() {
    let out = Command::new(harness::machine::cache_dir().join("bin/actionlint"))
        .arg(".github/workflows/conformance.yml")
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("actionlint: {e}"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The action's `run: |` script (the step that runs dualstack).
fn action_script() -> String {
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap_or_default();
    let script: String = action
        .split("      run: |\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .map_while(|l| l.strip_prefix("        ").or(if l.is_empty() { Some("") } else { None }))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.contains("GITHUB_OUTPUT"), "the action's run script was not found");
    script
}

/// Runs the action's script with `env` (every variable it reads, empty unless given) and a stand-in
/// dualstack that records its arguments; returns them, one per element.
fn action_passes(env: &[(&str, &str)]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("dualstack-action-args-{}-{}", std::process::id(), env.len()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("action/target/release")).unwrap();
    std::fs::create_dir_all(dir.join("work/reports-a")).unwrap();
    std::fs::create_dir_all(dir.join("work/reports-b")).unwrap();
    let fake = dir.join("action/target/release/dualstack");
    std::fs::write(&fake, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n", dir.join("args").display())).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let read = ["MODE", "SUITE", "FILTER", "SKIP", "SUITE_DIR", "KUBECONFIG_FILE", "REPORT_DIR", "CNI_MANIFEST", "CNI_INSTALL_CMD",
        "LOAD_IMAGES", "LOAD_ARCHIVES", "WORKERS", "KUBE_PROXY", "LOAD_BALANCER", "NETWORK_POLICY", "NODE_IMAGE", "SHARD", "JOBS", "MERGE"];
    let mut command = Command::new("bash");
    command.arg("-c").arg(action_script()).current_dir(dir.join("work"));
    for name in read {
        command.env(name, env.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v));
    }
    command.env("GITHUB_ACTION_PATH", dir.join("action")).env("GITHUB_OUTPUT", dir.join("output")).env("GITHUB_STEP_SUMMARY", dir.join("summary"));
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default().lines().map(str::to_string).collect();
    let _ = std::fs::remove_dir_all(&dir);
    args
}

#[test]
fn every_action_input_reaches_dualstack() {
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap_or_default();
    let inputs: Vec<&str> = action
        .split("\ninputs:\n")
        .nth(1)
        .and_then(|rest| rest.split("\noutputs:").next())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("  ").and_then(|l| l.strip_suffix(':')))
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(inputs.len(), 19, "{inputs:?}");
    for input in &inputs {
        assert!(action.contains(&format!("${{{{ inputs.{input} }}}}")), "input {input} is not used");
    }
    let run = action_passes(&[
        ("MODE", "dual"), ("SUITE", "services,dataplane"), ("FILTER", "S1*"), ("SKIP", "D13*"), ("SUITE_DIR", "vendor"),
        ("REPORT_DIR", "out"), ("CNI_MANIFEST", "dual=a.yaml\nipv6=b.yaml\n"), ("LOAD_IMAGES", "my/cni:1\nmy/helper:1"),
        ("LOAD_ARCHIVES", "extra.tar"), ("WORKERS", "2"), ("KUBE_PROXY", "nftables"), ("LOAD_BALANCER", "none"), ("NETWORK_POLICY", "kube-network-policies"), ("NODE_IMAGE", "node:1"),
        ("SHARD", "1/2"), ("JOBS", "3"),
    ]);
    let expected = "run --mode dual --report-dir out --jobs 3 --suite services --suite dataplane --filter S1* --skip D13* --suite-dir vendor \
        --workers 2 --kube-proxy nftables --load-balancer none --network-policy kube-network-policies --cni-manifest dual=a.yaml --cni-manifest ipv6=b.yaml --load-image my/cni:1 --load-image my/helper:1 \
        --load-archive extra.tar --node-image node:1 --shard 1/2";
    assert_eq!(run, expected.split_whitespace().collect::<Vec<_>>());
    let existing = action_passes(&[("MODE", "ipv6"), ("KUBECONFIG_FILE", "kc"), ("REPORT_DIR", "out"), ("JOBS", "2"), ("CNI_INSTALL_CMD", "./install.sh")]);
    assert_eq!(existing, "run --mode ipv6 --report-dir out --jobs 2 --kubeconfig kc --cni-install-cmd ./install.sh".split_whitespace().collect::<Vec<_>>());
    let merged = action_passes(&[("REPORT_DIR", "merged"), ("JOBS", "2"), ("MERGE", "reports-*")]);
    assert_eq!(merged, ["report", "merge", "reports-a", "reports-b", "--out", "merged"]);
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare installs shellcheck); run with --include-ignored"]
fn shell_scripts_pass_shellcheck() {
    // The action's inline script is extracted so it is checked too.
    let script = action_script();
    let extracted = std::env::temp_dir().join(format!("dualstack-action-{}.sh", std::process::id()));
    std::fs::write(&extracted, format!("#!/usr/bin/env bash\n{script}\n")).unwrap();
    let scripts = ["fixtures/offline/prepare.sh", "fixtures/offline/build-go.sh", "fixtures/offline/build-flannel.sh", "fixtures/offline/rootfs.sh",
        "fixtures/offline/docker-engine.sh", "fixtures/offline/host-limits.sh", "fixtures/offline/host-packages.sh", "fixtures/offline/as-root.sh",
        "fixtures/offline/runc-nosysres", "fixtures/cni/dualstack-cni", ".ci/run"];
    let out = Command::new("shellcheck")
        .args(["-S", "warning"])
        .args(scripts)
        .arg(&extracted)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("shellcheck: {e}"));
    let _ = std::fs::remove_file(&extracted);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
