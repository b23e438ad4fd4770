//! Wall times in JUnit and results.json, merging report directories, and the reporter fan-out.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use reports::console::Verbosity;
use reports::merge::{MergeError, merge_dirs};
use reports::{CaseResult, Event, Report, Reporter, Status};
use std::path::PathBuf;
use std::time::Duration;

fn case(id: &str, mode: &str, seconds: u64) -> CaseResult {
    CaseResult {
        suite: "services".into(),
        group: "allocation".into(),
        id: id.into(),
        title: "t".into(),
        mode: mode.into(),
        status: Status::Passed,
        duration: Duration::from_secs(seconds),
        expected: "ok".into(),
        actual: "ok".into(),
        message: String::new(),
        diagnostics: String::new(),
        retried: vec![],
    }
}

fn report_of(events: &[Event]) -> Report {
    let mut report = Report::default();
    events.iter().for_each(|e| report.record(e));
    report
}

/// A fresh directory of its own under the system temp dir; removed by the test that made it.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dualstack-reporting-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn suite_time(xml: &str, name: &str) -> Option<Duration> {
    let junit = quick_junit::Report::deserialize_from_str(xml).unwrap();
    junit.test_suites.iter().find(|s| s.name.as_str() == name).and_then(|s| s.time)
}

#[test]
fn junit_suite_time_is_the_recorded_wall_time_not_the_sum_of_concurrent_cases() {
    let report = report_of(&[
        Event::CaseFinished(case("S01", "dual", 10)),
        Event::CaseFinished(case("S02", "dual", 10)),
        Event::SuiteFinished { mode: "dual".into(), suite: "services".into(), duration: Duration::from_secs(12) },
        Event::ModeFinished { mode: "dual".into(), duration: Duration::from_secs(15) },
    ]);
    let xml = reports::junit::to_xml(&report).unwrap();
    assert_eq!(suite_time(&xml, "services [dual]"), Some(Duration::from_secs(12)));
    // No run time recorded: the mode times stand in for it.
    assert_eq!(quick_junit::Report::deserialize_from_str(&xml).unwrap().time, Some(Duration::from_secs(15)));
}

#[test]
fn junit_times_without_recorded_wall_times_are_the_longest_case() {
    let report = report_of(&[Event::CaseFinished(case("S01", "dual", 10)), Event::CaseFinished(case("S02", "dual", 7))]);
    let xml = reports::junit::to_xml(&report).unwrap();
    assert_eq!(suite_time(&xml, "services [dual]"), Some(Duration::from_secs(10)));
    assert_eq!(quick_junit::Report::deserialize_from_str(&xml).unwrap().time, Some(Duration::from_secs(10)));
}

#[test]
fn results_json_keeps_suite_and_run_times_and_older_files_still_load() {
    let report = report_of(&[
        Event::CaseFinished(case("S01", "dual", 10)),
        Event::SuiteFinished { mode: "dual".into(), suite: "services".into(), duration: Duration::from_secs(12) },
        Event::RunFinished { duration: Duration::from_millis(22_500) },
    ]);
    let json = reports::json::to_json(&report).unwrap();
    let back = reports::json::from_json(&json).unwrap();
    assert_eq!(back.suite_durations, vec![("services".to_string(), "dual".to_string(), Duration::from_secs(12))]);
    assert_eq!(back.duration, Some(Duration::from_millis(22_500)));

    let mut older: serde_json::Value = serde_json::from_str(&json).unwrap();
    let fields = older.as_object_mut().unwrap();
    fields.remove("suites");
    fields.remove("durationSeconds");
    let back = reports::json::from_json(&older.to_string()).unwrap();
    assert_eq!((back.cases.len(), back.suite_durations.len(), back.duration), (1, 0, None));
}

fn write_dir(name: &str, events: &[Event]) -> PathBuf {
    let dir = temp_dir(name);
    reports::write_all(&report_of(events), &dir).unwrap();
    dir
}

