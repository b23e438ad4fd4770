//! Executing a Service row against the API server: its placeholders resolved to addresses, the
//! object created (and updated), and the server's answer to the step under test.

use crate::detect::ClusterFacts;
use crate::error::{Error, Result};
use crate::mode::IpFamily;
use crate::table::services::{Scenario, Update, UpdateMethod, merge};
use crate::table::symbols::{Placeholder, family_of_symbol, parse_placeholder};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::{Api, Client};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// The API server's answer to the step under test.
#[derive(Debug, Clone)]
pub enum Answer {
    Accepted { spec: Value },
    Rejected(Box<Status>),
}

/// The addresses one scenario's placeholders stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders(BTreeMap<Placeholder, String>);

impl Placeholders {
    /// The address `text` stands for, when it is a placeholder of this scenario.
    pub fn lookup(&self, text: &str) -> Option<&str> {
        parse_placeholder(text).and_then(Result::ok).and_then(|p| self.0.get(&p)).map(String::as_str)
    }

    #[cfg(test)]
    pub fn of(entries: &[(Placeholder, &str)]) -> Self {
        Self(entries.iter().map(|(p, a)| (p.clone(), a.to_string())).collect())
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
    pub fn resolve(&self, scenario: &Scenario, facts: &ClusterFacts) -> Placeholders {
        let strings = scenario.strings();
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
        Placeholders(resolved)
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

fn substitute(value: &Value, book: &Placeholders) -> Value {
    match value {
        Value::String(s) => book.lookup(s).map_or_else(|| value.clone(), |address| Value::String(address.to_string())),
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
fn apply_changes(object: &mut Value, update: &Update, book: &Placeholders) {
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
    book: &Placeholders,
    retries: &crate::retry::Retries,
) -> Result<(Answer, Option<Value>)> {
    let created = create(client, namespace, scenario, book, retries).await?;
    let Some(update) = &scenario.update else {
        return Ok((answer_of(created)?, None));
    };
    let created = started_from(created, scenario)?;
    let before = created.data.get("spec").cloned();
    Ok((apply_update(client, namespace, scenario, update, &created, book, retries).await?, before))
}

/// The prefix of the namespace a row runs in (`dualstack-u15-...`).
pub fn namespace_prefix(scenario: &Scenario) -> String {
    format!("dualstack-{}", scenario.id.to_lowercase())
}

/// `execute` in a namespace of the row's own, deleted afterwards; the answer, the spec before the
/// update, and the namespace's name.
pub async fn execute_in_own_namespace(
    client: &Client,
    scenario: &Scenario,
    book: &Placeholders,
    retries: &crate::retry::Retries,
) -> Result<(Answer, Option<Value>, String)> {
    let namespace = crate::probe_pod::create_namespace(client, &namespace_prefix(scenario), retries).await?;
    let executed = execute(client, &namespace, scenario, book, retries).await;
    crate::probe_pod::delete_namespace(client, &namespace).await;
    executed.map(|(answer, before)| (answer, before, namespace))
}

/// Creates the scenario's Service (its `create` merged over the base, placeholders resolved) in
/// `namespace`: the server's answer, a rejection included.
pub async fn create(
    client: &Client,
    namespace: &str,
    scenario: &Scenario,
    book: &Placeholders,
    retries: &crate::retry::Retries,
) -> Result<std::result::Result<DynamicObject, kube::Error>> {
    let object: DynamicObject = serde_json::from_value(submitted(scenario, namespace, book))
        .map_err(|e| Error::Usage(format!("{}: object: {e}", scenario.origin)))?;
    let params = PostParams { dry_run: scenario.dry_run, ..Default::default() };
    let api = services(client, namespace);
    Ok(retries.call("create", || api.create(&params, &object)).await)
}

/// The object a row submits: its `create` over the base, named after the row, placeholders resolved.
fn submitted(scenario: &Scenario, namespace: &str, book: &Placeholders) -> Value {
    let mut body = substitute(&scenario.object, book);
    merge(
        &mut body,
        &serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": scenario.id.to_lowercase(), "namespace": namespace}}),
    );
    body
}

fn services(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The created object an update starts from; a rejected start is the row's mistake.
pub fn started_from(created: std::result::Result<DynamicObject, kube::Error>, scenario: &Scenario) -> Result<DynamicObject> {
    match created {
        Ok(obj) => Ok(obj),
        Err(kube::Error::Api(status)) => Err(Error::Usage(format!(
            "{}: the starting object was rejected, so the update could not be tried: {}",
            scenario.origin, status.message
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The Service of the scenario as the server now has it, as an answer.
pub async fn read(client: &Client, namespace: &str, scenario: &Scenario, retries: &crate::retry::Retries) -> Result<Answer> {
    Ok(Answer::Accepted { spec: current(client, namespace, scenario, retries).await?.data.get("spec").cloned().unwrap_or(Value::Null) })
}

/// The Service of the scenario as the server now has it.
pub async fn current(client: &Client, namespace: &str, scenario: &Scenario, retries: &crate::retry::Retries) -> Result<DynamicObject> {
    let name = scenario.id.to_lowercase();
    let api = services(client, namespace);
    Ok(retries.call("get", || api.get(&name)).await?)
}

/// Applies the row's `update` to `current` (the object as read): PUT or PATCH; the server's answer.
pub async fn apply_update(
    client: &Client,
    namespace: &str,
    scenario: &Scenario,
    update: &Update,
    current: &DynamicObject,
    book: &Placeholders,
    retries: &crate::retry::Retries,
) -> Result<Answer> {
    let api = services(client, namespace);
    let name = scenario.id.to_lowercase();
    let result = match update.method {
        UpdateMethod::Put => {
            let mut object = if update.from_original {
                let mut original = submitted(scenario, namespace, book);
                merge(&mut original, &serde_json::json!({"metadata": {"resourceVersion": current.metadata.resource_version}}));
                original
            } else {
                serde_json::to_value(current).map_err(|e| Error::Usage(e.to_string()))?
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
    answer_of(result)
}

/// The server's answer to a create, a read or an update: a 4xx is a verdict, anything else an error.
pub fn answer_of(result: std::result::Result<DynamicObject, kube::Error>) -> Result<Answer> {
    match result {
        Ok(obj) => Ok(Answer::Accepted { spec: obj.data.get("spec").cloned().unwrap_or(Value::Null) }),
        Err(kube::Error::Api(status)) if status.code >= 400 && status.code < 500 && status.code != 429 && status.code != 409 => {
            Ok(Answer::Rejected(status))
        }
        // 409, 429, 5xx and transport errors are not verdicts.
        Err(e) => Err(e.into()),
    }
}
