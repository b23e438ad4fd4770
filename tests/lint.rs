//! The shipped GitHub Action and example workflow pass actionlint (which also checks the workflow
//! against the action's declared inputs), and every shell script passes shellcheck.

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

#[test]
#[ignore = "needs a prepared machine (dualstack prepare installs shellcheck); run with --include-ignored"]
fn shell_scripts_pass_shellcheck() {
    // The action's inline script is extracted so it is checked too.
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
