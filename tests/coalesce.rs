//! Receive coalescing (`InterfaceConfig::coalesce`, Linux's GRO): in-order
//! data segments of one connection that arrive in one receive burst go
//! through TCP together. It must change nothing TCP does: the differential
//! property below feeds the same bursts (in order, with gaps, repeats,
//! PSH, FIN, old and new ACKs, window and timestamp changes, SACK blocks)
//! to a stack with coalescing and one without, and requires the same
//! frames out, byte for byte, the same bytes delivered, the same state and
//! the same counters (all but the count of fast-path segments' runs).

mod framekit;

use core::net::Ipv4Addr;

use flowlane::api::{SocketHandle, Stack, StackConfig, State};
use flowlane::time::{Duration, Instant};
use flowlane::wire::{EthernetAddress, SeqNumber, TcpFlags, TcpOptions, TcpRepr, TcpTimestamp};
use framekit::{listen, parse_tcp, segment, sha, tcp_frame, QueueDevice};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PEER_PORT: u16 = 40000;
/// The peer's ISN: its first data byte is sequence number `PEER_ISS + 1`.
const PEER_ISS: u32 = 1000;
/// The peer's TSval on the handshake's segments.
const PEER_TS: u32 = 100;
/// Bytes of ours in flight to the peer when the bursts start, so that the
/// peer's segments can acknowledge some of them: two full segments
/// (Nagle holds back a partial one).
const OURS_IN_FLIGHT: usize = 2 * 1448;

/// The peer's byte at stream offset `at` (a repeat carries the same bytes).
fn peer_byte(at: usize) -> u8 {
    (at.wrapping_mul(7) + 3) as u8
}

/// A stack with a connection accepted from the peer (window scale, SACK,
/// timestamps), `OURS_IN_FLIGHT` bytes of ours sent and not yet
/// acknowledged.
struct Server {
    stack: Stack,
    dev: QueueDevice,
    now: Instant,
    conn: SocketHandle,
    /// Our first data byte's sequence number (ISS + 1).
    our_start: u32,
    /// Our TSval on the SYN-ACK (what the peer echoes).
    our_ts: u32,
}

