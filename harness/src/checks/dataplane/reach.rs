//! The one reach primitive: connect to a target again and again within the convergence window
//! (kube-proxy and the CNI program the data plane a moment after the API objects exist), tally who
//! answered and what failed, and judge the tally: every expected endpoint answered at least once
//! (or, for affinity, one of them did) and nobody else did.

use super::fixture::{Fixture, cluster_ip, service_ips};
use super::verdict::{fail, pass};
use crate::checks::Outcome;
use crate::error::Result;
use crate::mode::IpFamily;
use crate::probe_pod::{self, ConnectResult, Dial};
use crate::table::dataplane::{Protocol, SourceRule};
use k8s_openapi::api::core::v1::Service;
use reports::Status;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a connection check keeps trying while the data plane converges.
pub const CONVERGENCE: Duration = Duration::from_secs(10);

/// The port every fixture Service exposes.
pub const SERVICE_PORT: u16 = 80;

/// A backend that should answer: a probe pod, where it runs and its address of the family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub pod: String,
    pub node: String,
    pub address: IpAddr,
    /// The hostname its probe reports: the pod's name, or the node's for a hostNetwork pod.
    pub answers_as: String,
}

/// Which of the expected endpoints must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    /// Each one, at least once: a load-balanced path must reach all its backends.
    Every,
    /// At least one of them (affinity pins a client to one, by design).
    Any,
    /// Nobody, over the whole convergence window (a path that must not serve).
    Nobody,
}

/// What a reach asks of the answers: who must answer, and which client address they must see.
pub struct Answers {
    pub expected: Expected,
    pub answering: Answering,
    pub rule: SourceRule,
}

impl Answers {
    /// Each of `expected` answers, seeing a client address `rule` allows.
    pub fn every(expected: Expected, rule: SourceRule) -> Self {
        Self { expected, answering: Answering::Every, rule }
    }

    /// One of `expected` answers (affinity), seeing a client address `rule` allows.
    pub fn any(expected: Expected, rule: SourceRule) -> Self {
        Self { expected, answering: Answering::Any, rule }
    }

    /// Nobody answers.
    pub fn nobody() -> Self {
        Self { expected: Ok(Vec::new()), answering: Answering::Nobody, rule: SourceRule::Any }
    }
}

/// What a target needed and did not have (a Service without a clusterIP of the family, a node
/// without an address of it, no endpoint of the family): reported as the failure instead of
/// connecting.
#[derive(Debug, Clone)]
pub struct Missing {
    pub wanted: String,
    pub saw: String,
}

impl From<Missing> for Outcome {
    fn from(missing: Missing) -> Self {
        fail(missing.wanted, missing.saw)
    }
}

/// Where to connect, or what was missing to know it.
pub type Destination = std::result::Result<SocketAddr, Missing>;

/// Who should answer, or what was missing to know it (a backend without an address of the family).
pub type Expected = std::result::Result<Vec<Endpoint>, Missing>;

/// The first expected endpoint itself on `port` (pod-to-pod paths), or what was missing.
pub fn direct(expected: &Expected, port: u16) -> Destination {
    match expected {
        Ok(endpoints) => endpoints
            .first()
            .map(|e| SocketAddr::new(e.address, port))
            .ok_or_else(|| Missing { wanted: "an endpoint to connect to".into(), saw: "none".into() }),
        Err(missing) => Err(missing.clone()),
    }
}

/// `service`'s `family` clusterIP on the Service port, or the failure that it has none.
pub fn via_cluster_ip(name: &str, service: &Service, family: IpFamily) -> Destination {
    cluster_ip(service, family)
        .map(|ip| SocketAddr::new(ip, SERVICE_PORT))
        .ok_or_else(|| Missing { wanted: format!("{name} has a {family} clusterIP"), saw: format!("clusterIPs {}", super::verdict::listed(service_ips(service))) })
}

/// The client addresses the server may see, by the row's source rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub rule: SourceRule,
    /// The addresses the rule allows (unused for `Any`).
    pub allowed: Vec<IpAddr>,
}

impl Sources {
    pub fn any() -> Self {
        Self { rule: SourceRule::Any, allowed: Vec::new() }
    }

