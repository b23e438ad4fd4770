//! The conversion check kind: Service rows that straddle a conversion of the cluster (catalogue
//! U15-U19 and the rules around them) and workload checks (`workloads.rs`). `prepare` creates what
//! the rows need before the conversion, converts the cluster (`convert::convert`: ipv4 <-> dual,
//! ipv6 <-> dual-ipv6-primary) and starts what they need after it; each Service case then reads or
//! updates its Service (or creates it, for rows created after) and is judged like a Service row.
//! It is the last phase of a mode: the cluster is another mode afterwards.

mod workloads;

use super::services::{Answer, judge};
use super::{CheckKind, Outcome, Target};
use crate::convert::{Conversion, Timings};
use crate::detect::ClusterFacts;
use crate::error::{Error, Result};
use crate::plan::{PlannedCase, Work};
use crate::probe_pod;
use crate::retry::Retries;
use crate::table::services::{Created, Scenario};
use super::services::execute::{self, AddressBook};
use reports::Status;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

pub struct ConversionChecks {
    pub concurrency: usize,
    pub case_timeout: Duration,
    /// Test-only: a shell command run once the rows' objects are made, before the conversion
    /// (fault injection), with KUBECONFIG, DUALSTACK_CLUSTER and DUALSTACK_MODE set.
    pub before_conversion_hook: Option<String>,
}

/// A row's Service created before the conversion: its namespace and what the server answered.
struct Before {
    namespace: String,
    created: std::result::Result<kube::api::DynamicObject, kube::Error>,
}

pub struct Converted {
    client: kube::Client,
    conversion: Conversion,
    /// The cluster's facts on the dual-stack side of the conversion (after an upgrade, before a
    /// downgrade): the service ranges of both families, for judging addresses.
    facts: ClusterFacts,
    book: AddressBook,
    before: BTreeMap<usize, Before>,
    /// The workloads, when a workload check is planned.
    workloads: Option<(workloads::Before, workloads::After)>,
    timings: Timings,
}

impl CheckKind for ConversionChecks {
    type Context = Converted;

    fn concurrency(&self) -> usize {
        self.concurrency.max(1)
    }

    fn case_timeout(&self) -> Duration {
        self.case_timeout
    }

    async fn prepare(&self, target: &Target<'_>, cases: &[&PlannedCase]) -> Result<Converted> {
        let Some(cluster) = &target.convertible else {
            return Err(Error::Usage(crate::plan::NOT_CONVERTIBLE.to_string()));
        };
        let conversion = Conversion::of(target.facts.mode);
        let book = AddressBook::new(execute::allocated_addresses(target.client).await.unwrap_or_default());
        let mut before = BTreeMap::new();
        for case in cases {
            let Work::Conversion(index) = case.work else { continue };
            let Some(scenario) = target.tables.services.get(index).filter(|s| s.created == Some(Created::BeforeConversion)) else { continue };
            let retries = Retries::default();
            let namespace = probe_pod::create_namespace(target.client, &execute::namespace_prefix(scenario), &retries).await?;
            let placeholders = book.resolve(scenario, target.facts);
            let created = execute::create(target.client, &namespace, scenario, &placeholders, &retries).await?;
            before.insert(index, Before { namespace, created });
        }
        let workloads_before = if cases.iter().any(|c| matches!(c.work, Work::ConversionCheck(_))) {
            Some(workloads::before(target.client, conversion, &Retries::default()).await?)
        } else {
            None
        };
        if let Some(hook) = &self.before_conversion_hook {
            let env = [
                ("KUBECONFIG", cluster.files.kubeconfig.as_os_str()),
                ("DUALSTACK_CLUSTER", cluster.files.name.as_ref()),
                ("DUALSTACK_MODE", conversion.from.name().as_ref()),
            ];
            super::run_hook("before-conversion", hook, &env).await?;
        }
        let timings = crate::convert::convert(target.client, cluster.files, conversion, cluster.load_balancer).await?;
        println!("[{}] converted to {}: {timings}", conversion.from, conversion.to);
        let facts = if conversion.upgrades() { crate::detect::detect(target.client).await? } else { target.facts.clone() };
        let workloads = match workloads_before {
            Some(before) => {
                let after = workloads::after(target.client, conversion, &before).await?;
                Some((before, after))
            }
            None => None,
        };
        Ok(Converted { client: target.client.clone(), conversion, facts, book, before, workloads, timings })
    }

