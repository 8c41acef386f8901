//! The echo sockets every ICMP check shares, one per address family.
//!
//! Ours rather than surge-ping's `Client` for three things a province-sized agent needs and
//! that client cannot give: a receive buffer large enough for the replies of 10,000 targets a
//! second (a full buffer is loss that is not on the network), the kernel's receive timestamp
//! of each reply (`SO_TIMESTAMPNS`: the RTT does not include how long a busy runtime took to
//! read it), and the kernel's count of replies dropped for want of buffer (`SO_RXQ_OVFL`), so
//! such loss is seen and not blamed on a link. surge-ping still decodes what comes in
//! (replies, and the errors that quote our requests); pnet_packet encodes what goes out.
//!
//! One task reads each socket and hands every reply to the echo waiting for it, keyed by the
//! address, identifier and sequence number.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use nix::{setsockopt_impl, sockopt_impl};
use pnet_packet::icmp::{echo_request::MutableEchoRequestPacket, IcmpPacket, IcmpTypes};
use pnet_packet::icmpv6::echo_request::MutableEchoRequestPacket as MutableEchoRequestPacketV6;
use pnet_packet::icmpv6::Icmpv6Types;
use pnet_packet::Packet;
use socket2::{Domain, Protocol, Socket, Type};
use surge_ping::{Icmpv4Packet, Icmpv6Packet};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What the socket asks the kernel for: about 8,000 queued replies at loopback's per-packet
/// cost, a few seconds of 10,000 targets a second. Without CAP_NET_ADMIN the kernel caps it
/// at `net.core.rmem_max` (the Debian package raises it to 8 MiB); the size got is reported.
const RECEIVE_BUFFER: usize = 8 << 20;

/// Linux's `ICMP_FILTER` (raw IPv4 ICMP sockets, level `SOL_RAW`): one bit per ICMP type to
/// drop. Kept: echo reply (0), destination unreachable (3), time exceeded (11) and parameter
/// problem (12), the answers an echo can get.
const ICMP_FILTER: libc::c_int = 1;
const ICMP_DROPPED: u32 = !((1 << 0) | (1 << 3) | (1 << 11) | (1 << 12));
sockopt_impl!(
    IcmpFilter,
    SetOnly,
    libc::SOL_RAW,
    ICMP_FILTER,
    u32,
    nix::sys::socket::sockopt::SetStruct<u32>
);

/// `ICMP6_FILTER` (RFC 3542): 256 bits, a set bit blocks that ICMPv6 type. Kept: destination
/// unreachable (1), packet too big (2), time exceeded (3), parameter problem (4), echo reply
/// (129); neighbour discovery and the rest are dropped.
const ICMP6_FILTER: libc::c_int = 1;
sockopt_impl!(
    Icmp6Filter,
    SetOnly,
    libc::IPPROTO_ICMPV6,
    ICMP6_FILTER,
    [u32; 8],
    nix::sys::socket::sockopt::SetStruct<[u32; 8]>
);

fn icmp6_filter() -> [u32; 8] {
    let mut blocked = [u32::MAX; 8];
    for kept in [1u8, 2, 3, 4, 129] {
        blocked[usize::from(kept / 32)] &= !(1 << (kept % 32));
    }
    blocked
}

/// What came back for one echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Reply(Duration),
    /// An ICMP error quoting the request (host or network unreachable): an answer, but not
    /// from the target.
    Unreachable,
}

/// Destination, identifier (0 on datagram sockets, where the kernel picks it) and sequence.
type Key = (IpAddr, u16, u16);

struct Waiter {
    sent_wall: SystemTime,
    sent: Instant,
    answer: oneshot::Sender<Answer>,
}

pub struct EchoSocket {
    /// A raw or ping socket behind tokio's UDP type, which only adds readiness: sends and
    /// receives are plain `sendto` and `recvmsg` on it.
    socket: UdpSocket,
    v6: bool,
    /// An unprivileged ping socket (`SOCK_DGRAM`) rather than a raw one.
    pub datagram: bool,
    /// The receive buffer the kernel granted, in bytes.
    pub receive_buffer: usize,
    pending: Mutex<HashMap<Key, Waiter>>,
    /// Replies the kernel dropped on a full receive buffer, since the socket opened.
    drops: AtomicU64,
}