impl Server {
    fn new(coalesce: bool) -> Server {
        let mut config = StackConfig::new(OUR_MAC, OUR_IP, 24);
        config.iface.coalesce = coalesce;
        let mut stack = Stack::new(config);
        stack
            .iface
            .add_neighbor(PEER_IP, PEER_MAC, Instant::FAR_FUTURE);
        let listener = listen(&mut stack, 80, 4);
        let mut s = Server {
            stack,
            dev: QueueDevice::default(),
            now: Instant::ZERO,
            conn: listener,
            our_start: 0,
            our_ts: 0,
        };
        let mut syn = segment(PEER_PORT, 80, PEER_ISS, 0, TcpFlags::SYN);
        syn.options = TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some(TcpTimestamp {
                tsval: PEER_TS,
                tsecr: 0,
            }),
            ..TcpOptions::default()
        };
        let out = s.burst(&[syn]);
        let (_, _, syn_ack) = parse_tcp(&out[0]).expect("a SYN-ACK");
        assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK);
        s.our_start = syn_ack.seq_number.0.wrapping_add(1);
        s.our_ts = syn_ack.options.timestamp.expect("timestamps on").tsval;
        let ack = s.peer_segment(
            PEER_ISS + 1,
            &[],
            TcpFlags::ACK,
            s.our_start,
            65535,
            PEER_TS,
        );
        assert!(s.burst(&[ack]).is_empty());
        let (conn, _) = s.stack.tcp.accept(listener).expect("accepted");
        s.conn = conn;
        assert_eq!(s.stack.tcp.state(conn), Ok(State::Established));
        let ours = vec![0x5a; OURS_IN_FLIGHT];
        assert_eq!(s.stack.tcp.send(conn, &ours), Ok(OURS_IN_FLIGHT));
        let sent = s.poll();
        assert_eq!(sent.len(), 2);
        s
    }

    fn peer_segment<'a>(
        &self,
        seq: u32,
        payload: &'a [u8],
        flags: TcpFlags,
        ack: u32,
        window: u16,
        tsval: u32,
    ) -> TcpRepr<'a> {
        let mut seg = segment(PEER_PORT, 80, seq, ack, flags);
        seg.window_len = window;
        seg.payload = payload;
        seg.options.timestamp = Some(TcpTimestamp {
            tsval,
            tsecr: self.our_ts,
        });
        seg
    }

    fn poll(&mut self) -> Vec<Vec<u8>> {
        self.stack.poll(self.now, &mut self.dev);
        std::mem::take(&mut self.dev.tx)
    }

    /// Delivers `segments` as one receive burst; returns what went out.
    fn burst(&mut self, segments: &[TcpRepr<'_>]) -> Vec<Vec<u8>> {
        for seg in segments {
            self.dev
                .rx
                .push_back(tcp_frame(PEER_MAC, OUR_MAC, PEER_IP, OUR_IP, seg));
        }
        self.poll()
    }

    /// Polls at every deadline up to `until`; returns the frames sent.
    fn run_until(&mut self, until: Instant) -> Vec<Vec<u8>> {
        framekit::poll_until(&mut self.stack, &mut self.dev, &mut self.now, until)
            .into_iter()
            .map(|(_, f)| f)
            .collect()
    }

    /// Everything readable now.
    fn read_all(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.stack.tcp.recv(self.conn, &mut buf) {
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        data
    }
}

/// One segment of a generated burst, as offsets into the peer's stream.
#[derive(Clone, Debug)]
struct Op {
    /// Where it starts relative to the end of the previous one: 0 in
    /// order, positive a gap, negative a repeat.
    shift: i32,
    len: usize,
    psh: bool,
    fin: bool,
    /// Which ACK: 0..=3 acknowledge our data in steps of 900 bytes, 4 an
    /// old one, 5 one for data never sent.
    ack: u8,
    small_window: bool,
    /// 0 the handshake's TSval, 1 a newer one, 2 an older one (PAWS).
    ts: u8,
    sack: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        prop_oneof![6 => Just(0i32), 1 => 1i32..600, 1 => -600i32..0],
        1usize..1449,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.03),
        prop_oneof![6 => Just(0u8), 3 => 1u8..4, 1 => 4u8..6],
        prop::bool::weighted(0.1),
        prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
        prop::bool::weighted(0.05),
    )
        .prop_map(|(shift, len, psh, fin, ack, small_window, ts, sack)| Op {
            shift,
            len,
            psh,
            fin,
            ack,
            small_window,
            ts,
            sack,
        })
}

/// The peer's payloads for `ops`, with where each starts in its stream.
fn payloads(ops: &[Op]) -> Vec<(usize, Vec<u8>)> {
    let mut at = 0usize;
    ops.iter()
        .map(|o| {
            let start = (at as i64 + o.shift as i64).max(0) as usize;
            at = start + o.len;
            (start, (start..at).map(peer_byte).collect())
        })
        .collect()
}

fn segments<'a>(s: &Server, ops: &[Op], payloads: &'a [(usize, Vec<u8>)]) -> Vec<TcpRepr<'a>> {
    ops.iter()
        .zip(payloads)
        .map(|(o, (start, payload))| {
            let ack = match o.ack {
                k @ 0..=3 => s.our_start.wrapping_add(900 * k as u32),
                4 => s.our_start.wrapping_sub(1),
                _ => s.our_start.wrapping_add(OURS_IN_FLIGHT as u32 + 500),
            };
            let mut flags = TcpFlags::ACK;
            if o.psh {
                flags = flags | TcpFlags::PSH;
            }
            if o.fin {
                flags = flags | TcpFlags::FIN;
            }
            let window = if o.small_window { 1000 } else { 65535 };
            let tsval = [PEER_TS, PEER_TS + 1, PEER_TS - 1][o.ts as usize];
            let seq = (PEER_ISS + 1).wrapping_add(*start as u32);
            let mut seg = s.peer_segment(seq, payload, flags, ack, window, tsval);
            if o.sack {
                seg.options.sack_count = 1;
                seg.options.sack_blocks[0] = (SeqNumber(s.our_start), SeqNumber(s.our_start + 500));
            }
            seg
        })
        .collect()
}

/// What a burst left behind, for comparison.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    delivered: Vec<u8>,
    state: Result<State, flowlane::api::SocketError>,
    info: Option<flowlane::tcp::TcpInfo>,
    endpoint: flowlane::tcp::EndpointCounters,
}

