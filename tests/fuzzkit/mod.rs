//! The stack-level fuzz harness, shared by the libFuzzer target
//! `fuzz/fuzz_targets/frames.rs` (coverage-guided, nightly, `cargo fuzz`)
//! and `tests/fuzz_inputs.rs` (stable, seeded inputs, in CI).
//!
//! Stack B of a pair has a listener on port 80 and one established
//! connection from A. Then A goes quiet and the fuzzer speaks for it: each
//! [`Op`] is a frame put on B's wire (a TCP segment of A's connection, of a
//! new connection to B's listener, of a connection B opened, of a closed
//! port; any IPv4 payload, an ARP message, or raw bytes), time going by,
//! or a call of B's application (connect, accept, read, write, shutdown,
//! close). Segments are built valid (checksums right unless the input says
//! otherwise) with sequence and acknowledgement numbers as offsets from
//! what B last said on that flow, so most land in or near the window and
//! reach the state machine rather than the checksum check: a SYN to the
//! listener then an ACK at offset 0 completes a handshake.
//!
//! What must hold, whatever the input: no panic (in a fuzz build debug
//! assertions are on, so arithmetic overflow counts), and every frame B
//! sends is well formed: Ethernet, IPv4 and TCP headers that parse with
//! their checksums right, within the MTU, to a unicast address.
#![allow(dead_code)]

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::HashMap;

use arbitrary::Arbitrary;
use flowlane::api::pair::{Pair, A_IP, A_MAC, B_IP, B_MAC};
use flowlane::api::{SocketHandle, Stack};
use flowlane::time::{Duration, Instant};
use flowlane::wire::{
    ArpOperation, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol,
    Ipv4Packet, Ipv4Repr,
};

use super::framekit::{
    arp_frame, connect, internet_checksum, ipv4_frame, parse_tcp, poll_until, pseudo_header,
    QueueDevice, PORT,
};

/// Where a segment goes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Target {
    /// A's connection to B.
    Conn,
    /// B's listener, from another port of A (a new connection, or one
    /// made by earlier segments).
    Listener(u16),
    /// A port of B nobody listens on.
    Closed(u16),
    /// One of the connections B opened ([`Op::Connect`]), from A's end.
    Active(u8),
}

/// One step of the fuzzer's input.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// A TCP segment to B. `seq` and `ack` are offsets from what B last
    /// acknowledged and last sent on that flow; the first `options_len` (up to 40,
    /// padded with zeros to a multiple of 4) of `options` are the raw
    /// option bytes; `payload` bytes of data.
    Segment {
        target: Target,
        flags: u8,
        seq: i16,
        ack: i16,
        window: u16,
        options: [u8; 40],
        options_len: u8,
        payload: u16,
        urgent: u16,
        bad_checksum: bool,
    },
    /// An IPv4 datagram to B (header built valid) with any protocol and body.
    Ip {
        protocol: u8,
        body: Vec<u8>,
    },
    /// An ARP message from A's or another address.
    Arp {
        request: bool,
        sender_last: u8,
        target_last: u8,
        mac_last: u8,
    },
    /// Any bytes as a frame.
    Raw(Vec<u8>),
    /// Time goes by (B's timers run).
    Advance {
        ms: u16,
    },
    /// B opens a connection to A's `port`.
    Connect {
        port: u16,
    },
    /// B accepts from its listener.
    Accept,
    /// B's application reads up to `len` bytes from one of its sockets
    /// (`which`, modulo how many it has: the first connection, then those
    /// accepted and opened).
    Read {
        which: u8,
        len: u16,
    },
    /// B's application writes `len` bytes.
    Write {
        which: u8,
        len: u16,
    },
    Shutdown {
        which: u8,
    },
    Close {
        which: u8,
    },
}

/// Most sockets B's application holds at once.
const SOCKETS_MAX: usize = 16;

/// B, its device, and what the fuzzer knows of B's last words to A.
pub struct World {
    b: Stack,
    dev: QueueDevice,
    now: Instant,
    listener: SocketHandle,
    /// B's application's sockets: the first connection, then those
    /// accepted and opened.
    socks: Vec<SocketHandle>,
    /// A's port of the first connection.
    a_port: u16,
    /// The connections B opened: (A's port, B's port).
    active: Vec<(u16, u16)>,
    /// Per flow (A's port, B's port): RCV.NXT as B last said it (its last
    /// ACK number) and B's next sequence number (SND.NXT) as last seen.
    said: HashMap<(u16, u16), (u32, u32)>,
    /// Frames B sent (a measure that the run did something).
    pub sent: usize,
    /// Connections B's application accepted.
    pub accepted: usize,
}

