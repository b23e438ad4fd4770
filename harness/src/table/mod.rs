//! The table model, the bottom layer: the YAML format of `suites/` (Service rows and data-plane
//! rows), its strict loader with `file:line:column` errors, placeholders and the selection flags.
//! Nothing here knows Kubernetes types or talks to a cluster. The format is documented in
//! suites/README.md.

pub mod connect;
pub mod conversion;
pub mod dataplane;
pub mod selection;
pub mod services;
pub mod symbols;

use crate::mode::Mode;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use dataplane::DataplaneRow;
pub use selection::{Selection, Shard};
pub use services::Scenario;

/// A loader error: where, which field, what is wrong. Always a usage error (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct LoadError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub field: String,
    pub message: String,
}

/// Every table loaded: Service scenarios and data-plane rows, in load order.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub services: Vec<Scenario>,
    pub dataplane: Vec<DataplaneRow>,
    /// The conversion suite's workload checks (its Service rows are in `services`).
    pub conversion: Vec<conversion::ConversionRow>,
}

impl Tables {
    /// The suite names, in load order, each once.
    pub fn suites(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let suites = self.services.iter().map(|s| s.suite.as_str()).chain(self.dataplane.iter().map(|r| r.suite.as_str()));
        for suite in suites.chain(self.conversion.iter().map(|r| r.suite.as_str())) {
            if !names.contains(&suite) {
                names.push(suite);
            }
        }
        names
    }

    /// Keeps only the named suites; an unknown name is an error listing the known ones. None named:
    /// every suite but the conversion suite, which reconfigures the cluster and so runs only when
    /// named.
    pub fn retain_suites(&mut self, wanted: &[String]) -> Result<(), String> {
        if wanted.is_empty() {
            self.services.retain(|s| s.suite != services::CONVERSION_SUITE);
            self.conversion.clear();
            return Ok(());
        }
        let known = self.suites();
        if let Some(unknown) = wanted.iter().find(|s| !known.contains(&s.as_str())) {
            return Err(format!("--suite {unknown}: no such suite (have: {})", known.join(", ")));
        }
        self.services.retain(|s| wanted.contains(&s.suite));
        self.dataplane.retain(|r| wanted.contains(&r.suite));
        self.conversion.retain(|r| wanted.contains(&r.suite));
        Ok(())
    }
}

/// The suites whose rows name data-plane checks or connections rather than objects to create:
/// the data plane, and NetworkPolicy (a suite of its own: it needs an enforcing implementation,
/// and runs alone with `--suite network-policy`).
pub const DATAPLANE_SUITES: [&str; 2] = ["dataplane", "network-policy"];

/// Just the `suite:` of a table, to pick its row schema.
#[derive(Deserialize)]
struct Header {
    suite: String,
    /// A conversion file's workload checks (its Service rows are `scenarios:`).
    #[serde(default)]
    checks: Option<serde::de::IgnoredAny>,
}

/// Loads every `*.yaml` under `dirs`, directory by directory in the given order (files sorted within
/// each), failing on the first bad file; ids must be unique within a suite across files, and a
/// clash is reported at the later file (a vendor's, since the built-in suites come first).
pub fn load_dirs(dirs: &[PathBuf]) -> Result<Tables, LoadError> {
    let mut files = Vec::new();
    for dir in dirs {
        let mut in_dir = Vec::new();
        collect_yaml(dir, &mut in_dir).map_err(|message| LoadError {
            file: dir.display().to_string(),
            line: 0,
            column: 0,
            field: "suite-dir".into(),
            message,
        })?;
        in_dir.sort();
        files.extend(in_dir);
    }
    let mut tables = Tables::default();
    let mut ids: BTreeSet<(String, String)> = BTreeSet::new();
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| LoadError {
            file: name.clone(),
            line: 0,
            column: 0,
            field: "file".into(),
            message: e.to_string(),
        })?;
        let header: Header = serde_saphyr::from_str(&text).map_err(|e| load_error(&name, &text, &e))?;
        let duplicate = |suite: &str, id: &str, (line, column): (u64, u64)| LoadError {
            file: name.clone(),
            line,
            column,
            field: "id".into(),
            message: format!("duplicate id '{id}' in suite '{suite}' (defined in another file)"),
        };
        if header.suite == services::CONVERSION_SUITE && header.checks.is_some() {
            for row in conversion::parse_file(&name, &text)? {
                if !ids.insert((row.suite.clone(), row.id.clone())) {
                    return Err(duplicate(&row.suite, &row.id, row.position));
                }
                tables.conversion.push(row);
            }
        } else if DATAPLANE_SUITES.contains(&header.suite.as_str()) {
            for row in dataplane::parse_file(&name, &text)? {
                if !ids.insert((row.suite.clone(), row.id.clone())) {
                    return Err(duplicate(&row.suite, &row.id, row.position));
                }
                tables.dataplane.push(row);
            }
        } else {
            for scenario in services::parse_file(&name, &text)? {
                if !ids.insert((scenario.suite.clone(), scenario.id.clone())) {
                    return Err(duplicate(&scenario.suite, &scenario.id, scenario.position));
                }
                tables.services.push(scenario);
            }
        }
    }
    Ok(tables)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read directory: {e}"))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// A row's `modes:`: all four when absent; each name must be a mode and the list not empty. Errors
/// point at the list.
pub(crate) fn parse_modes(file: &str, modes: Option<&Spanned<Vec<String>>>) -> Result<Vec<Mode>, LoadError> {
    let Some(spanned) = modes else { return Ok(Mode::ALL.to_vec()) };
    let at = |message: String| LoadError {
        file: file.into(),
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
        field: "modes".into(),
        message,
    };
    let modes = spanned.value.iter().map(|name| name.parse::<Mode>().map_err(|e| at(e.to_string()))).collect::<Result<Vec<_>, _>>()?;
    if modes.is_empty() {
        return Err(at("must name at least one mode".into()));
    }
    Ok(modes)
}

/// A row id: letters, digits and '-'.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("'{id}' must be letters, digits and '-'"));
    }
    Ok(())
}

/// A parser error as a LoadError naming file, line, column and field.
pub(crate) fn load_error(name: &str, text: &str, e: &serde_saphyr::Error) -> LoadError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    // serde-saphyr renders "error: line L column C: CAUSE" plus a source snippet; keep the cause,
    // since file:line:column are ours to print.
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let message = first
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("error"))
        .map_or(first, |(_, rest)| rest)
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or_else(|| first.to_string(), |(_, cause)| cause.to_string());
    let field = field_of_message(&message).unwrap_or_else(|| key_at(text, line, column));
    LoadError { file: name.to_string(), line, column, field, message }
}

/// The field a serde message is about (`unknown field `x``, `missing field `y``).
fn field_of_message(message: &str) -> Option<String> {
    message.split('`').nth(1).filter(|_| message.contains("field")).map(str::to_string)
}

/// The YAML key written last before `column` on `line` (the key whose value is at fault), or
/// `document` when there is none.
fn key_at(text: &str, line: u64, column: u64) -> String {
    let source_line = text.lines().nth(usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX)).unwrap_or_default();
    let before: String = source_line.chars().take(usize::try_from(column.saturating_sub(1)).unwrap_or(0)).collect();
    before
        .rsplit(':')
        .nth(1)
        .map(|k| k.trim_start_matches(|c: char| c.is_whitespace() || c == '{' || c == ',' || c == '-').trim().to_string())
        .filter(|k| !k.is_empty() && !k.contains(' '))
        .unwrap_or_else(|| "document".into())
}
