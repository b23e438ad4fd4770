//! SCTP spoken by the probe itself over raw IP sockets, for kernels that open no SCTP sockets
//! (built without `CONFIG_IP_SCTP`) but still track and translate SCTP (`CONFIG_NF_CT_PROTO_SCTP`,
//! the `sctp` iptables match): a Service's SCTP port works on such a node, so it is checked there.
//!
//! Enough of RFC 9260 for one association carrying one message each way: the four-way handshake
//! (INIT, INIT ACK with a state cookie, COOKIE ECHO, COOKIE ACK), DATA with its SACK, and an ABORT
//! that ends it at once. Every packet is real SCTP with its CRC32c, so conntrack, NAT and a kernel
//! SCTP peer treat it like any other; a message must fit in one packet.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// IPPROTO_SCTP.
pub const PROTOCOL: i32 = 132;

/// The largest request carried: one DATA chunk in one packet within IPv6's minimum MTU (1280 bytes,
/// less 40 of IPv6 header, 12 of SCTP header, 16 of DATA chunk header), with room for the reply's
/// receipt in front of the echo.
pub const MAX_REQUEST: usize = 1024;

/// How long a packet waits for its answer before it is sent again (RFC 9260's initial RTO).
const RETRANSMIT_AFTER: Duration = Duration::from_secs(1);
const RECEIVE_WINDOW: u32 = 65536;

const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const SACK: u8 = 3;
const ABORT: u8 = 6;
const SHUTDOWN: u8 = 7;
const SHUTDOWN_ACK: u8 = 8;
const COOKIE_ECHO: u8 = 10;
const COOKIE_ACK: u8 = 11;
const DATA: u8 = 0;
/// The INIT ACK parameter that carries the state cookie.
const STATE_COOKIE: u16 = 7;
/// DATA flags: the whole message in this chunk (beginning and end).
const UNFRAGMENTED: u8 = 0x03;

/// One end's handshake values: the tag the peer must put on every packet to it, and its first TSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    pub tag: u32,
    pub tsn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Init(Init),
    InitAck(Init, Vec<u8>),
    CookieEcho(Vec<u8>),
    CookieAck,
    Data { tsn: u32, payload: Vec<u8> },
    Sack { cumulative_tsn: u32 },
    Abort,
    Shutdown,
    ShutdownAck,
    /// A chunk this implementation does not use, by its type.
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub source_port: u16,
    pub destination_port: u16,
    pub verification_tag: u32,
    pub chunks: Vec<Chunk>,
}

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC32C: [u32; 256] = crc32c_table();

/// CRC32c (Castagnoli), SCTP's checksum.
pub fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &byte| CRC32C[usize::from((crc as u8) ^ byte)] ^ (crc >> 8))
}

