//! The runner: selects scenarios for a mode, runs them concurrently (each in its own labelled
//! namespace, deleted afterwards) with a timeout each, and emits one event per (scenario, mode).

use crate::detect::ClusterFacts;
use crate::mode::Mode;
use crate::probe_pod;
use crate::scenario::Scenario;
use crate::services::{self, AddressBook};
use futures::StreamExt;
use globset::{Glob, GlobMatcher};
use kube::Client;
use reports::{CaseResult, Event, Status};
use std::time::{Duration, Instant};

/// `--filter` / `--skip` patterns: globs matched against `ID` and `SUITE/ID`; and `--shard`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    filter: Vec<(String, GlobMatcher)>,
    skip: Vec<(String, GlobMatcher)>,
    shard: Option<Shard>,
}

/// `--shard INDEX/COUNT` (1-based): a deterministic split of the rows, by a stable hash of
/// `SUITE/ID`, so the jobs of a CI matrix together run every row exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s.split_once('/').and_then(|(i, n)| Some((i.parse::<u32>().ok()?, n.parse::<u32>().ok()?)));
        match parsed {
            Some((index, count)) if count >= 1 && (1..=count).contains(&index) => Ok(Self { index, count }),
            _ => Err(format!("--shard '{s}': expected INDEX/COUNT with 1 <= INDEX <= COUNT, e.g. 1/2")),
        }
    }
}

impl Shard {
    /// Whether `suite/id` belongs to this shard (FNV-1a: stable across runs, platforms, versions).
    pub fn contains(&self, suite: &str, id: &str) -> bool {
        let hash = format!("{suite}/{id}").bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        hash % u64::from(self.count) == u64::from(self.index - 1)
    }
}

impl Selection {
    pub fn new(filter: &[String], skip: &[String]) -> crate::Result<Self> {
        let compile = |patterns: &[String], flag: &str| -> crate::Result<Vec<(String, GlobMatcher)>> {
            patterns
                .iter()
                .map(|p| {
                    Glob::new(p)
                        .map(|g| (p.clone(), g.compile_matcher()))
                        .map_err(|e| crate::Error::Usage(format!("{flag} '{p}': {e}")))
                })
                .collect()
        };
        Ok(Self { filter: compile(filter, "--filter")?, skip: compile(skip, "--skip")?, shard: None })
    }

    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Whether the row is this job's at all; rows of other shards are not reported here.
    pub fn in_shard(&self, suite: &str, id: &str) -> bool {
        self.shard.is_none_or(|s| s.contains(suite, id))
    }

    /// Why the scenario is not selected, if it is not.
    fn excludes(&self, scenario: &Scenario) -> Option<String> {
        self.excludes_id(&scenario.suite, &scenario.id)
    }

    /// Why the row `suite/id` is not selected, if it is not.
    pub fn excludes_id(&self, suite: &str, id: &str) -> Option<String> {
        let qualified = format!("{suite}/{id}");
        let hit = |m: &GlobMatcher| m.is_match(id) || m.is_match(&qualified);
        if let Some((p, _)) = self.skip.iter().find(|(_, m)| hit(m)) {
            return Some(format!("skipped by --skip {p}"));
        }
        if !self.filter.is_empty() && !self.filter.iter().any(|(_, m)| hit(m)) {
            return Some("not selected by --filter".into());
        }
        None
    }
}

/// What happens to a scenario in a mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Run,
    Skip(String),
}

