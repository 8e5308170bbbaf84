//! Helpers shared by the integration tests: frames built with the wire
//! emitters, an independent RFC 1071 checksum, sockets set up on a [`Pair`],
//! a byte-stream pump with SHA-256, and a [`Driver`] that runs a pair with
//! B's link port tapped.
//!
//! The tap sees every frame B receives from the link and may put frames of
//! its own at the head of B's next receive burst, exactly as if they had
//! arrived on the wire just before the real ones of that burst. A [`Guard`]
//! can watch the real frames and veto injected ones just before they are
//! delivered.
//!
//! Each test crate uses a different part of this module.
#![allow(dead_code)]

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::VecDeque;

use flowlane::api::pair::{Pair, A_IP, B_IP};
use flowlane::api::{SocketError, SocketHandle, Stack, State};
use flowlane::phy::{Device, DeviceCapabilities, FrameBatch, LinkPort};
use flowlane::rand::Rng;
use flowlane::time::{Duration, Instant};
use flowlane::wire::{
    ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket,
    TcpRepr,
};
use sha2::{Digest, Sha256};

pub const SECOND: Duration = Duration::from_secs(1);
pub const PORT: u16 = 80;

// ----- frames ---------------------------------------------------------------

/// Ethernet + IPv4 (20 bytes, DF, TTL 64) + `body`, checksums filled.
pub fn ipv4_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    protocol: IpProtocol,
    body: impl FnOnce(&mut [u8]),
    body_len: usize,
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        protocol,
        payload_len: body_len,
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + 20 + body_len];
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p);
    body(p.payload_mut());
    frame
}

/// A TCP segment in a frame, checksums filled.
pub fn tcp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    repr: &TcpRepr<'_>,
) -> Vec<u8> {
    ipv4_frame(
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        IpProtocol::Tcp,
        |buf| {
            let mut p = TcpPacket::new_unchecked(buf);
            repr.emit(&mut p, src_ip, dst_ip, true);
        },
        repr.buffer_len(),
    )
}

/// An ICMP message in a frame, checksums filled.
pub fn icmp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    repr: &Icmpv4Repr<'_>,
) -> Vec<u8> {
    ipv4_frame(
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        IpProtocol::Icmp,
        |buf| repr.emit(&mut Icmpv4Packet::new_unchecked(buf)),
        repr.buffer_len(),
    )
}

pub fn arp_frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, repr: &ArpRepr) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::Arp,
    };
    let mut frame = vec![0u8; 14 + repr.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    repr.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    frame
}

/// A segment with no options and no payload.
pub fn segment(
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
) -> TcpRepr<'static> {
    TcpRepr {
        src_port,
        dst_port,
        seq_number: SeqNumber(seq),
        ack_number: SeqNumber(ack),
        flags,
        window_len: 65535,
        urgent_pointer: 0,
        options: TcpOptions::default(),
        payload: &[],
    }
}

/// RFC 1071 checksum written out independently of `wire::checksum`: the
/// ones-complement of the ones-complement sum of 16-bit big-endian words.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p);
    }
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = 0;
    for w in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 pseudo header of RFC 9293 §3.1 for a TCP segment of `len` bytes.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.push(0);
    v.push(protocol);
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v
}

/// A frame parsed as Ethernet/IPv4/TCP with checksums verified.
pub fn parse_tcp(frame: &[u8]) -> Option<(EthernetRepr, Ipv4Repr, TcpRepr<'_>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let eth_repr = EthernetRepr::parse(&eth).ok()?;
    if eth_repr.ethertype != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip_repr = Ipv4Repr::parse(&ip).ok()?;
    if ip_repr.protocol != IpProtocol::Tcp {
        return None;
    }
    let seg = TcpPacket::new_checked(ip.payload()).ok()?;
    let tcp = TcpRepr::parse(&seg, ip_repr.src_addr, ip_repr.dst_addr, true).ok()?;
    Some((eth_repr, ip_repr, tcp))
}

// ----- a device of queues ---------------------------------------------------

/// Frames put in `rx` come out of `receive` (a burst: up to `max` at once);
/// frames transmitted land in `tx`.
#[derive(Default)]
pub struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
}

impl Device for QueueDevice {
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::default()
    }
    fn receive(&mut self, _now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(f) = self.rx.pop_front() else { break };
            batch.push_copy(&f);
            n += 1;
        }
        n
    }
    fn transmit(&mut self, _now: Instant, batch: &mut FrameBatch) -> usize {
        let n = batch.len();
        self.tx.extend(batch.iter().map(<[u8]>::to_vec));
        batch.clear();
        n
    }
}