fn push_chunk(out: &mut Vec<u8>, kind: u8, flags: u8, value: &[u8]) {
    let length = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn init_value(init: Init) -> Vec<u8> {
    let mut value = Vec::with_capacity(16);
    value.extend_from_slice(&init.tag.to_be_bytes());
    value.extend_from_slice(&RECEIVE_WINDOW.to_be_bytes());
    value.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    value.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    value.extend_from_slice(&init.tsn.to_be_bytes());
    value
}

impl Packet {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.source_port.to_be_bytes());
        out.extend_from_slice(&self.destination_port.to_be_bytes());
        out.extend_from_slice(&self.verification_tag.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        for chunk in &self.chunks {
            match chunk {
                Chunk::Init(init) => push_chunk(&mut out, INIT, 0, &init_value(*init)),
                Chunk::InitAck(init, cookie) => {
                    let mut value = init_value(*init);
                    value.extend_from_slice(&STATE_COOKIE.to_be_bytes());
                    value.extend_from_slice(&u16::try_from(4 + cookie.len()).unwrap_or(u16::MAX).to_be_bytes());
                    value.extend_from_slice(cookie);
                    push_chunk(&mut out, INIT_ACK, 0, &value);
                }
                Chunk::CookieEcho(cookie) => push_chunk(&mut out, COOKIE_ECHO, 0, cookie),
                Chunk::CookieAck => push_chunk(&mut out, COOKIE_ACK, 0, &[]),
                Chunk::Data { tsn, payload } => {
                    let mut value = Vec::with_capacity(12 + payload.len());
                    value.extend_from_slice(&tsn.to_be_bytes());
                    value.extend_from_slice(&[0; 8]); // stream 0, sequence 0, protocol identifier 0
                    value.extend_from_slice(payload);
                    push_chunk(&mut out, DATA, UNFRAGMENTED, &value);
                }
                Chunk::Sack { cumulative_tsn } => {
                    let mut value = Vec::with_capacity(12);
                    value.extend_from_slice(&cumulative_tsn.to_be_bytes());
                    value.extend_from_slice(&RECEIVE_WINDOW.to_be_bytes());
                    value.extend_from_slice(&[0; 4]); // no gap blocks, no duplicates
                    push_chunk(&mut out, SACK, 0, &value);
                }
                Chunk::Abort => push_chunk(&mut out, ABORT, 0, &[]),
                Chunk::Shutdown => push_chunk(&mut out, SHUTDOWN, 0, &[0; 4]),
                Chunk::ShutdownAck => push_chunk(&mut out, SHUTDOWN_ACK, 0, &[]),
                Chunk::Other(kind) => push_chunk(&mut out, *kind, 0, &[]),
            }
        }
        let checksum = crc32c(&out);
        // SCTP puts its CRC32c on the wire least significant byte first (RFC 9260, appendix A).
        out[8..12].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// The packet, or None when it is not SCTP with a valid checksum.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let header = bytes.get(..12)?;
        let mut zeroed = bytes.to_vec();
        zeroed.get_mut(8..12)?.fill(0);
        if crc32c(&zeroed).to_le_bytes() != header[8..12] {
            return None;
        }
        let mut chunks = Vec::new();
        let mut rest = bytes.get(12..)?;
        while rest.len() >= 4 {
            let (kind, length) = (rest[0], usize::from(u16::from_be_bytes([rest[2], rest[3]])));
            let value = rest.get(4..length)?;
            chunks.push(match kind {
                INIT => Chunk::Init(parse_init(value)?),
                INIT_ACK => Chunk::InitAck(parse_init(value)?, state_cookie(value.get(16..)?)?),
                COOKIE_ECHO => Chunk::CookieEcho(value.to_vec()),
                COOKIE_ACK => Chunk::CookieAck,
                DATA => Chunk::Data { tsn: be32(value)?, payload: value.get(12..)?.to_vec() },
                SACK => Chunk::Sack { cumulative_tsn: be32(value)? },
                ABORT => Chunk::Abort,
                SHUTDOWN => Chunk::Shutdown,
                SHUTDOWN_ACK => Chunk::ShutdownAck,
                other => Chunk::Other(other),
            });
            rest = rest.get(length.next_multiple_of(4).min(rest.len())..)?;
        }
        Some(Self {
            source_port: u16::from_be_bytes([header[0], header[1]]),
            destination_port: u16::from_be_bytes([header[2], header[3]]),
            verification_tag: be32(&header[4..8])?,
            chunks,
        })
    }
}

fn be32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn parse_init(value: &[u8]) -> Option<Init> {
    Some(Init { tag: be32(value)?, tsn: be32(value.get(12..)?)? })
}

/// The state cookie among an INIT ACK's parameters.
fn state_cookie(mut parameters: &[u8]) -> Option<Vec<u8>> {
    while parameters.len() >= 4 {
        let (kind, length) = (u16::from_be_bytes([parameters[0], parameters[1]]), usize::from(u16::from_be_bytes([parameters[2], parameters[3]])));
        if kind == STATE_COOKIE {
            return parameters.get(4..length).map(<[u8]>::to_vec);
        }
        parameters = parameters.get(length.max(4).next_multiple_of(4).min(parameters.len())..)?;
    }
    None
}

/// A raw socket of `family` for SCTP, as a `UdpSocket`: the same datagram calls (recv_from,
/// send_to, timeouts) on the descriptor, without unsafe code. Needs CAP_NET_RAW.
pub fn raw_socket(ipv6: bool) -> std::io::Result<UdpSocket> {
    let domain = if ipv6 { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let socket = socket2::Socket::new(domain, socket2::Type::RAW, Some(socket2::Protocol::from(PROTOCOL)))?;
    Ok(socket.into())
}

/// A received packet and who sent it. An IPv4 raw socket hands over the IP header too; IPv6 does not.
fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> std::io::Result<(IpAddr, Option<Packet>)> {
    let (n, from) = socket.recv_from(buffer)?;
    let datagram = buffer.get(..n).unwrap_or_default();
    let sctp = if from.is_ipv4() { datagram.get(usize::from(datagram.first().copied().unwrap_or(0) & 0x0f) * 4..) } else { Some(datagram) };
    Ok((from.ip(), sctp.and_then(Packet::decode)))
}

fn send(socket: &UdpSocket, to: IpAddr, packet: &Packet) -> std::io::Result<()> {
    // A raw socket takes no port (IPv6 insists on 0 or the protocol number).
    socket.send_to(&packet.encode(), SocketAddr::new(to, 0)).map(|_| ())
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u32::from_ne_bytes(bytes),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()) ^ std::process::id(),
    }
}

