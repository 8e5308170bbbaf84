//! The per-core L2/L3 interface: Ethernet in and out, ARP (RFC 826) with a
//! bounded cache and a bounded queue of frames waiting for resolution, IPv4
//! (no fragments), ICMP echo (RFC 792), and the hand-off of TCP segments to
//! the [`Endpoint`], whose demux is a hash map on the 4-tuple.
//!
//! Malformed frames are dropped and counted per reason (`wire::Error`);
//! frames for other hosts are counted and ignored. Nothing here panics on
//! input or reads a clock.

use core::net::Ipv4Addr;
use std::collections::{HashMap, VecDeque};

use crate::phy::{Device, FrameBatch};
use crate::shard::rss::Rss;
use crate::tcp::{self, Endpoint, SegmentRun, Sink};
use crate::time::{Duration, Instant};
use crate::wire::{
    self, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr,
};

/// Interface settings.
#[derive(Clone, Debug)]
pub struct InterfaceConfig {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// Next hop for destinations outside the subnet.
    pub gateway: Option<Ipv4Addr>,
    /// IP MTU (Ethernet payload), 1500 by default.
    pub mtu: usize,
    /// How long an ARP entry stays valid.
    pub arp_ttl: Duration,
    /// How often an unanswered ARP request is repeated.
    pub arp_retry: Duration,
    /// Frames waiting for ARP resolution, at most (all destinations).
    pub arp_pending_max: usize,
    /// ARP cache entries, at most.
    pub arp_cache_max: usize,
    /// Verify IPv4/TCP/ICMP checksums on receive (software).
    pub verify_checksums: bool,
    /// Frames taken from the device per poll.
    pub rx_burst: usize,
    /// Frames built per poll before the connections are told to wait.
    pub tx_burst: usize,
    /// Receive coalescing (Linux's GRO, `ethtool -K gro`): in-order data
    /// segments of one connection that arrive in one receive burst go
    /// through TCP together (see [`SegmentRun`]). On by default; what TCP
    /// sends and delivers is the same either way.
    pub coalesce: bool,
}

impl InterfaceConfig {
    pub fn new(mac: EthernetAddress, ip: Ipv4Addr, prefix_len: u8) -> InterfaceConfig {
        InterfaceConfig {
            mac,
            ip,
            prefix_len,
            gateway: None,
            mtu: 1500,
            arp_ttl: Duration::from_secs(60),
            arp_retry: Duration::from_secs(1),
            arp_pending_max: 256,
            arp_cache_max: 4096,
            verify_checksums: true,
            rx_burst: 64,
            tx_burst: 256,
            coalesce: true,
        }
    }
}

/// Interface counters. `drops` is indexed by [`wire::Error::index`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Malformed frames dropped, per reason.
    pub drops: [u64; wire::Error::COUNT],
    /// Frames for another MAC or IPv4 address, ignored.
    pub not_for_us: u64,
    /// Non-IPv4/ARP frames and IP protocols we do not speak.
    pub unsupported: u64,
    /// IPv4 packets with a broadcast, multicast or own source address.
    pub bad_source: u64,
    pub arp_requests_sent: u64,
    pub arp_replies_sent: u64,
    pub icmp_echo_replies: u64,
    /// Frames dropped while waiting for ARP (queue full or gave up).
    pub arp_pending_dropped: u64,
    /// Frames the device refused.
    pub tx_dropped: u64,
    /// No route (outside the subnet and no gateway).
    pub no_route: u64,
    /// TCP frames that belong to another core, forwarded to it.
    pub misdirected: u64,
    /// TCP segments that went through TCP coalesced with others of their
    /// receive burst (see [`InterfaceConfig::coalesce`]).
    pub coalesced: u64,
}

impl InterfaceCounters {
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn drop_count(&self, reason: wire::Error) -> u64 {
        self.drops[reason.index()]
    }
}

#[derive(Clone, Copy)]
struct Neighbor {
    mac: EthernetAddress,
    expires_at: Instant,
}

struct Pending {
    next_hop: Ipv4Addr,
    frame: Vec<u8>,
    queued_at: Instant,
}

/// One interface: MAC, IPv4 address, ARP state, and frame batches.
pub struct Interface {
    config: InterfaceConfig,
    netmask: u32,
    /// Keyed hash (random keys): peers choose their addresses.
    neighbors: HashMap<Ipv4Addr, Neighbor, ahash::RandomState>,
    /// The neighbour (address, MAC) last refreshed by a frame from it, and
    /// until when its entry keeps more than half its lifetime: frames from
    /// it before then skip the lookup (a busy flow's every frame would
    /// otherwise pay a hash lookup to refresh nothing).
    refreshed: Option<(Ipv4Addr, EthernetAddress)>,
    refresh_after: Instant,
    /// The next hop last resolved for a frame out, with a copy of its
    /// entry: a flow's every segment would otherwise pay a hash lookup. A
    /// hit only while the copy is unexpired; every insert clears it (a new
    /// MAC takes effect at once), and a refresh only extends the real
    /// entry, which the lookup after the copy expires finds.
    resolved: Option<(Ipv4Addr, Neighbor)>,
    /// Last ARP request per unresolved address.
    requested: HashMap<Ipv4Addr, Instant>,
    pending: VecDeque<Pending>,
    rx: FrameBatch,
    tx: FrameBatch,
    counters: InterfaceCounters,
    steering: Option<Steering>,
    /// Processing a frame another core forwarded: never forward it again.
    injecting: bool,
    /// Frames for other cores, with the core, until the runtime takes them.
    misdirected: Vec<(usize, Vec<u8>)>,
}

