//! The run plan, a value: every case a run reports, keyed by (suite, id, mode), each to Run or to
//! Skip with a reason. Built once from the tables, the selection (`--filter`, `--skip`, `--shard`)
//! and the modes with their clusters' node shapes. `list` prints it, the console counts it, the
//! runner executes exactly its Run cases and an interrupt reports exactly its unfinished ones: no
//! other place decides what runs or how a case is named.

use crate::mode::Mode;
use crate::table::dataplane::Action;
use crate::table::{Selection, Tables};
use reports::{CaseResult, Status};
use std::time::Duration;

/// What a planned case executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// `tables.services[index]`.
    Service(usize),
    /// `tables.services[index]`, a conversion row: its Service straddles the cluster's conversion.
    Conversion(usize),
    /// `tables.conversion[index]`: a workload check across the cluster's conversion.
    ConversionCheck(usize),
    /// `tables.dataplane[row]`, one action of it.
    Dataplane { row: usize, action: Action },
    /// Nothing: the case is skipped before it starts (the whole row does not apply).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Run,
    Skip(String),
}

/// One case of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCase {
    pub suite: String,
    pub group: String,
    /// The reported id: the row id (`S12`), or the row id and the action (`D12/udp-ipv6`).
    pub id: String,
    pub title: String,
    pub mode: Mode,
    pub work: Work,
    pub disposition: Disposition,
}

impl PlannedCase {
    /// The case's result before it runs: skipped, with the plan's reason when it has one.
    pub fn result(&self) -> CaseResult {
        CaseResult {
            suite: self.suite.clone(),
            group: self.group.clone(),
            id: self.id.clone(),
            title: self.title.clone(),
            mode: self.mode.name().to_string(),
            status: Status::Skipped,
            duration: Duration::ZERO,
            expected: String::new(),
            actual: String::new(),
            message: match &self.disposition {
                Disposition::Skip(reason) => reason.clone(),
                Disposition::Run => String::new(),
            },
            diagnostics: String::new(),
            retried: Vec::new(),
        }
    }

    /// The result reported for a case the run planned and never finished.
    pub fn interrupted(&self) -> CaseResult {
        let mut result = self.result();
        result.status = Status::Error;
        result.expected = "the case finishes".into();
        result.actual = "interrupted".into();
        result.message = "interrupted".into();
        result
    }

    /// The result of a case its mode's setup failure kept from running: skipped, saying `why`.
    pub fn not_run(&self, why: &str) -> CaseResult {
        let mut result = self.result();
        result.message = why.into();
        result
    }

    pub fn runs(&self) -> bool {
        self.disposition == Disposition::Run
    }
}

/// One mode of the run and the node labels of its cluster (as `node_labels` names them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mode: Mode,
    pub nodes: Vec<String>,
    /// The run creates the cluster (a KIND cluster it may convert), rather than being given one.
    pub created: bool,
}

/// Why the conversion rows of a given cluster do not run.
pub const NOT_CONVERTIBLE: &str = "converts only KIND clusters the run creates: a cluster given with --kubeconfig is never reconfigured";

/// Stable node labels, in the order the API lists the nodes: the role, numbered when a role
/// repeats (`control-plane`, `worker`, `worker2`), so case names do not change with cluster names.
pub fn node_labels(is_control_plane: &[bool]) -> Vec<String> {
    is_control_plane
        .iter()
        .enumerate()
        .map(|(i, &cp)| {
            let role = if cp { "control-plane" } else { "worker" };
            let index = is_control_plane[..i].iter().filter(|&&other| other == cp).count();
            if index == 0 { role.to_string() } else { format!("{role}{}", index + 1) }
        })
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub cases: Vec<PlannedCase>,
}