/// A tag is never 0 (0 marks an INIT).
fn random_tag() -> u32 {
    random_u32().max(1)
}

/// The client's side of one association: its raw socket, the peer, its own port, the deadline.
struct Association {
    socket: UdpSocket,
    peer: SocketAddr,
    port: u16,
    deadline: Instant,
}

impl Association {
    /// Sends `packet` until a packet of this association satisfies `wanted` (a reply it returns
    /// Some for), resending every RETRANSMIT_AFTER, until the deadline. An ABORT ends it.
    fn send_until<T>(&self, packet: &Packet, step: &str, mut wanted: impl FnMut(&Packet) -> Option<T>, expected_tag: u32) -> Result<T, String> {
        let mut buffer = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return Err(format!("{step}: timeout"));
            }
            send(&self.socket, self.peer.ip(), packet).map_err(|e| crate::io_error(step, e))?;
            let resend_at = (now + RETRANSMIT_AFTER).min(self.deadline);
            while let Some(left) = resend_at.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                self.socket.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
                let (from, got) = match receive(&self.socket, &mut buffer) {
                    Ok(received) => received,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                    Err(e) => return Err(crate::io_error(step, e)),
                };
                let Some(got) = got else { continue };
                if from != self.peer.ip() || got.source_port != self.peer.port() || got.destination_port != self.port || got.verification_tag != expected_tag {
                    continue;
                }
                if got.chunks.contains(&Chunk::Abort) {
                    return Err(format!("{step}: connection refused (the peer aborted the association)"));
                }
                if let Some(value) = wanted(&got) {
                    return Ok(value);
                }
            }
        }
    }

    fn packet(&self, verification_tag: u32, chunks: Vec<Chunk>) -> Packet {
        Packet { source_port: self.port, destination_port: self.peer.port(), verification_tag, chunks }
    }
}

/// One association to `peer`: the handshake, `request` in one DATA chunk, the reply collected from
/// the peer's DATA chunks until `complete` says it is whole, then an ABORT. The reply's bytes.
pub fn exchange(peer: SocketAddr, timeout: Duration, request: &[u8], complete: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, String> {
    if request.len() > MAX_REQUEST {
        return Err(format!("the probe's own SCTP carries at most {MAX_REQUEST} bytes in one message, not {}", request.len()));
    }
    let socket = raw_socket(peer.is_ipv6()).map_err(|e| crate::io_error("raw SCTP socket", e))?;
    let association = Association { socket, peer, port: 32768 + (random_u32() % 28000) as u16, deadline: Instant::now() + timeout };
    let ours = Init { tag: random_tag(), tsn: random_u32() };
    let (theirs, cookie) = association.send_until(
        &association.packet(0, vec![Chunk::Init(ours)]),
        "connect",
        |p| p.chunks.iter().find_map(|c| if let Chunk::InitAck(init, cookie) = c { Some((*init, cookie.clone())) } else { None }),
        ours.tag,
    )?;
    association.send_until(&association.packet(theirs.tag, vec![Chunk::CookieEcho(cookie)]), "connect", |p| p.chunks.contains(&Chunk::CookieAck).then_some(()), ours.tag)?;
    // The reply may come in several DATA chunks (a kernel SCTP server writes its receipt and the
    // echo separately): each in TSN order is appended, and acknowledged so it is not resent.
    let mut reply = Vec::new();
    let mut next_tsn = theirs.tsn;
    let mut data = vec![Chunk::Data { tsn: ours.tsn, payload: request.to_vec() }];
    loop {
        let received = association.send_until(
            &association.packet(theirs.tag, data.clone()),
            if reply.is_empty() { "receive (no receipt: the request did not arrive whole)" } else { "receive" },
            |p| {
                let payloads: Vec<(u32, Vec<u8>)> = p.chunks.iter().filter_map(|c| if let Chunk::Data { tsn, payload } = c { Some((*tsn, payload.clone())) } else { None }).collect();
                (!payloads.is_empty()).then_some(payloads)
            },
            ours.tag,
        )?;
        for (tsn, payload) in received {
            if tsn == next_tsn {
                reply.extend_from_slice(&payload);
                next_tsn = next_tsn.wrapping_add(1);
            }
        }
        let ack = Chunk::Sack { cumulative_tsn: next_tsn.wrapping_sub(1) };
        if complete(&reply) {
            let _ = send(&association.socket, peer.ip(), &association.packet(theirs.tag, vec![ack, Chunk::Abort]));
            return Ok(reply);
        }
        data = vec![ack];
    }
}

/// What the server keeps of an association, created from its cookie when the COOKIE ECHO comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Established {
    peer_tag: u32,
    our_tsn: u32,
}