/// Polls `stack` on `dev` at every deadline up to `until`, moving `now`
/// along; returns each frame sent with the time it went out.
pub fn poll_until(
    stack: &mut Stack,
    dev: &mut QueueDevice,
    now: &mut Instant,
    until: Instant,
) -> Vec<(Instant, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        stack.poll(*now, dev);
        out.extend(dev.tx.drain(..).map(|f| (*now, f)));
        match stack.poll_at() {
            Some(t) if t <= *now => continue,
            Some(t) if t <= until => *now = t,
            _ => break,
        }
    }
    *now = (*now).max(until);
    out
}

// ----- sockets on a pair ----------------------------------------------------

pub fn listen(stack: &mut Stack, port: u16, backlog: usize) -> SocketHandle {
    let l = stack.tcp.socket().unwrap();
    stack
        .tcp
        .bind(l, SocketAddrV4::new(stack.iface.ip(), port))
        .unwrap();
    stack.tcp.listen(l, backlog).unwrap();
    l
}

/// Starts a connect from A to B:`port`.
pub fn start_connect(p: &mut Pair, port: u16) -> SocketHandle {
    let c = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c, now, SocketAddrV4::new(B_IP, port))
        .unwrap();
    c
}

/// A connected pair of sockets: (client on A, server on B, listener on B).
pub fn connect(p: &mut Pair) -> (SocketHandle, SocketHandle, SocketHandle) {
    let l = listen(&mut p.b, PORT, 128);
    let c = start_connect(p, PORT);
    let mut s = None;
    assert!(p.run_until(SECOND, |p| {
        if s.is_none() {
            s = p.b.tcp.accept(l).ok();
        }
        s.is_some() && p.a.tcp.state(c).unwrap() == State::Established
    }));
    let (s, peer) = s.unwrap();
    assert_eq!(*peer.ip(), A_IP);
    (c, s, l)
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

/// Moves `data` through `send` while draining the peer, until all is read.
pub struct Flow {
    pub data: Vec<u8>,
    pub sent: usize,
    pub received: Vec<u8>,
    /// The first error either side reported, if any.
    pub error: Option<SocketError>,
}

impl Flow {
    pub fn new(data: Vec<u8>) -> Flow {
        Flow {
            received: Vec::with_capacity(data.len()),
            data,
            sent: 0,
            error: None,
        }
    }
    pub fn done(&self) -> bool {
        self.received.len() == self.data.len()
    }
}

/// One round of application work: queue what fits, read what arrived.
/// Errors are recorded in `flow.error` rather than panicking.
pub fn pump(src: &mut Stack, tx: SocketHandle, dst: &mut Stack, rx: SocketHandle, flow: &mut Flow) {
    while flow.sent < flow.data.len() && flow.error.is_none() {
        match src.tcp.send(tx, &flow.data[flow.sent..]) {
            Ok(n) => flow.sent += n,
            Err(SocketError::WouldBlock) => break,
            Err(e) => flow.error = Some(e),
        }
    }
    let mut buf = [0u8; 65536];
    while flow.error.is_none() {
        match dst.tcp.recv(rx, &mut buf) {
            Ok(0) => break,
            Ok(n) => flow.received.extend_from_slice(&buf[..n]),
            Err(SocketError::WouldBlock) => break,
            Err(e) => flow.error = Some(e),
        }
    }
}

// ----- the tapped pair ------------------------------------------------------

/// Watches real frames and vets injected ones at the moment of delivery.
pub trait Guard {
    /// A frame that arrived from the link.
    fn real(&mut self, _frame: &[u8]) {}
    /// Whether an injected frame may be delivered now.
    fn admit(&mut self, _frame: &[u8]) -> bool {
        true
    }
}

/// What the tap on B's port saw and what it still has to inject.
#[derive(Default)]
pub struct Tap {
    /// Frames to put at the head of B's next receive bursts, oldest first.
    pub inject: VecDeque<Vec<u8>>,
    /// Real frames B received.
    pub real_frames: u64,
    /// Injected frames delivered to B.
    pub injected: u64,
    /// Injected frames the guard vetoed.
    pub vetoed: u64,
    /// The first few real frames, then the most recent ones: material for
    /// mutations.
    pub early: Vec<Vec<u8>>,
    pub recent: VecDeque<Vec<u8>>,
    /// Every frame delivered to B (real and injected), when `record_all`.
    pub record_all: bool,
    pub delivered: Vec<Vec<u8>>,
    pub guard: Option<Box<dyn Guard>>,
}

const EARLY: usize = 8;
const RECENT: usize = 64;

impl Tap {
    /// A real or recent frame, chosen by `pick`.
    pub fn sample(&self, pick: usize) -> Option<&[u8]> {
        let n = self.early.len() + self.recent.len();
        if n == 0 {
            return None;
        }
        let i = pick % n;
        Some(if i < self.early.len() {
            &self.early[i]
        } else {
            &self.recent[i - self.early.len()]
        })
    }
}

struct TapPort<'a, 'b> {
    port: LinkPort<'a>,
    tap: &'b mut Tap,
}

impl Device for TapPort<'_, '_> {
    fn capabilities(&self) -> DeviceCapabilities {
        self.port.capabilities()
    }

    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let tap = &mut *self.tap;
        let mut extra = 0;
        while extra < max {
            let Some(f) = tap.inject.pop_front() else {
                break;
            };
            if let Some(g) = tap.guard.as_mut() {
                if !g.admit(&f) {
                    tap.vetoed += 1;
                    continue;
                }
            }
            batch.push_copy(&f);
            if tap.record_all {
                tap.delivered.push(f);
            }
            tap.injected += 1;
            extra += 1;
        }
        let start = batch.len();
        let n = self.port.receive(now, batch, max - extra);
        for i in start..start + n {
            let f = batch.get(i);
            tap.real_frames += 1;
            if let Some(g) = tap.guard.as_mut() {
                g.real(f);
            }
            if tap.early.len() < EARLY {
                tap.early.push(f.to_vec());
            } else {
                if tap.recent.len() == RECENT {
                    tap.recent.pop_front();
                }
                tap.recent.push_back(f.to_vec());
            }
            if tap.record_all {
                tap.delivered.push(f.to_vec());
            }
        }
        extra + n
    }

    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize {
        self.port.transmit(now, batch)
    }

    fn poll_at(&self) -> Option<Instant> {
        self.port.poll_at()
    }
}

