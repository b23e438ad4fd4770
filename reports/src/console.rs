//! The console: one line per failed or errored case as it finishes, then a short summary.

use crate::{CaseResult, Event, Report, Status};
use std::collections::BTreeMap;

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
