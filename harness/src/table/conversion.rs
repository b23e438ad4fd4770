//! Conversion check rows: the workloads across a conversion of the cluster (pods started before
//! and after it, a Service switched to the new mode's policy, its EndpointSlices and traffic).
//! A conversion file lists these under `checks:`; its Service rows are ordinary Service rows with
//! `created:` (`services.rs`).

use super::{LoadError, check_id, load_error, parse_modes};
use crate::mode::Mode;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The coded checks a conversion row may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadCheck {
    /// The pod started before the conversion has exactly the addresses it had.
    PodKeepsItsAddresses,
    /// A pod started after the conversion has an address of each family of the new mode, and no other.
    NewPodGetsTheNewFamilies,
    /// The Service, switched to the new mode's policy, has EndpointSlices of exactly its families,
    /// each listing the pods with an address of that family.
    EndpointSlicesFollowThePods,
    /// From a pod started after the conversion, each clusterIP of that Service is answered by
    /// exactly the pods with an address of its family, each seeing the client's own address.
    ServiceAnswersOverEachFamily,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    suite: String,
    group: String,
    checks: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: Spanned<String>,
    title: String,
    #[serde(default)]
    modes: Option<Spanned<Vec<String>>>,
    check: WorkloadCheck,
    /// The rule and its source; shown in reports.
    note: String,
}

/// A loaded conversion check row.
#[derive(Debug, Clone)]
pub struct ConversionRow {
    pub suite: String,
    pub group: String,
    pub id: String,
    pub title: String,
    /// The modes the cluster may have before the conversion.
    pub modes: Vec<Mode>,
    pub check: WorkloadCheck,
    pub note: String,
    pub origin: String,
    pub position: (u64, u64),
}

pub fn parse_file(name: &str, text: &str) -> Result<Vec<ConversionRow>, LoadError> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| load_error(name, text, &e))?;
    let mut rows = Vec::new();
    for row in file.checks {
        let (line, column) = (row.id.referenced.line(), row.id.referenced.column());
        check_id(&row.id.value).map_err(|message| LoadError { file: name.into(), line, column, field: "id".into(), message })?;
        if rows.iter().any(|r: &ConversionRow| r.id == row.id.value) {
            return Err(LoadError { file: name.into(), line, column, field: "id".into(), message: format!("duplicate id '{}'", row.id.value) });
        }
        rows.push(ConversionRow {
            suite: file.suite.clone(),
            group: file.group.clone(),
            id: row.id.value,
            title: row.title,
            modes: parse_modes(name, row.modes.as_ref())?,
            check: row.check,
            note: row.note,
            origin: format!("{name}:{line}"),
            position: (line, column),
        });
    }
    Ok(rows)
}