    fn allows(&self, client: &str) -> bool {
        let ip = client.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| client.parse::<IpAddr>());
        self.rule == SourceRule::Any || ip.is_ok_and(|ip| self.allowed.contains(&ip))
    }

    fn describe(&self) -> String {
        let allowed = super::verdict::listed(&self.allowed);
        match self.rule {
            SourceRule::Any => String::new(),
            SourceRule::ClientPod => format!(", each seeing the client pod's own address ({allowed})"),
            SourceRule::ClientNode => format!(", each seeing one of the client node's addresses ({allowed})"),
            SourceRule::ExternalClient => format!(", each seeing the outside client's own address ({allowed})"),
        }
    }
}

/// Everything the attempts of one reach saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    attempts: usize,
    /// Responder hostname -> (answers, the client addresses it saw).
    answered: BTreeMap<String, (usize, Vec<String>)>,
    /// Failed attempts, in order: what the client said.
    failures: Vec<String>,
}

impl Tally {
    pub fn record(&mut self, got: ConnectResult) {
        self.attempts += 1;
        match (got.ok, got.answer) {
            (true, Some(answer)) => {
                let entry = self.answered.entry(answer.hostname).or_default();
                entry.0 += 1;
                // The address the server saw; the port differs on every connection.
                let client = answer.client.parse::<SocketAddr>().map_or(answer.client, |a| a.ip().to_string());
                if !entry.1.contains(&client) {
                    entry.1.push(client);
                }
            }
            (_, _) => self.failures.push(got.error.unwrap_or_else(|| "no answer".into())),
        }
    }

    /// Whether the tally already settles the verdict: every expected endpoint has answered (Every),
    /// one has (Any), or anybody has (Nobody: that fails it).
    fn complete(&self, endpoints: &[Endpoint], answering: Answering) -> bool {
        let answered = |e: &Endpoint| self.answered.contains_key(&e.answers_as);
        match answering {
            Answering::Every => endpoints.iter().all(answered),
            Answering::Any => endpoints.iter().any(answered),
            Answering::Nobody => !self.answered.is_empty(),
        }
    }