#[test]
fn merge_concatenates_cases_and_times_and_keeps_the_longest_run() {
    let a = write_dir("merge-a", &[
        Event::CaseFinished(case("S01", "dual", 1)),
        Event::SuiteFinished { mode: "dual".into(), suite: "services".into(), duration: Duration::from_secs(8) },
        Event::ModeFinished { mode: "dual".into(), duration: Duration::from_secs(10) },
        Event::RunFinished { duration: Duration::from_secs(20) },
    ]);
    let b = write_dir("merge-b", &[
        Event::CaseFinished(case("S01", "ipv4", 1)),
        Event::SuiteFinished { mode: "ipv4".into(), suite: "services".into(), duration: Duration::from_secs(4) },
        Event::ModeFinished { mode: "ipv4".into(), duration: Duration::from_secs(5) },
        Event::RunFinished { duration: Duration::from_secs(30) },
    ]);
    let merged = merge_dirs(&[a.clone(), b.clone()]).unwrap();
    let names: Vec<String> = merged.cases.iter().map(CaseResult::name).collect();
    assert_eq!(names, vec!["S01 t [dual]", "S01 t [ipv4]"]);
    assert_eq!(merged.mode_durations, vec![("dual".into(), Duration::from_secs(10)), ("ipv4".into(), Duration::from_secs(5))]);
    assert_eq!(
        merged.suite_durations,
        vec![("services".into(), "dual".into(), Duration::from_secs(8)), ("services".into(), "ipv4".into(), Duration::from_secs(4))]
    );
    assert_eq!(merged.duration, Some(Duration::from_secs(30)));
    for dir in [a, b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn merge_refuses_a_case_in_two_dirs() {
    let a = write_dir("dup-a", &[Event::CaseFinished(case("S01", "dual", 1))]);
    let b = write_dir("dup-b", &[Event::CaseFinished(case("S02", "dual", 1)), Event::CaseFinished(case("S01", "dual", 1))]);
    let err = merge_dirs(&[a.clone(), b.clone()]).unwrap_err();
    assert!(matches!(&err, MergeError::Duplicate { first, second, .. } if first == &a && second == &b));
    assert_eq!(err.to_string(), format!("case 'S01 t [dual]' is in both {} and {}", a.display(), b.display()));
    for dir in [a, b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn merge_of_a_missing_dir_is_a_read_error_naming_its_results_json() {
    let missing = std::env::temp_dir().join(format!("dualstack-reporting-test-{}-missing", std::process::id()));
    let err = merge_dirs(std::slice::from_ref(&missing)).unwrap_err();
    let expected = missing.join("results.json");
    assert!(matches!(&err, MergeError::Read { path, source } if path == &expected && source.kind() == std::io::ErrorKind::NotFound));
    assert!(err.to_string().starts_with(&format!("{}: ", expected.display())));
}

#[test]
fn merge_of_a_corrupt_results_json_is_a_parse_error() {
    let dir = temp_dir("corrupt");
    let path = dir.join("results.json");
    std::fs::write(&path, "{\"schemaVersion\": 2, \"modes\": [], \"cases\": []}").unwrap();
    let err = merge_dirs(std::slice::from_ref(&dir)).unwrap_err();
    assert!(matches!(&err, MergeError::Parse { path: p, .. } if p == &path));
    assert_eq!(err.to_string(), format!("{}: schemaVersion 2 (this dualstack reads 1)", path.display()));
    std::fs::write(&path, "{ not json").unwrap();
    assert!(matches!(merge_dirs(std::slice::from_ref(&dir)), Err(MergeError::Parse { path: p, .. }) if p == path));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reporter_aggregates_events_written_from_concurrent_tasks() {
    let reporter = Reporter::new(Verbosity::Quiet);
    std::thread::scope(|scope| {
        for mode in ["dual", "ipv4"] {
            let reporter = &reporter;
            scope.spawn(move || {
                reporter.write_event(Event::CaseFinished(case("S01", mode, 1)));
                reporter.write_event(Event::SuiteFinished { mode: mode.into(), suite: "services".into(), duration: Duration::from_secs(2) });
            });
        }
    });
    reporter.write_event(Event::RunFinished { duration: Duration::from_secs(3) });
    let report = reporter.finish();
    let mut names: Vec<String> = report.cases.iter().map(CaseResult::name).collect();
    names.sort();
    assert_eq!(names, vec!["S01 t [dual]", "S01 t [ipv4]"]);
    let mut suites = report.suite_durations.clone();
    suites.sort();
    assert_eq!(
        suites,
        vec![("services".into(), "dual".into(), Duration::from_secs(2)), ("services".into(), "ipv4".into(), Duration::from_secs(2))]
    );
    assert_eq!(report.duration, Some(Duration::from_secs(3)));
}
