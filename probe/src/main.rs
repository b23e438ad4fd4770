//! dualstack's in-cluster probe: one small binary that is both the echo server the data-plane checks
//! talk to and the client that talks to it, so that no third-party image (agnhost, busybox) is needed.
//!
//! Every client command prints exactly one JSON line (the wire format the harness parses) and exits
//! 0 when the exchange succeeded, 1 when it did not (the JSON says why), 2 on bad usage.
//!
//! ```text
//! probe serve [--port 8080]                       TCP, HTTP and UDP on every family the pod has
//! probe connect tcp|http|udp|sctp ADDR:PORT [--timeout-ms N] [--bytes N] [--count N] [--spread-ms N]
//!                                                 --count: N connections at once, a JSON array;
//!                                                 --spread-ms: their starts spread evenly over N ms
//! probe resolve NAME A|AAAA [--server IP] [--timeout-ms N]
//! probe sctp-supported                            whether (and how) the probe speaks SCTP here
//! ```
//!
//! SCTP is the kernel's where it opens SCTP sockets, and otherwise the probe's own over raw IP
//! (`sctp.rs`, needs CAP_NET_RAW): a kernel without SCTP sockets may still translate SCTP Services.
#![forbid(unsafe_code)]

mod client;
mod dns;
mod sctp;

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// What a server saw; the client relays it so the harness learns who answered and from where.
#[derive(Serialize, serde::Deserialize)]
struct Answer {
    hostname: String,
    client: String,
    bytes: usize,
}

#[derive(Serialize)]
struct ConnectResult {
    ok: bool,
    elapsed_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<Answer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct ResolveResult {
    ok: bool,
    server: String,
    addresses: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcode: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(code) => code,
        Err(usage) => {
            eprintln!("probe: {usage}");
            eprintln!(
                "usage: probe serve [--port P] | probe connect tcp|http|udp ADDR:PORT [--timeout-ms N] [--bytes N] | probe resolve NAME A|AAAA [--server IP] [--timeout-ms N]"
            );
            2
        }
    };
    std::process::exit(code);
}

