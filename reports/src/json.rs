//! `results.json`: every case of a run, versioned (`schemaVersion`); the schema is
//! reports/results.schema.json.

use crate::{CaseResult, Report, Status};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const SCHEMA_VERSION: u32 = 1;

/// The parts of results.json a merge reads back.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultsIn {
    schema_version: u32,
    /// Absent from files written before run and suite times were recorded.
    #[serde(default)]
    duration_seconds: Option<f64>,
    modes: Vec<ModeIn>,
    #[serde(default)]
    suites: Vec<SuiteIn>,
    /// Absent from files written before what was tested was recorded.
    #[serde(default)]
    properties: Vec<PropertyInOut>,
    cases: Vec<CaseIn>,
}

/// A property of the run (`mode` absent) or of one mode.
#[derive(Serialize, Deserialize)]
struct PropertyInOut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModeIn {
    mode: String,
    duration_seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuiteIn {
    suite: String,
    mode: String,
    duration_seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaseIn {
    suite: String,
    group: String,
    id: String,
    title: String,
    mode: String,
    status: String,
    duration_seconds: f64,
    expected: String,
    actual: String,
    message: String,
    #[serde(default)]
    retried: Vec<String>,
}

/// Reads a results.json back into a report (for `dualstack report merge`).
pub fn from_json(text: &str) -> Result<Report, String> {
    let results: ResultsIn = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if results.schema_version != SCHEMA_VERSION {
        return Err(format!("schemaVersion {} (this dualstack reads {SCHEMA_VERSION})", results.schema_version));
    }
    let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or_default();
    let mut cases = Vec::new();
    for c in results.cases {
        let status = match c.status.as_str() {
            "passed" => Status::Passed,
            "failed" => Status::Failed,
            "error" => Status::Error,
            "skipped" => Status::Skipped,
            other => return Err(format!("case {}: unknown status '{other}'", c.id)),
        };
        cases.push(CaseResult {
            suite: c.suite,
            group: c.group,
            id: c.id,
            title: c.title,
            mode: c.mode,
            status,
            duration: seconds(c.duration_seconds),
            expected: c.expected,
            actual: c.actual,
            message: c.message,
            diagnostics: String::new(),
            retried: c.retried,
        });
    }
    Ok(Report {
        cases,
        mode_durations: results.modes.into_iter().map(|m| (m.mode, seconds(m.duration_seconds))).collect(),
        suite_durations: results.suites.into_iter().map(|s| (s.suite, s.mode, seconds(s.duration_seconds))).collect(),
        duration: results.duration_seconds.map(seconds),
        properties: results.properties.into_iter().map(|p| crate::Property { mode: p.mode, name: p.name, value: p.value }).collect(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Results<'a> {
    schema_version: u32,
    tool: Tool,
    passed: bool,
    totals: Totals,
    /// Wall time of the whole run, when recorded; omitted otherwise rather than written as 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<f64>,
    /// What was tested: the CNI, images loaded, kube-proxy mode, node image, Kubernetes version.
    properties: Vec<PropertyInOut>,
    modes: Vec<ModeTime<'a>>,
    suites: Vec<SuiteTime<'a>>,
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

/// Wall time of one suite's phase in one mode.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SuiteTime<'a> {
    suite: &'a str,
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
    /// Transient errors retried (a passed case with any is flaky).
    retried: &'a [String],
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
        duration_seconds: report.duration.map(|d| d.as_secs_f64()),
        properties: report
            .properties
            .iter()
            .map(|p| PropertyInOut { mode: p.mode.clone(), name: p.name.clone(), value: p.value.clone() })
            .collect(),
        modes: report.mode_durations.iter().map(|(m, d)| ModeTime { mode: m, duration_seconds: d.as_secs_f64() }).collect(),
        suites: report
            .suite_durations
            .iter()
            .map(|(suite, mode, d)| SuiteTime { suite, mode, duration_seconds: d.as_secs_f64() })
            .collect(),
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
                retried: &c.retried,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&results)
}
