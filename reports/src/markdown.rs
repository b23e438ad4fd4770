//! `summary.md`: a matrix of scenario group x mode with pass/fail/skip counts, then every failure
//! with expected vs actual; ready for `$GITHUB_STEP_SUMMARY`.

use crate::{Report, Status};
use std::collections::{BTreeMap, BTreeSet};

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;").replace('\n', " ")
}

pub fn summary(report: &Report) -> String {
    let modes: BTreeSet<&str> = report.cases.iter().map(|c| c.mode.as_str()).collect();
    let mut counts: BTreeMap<(String, &str), [usize; 4]> = BTreeMap::new();
    for case in &report.cases {
        counts.entry((format!("{}/{}", case.suite, case.group), case.mode.as_str())).or_default()[case.status as usize] += 1;
    }
    let groups: BTreeSet<&String> = counts.keys().map(|(g, _)| g).collect();
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    let mut out = format!(
        "# dualstack: {verdict}\n\n{} passed, {} failed, {} errors, {} skipped\n\n",
        report.count(Status::Passed),
        report.count(Status::Failed),
        report.count(Status::Error),
        report.count(Status::Skipped)
    );
    out.push_str(&tested(report));
    out.push_str("| group |");
    for mode in &modes {
        out.push_str(&format!(" {mode} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(modes.len()));
    out.push('\n');
    for group in groups {
        out.push_str(&format!("| {group} |"));
        for mode in &modes {
            match counts.get(&(group.clone(), *mode)) {
                Some([passed, failed, errors, skipped]) => {
                    let mark = if failed + errors > 0 { "❌" } else { "✅" };
                    out.push_str(&format!(" {mark} {passed} passed, {} failed, {skipped} skipped |", failed + errors));
                }
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    let failures: Vec<_> = report.cases.iter().filter(|c| matches!(c.status, Status::Failed | Status::Error)).collect();
    if !failures.is_empty() {
        out.push_str("\n## Failures\n\n| case | expected | actual |\n|---|---|---|\n");
        for case in failures {
            out.push_str(&format!(
                "| {}/{} | {} | {} |\n",
                cell(&case.suite),
                cell(&case.name()),
                cell(&case.expected),
                cell(if case.actual.is_empty() { &case.message } else { &case.actual })
            ));
        }
    }
    out
}

/// What was tested, one line per property: a value every mode shares once, else each mode's.
fn tested(report: &Report) -> String {
    let mut names: Vec<&str> = Vec::new();
    for property in &report.properties {
        if !names.contains(&property.name.as_str()) {
            names.push(&property.name);
        }
    }
    let mut out = String::new();
    for name in names {
        let of_name: Vec<_> = report.properties.iter().filter(|p| p.name == name).collect();
        let values: BTreeSet<&str> = of_name.iter().map(|p| p.value.as_str()).collect();
        let value = if values.len() == 1 {
            values.into_iter().map(cell).collect::<String>()
        } else {
            of_name.iter().map(|p| format!("{}: {}", p.mode.as_deref().unwrap_or("all"), cell(&p.value))).collect::<Vec<_>>().join("; ")
        };
        out.push_str(&format!("- **{name}**: {value}\n"));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
