//! Service rows: the schema of a Service table, its strict parser, placeholders and per-mode
//! expectations.

use super::symbols::{FAMILY_SYMBOLS, parse_placeholder, resolve_symbol};
use super::{LoadError, check_id, load_error, parse_modes};
use crate::mode::Mode;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// A table file: one suite, one group of scenarios.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// The suite the rows belong to (`services`); one JUnit testsuite per (suite, mode).
    pub suite: Spanned<String>,
    /// The group within the suite (`allocation`), used in summaries.
    pub group: String,
    /// A Service every row's `create` is merged over (JSON merge patch).
    #[serde(default)]
    pub base: Option<serde_json::Value>,
    pub scenarios: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub id: Spanned<String>,
    pub title: String,
    /// Modes the row applies to; all four when absent.
    #[serde(default)]
    pub modes: Option<Spanned<Vec<String>>>,
    /// Why the row exists or how the server differs from the docs; shown in reports.
    #[serde(default)]
    pub note: Option<String>,
    /// The object to create, merged over the file's `base`.
    pub create: serde_json::Value,
    /// Create with `dryRun=All`: nothing is persisted.
    #[serde(default, rename = "dryRun")]
    pub dry_run: bool,
    /// A change applied to the created object; the expectation is then about the change.
    #[serde(default)]
    pub update: Option<Update>,
    /// Conversion suite only: whether `create` runs before the cluster is converted or after
    /// (`update`, and the read when there is none, always run after).
    #[serde(default)]
    pub created: Option<Spanned<Created>>,
    /// Expected outcome per mode key: a mode name, `single-stack`, `dual-stack` or `all`.
    pub expect: Spanned<BTreeMap<String, Spanned<Expectation>>>,
}

/// When a conversion row creates its Service, relative to the cluster's conversion.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Created {
    BeforeConversion,
    AfterConversion,
}

/// The suite whose rows straddle a conversion of the cluster (and state `created:`).
pub const CONVERSION_SUITE: &str = "conversion";

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateMethod {
    /// Read the object, change it (`set`, `truncate`, `remove`, `from-original`), PUT it back.
    #[default]
    Put,
    /// PATCH with `body` as a JSON merge patch.
    MergePatch,
    /// PATCH with `body` as a strategic merge patch.
    StrategicPatch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub method: UpdateMethod,
    /// Dotted paths (`spec.ipFamilyPolicy`) set to values.
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Dotted paths of lists cut to the given length.
    #[serde(default)]
    pub truncate: BTreeMap<String, usize>,
    /// Dotted paths removed.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Dotted paths of lists with values appended (after `truncate`).
    #[serde(default)]
    pub append: BTreeMap<String, Vec<serde_json::Value>>,
    /// Start from the object as first submitted (an old manifest re-applied) instead of as read.
    #[serde(default, rename = "fromOriginal")]
    pub from_original: bool,
    /// Patch body (merge-patch / strategic-patch).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Expected `spec.ipFamilyPolicy`.
    #[serde(default)]
    pub policy: Option<String>,
    /// Expected `spec.ipFamilies`, in order: `primary`, `secondary`, `IPv4`, `IPv6`.
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// Expected `spec.clusterIPs`, in order: a family symbol (an address of that family inside the
    /// cluster's service range), `None`, `kept` (same as before the update) or a `$` placeholder.
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Option<Vec<String>>,
    /// Spec fields that must be absent: ipFamilyPolicy, ipFamilies, clusterIP, clusterIPs.
    #[serde(default)]
    pub unset: Vec<String>,
    /// Number of ports that must carry a nodePort.
    #[serde(default, rename = "nodePorts")]
    pub node_ports: Option<usize>,
    #[serde(default)]
    pub rejected: Option<Rejection>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// HTTP status (422 for validation).
    pub status: u16,
    /// Status reason (`Invalid`); checked when given.
    #[serde(default)]
    pub reason: Option<String>,
    /// Causes that must all be present: the field exactly, the message by a distinctive substring,
    /// since texts vary slightly across versions.
    #[serde(default)]
    pub causes: Vec<CauseMatch>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CauseMatch {
    pub field: String,
    pub message: String,
}

/// A loaded, validated scenario: what the runner executes.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub suite: String,
    pub group: String,
    pub id: String,
    pub title: String,
    pub note: Option<String>,
    pub modes: Vec<Mode>,
    /// The object to create (base merged with the row).
    pub object: serde_json::Value,
    pub dry_run: bool,
    pub update: Option<Update>,
    /// Conversion rows: when the Service is created.
    pub created: Option<Created>,
    pub expect: BTreeMap<Mode, Expectation>,
    /// `file:line` of the row, for messages.
    pub origin: String,
    /// Line and column of the row's id.
    pub position: (u64, u64),
}