/// Which core this interface is, and the hash that assigns flows to cores.
#[derive(Clone, Debug)]
pub struct Steering {
    pub rss: Rss,
    pub core: usize,
}

impl Interface {
    pub fn new(config: InterfaceConfig) -> Interface {
        let netmask = if config.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - config.prefix_len.min(32) as u32)
        };
        Interface {
            rx: FrameBatch::with_capacity(config.rx_burst),
            tx: FrameBatch::with_capacity(config.tx_burst),
            netmask,
            config,
            neighbors: HashMap::with_hasher(ahash::RandomState::new()),
            refreshed: None,
            refresh_after: Instant::ZERO,
            resolved: None,
            requested: HashMap::new(),
            pending: VecDeque::new(),
            counters: InterfaceCounters::default(),
            steering: None,
            injecting: false,
            misdirected: Vec::new(),
        }
    }

    pub fn config(&self) -> &InterfaceConfig {
        &self.config
    }

    /// Makes this interface core `steering.core` of a sharded set: TCP
    /// flows whose hash selects another core are set aside for it.
    pub fn set_steering(&mut self, steering: Option<Steering>) {
        self.steering = steering;
    }

    pub fn steering(&self) -> Option<&Steering> {
        self.steering.as_ref()
    }

    /// Frames that belong to other cores, with their core (drains).
    pub fn take_misdirected(&mut self) -> std::vec::Drain<'_, (usize, Vec<u8>)> {
        self.misdirected.drain(..)
    }

    /// Processes one frame that did not come from the device (a frame
    /// another core forwarded here); replies go out on the next poll.
    pub fn inject(&mut self, now: Instant, frame: &[u8], tcp: &mut Endpoint) {
        self.injecting = true;
        self.process_frame(now, frame, tcp, None);
        self.injecting = false;
    }
    pub fn counters(&self) -> &InterfaceCounters {
        &self.counters
    }
    pub fn ip(&self) -> Ipv4Addr {
        self.config.ip
    }
    pub fn mac(&self) -> EthernetAddress {
        self.config.mac
    }

    /// Adds a static ARP entry (valid until `expires_at`).
    pub fn add_neighbor(&mut self, ip: Ipv4Addr, mac: EthernetAddress, expires_at: Instant) {
        self.resolved = None;
        self.neighbors.insert(ip, Neighbor { mac, expires_at });
    }

    pub fn neighbor(&self, ip: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        self.neighbors
            .get(&ip)
            .filter(|n| n.expires_at > now)
            .map(|n| n.mac)
    }

    /// [`neighbor`](Self::neighbor) for a frame out: the last next hop's
    /// entry is kept, so a flow's segments skip the hash lookup.
    #[inline]
    fn resolve_hop(&mut self, hop: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        if let Some((ip, n)) = self.resolved {
            if ip == hop && n.expires_at > now {
                return Some(n.mac);
            }
        }
        let n = *self.neighbors.get(&hop).filter(|n| n.expires_at > now)?;
        self.resolved = Some((hop, n));
        Some(n.mac)
    }

    /// When the interface itself next needs time (ARP retries of pending
    /// frames).
    pub fn poll_at(&self) -> Option<Instant> {
        self.pending.front().map(|p| {
            self.requested
                .get(&p.next_hop)
                .map(|t| *t + self.config.arp_retry)
                .unwrap_or(Instant::ZERO)
        })
    }

    /// One round: a receive burst, each frame to ARP/ICMP/TCP, the TCP
    /// endpoint's output, ARP upkeep, then the transmit burst. Returns true
    /// if any frame moved.
    ///
    /// Generic only at the surface: the work is one function compiled in
    /// this crate, whatever the caller's crate and its device type (a
    /// device is called twice per poll, through a vtable). Instantiated in
    /// the caller's crate instead, the hot path was inlined and laid out
    /// differently in every binary that linked it: the same code ran W2 at
    /// 2.2–2.8 M round trips/s depending on the binary.
    #[inline]
    pub fn poll<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        tcp: &mut Endpoint,
    ) -> bool {
        let mut device = device;
        self.poll_device(now, &mut device, tcp)
    }

    fn poll_device(&mut self, now: Instant, device: &mut dyn Device, tcp: &mut Endpoint) -> bool {
        let mut rx = std::mem::take(&mut self.rx);
        rx.clear();
        let n = device.receive(now, &mut rx, self.config.rx_burst);
        if rx.len() > 1 && self.config.coalesce {
            let mut run = SegmentRun::default();
            for i in 0..rx.len() {
                let frame = rx.get(i);
                let follows = i + 1 < rx.len() && same_flow(frame, rx.get(i + 1));
                self.process_frame(now, frame, tcp, Some((&mut run, follows)));
            }
            self.deliver_run(now, tcp, Some(&mut run));
        } else {
            // A lone frame (a request, a response, an ACK) has nothing to
            // coalesce with.
            for frame in rx.iter() {
                self.process_frame(now, frame, tcp, None);
            }
        }
        self.rx = rx;
        {
            let mut sink = TxSink { iface: self, now };
            tcp.dispatch(now, &mut sink);
        }
        self.arp_upkeep(now);
        let sent = self.flush(now, device);
        n > 0 || sent > 0
    }

    /// Sends what is queued in the transmit batch.
    fn flush(&mut self, now: Instant, device: &mut dyn Device) -> usize {
        if self.tx.is_empty() {
            return 0;
        }
        let queued = self.tx.len();
        let bytes: usize = self.tx.iter().map(|f| f.len()).sum();
        let accepted = device.transmit(now, &mut self.tx);
        self.tx.clear();
        self.counters.tx_frames += accepted as u64;
        self.counters.tx_bytes += bytes as u64;
        self.counters.tx_dropped += (queued - accepted) as u64;
        accepted
    }

    fn drop_frame(&mut self, e: wire::Error) {
        self.counters.drops[e.index()] += 1;
    }

    /// Hands the segments held in `run` to TCP, and empties it.
    fn deliver_run(&mut self, now: Instant, tcp: &mut Endpoint, run: Option<&mut SegmentRun<'_>>) {
        if let Some(run) = run.filter(|r| !r.is_empty()) {
            if run.count() > 1 {
                self.counters.coalesced += run.count() as u64;
            }
            let mut sink = TxSink { iface: self, now };
            tcp.process_run(now, run, &mut sink);
            run.clear();
        }
    }

    /// One received frame. With a `run` (a burst of several frames), a TCP
    /// segment that continues the run joins it (delivered when a frame does
    /// not continue it, or after the burst), and one that may coalesce
    /// starts a new run if the next frame looks like the same flow
    /// (`follows`: a hint, checked in full when that frame comes); anything
    /// else is handled after what the run holds, so TCP sees every segment
    /// in arrival order.
    fn process_frame<'a>(
        &mut self,
        now: Instant,
        frame: &'a [u8],
        tcp: &mut Endpoint,
        mut run: Option<(&mut SegmentRun<'a>, bool)>,
    ) {
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += frame.len() as u64;
        let eth = match EthernetFrame::new_checked(frame) {
            Ok(f) => f,
            Err(e) => return self.drop_frame(e),
        };
        let eth_repr = match EthernetRepr::parse(&eth) {
            Ok(r) => r,
            Err(e) => return self.drop_frame(e),
        };
        if eth_repr.dst_addr != self.config.mac && !eth_repr.dst_addr.is_broadcast() {
            self.counters.not_for_us += 1;
            return;
        }
        match eth_repr.ethertype {
            EtherType::Arp => {
                // Every core keeps its own ARP cache, but the NIC hands ARP
                // to one queue: share it with the other cores.
                if let Some(st) = self.steering.as_ref().filter(|_| !self.injecting) {
                    for core in (0..st.rss.queues()).filter(|c| *c != st.core) {
                        self.misdirected.push((core, frame.to_vec()));
                    }
                }
                self.deliver_run(now, tcp, run.as_mut().map(|(r, _)| &mut **r));
                self.process_arp(now, eth.payload())
            }
            EtherType::Ipv4 => self.process_ipv4(now, eth_repr, frame, eth.payload(), tcp, run),
            _ => self.counters.unsupported += 1,
        }
    }

    /// RFC 826 "packet reception", with the merge rule: update an entry we
    /// have; add one when the request is for us.
    fn process_arp(&mut self, now: Instant, payload: &[u8]) {
        let packet = match ArpPacket::new_checked(payload) {
            Ok(p) => p,
            Err(e) => return self.drop_frame(e),
        };
        let repr = match ArpRepr::parse(&packet) {
            Ok(r) => r,
            Err(wire::Error::Unsupported) => {
                self.counters.unsupported += 1;
                return;
            }
            Err(e) => return self.drop_frame(e),
        };
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = repr;
        if !source_hardware_addr.is_unicast() || source_protocol_addr.is_unspecified() {
            self.counters.bad_source += 1;
            return;
        }
        let for_us = target_protocol_addr == self.config.ip;
        let known = self.neighbors.contains_key(&source_protocol_addr);
        if for_us || known {
            self.learn(now, source_protocol_addr, source_hardware_addr);
        }
        if !for_us {
            self.counters.not_for_us += 1;
            return;
        }
        // A copy forwarded from another core only teaches: the core that
        // received the request answers it.
        if operation == ArpOperation::Request && !self.injecting {
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.config.mac,
                source_protocol_addr: self.config.ip,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            self.emit_arp(source_hardware_addr, &reply);
            self.counters.arp_replies_sent += 1;
        }
    }

    fn learn(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) {
        if self.neighbors.len() >= self.config.arp_cache_max && !self.neighbors.contains_key(&ip) {
            // Bounded: evict expired entries first, then refuse.
            self.neighbors.retain(|_, n| n.expires_at > now);
            if self.neighbors.len() >= self.config.arp_cache_max {
                return;
            }
        }
        self.resolved = None;
        self.neighbors.insert(
            ip,
            Neighbor {
                mac,
                expires_at: now + self.config.arp_ttl,
            },
        );
        self.requested.remove(&ip);
        // Release frames that waited for this address.
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].next_hop == ip {
                let mut p = self.pending.remove(i).expect("index checked");
                let mut f = EthernetFrame::new_unchecked(&mut p.frame[..]);
                f.set_dst_addr(mac);
                self.tx.push_copy(&p.frame);
            } else {
                i += 1;
            }
        }
    }

    fn emit_arp(&mut self, dst: EthernetAddress, repr: &ArpRepr) {
        let eth = EthernetRepr {
            src_addr: self.config.mac,
            dst_addr: dst,
            ethertype: EtherType::Arp,
        };
        let len = eth.buffer_len() + repr.buffer_len();
        self.tx.push_with(len, |buf| {
            let mut frame = EthernetFrame::new_unchecked(buf);
            eth.emit(&mut frame);
            let mut packet = ArpPacket::new_unchecked(frame.payload_mut());
            repr.emit(&mut packet);
        });
    }

    fn process_ipv4<'a>(
        &mut self,
        now: Instant,
        eth: EthernetRepr,
        frame: &'a [u8],
        payload: &'a [u8],
        tcp: &mut Endpoint,
        run: Option<(&mut SegmentRun<'a>, bool)>,
    ) {
        let packet = match Ipv4Packet::new_checked(payload) {
            Ok(p) => p,
            Err(e) => return self.drop_frame(e),
        };
        let ip = match Ipv4Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return self.drop_frame(e),
        };
        // RFC 1122 §3.3.6: a datagram that came as a link-layer broadcast
        // but is not addressed to an IP broadcast or multicast address is
        // discarded (we only accept our unicast address).
        if ip.dst_addr != self.config.ip || eth.dst_addr.is_broadcast() {
            self.counters.not_for_us += 1;
            return;
        }
        let src = ip.src_addr;
        if src.is_broadcast()
            || src.is_multicast()
            || src.is_unspecified()
            || src == self.config.ip
            || src == self.broadcast()
        {
            self.counters.bad_source += 1;
            return;
        }
        // A frame from a neighbour refreshes what we know of it (only if we
        // already know it, so spoofed frames cannot fill the cache).
        // Refreshed only when less than half its lifetime is left: one hash
        // lookup per frame would be wasted on a busy flow.
        let ttl = self.config.arp_ttl;
        if self.refreshed != Some((src, eth.src_addr)) || now >= self.refresh_after {
            let half = Duration::from_micros(ttl.total_micros() / 2);
            if let Some(n) = self.neighbors.get_mut(&src) {
                if n.mac == eth.src_addr {
                    if n.expires_at < now + half {
                        n.expires_at = now + ttl;
                    }
                    self.refreshed = Some((src, eth.src_addr));
                    self.refresh_after = n.expires_at - half;
                }
            }
        }
        let body = packet.payload();
        match ip.protocol {
            IpProtocol::Tcp => {
                let seg = match TcpPacket::new_checked(body) {
                    Ok(p) => p,
                    Err(e) => return self.drop_frame(e),
                };
                // Per-core sharding: a flow belongs to the core its RSS hash
                // selects; a frame that arrived elsewhere is forwarded.
                if let Some(st) = self.steering.as_ref().filter(|_| !self.injecting) {
                    let owner = st
                        .rss
                        .queue_v4(src, ip.dst_addr, seg.src_port(), seg.dst_port());
                    if owner != st.core {
                        self.counters.misdirected += 1;
                        self.misdirected.push((owner, frame.to_vec()));
                        return;
                    }
                }
                let repr =
                    match TcpRepr::parse(&seg, src, ip.dst_addr, self.config.verify_checksums) {
                        Ok(r) => r,
                        Err(e) => return self.drop_frame(e),
                    };
                if let Some((run, follows)) = run {
                    if run.append(src, ip.dst_addr, &repr) {
                        return;
                    }
                    // Not part of the run: the run first, then this
                    // segment, which may start the next one.
                    self.deliver_run(now, tcp, Some(&mut *run));
                    if follows && run.start(src, ip.dst_addr, &repr) {
                        return;
                    }
                }
                let mut sink = TxSink { iface: self, now };
                tcp.process(now, src, ip.dst_addr, &repr, &mut sink);
            }
            IpProtocol::Icmp => {
                self.deliver_run(now, tcp, run.map(|(r, _)| r));
                self.process_icmp(now, src, body)
            }
            _ => self.counters.unsupported += 1,
        }
    }

    fn process_icmp(&mut self, now: Instant, src: Ipv4Addr, body: &[u8]) {
        let packet = match Icmpv4Packet::new_checked(body) {
            Ok(p) => p,
            Err(e) => return self.drop_frame(e),
        };
        let repr = match Icmpv4Repr::parse(&packet) {
            Ok(r) => r,
            Err(wire::Error::Unsupported) => {
                self.counters.unsupported += 1;
                return;
            }
            Err(e) => return self.drop_frame(e),
        };
        if let Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } = repr
        {
            // RFC 792: the echo reply returns the data unchanged.
            let reply = Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            };
            let ip = Ipv4Repr {
                src_addr: self.config.ip,
                dst_addr: src,
                protocol: IpProtocol::Icmp,
                payload_len: reply.buffer_len(),
                hop_limit: 64,
            };
            if ip.payload_len + wire::ipv4::HEADER_LEN <= self.config.mtu {
                self.send_ip(now, &ip, |buf| {
                    let mut p = Icmpv4Packet::new_unchecked(buf);
                    reply.emit(&mut p);
                });
                self.counters.icmp_echo_replies += 1;
            }
        }
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.config.ip) | !self.netmask)
    }

    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let net = u32::from(self.config.ip) & self.netmask;
        if u32::from(dst) & self.netmask == net {
            Some(dst)
        } else {
            self.config.gateway
        }
    }

    /// Builds an IPv4 packet in a new frame; the body is written by `fill`.
    /// Returns false only when the transmit batch is full.
    fn send_ip(&mut self, now: Instant, ip: &Ipv4Repr, fill: impl FnOnce(&mut [u8])) -> bool {
        self.send_ip_with_tail(now, ip, &[], fill)
    }

    /// [`send_ip`](Self::send_ip) for a packet whose body ends in `tail`:
    /// the frame is built with `tail` already copied to its end, and `fill`
    /// writes the rest of the body before it.
    fn send_ip_with_tail(
        &mut self,
        now: Instant,
        ip: &Ipv4Repr,
        tail: &[u8],
        fill: impl FnOnce(&mut [u8]),
    ) -> bool {
        let Some(next_hop) = self.next_hop(ip.dst_addr) else {
            self.counters.no_route += 1;
            return true;
        };
        if self.tx.len() >= self.config.tx_burst {
            return false;
        }
        let mac = self.neighbor(next_hop, now);
        let eth = EthernetRepr {
            src_addr: self.config.mac,
            dst_addr: mac.unwrap_or(EthernetAddress::BROADCAST),
            ethertype: EtherType::Ipv4,
        };
        let len = eth.buffer_len() + wire::ipv4::HEADER_LEN + ip.payload_len;
        let build = |buf: &mut [u8]| {
            let mut frame = EthernetFrame::new_unchecked(buf);
            eth.emit(&mut frame);
            let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
            ip.emit(&mut packet);
            fill(packet.payload_mut());
        };
        if mac.is_some() {
            self.tx.push_with_tail(len - tail.len(), tail, build);
            return true;
        }
        // Unresolved: keep the frame (bounded) and ask who has next_hop.
        if self.pending.len() >= self.config.arp_pending_max {
            self.counters.arp_pending_dropped += 1;
        } else {
            let mut frame = vec![0u8; len - tail.len()];
            frame.extend_from_slice(tail);
            build(&mut frame);
            self.pending.push_back(Pending {
                next_hop,
                frame,
                queued_at: now,
            });
        }
        if !self.requested.contains_key(&next_hop) {
            self.request(now, next_hop);
        }
        true
    }

    fn request(&mut self, now: Instant, ip: Ipv4Addr) {
        let req = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: self.config.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        self.emit_arp(EthernetAddress::BROADCAST, &req);
        self.requested.insert(ip, now);
        self.counters.arp_requests_sent += 1;
    }

    /// Repeats unanswered requests; gives up on frames that waited three
    /// retry periods (TCP retransmits them later).
    #[inline]
    fn arp_upkeep(&mut self, now: Instant) {
        if !self.pending.is_empty() {
            self.arp_retry(now);
        }
    }

    fn arp_retry(&mut self, now: Instant) {
        let give_up = self.config.arp_retry.saturating_mul(3);
        while let Some(p) = self.pending.front() {
            if now - p.queued_at >= give_up {
                self.pending.pop_front();
                self.counters.arp_pending_dropped += 1;
            } else {
                break;
            }
        }
        let mut due: Vec<Ipv4Addr> = self.pending.iter().map(|p| p.next_hop).collect();
        due.sort_unstable();
        due.dedup();
        for ip in due {
            let retry = self
                .requested
                .get(&ip)
                .is_none_or(|t| now - *t >= self.config.arp_retry);
            if retry {
                self.request(now, ip);
            }
        }
        if self.pending.is_empty() {
            self.requested.clear();
        }
    }
}

