//! The runner: executes one mode's share of the plan against a cluster. Skipped cases are reported
//! at once; each suite then runs through its check kind (prepare, cases with a bounded concurrency
//! and a timeout each, diagnostics after failures, cleanup), and every case becomes one event named
//! exactly as the plan names it.

use crate::checks::conversion::ConversionChecks;
use crate::checks::dataplane::DataplaneChecks;
use crate::checks::services::ServiceChecks;
use crate::checks::{CheckKind, Outcome, Target};
use crate::error::{Error, Result};
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
    /// Test-only: a shell command run once a phase's own objects exist, before its cases (fault
    /// injection): the data-plane fixture, ready; the conversion suite's, made, before it converts.
    pub after_fixture_hook: Option<String>,
}

/// Why one mode stopped before its cases were done: the phase it was in, named as the console
/// names phases (`create`, `cni`, `dataplane, network-policy`, ...), and the error. The phase is
/// where the error happened, not what kind of error it is: a timeout waiting for the data-plane
/// fixture is not a failed cluster creation.
#[derive(Debug)]
pub struct Stopped {
    pub phase: String,
    pub error: Error,
}

impl Stopped {
    /// Tags an error with the phase it stopped.
    pub fn in_phase(phase: &str) -> impl FnOnce(Error) -> Stopped + '_ {
        move |error| Stopped { phase: phase.to_string(), error }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { concurrency: 16, case_timeout: Duration::from_secs(30), judge_as: None, after_fixture_hook: None }
    }
}

/// Runs `cases` (one mode's share of the plan) against `target`; emits every case's result.
pub async fn run_mode(target: &Target<'_>, cases: &[&PlannedCase], options: &RunOptions, emit: &(dyn Fn(Event) + Sync)) -> std::result::Result<(), Stopped> {
    let mode = target.facts.mode;
    for case in cases.iter().filter(|c| !c.runs()) {
        emit(Event::CaseFinished(case.result()));
    }
    emit(Event::ModeStarted { mode: mode.name().into(), cases: cases.iter().filter(|c| c.runs()).count() });
    // The suites of one check kind run as one phase: one prepare (one data-plane fixture for the
    // data plane and NetworkPolicy), and their cases at once, so that one suite's windows overlap
    // the other's work. A suite is all Service rows or all data-plane rows (the schema goes with it).
    let running: Vec<&PlannedCase> = cases.iter().copied().filter(|c| c.runs()).collect();
    // The conversion suite goes last: the cluster is another mode after it.
    let (conversion, running): (Vec<&PlannedCase>, Vec<&PlannedCase>) = running.into_iter().partition(|c| matches!(c.work, Work::Conversion(_) | Work::ConversionCheck(_)));
    let (services, dataplane): (Vec<&PlannedCase>, Vec<&PlannedCase>) = running.into_iter().partition(|c| matches!(c.work, Work::Service(_)));
    for phase in [services, dataplane, conversion].into_iter().filter(|p| !p.is_empty()) {
        let started = Instant::now();
        let name = suites_of(&phase).join(", ");
        let finished = match phase[0].work {
            Work::Service(_) => {
                let kind = ServiceChecks { concurrency: options.concurrency, case_timeout: options.case_timeout, judge_as: options.judge_as };
                run_phase(&kind, target, &phase, emit).await
            }
            Work::Conversion(_) | Work::ConversionCheck(_) => {
                let kind = ConversionChecks { concurrency: options.concurrency, case_timeout: options.case_timeout, before_conversion_hook: options.after_fixture_hook.clone() };
                run_phase(&kind, target, &phase, emit).await
            }
            Work::Dataplane { .. } | Work::None => {
                let kind = DataplaneChecks { after_fixture_hook: options.after_fixture_hook.clone() };
                run_phase(&kind, target, &phase, emit).await
            }
        }
        .map_err(Stopped::in_phase(&name))?;
        println!("[{mode}] phase {name}: {:.1}s", started.elapsed().as_secs_f64());
        for (suite, duration) in finished {
            emit(Event::SuiteFinished { mode: mode.name().into(), suite, duration });
        }
    }
    Ok(())
}

/// The suites of a phase's cases, in the order their cases were planned: the phase's name, and
/// the order its suites' times are reported in.
fn suites_of<'a>(cases: &[&'a PlannedCase]) -> Vec<&'a str> {
    let mut suites: Vec<&str> = Vec::new();
    for case in cases {
        if !suites.contains(&case.suite.as_str()) {
            suites.push(&case.suite);
        }
    }
    suites
}

/// One phase's cases (every suite of one check kind) through that kind; for each suite, in the
/// order its cases were planned, how long after the phase's start its last case finished.
async fn run_phase<'a, K: CheckKind>(kind: &K, target: &Target<'_>, cases: &[&'a PlannedCase], emit: &(dyn Fn(Event) + Sync)) -> Result<Vec<(String, Duration)>> {
    let phase_started = Instant::now();
    let finished: Vec<(String, Duration)> = suites_of(cases).into_iter().map(|suite| (suite.to_string(), Duration::ZERO)).collect();
    let finished = std::sync::Mutex::new(finished);
    let context = kind.prepare(target, cases).await?;
    let timeout = kind.case_timeout();
    // Cases that mostly wait (a window of silence, a client outside) run in a lane of their own,
    // twice as wide as the busy ones' (the machine bounds that): in one lane, idle cases would hold
    // its places, and a second wave of them would wait out its windows again.
    let (waiting, busy): (Vec<&PlannedCase>, Vec<&PlannedCase>) = cases.iter().copied().partition(|case| kind.waits_long(target, case));
    let lane = |lane: Vec<&'a PlannedCase>, concurrency: usize| {
        let (context, finished) = (&context, &finished);
        futures::stream::iter(lane)
            .map(move |case| run_case(kind, context, target, case, Clock { phase_started, timeout }, finished, emit))
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<usize>>()
    };
    let (waited, worked) = tokio::join!(lane(waiting, 2 * kind.concurrency()), lane(busy, kind.concurrency()));
    let failures: usize = waited.into_iter().chain(worked).sum();
    if failures > 0
        && let Some(text) = kind.diagnostics(&context).await
    {
        emit(Event::Diagnostics { mode: target.facts.mode.name().into(), text });
    }
    kind.finish(context).await;
    Ok(finished.into_inner().unwrap_or_default())
}

/// When a phase started, and how long each of its cases may take.
#[derive(Clone, Copy)]
struct Clock {
    phase_started: Instant,
    timeout: Duration,
}

/// One case through its kind, its result emitted and its suite's finish time moved on; 1 when it
/// failed.
async fn run_case<K: CheckKind>(kind: &K, context: &K::Context, target: &Target<'_>, case: &PlannedCase, clock: Clock, finished: &std::sync::Mutex<Vec<(String, Duration)>>, emit: &(dyn Fn(Event) + Sync)) -> usize {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(clock.timeout, kind.run(context, target, case)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::error(format!("timed out after {}s", clock.timeout.as_secs())),
    };
    let result = named(case, outcome, started.elapsed());
    if let Ok(mut finished) = finished.lock()
        && let Some((_, at)) = finished.iter_mut().find(|(suite, _)| *suite == case.suite)
    {
        *at = clock.phase_started.elapsed();
    }
    let failed = matches!(result.status, Status::Failed | Status::Error);
    emit(Event::CaseFinished(result));
    usize::from(failed)
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
