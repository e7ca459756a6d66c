//! The DNS server: one UDP socket and one TCP listener on the same address,
//! answering each query from the resolver's caches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::names;
use crate::Resolver;

/// EDNS payload size this server offers (the DNS Flag Day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// A TCP client that sends nothing for this long is dropped (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The UDP socket and TCP listener of one address (port 0 picks one port for both).
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl Sockets {
    pub async fn bind(address: SocketAddr) -> std::io::Result<Sockets> {
        // With port 0 the kernel picks a free UDP port, which TCP may have in
        // use: then pick again, a few times.
        let mut tries = if address.port() == 0 { 20 } else { 1 };
        loop {
            let udp = UdpSocket::bind(address).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => return Ok(Sockets { udp, tcp }),
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
                Err(error) => return Err(error),
            }
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Answers queries on both sockets until the future is dropped.
pub async fn serve(sockets: Sockets, resolver: Arc<Resolver>) -> std::io::Result<()> {
    tokio::try_join!(serve_udp(sockets.udp, resolver.clone()), serve_tcp(sockets.tcp, resolver)).map(|_| ())
}

async fn serve_udp(socket: UdpSocket, resolver: Arc<Resolver>) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, peer) = socket.recv_from(&mut buffer).await?;
        let Some(response) = respond(&resolver, &buffer[..length]) else { continue };
        let Some(bytes) = encode(response, Transport::Udp) else { continue };
        if let Err(error) = socket.send_to(&bytes, peer).await {
            tracing::debug!(%peer, %error, "could not send a DNS answer");
        }
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let resolver = resolver.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(stream, &resolver).await {
                tracing::debug!(%peer, %error, "DNS over TCP connection ended");
            }
        });
    }
}

/// Messages on TCP carry a two-byte length first (RFC 1035 4.2.2); a client may
/// send several on one connection.
async fn serve_connection(mut stream: TcpStream, resolver: &Resolver) -> std::io::Result<()> {
    loop {
        let length = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(length)) => usize::from(length),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(_idle) => return Ok(()),
        };
        let mut request = vec![0u8; length];
        stream.read_exact(&mut request).await?;
        let Some(bytes) = respond(resolver, &request).and_then(|r| encode(r, Transport::Tcp)) else { return Ok(()) };
        let Ok(length) = u16::try_from(bytes.len()) else { return Ok(()) };
        stream.write_all(&[&length.to_be_bytes()[..], &bytes].concat()).await?;
    }
}

#[derive(Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// The response to one request; `None` for what cannot be answered at all
/// (too short to carry an id, or itself a response).
fn respond(resolver: &Resolver, request: &[u8]) -> Option<(Message, u16)> {
    let request = match Message::from_vec(request) {
        Ok(request) => request,
        Err(_) if request.len() >= 2 => {
            let id = u16::from_be_bytes([request[0], request[1]]);
            return Some((Message::error_msg(id, OpCode::Query, ResponseCode::FormErr), 512));
        }
        Err(_) => return None,
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    let limit = request.max_payload().min(EDNS_PAYLOAD);
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return Some((response, limit));
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return Some((response, limit));
    };
    let qname = query.name().to_lowercase();
    let text = qname.to_ascii();
    let target = names::parse(&text, &resolver.zone.domain).filter(|_| matches!(query.query_class(), DNSClass::IN | DNSClass::ANY));
    let Some(target) = target else {
        // Authoritative for the cluster domain only, and no recursion: a name
        // elsewhere is refused rather than forwarded.
        response.metadata.response_code = ResponseCode::Refused;
        return Some((response, limit));
    };
    response.metadata.authoritative = true;
    let qtype = query.query_type();
    match resolver.zone.lookup(query.name(), &target, resolver) {
        None => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(resolver.zone.soa());
        }
        Some(found) => {
            let answers: Vec<_> = found
                .records
                .into_iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype || r.record_type() == RecordType::CNAME)
                .collect();
            if answers.is_empty() {
                // The name exists without records of this type (NODATA).
                response.add_authority(resolver.zone.soa());
            } else if answers.iter().any(|r| r.record_type() == RecordType::SRV) {
                response.add_additionals(found.extra);
            }
            response.add_answers(answers);
        }
    }
    Some((response, limit))
}

/// Wire bytes; over UDP an answer larger than the client takes is sent
/// truncated (TC set, sections empty) so the client retries over TCP.
fn encode((response, limit): (Message, u16), transport: Transport) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    match transport {
        Transport::Udp if bytes.len() > usize::from(limit) => response.truncate().to_vec().ok(),
        _ => Some(bytes),
    }
}