impl World {
    /// A pair with one established connection, then B on its own.
    pub fn new() -> World {
        let mut p = Pair::new(7);
        let (c, s, l) = connect(&mut p);
        // B speaks once so that its sequence numbers are known.
        p.b.tcp.send(s, b"hello").unwrap();
        p.run_for(Duration::from_millis(300));
        let a_port = p.a.tcp.local_addr(c).unwrap().port();
        let now = p.now;
        let Pair { b, .. } = p;
        let mut w = World {
            b,
            dev: QueueDevice::default(),
            now,
            listener: l,
            socks: vec![s],
            a_port,
            active: Vec::new(),
            said: HashMap::new(),
            sent: 0,
            accepted: 0,
        };
        // B's keepalive or window probe is not due; a write makes it speak.
        w.b.tcp.send(s, b"!").unwrap();
        w.poll(0);
        assert!(w.said.contains_key(&(a_port, PORT)), "B spoke");
        w
    }

    /// Polls B for `ms` of time and checks what it sent.
    fn poll(&mut self, ms: u64) {
        let until = self.now + Duration::from_millis(ms);
        let out = poll_until(&mut self.b, &mut self.dev, &mut self.now, until);
        for (_, frame) in out {
            self.check(&frame);
        }
    }

    /// A frame B sent: well formed, and what B said on each flow to A
    /// becomes the base of the next segments of that flow.
    fn check(&mut self, frame: &[u8]) {
        self.sent += 1;
        assert!(frame.len() <= 1514, "frame of {} bytes", frame.len());
        let eth = EthernetFrame::new_checked(frame).expect("Ethernet header");
        let eth_repr = EthernetRepr::parse(&eth).expect("Ethernet header");
        assert_eq!(eth_repr.src_addr, B_MAC);
        match eth_repr.ethertype {
            EtherType::Arp => return,
            EtherType::Ipv4 => {}
            other => panic!("B sent EtherType {other:?}"),
        }
        assert!(eth_repr.dst_addr.is_unicast(), "{:?}", eth_repr.dst_addr);
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("IPv4 header");
        let ip_repr = Ipv4Repr::parse(&ip).expect("IPv4 header and checksum");
        assert_eq!(ip_repr.src_addr, B_IP);
        if ip_repr.protocol != IpProtocol::Tcp {
            return;
        }
        let (_, _, tcp) = parse_tcp(frame).expect("TCP header and checksum");
        if ip_repr.dst_addr == A_IP {
            let flow = (tcp.dst_port, tcp.src_port);
            if tcp.flags.syn() && !tcp.flags.ack() && !self.active.contains(&flow) {
                self.active.push(flow);
            }
            let said = self.said.entry(flow).or_insert((0, 0));
            if tcp.flags.ack() {
                said.0 = tcp.ack_number.0;
            }
            let len =
                tcp.payload.len() as u32 + u32::from(tcp.flags.syn()) + u32::from(tcp.flags.fin());
            said.1 = tcp.seq_number.0.wrapping_add(len);
        }
    }

    /// How many sockets B's application holds (the first connection, then
    /// those accepted and opened).
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// The connections B opened that the fuzzer has seen a SYN of.
    pub fn opened(&self) -> usize {
        self.active.len()
    }

    /// B's socket `which` (modulo how many it has).
    fn sock(&self, which: u8) -> SocketHandle {
        self.socks[usize::from(which) % self.socks.len()]
    }

