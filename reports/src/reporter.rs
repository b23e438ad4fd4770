//! The one sink of a run's events: each goes to the console and into the aggregated report, so the
//! live output and the written reports are built from the same stream (as nextest's reporter does).

use crate::console::{Console, Verbosity};
use crate::{Event, Report};
use std::sync::{Mutex, PoisonError};

/// Fans each event out to the console and the report. Shared by reference between the concurrent
/// futures of a run, hence `&self` and a lock around the report.
pub struct Reporter {
    console: Console,
    report: Mutex<Report>,
}

impl Reporter {
    pub fn new(verbosity: Verbosity) -> Self {
        Self { console: Console::new(verbosity), report: Mutex::new(Report::default()) }
    }

    pub fn write_event(&self, event: Event) {
        self.console.on(&event);
        // A poisoned lock only means another writer panicked mid-record; the results recorded so
        // far are still worth reporting, so keep going rather than drop this one.
        self.report.lock().unwrap_or_else(PoisonError::into_inner).record(&event);
    }

    /// Ends the console's live line and hands back everything recorded.
    pub fn finish(self) -> Report {
        self.console.finish();
        self.report.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}