    /// The verdict: the right endpoints answered and no other; says who answered, with which
    /// source address, and what failed on the way (failures before a pass make it flaky).
    pub fn judge(&self, description: &str, endpoints: &[Endpoint], answering: Answering, sources: &Sources, elapsed: Duration) -> Outcome {
        let names: Vec<String> = endpoints.iter().map(|e| format!("{} on {} ({})", e.pod, e.node, e.address)).collect();
        let expected = match answering {
            Answering::Every => format!("{description} answered by each of {}{}", names.join(", "), sources.describe()),
            Answering::Any => format!("{description} answered by one of {}{}", names.join(", "), sources.describe()),
            Answering::Nobody => format!("{description} answered by nobody within {}s", CONVERGENCE.as_secs()),
        };
        if endpoints.is_empty() && answering != Answering::Nobody {
            return fail(expected, "no endpoint of this family to expect an answer from");
        }
        let answered: Vec<String> = self
            .answered
            .iter()
            .map(|(who, (count, clients))| format!("{who} x{count} (saw client {})", clients.join(", ")))
            .collect();
        let seen = format!(
            "{} in {} attempts over {:.1}s{}",
            if answered.is_empty() { "no answer".to_string() } else { format!("answered by {}", answered.join("; ")) },
            self.attempts,
            elapsed.as_secs_f64(),
            if self.failures.is_empty() { String::new() } else { format!("; failed attempts: {}", summarize(&self.failures)) }
        );
        let strangers: Vec<&String> = self.answered.keys().filter(|who| !endpoints.iter().any(|e| &e.answers_as == *who)).collect();
        let silent: Vec<&String> = endpoints.iter().filter(|e| !self.answered.contains_key(&e.answers_as)).map(|e| &e.pod).collect();
        let mut problems = Vec::new();
        let translated: Vec<String> = self
            .answered
            .iter()
            .flat_map(|(who, (_, clients))| clients.iter().filter(|c| !sources.allows(c)).map(move |c| format!("{who} saw client {c}")))
            .collect();
        if !translated.is_empty() {
            problems.push(format!("source address translated: {}", translated.join(", ")));
        }
        if !strangers.is_empty() {
            problems.push(format!("unexpected responder {}", strangers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
        }
        match answering {
            // Failed attempts are what this path should give; only an answer is news.
            Answering::Nobody if problems.is_empty() => return pass(expected, seen),
            Answering::Every if !silent.is_empty() => {
                let dark: Vec<&String> = names.iter().zip(endpoints).filter(|(_, e)| silent.contains(&&e.pod)).map(|(n, _)| n).collect();
                problems.push(format!("never answered: {}", dark.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
            }
            Answering::Any if silent.len() == endpoints.len() => problems.push("no expected endpoint answered".into()),
            _ => {}
        }
        if problems.is_empty() {
            let mut outcome = pass(expected, seen);
            outcome.retried = self.failures.iter().map(|f| format!("connection attempt failed before the data plane converged: {f}")).collect();
            outcome
        } else {
            let mut outcome = fail(expected, seen);
            outcome.message = format!("{}; {}", problems.join("; "), outcome.actual);
            outcome
        }
    }
}

/// Failures, each distinct one once with its count.
/// The continuous batches' verdict from the connections they lost (`lost`) and those the
/// confirming batch, run after a loss, lost: nothing lost, the path held; lost, then a confirming
/// batch that lost nothing, it held (a lone connect timeout on a loaded machine: seen once in a CI
/// run), said as a retry so the case is reported flaky; lost in the confirming batch too, it flaps.
fn continuity(lost: &[String], confirming_lost: &[String]) -> std::result::Result<Option<String>, String> {
    if lost.is_empty() {
        return Ok(None);
    }
    if confirming_lost.is_empty() {
        let attempts = CONTINUOUS_BATCHES * BATCH;
        return Ok(Some(format!("{} of {attempts} continuous connections failed ({}), then a confirming batch of {BATCH} all answered", lost.len(), summarize(lost))));
    }
    let all: Vec<String> = lost.iter().chain(confirming_lost).cloned().collect();
    Err(format!("answered, then {} connections failed, {} of them in a confirming batch of {BATCH}: {}", all.len(), confirming_lost.len(), summarize(&all)))
}

fn summarize(failures: &[String]) -> String {
    let mut counted: Vec<(&String, usize)> = Vec::new();
    for f in failures {
        match counted.iter_mut().find(|(seen, _)| *seen == f) {
            Some((_, n)) => *n += 1,
            None => counted.push((f, 1)),
        }
    }
    counted.iter().map(|(f, n)| if *n > 1 { format!("{f} (x{n})") } else { f.to_string() }).collect::<Vec<_>>().join("; ")
}

/// Connections per probe run: one exec carries a batch, so a slow API server (a loaded machine)
/// costs one round trip per batch, not per connection.
pub const BATCH: usize = 8;

/// Batches that must all be answered after the first answer, for a path that must stay reachable.
const CONTINUOUS_BATCHES: usize = 2;

/// Bytes a plain connection sends (and gets back).
pub const SMALL_PAYLOAD: usize = 16;

/// Answers collected before a check may say an endpoint never answered: with two endpoints balanced
/// at random, one goes unseen in 16 answers with odds of 2 in 2^16 (< 1 in 10^4).
const MIN_ANSWERS: usize = 16;

/// However slow the machine, a reach stops trying after this long.
const GIVE_UP: Duration = Duration::from_secs(30);

/// A batch of the reach primitive: BATCH connections, their starts spread over `spread`.
pub fn batch(proto: Protocol, target: SocketAddr, bytes: usize, spread: Duration) -> Dial {
    Dial { spread, ..Dial::at_once(proto.name(), target, bytes, BATCH) }
}

/// Runs batches of connections until the tally settles. Unsettled, it keeps going for the
/// convergence window, and past it until MIN_ANSWERS answers make a verdict of "never answered"
/// sound (bounded by GIVE_UP); a target nothing answers stops at the window. A failed batch waits a
/// moment before the next, an answered one does not. `batch` is given how long to spread its
/// connections over: silence (Nobody) is listened for with one batch spread over the whole window,
/// one probe run instead of one per timeout; everything else is asked at once.
pub async fn converge<F, Fut>(endpoints: &[Endpoint], answering: Answering, mut batch: F) -> Result<(Tally, Duration)>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<Vec<ConnectResult>>>,
{
    let started = Instant::now();
    let mut tally = Tally::default();
    if endpoints.is_empty() && answering != Answering::Nobody {
        return Ok((tally, started.elapsed()));
    }
    while !tally.complete(endpoints, answering) {
        let elapsed = started.elapsed();
        let answers: usize = tally.answered.values().map(|(n, _)| n).sum();
        if elapsed >= GIVE_UP || (elapsed >= CONVERGENCE && (answers >= MIN_ANSWERS || answers == 0)) {
            break;
        }
        let spread = if answering == Answering::Nobody { CONVERGENCE } else { Duration::ZERO };
        let results = batch(spread).await?;
        let failed = results.iter().any(|r| !r.ok);
        results.into_iter().for_each(|r| tally.record(r));
        if failed {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok((tally, started.elapsed()))
}

impl Fixture {
    /// `count` connections at once from `from`, in one probe run.
    pub async fn connect_batch(&self, from: &str, proto: Protocol, target: SocketAddr, bytes: usize, count: usize) -> Result<Vec<ConnectResult>> {
        self.dial(from, Dial::at_once(proto.name(), target, bytes, count)).await
    }

    /// Runs `dial` in the fixture pod `from`.
    pub async fn dial(&self, from: &str, dial: Dial) -> Result<Vec<ConnectResult>> {
        probe_pod::connect_batch(&self.pods, from, &dial).await
    }

    /// Connects from the fixture pod `from` until `endpoints` answered as `answering` asks.
    pub async fn reach(&self, from: &str, proto: Protocol, target: Destination, bytes: usize, answers: Answers) -> Result<Outcome> {
        let Answers { expected, answering, rule } = answers;
        let (target, endpoints) = match (target, expected) {
            (Ok(target), Ok(endpoints)) => (target, endpoints),
            (Err(missing), _) | (_, Err(missing)) => return Ok(missing.into()),
        };
        let sources = match self.sources(from, IpFamily::of(&target.ip()), rule).await? {
            Ok(sources) => sources,
            Err(missing) => return Ok(missing.into()),
        };
        let (tally, elapsed) = converge(&endpoints, answering, |spread| self.dial(from, batch(proto, target, bytes, spread))).await?;
        Ok(tally.judge(&format!("{from} -> {target} over {}", proto.name()), &endpoints, answering, &sources, elapsed))
    }

    /// `reach` to one endpoint directly, which must then stay reachable: CONTINUOUS_BATCHES more
    /// batches, every connection answered (a path that answers once and then flaps fails). A loss
    /// there gets one confirming batch, which must lose nothing (see `continuity`).
    pub async fn reach_continuously(&self, from: &str, proto: Protocol, endpoint: &Endpoint, port: u16, rule: SourceRule) -> Result<Outcome> {
        let target = SocketAddr::new(endpoint.address, port);
        let sources = match self.sources(from, IpFamily::of(&endpoint.address), rule).await? {
            Ok(sources) => sources,
            Err(missing) => return Ok(missing.into()),
        };
        let endpoints = [endpoint.clone()];
        let started = Instant::now();
        let (mut tally, _) = converge(&endpoints, Answering::Every, |spread| self.dial(from, batch(proto, target, SMALL_PAYLOAD, spread))).await?;
        let failed_before = tally.failures.len();
        let (mut lost, mut confirming_lost) = (Vec::new(), Vec::new());
        if tally.complete(&endpoints, Answering::Every) {
            for _ in 0..CONTINUOUS_BATCHES {
                self.connect_batch(from, proto, target, SMALL_PAYLOAD, BATCH).await?.into_iter().for_each(|r| tally.record(r));
            }
            lost = tally.failures[failed_before..].to_vec();
            if !lost.is_empty() {
                self.connect_batch(from, proto, target, SMALL_PAYLOAD, BATCH).await?.into_iter().for_each(|r| tally.record(r));
                confirming_lost = tally.failures[failed_before + lost.len()..].to_vec();
            }
        }
        let mut outcome = tally.judge(&format!("{from} -> {target} over {}", proto.name()), &endpoints, Answering::Every, &sources, started.elapsed());
        if outcome.status == Status::Passed {
            match continuity(&lost, &confirming_lost) {
                Ok(None) => {}
                Ok(Some(forgiven)) => outcome.retried.push(forgiven),
                Err(broken) => outcome = fail(outcome.expected, broken),
            }
        }
        Ok(outcome)
    }

    /// The client addresses `rule` allows for connections of `family` from the fixture pod `from`,
    /// or what the client lacks (a pod without an address of the family).
    async fn sources(&self, from: &str, family: IpFamily, rule: SourceRule) -> Result<std::result::Result<Sources, Missing>> {
        let pod = match self.pod_of_family(from, family).await? {
            Ok(pod) => pod,
            Err(missing) => return Ok(Err(missing)),
        };
        let allowed = match rule {
            // The loader keeps external-client to clients outside the cluster (OutsideHost::reach).
            SourceRule::Any | SourceRule::ExternalClient => Vec::new(),
            SourceRule::ClientPod => crate::objects::pod_ips(&pod),
            SourceRule::ClientNode => {
                let spec = pod.spec.unwrap_or_default();
                let node = spec.node_name.unwrap_or_default();
                let mut ips = self.nodes.iter().find(|(_, n)| super::fixture::name_of(n) == node).map(|(_, n)| crate::objects::internal_ips(n)).unwrap_or_default();
                // A masquerade takes the address of the device the packet leaves by, which with an
                // overlay CNI is its tunnel device (flannel's flannel.1 holds 10.244.0.0): any
                // address the node holds is the node's, as a hostNetwork client sees them.
                if spec.host_network == Some(true) {
                    ips.extend(self.host_addresses(from).await?);
                }
                ips
            }
        };
        let allowed = allowed.iter().filter_map(|a| a.parse::<IpAddr>().ok()).filter(|ip| IpFamily::of(ip) == family).collect();
        Ok(Ok(Sources { rule, allowed }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_pod::Answer;

    fn endpoint(pod: &str) -> Endpoint {
        Endpoint { pod: pod.into(), node: "worker".into(), address: format!("fd00::{}", pod.len()).parse().unwrap(), answers_as: pod.into() }
    }

    fn answer(who: &str) -> ConnectResult {
        ConnectResult { ok: true, answer: Some(Answer { hostname: who.into(), client: "fd00::c".into(), bytes: 16 }), error: None }
    }

    fn refused() -> ConnectResult {
        ConnectResult { ok: false, answer: None, error: Some("connection refused".into()) }
    }

    #[test]
    fn a_continuous_loss_is_forgiven_only_when_the_confirming_batch_loses_nothing() {
        let timeout = vec!["connect: timeout".to_string()];
        assert_eq!(continuity(&[], &[]), Ok(None));
        assert_eq!(
            continuity(&timeout, &[]),
            Ok(Some("1 of 16 continuous connections failed (connect: timeout), then a confirming batch of 8 all answered".into()))
        );
        assert_eq!(
            continuity(&timeout, &timeout),
            Err("answered, then 2 connections failed, 1 of them in a confirming batch of 8: connect: timeout (x2)".into())
        );
    }

    fn tally(results: Vec<ConnectResult>) -> Tally {
        let mut t = Tally::default();
        results.into_iter().for_each(|r| t.record(r));
        t
    }

    #[test]
    fn every_endpoint_must_answer_and_the_silent_one_is_named() {
        let endpoints = [endpoint("server-0"), endpoint("server-1")];
        let one = tally(vec![answer("server-0"), answer("server-0"), answer("server-0")]).judge("c -> s", &endpoints, Answering::Every, &Sources::any(), Duration::from_secs(10));
        assert_eq!(one.status, Status::Failed);
        assert!(one.message.starts_with("never answered: server-1 on worker (fd00::8)"), "{}", one.message);
        let both = tally(vec![refused(), answer("server-1"), answer("server-0")]).judge("c -> s", &endpoints, Answering::Every, &Sources::any(), Duration::from_secs(1));
        assert_eq!(both.status, Status::Passed, "{both:?}");
        assert_eq!(both.actual, "answered by server-0 x1 (saw client fd00::c); server-1 x1 (saw client fd00::c) in 3 attempts over 1.0s; failed attempts: connection refused");
        assert_eq!(both.retried.len(), 1, "a pass after a failed attempt is flaky");
    }

    #[test]
    fn a_stranger_fails_even_when_everyone_answered() {
        let endpoints = [endpoint("server-0")];
        let got = tally(vec![answer("server-0"), answer("server-9")]).judge("c -> s", &endpoints, Answering::Any, &Sources::any(), Duration::from_secs(1));
        assert_eq!(got.status, Status::Failed);
        assert!(got.message.starts_with("unexpected responder server-9"), "{}", got.message);
    }

    #[test]
    fn a_translated_source_address_fails_the_client_pod_rule() {
        let endpoints = [endpoint("server-0")];
        let pod = Sources { rule: SourceRule::ClientPod, allowed: vec!["fd00::c".parse().unwrap()] };
        let natted = ConnectResult { ok: true, answer: Some(Answer { hostname: "server-0".into(), client: "[fd00::99]:40000".into(), bytes: 16 }), error: None };
        let got = tally(vec![natted]).judge("c -> s", &endpoints, Answering::Every, &pod, Duration::from_secs(1));
        assert_eq!(got.status, Status::Failed);
        assert!(got.message.starts_with("source address translated: server-0 saw client fd00::99"), "{}", got.message);
        assert!(got.expected.ends_with("each seeing the client pod's own address (fd00::c)"), "{}", got.expected);
        let direct = ConnectResult { ok: true, answer: Some(Answer { hostname: "server-0".into(), client: "[fd00::c]:40000".into(), bytes: 16 }), error: None };
        assert_eq!(tally(vec![direct]).judge("c -> s", &endpoints, Answering::Every, &pod, Duration::from_secs(1)).status, Status::Passed);
    }

    #[test]
    fn nothing_to_expect_is_a_failure_not_a_pass() {
        let got = Tally::default().judge("c -> s", &[], Answering::Every, &Sources::any(), Duration::ZERO);
        assert_eq!((got.status, got.actual.as_str()), (Status::Failed, "no endpoint of this family to expect an answer from"));
    }

    #[test]
    fn nobody_passes_on_silence_and_names_whoever_answers() {
        let silent = tally(vec![refused(), refused()]).judge("c -> s", &[], Answering::Nobody, &Sources::any(), Duration::from_secs(10));
        assert_eq!((silent.status, silent.retried.len()), (Status::Passed, 0), "{silent:?}");
        assert_eq!(silent.expected, "c -> s answered by nobody within 10s");
        let leaked = tally(vec![refused(), answer("server-0")]).judge("c -> s", &[], Answering::Nobody, &Sources::any(), Duration::from_secs(1));
        assert_eq!(leaked.status, Status::Failed);
        assert!(leaked.message.starts_with("unexpected responder server-0"), "{}", leaked.message);
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_keeps_listening_for_the_whole_window_and_stops_at_the_first_answer() {
        // Each batch is asked to spread its connections over the whole window.
        let (silent, elapsed) = converge(&[], Answering::Nobody, |spread| async move {
            assert_eq!(spread, CONVERGENCE);
            Ok(vec![refused()])
        })
        .await
        .unwrap();
        assert!(elapsed >= CONVERGENCE && silent.attempts >= 1, "{elapsed:?} {}", silent.attempts);
        let (leaked, _) = converge(&[], Answering::Nobody, |_| async { Ok(vec![answer("server-0")]) }).await.unwrap();
        assert_eq!(leaked.attempts, 1);
    }

    #[tokio::test]
    async fn converge_stops_as_soon_as_the_tally_settles() {
        let endpoints = [endpoint("server-0"), endpoint("server-1")];
        let mut script = vec![vec![answer("server-1")], vec![answer("server-0"), answer("server-0")], vec![answer("server-0")]].into_iter();
        let (tally, _) = converge(&endpoints, Answering::Every, |spread| {
            assert_eq!(spread, Duration::ZERO, "answers are asked for at once");
            let next = script.next();
            async move { Ok(next.unwrap_or_else(|| vec![refused()])) }
        })
        .await
        .unwrap();
        assert_eq!(tally.attempts, 3, "two batches, three connections");
    }
}