/// The TCP endpoint's view of the interface: each segment becomes a frame
/// in the transmit batch, built in place.
struct TxSink<'a> {
    iface: &'a mut Interface,
    now: Instant,
}

impl Sink for TxSink<'_> {
    fn emit(&mut self, src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr<'_>) -> bool {
        match self.resolve(dst) {
            Some(mac) => self.emit_to(mac, src, dst, repr),
            None => unresolved(self.iface, self.now, src, dst, repr),
        }
    }

    /// The next hop is looked up once for the whole burst, and the headers
    /// built once: each later segment only changes the IP length, the
    /// sequence number and, on the last, the flags.
    fn emit_split(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &TcpRepr<'_>,
        mss: usize,
    ) -> usize {
        let Some(mac) = self.resolve(dst) else {
            return tcp::emit_each(repr, mss, |segment| {
                unresolved(self.iface, self.now, src, dst, segment)
            });
        };
        let mut headers = [0u8; HEADERS_MAX];
        let mut end = 0;
        let mut sent = 0;
        for segment in repr.split(mss) {
            if self.iface.tx.len() >= self.iface.config.tx_burst {
                break;
            }
            if sent == 0 {
                end = self.write_headers(mac, src, dst, &segment, &mut headers);
            } else {
                tcp_ip(src, dst, &segment)
                    .emit(&mut Ipv4Packet::new_unchecked(&mut headers[IP_AT..TCP_AT]));
                let mut tcp = TcpPacket::new_unchecked(&mut headers[TCP_AT..end]);
                tcp.set_seq_number(segment.seq_number);
                tcp.set_flags(segment.flags);
                tcp.set_checksum(0);
            }
            self.finish(src, dst, &segment, &mut headers[..end]);
            sent += 1;
        }
        sent
    }
}