impl Scenario {
    /// Every string the row sends or expects (object, update, expected clusterIPs): where its
    /// placeholders are.
    pub fn strings(&self) -> Vec<String> {
        let mut strings = Vec::new();
        strings_in(&self.object, &mut strings);
        if let Some(update) = &self.update {
            update.set.values().for_each(|v| strings_in(v, &mut strings));
            update.append.values().flatten().for_each(|v| strings_in(v, &mut strings));
            if let Some(body) = &update.body {
                strings_in(body, &mut strings);
            }
        }
        for expectation in self.expect.values() {
            strings.extend(expectation.cluster_ips.iter().flatten().cloned());
        }
        strings
    }
}

const POLICIES: [&str; 3] = ["SingleStack", "PreferDualStack", "RequireDualStack"];
const UNSETTABLE: [&str; 4] = ["ipFamilyPolicy", "ipFamilies", "clusterIP", "clusterIPs"];

/// Modes a key of `expect` covers.
fn modes_of_key(key: &str) -> Option<Vec<Mode>> {
    match key {
        "all" => Some(Mode::ALL.to_vec()),
        "single-stack" => Some(vec![Mode::Ipv4, Mode::Ipv6]),
        "dual-stack" => Some(vec![Mode::Dual, Mode::DualIpv6Primary]),
        other => other.parse::<Mode>().ok().map(|m| vec![m]),
    }
}

/// Specificity of a key: a mode name beats a stack kind, which beats `all`.
fn key_rank(key: &str) -> u8 {
    match key {
        "all" => 0,
        "single-stack" | "dual-stack" => 1,
        _ => 2,
    }
}