impl Plan {
    /// The plan for `targets`. `judge_as` (test-only) judges with another mode's expectations, so
    /// only Service rows that claim both modes run.
    pub fn build(tables: &Tables, selection: &Selection, targets: &[Target], judge_as: Option<Mode>) -> Self {
        let mut cases = Vec::new();
        for target in targets {
            let mode = target.mode;
            let not_claimed = |modes: &[Mode]| {
                let claimed: Vec<&str> = modes.iter().map(|m| m.name()).collect();
                format!("applies to {} only", claimed.join(", "))
            };
            for (index, s) in tables.services.iter().enumerate().filter(|(_, s)| selection.in_shard(&s.suite, &s.id)) {
                let judge = judge_as.unwrap_or(mode);
                let disposition = if !s.modes.contains(&mode) {
                    Disposition::Skip(not_claimed(&s.modes))
                } else if let Some(reason) = selection.excludes(&s.suite, &s.id) {
                    Disposition::Skip(reason)
                } else if !s.modes.contains(&judge) {
                    Disposition::Skip(format!("does not apply to {judge}"))
                } else if s.created.is_some() && !target.created {
                    Disposition::Skip(NOT_CONVERTIBLE.to_string())
                } else {
                    Disposition::Run
                };
                cases.push(PlannedCase {
                    suite: s.suite.clone(),
                    group: s.group.clone(),
                    id: s.id.clone(),
                    title: s.title.clone(),
                    mode,
                    work: if s.created.is_some() { Work::Conversion(index) } else { Work::Service(index) },
                    disposition,
                });
            }
            for (index, row) in tables.conversion.iter().enumerate().filter(|(_, r)| selection.in_shard(&r.suite, &r.id)) {
                let disposition = if !row.modes.contains(&mode) {
                    Disposition::Skip(not_claimed(&row.modes))
                } else if let Some(reason) = selection.excludes(&row.suite, &row.id) {
                    Disposition::Skip(reason)
                } else if !target.created {
                    Disposition::Skip(NOT_CONVERTIBLE.to_string())
                } else {
                    Disposition::Run
                };
                cases.push(PlannedCase {
                    suite: row.suite.clone(),
                    group: row.group.clone(),
                    id: row.id.clone(),
                    title: row.title.clone(),
                    mode,
                    work: Work::ConversionCheck(index),
                    disposition,
                });
            }
            for (index, row) in tables.dataplane.iter().enumerate().filter(|(_, r)| selection.in_shard(&r.suite, &r.id)) {
                let skipped = if row.modes.contains(&mode) { selection.excludes(&row.suite, &row.id) } else { Some(not_claimed(&row.modes)) };
                let case = |id: String, work: Work, disposition: Disposition| PlannedCase {
                    suite: row.suite.clone(),
                    group: row.group.clone(),
                    id,
                    title: row.title.clone(),
                    mode,
                    work,
                    disposition,
                };
                match skipped {
                    // A row that does not run is one case, whatever its actions would have been.
                    Some(reason) => cases.push(case(row.id.clone(), Work::None, Disposition::Skip(reason))),
                    None => {
                        for &family in mode.families() {
                            for action in row.actions(family, &target.nodes) {
                                let id = format!("{}/{}", row.id, action.suffix());
                                cases.push(case(id, Work::Dataplane { row: index, action }, Disposition::Run));
                            }
                        }
                    }
                }
            }
        }
        Self { cases }
    }

    pub fn of_mode(&self, mode: Mode) -> impl Iterator<Item = &PlannedCase> {
        self.cases.iter().filter(move |c| c.mode == mode)
    }

    /// Cases of `mode` that run.
    pub fn run_count(&self, mode: Mode) -> usize {
        self.of_mode(mode).filter(|c| c.runs()).count()
    }

