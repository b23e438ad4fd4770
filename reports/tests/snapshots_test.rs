//! Snapshots of the JUnit and console output for a fixed result set.

use reports::{CaseResult, Event, Property, Report, Status};
use std::time::Duration;

fn case(id: &str, title: &str, mode: &str, status: Status, message: &str) -> CaseResult {
    CaseResult {
        suite: "services".into(),
        group: "allocation".into(),
        id: id.into(),
        title: title.into(),
        mode: mode.into(),
        status,
        duration: Duration::from_millis(125),
        expected: "accepted: policy=PreferDualStack families=[IPv4,IPv6]".into(),
        actual: if status == Status::Failed { "accepted: policy=PreferDualStack families=[IPv4]".into() } else { "as expected".into() },
        message: message.into(),
        diagnostics: if status == Status::Error { "pod events: FailedScheduling 0/2 nodes".into() } else { String::new() },
        retried: if id == "S12" { vec!["create: 503 etcdserver: leader changed (retried)".into()] } else { vec![] },
    }
}

fn fixed_report() -> (Report, Vec<Event>) {
    let events = vec![
        Event::Property(Property { mode: None, name: "cni".into(), value: "manifest cni.yaml (sha256 0a1b2c3d4e5f)".into() }),
        Event::Property(Property { mode: None, name: "kube-proxy".into(), value: "nftables".into() }),
        Event::Property(Property { mode: Some("dual".into()), name: "kubernetes".into(), value: "v1.36.3".into() }),
        Event::Property(Property { mode: Some("ipv6".into()), name: "kubernetes".into(), value: "v1.36.2".into() }),
        Event::ModeStarted { mode: "dual".into(), cases: 4 },
        Event::CaseFinished(case("S12", "PreferDualStack gets every configured family", "dual", Status::Passed, "")),
        Event::CaseFinished(case("S13", "PreferDualStack on IPv6-primary <gets> & \"both\"", "dual", Status::Failed, "ipFamilies [\"IPv4\"] instead of [\"IPv4\", \"IPv6\"]")),
        Event::CaseFinished(case("S22", "RequireDualStack is refused on single-stack", "dual", Status::Skipped, "row applies to ipv4, ipv6")),
        Event::CaseFinished(case("S24", "RequireDualStack on dual", "dual", Status::Error, "timed out after 20s waiting for the Service")),
        Event::SuiteFinished { mode: "dual".into(), suite: "services".into(), duration: Duration::from_millis(250) },
        Event::ModeFinished { mode: "dual".into(), duration: Duration::from_secs(3) },
        Event::SetupFailed { mode: "ipv6".into(), phase: "create".into(), message: "kind create cluster failed".into() },
        Event::RunFinished { duration: Duration::from_secs(4) },
    ];
    let mut report = Report::default();
    events.iter().for_each(|e| report.record(e));
    (report, events)
}

#[test]
fn junit_snapshot() {
    let (report, _) = fixed_report();
    insta::assert_snapshot!(reports::junit::to_xml(&report).unwrap_or_default());
}

#[test]
fn console_snapshot() {
    let (report, events) = fixed_report();
    let lines: Vec<String> = events.iter().filter_map(reports::console::line).collect();
    insta::assert_snapshot!(format!("{}\n{}", lines.join("\n"), reports::console::summary(&report)));
}

#[test]
fn atomic_write_leaves_no_temp_files() {
    let dir = std::env::temp_dir().join(format!("dualstack-reports-test-{}", std::process::id()));
    let path = dir.join("junit.xml");
    reports::write_atomically(&path, b"<testsuites/>").unwrap_or_default();
    let names: Vec<String> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["junit.xml".to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn markdown_summary_snapshot() {
    let (report, _) = fixed_report();
    insta::assert_snapshot!(reports::markdown::summary(&report));
}

#[test]
fn results_json_snapshot() {
    let (report, _) = fixed_report();
    insta::assert_snapshot!(reports::json::to_json(&report).unwrap_or_default());
}

#[test]
fn results_json_validates_against_its_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../results.schema.json")).unwrap_or(serde_json::Value::Null);
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema: {e}"));
    let (report, _) = fixed_report();
    let results: serde_json::Value = serde_json::from_str(&reports::json::to_json(&report).unwrap_or_default()).unwrap_or_default();
    let errors: Vec<String> = validator.iter_errors(&results).map(|e| e.to_string()).collect();
    assert_eq!(errors, Vec::<String>::new());
    // And a document that breaks it is refused, so the check is not vacuous.
    let mut broken = results.clone();
    broken["cases"][0]["status"] = serde_json::json!("green");
    assert!(!validator.is_valid(&broken));
    let mut broken = results.clone();
    broken["suites"][0]["durationSeconds"] = serde_json::json!(-1);
    assert!(!validator.is_valid(&broken));
}

#[test]
fn results_json_round_trips_for_merges() {
    let (report, _) = fixed_report();
    let back = reports::json::from_json(&reports::json::to_json(&report).unwrap_or_default()).unwrap_or_default();
    let names = |r: &Report| r.cases.iter().map(|c| (c.name(), c.status, c.expected.clone(), c.actual.clone())).collect::<Vec<_>>();
    assert_eq!(names(&back), names(&report));
    assert_eq!(back.mode_durations, report.mode_durations);
    assert_eq!(back.suite_durations, vec![("services".to_string(), "dual".to_string(), Duration::from_millis(250))]);
    assert_eq!(back.duration, Some(Duration::from_secs(4)));
}

#[test]
fn diagnostics_attach_to_the_failed_cases_of_their_mode_only() {
    let (mut report, _) = fixed_report();
    report.record(&Event::Diagnostics { mode: "dual".into(), text: "event Warning BackOff server-0".into() });
    let with: Vec<&str> = report.cases.iter().filter(|c| c.diagnostics.contains("BackOff")).map(|c| c.id.as_str()).collect();
    assert_eq!(with, vec!["S13", "S24"]);
}
