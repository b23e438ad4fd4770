//! The console: a live progress line on a terminal (timestamped lines elsewhere), one line per failed
//! or errored case as it finishes, then a short summary.

use crate::{CaseResult, Event, Report, Status};
use std::collections::BTreeMap;

/// How much the console says while a run goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// The console side of the event stream: on a terminal a live progress line per run (phase-free:
/// cases done/total and failures so far), elsewhere plain lines stamped with the time since start.
pub struct Console {
    verbosity: Verbosity,
    terminal: bool,
    started: std::time::Instant,
    progress: std::sync::Mutex<std::collections::BTreeMap<String, (usize, usize, usize)>>,
}

impl Console {
    pub fn new(verbosity: Verbosity) -> Self {
        use std::io::IsTerminal;
        Self { verbosity, terminal: std::io::stdout().is_terminal(), started: std::time::Instant::now(), progress: Default::default() }
    }

    pub fn on(&self, event: &crate::Event) {
        let line = match (event, self.verbosity) {
            (crate::Event::CaseFinished(case), Verbosity::Verbose) if case.status == crate::Status::Passed && case.retried.is_empty() => {
                Some(format!("PASS {}/{}", case.suite, case.name()))
            }
            (crate::Event::CaseFinished(case), Verbosity::Verbose) if case.status == crate::Status::Skipped => {
                Some(format!("SKIP {}/{}: {}", case.suite, case.name(), case.message))
            }
            (crate::Event::SuiteFinished { mode, suite, duration }, Verbosity::Verbose) => {
                Some(format!("[{mode}] suite {suite} finished in {:.1}s", duration.as_secs_f64()))
            }
            (crate::Event::CaseFinished(case), Verbosity::Quiet) if !matches!(case.status, crate::Status::Failed | crate::Status::Error) => None,
            (crate::Event::ModeStarted { .. } | crate::Event::ModeFinished { .. }, Verbosity::Quiet) => None,
            (event, _) => line(event),
        };
        let status = self.track(event);
        if self.terminal {
            // Clear the progress line, print what there is, redraw the progress line.
            print!("\r\x1b[2K");
            if let Some(line) = line {
                println!("{line}");
            }
            if self.verbosity != Verbosity::Quiet {
                print!("{status}");
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        } else if let Some(line) = line {
            println!("[{:>7.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Updates the per-mode counters and renders them: `[dual] 45/72 done, 1 failed`.
    fn track(&self, event: &crate::Event) -> String {
        let Ok(mut progress) = self.progress.lock() else { return String::new() };
        match event {
            crate::Event::ModeStarted { mode, cases } => {
                progress.entry(mode.clone()).or_default().1 = *cases;
            }
            crate::Event::CaseFinished(case) if case.status != crate::Status::Skipped => {
                let entry = progress.entry(case.mode.clone()).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(entry.0);
                if matches!(case.status, crate::Status::Failed | crate::Status::Error) {
                    entry.2 += 1;
                }
            }
            _ => {}
        }
        progress.iter().map(|(mode, (done, total, failed))| format!("[{mode}] {done}/{total} done, {failed} failed")).collect::<Vec<_>>().join("  ")
    }

    pub fn finish(&self) {
        if self.terminal && self.verbosity != Verbosity::Quiet {
            println!();
        }
    }
}

/// The line printed for an event, if any.
pub fn line(event: &Event) -> Option<String> {
    match event {
        Event::ModeStarted { mode, cases } => Some(format!("[{mode}] running {cases} cases")),
        Event::CaseFinished(case) if matches!(case.status, Status::Failed | Status::Error) => Some(failure_line(case)),
        Event::CaseFinished(case) if !case.retried.is_empty() => {
            Some(format!("FLAKY {}/{}: passed after {}", case.suite, case.name(), case.retried.join("; ")))
        }
        Event::CaseFinished(_) => None,
        Event::SetupFailed { mode, phase, message } => Some(format!("[{mode}] SETUP FAILED in {phase}: {message}")),
        Event::ModeFinished { mode, duration } => Some(format!("[{mode}] finished in {:.1}s", duration.as_secs_f64())),
        Event::Diagnostics { mode, text } => text.lines().next().map(|first| format!("[{mode}] diagnostics: {first}")),
        // Only verbose consoles name suite times; the run's own time is in the closing summary.
        Event::SuiteFinished { .. } | Event::RunFinished { .. } | Event::Property(_) => None,
    }
}

fn failure_line(case: &CaseResult) -> String {
    let label = if case.status == Status::Failed { "FAIL" } else { "ERROR" };
    format!("{label} {}/{}: {}\n     expected: {}\n     actual:   {}", case.suite, case.name(), case.message, case.expected, case.actual)
}

/// Counts per (suite, mode), then the totals.
pub fn summary(report: &Report) -> String {
    let mut rows: BTreeMap<(String, String), [usize; 4]> = BTreeMap::new();
    for case in &report.cases {
        let counts = rows.entry((case.suite.clone(), case.mode.clone())).or_default();
        counts[case.status as usize] += 1;
    }
    let mut out = String::from("suite        mode               passed failed errors skipped\n");
    for ((suite, mode), [passed, failed, errors, skipped]) in &rows {
        out.push_str(&format!("{suite:<12} {mode:<18} {passed:>6} {failed:>6} {errors:>6} {skipped:>7}\n"));
    }
    out.push_str(&format!(
        "total: {} passed, {} failed, {} errors, {} skipped -> {}\n",
        report.count(Status::Passed),
        report.count(Status::Failed),
        report.count(Status::Error),
        report.count(Status::Skipped),
        if report.passed() { "PASS" } else { "FAIL" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn finished(mode: &str, status: Status) -> Event {
        Event::CaseFinished(CaseResult {
            suite: "services".into(),
            group: "allocation".into(),
            id: "S01".into(),
            title: "t".into(),
            mode: mode.into(),
            status,
            duration: Duration::ZERO,
            expected: String::new(),
            actual: String::new(),
            message: String::new(),
            diagnostics: String::new(),
            retried: vec![],
        })
    }

    #[test]
    fn progress_counts_done_and_failed_per_mode_and_ignores_skips() {
        let console = Console::new(Verbosity::Normal);
        console.track(&Event::ModeStarted { mode: "dual".into(), cases: 3 });
        console.track(&Event::ModeStarted { mode: "ipv4".into(), cases: 2 });
        console.track(&finished("dual", Status::Passed));
        console.track(&finished("dual", Status::Skipped));
        console.track(&finished("ipv4", Status::Error));
        let line = console.track(&finished("dual", Status::Failed));
        assert_eq!(line, "[dual] 2/3 done, 1 failed  [ipv4] 1/2 done, 1 failed");
    }
}