impl EchoSocket {
    /// A raw socket, or an unprivileged datagram one where raw sockets are refused. Must run
    /// inside the tokio runtime.
    pub fn open(v6: bool) -> io::Result<EchoSocket> {
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, datagram) = match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(socket) => (socket, false),
            Err(raw) => match Socket::new(domain, Type::DGRAM, Some(protocol)) {
                Ok(socket) => (socket, true),
                Err(_) => return Err(raw),
            },
        };
        socket.set_nonblocking(true)?;
        if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
            socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
        }
        let receive_buffer = socket.recv_buffer_size()?;
        if !datagram {
            // A raw socket gets a copy of every ICMP packet the host receives: on a busy
            // host (and on loopback, our own requests) most of them are not ours. The kernel
            // drops the rest before they cost a wake-up and a copy.
            let kept = if v6 {
                setsockopt(&socket, Icmp6Filter, &icmp6_filter())
            } else {
                setsockopt(&socket, IcmpFilter, &ICMP_DROPPED)
            };
            if let Err(error) = kept {
                tracing::debug!(%error, "no ICMP type filter; every ICMP packet is read");
            }
        }
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
        Ok(EchoSocket {
            socket: UdpSocket::from_std(std::net::UdpSocket::from(socket))?,
            v6,
            datagram,
            receive_buffer,
            pending: Mutex::new(HashMap::new()),
            drops: AtomicU64::new(0),
        })
    }

    /// Replies the kernel dropped on a full receive buffer.
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Waiter>> {
        // Nothing panics while holding it; a poisoned map is still a valid map.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one echo request and waits for its answer until `deadline`; `None` when none
    /// came (lost).
    pub async fn echo(
        &self,
        ip: IpAddr,
        ident: u16,
        seq: u16,
        payload: &[u8],
        deadline: Instant,
    ) -> io::Result<Option<Answer>> {
        let packet = self.encode(ident, seq, payload);
        let key = (ip, if self.datagram { 0 } else { ident }, seq);
        let to = SocketAddr::new(ip, 0);
        let (answer, answered) = oneshot::channel();
        // Stamped just before the send: the reply's stamp is the kernel's, taken as it
        // arrived, so the RTT is the network's and not the scheduler's.
        self.pending().insert(
            key,
            Waiter {
                sent_wall: SystemTime::now(),
                sent: Instant::now(),
                answer,
            },
        );
        if let Err(error) = self.socket.send_to(&packet, to).await {
            self.pending().remove(&key);
            return Err(error);
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(answer)) => Ok(Some(answer)),
            _ => {
                self.pending().remove(&key);
                Ok(None)
            }
        }
    }

    fn encode(&self, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 8 + payload.len()];
        if self.v6 {
            // The kernel computes ICMPv6 checksums (RFC 3542), and on datagram sockets sets
            // the identifier too.
            if let Some(mut echo) = MutableEchoRequestPacketV6::new(&mut buf) {
                echo.set_icmpv6_type(Icmpv6Types::EchoRequest);
                echo.set_identifier(ident);
                echo.set_sequence_number(seq);
                echo.set_payload(payload);
            }
        } else if let Some(mut echo) = MutableEchoRequestPacket::new(&mut buf) {
            echo.set_icmp_type(IcmpTypes::EchoRequest);
            echo.set_identifier(ident);
            echo.set_sequence_number(seq);
            echo.set_payload(payload);
            if !self.datagram {
                let checksum = IcmpPacket::new(echo.packet())
                    .map(|p| pnet_packet::icmp::checksum(&p))
                    .unwrap_or(0);
                echo.set_checksum(checksum);
            }
        }
        buf
    }

    /// Reads replies until the socket fails (it is closed when the clients are dropped,
    /// which aborts this task).
    pub async fn receive(self: Arc<Self>) {
        let mut buf = vec![0u8; 65536];
        let mut control = nix::cmsg_space!(TimeSpec, u32);
        loop {
            if let Err(error) = self.socket.readable().await {
                tracing::error!(%error, "ICMP socket failed; ICMP checks will time out");
                return;
            }
            // Drain what is queued: one wake-up for a burst of replies.
            loop {
                let fd = self.socket.as_raw_fd();
                match self.socket.try_io(Interest::READABLE, || {
                    receive_one(fd, &mut buf, &mut control)
                }) {
                    Ok(received) => self.dispatch(&buf[..received.len], &received),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An ICMP error queued on the socket and the like: nothing to keep.
                    Err(error) => tracing::debug!(%error, "ICMP receive"),
                }
            }
        }
    }

    fn dispatch(&self, packet: &[u8], received: &Received) {
        if let Some(dropped) = received.dropped {
            self.drops.store(u64::from(dropped), Ordering::Relaxed);
        }
        let Some(from) = received.from else { return };
        let decoded = match from {
            IpAddr::V4(source) => {
                let kind = if self.datagram {
                    Type::DGRAM
                } else {
                    Type::RAW
                };
                Icmpv4Packet::decode(packet, kind, source, Ipv4Addr::UNSPECIFIED)
                    .map(surge_ping::IcmpPacket::V4)
            }
            IpAddr::V6(source) => {
                Icmpv6Packet::decode(packet, source).map(surge_ping::IcmpPacket::V6)
            }
        };
        // Our own requests seen on loopback, other programs' traffic, garbage: not ours.
        let Ok(decoded) = decoded else { return };
        let ident = if self.datagram {
            0
        } else {
            decoded.get_identifier().0
        };
        let key = (decoded.real_destination(), ident, decoded.get_sequence().0);
        let Some(waiter) = self.pending().remove(&key) else {
            return;
        };
        let answer = if is_echo_reply(&decoded) {
            Answer::Reply(rtt(&waiter, received.stamp))
        } else {
            Answer::Unreachable
        };
        let _ = waiter.answer.send(answer);
    }
}

