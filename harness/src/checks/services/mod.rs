//! The Service check kind: each row creates (and maybe updates) a Service in its own labelled
//! namespace and judges the API server's answer against the row's expectation for the mode.

pub(crate) mod execute;
mod judge;

pub use execute::{Answer, Placeholders};
pub use judge::{Verdict, judge};

use super::{CheckKind, Outcome, Target};
use crate::error::Result;
use crate::mode::Mode;
use crate::plan::{PlannedCase, Work};
use crate::retry::Retries;
use execute::AddressBook;
use std::time::Duration;

pub struct ServiceChecks {
    pub concurrency: usize,
    pub case_timeout: Duration,
    /// Test-only: judge against the expectations of this mode instead of the detected one, to prove
    /// that verdicts follow the expectations (the cluster's real mode is still used for addresses).
    pub judge_as: Option<Mode>,
}

impl CheckKind for ServiceChecks {
    type Context = AddressBook;

    fn concurrency(&self) -> usize {
        self.concurrency.max(1)
    }

    fn case_timeout(&self) -> Duration {
        self.case_timeout
    }

    async fn prepare(&self, target: &Target<'_>, _cases: &[&PlannedCase]) -> Result<AddressBook> {
        Ok(AddressBook::new(execute::allocated_addresses(target.client).await.unwrap_or_default()))
    }

    async fn run(&self, book: &AddressBook, target: &Target<'_>, case: &PlannedCase) -> Outcome {
        let Work::Service(index) = case.work else { return Outcome::error(format!("{} is not a Service row", case.id)) };
        let Some(scenario) = target.tables.services.get(index) else { return Outcome::error(format!("no Service row {index}")) };
        let (facts, client) = (target.facts, target.client);
        let judge_mode = self.judge_as.unwrap_or(facts.mode);
        let Some(expectation) = scenario.expect.get(&judge_mode) else {
            return Outcome::error(format!("no expectation for {judge_mode}"));
        };
        let addresses = book.resolve(scenario, facts);
        let retries = Retries::default();
        let mut outcome = match execute::execute_in_own_namespace(client, scenario, &addresses, &retries).await {
            Ok((answer, before, namespace)) => {
                let verdict = judge(expectation, judge_mode, facts, &addresses, &answer, before.as_ref());
                let note = scenario.note.as_ref().map(|n| format!("; note: {n}")).unwrap_or_default();
                verdict.outcome(format!("row {} in namespace {namespace}; cluster {} {}{note}", scenario.origin, facts.mode, facts.server_version))
            }
            Err(e) => Outcome::error(e.to_string()),
        };
        outcome.retried = retries.taken();
        outcome
    }

    async fn diagnostics(&self, _: &AddressBook) -> Option<String> {
        // Each case's own system-out names its row and namespace; nothing is shared to collect.
        None
    }

    async fn finish(&self, _: AddressBook) {}
}
