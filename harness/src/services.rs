//! Executing a Service scenario against the API server and matching what came back against the
//! row's expectation for the cluster's mode.

use crate::detect::ClusterFacts;
use crate::error::{Error, Result};
use crate::mode::{IpFamily, Mode};
use crate::scenario::{Expectation, Placeholder, Rejection, Scenario, UpdateMethod, parse_placeholder};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::{Api, Client};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// What one scenario did and whether it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    pub expected: String,
    pub actual: String,
    /// Each way the actual outcome differs from the expected one.
    pub differences: Vec<String>,
}

/// The API server's answer to the step under test.
#[derive(Debug, Clone)]
pub enum Answer {
    Accepted { spec: Value },
    Rejected(Box<Status>),
}

/// Concrete family of a symbol for a mode. `secondary` on a single-stack cluster is the family the
/// cluster does not have (selectorless headless Services name it).
pub fn family_of_symbol(symbol: &str, mode: Mode) -> Option<IpFamily> {
    let other = |f: IpFamily| if f == IpFamily::IPv4 { IpFamily::IPv6 } else { IpFamily::IPv4 };
    match symbol {
        "primary" => Some(mode.primary()),
        "secondary" => Some(mode.families().get(1).copied().unwrap_or_else(|| other(mode.primary()))),
        "IPv4" => Some(IpFamily::IPv4),
        "IPv6" => Some(IpFamily::IPv6),
        _ => None,
    }
}

/// The expectation with its family symbols resolved for `mode`, so that the expectations of two
/// modes can be compared (two modes differ on a row exactly when these differ).
pub fn concrete(expectation: &Expectation, mode: Mode) -> Expectation {
    let resolve = |s: &String| family_of_symbol(s, mode).map_or_else(|| s.clone(), |f| f.to_string());
    Expectation {
        families: expectation.families.as_ref().map(|f| f.iter().map(resolve).collect()),
        cluster_ips: expectation.cluster_ips.as_ref().map(|ips| ips.iter().map(resolve).collect()),
        ..expectation.clone()
    }
}

/// Addresses chosen for a scenario's placeholders: unique across the scenarios of a run, and none
/// that the cluster holds already (a previous run's Services may still be terminating).
pub struct AddressBook {
    next: AtomicU32,
    in_use: std::collections::BTreeSet<IpAddr>,
}

impl AddressBook {
    /// `in_use`: the addresses allocated when the run starts (the cluster's IPAddress objects).
    pub fn new(in_use: std::collections::BTreeSet<IpAddr>) -> Self {
        // Start at a random point so two runs against one cluster rarely pick the same address.
        Self { next: AtomicU32::new(rand::random::<u32>() % 200), in_use }
    }

    /// The next address of `range`'s static band that nobody holds.
    fn free_address(&self, range: ipnet::IpNet) -> IpAddr {
        // Static band of the range (KEP-3070): the dynamic allocator avoids the first addresses,
        // so user-chosen ones there do not collide with allocations.
        let mut candidate = nth_address(range, 20);
        for _ in 0..200 {
            candidate = nth_address(range, 20 + self.next.fetch_add(1, Ordering::Relaxed) % 200);
            if !self.in_use.contains(&candidate) {
                break;
            }
        }
        candidate
    }

    /// Resolves every placeholder of one scenario to an address (the same one at every use).
    pub fn resolve(&self, scenario: &Scenario, facts: &ClusterFacts) -> BTreeMap<Placeholder, String> {
        let mut strings = Vec::new();
        collect_strings(&scenario.object, &mut strings);
        if let Some(update) = &scenario.update {
            update.set.values().for_each(|v| collect_strings(v, &mut strings));
            update.append.values().flatten().for_each(|v| collect_strings(v, &mut strings));
            if let Some(body) = &update.body {
                collect_strings(body, &mut strings);
            }
        }
        for expectation in scenario.expect.values() {
            strings.extend(expectation.cluster_ips.iter().flatten().cloned());
        }
        let mut resolved = BTreeMap::new();
        for placeholder in strings.iter().filter_map(|s| parse_placeholder(s)?.ok()) {
            if resolved.contains_key(&placeholder) {
                continue;
            }
            let address = match &placeholder {
                Placeholder::KubernetesIp => facts.kubernetes_ip.to_string(),
                Placeholder::Outside { family } => match family_of_symbol(family, facts.mode) {
                    Some(IpFamily::IPv6) => "2001:db8::16".to_string(),
                    _ => "203.0.113.16".to_string(),
                },
                Placeholder::Free { family, .. } => {
                    let family = family_of_symbol(family, facts.mode).unwrap_or(IpFamily::IPv4);
                    self.free_address(facts.service_cidr(family).unwrap_or_else(|| default_range(family))).to_string()
                }
            };
            resolved.insert(placeholder, address);
        }
        resolved
    }
}