    fn put(&mut self, frame: Vec<u8>) {
        self.dev.rx.push_back(frame);
        self.poll(0);
    }

    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Segment {
                target,
                flags,
                seq,
                ack,
                window,
                options,
                options_len,
                payload,
                urgent,
                bad_checksum,
            } => {
                let (src_port, dst_port) = match *target {
                    Target::Conn => (self.a_port, PORT),
                    Target::Listener(p) => (p | 1, PORT),
                    Target::Closed(p) => (p, if p == PORT { PORT + 1 } else { p }),
                    Target::Active(n) if !self.active.is_empty() => {
                        self.active[usize::from(n) % self.active.len()]
                    }
                    Target::Active(_) => (self.a_port, PORT),
                };
                let (acked, next) = self
                    .said
                    .get(&(src_port, dst_port))
                    .copied()
                    .unwrap_or((0, 0));
                let seq = acked.wrapping_add(*seq as u32);
                let ack = next.wrapping_add(*ack as u32);
                let frame = tcp_bytes(
                    src_port,
                    dst_port,
                    seq,
                    ack,
                    *flags,
                    *window,
                    *urgent,
                    &options[..usize::from(*options_len).min(40)],
                    usize::from(*payload).min(1460),
                    *bad_checksum,
                );
                self.put(frame);
            }
            Op::Ip { protocol, body } => {
                let mut body = body.clone();
                body.truncate(1480);
                let len = body.len();
                let frame = ipv4_frame(
                    A_MAC,
                    B_MAC,
                    A_IP,
                    B_IP,
                    IpProtocol::from(*protocol),
                    |buf| buf.copy_from_slice(&body),
                    len,
                );
                self.put(frame);
            }
            Op::Arp {
                request,
                sender_last,
                target_last,
                mac_last,
            } => {
                let sender = Ipv4Addr::new(10, 77, 0, *sender_last);
                let mac = EthernetAddress([0x02, 0, 0, 0, 0, *mac_last]);
                let repr = ArpRepr::EthernetIpv4 {
                    operation: if *request {
                        ArpOperation::Request
                    } else {
                        ArpOperation::Reply
                    },
                    source_hardware_addr: mac,
                    source_protocol_addr: sender,
                    target_hardware_addr: B_MAC,
                    target_protocol_addr: Ipv4Addr::new(10, 77, 0, *target_last),
                };
                self.put(arp_frame(mac, B_MAC, &repr));
            }
            Op::Raw(bytes) => {
                let mut bytes = bytes.clone();
                bytes.truncate(1600);
                self.put(bytes);
            }
            Op::Advance { ms } => self.poll(u64::from(*ms)),
            Op::Connect { port } => {
                if self.socks.len() < SOCKETS_MAX {
                    if let Ok(h) = self.b.tcp.socket() {
                        let to = SocketAddrV4::new(A_IP, (*port).max(1));
                        match self.b.tcp.connect(h, self.now, to) {
                            Ok(()) => self.socks.push(h),
                            Err(_) => {
                                let _ = self.b.tcp.close(h, self.now);
                            }
                        }
                    }
                }
                self.poll(0);
            }
            Op::Accept => {
                if self.socks.len() < SOCKETS_MAX {
                    if let Ok((h, _)) = self.b.tcp.accept(self.listener) {
                        self.socks.push(h);
                        self.accepted += 1;
                    }
                }
                self.poll(0);
            }
            Op::Read { which, len } => {
                let mut buf = vec![0u8; usize::from(*len)];
                let _ = self.b.tcp.recv(self.sock(*which), &mut buf);
                self.poll(0);
            }
            Op::Write { which, len } => {
                let data = vec![0x5a; usize::from(*len)];
                let _ = self.b.tcp.send(self.sock(*which), &data);
                self.poll(0);
            }
            Op::Shutdown { which } => {
                let h = self.sock(*which);
                let _ = self.b.tcp.shutdown(h, flowlane::api::Shutdown::Write);
                self.poll(0);
            }
            Op::Close { which } => {
                let _ = self.b.tcp.close(self.sock(*which), self.now);
                self.poll(0);
            }
        }
    }
}

/// A TCP segment from A with raw option bytes, as a frame; checksums right
/// unless `bad_checksum`.
#[allow(clippy::too_many_arguments)]
fn tcp_bytes(
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    options: &[u8],
    payload: usize,
    bad_checksum: bool,
) -> Vec<u8> {
    let mut opts = options[..options.len().min(40)].to_vec();
    opts.resize(opts.len().div_ceil(4) * 4, 0);
    let header = 20 + opts.len();
    let mut seg = vec![0u8; header + payload];
    seg[0..2].copy_from_slice(&src_port.to_be_bytes());
    seg[2..4].copy_from_slice(&dst_port.to_be_bytes());
    seg[4..8].copy_from_slice(&seq.to_be_bytes());
    seg[8..12].copy_from_slice(&ack.to_be_bytes());
    seg[12] = ((header / 4) as u8) << 4;
    seg[13] = flags;
    seg[14..16].copy_from_slice(&window.to_be_bytes());
    seg[18..20].copy_from_slice(&urgent.to_be_bytes());
    seg[20..header].copy_from_slice(&opts);
    for (i, b) in seg[header..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let pseudo = pseudo_header(A_IP, B_IP, 6, seg.len());
    let sum = internet_checksum(&[&pseudo, &seg]) ^ u16::from(bad_checksum);
    seg[16..18].copy_from_slice(&sum.to_be_bytes());
    let len = seg.len();
    ipv4_frame(
        A_MAC,
        B_MAC,
        A_IP,
        B_IP,
        IpProtocol::Tcp,
        |buf| buf.copy_from_slice(&seg),
        len,
    )
}

/// Runs one input: a fresh world, every op in turn.
pub fn run(ops: &[Op]) -> World {
    let mut w = World::new();
    for op in ops.iter().take(256) {
        w.apply(op);
    }
    // Whatever state it is in, B can still be driven to the end of its
    // timers without a fault.
    w.poll(200_000);
    w
}

/// The `wire` target: every parser on `bytes`, layer by layer.
pub fn wire(bytes: &[u8]) {
    super::wirekit::exercise(bytes);
}