/// Polls at one instant, at most, before time is forced forward (as in
/// `Pair`).
const MAX_POLLS_PER_INSTANT: u32 = 100_000;

/// A pair whose B side receives through a [`Tap`]. Stepping and time jumps
/// follow `Pair::step`; pending injections count as an event "now".
pub struct Driver {
    pub p: Pair,
    pub tap: Tap,
    polls_here: u32,
}

impl Driver {
    pub fn new(p: Pair) -> Driver {
        Driver {
            p,
            tap: Tap::default(),
            polls_here: 0,
        }
    }

    pub fn poll(&mut self) -> bool {
        let now = self.p.now;
        let a = self.p.a.poll(now, &mut self.p.link.port(0));
        let mut dev = TapPort {
            port: self.p.link.port(1),
            tap: &mut self.tap,
        };
        let b = self.p.b.poll(now, &mut dev);
        a || b
    }

    pub fn next_event(&self) -> Option<Instant> {
        if !self.tap.inject.is_empty() {
            return Some(self.p.now);
        }
        self.p.next_event()
    }

    pub fn step(&mut self) -> bool {
        let moved = self.poll();
        self.polls_here += 1;
        match self.next_event() {
            Some(t) if t <= self.p.now => {
                if self.polls_here >= MAX_POLLS_PER_INSTANT {
                    self.p.now += Duration::from_micros(1);
                    self.polls_here = 0;
                }
                true
            }
            Some(t) => {
                if !moved {
                    self.p.now = t;
                    self.polls_here = 0;
                }
                true
            }
            None => moved,
        }
    }

    /// As [`connect`], with the handshake seen by the tap.
    pub fn connect(&mut self) -> (SocketHandle, SocketHandle, SocketHandle) {
        let l = listen(&mut self.p.b, PORT, 128);
        let c = start_connect(&mut self.p, PORT);
        let mut s = None;
        // Long enough for lost SYNs to be retransmitted on impaired links.
        assert!(self.run_until(Duration::from_secs(30), |d| {
            if s.is_none() {
                s = d.p.b.tcp.accept(l).ok().map(|x| x.0);
            }
            s.is_some() && d.p.a.tcp.state(c).unwrap() == State::Established
        }));
        (c, s.unwrap(), l)
    }

    /// Steps until `done` holds or `limit` of virtual time has passed.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Driver) -> bool,
    ) -> bool {
        let deadline = self.p.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.p.now > deadline {
                return false;
            }
            if !self.step() {
                return done(self);
            }
        }
    }
}