fn run(args: &[String]) -> Result<i32, String> {
    let (command, rest) = args.split_first().ok_or("missing command")?;
    let flag = |name: &str| -> Result<Option<u64>, String> {
        match rest.iter().position(|a| a == name) {
            None => Ok(None),
            Some(i) => rest
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| format!("{name} needs a number")),
        }
    };
    let timeout = Duration::from_millis(flag("--timeout-ms")?.unwrap_or(3000));
    match command.as_str() {
        "serve" => {
            let port = u16::try_from(flag("--port")?.unwrap_or(8080)).map_err(|_| "--port out of range")?;
            serve(port);
            Ok(1)
        }
        "connect" => {
            let proto = rest.first().ok_or("connect needs a protocol")?;
            let target: SocketAddr = rest
                .get(1)
                .ok_or("connect needs ADDR:PORT")?
                .parse()
                .map_err(|e| format!("bad ADDR:PORT: {e}"))?;
            let bytes = usize::try_from(flag("--bytes")?.unwrap_or(16)).map_err(|_| "--bytes too large")?;
            if !["tcp", "http", "udp", "sctp"].contains(&proto.as_str()) {
                return Err(format!("unknown protocol {proto}"));
            }
            let attempt = || {
                let started = Instant::now();
                let outcome = match proto.as_str() {
                    "tcp" => client::connect_tcp(target, timeout, bytes),
                    "http" => client::connect_http(target, timeout),
                    "udp" => client::connect_udp(target, timeout, bytes),
                    _ => client::connect_sctp(target, timeout, bytes),
                };
                let ok = outcome.is_ok();
                let (answer, error) = match outcome {
                    Ok(a) => (Some(a), None),
                    Err(e) => (None, Some(e)),
                };
                ConnectResult { ok, elapsed_ms: started.elapsed().as_millis(), answer, error }
            };
            // --count N: N connections at once (each from its own source port, so a Service
            // balances them anew) in one run, printed as a JSON array: a dark target costs one
            // timeout, not N, and a Service with one dark endpoint still yields the answers of the
            // others in the same time.
            match flag("--count")? {
                None => {
                    let result = attempt();
                    let ok = result.ok;
                    print_json(&result);
                    Ok(if ok { 0 } else { 1 })
                }
                Some(count) => {
                    // One thread per connection: bounded, since the harness asks for a handful.
                    let count = usize::try_from(count).unwrap_or(1).clamp(1, 64);
                    // --spread-ms: the i-th connection starts i/(count-1) of the way through, so one
                    // run listens through a whole window (a path that must stay silent throughout).
                    let spread = Duration::from_millis(flag("--spread-ms")?.unwrap_or(0));
                    let start_of = |i: usize| if count > 1 { spread * u32::try_from(i).unwrap_or(0) / u32::try_from(count - 1).unwrap_or(1) } else { Duration::ZERO };
                    let results: Vec<ConnectResult> = std::thread::scope(|scope| {
                        let running: Vec<_> = (0..count)
                            .map(|i| {
                                let delay = start_of(i);
                                scope.spawn(move || {
                                    std::thread::sleep(delay);
                                    attempt()
                                })
                            })
                            .collect();
                        running.into_iter().filter_map(|attempt| attempt.join().ok()).collect()
                    });
                    let ok = results.len() == count && results.iter().all(|r| r.ok);
                    print_json(&results);
                    Ok(if ok { 0 } else { 1 })
                }
            }
        }
        "resolve" => {
            let name = rest.first().ok_or("resolve needs a name")?;
            let qtype = match rest.get(1).map(String::as_str) {
                Some("A") => 1u16,
                Some("AAAA") => 28u16,
                _ => return Err("resolve needs A or AAAA".into()),
            };
            let server = match rest.iter().position(|a| a == "--server") {
                Some(i) => rest.get(i + 1).ok_or("--server needs an address")?.parse::<IpAddr>().map_err(|e| e.to_string())?,
                None => dns::resolv_conf_nameserver().ok_or("no nameserver in /etc/resolv.conf")?,
            };
            let result = match dns::resolve(name, qtype, server, timeout) {
                Ok((rcode, addresses)) => ResolveResult {
                    ok: rcode == 0 && !addresses.is_empty(),
                    server: server.to_string(),
                    addresses,
                    rcode: Some(rcode),
                    error: None,
                },
                Err(e) => ResolveResult { ok: false, server: server.to_string(), addresses: vec![], rcode: None, error: Some(e) },
            };
            let ok = result.ok;
            print_json(&result);
            Ok(if ok { 0 } else { 1 })
        }
        "sctp-supported" => {
            let (ok, via) = match (Socket::new(Domain::IPV4, Type::STREAM, Some(sctp())), sctp::raw_socket(false)) {
                (Ok(_), _) => (true, "kernel sockets".to_string()),
                (Err(kernel), Ok(_)) => (true, format!("the probe's own SCTP over raw IP (the kernel's sockets: {kernel})")),
                (Err(kernel), Err(raw)) => (false, format!("neither the kernel's sockets ({kernel}) nor raw IP ({raw})")),
            };
            print_json(&serde_json::json!({"ok": ok, "via": via}));
            Ok(if ok { 0 } else { 1 })
        }
        other => Err(format!("unknown command {other}")),
    }
}

/// IPPROTO_SCTP.
fn sctp() -> Protocol {
    Protocol::from(sctp::PROTOCOL)
}

fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(line) => println!("{line}"),
        Err(e) => println!("{{\"ok\":false,\"error\":\"serialize: {e}\"}}"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// Binds one socket per family; IPv6 sockets are v6-only so the IPv4 one can share the port.
fn bind(family: Domain, ty: Type, protocol: Option<Protocol>, port: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(family, ty, protocol)?;
    socket.set_reuse_address(true)?;
    let addr: SocketAddr = if family == Domain::IPV6 {
        socket.set_only_v6(true)?;
        (Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, port).into()
    };
    socket.bind(&addr.into())?;
    if ty == Type::STREAM {
        socket.listen(128)?;
    }
    Ok(socket)
}

fn serve(port: u16) {
    let mut workers = Vec::new();
    for family in [Domain::IPV4, Domain::IPV6] {
        match bind(family, Type::STREAM, None, port) {
            Ok(s) => {
                let listener: TcpListener = s.into();
                workers.push(std::thread::spawn(move || serve_tcp(listener)));
            }
            // Another process holds the port (a hostNetwork pod shares the node's ports): exit, so
            // the kubelet restarts us, rather than look ready while serving nothing.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                eprintln!("tcp {family:?} :{port} is in use: {e}");
                std::process::exit(1);
            }
            Err(e) => eprintln!("tcp {family:?} :{port} not served: {e}"),
        }
        // SCTP one-to-one sockets behave like TCP streams; kernels without SCTP refuse the socket,
        // and then the probe speaks SCTP itself where it may open raw sockets.
        match bind(family, Type::STREAM, Some(sctp()), port) {
            Ok(s) => {
                let listener: TcpListener = s.into();
                workers.push(std::thread::spawn(move || serve_tcp(listener)));
            }
            Err(kernel) => match sctp::raw_socket(family == Domain::IPV6) {
                Ok(socket) => {
                    eprintln!("sctp {family:?} :{port} served over raw IP (the kernel's SCTP sockets: {kernel})");
                    workers.push(std::thread::spawn(move || sctp::serve(&socket, port, |client, request| echo_reply(client.to_string(), request))));
                }
                Err(raw) => eprintln!("sctp {family:?} :{port} not served: the kernel's sockets: {kernel}; raw IP: {raw}"),
            },
        }
        match bind(family, Type::DGRAM, None, port) {
            Ok(s) => {
                let socket: UdpSocket = s.into();
                workers.push(std::thread::spawn(move || serve_udp(socket)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                eprintln!("udp {family:?} :{port} is in use: {e}");
                std::process::exit(1);
            }
            Err(e) => eprintln!("udp {family:?} :{port} not served: {e}"),
        }
    }
    eprintln!("serving tcp/http/udp on port {port} as {}", hostname());
    for worker in workers {
        let _ = worker.join();
    }
}

fn serve_tcp(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = answer_tcp(stream);
        });
    }
}

fn answer_tcp(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let client = stream.peer_addr()?.to_string();
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut stream = stream;
    if first.starts_with("GET ") {
        // Drain the request headers; the body is the answer as JSON.
        let mut line = String::new();
        while reader.read_line(&mut line)? > 2 {
            line.clear();
        }
        let body = serde_json::to_string(&Answer { hostname: hostname(), client, bytes: 0 })?;
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    } else {
        stream.write_all(&echo_reply(client, first.as_bytes()))
    }
}

/// The answer to a request line: the receipt first (so a client can tell which direction lost
/// data), then the payload echoed back, each ending in a newline.
fn echo_reply(client: String, request: &[u8]) -> Vec<u8> {
    let payload = request.strip_suffix(b"\n").unwrap_or(request);
    let body = serde_json::to_string(&Answer { hostname: hostname(), client, bytes: payload.len() }).unwrap_or_default();
    [body.as_bytes(), b"\n", payload, b"\n"].concat()
}

fn serve_udp(socket: UdpSocket) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        // Two datagrams: the receipt, small enough for any path, then the payload echoed back, so a
        // client tells a lost request from a lost reply.
        let answer = Answer { hostname: hostname(), client: from.to_string(), bytes: n };
        if let Ok(body) = serde_json::to_vec(&answer) {
            let _ = socket.send_to(&body, from);
        }
        let _ = socket.send_to(buf.get(..n).unwrap_or_default(), from);
    }
}

fn payload(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| b'a' + (i % 26) as u8).collect()
}

fn io_error(what: &str, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!("{what}: timeout"),
        std::io::ErrorKind::ConnectionRefused => format!("{what}: connection refused"),
        _ => format!("{what}: {e}"),
    }
}