/// The outcome of `bursts`, and how many segments coalesced.
fn run(coalesce: bool, bursts: &[Vec<Op>]) -> (Outcome, u64) {
    let mut s = Server::new(coalesce);
    let mut frames = Vec::new();
    let mut delivered = Vec::new();
    for ops in bursts {
        let p = payloads(ops);
        let segs = segments(&s, ops, &p);
        frames.extend(s.burst(&segs));
        delivered.extend(s.read_all());
        let until = s.now + Duration::from_millis(50);
        frames.extend(s.run_until(until));
    }
    let until = s.now + Duration::from_secs(2);
    frames.extend(s.run_until(until));
    delivered.extend(s.read_all());
    let info = s.stack.tcp.info(s.conn).ok().map(|mut i| {
        // How many segments took the fast path is the one thing that may
        // differ: coalescing runs it once for several.
        i.counters.fast_path = 0;
        i
    });
    let outcome = Outcome {
        frames,
        delivered,
        state: s.stack.tcp.state(s.conn),
        info,
        endpoint: *s.stack.tcp.counters(),
    };
    (outcome, s.stack.iface.counters().coalesced)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn coalescing_changes_nothing_tcp_sends_delivers_or_counts(
        bursts in prop::collection::vec(prop::collection::vec(op(), 1..24), 1..4)
    ) {
        let (with, _) = run(true, &bursts);
        let (without, none) = run(false, &bursts);
        prop_assert_eq!(none, 0);
        prop_assert_eq!(with, without);
    }
}

#[test]
fn a_burst_of_in_order_segments_goes_through_tcp_once_and_is_acknowledged_once() {
    let mut s = Server::new(true);
    let data: Vec<u8> = (0..8 * 1448).map(peer_byte).collect();
    let ack = s.our_start.wrapping_add(OURS_IN_FLIGHT as u32);
    let segs: Vec<TcpRepr<'_>> = data
        .chunks(1448)
        .enumerate()
        .map(|(i, p)| {
            let flags = if i == 7 {
                TcpFlags::ACK | TcpFlags::PSH
            } else {
                TcpFlags::ACK
            };
            s.peer_segment(
                PEER_ISS + 1 + (i * 1448) as u32,
                p,
                flags,
                ack,
                65535,
                PEER_TS,
            )
        })
        .collect();
    let fast_before = s.stack.tcp.info(s.conn).unwrap().counters.fast_path;
    let out = s.burst(&segs);
    assert_eq!(s.stack.iface.counters().coalesced, 8);
    let info = s.stack.tcp.info(s.conn).unwrap();
    assert_eq!(
        info.counters.fast_path - fast_before,
        8,
        "every segment counted"
    );
    assert_eq!(info.bytes_in_flight, 0, "their ACK took ours");
    // One ACK for all of it (eight full segments are past the every-second
    // segment rule), with the window of what is left.
    assert_eq!(out.len(), 1);
    let (_, _, a) = parse_tcp(&out[0]).unwrap();
    assert_eq!(a.flags, TcpFlags::ACK);
    assert_eq!(a.ack_number, SeqNumber(PEER_ISS + 1 + data.len() as u32));
    assert!(a.payload.is_empty());
    assert_eq!(sha(&s.read_all()), sha(&data));
}

#[test]
fn a_fin_after_a_run_is_processed_after_the_run() {
    let mut s = Server::new(true);
    let data: Vec<u8> = (0..3000).map(peer_byte).collect();
    let ack = s.our_start;
    let mut segs: Vec<TcpRepr<'_>> = data
        .chunks(1000)
        .enumerate()
        .map(|(i, p)| {
            s.peer_segment(
                PEER_ISS + 1 + (i * 1000) as u32,
                p,
                TcpFlags::ACK,
                ack,
                65535,
                PEER_TS,
            )
        })
        .collect();
    segs.push(s.peer_segment(
        PEER_ISS + 1 + 3000,
        &[],
        TcpFlags::ACK | TcpFlags::FIN,
        ack,
        65535,
        PEER_TS,
    ));
    let out = s.burst(&segs);
    assert_eq!(s.stack.iface.counters().coalesced, 3);
    assert_eq!(s.stack.tcp.state(s.conn), Ok(State::CloseWait));
    let (_, _, a) = parse_tcp(out.last().unwrap()).unwrap();
    assert_eq!(
        a.ack_number,
        SeqNumber(PEER_ISS + 1 + 3000 + 1),
        "the FIN acknowledged"
    );
    assert_eq!(s.read_all(), data);
}
