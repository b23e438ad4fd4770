//! The probe's DNS client: one A or AAAA question over UDP to the pod's nameserver (or a given
//! one), parsed without a resolver library so the answer's rcode and addresses are reported as seen.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use crate::io_error;
use std::time::Duration;

pub fn resolv_conf_nameserver() -> Option<IpAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines().find_map(|l| l.strip_prefix("nameserver")).and_then(|ip| ip.trim().parse().ok())
}

/// One DNS question over UDP; returns the response code and the addresses of the asked type.
pub fn resolve(name: &str, qtype: u16, server: IpAddr, timeout: Duration) -> Result<(u8, Vec<IpAddr>), String> {
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).map_err(|_| "label too long")?;
        query.push(len);
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&1u16.to_be_bytes());

    let local: SocketAddr = if server.is_ipv6() { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).map_err(|e| io_error("bind", e))?;
    socket.connect((server, 53)).map_err(|e| io_error("connect", e))?;
    socket.set_read_timeout(Some(timeout / 3)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let mut received = None;
    for _ in 0..3 {
        socket.send(&query).map_err(|e| io_error("send", e))?;
        if let Ok(n) = socket.recv(&mut buf) {
            received = Some(n);
            break;
        }
    }
    let n = received.ok_or("no answer from the DNS server: timeout")?;
    parse_response(buf.get(..n).ok_or("short read")?, id, qtype)
}

fn parse_response(msg: &[u8], id: u16, qtype: u16) -> Result<(u8, Vec<IpAddr>), String> {
    let at = |i: usize| msg.get(i).copied().ok_or("truncated DNS answer");
    let u16_at = |i: usize| -> Result<u16, &str> { Ok(u16::from_be_bytes([at(i)?, at(i + 1)?])) };
    if u16_at(0)? != id {
        return Err("DNS answer with a foreign id".into());
    }
    let rcode = at(3)? & 0x0f;
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let skip_name = |mut i: usize| -> Result<usize, &str> {
        loop {
            let len = at(i)?;
            if len & 0xc0 == 0xc0 {
                return Ok(i + 2);
            }
            if len == 0 {
                return Ok(i + 1);
            }
            i += 1 + usize::from(len);
        }
    };
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(i)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        i = skip_name(i)?;
        let (rtype, rdlen) = (u16_at(i)?, usize::from(u16_at(i + 8)?));
        let rdata = msg.get(i + 10..i + 10 + rdlen).ok_or("truncated DNS record")?;
        if rtype == qtype {
            match (rtype, rdata.len()) {
                (1, 4) => addresses.push(IpAddr::from([rdata[0], rdata[1], rdata[2], rdata[3]])),
                (28, 16) => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(rdata);
                    addresses.push(IpAddr::from(octets));
                }
                _ => return Err(format!("malformed record of type {rtype}")),
            }
        }
        i += 10 + rdlen;
    }
    Ok((rcode, addresses))
}
