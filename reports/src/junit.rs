//! JUnit XML through quick-junit: one testsuite per (suite, mode), one testcase per scenario with
//! the mode in its name, failure text with expected vs actual.

use crate::{CaseResult, Report, Status};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use std::collections::BTreeMap;
use std::time::Duration;

fn test_case(case: &CaseResult) -> TestCase {
    let body = format!("expected: {}\nactual:   {}\n{}", case.expected, case.actual, case.message);
    let status = match case.status {
        Status::Passed if !case.retried.is_empty() => {
            // Passed only after transient errors: a flaky marker, not a hidden retry.
            let mut s = TestCaseStatus::success();
            if let TestCaseStatus::Success { flaky_runs } = &mut s {
                for note in &case.retried {
                    let mut rerun = quick_junit::TestRerun::new(NonSuccessKind::Error);
                    rerun.set_type("transient");
                    rerun.set_message(note.as_str());
                    flaky_runs.push(rerun);
                }
            }
            s
        }
        Status::Passed => TestCaseStatus::success(),
        Status::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(case.message.as_str());
            s
        }
        Status::Failed | Status::Error => {
            let kind = if case.status == Status::Failed { NonSuccessKind::Failure } else { NonSuccessKind::Error };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_message(case.message.as_str());
            s.set_type(if case.status == Status::Failed { "mismatch" } else { "error" });
            s.set_description(body);
            s
        }
    };
    let mut test_case = TestCase::new(case.name(), status);
    test_case.set_classname(format!("dualstack.{}.{}", case.suite, case.group));
    test_case.set_time(case.duration);
    if !case.diagnostics.is_empty() {
        test_case.set_system_out(case.diagnostics.as_str());
    }
    test_case
}

/// The report as JUnit XML.
pub fn to_xml(report: &Report) -> Result<String, quick_junit::SerializeError> {
    let mut suites: BTreeMap<(String, String), Vec<&CaseResult>> = BTreeMap::new();
    for case in &report.cases {
        suites.entry((case.suite.clone(), case.mode.clone())).or_default().push(case);
    }
    let mut junit = quick_junit::Report::new("dualstack");
    let mut longest_suite = Duration::ZERO;
    for ((suite, mode), cases) in suites {
        let mut test_suite = TestSuite::new(format!("{suite} [{mode}]"));
        test_suite.add_properties(report.properties_of(&mode).map(|p| quick_junit::Property::new(p.name.as_str(), p.value.as_str())));
        let time = suite_time(report, &suite, &mode, &cases);
        test_suite.set_time(time);
        longest_suite = longest_suite.max(time);
        test_suite.add_test_cases(cases.into_iter().map(test_case));
        junit.add_test_suite(test_suite);
    }
    junit.set_time(match report.duration {
        Some(run) => run,
        None if !report.mode_durations.is_empty() => report.mode_durations.iter().map(|(_, d)| *d).sum(),
        None => longest_suite,
    });
    let xml = junit.to_string()?;
    Ok(drop_testsuites_skipped(&xml))
}

/// The wall time of a (suite, mode). Cases run concurrently, so the sum of their durations
/// over-counts; without a recorded wall time (the synthetic setup suite, an older results.json) the
/// longest case is a lower bound. Shards of one suite merged from parallel jobs overlap: the longest.
fn suite_time(report: &Report, suite: &str, mode: &str, cases: &[&CaseResult]) -> Duration {
    let recorded = report.suite_durations.iter().filter(|(s, m, _)| s == suite && m == mode).map(|(_, _, d)| *d).max();
    recorded.unwrap_or_else(|| cases.iter().map(|c| c.duration).max().unwrap_or_default())
}

/// quick-junit writes `skipped` on `<testsuites>`, which the Jenkins xUnit schema (junit-10.xsd, the
/// one GitHub reporters follow) does not allow there; the per-suite counts carry it anyway.
fn drop_testsuites_skipped(xml: &str) -> String {
    let Some(start) = xml.find("<testsuites ") else { return xml.to_string() };
    let end = xml[start..].find('>').map_or(xml.len(), |e| start + e);
    let head = &xml[start..end];
    let Some(attr) = head.find(" skipped=\"") else { return xml.to_string() };
    let attr_end = head[attr + 10..].find('"').map_or(head.len(), |e| attr + 10 + e + 1);
    format!("{}{}{}", &xml[..start + attr], &head[attr_end..], &xml[end..])
}

/// Writes `DIR/junit.xml` atomically.
pub fn write(report: &Report, path: &std::path::Path) -> std::io::Result<()> {
    let xml = to_xml(report).map_err(std::io::Error::other)?;
    crate::write_atomically(path, xml.as_bytes())
}