/// Every string in a JSON value (placeholders are found among them).
fn strings_in(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// RFC 7386 JSON merge patch: `patch` applied onto `target`.
pub fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else {
                    merge(t.entry(key.clone()).or_insert(serde_json::Value::Null), value);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Parses one Service table file. `name` is how the file is named in messages.
pub fn parse_file(name: &str, text: &str) -> Result<Vec<Scenario>, LoadError> {
    let at = |line: u64, column: u64, field: &str, message: String| LoadError {
        file: name.to_string(),
        line,
        column,
        field: field.to_string(),
        message,
    };
    let file: SuiteFile = serde_saphyr::from_str(text).map_err(|e| load_error(name, text, &e))?;
    let suite = file.suite.value.clone();
    if suite.is_empty() || !suite.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        let loc = file.suite.referenced;
        return Err(at(loc.line(), loc.column(), "suite", format!("'{suite}' must be lower-case letters, digits and '-'")));
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut scenarios = Vec::new();
    for row in file.scenarios {
        let id_loc = row.id.referenced;
        let id = row.id.value.clone();
        let here = |field: &str, message: String| at(id_loc.line(), id_loc.column(), field, message);
        check_id(&id).map_err(|message| here("id", message))?;
        if let Some(first) = seen.insert(id.clone(), id_loc.line()) {
            return Err(here("id", format!("duplicate id '{id}' (first defined at line {first})")));
        }
        let modes = parse_modes(name, row.modes.as_ref())?;
        let mut expect = BTreeMap::new();
        let mut keyed: BTreeMap<Mode, &str> = BTreeMap::new();
        for (key, expectation) in &row.expect.value {
            let loc = expectation.referenced;
            let covered = modes_of_key(key).ok_or_else(|| {
                at(loc.line(), loc.column(), "expect", format!("unknown key '{key}' (expected a mode, single-stack, dual-stack or all)"))
            })?;
            if key_rank(key) == 2 && !covered.iter().all(|m| modes.contains(m)) {
                return Err(at(loc.line(), loc.column(), "expect", format!("expectation for mode '{key}', which the row does not claim")));
            }
            let created_before = row.created.as_ref().is_some_and(|c| c.value == Created::BeforeConversion);
            validate_expectation(&expectation.value, row.update.is_some() || created_before).map_err(|(field, message)| {
                let path = if field.is_empty() { format!("expect.{key}") } else { format!("expect.{key}.{field}") };
                at(loc.line(), loc.column(), &path, message)
            })?;
            for mode in covered.into_iter().filter(|m| modes.contains(m)) {
                let wins = keyed.get(&mode).is_none_or(|k| key_rank(key) > key_rank(k));
                if wins {
                    keyed.insert(mode, key);
                    expect.insert(mode, expectation.value.clone());
                }
            }
        }
        for mode in &modes {
            if !expect.contains_key(mode) {
                let loc = row.expect.referenced;
                return Err(at(loc.line(), loc.column(), "expect", format!("no expectation for mode '{mode}', which the row claims")));
            }
        }
        match (&row.created, suite == CONVERSION_SUITE) {
            (None, true) => return Err(here("created", "a conversion row says when its Service is created: before-conversion or after-conversion".into())),
            (Some(created), false) => {
                let loc = created.referenced;
                return Err(at(loc.line(), loc.column(), "created", format!("only rows of suite '{CONVERSION_SUITE}' straddle a conversion")));
            }
            _ => {}
        }
        let mut object = file.base.clone().unwrap_or_else(|| serde_json::json!({}));
        merge(&mut object, &row.create);
        if let Some(update) = &row.update {
            let is_put = update.method == UpdateMethod::Put;
            if is_put && update.body.is_some() {
                return Err(here("update.body", "only merge-patch and strategic-patch take a body".into()));
            }
            if !is_put && (update.body.is_none() || !update.set.is_empty() || !update.truncate.is_empty() || !update.remove.is_empty() || !update.append.is_empty()) {
                return Err(here("update", "a patch takes only a body".into()));
            }
        }
        let scenario = Scenario {
            suite: suite.clone(),
            group: file.group.clone(),
            id,
            title: row.title,
            note: row.note,
            modes,
            object,
            dry_run: row.dry_run,
            update: row.update,
            created: row.created.map(|c| c.value),
            expect,
            origin: format!("{name}:{}", id_loc.line()),
            position: (id_loc.line(), id_loc.column()),
        };
        for text in scenario.strings() {
            if let Some(Err(message)) = parse_placeholder(&text) {
                return Err(here("create", message));
            }
        }
        scenarios.push(scenario);
    }
    Ok(scenarios)
}

/// `has_before`: the row has a state before the step under test (an update, or a conversion after
/// its Service was created), so `kept` means something.
fn validate_expectation(e: &Expectation, has_before: bool) -> Result<(), (String, String)> {
    let accepted_fields = e.policy.is_some() || e.families.is_some() || e.cluster_ips.is_some() || !e.unset.is_empty() || e.node_ports.is_some();
    if e.rejected.is_some() && accepted_fields {
        return Err(("rejected".into(), "a rejection cannot also expect policy, families, clusterIPs, unset or nodePorts".into()));
    }
    if e.rejected.is_none() && !accepted_fields {
        return Err(("".into(), "expects nothing: give policy/families/clusterIPs/unset/nodePorts or rejected".into()));
    }
    if let Some(policy) = &e.policy
        && !POLICIES.contains(&policy.as_str())
    {
        return Err(("policy".into(), format!("unknown policy '{policy}' (expected one of {})", POLICIES.join(", "))));
    }
    for family in e.families.iter().flatten() {
        if !FAMILY_SYMBOLS.contains(&family.as_str()) {
            return Err(("families".into(), format!("unknown family '{family}' (expected one of {})", FAMILY_SYMBOLS.join(", "))));
        }
    }
    for ip in e.cluster_ips.iter().flatten() {
        let valid = FAMILY_SYMBOLS.contains(&ip.as_str())
            || ip == "None"
            || (ip == "kept" && has_before)
            || matches!(parse_placeholder(ip), Some(Ok(_)));
        if !valid {
            return Err(("clusterIPs".into(), format!("'{ip}' is not a family symbol, None, kept (updates and rows created before a conversion only) or a placeholder")));
        }
    }
    for field in &e.unset {
        if !UNSETTABLE.contains(&field.as_str()) {
            return Err(("unset".into(), format!("unknown field '{field}' (expected one of {})", UNSETTABLE.join(", "))));
        }
    }
    if let Some(r) = &e.rejected {
        // Only a 4xx answer is a verdict: 5xx, 409 and 429 are retried as transient, so a row
        // expecting one could never pass.
        if !(400..500).contains(&r.status) || r.status == 409 || r.status == 429 {
            return Err(("rejected.status".into(), format!("{} is not a 4xx validation status (5xx, 409 and 429 are retried, never judged)", r.status)));
        }
        if r.causes.is_empty() {
            return Err(("rejected.causes".into(), "name at least one cause (field and message): without one any rejection would pass".into()));
        }
    }
    Ok(())
}

/// The expectation with its family symbols resolved for `mode`, so that the expectations of two
/// modes can be compared (two modes differ on a row exactly when these differ).
pub fn concrete(expectation: &Expectation, mode: Mode) -> Expectation {
    let resolve = |s: &String| resolve_symbol(s, mode);
    Expectation {
        families: expectation.families.as_ref().map(|f| f.iter().map(resolve).collect()),
        cluster_ips: expectation.cluster_ips.as_ref().map(|ips| ips.iter().map(resolve).collect()),
        ..expectation.clone()
    }
}
