//! The binary stands alone: installed with `cargo install` from a copy of the checkout, the copy
//! then moved away, it lists, prepares and runs from another directory on the files it carries.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The checkout's tracked files, copied to `to` (what a clone would hold).
fn copy_checkout(to: &Path) {
    let files = Command::new("git").args(["ls-files", "-z"]).current_dir(checkout()).output().unwrap();
    assert!(files.status.success(), "git ls-files: {}", String::from_utf8_lossy(&files.stderr));
    for file in files.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let relative = Path::new(std::str::from_utf8(file).unwrap());
        let (from, dest) = (checkout().join(relative), to.join(relative));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        // Copied with its permissions: the scripts stay executable.
        std::fs::copy(&from, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    eprintln!("$ {command:?}\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs a prepared machine (dualstack prepare) and cargo; run with --include-ignored"]
fn an_installed_binary_works_with_its_checkout_moved_away() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("installed-{:x}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (source, moved, root, elsewhere) = (scratch.join("checkout"), scratch.join("moved"), scratch.join("root"), scratch.join("elsewhere"));
    copy_checkout(&source);
    std::fs::create_dir_all(&elsewhere).unwrap();
    let from_checkout = run(Command::new(env!("CARGO_BIN_EXE_dualstack")).arg("list"));
    // The debug profile (a release build takes far longer on 2 cores), in a target dir of its own.
    let install = run(Command::new(env!("CARGO"))
        .args(["install", "--locked", "--debug", "--path"])
        .arg(&source)
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(scratch.join("target")));
    assert!(install.status.success(), "cargo install failed");
    std::fs::rename(&source, &moved).unwrap();
    let installed = root.join("bin/dualstack");
    let dualstack = |args: &[&str]| run(Command::new(&installed).args(args).current_dir(&elsewhere));

    // The built-in tables travel with the binary: the same plan as the checkout's build lists.
    let listed = dualstack(&["list"]);
    assert!(listed.status.success());
    assert_eq!(text(&listed), text(&from_checkout));
    assert!(text(&listed).contains("S01") && text(&listed).contains("D01"), "{}", text(&listed));

    // So do the offline toolchain's scripts: prepare finds this machine prepared.
    let prepared = dualstack(&["prepare"]);
    assert!(prepared.status.success() && text(&prepared).contains("ready in"), "{}", text(&prepared));

    let reports = scratch.join("reports");
    let ran = dualstack(&["run", "--mode", "ipv4", "--filter", "S0*", "--filter", "D03*", "--report-dir", &reports.to_string_lossy()]);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran));
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reports.join("results.json")).unwrap()).unwrap();
    let passed = results["totals"]["passed"].as_u64().unwrap_or_default();
    assert!(passed > 0 && results["cases"].as_array().is_some_and(|c| c.iter().any(|c| c["id"].as_str().is_some_and(|id| id.starts_with("D03")))), "{results}");
    let _ = std::fs::remove_dir_all(&scratch);
}
