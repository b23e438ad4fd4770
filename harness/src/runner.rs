//! The runner: executes one mode's share of the plan against a cluster. Skipped cases are reported
//! at once; each suite then runs through its check kind (prepare, cases with a bounded concurrency
//! and a timeout each, diagnostics after failures, cleanup), and every case becomes one event named
//! exactly as the plan names it.

use crate::checks::dataplane::DataplaneChecks;
use crate::checks::services::ServiceChecks;
use crate::checks::{CheckKind, Outcome, Target};
use crate::error::Result;
use crate::mode::Mode;
use crate::plan::{PlannedCase, Work};
use futures::StreamExt;
use reports::{CaseResult, Event, Status};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Service cases in flight at once.
    pub concurrency: usize,
    /// Seconds one Service case may take.
    pub case_timeout: Duration,
    /// Test-only: judge Service rows against the expectations of this mode (see `ServiceChecks`).
    pub judge_as: Option<Mode>,
    /// Test-only: a shell command run once the data-plane fixture is ready (fault injection).
    pub after_fixture_hook: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { concurrency: 16, case_timeout: Duration::from_secs(30), judge_as: None, after_fixture_hook: None }
    }
}

/// Runs `cases` (one mode's share of the plan) against `target`; emits every case's result.
pub async fn run_mode(target: &Target<'_>, cases: &[&PlannedCase], options: &RunOptions, emit: &(dyn Fn(Event) + Sync)) -> Result<()> {
    let mode = target.facts.mode;
    for case in cases.iter().filter(|c| !c.runs()) {
        emit(Event::CaseFinished(case.result()));
    }
    emit(Event::ModeStarted { mode: mode.name().into(), cases: cases.iter().filter(|c| c.runs()).count() });
    let mut suites: Vec<&str> = Vec::new();
    for case in cases.iter().filter(|c| c.runs()) {
        if !suites.contains(&case.suite.as_str()) {
            suites.push(&case.suite);
        }
    }
    for suite in suites {
        let of_suite: Vec<&PlannedCase> = cases.iter().copied().filter(|c| c.runs() && c.suite == suite).collect();
        let started = Instant::now();
        // A suite is all Service rows or all data-plane rows: the table schema goes with the suite.
        if of_suite.iter().all(|c| matches!(c.work, Work::Service(_))) {
            let kind = ServiceChecks { concurrency: options.concurrency, case_timeout: options.case_timeout, judge_as: options.judge_as };
            run_suite(&kind, target, &of_suite, emit).await?;
        } else {
            let kind = DataplaneChecks { after_fixture_hook: options.after_fixture_hook.clone() };
            run_suite(&kind, target, &of_suite, emit).await?;
        }
        let duration = started.elapsed();
        println!("[{mode}] phase {suite}: {:.1}s", duration.as_secs_f64());
        emit(Event::SuiteFinished { mode: mode.name().into(), suite: suite.into(), duration });
    }
    Ok(())
}

/// One suite's cases through its check kind.
async fn run_suite<K: CheckKind>(kind: &K, target: &Target<'_>, cases: &[&PlannedCase], emit: &(dyn Fn(Event) + Sync)) -> Result<()> {
    let context = kind.prepare(target).await?;
    let timeout = kind.case_timeout();
    let mut in_start_order = cases.to_vec();
    in_start_order.sort_by_key(|case| !kind.waits_long(target, case));
    let failures: usize = futures::stream::iter(in_start_order)
        .map(|case| {
            let context = &context;
            async move {
                let started = Instant::now();
                let outcome = match tokio::time::timeout(timeout, kind.run(context, target, case)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::error(format!("timed out after {}s", timeout.as_secs())),
                };
                let result = named(case, outcome, started.elapsed());
                let failed = matches!(result.status, Status::Failed | Status::Error);
                emit(Event::CaseFinished(result));
                usize::from(failed)
            }
        })
        .buffer_unordered(kind.concurrency())
        .collect::<Vec<usize>>()
        .await
        .into_iter()
        .sum();
    if failures > 0
        && let Some(text) = kind.diagnostics(&context).await
    {
        emit(Event::Diagnostics { mode: target.facts.mode.name().into(), text });
    }
    kind.finish(context).await;
    Ok(())
}

/// The case's result: the plan's names, the kind's verdict, the runner's time.
fn named(case: &PlannedCase, outcome: Outcome, duration: Duration) -> CaseResult {
    CaseResult {
        status: outcome.status,
        duration,
        expected: outcome.expected,
        actual: outcome.actual,
        message: outcome.message,
        diagnostics: outcome.diagnostics,
        retried: outcome.retried,
        ..case.result()
    }
}