/// Where the IPv4 and TCP headers start in a frame, and the longest
/// Ethernet, IPv4 and TCP headers together.
const IP_AT: usize = wire::ethernet::HEADER_LEN;
const TCP_AT: usize = IP_AT + wire::ipv4::HEADER_LEN;
const HEADERS_MAX: usize = TCP_AT + wire::tcp::MAX_HEADER_LEN;

/// The IPv4 header of a TCP segment.
#[inline]
fn tcp_ip(src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr<'_>) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::Tcp,
        payload_len: repr.buffer_len(),
        hop_limit: 64,
    }
}

impl TxSink<'_> {
    /// The next hop's MAC address, if routed and resolved.
    #[inline]
    fn resolve(&mut self, dst: Ipv4Addr) -> Option<EthernetAddress> {
        let iface = &mut *self.iface;
        let hop = iface.next_hop(dst)?;
        iface.resolve_hop(hop, self.now)
    }

    /// One frame to `mac`: the headers are built in a buffer on the stack
    /// and the payload summed where it lies; the frame is then the headers
    /// and the payload, each copied once (no zeroed frame, no pass over the
    /// payload in the frame).
    #[inline(always)]
    fn emit_to(
        &mut self,
        mac: EthernetAddress,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &TcpRepr<'_>,
    ) -> bool {
        if self.iface.tx.len() >= self.iface.config.tx_burst {
            return false;
        }
        let mut headers = [0u8; HEADERS_MAX];
        let end = self.write_headers(mac, src, dst, repr, &mut headers);
        self.finish(src, dst, repr, &mut headers[..end]);
        true
    }

    /// Writes the Ethernet, IPv4 and TCP headers (TCP checksum 0) of
    /// `repr` to `mac`; returns their length.
    #[inline(always)]
    fn write_headers(
        &self,
        mac: EthernetAddress,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &TcpRepr<'_>,
        headers: &mut [u8; HEADERS_MAX],
    ) -> usize {
        EthernetRepr {
            src_addr: self.iface.config.mac,
            dst_addr: mac,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut headers[..IP_AT]));
        tcp_ip(src, dst, repr).emit(&mut Ipv4Packet::new_unchecked(&mut headers[IP_AT..TCP_AT]));
        TCP_AT + repr.emit_header(&mut headers[TCP_AT..])
    }

    /// Fills the TCP checksum of `headers` (with `repr`'s payload after
    /// them; the TCP header summed from `repr`'s fields where it can) and
    /// queues the frame.
    #[inline(always)]
    fn finish(&mut self, src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr<'_>, headers: &mut [u8]) {
        let payload = repr.payload;
        let sum = repr.checksum_from_fields(src, dst, &headers[TCP_AT..], payload);
        TcpPacket::new_unchecked(&mut headers[TCP_AT..]).set_checksum(sum);
        self.iface.tx.push_parts(headers, payload);
    }
}

