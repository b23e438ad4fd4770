//! dualstack's results and their writers. Knows nothing of Kubernetes: the runner emits `Event`s,
//! every reporter (console, JUnit) consumes the same stream, so they never disagree, and a run that
//! stops early still reports everything up to that point.
#![forbid(unsafe_code)]

pub mod console;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod merge;
mod reporter;

pub use reporter::Reporter;

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Passed,
    Failed,
    /// The case could not reach a verdict (API unreachable, timeout, interrupted).
    Error,
    Skipped,
}

/// One (scenario, mode) result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub suite: String,
    pub group: String,
    pub id: String,
    pub title: String,
    pub mode: String,
    pub status: Status,
    pub duration: Duration,
    pub expected: String,
    pub actual: String,
    /// Why it failed, errored or was skipped, in one line.
    pub message: String,
    /// Diagnostics for the JUnit system-out (events, states, log paths).
    pub diagnostics: String,
    /// Transient errors retried on the way; a passed case with any is flaky, and says so.
    pub retried: Vec<String>,
}

impl CaseResult {
    /// `S12 PreferDualStack gets every configured family [dual]`: stable across runs.
    pub fn name(&self) -> String {
        format!("{} {} [{}]", self.id, self.title, self.mode)
    }
}

/// A fact about what was tested (the CNI, the images loaded, the kube-proxy mode, the node image,
/// the Kubernetes version), for the whole run (`mode` None) or one mode; every report carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub mode: Option<String>,
    pub name: String,
    pub value: String,
}

/// What the runner reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ModeStarted { mode: String, cases: usize },
    CaseFinished(CaseResult),
    /// The mode could not run at all (cluster creation, detection); becomes a failed case so CI
    /// always has a report.
    SetupFailed { mode: String, phase: String, message: String },
    ModeFinished { mode: String, duration: Duration },
    /// What the harness collected after failures in a mode (pod states, events, exported logs);
    /// attached to the system-out of that mode's failed and errored cases.
    Diagnostics { mode: String, text: String },
    /// The wall time of one suite's phase in one mode. Its cases run concurrently, so the sum of
    /// their durations over-counts; JUnit reports this instead.
    SuiteFinished { mode: String, suite: String, duration: Duration },
    /// The wall time of the whole run.
    RunFinished { duration: Duration },
    Property(Property),
}

/// Every result of a run, built from the event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    pub mode_durations: Vec<(String, Duration)>,
    /// (suite, mode, wall time) of each suite phase that ran.
    pub suite_durations: Vec<(String, String, Duration)>,
    /// Wall time of the whole run; None when not recorded (an older results.json).
    pub duration: Option<Duration>,
    /// What was tested, in the order reported; each (mode, name, value) once.
    pub properties: Vec<Property>,
}

impl Report {
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::CaseFinished(case) => self.cases.push(case.clone()),
            Event::SetupFailed { mode, phase, message } => self.cases.push(CaseResult {
                suite: "setup".into(),
                group: "setup".into(),
                id: phase.clone(),
                title: "cluster setup".into(),
                mode: mode.clone(),
                status: Status::Error,
                duration: Duration::ZERO,
                expected: format!("{phase} succeeds"),
                actual: message.clone(),
                message: message.clone(),
                diagnostics: String::new(),
                retried: Vec::new(),
            }),
            Event::ModeFinished { mode, duration } => self.mode_durations.push((mode.clone(), *duration)),
            Event::Diagnostics { mode, text } => {
                for case in self.cases.iter_mut().filter(|c| &c.mode == mode && matches!(c.status, Status::Failed | Status::Error)) {
                    if !case.diagnostics.is_empty() {
                        case.diagnostics.push('\n');
                    }
                    case.diagnostics.push_str(text);
                }
            }
            Event::SuiteFinished { mode, suite, duration } => self.suite_durations.push((suite.clone(), mode.clone(), *duration)),
            Event::RunFinished { duration } => self.duration = Some(*duration),
            Event::Property(property) => self.add_property(property.clone()),
            Event::ModeStarted { .. } => {}
        }
    }

    pub fn add_property(&mut self, property: Property) {
        if !self.properties.contains(&property) {
            self.properties.push(property);
        }
    }

    /// The properties that describe `mode`: the run's, then the mode's own.
    pub fn properties_of<'a>(&'a self, mode: &'a str) -> impl Iterator<Item = &'a Property> {
        let run = self.properties.iter().filter(|p| p.mode.is_none());
        run.chain(self.properties.iter().filter(move |p| p.mode.as_deref() == Some(mode)))
    }

    pub fn count(&self, status: Status) -> usize {
        self.cases.iter().filter(|c| c.status == status).count()
    }

    /// True when nothing failed or errored.
    pub fn passed(&self) -> bool {
        self.count(Status::Failed) == 0 && self.count(Status::Error) == 0
    }
}

/// Writes junit.xml, results.json and summary.md into `dir`, each atomically.
pub fn write_all(report: &Report, dir: &std::path::Path) -> std::io::Result<()> {
    junit::write(report, &dir.join("junit.xml"))?;
    let json = json::to_json(report).map_err(std::io::Error::other)?;
    write_atomically(&dir.join("results.json"), json.as_bytes())?;
    write_atomically(&dir.join("summary.md"), markdown::summary(report).as_bytes())
}

/// Writes `content` to `path` atomically: a temp file in the same directory, then a rename.
pub fn write_atomically(path: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}
