//! The probe's client side: one exchange per connection over TCP, HTTP, UDP or SCTP, checking that
//! the request arrived whole (the server's receipt) and that the payload came back intact.

use crate::{Answer, io_error, payload, sctp};
use socket2::{Domain, Socket, Type};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Over the kernel's SCTP sockets, or the probe's own SCTP over raw IP where the kernel has none.
pub fn connect_sctp(target: SocketAddr, timeout: Duration, bytes: usize) -> Result<Answer, String> {
    match Socket::new(Domain::for_address(target), Type::STREAM, Some(sctp())) {
        Ok(socket) => {
            socket.connect_timeout(&target.into(), timeout).map_err(|e| io_error("connect", e))?;
            exchange(socket.into(), timeout, bytes)
        }
        Err(e) if e.raw_os_error() == Some(PROTOCOL_NOT_SUPPORTED) => {
            let sent = payload(bytes);
            let request = [sent.as_slice(), b"\n"].concat();
            let reply = crate::sctp::exchange(target, timeout, &request, |reply| reply.iter().filter(|&&b| b == b'\n').count() >= 2)?;
            read_reply(&mut std::io::Cursor::new(reply), &sent)
        }
        Err(e) => Err(io_error("socket", e)),
    }
}

/// EPROTONOSUPPORT: what socket() says on a kernel built without SCTP.
const PROTOCOL_NOT_SUPPORTED: i32 = 93;

pub fn connect_tcp(target: SocketAddr, timeout: Duration, bytes: usize) -> Result<Answer, String> {
    let stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| io_error("connect", e))?;
    exchange(stream, timeout, bytes)
}

/// Sends `bytes` bytes and a newline, reads the one-line JSON receipt, then the payload echoed back,
/// which must be what was sent.
fn exchange(mut stream: TcpStream, timeout: Duration, bytes: usize) -> Result<Answer, String> {
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let sent = payload(bytes);
    let mut request = sent.clone();
    request.push(b'\n');
    stream.write_all(&request).map_err(|e| io_error("send", e))?;
    read_reply(&mut BufReader::new(stream), &sent)
}

/// Reads the one-line JSON receipt, then the payload echoed back, which must be `sent`.
fn read_reply(reader: &mut impl BufRead, sent: &[u8]) -> Result<Answer, String> {
    let bytes = sent.len();
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| io_error("receive (no receipt: the request did not arrive whole)", e))?;
    let answer: Answer = serde_json::from_str(line.trim()).map_err(|e| format!("unexpected answer {line:?}: {e}"))?;
    if answer.bytes != bytes {
        return Err(format!("request direction: the server received {} of {bytes} bytes", answer.bytes));
    }
    let mut echoed = Vec::with_capacity(bytes + 1);
    let read = reader.read_until(b'\n', &mut echoed);
    let returned = echoed.strip_suffix(b"\n").unwrap_or(&echoed);
    if returned != sent {
        let why = read.err().map(|e| io_error("receive", e)).unwrap_or_else(|| "connection closed".into());
        return Err(format!("reply direction: {} of {bytes} bytes came back intact ({why})", common_prefix(returned, sent)));
    }
    Ok(answer)
}

/// How many leading bytes two buffers share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

pub fn connect_http(target: SocketAddr, timeout: Duration) -> Result<Answer, String> {
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| io_error("connect", e))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let host = match target.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", target.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", target.port()),
    };
    write!(stream, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").map_err(|e| io_error("send", e))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| io_error("receive", e))?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response {:?}", response.lines().next().unwrap_or_default()));
    }
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).map_err(|e| format!("unexpected body {body:?}: {e}"))
}

pub fn connect_udp(target: SocketAddr, timeout: Duration, bytes: usize) -> Result<Answer, String> {
    let local: SocketAddr = if target.is_ipv6() { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).map_err(|e| io_error("bind", e))?;
    socket.connect(target).map_err(|e| io_error("connect", e))?;
    // UDP may lose a datagram: three tries inside the one timeout budget, each waiting for the
    // receipt and the echoed payload (in either order).
    let per_try = timeout / 3;
    socket.set_read_timeout(Some(per_try)).map_err(|e| e.to_string())?;
    let request = payload(bytes);
    let mut buf = vec![0u8; 65536];
    let mut last = String::from("no answer");
    for _ in 0..3 {
        socket.send(&request).map_err(|e| io_error("send", e))?;
        let (mut receipt, mut echoed): (Option<Answer>, bool) = (None, false);
        let deadline = Instant::now() + per_try;
        while Instant::now() < deadline {
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    last = format!("no receipt, so the request (or every reply) was lost: {}", io_error("receive", e));
                    break;
                }
            };
            let datagram = buf.get(..n).unwrap_or_default();
            if datagram.first() == Some(&b'{') {
                let answer: Answer = serde_json::from_slice(datagram).map_err(|e| format!("unexpected answer: {e}"))?;
                if answer.bytes != bytes {
                    return Err(format!("request direction: the server received {} of {bytes} bytes", answer.bytes));
                }
                receipt = Some(answer);
            } else {
                echoed = datagram == request.as_slice();
            }
            if echoed && let Some(answer) = receipt.take() {
                return Ok(answer);
            }
        }
        if receipt.is_some() {
            last = format!("reply direction: the server received all {bytes} bytes, the {bytes}-byte echo never came back");
        }
    }
    Err(last)
}
