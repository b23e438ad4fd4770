//! The client outside the cluster: a container on the KIND nodes' docker network, started through
//! testcontainers from the probe image.

use super::reach::{Answering, Destination, Expected, Sources, converge};
use super::verdict::fail;
use crate::checks::Outcome;
use crate::error::Result;
use crate::probe_pod::ConnectResult;
use crate::table::dataplane::Protocol;

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

/// Connects from a fresh container on `network` to `target` until the expected endpoints answered
/// (the same convergence and verdict as `Fixture::reach`).
pub async fn reach(network: &str, proto: Protocol, target: Destination, expected: Expected) -> Result<Outcome> {
    use testcontainers::core::ExecCommand;
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};
    let (target, endpoints) = match (target, expected) {
        (Ok(target), Ok(endpoints)) => (target, endpoints),
        (Err(missing), _) | (_, Err(missing)) => return Ok(missing.into()),
    };
    let image = crate::machine::probe_image();
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let description = format!("a container on docker network {network} -> {target} over {}", proto.name());
    let container = GenericImage::new(name, tag)
        .with_entrypoint("/usr/local/bin/probe")
        .with_cmd(["serve", "--port", "8080"])
        .with_network(network)
        .start()
        .await;
    let container = match container {
        Ok(c) => c,
        Err(e) => return Ok(fail(description, format!("starting the client container: {e}"))),
    };
    let batch = || async {
        let count = super::reach::BATCH.to_string();
        let command = ExecCommand::new(["/usr/local/bin/probe", "connect", proto.name(), &target.to_string(), "--timeout-ms", "3000", "--count", &count]);
        let failed = |error: String| vec![ConnectResult { ok: false, answer: None, error: Some(error) }];
        let output = match container.exec(command).await {
            Ok(mut result) => result.stdout_to_vec().await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
            Err(e) => return Ok(failed(format!("running the client: {e}"))),
        };
        Ok(serde_json::from_str::<Vec<ConnectResult>>(output.trim()).unwrap_or_else(|e| failed(format!("client printed {output:?}: {e}"))))
    };
    let converged = converge(&endpoints, Answering::Every, batch).await;
    let _ = container.rm().await;
    let (tally, elapsed) = converged?;
    // The loader allows only `source: any` here: the container is no pod or node of the cluster.
    Ok(tally.judge(&description, &endpoints, Answering::Every, &Sources::any(), elapsed))
}
