//! The binary stands alone: copied out of the build and run with its checkout hidden (a tmpfs
//! mounted over it in a mount namespace of its own), from another directory and with none of
//! cargo's environment, it lists, prepares and runs on the files it carries. (That it builds from
//! the tracked files alone is what every fresh clone's build shows.)

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `binary ARGS` in `dir`, with the checkout hidden under an empty tmpfs and only PATH and HOME
/// in its environment.
fn hidden_checkout(binary: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-ec", r#"mount -t tmpfs hidden "$1"; cd "$2"; shift 2; exec "$@""#, "sh"])
        .arg(checkout())
        .arg(dir)
        .arg(binary)
        .args(args)
        .env_clear()
        .envs(["PATH", "HOME"].into_iter().filter_map(|k| std::env::var(k).ok().map(|v| (k, v))));
    command
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
#[ignore = "needs a prepared machine (dualstack prepare) and root (a mount namespace); run with --include-ignored"]
fn the_binary_works_with_its_checkout_hidden() {
    let scratch = std::env::temp_dir().join(format!("dualstack-installed-{:x}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (installed, elsewhere) = (scratch.join("bin/dualstack"), scratch.join("elsewhere"));
    assert!(!scratch.starts_with(checkout()), "the scratch directory {} is inside the checkout", scratch.display());
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_dualstack"), &installed).unwrap();
    let from_checkout = run(Command::new(env!("CARGO_BIN_EXE_dualstack")).arg("list"));
    let dualstack = |args: &[&str]| run(&mut hidden_checkout(&installed, &elsewhere, args));

    // The checkout is out of sight.
    let looked = run(&mut hidden_checkout(Path::new("ls"), &elsewhere, &["-A", &checkout().to_string_lossy()]));
    assert!(looked.status.success() && text(&looked).trim().is_empty(), "the checkout is not hidden: {}", text(&looked));

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