/// Every service address the cluster has allocated (networking.k8s.io/v1 IPAddress objects).
pub async fn allocated_addresses(client: &Client) -> Result<std::collections::BTreeSet<IpAddr>> {
    let api: Api<k8s_openapi::api::networking::v1::IPAddress> = Api::all(client.clone());
    let list = api.list(&kube::api::ListParams::default()).await?;
    Ok(list.items.iter().filter_map(|a| a.metadata.name.as_deref()?.parse().ok()).collect())
}

fn default_range(family: IpFamily) -> ipnet::IpNet {
    let text = if family == IpFamily::IPv4 { "10.96.0.0/16" } else { "fd00:10:96::/112" };
    text.parse().unwrap_or_else(|_| ipnet::IpNet::default())
}

fn nth_address(range: ipnet::IpNet, n: u32) -> IpAddr {
    match range.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(n)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(u128::from(n))).into()),
    }
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

fn substitute(value: &Value, book: &BTreeMap<Placeholder, String>) -> Value {
    match value {
        Value::String(s) => match parse_placeholder(s).and_then(|p| p.ok()).and_then(|p| book.get(&p)) {
            Some(address) => Value::String(address.clone()),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, book)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), substitute(v, book))).collect()),
        other => other.clone(),
    }
}

fn path_parent<'a>(root: &'a mut Value, path: &str) -> Option<(&'a mut serde_json::Map<String, Value>, String)> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop()?.to_string();
    let mut node = root;
    for part in parts {
        node = node.as_object_mut()?.entry(part.to_string()).or_insert_with(|| Value::Object(Default::default()));
    }
    Some((node.as_object_mut()?, last))
}

/// Applies a PUT-style change (`set`, `truncate`, `remove`, `append`, in that order) to an object.
fn apply_changes(object: &mut Value, update: &crate::scenario::Update, book: &BTreeMap<Placeholder, String>) {
    for (path, value) in &update.set {
        if let Some((parent, key)) = path_parent(object, path) {
            parent.insert(key, substitute(value, book));
        }
    }
    for (path, len) in &update.truncate {
        if let Some((parent, key)) = path_parent(object, path)
            && let Some(Value::Array(items)) = parent.get_mut(&key)
        {
            items.truncate(*len);
        }
    }
    for path in &update.remove {
        if let Some((parent, key)) = path_parent(object, path) {
            parent.remove(&key);
        }
    }
    for (path, values) in &update.append {
        if let Some((parent, key)) = path_parent(object, path)
            && let Value::Array(items) = parent.entry(key).or_insert_with(|| Value::Array(vec![]))
        {
            items.extend(values.iter().map(|v| substitute(v, book)));
        }
    }
}

