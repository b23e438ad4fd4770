//! Outside the cluster: one container on the KIND nodes' docker network per fixture (started
//! through testcontainers from the probe image), the outside host: it serves as the server pods
//! egress to, and it is the client that dials the cluster from outside.

use super::reach::{Answers, Destination, Endpoint, SMALL_PAYLOAD, Sources, converge};
use super::verdict::fail;
use crate::checks::Outcome;
use crate::error::Result;
use crate::mode::IpFamily;
use crate::probe_pod::{ConnectResult, PROBE_PORT};
use crate::table::dataplane::{Protocol, SourceRule};
use std::net::IpAddr;
use testcontainers::core::ExecCommand;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// Why a row that needs a container next to the nodes cannot run.
pub const NOT_ON_THIS_HOST: &str = "the nodes are not KIND containers on this host, so no container can join their docker network";

/// The hostname the outside host answers as.
const OUTSIDE_HOSTNAME: &str = "outside-server";

/// A probe serving on PROBE_PORT in a container on the nodes' docker network, and dialing from
/// there: a host outside the cluster.
pub struct OutsideHost {
    container: ContainerAsync<GenericImage>,
    network: String,
    addresses: Vec<IpAddr>,
}

impl OutsideHost {
    /// Starts the host on `network`, as container `dualstack-outside-NAMESPACE` (the name the fault
    /// scripts find it by).
    pub async fn start(network: &str, namespace: &str) -> std::result::Result<Self, String> {
        let image = crate::machine::probe_image();
        let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
        let container = GenericImage::new(name, tag)
            .with_entrypoint(crate::probe_pod::PROBE_BINARY)
            .with_cmd(["serve", "--port", &PROBE_PORT.to_string()])
            .with_container_name(format!("dualstack-outside-{namespace}"))
            .with_hostname(OUTSIDE_HOSTNAME)
            .with_network(network)
            .start()
            .await
            .map_err(|e| format!("starting the outside host ({image} on docker network {network}): {e}"))?;
        match container_addresses(container.id()).await {
            Ok(addresses) => Ok(Self { container, network: network.into(), addresses }),
            Err(e) => {
                let _ = container.rm().await;
                Err(e)
            }
        }
    }

    /// The host as the endpoint of `family` that must answer, or what it lacks.
    pub fn endpoint(&self, family: IpFamily) -> super::reach::Expected {
        match self.addresses.iter().find(|ip| IpFamily::of(ip) == family) {
            Some(&address) => Ok(vec![Endpoint { pod: OUTSIDE_HOSTNAME.into(), node: format!("docker network {}", self.network), address, answers_as: OUTSIDE_HOSTNAME.into() }]),
            None => Err(super::reach::Missing {
                wanted: format!("the outside host has an {family} address on docker network {}", self.network),
                saw: format!("it has {}", super::verdict::listed(&self.addresses)),
            }),
        }
    }

    /// Connects from the host to `target` until the servers answered as `answers` asks (the same
    /// convergence and verdict as `Fixture::reach`); an external-client rule allows the host's own
    /// address of the target's family.
    pub async fn reach(&self, proto: Protocol, target: Destination, answers: Answers) -> Result<Outcome> {
        let Answers { expected, answering, rule } = answers;
        let (target, endpoints) = match (target, expected) {
            (Ok(target), Ok(endpoints)) => (target, endpoints),
            (Err(missing), _) | (_, Err(missing)) => return Ok(missing.into()),
        };
        let sources = match rule {
            SourceRule::ExternalClient => Sources { rule, allowed: self.addresses.iter().copied().filter(|ip| IpFamily::of(ip) == IpFamily::of(&target.ip())).collect() },
            // The loader allows only external-client or any for a client outside the cluster.
            _ => Sources::any(),
        };
        let batch = |spread| async move {
            let command = ExecCommand::new(super::reach::batch(proto, target, SMALL_PAYLOAD, spread).command());
            let failed = |error: String| vec![ConnectResult { ok: false, answer: None, error: Some(error) }];
            let output = match self.container.exec(command).await {
                Ok(mut result) => result.stdout_to_vec().await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
                Err(e) => return Ok(failed(format!("running the client: {e}"))),
            };
            Ok(serde_json::from_str::<Vec<ConnectResult>>(output.trim()).unwrap_or_else(|e| failed(format!("client printed {output:?}: {e}"))))
        };
        let (tally, elapsed) = converge(&endpoints, answering, batch).await?;
        let description = format!("the outside host on docker network {} -> {target} over {}", self.network, proto.name());
        Ok(tally.judge(&description, &endpoints, answering, &sources, elapsed))
    }

    pub async fn remove(self) {
        let _ = self.container.rm().await;
    }
}

