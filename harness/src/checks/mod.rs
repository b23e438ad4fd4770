//! The check kinds: Service rows (API verdicts) and data-plane actions (traffic, addressing, DNS).
//! Each is one `CheckKind` implementation that the runner drives the same way: prepare once per
//! mode, run each planned case, collect diagnostics after failures, clean up.

pub mod conversion;
pub mod dataplane;
pub mod services;

use crate::detect::ClusterFacts;
use crate::error::Result;
use crate::plan::PlannedCase;
use crate::table::Tables;
use reports::Status;
use std::time::Duration;

/// The cluster a mode's cases run against.
pub struct Target<'a> {
    pub client: &'a kube::Client,
    pub facts: &'a ClusterFacts,
    pub tables: &'a Tables,
    /// A KIND cluster the run created, which the conversion suite may reconfigure.
    pub convertible: Option<crate::convert::Convertible<'a>>,
}

/// A case's verdict, before the runner names and times it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub expected: String,
    pub actual: String,
    pub message: String,
    pub diagnostics: String,
    /// Transient errors retried on the way.
    pub retried: Vec<String>,
}

impl Outcome {
    /// A case that could not reach a verdict.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: Status::Error,
            expected: String::new(),
            actual: String::new(),
            message: message.into(),
            diagnostics: String::new(),
            retried: Vec::new(),
        }
    }
}

/// Runs a test-only fault-injection hook (`sh -ec HOOK`) with `env`; `what` names it in the error.
pub(crate) async fn run_hook(what: &str, hook: &str, env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    let status = tokio::process::Command::new("sh").args(["-ec", hook]).envs(env.iter().copied()).status().await;
    if status.is_ok_and(|s| s.success()) {
        Ok(())
    } else {
        Err(crate::error::Error::Environment(format!("the {what} hook failed: {hook}")))
    }
}

/// One kind of check, driven by the runner.
pub(crate) trait CheckKind {
    /// What the kind sets up once per mode before its cases (an address book, a fixture).
    type Context;

    /// Cases in flight at once.
    fn concurrency(&self) -> usize;

    /// How long one case may take before the runner reports it as timed out.
    fn case_timeout(&self) -> Duration;

    /// Whether the case spends most of its time waiting out a window (a path that must stay
    /// silent, a client container started outside the cluster). Those run in a lane of their own
    /// beside the busy ones, so that their waiting overlaps the other cases instead of trailing
    /// them or holding the busy lane's places.
    fn waits_long(&self, _target: &Target<'_>, _case: &PlannedCase) -> bool {
        false
    }

    /// What the suite's `cases` (those that run) need, made once before any of them starts.
    async fn prepare(&self, target: &Target<'_>, cases: &[&PlannedCase]) -> Result<Self::Context>;

    async fn run(&self, context: &Self::Context, target: &Target<'_>, case: &PlannedCase) -> Outcome;

    /// What to attach to the mode's failed cases (pod states, events), after any failed.
    async fn diagnostics(&self, context: &Self::Context) -> Option<String>;

    async fn finish(&self, context: Self::Context);
}