/// The state cookie: everything the association needs, so the server keeps nothing until the
/// COOKIE ECHO proves the peer's address (the handshake's purpose).
fn cookie(peer: Init, ours: Init) -> Vec<u8> {
    [peer.tag, peer.tsn, ours.tag, ours.tsn].iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn from_cookie(cookie: &[u8]) -> Option<(Init, Init)> {
    Some((Init { tag: be32(cookie)?, tsn: be32(cookie.get(4..)?)? }, Init { tag: be32(cookie.get(8..)?)?, tsn: be32(cookie.get(12..)?)? }))
}

/// The server side: associations by (peer address, peer port, our tag).
#[derive(Default)]
pub struct Server {
    associations: std::collections::HashMap<(IpAddr, u16, u32), Established>,
}

impl Server {
    /// The packet answering `packet` from `from`, if any; `answer` makes a message's reply.
    pub fn handle(&mut self, from: IpAddr, packet: &Packet, answer: &impl Fn(SocketAddr, &[u8]) -> Vec<u8>) -> Option<Packet> {
        let peer = SocketAddr::new(from, packet.source_port);
        let key = (from, packet.source_port, packet.verification_tag);
        let mut reply = Vec::new();
        let mut reply_tag = self.associations.get(&key).map(|a| a.peer_tag);
        for chunk in &packet.chunks {
            match chunk {
                Chunk::Init(theirs) if packet.verification_tag == 0 => {
                    let ours = Init { tag: random_tag(), tsn: random_u32() };
                    reply_tag = Some(theirs.tag);
                    reply.push(Chunk::InitAck(ours, cookie(*theirs, ours)));
                }
                Chunk::CookieEcho(echoed) => {
                    let (theirs, ours) = from_cookie(echoed)?;
                    if ours.tag != packet.verification_tag {
                        return None;
                    }
                    // Bounded: a peer that never ends its associations cannot grow the table forever.
                    if self.associations.len() >= 4096 {
                        self.associations.clear();
                    }
                    self.associations.insert(key, Established { peer_tag: theirs.tag, our_tsn: ours.tsn });
                    reply_tag = Some(theirs.tag);
                    reply.push(Chunk::CookieAck);
                }
                Chunk::Data { tsn, payload } => {
                    let established = self.associations.get(&key)?;
                    // One message per association: a resent DATA gets the same reply again.
                    reply.push(Chunk::Sack { cumulative_tsn: *tsn });
                    reply.push(Chunk::Data { tsn: established.our_tsn, payload: answer(peer, payload) });
                }
                Chunk::Shutdown => {
                    reply.push(Chunk::ShutdownAck);
                    self.associations.remove(&key);
                }
                Chunk::Abort => {
                    self.associations.remove(&key);
                }
                _ => {}
            }
        }
        let verification_tag = reply_tag?;
        (!reply.is_empty()).then_some(Packet { source_port: packet.destination_port, destination_port: packet.source_port, verification_tag, chunks: reply })
    }
}

/// Serves SCTP on `port` over the raw socket until it fails.
pub fn serve(socket: &UdpSocket, port: u16, answer: impl Fn(SocketAddr, &[u8]) -> Vec<u8>) {
    let mut server = Server::default();
    let mut buffer = vec![0u8; 65536];
    loop {
        let (from, packet) = match receive(socket, &mut buffer) {
            Ok(received) => received,
            Err(e) => {
                eprintln!("sctp over raw IP, port {port}: {e}");
                return;
            }
        };
        let Some(packet) = packet.filter(|p| p.destination_port == port) else { continue };
        if let Some(reply) = server.handle(from, &packet, &answer) {
            let _ = send(socket, from, &reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // RFC 3720 (iSCSI) appendix B.4 and the CRC catalogue's check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn an_init_as_a_kernel_would_send_it_decodes() {
        // INIT from port 40000 to 8080: tag 0x01020304, window 65536, 1/1 streams, TSN 7.
        let packet = Packet { source_port: 40000, destination_port: 8080, verification_tag: 0, chunks: vec![Chunk::Init(Init { tag: 0x0102_0304, tsn: 7 })] };
        let bytes = packet.encode();
        assert_eq!(&bytes[..8], &[0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 0]);
        assert_eq!(&bytes[12..16], &[INIT, 0, 0, 20]);
        assert_eq!(bytes.len(), 32);
        assert_eq!(Packet::decode(&bytes), Some(packet));
    }

    #[test]
    fn every_chunk_survives_encoding_and_a_bad_checksum_is_refused() {
        let packet = Packet {
            source_port: 1,
            destination_port: 2,
            verification_tag: 3,
            chunks: vec![
                Chunk::InitAck(Init { tag: 4, tsn: 5 }, vec![1, 2, 3, 4, 5]),
                Chunk::CookieEcho(vec![9; 6]),
                Chunk::CookieAck,
                Chunk::Data { tsn: 6, payload: b"hello\n".to_vec() },
                Chunk::Sack { cumulative_tsn: 6 },
                Chunk::Shutdown,
                Chunk::ShutdownAck,
                Chunk::Abort,
            ],
        };
        let mut bytes = packet.encode();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(Packet::decode(&bytes), Some(packet));
        bytes[20] ^= 1;
        assert_eq!(Packet::decode(&bytes), None);
    }

    /// The server's side of a whole association, driven by what the client sends.
    #[test]
    fn the_server_answers_a_handshake_a_message_and_an_abort() {
        let client: IpAddr = "fd00::c".parse().unwrap();
        let answer = |peer: SocketAddr, request: &[u8]| [peer.to_string().as_bytes(), b" ", request].concat();
        let mut server = Server::default();
        let send = |tag: u32, chunks: Vec<Chunk>| Packet { source_port: 40000, destination_port: 8080, verification_tag: tag, chunks };
        let ours = Init { tag: 11, tsn: 100 };

        let init_ack = server.handle(client, &send(0, vec![Chunk::Init(ours)]), &answer).unwrap();
        assert_eq!((init_ack.source_port, init_ack.destination_port, init_ack.verification_tag), (8080, 40000, 11));
        let [Chunk::InitAck(theirs, cookie)] = init_ack.chunks.as_slice() else { panic!("{init_ack:?}") };
        assert!(server.associations.is_empty(), "nothing is kept before the cookie comes back");

        // A COOKIE ECHO with the wrong tag is not an association.
        assert_eq!(server.handle(client, &send(theirs.tag ^ 1, vec![Chunk::CookieEcho(cookie.clone())]), &answer), None);
        // DATA may come with the COOKIE ECHO, as kernel clients send it.
        let data = Chunk::Data { tsn: ours.tsn, payload: b"ping\n".to_vec() };
        let established = server.handle(client, &send(theirs.tag, vec![Chunk::CookieEcho(cookie.clone()), data.clone()]), &answer).unwrap();
        assert_eq!(established.verification_tag, 11);
        assert_eq!(
            established.chunks,
            vec![Chunk::CookieAck, Chunk::Sack { cumulative_tsn: 100 }, Chunk::Data { tsn: theirs.tsn, payload: b"[fd00::c]:40000 ping\n".to_vec() }]
        );
        // Resent DATA: the same answer.
        assert_eq!(server.handle(client, &send(theirs.tag, vec![data.clone()]), &answer).unwrap().chunks, established.chunks[1..]);
        // After the ABORT the association is gone: its DATA gets nothing.
        assert_eq!(server.handle(client, &send(theirs.tag, vec![Chunk::Abort]), &answer), None);
        assert_eq!(server.handle(client, &send(theirs.tag, vec![data]), &answer), None);
    }
}