/// Does `next` look like a frame of the same TCP flow as `frame` (the
/// same IPv4 addresses and ports, assuming 20-byte IPv4 headers)? Only a
/// hint that a run is worth starting: [`SegmentRun`] checks in full.
#[inline]
fn same_flow(frame: &[u8], next: &[u8]) -> bool {
    // Ethernet 14 bytes, IPv4 source and destination at 12..20, then the
    // TCP ports.
    const FLOW: core::ops::Range<usize> = 26..38;
    match (frame.get(FLOW), next.get(FLOW)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// No route, or the next hop not resolved yet: the general path counts the
/// segment or queues its frame for ARP. Out of the sink's hot path.
#[cold]
#[inline(never)]
fn unresolved(
    iface: &mut Interface,
    now: Instant,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    repr: &TcpRepr<'_>,
) -> bool {
    iface.send_ip_with_tail(now, &tcp_ip(src, dst, repr), repr.payload, |buf| {
        let mut p = TcpPacket::new_unchecked(buf);
        repr.emit_around_payload(&mut p, src, dst, true);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpTimestamp};

    const MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 2);

    /// The frame the general path (a zeroed frame, every header emitted
    /// in place, one checksum over the whole segment) builds for `repr`.
    fn reference(repr: &TcpRepr<'_>) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + repr.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        EthernetRepr {
            src_addr: MAC,
            dst_addr: PEER_MAC,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut eth);
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        Ipv4Repr {
            src_addr: IP,
            dst_addr: PEER,
            protocol: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        }
        .emit(&mut ip);
        repr.emit(
            &mut TcpPacket::new_unchecked(ip.payload_mut()),
            IP,
            PEER,
            true,
        );
        f
    }

    fn repr<'a>(flags: TcpFlags, options: TcpOptions, payload: &'a [u8]) -> TcpRepr<'a> {
        TcpRepr {
            src_port: 80,
            dst_port: 40_001,
            seq_number: SeqNumber(0xfedc_ba98),
            ack_number: SeqNumber(0x0123_4567),
            flags,
            window_len: 0x7654,
            urgent_pointer: 0,
            options,
            payload,
        }
    }

    /// Every option layout the connection emits, with payloads of even
    /// and odd length, comes out of the sink byte for byte as the general
    /// path builds it, and parses back with valid checksums.
    #[test]
    fn sink_frames_equal_the_general_path_byte_for_byte() {
        let ts = Some(TcpTimestamp {
            tsval: 0xdead_beef,
            tsecr: 0x0bad_cafe,
        });
        let mut syn = TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: ts,
            ..TcpOptions::default()
        };
        let ts_only = TcpOptions {
            timestamp: ts,
            ..TcpOptions::default()
        };
        let mut sack = ts_only;
        sack.sack_blocks[0] = (SeqNumber(1000), SeqNumber(2448));
        sack.sack_blocks[1] = (SeqNumber(5000), SeqNumber(6000));
        sack.sack_count = 2;
        let data: Vec<u8> = (0..1448u32).map(|i| (i * 7 + 1) as u8).collect();
        let cases = [
            repr(TcpFlags::SYN, syn, &[]),
            repr(TcpFlags::SYN | TcpFlags::ACK, syn, &[]),
            repr(TcpFlags::ACK, ts_only, &[]),
            repr(TcpFlags::ACK | TcpFlags::PSH, ts_only, &data[..64]),
            repr(TcpFlags::ACK | TcpFlags::PSH, ts_only, &data[..63]),
            repr(TcpFlags::ACK, ts_only, &data),
            repr(TcpFlags::ACK | TcpFlags::FIN, sack, &data[..301]),
            repr(TcpFlags::RST, TcpOptions::default(), &[]),
            repr(TcpFlags::ACK, TcpOptions::default(), &data[..1000]),
        ];
        syn.timestamp = None;
        let cases = cases.into_iter().chain([repr(TcpFlags::SYN, syn, &[])]);
        let mut iface = Interface::new(InterfaceConfig::new(MAC, IP, 24));
        iface.add_neighbor(PEER, PEER_MAC, Instant::from_secs(60));
        for (i, r) in cases.enumerate() {
            iface.tx.clear();
            let mut sink = TxSink {
                iface: &mut iface,
                now: Instant::ZERO,
            };
            assert!(sink.emit(IP, PEER, &r), "case {i}");
            assert_eq!(iface.tx.len(), 1, "case {i}");
            let frame = iface.tx.get(0);
            assert_eq!(frame, &reference(&r)[..], "case {i}: {r:?}");
            let ip = Ipv4Packet::new_checked(&frame[14..]).expect("valid IPv4");
            assert_eq!(
                Ipv4Repr::parse(&ip).map(|r| r.payload_len),
                Ok(frame.len() - 34)
            );
            let seg = TcpPacket::new_checked(ip.payload()).expect("valid TCP");
            // Without ACK the acknowledgment field goes out as 0.
            let mut expected = r;
            if !r.flags.ack() {
                expected.ack_number = SeqNumber(0);
            }
            let parsed = TcpRepr::parse(&seg, IP, PEER, true);
            assert_eq!(parsed.as_ref(), Ok(&expected), "case {i}");
        }
    }

    /// Without a route or a resolved neighbour the sink takes the general
    /// path: the frame waits for ARP (a request goes out), or is counted.
    #[test]
    fn sink_without_a_neighbour_queues_for_arp_and_without_a_route_counts() {
        let mut iface = Interface::new(InterfaceConfig::new(MAC, IP, 24));
        let r = repr(TcpFlags::ACK, TcpOptions::default(), b"hello");
        let mut sink = TxSink {
            iface: &mut iface,
            now: Instant::ZERO,
        };
        assert!(sink.emit(IP, PEER, &r));
        assert!(sink.emit(IP, Ipv4Addr::new(10, 78, 0, 1), &r));
        assert_eq!(iface.pending.len(), 1);
        assert_eq!(iface.counters.arp_requests_sent, 1);
        assert_eq!(iface.counters.no_route, 1);
        let mut waiting = iface.pending[0].frame.clone();
        EthernetFrame::new_unchecked(&mut waiting[..]).set_dst_addr(PEER_MAC);
        assert_eq!(waiting, reference(&r));
    }

    /// A burst cut by the sink comes out byte for byte as one emit per
    /// segment of [`TcpRepr::split`] (headers built once, then patched),
    /// for each option layout and a short last segment; a full transmit
    /// batch stops it part way and it reports how many went out.
    #[test]
    fn split_burst_equals_one_emit_per_segment_byte_for_byte() {
        let ts = Some(TcpTimestamp {
            tsval: 77,
            tsecr: 0xffff_fff0,
        });
        let ts_only = TcpOptions {
            timestamp: ts,
            ..TcpOptions::default()
        };
        let mut sack = ts_only;
        sack.sack_blocks[0] = (SeqNumber(9), SeqNumber(99));
        sack.sack_count = 1;
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13 + 5) as u8).collect();
        let cases = [
            (repr(TcpFlags::ACK | TcpFlags::PSH, ts_only, &data), 1448),
            (
                repr(TcpFlags::ACK, TcpOptions::default(), &data[..4380]),
                1460,
            ),
            (
                repr(TcpFlags::ACK | TcpFlags::FIN, sack, &data[..2001]),
                1436,
            ),
        ];
        for (i, (r, mss)) in cases.iter().enumerate() {
            let mut bursts = Interface::new(InterfaceConfig::new(MAC, IP, 24));
            let mut singles = Interface::new(InterfaceConfig::new(MAC, IP, 24));
            for iface in [&mut bursts, &mut singles] {
                iface.add_neighbor(PEER, PEER_MAC, Instant::from_secs(60));
            }
            let count = r.payload.len().div_ceil(*mss);
            let mut sink = TxSink {
                iface: &mut bursts,
                now: Instant::ZERO,
            };
            assert_eq!(sink.emit_split(IP, PEER, r, *mss), count, "case {i}");
            let mut sink = TxSink {
                iface: &mut singles,
                now: Instant::ZERO,
            };
            for segment in r.split(*mss) {
                assert!(sink.emit(IP, PEER, &segment));
            }
            assert_eq!(bursts.tx.len(), count);
            for k in 0..count {
                assert_eq!(bursts.tx.get(k), singles.tx.get(k), "case {i}, frame {k}");
            }
        }
        // Room for two frames: two go out, and the caller learns it.
        let mut config = InterfaceConfig::new(MAC, IP, 24);
        config.tx_burst = 2;
        let mut iface = Interface::new(config);
        iface.add_neighbor(PEER, PEER_MAC, Instant::from_secs(60));
        let mut sink = TxSink {
            iface: &mut iface,
            now: Instant::ZERO,
        };
        let r = repr(TcpFlags::ACK, ts_only, &data);
        assert_eq!(sink.emit_split(IP, PEER, &r, 1000), 2);
        let second = r.split(1000).nth(1).unwrap();
        assert_eq!(iface.tx.get(1), &reference(&second)[..]);
    }

    /// Without a resolved neighbour a burst's segments each wait for ARP.
    #[test]
    fn split_burst_without_a_neighbour_queues_every_segment_for_arp() {
        let mut iface = Interface::new(InterfaceConfig::new(MAC, IP, 24));
        let data = [0x42u8; 3000];
        let r = repr(TcpFlags::ACK, TcpOptions::default(), &data);
        let mut sink = TxSink {
            iface: &mut iface,
            now: Instant::ZERO,
        };
        assert_eq!(sink.emit_split(IP, PEER, &r, 1460), 3);
        assert_eq!(iface.pending.len(), 3);
        for (k, segment) in r.split(1460).enumerate() {
            let mut waiting = iface.pending[k].frame.clone();
            EthernetFrame::new_unchecked(&mut waiting[..]).set_dst_addr(PEER_MAC);
            assert_eq!(waiting, reference(&segment), "segment {k}");
        }
    }
}