pub fn plan(scenario: &Scenario, mode: Mode, selection: &Selection) -> Plan {
    if !scenario.modes.contains(&mode) {
        let claimed: Vec<&str> = scenario.modes.iter().map(|m| m.name()).collect();
        return Plan::Skip(format!("applies to {} only", claimed.join(", ")));
    }
    selection.excludes(scenario).map_or(Plan::Run, Plan::Skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn shards_partition_the_rows() {
        let ids: Vec<String> = (0..200).map(|i| format!("S{i:03}")).collect();
        for count in 1..=5 {
            let shards: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
            for id in &ids {
                let owners = shards.iter().filter(|s| s.contains("services", id)).count();
                assert_eq!(owners, 1, "{id} in {owners} of {count} shards");
            }
        }
    }

    #[rstest]
    #[case("1/2", Ok(Shard { index: 1, count: 2 }))]
    #[case("2/2", Ok(Shard { index: 2, count: 2 }))]
    #[case("0/2", Err(()))]
    #[case("3/2", Err(()))]
    #[case("1/0", Err(()))]
    #[case("half", Err(()))]
    fn shard_syntax(#[case] text: &str, #[case] expected: Result<Shard, ()>) {
        assert_eq!(text.parse::<Shard>().map_err(|_| ()), expected);
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub concurrency: usize,
    pub case_timeout: Duration,
    pub selection: Selection,
    /// Test-only: judge against the expectations of this mode instead of the detected one, to prove
    /// that verdicts follow the expectations (the cluster's real mode is still used for addresses).
    pub judge_as: Option<Mode>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { concurrency: 16, case_timeout: Duration::from_secs(30), selection: Selection::default(), judge_as: None }
    }
}

fn base_result(scenario: &Scenario, mode: Mode) -> CaseResult {
    CaseResult {
        suite: scenario.suite.clone(),
        group: scenario.group.clone(),
        id: scenario.id.clone(),
        title: scenario.title.clone(),
        mode: mode.name().to_string(),
        status: Status::Skipped,
        duration: Duration::ZERO,
        expected: String::new(),
        actual: String::new(),
        message: String::new(),
        diagnostics: String::new(),
        retried: Vec::new(),
    }
}

/// Runs the Service scenarios of `mode` (the cluster's detected mode) and emits their events.
pub async fn run_services(
    client: &Client,
    facts: &ClusterFacts,
    scenarios: &[Scenario],
    options: &RunOptions,
    emit: &(dyn Fn(Event) + Sync),
) -> Vec<CaseResult> {
    let mode = facts.mode;
    let judge_mode = options.judge_as.unwrap_or(mode);
    let mut results = Vec::new();
    let mut runnable = Vec::new();
    for scenario in scenarios.iter().filter(|s| options.selection.in_shard(&s.suite, &s.id)) {
        // A forced judge mode runs only rows that claim both modes: their outcome on this cluster
        // is defined by the table, so exactly the rows whose expectations differ must fail.
        let planned = match plan(scenario, mode, &options.selection) {
            Plan::Run if !scenario.modes.contains(&judge_mode) => Plan::Skip(format!("does not apply to {judge_mode}")),
            other => other,
        };
        match planned {
            Plan::Run => runnable.push(scenario),
            Plan::Skip(reason) => {
                let mut result = base_result(scenario, mode);
                result.message = reason;
                emit(Event::CaseFinished(result.clone()));
                results.push(result);
            }
        }
    }
    let book = AddressBook::new(services::allocated_addresses(client).await.unwrap_or_default());
    let finished: Vec<CaseResult> = futures::stream::iter(runnable)
        .map(|scenario| {
            let book = &book;
            async move {
                let result = run_one(client, facts, scenario, judge_mode, book, options.case_timeout).await;
                emit(Event::CaseFinished(result.clone()));
                result
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    results.extend(finished);
    results
}

async fn run_one(
    client: &Client,
    facts: &ClusterFacts,
    scenario: &Scenario,
    judge_mode: Mode,
    book: &AddressBook,
    timeout: Duration,
) -> CaseResult {
    let started = Instant::now();
    let mut result = base_result(scenario, facts.mode);
    let Some(expectation) = scenario.expect.get(&judge_mode) else {
        result.message = format!("no expectation for {judge_mode}");
        return result;
    };
    let addresses = book.resolve(scenario, facts);
    let retries = crate::retry::Retries::default();
    let attempt = async {
        let namespace = probe_pod::create_namespace(client, &format!("dualstack-{}", scenario.id.to_lowercase()), &retries).await?;
        let outcome = services::execute(client, &namespace, scenario, &addresses, &retries).await;
        probe_pod::delete_namespace(client, &namespace).await;
        outcome.map(|o| (o, namespace))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(((answer, before), namespace))) => {
            let verdict = services::judge(expectation, judge_mode, facts, &addresses, &answer, before.as_ref());
            result.status = if verdict.passed { Status::Passed } else { Status::Failed };
            result.expected = verdict.expected;
            result.actual = verdict.actual;
            result.message = verdict.differences.join("; ");
            result.diagnostics = format!(
                "row {} in namespace {namespace}; cluster {} {}{}",
                scenario.origin,
                facts.mode,
                facts.server_version,
                scenario.note.as_ref().map(|n| format!("; note: {n}")).unwrap_or_default()
            );
        }
        Ok(Err(e)) => {
            result.status = Status::Error;
            result.message = e.to_string();
        }
        Err(_) => {
            result.status = Status::Error;
            result.message = format!("timed out after {}s waiting for the API server to answer the scenario's requests", timeout.as_secs());
        }
    }
    result.duration = started.elapsed();
    result.retried = retries.taken();
    result
}