/// A container's addresses on its networks, IPv4 and IPv6.
async fn container_addresses(container: &str) -> std::result::Result<Vec<IpAddr>, String> {
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}} {{end}}";
    let out = tokio::process::Command::new("docker").args(["inspect", "-f", format, container]).output().await.map_err(|e| format!("running docker: {e}"))?;
    if !out.status.success() {
        return Err(format!("docker inspect {container}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|a| a.parse().ok()).collect())
}

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

/// How long kube-proxy may take to serve a new Service's health check as the endpoints say.
const HEALTH_CHECK_WINDOW: std::time::Duration = std::time::Duration::from_secs(15);

/// kube-proxy's health check of the externalTrafficPolicy Local Service on the action's node, over
/// the action's family, asked from this host (on the nodes' docker network): 200 with
/// `localEndpoints` N where the node has N > 0 servers, 503 with 0 where it has none.
pub async fn health_check(fixture: &super::fixture::Fixture, action: &crate::table::dataplane::Action) -> Result<Outcome> {
    use super::fixture::{LOCAL_LB_SERVERS, LOCAL_LB_SERVICE, name_of};
    if fixture.docker_network.is_none() {
        return Ok(super::verdict::skip(NOT_ON_THIS_HOST));
    }
    let family = action.family;
    let label = action.node.as_deref().unwrap_or_default();
    let node = fixture.node(label).ok_or_else(|| crate::error::Error::Environment(format!("no node labelled {label} in the cluster")))?;
    let node_name = name_of(node);
    let service = fixture.service(LOCAL_LB_SERVICE).await?;
    let port = service.spec.as_ref().and_then(|s| s.health_check_node_port).and_then(|p| u16::try_from(p).ok());
    let address = crate::objects::of_family(&crate::objects::internal_ips(node), family);
    let (Some(port), Some(address)) = (port, address) else {
        return Ok(fail(
            format!("{LOCAL_LB_SERVICE} has a healthCheckNodePort and {node_name} an {family} address"),
            format!("healthCheckNodePort {}, {family} address {}", port.map_or("none".into(), |p| p.to_string()), address.map_or("none".into(), |a| a.to_string())),
        ));
    };
    let local = match fixture.endpoints(LOCAL_LB_SERVERS, family).await? {
        Ok(servers) => servers.iter().filter(|s| s.node == node_name).count(),
        Err(missing) => return Ok(missing.into()),
    };
    let want = HealthAnswer { status: if local > 0 { 200 } else { 503 }, local_endpoints: Some(local) };
    let target = std::net::SocketAddr::new(address, port);
    let expected = format!("GET http://{target}/ (kube-proxy's health check of {LOCAL_LB_SERVICE} on {node_name}) answers {}", want.describe());
    let started = std::time::Instant::now();
    let mut last = String::new();
    while started.elapsed() < HEALTH_CHECK_WINDOW {
        match get(target).await {
            Ok(response) => match HealthAnswer::parse(&response) {
                Some(got) if got == want => return Ok(super::verdict::pass(expected, format!("{} after {:.1}s", got.describe(), started.elapsed().as_secs_f64()))),
                Some(got) => last = got.describe(),
                None => last = format!("an answer that is no health check: {:?}", response.chars().take(200).collect::<String>()),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Ok(fail(expected, format!("for {}s: {last}", HEALTH_CHECK_WINDOW.as_secs())))
}

/// What kube-proxy's health check said: the HTTP status and the body's `localEndpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HealthAnswer {
    status: u16,
    local_endpoints: Option<usize>,
}

impl HealthAnswer {
    fn parse(response: &str) -> Option<Self> {
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let json: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
        let local_endpoints = json.get("localEndpoints").and_then(|n| n.as_u64()).and_then(|n| usize::try_from(n).ok());
        Some(Self { status, local_endpoints })
    }

    fn describe(&self) -> String {
        format!("HTTP {} with localEndpoints {}", self.status, self.local_endpoints.map_or("missing".into(), |n| n.to_string()))
    }
}

/// A plain HTTP/1.0 GET of `/` from this host; the whole response, or what went wrong.
async fn get(target: std::net::SocketAddr) -> std::result::Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream.write_all(b"GET / HTTP/1.0\r\nHost: dualstack\r\n\r\n").await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), exchange).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(format!("connecting to {target}: {e}")),
        Err(_) => Err(format!("no answer from {target} in 3s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_check_answer_is_its_status_and_local_endpoint_count() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n\r\n{\"service\":{\"namespace\":\"ns\",\"name\":\"echo-local-lb\"},\"localEndpoints\":1,\"serviceProxyHealthy\":true}\n";
        assert_eq!(HealthAnswer::parse(ok), Some(HealthAnswer { status: 200, local_endpoints: Some(1) }));
        let none = "HTTP/1.1 503 Service Unavailable\r\n\r\n{\"service\":{\"namespace\":\"ns\",\"name\":\"x\"},\"localEndpoints\":0}";
        assert_eq!(HealthAnswer::parse(none).map(|a| a.describe()).as_deref(), Some("HTTP 503 with localEndpoints 0"));
        assert_eq!(HealthAnswer::parse("SSH-2.0-OpenSSH\r\n"), None);
    }
}
