//! Why a CNI did not come up: every pod that is not Ready, with its containers' states, its last
//! events and its containers' last log lines, and the images the nodes lack named with the nodes.

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{ListParams, LogParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// What a failed CNI phase reports: one line for the console and the error, details for JUnit.
pub struct Diagnosis {
    pub summary: String,
    pub details: String,
}

/// Looks at every pod that is not Ready (the CNI's among them: a vendor's namespace is unknown).
pub async fn diagnose(client: &Client) -> Diagnosis {
    let pods = match Api::<Pod>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => return Diagnosis { summary: format!("the pods could not be listed: {e}"), details: String::new() },
    };
    let stuck: Vec<&Pod> = pods.iter().filter(|p| !is_ready(p)).collect();
    if stuck.is_empty() {
        return Diagnosis { summary: "every pod is Ready".into(), details: String::new() };
    }
    let mut missing_images: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut details = String::new();
    for pod in &stuck {
        let (namespace, name) = (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_else(|| "no node".into());
        let states: Vec<String> = statuses(pod).map(|c| format!("{}: {}", c.name, container_state(c))).collect();
        for status in statuses(pod) {
            if let Some(missing) = missing_image(status) {
                missing_images.entry(missing).or_default().push(node.clone());
            }
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let line = format!("{namespace}/{name} on {node} ({phase}{}{})", if states.is_empty() { "" } else { "; " }, states.join("; "));
        details.push_str(&format!("pod {line}\n"));
        for event in events_of(client, &namespace, &name).await {
            details.push_str(&format!("  event {event}\n"));
        }
        for status in statuses(pod).filter(|c| c.restart_count > 0 || c.state.as_ref().is_some_and(|s| s.waiting.is_none())) {
            let params = LogParams { container: Some(status.name.clone()), tail_lines: Some(20), ..Default::default() };
            if let Ok(log) = Api::<Pod>::namespaced(client.clone(), &namespace).logs(&name, &params).await {
                details.push_str(&format!("  last log lines of {}:\n", status.name));
                details.extend(log.lines().map(|l| format!("    {l}\n")));
            }
        }
        lines.push(line);
    }
    let mut summary: Vec<String> = missing_images
        .iter()
        .map(|((image, reason), nodes)| format!("image {image} is not on node {} and is not pulled ({reason}; load it with --load-image)", dedup(nodes).join(", ")))
        .collect();
    summary.push(format!("{} pods not Ready: {}", lines.len(), lines.join(" | ")));
    Diagnosis { summary: summary.join("; "), details }
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        || status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
    init.chain(status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten())
}

fn container_state(status: &ContainerStatus) -> String {
    let state = status.state.as_ref();
    let restarts = if status.restart_count > 0 { format!(", {} restarts", status.restart_count) } else { String::new() };
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.clone().unwrap_or_else(|| "waiting".into());
        return match &waiting.message {
            Some(message) => format!("{reason}: {message}{restarts}"),
            None => format!("{reason}{restarts}"),
        };
    }
    if let Some(done) = state.and_then(|s| s.terminated.as_ref()) {
        return format!("terminated {} exit {}{restarts}", done.reason.clone().unwrap_or_default(), done.exit_code);
    }
    format!("running, not ready{restarts}")
}

/// The image of a container the kubelet cannot start because the node lacks it and may not pull
/// it (`imagePullPolicy: Never`) or cannot pull it (an offline cluster).
fn missing_image(status: &ContainerStatus) -> Option<(String, String)> {
    let reason = status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()?;
    matches!(reason, "ErrImageNeverPull" | "ErrImagePull" | "ImagePullBackOff").then(|| (status.image.clone(), reason.to_string()))
}

async fn events_of(client: &Client, namespace: &str, pod: &str) -> Vec<String> {
    let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    let Ok(list) = Api::<Event>::namespaced(client.clone(), namespace).list(&params).await else { return Vec::new() };
    let mut events = list.items;
    events.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
    events.iter().rev().take(5).rev().map(|e| format!("{} {}: {}", e.type_.as_deref().unwrap_or(""), e.reason.as_deref().unwrap_or(""), e.message.as_deref().unwrap_or("").trim())).collect()
}

fn dedup(nodes: &[String]) -> Vec<String> {
    let mut unique: Vec<String> = nodes.to_vec();
    unique.sort();
    unique.dedup();
    unique
}