    /// What `dualstack list` prints: one line per case, then the totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for case in &self.cases {
            let name = format!("{}/{}", case.suite, case.id);
            match &case.disposition {
                Disposition::Run => out.push_str(&format!("run  {name:<28} [{}] {}\n", case.mode, case.title)),
                Disposition::Skip(reason) => out.push_str(&format!("skip {name:<28} [{}] {reason}\n", case.mode)),
            }
        }
        let run = self.cases.iter().filter(|c| c.runs()).count();
        out.push_str(&format!("{} cases: {run} to run, {} skipped\n", self.cases.len(), self.cases.len() - run));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::load_dirs;
    use rstest::rstest;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn tables() -> Tables {
        load_dirs(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../suites")]).unwrap()
    }

    /// The shape of the clusters the harness creates by default: a control-plane node and a worker.
    fn kind_shape(mode: Mode) -> Target {
        Target { mode, nodes: node_labels(&[true, false]), created: true }
    }

    #[rstest]
    #[case(&[true, false], &["control-plane", "worker"])]
    #[case(&[true, false, false], &["control-plane", "worker", "worker2"])]
    #[case(&[false, true, false], &["worker", "control-plane", "worker2"])]
    fn node_labels_number_repeated_roles(#[case] roles: &[bool], #[case] labels: &[&str]) {
        assert_eq!(node_labels(roles), labels);
    }

    #[test]
    fn case_names_are_unique_per_mode() {
        let targets: Vec<Target> = Mode::ALL.iter().map(|&m| kind_shape(m)).collect();
        let plan = Plan::build(&tables(), &Selection::default(), &targets, None);
        let mut seen = BTreeSet::new();
        for case in &plan.cases {
            assert!(seen.insert((case.suite.clone(), case.id.clone(), case.mode)), "{} {} twice", case.id, case.mode);
        }
    }

    /// The per-mode counts of the built-in tables on a harness-created cluster (one worker): the
    /// numbers the README states and the live tests compare with.
    #[rstest]
    #[case(Mode::Ipv4, 56, 40, 77)]
    #[case(Mode::Ipv6, 48, 48, 77)]
    #[case(Mode::Dual, 72, 24, 154)]
    #[case(Mode::DualIpv6Primary, 67, 29, 154)]
    fn built_in_counts(#[case] mode: Mode, #[case] services: usize, #[case] services_skipped: usize, #[case] dataplane: usize) {
        let plan = Plan::build(&tables(), &Selection::default(), &[kind_shape(mode)], None);
        let count = |suite: &str, run: bool| plan.cases.iter().filter(|c| c.suite == suite && c.runs() == run).count();
        assert_eq!((count("services", true), count("services", false), count("dataplane", true)), (services, services_skipped, dataplane));
    }

    #[test]
    fn filter_skips_whole_rows_and_shards_drop_them() {
        let selection = Selection::new(&["D12".into(), "S0*".into()], &[], None).unwrap();
        let plan = Plan::build(&tables(), &selection, &[kind_shape(Mode::Dual)], None);
        let run: Vec<&str> = plan.cases.iter().filter(|c| c.runs()).map(|c| c.id.as_str()).collect();
        assert!(run.contains(&"D12/udp-ipv6") && run.contains(&"S01"), "{run:?}");
        assert!(run.iter().all(|id| id.starts_with("D12/") || id.starts_with("S0")), "{run:?}");
        let skipped = plan.cases.iter().find(|c| c.id == "D08").map(|c| c.disposition.clone());
        assert_eq!(skipped, Some(Disposition::Skip("not selected by --filter".into())));

        let halves: Vec<Plan> = ["1/2", "2/2"]
            .iter()
            .map(|s| Plan::build(&tables(), &Selection::new(&[], &[], Some(s)).unwrap(), &[kind_shape(Mode::Dual)], None))
            .collect();
        let whole = Plan::build(&tables(), &Selection::default(), &[kind_shape(Mode::Dual)], None);
        assert_eq!(halves[0].cases.len() + halves[1].cases.len(), whole.cases.len());
        assert!(halves.iter().all(|h| !h.cases.is_empty()));
    }

    /// The conversion suite: 13 cases where the run upgrades the cluster, 12 where it downgrades it,
    /// each handed to the conversion kind; on a cluster the run was given, each is skipped saying
    /// why; and only a run that names the suite loads it.
    #[rstest]
    #[case(Mode::Ipv4, 13)]
    #[case(Mode::Ipv6, 13)]
    #[case(Mode::Dual, 12)]
    #[case(Mode::DualIpv6Primary, 12)]
    fn conversion_cases_run_only_on_created_clusters_and_when_named(#[case] mode: Mode, #[case] cases: usize) {
        let plan = Plan::build(&tables(), &Selection::default(), &[kind_shape(mode)], None);
        let running: Vec<&PlannedCase> = plan.cases.iter().filter(|c| c.suite == "conversion" && c.runs()).collect();
        assert_eq!(running.len(), cases);
        assert!(running.iter().all(|c| matches!(c.work, Work::Conversion(_) | Work::ConversionCheck(_))));
        let given = Target { created: false, ..kind_shape(mode) };
        let plan = Plan::build(&tables(), &Selection::default(), &[given], None);
        let not_convertible = plan.cases.iter().filter(|c| c.suite == "conversion" && c.disposition == Disposition::Skip(NOT_CONVERTIBLE.into())).count();
        assert_eq!((plan.cases.iter().filter(|c| c.suite == "conversion" && c.runs()).count(), not_convertible), (0, cases));

        let mut by_default = tables();
        by_default.retain_suites(&[]).unwrap();
        assert!(!by_default.suites().contains(&"conversion"));
        let mut named = tables();
        named.retain_suites(&["conversion".into()]).unwrap();
        assert_eq!(named.suites(), ["conversion"]);
    }

    #[test]
    fn judge_as_runs_only_rows_claiming_both_modes() {
        let plan = Plan::build(&tables(), &Selection::default(), &[kind_shape(Mode::Dual)], Some(Mode::Ipv4));
        for case in plan.cases.iter().filter(|c| c.suite == "services" && c.runs()) {
            let Work::Service(i) = case.work else { panic!("{} is not a Service row", case.id) };
            let modes = &tables().services[i].modes;
            assert!(modes.contains(&Mode::Dual) && modes.contains(&Mode::Ipv4), "{}", case.id);
        }
    }

    #[test]
    fn interrupted_and_skipped_results_keep_the_planned_name() {
        let plan = Plan::build(&tables(), &Selection::default(), &[kind_shape(Mode::Ipv6)], None);
        let case = plan.cases.iter().find(|c| c.id == "D12/udp-ipv6").unwrap();
        let result = case.interrupted();
        assert_eq!((result.id.as_str(), result.mode.as_str(), result.status, result.message.as_str()), ("D12/udp-ipv6", "ipv6", Status::Error, "interrupted"));
        let skipped = plan.cases.iter().find(|c| c.id == "S12").unwrap().result();
        assert_eq!((skipped.status, skipped.message.as_str()), (Status::Skipped, "applies to dual only"));
        let not_run = case.not_run("not run: the ipv6 cluster's setup failed in cni");
        assert_eq!((not_run.id.as_str(), not_run.status, not_run.message.as_str()), ("D12/udp-ipv6", Status::Skipped, "not run: the ipv6 cluster's setup failed in cni"));
    }
}