/// Runs the scenario's steps in `namespace`; returns the answer to the step under test and, for
/// updates, the spec before the update.
pub async fn execute(
    client: &Client,
    namespace: &str,
    scenario: &Scenario,
    book: &BTreeMap<Placeholder, String>,
    retries: &crate::retry::Retries,
) -> Result<(Answer, Option<Value>)> {
    let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let name = scenario.id.to_lowercase();
    let mut body = substitute(&scenario.object, book);
    crate::scenario::merge(
        &mut body,
        &serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}}),
    );
    let object: DynamicObject =
        serde_json::from_value(body.clone()).map_err(|e| Error::Usage(format!("{}: object: {e}", scenario.origin)))?;
    let params = PostParams { dry_run: scenario.dry_run, ..Default::default() };
    let created = retries.call("create", || api.create(&params, &object)).await;
    let Some(update) = &scenario.update else {
        return Ok((answer_of(created)?, None));
    };
    let created = match created {
        Ok(obj) => obj,
        Err(kube::Error::Api(status)) => {
            return Err(Error::Usage(format!(
                "{}: the starting object was rejected, so the update could not be tried: {}",
                scenario.origin, status.message
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let before = created.data.get("spec").cloned();
    let result = match update.method {
        UpdateMethod::Put => {
            let mut object = if update.from_original {
                let mut original = body.clone();
                crate::scenario::merge(
                    &mut original,
                    &serde_json::json!({"metadata": {"resourceVersion": created.metadata.resource_version}}),
                );
                original
            } else {
                serde_json::to_value(&created).map_err(|e| Error::Usage(e.to_string()))?
            };
            apply_changes(&mut object, update, book);
            let object: DynamicObject = serde_json::from_value(object).map_err(|e| Error::Usage(e.to_string()))?;
            let post = PostParams::default();
            retries.call("replace", || api.replace(&name, &post, &object)).await
        }
        UpdateMethod::MergePatch | UpdateMethod::StrategicPatch => {
            let patch_body = substitute(update.body.as_ref().unwrap_or(&Value::Null), book);
            let patch = if update.method == UpdateMethod::MergePatch { Patch::Merge(patch_body) } else { Patch::Strategic(patch_body) };
            let params = PatchParams::default();
            retries.call("patch", || api.patch(&name, &params, &patch)).await
        }
    };
    Ok((answer_of(result)?, before))
}

fn answer_of(result: std::result::Result<DynamicObject, kube::Error>) -> Result<Answer> {
    match result {
        Ok(obj) => Ok(Answer::Accepted { spec: obj.data.get("spec").cloned().unwrap_or(Value::Null) }),
        Err(kube::Error::Api(status)) if status.code >= 400 && status.code < 500 && status.code != 429 && status.code != 409 => {
            Ok(Answer::Rejected(status))
        }
        // 409, 429, 5xx and transport errors are not verdicts.
        Err(e) => Err(e.into()),
    }
}

fn describe_rejection(r: &Rejection) -> String {
    let causes: Vec<String> = r.causes.iter().map(|c| format!("{} ~ \"{}\"", c.field, c.message)).collect();
    format!("rejected {}{} [{}]", r.status, r.reason.as_ref().map(|x| format!(" {x}")).unwrap_or_default(), causes.join("; "))
}

fn describe_spec(spec: &Value) -> String {
    let field = |k: &str| spec.get(k).map_or_else(|| "unset".to_string(), |v| v.to_string().replace('"', ""));
    format!(
        "accepted: policy={} families={} clusterIPs={}{}",
        field("ipFamilyPolicy"),
        field("ipFamilies"),
        field("clusterIPs"),
        spec.get("ports")
            .and_then(Value::as_array)
            .map(|ports| {
                let node_ports = ports.iter().filter(|p| p.get("nodePort").is_some()).count();
                if node_ports > 0 { format!(" nodePorts={node_ports}") } else { String::new() }
            })
            .unwrap_or_default()
    )
}

fn describe_expectation(e: &Expectation, mode: Mode, facts: &ClusterFacts, book: &BTreeMap<Placeholder, String>) -> String {
    if let Some(r) = &e.rejected {
        return describe_rejection(r);
    }
    let mut parts = vec!["accepted:".to_string()];
    if let Some(p) = &e.policy {
        parts.push(format!("policy={p}"));
    }
    if let Some(f) = &e.families {
        let concrete: Vec<String> =
            f.iter().map(|s| family_of_symbol(s, mode).map_or_else(|| s.clone(), |f| f.to_string())).collect();
        parts.push(format!("families=[{}]", concrete.join(",")));
    }
    if let Some(ips) = &e.cluster_ips {
        let concrete: Vec<String> = ips
            .iter()
            .map(|s| match family_of_symbol(s, mode) {
                Some(f) => format!("{f} in {}", facts.service_cidr(f).map_or("no range".into(), |r| r.to_string())),
                None => match parse_placeholder(s).and_then(|p| p.ok()).and_then(|p| book.get(&p)) {
                    Some(address) => address.clone(),
                    None => s.clone(),
                },
            })
            .collect();
        parts.push(format!("clusterIPs=[{}]", concrete.join(",")));
    }
    if !e.unset.is_empty() {
        parts.push(format!("unset=[{}]", e.unset.join(",")));
    }
    if let Some(n) = e.node_ports {
        parts.push(format!("nodePorts={n}"));
    }
    parts.join(" ")
}

/// Compares the answer with the expectation for `mode`.
pub fn judge(
    expectation: &Expectation,
    mode: Mode,
    facts: &ClusterFacts,
    book: &BTreeMap<Placeholder, String>,
    answer: &Answer,
    before: Option<&Value>,
) -> Verdict {
    let expected = describe_expectation(expectation, mode, facts, book);
    let mut differences = Vec::new();
    let actual = match answer {
        Answer::Rejected(status) => {
            let causes: Vec<String> = status
                .details
                .as_ref()
                .map(|d| d.causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect())
                .unwrap_or_default();
            format!("rejected {} {}: {}", status.code, status.reason, if causes.is_empty() { status.message.clone() } else { causes.join("; ") })
        }
        Answer::Accepted { spec } => describe_spec(spec),
    };
    match (&expectation.rejected, answer) {
        (Some(_), Answer::Accepted { .. }) => differences.push("expected a rejection, the server accepted".into()),
        (None, Answer::Rejected(status)) => differences.push(format!("expected acceptance, the server rejected: {}", status.message)),
        (Some(want), Answer::Rejected(status)) => {
            if want.status != status.code {
                differences.push(format!("HTTP status {} instead of {}", status.code, want.status));
            }
            if let Some(reason) = &want.reason
                && reason != &status.reason
            {
                differences.push(format!("reason {} instead of {reason}", status.reason));
            }
            let causes = status.details.as_ref().map(|d| d.causes.clone()).unwrap_or_default();
            for cause in &want.causes {
                let found = causes.iter().any(|c| c.field == cause.field && c.message.contains(&cause.message));
                if !found {
                    differences.push(format!("no cause on {} containing \"{}\"", cause.field, cause.message));
                }
            }
        }
        (None, Answer::Accepted { spec }) => judge_accepted(expectation, mode, facts, book, spec, before, &mut differences),
    }
    Verdict { passed: differences.is_empty(), expected, actual, differences }
}

fn judge_accepted(
    e: &Expectation,
    mode: Mode,
    facts: &ClusterFacts,
    book: &BTreeMap<Placeholder, String>,
    spec: &Value,
    before: Option<&Value>,
    differences: &mut Vec<String>,
) {
    let strings = |key: &str| -> Option<Vec<String>> {
        spec.get(key)?.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
    };
    if let Some(policy) = &e.policy {
        let got = spec.get("ipFamilyPolicy").and_then(Value::as_str);
        if got != Some(policy.as_str()) {
            differences.push(format!("ipFamilyPolicy {} instead of {policy}", got.unwrap_or("unset")));
        }
    }
    if let Some(families) = &e.families {
        let want: Vec<String> =
            families.iter().map(|s| family_of_symbol(s, mode).map_or_else(|| s.clone(), |f| f.to_string())).collect();
        let got = strings("ipFamilies").unwrap_or_default();
        if got != want {
            differences.push(format!("ipFamilies {got:?} instead of {want:?}"));
        }
    }
    if let Some(ips) = &e.cluster_ips {
        let got = strings("clusterIPs").unwrap_or_default();
        if got.len() != ips.len() {
            differences.push(format!("{} clusterIPs {got:?} instead of {}", got.len(), ips.len()));
        }
        let previous = before.and_then(|b| b.get("clusterIPs")).and_then(Value::as_array);
        for (i, (want, have)) in ips.iter().zip(got.iter()).enumerate() {
            if let Some(family) = family_of_symbol(want, mode) {
                match (have.parse::<IpAddr>(), facts.service_cidr(family)) {
                    (Ok(ip), Some(range)) if IpFamily::of(&ip) == family && range.contains(&ip) => {}
                    (Ok(ip), Some(range)) => {
                        differences.push(format!("clusterIPs[{i}] {ip} is not an {family} address inside {range}"))
                    }
                    (Ok(ip), None) => differences.push(format!("clusterIPs[{i}] {ip}: the cluster has no {family} service range")),
                    (Err(_), _) => differences.push(format!("clusterIPs[{i}] {have} is not an {family} address")),
                }
            } else if want == "kept" {
                let old = previous.and_then(|p| p.get(i)).and_then(Value::as_str);
                if old != Some(have.as_str()) {
                    differences.push(format!("clusterIPs[{i}] {have} changed (was {})", old.unwrap_or("unset")));
                }
            } else {
                let want_text = match parse_placeholder(want).and_then(|p| p.ok()).and_then(|p| book.get(&p)) {
                    Some(address) => address.clone(),
                    None => want.clone(),
                };
                if &want_text != have {
                    differences.push(format!("clusterIPs[{i}] {have} instead of {want_text}"));
                }
            }
        }
        if let Some(first) = got.first() {
            let cluster_ip = spec.get("clusterIP").and_then(Value::as_str);
            if cluster_ip != Some(first.as_str()) {
                differences.push(format!("clusterIP {} differs from clusterIPs[0] {first}", cluster_ip.unwrap_or("unset")));
            }
        }
    }
    for field in &e.unset {
        if let Some(value) = spec.get(field) {
            differences.push(format!("{field} is {value}, expected unset"));
        }
    }
    if let Some(n) = e.node_ports {
        let ports = spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let with_node_port = ports.iter().filter(|p| p.get("nodePort").and_then(Value::as_u64).is_some()).count();
        if with_node_port != n {
            differences.push(format!("{with_node_port} ports with a nodePort instead of {n}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::CauseMatch;
    use rstest::rstest;

    fn facts(mode: Mode) -> ClusterFacts {
        let cidr = |f: IpFamily| if f == IpFamily::IPv4 { "10.96.0.0/16" } else { "fd00:10:96::/112" };
        ClusterFacts {
            mode,
            service_cidrs: mode.families().iter().filter_map(|&f| cidr(f).parse().ok()).collect(),
            kubernetes_ip: if mode.primary() == IpFamily::IPv4 { "10.96.0.1" } else { "fd00:10:96::1" }.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            server_version: "v1.36.3".into(),
        }
    }

    fn accepted(spec: Value) -> Answer {
        Answer::Accepted { spec }
    }

    fn expectation(policy: &str, families: &[&str], ips: &[&str]) -> Expectation {
        Expectation {
            policy: Some(policy.into()),
            families: Some(families.iter().map(|s| s.to_string()).collect()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            unset: vec![],
            node_ports: None,
            rejected: None,
        }
    }

    fn rejected_422(status: u16, field: &str, message: &str) -> Answer {
        Answer::Rejected(Box::new(Status {
            code: status,
            reason: "Invalid".into(),
            message: format!("Service \"x\" is invalid: {field}: {message}"),
            details: Some(kube::core::response::StatusDetails {
                causes: vec![kube::core::response::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: message.into(),
                    field: field.into(),
                }],
                name: "x".into(),
                group: String::new(),
                kind: "services".into(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
            ..Default::default()
        }))
    }

    #[rstest]
    #[case::dual_both(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5", "fd00:10:96::5"]}), vec![])]
    #[case::dual6_order(Mode::DualIpv6Primary, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "clusterIP": "fd00:10:96::5", "clusterIPs": ["fd00:10:96::5", "10.96.5.5"]}), vec![])]
    #[case::wrong_order(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "clusterIP": "fd00:10:96::5", "clusterIPs": ["fd00:10:96::5", "10.96.5.5"]}),
        vec!["ipFamilies [\"IPv6\", \"IPv4\"] instead of [\"IPv4\", \"IPv6\"]", "clusterIPs[0] fd00:10:96::5 is not an IPv4 address inside 10.96.0.0/16", "clusterIPs[1] 10.96.5.5 is not an IPv6 address inside fd00:10:96::/112"])]
    #[case::single_only(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"], "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"]}),
        vec!["ipFamilies [\"IPv4\"] instead of [\"IPv4\", \"IPv6\"]", "1 clusterIPs [\"10.96.5.5\"] instead of 2"])]
    #[case::outside_range(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.97.5.5", "clusterIPs": ["10.97.5.5", "fd00:10:96::5"]}),
        vec!["clusterIPs[0] 10.97.5.5 is not an IPv4 address inside 10.96.0.0/16"])]
    #[case::wrong_policy(Mode::Dual, serde_json::json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5", "fd00:10:96::5"]}),
        vec!["ipFamilyPolicy SingleStack instead of PreferDualStack"])]
    fn judges_accepted_services(#[case] mode: Mode, #[case] spec: Value, #[case] differences: Vec<&str>) {
        let e = expectation("PreferDualStack", &["primary", "secondary"], &["primary", "secondary"]);
        let verdict = judge(&e, mode, &facts(mode), &BTreeMap::new(), &accepted(spec), None);
        assert_eq!(verdict.differences, differences);
        assert_eq!(verdict.passed, differences.is_empty());
    }

    #[rstest]
    #[case::matching(rejected_422(422, "spec.ipFamilyPolicy", "this cluster is not configured for dual-stack services"), vec![])]
    #[case::other_field(rejected_422(422, "spec.ipFamilies[0]", "this cluster is not configured for dual-stack services"),
        vec!["no cause on spec.ipFamilyPolicy containing \"not configured for dual-stack\""])]
    #[case::other_text(rejected_422(422, "spec.ipFamilyPolicy", "must be 'SingleStack'"),
        vec!["no cause on spec.ipFamilyPolicy containing \"not configured for dual-stack\""])]
    #[case::other_status(rejected_422(400, "spec.ipFamilyPolicy", "this cluster is not configured for dual-stack services"),
        vec!["HTTP status 400 instead of 422"])]
    #[case::accepted(accepted(serde_json::json!({"ipFamilyPolicy": "RequireDualStack"})), vec!["expected a rejection, the server accepted"])]
    fn judges_rejections(#[case] answer: Answer, #[case] differences: Vec<&str>) {
        let e = Expectation {
            policy: None,
            families: None,
            cluster_ips: None,
            unset: vec![],
            node_ports: None,
            rejected: Some(Rejection {
                status: 422,
                reason: Some("Invalid".into()),
                causes: vec![CauseMatch { field: "spec.ipFamilyPolicy".into(), message: "not configured for dual-stack".into() }],
            }),
        };
        let verdict = judge(&e, Mode::Ipv4, &facts(Mode::Ipv4), &BTreeMap::new(), &answer, None);
        assert_eq!(verdict.differences, differences);
    }

    #[test]
    fn kept_and_unset_and_placeholders() {
        let e = Expectation {
            policy: None,
            families: None,
            cluster_ips: Some(vec!["kept".into(), "$ip(IPv6)".into()]),
            unset: vec!["ipFamilyPolicy".into()],
            node_ports: None,
            rejected: None,
        };
        let book = BTreeMap::from([(Placeholder::Free { family: "IPv6".into(), index: 0 }, "fd00:10:96::30".to_string())]);
        let before = serde_json::json!({"clusterIPs": ["10.96.0.9"]});
        let good = accepted(serde_json::json!({"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9", "fd00:10:96::30"]}));
        assert_eq!(judge(&e, Mode::Dual, &facts(Mode::Dual), &book, &good, Some(&before)).differences, Vec::<String>::new());
        let bad = accepted(serde_json::json!({"ipFamilyPolicy": "SingleStack", "clusterIP": "10.96.0.8", "clusterIPs": ["10.96.0.8", "fd00:10:96::31"]}));
        assert_eq!(
            judge(&e, Mode::Dual, &facts(Mode::Dual), &book, &bad, Some(&before)).differences,
            vec![
                "clusterIPs[0] 10.96.0.8 changed (was 10.96.0.9)",
                "clusterIPs[1] fd00:10:96::31 instead of fd00:10:96::30",
                "ipFamilyPolicy is \"SingleStack\", expected unset"
            ]
        );
    }

    #[rstest]
    #[case("primary", Mode::DualIpv6Primary, Some(IpFamily::IPv6))]
    #[case("secondary", Mode::DualIpv6Primary, Some(IpFamily::IPv4))]
    #[case("secondary", Mode::Ipv4, Some(IpFamily::IPv6))]
    #[case("IPv4", Mode::Ipv6, Some(IpFamily::IPv4))]
    #[case("ipv4", Mode::Ipv6, None)]
    fn family_symbols(#[case] symbol: &str, #[case] mode: Mode, #[case] family: Option<IpFamily>) {
        assert_eq!(family_of_symbol(symbol, mode), family);
    }
}
