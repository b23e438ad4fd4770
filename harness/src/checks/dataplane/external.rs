//! The client outside the cluster: a container on the KIND nodes' docker network, started through
//! testcontainers from the probe image.

use super::verdict::{fail, pass};
use crate::checks::Outcome;
use crate::probe_pod;
use crate::table::dataplane::Protocol;
use std::net::SocketAddr;

/// The docker network of a KIND node container named `node` on this host, if there is one.
pub async fn docker_network_of(node: &str) -> Option<String> {
    let out = tokio::process::Command::new("docker")
        .args(["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", node])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(str::to_string)
}

/// Connects from a fresh container on `network` to `target` and judges the answer.
pub async fn connect(network: &str, proto: Protocol, target: SocketAddr, responders: &[String]) -> Outcome {
    use testcontainers::core::ExecCommand;
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};
    let image = crate::machine::probe_image();
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let expected = format!("a container on docker network {network} -> {target} over {} answered by one of {responders:?}", proto.name());
    let container = GenericImage::new(name, tag)
        .with_entrypoint("/usr/local/bin/probe")
        .with_cmd(["serve", "--port", "8080"])
        .with_network(network)
        .start()
        .await;
    let container = match container {
        Ok(c) => c,
        Err(e) => return fail(expected, format!("starting the client container: {e}")),
    };
    let command = ExecCommand::new(["/usr/local/bin/probe", "connect", proto.name(), &target.to_string(), "--timeout-ms", "3000"]);
    let output = match container.exec(command).await {
        Ok(mut result) => result.stdout_to_vec().await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
        Err(e) => return fail(expected, format!("running the client: {e}")),
    };
    let _ = container.rm().await;
    match serde_json::from_str::<probe_pod::ConnectResult>(output.trim()) {
        Ok(got) => match got.answer {
            Some(a) if got.ok && responders.contains(&a.hostname) => pass(expected, format!("answered by {} (saw client {})", a.hostname, a.client)),
            Some(a) => fail(expected, format!("wrong responder {}", a.hostname)),
            None => fail(expected, got.error.unwrap_or_else(|| "no answer".into())),
        },
        Err(e) => fail(expected, format!("client printed {output:?}: {e}")),
    }
}