    async fn run(&self, context: &Converted, target: &Target<'_>, case: &PlannedCase) -> Outcome {
        let index = match case.work {
            Work::Conversion(index) => index,
            Work::ConversionCheck(row) => return run_workload_check(context, target, row).await,
            _ => return Outcome::error(format!("{} is not a conversion row", case.id)),
        };
        let Some(scenario) = target.tables.services.get(index) else { return Outcome::error(format!("no conversion row {index}")) };
        // Rows are keyed by the mode the cluster had; their family symbols read as the dual-stack
        // side of the conversion names them.
        let Some(expectation) = scenario.expect.get(&context.conversion.from) else {
            return Outcome::error(format!("no expectation for {}", context.conversion.from));
        };
        let placeholders = context.book.resolve(scenario, &context.facts);
        let retries = Retries::default();
        let answered = match context.before.get(&index) {
            Some(before) => after_conversion(target.client, scenario, before, &placeholders, &retries).await.map(|(answer, spec)| (answer, spec, before.namespace.clone())),
            None => execute::execute_in_own_namespace(target.client, scenario, &placeholders, &retries).await,
        };
        let mut outcome = match answered {
            Ok((answer, before, namespace)) => {
                let verdict = judge(expectation, context.conversion.dual(), &context.facts, &placeholders, &answer, before.as_ref());
                let rule = scenario.note.as_ref().map(|n| format!("; rule: {n}")).unwrap_or_default();
                let (origin, conversion, timings, version) = (&scenario.origin, context.conversion, &context.timings, &context.facts.server_version);
                verdict.outcome(format!("row {origin} in namespace {namespace}; cluster converted {conversion} in {timings}; Kubernetes {version}{rule}"))
            }
            Err(e) => Outcome::error(e.to_string()),
        };
        outcome.retried = retries.taken();
        outcome
    }

    async fn diagnostics(&self, _: &Converted) -> Option<String> {
        None
    }

    async fn finish(&self, context: Converted) {
        // Those of the rows created after the conversion are gone already (`run`).
        for before in context.before.values() {
            probe_pod::delete_namespace(&context.client, &before.namespace).await;
        }
        if let Some((before, _)) = &context.workloads {
            probe_pod::delete_namespace(&context.client, &before.namespace).await;
        }
    }
}

/// One workload check row against the workloads of the conversion.
async fn run_workload_check(context: &Converted, target: &Target<'_>, row: usize) -> Outcome {
    let Some(row) = target.tables.conversion.get(row) else { return Outcome::error(format!("no conversion check row {row}")) };
    let Some((before, after)) = &context.workloads else { return Outcome::error("the workloads were not made".to_string()) };
    match workloads::check(target.client, context.conversion, before, after, row.check).await {
        Ok(finding) => Outcome {
            status: if finding.passed { Status::Passed } else { Status::Failed },
            message: if finding.passed { String::new() } else { finding.actual.clone() },
            expected: finding.expected,
            actual: finding.actual,
            diagnostics: format!("row {} in namespace {}; cluster converted {} in {}; rule: {}", row.origin, before.namespace, context.conversion, context.timings, row.note),
            retried: Vec::new(),
        },
        Err(e) => Outcome::error(e.to_string()),
    }
}

/// A row created before the conversion: its creation's rejection, or its Service after the
/// conversion as read (no `update`) or as updated; and its spec as created, for `kept`.
async fn after_conversion(client: &kube::Client, scenario: &Scenario, before: &Before, placeholders: &execute::Placeholders, retries: &Retries) -> Result<(Answer, Option<Value>)> {
    let created = match &before.created {
        Err(kube::Error::Api(status)) => return Ok((Answer::Rejected(status.clone()), None)),
        Err(e) => return Err(Error::Usage(format!("{}: creating the Service before the conversion failed: {e}", scenario.origin))),
        Ok(created) => created,
    };
    let spec = created.data.get("spec").cloned();
    let answer = match &scenario.update {
        None => execute::read(client, &before.namespace, scenario, retries).await?,
        Some(update) => {
            let current = execute::current(client, &before.namespace, scenario, retries).await?;
            execute::apply_update(client, &before.namespace, scenario, update, &current, placeholders, retries).await?
        }
    };
    Ok((answer, spec))
}
