//! Ctrl-C and SIGTERM: the first one interrupts (the session reports what it planned and did not
//! finish, and deletes its clusters); a second one while it cleans up ends the process at once.

use crate::exit;

/// Waits for Ctrl-C or SIGTERM; returns the exit code (130 or 143).
pub async fn interrupted() -> u8 {
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
        let left = std::fs::read_dir(harness::machine::clusters_dir())
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        eprintln!("stopped at once; clusters possibly left behind: [{left}] (remove with `dualstack cluster down --name NAME`)");
        std::process::exit(i32::from(code));
    });
    code
}
