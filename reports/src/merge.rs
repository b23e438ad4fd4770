//! `dualstack report merge`: the results.json of several report directories (the jobs of a CI
//! matrix, or the shards of one run) as one report.

use crate::Report;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// The same case in two directories: overlapping shards or the same job merged twice, either
    /// of which would count a result twice.
    #[error("case '{case}' is in both {} and {}", first.display(), second.display())]
    Duplicate { case: String, first: PathBuf, second: PathBuf },
}

/// Reads `DIR/results.json` of each dir and concatenates their cases, mode and suite times. The
/// merged run time is the longest of the inputs', since the jobs ran side by side.
pub fn merge_dirs(dirs: &[PathBuf]) -> Result<Report, MergeError> {
    let mut merged = Report::default();
    let mut seen: BTreeMap<(String, String), &PathBuf> = BTreeMap::new();
    for dir in dirs {
        let path = dir.join("results.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(MergeError::Read { path, source }),
        };
        let report = match crate::json::from_json(&text) {
            Ok(report) => report,
            Err(message) => return Err(MergeError::Parse { path, message }),
        };
        for case in report.cases {
            // A case is what JUnit identifies it by: its name and its classname.
            let key = (case.name(), format!("{}.{}", case.suite, case.group));
            if let Some(first) = seen.insert(key.clone(), dir) {
                return Err(MergeError::Duplicate { case: key.0, first: first.clone(), second: dir.clone() });
            }
            merged.cases.push(case);
        }
        merged.mode_durations.extend(report.mode_durations);
        merged.suite_durations.extend(report.suite_durations);
        for property in report.properties {
            merged.add_property(property);
        }
        // None (an older results.json) orders below any known time, so it never wins.
        merged.duration = merged.duration.max(report.duration);
    }
    Ok(merged)
}