/// The kernel's timestamps when they are consistent with the monotonic clock (the wall clock
/// can be stepped between send and receive); the monotonic time otherwise.
fn rtt(waiter: &Waiter, stamp: Option<SystemTime>) -> Duration {
    let elapsed = waiter.sent.elapsed();
    stamp
        .and_then(|at| at.duration_since(waiter.sent_wall).ok())
        .filter(|rtt| *rtt <= elapsed + Duration::from_millis(1))
        .unwrap_or(elapsed)
}

fn is_echo_reply(packet: &surge_ping::IcmpPacket) -> bool {
    match packet {
        surge_ping::IcmpPacket::V4(p) => p.get_icmp_type() == IcmpTypes::EchoReply,
        surge_ping::IcmpPacket::V6(p) => p.get_icmpv6_type() == Icmpv6Types::EchoReply,
    }
}

struct Received {
    len: usize,
    from: Option<IpAddr>,
    stamp: Option<SystemTime>,
    dropped: Option<u32>,
}

fn receive_one(fd: RawFd, buf: &mut [u8], control: &mut [u8]) -> io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let message = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(control), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let mut received = Received {
        len: message.bytes,
        from: message.address.as_ref().and_then(ip_of),
        stamp: None,
        dropped: None,
    };
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        match cmsg {
            ControlMessageOwned::ScmTimestampns(ts) => {
                let since = Duration::new(
                    u64::try_from(ts.tv_sec()).unwrap_or(0),
                    u32::try_from(ts.tv_nsec()).unwrap_or(0),
                );
                received.stamp = UNIX_EPOCH.checked_add(since);
            }
            ControlMessageOwned::RxqOvfl(n) => received.dropped = Some(n),
            _ => {}
        }
    }
    Ok(received)
}

fn ip_of(address: &SockaddrStorage) -> Option<IpAddr> {
    match address.family() {
        Some(nix::sys::socket::AddressFamily::Inet) => {
            address.as_sockaddr_in().map(|a| IpAddr::V4(a.ip()))
        }
        Some(nix::sys::socket::AddressFamily::Inet6) => {
            address.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip()))
        }
        _ => None,
    }
}
