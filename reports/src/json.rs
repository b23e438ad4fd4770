//! `results.json`: every case of a run, versioned (`schemaVersion`); the schema is
//! reports/results.schema.json.

use crate::{Report, Status};
use serde::Serialize;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Results<'a> {
    schema_version: u32,
    tool: Tool,
    passed: bool,
    totals: Totals,
    modes: Vec<ModeTime<'a>>,
    cases: Vec<Case<'a>>,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Totals {
    passed: usize,
    failed: usize,
    errors: usize,
    skipped: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModeTime<'a> {
    mode: &'a str,
    duration_seconds: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Case<'a> {
    suite: &'a str,
    group: &'a str,
    id: &'a str,
    title: &'a str,
    mode: &'a str,
    name: String,
    status: &'static str,
    duration_seconds: f64,
    expected: &'a str,
    actual: &'a str,
    message: &'a str,
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Error => "error",
        Status::Skipped => "skipped",
    }
}

pub fn to_json(report: &Report) -> Result<String, serde_json::Error> {
    let results = Results {
        schema_version: SCHEMA_VERSION,
        tool: Tool { name: "dualstack", version: env!("CARGO_PKG_VERSION") },
        passed: report.passed(),
        totals: Totals {
            passed: report.count(Status::Passed),
            failed: report.count(Status::Failed),
            errors: report.count(Status::Error),
            skipped: report.count(Status::Skipped),
        },
        modes: report.mode_durations.iter().map(|(m, d)| ModeTime { mode: m, duration_seconds: d.as_secs_f64() }).collect(),
        cases: report
            .cases
            .iter()
            .map(|c| Case {
                suite: &c.suite,
                group: &c.group,
                id: &c.id,
                title: &c.title,
                mode: &c.mode,
                name: c.name(),
                status: status_name(c.status),
                duration_seconds: c.duration.as_secs_f64(),
                expected: &c.expected,
                actual: &c.actual,
                message: &c.message,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&results)
}
