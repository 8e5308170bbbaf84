//! Wire-format micro benches, each beside a peer in the same group so the
//! report reads as a ratio (`examples/bench_report.rs` prints them):
//!
//! - `wire_checksum`: `wire::checksum::data` over 20 B (an IPv4 header),
//!   64 B, 1460 B (a full MSS) and 9000 B (a jumbo frame), against a plain
//!   RFC 1071 loop over 16-bit big-endian words (`reference`) and smoltcp
//!   0.14's `wire::checksum::data`. Throughput in bytes.
//! - `wire_tcp_parse`: one received Ethernet + IPv4 + TCP frame, as the
//!   interface reads it: Ethernet header, IPv4 header with its checksum
//!   verified, TCP header and options with the checksum over the pseudo
//!   header and segment verified. Two frames: `timestamps` (NOP, NOP, TS and
//!   64 B of payload, an established-state data segment) and `sack` (a pure
//!   ACK with NOP, NOP, TS, NOP, NOP, SACK of two blocks, Linux's layout).
//!   smoltcp 0.14 parses the same bytes with every checksum verified.
//! - `wire_tcp_emit`: one Ethernet + IPv4 + TCP frame written into a reused
//!   buffer, ACK|PSH with the timestamp option and 64 B of payload, both
//!   checksums computed.
//!
//! One iteration is one checksum, one frame parsed or one frame written.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowlane::wire::{
    checksum, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire as sm;

const CHECKSUM_SIZES: [usize; 4] = [20, 64, 1460, 9000];
const PAYLOAD: [u8; 64] = [0x5a; 64];
const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 90, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 90, 1);

/// RFC 1071 §1 as most code writes it: 16-bit big-endian words added into
/// a wide accumulator, the odd byte padded with zero, folded once.
fn reference_checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [last] = words.remainder() {
        sum += (*last as u64) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn bench_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire_checksum");
    for size in CHECKSUM_SIZES {
        // Deterministic, non-trivial bytes (no all-zero shortcut).
        let data: Vec<u8> = (0..size)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
            .collect();
        let expected = reference_checksum(&data);
        assert_eq!(checksum::data(&data), expected, "{size} B");
        assert_eq!(sm::checksum::data(&data), expected, "{size} B");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("flowlane", size), &data, |b, d| {
            b.iter(|| checksum::data(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("reference", size), &data, |b, d| {
            b.iter(|| reference_checksum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("smoltcp", size), &data, |b, d| {
            b.iter(|| sm::checksum::data(black_box(d)))
        });
    }
    g.finish();
}

/// An established-state segment from the client: ACK (| PSH with data),
/// the timestamp option, and `sack` blocks if any.
fn segment<'a>(payload: &'a [u8], sack: &[(u32, u32)]) -> TcpRepr<'a> {
    let mut options = TcpOptions {
        timestamp: Some(TcpTimestamp {
            tsval: 0x5bd7_4aba,
            tsecr: 0x6985_69eb,
        }),
        ..TcpOptions::default()
    };
    for (i, &(l, r)) in sack.iter().enumerate() {
        options.sack_blocks[i] = (SeqNumber(l), SeqNumber(r));
    }
    options.sack_count = sack.len() as u8;
    let flags = if payload.is_empty() {
        TcpFlags::ACK
    } else {
        TcpFlags::ACK | TcpFlags::PSH
    };
    TcpRepr {
        src_port: 47210,
        dst_port: 7,
        seq_number: SeqNumber(0x6dd0_ba10),
        ack_number: SeqNumber(0x3c20_23f7),
        flags,
        window_len: 502,
        urgent_pointer: 0,
        options,
        payload,
    }
}

/// Writes `tcp` as a whole frame with flowlane's emitters, as the
/// interface's send path does. Returns the frame length.
fn emit_frame(tcp: &TcpRepr, buf: &mut [u8]) -> usize {
    let eth = EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: SERVER_MAC,
        ethertype: EtherType::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: CLIENT,
        dst_addr: SERVER,
        protocol: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let len = eth.buffer_len() + ip.buffer_len() + ip.payload_len;
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..len]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet);
    let mut seg = TcpPacket::new_unchecked(packet.payload_mut());
    tcp.emit(&mut seg, CLIENT, SERVER, true);
    len
}

/// What the benches return from a parse, so nothing is optimised away.
type Parsed = (u32, u32, usize, u32);

/// flowlane's receive path: the same calls, in the same order, as
/// `Interface`'s (`src/iface/mod.rs`), with checksum verification on.
fn flowlane_parse(frame: &[u8]) -> Option<Parsed> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let eth_repr = EthernetRepr::parse(&eth).ok()?;
    if eth_repr.ethertype != EtherType::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet).ok()?;
    if ip.protocol != IpProtocol::Tcp {
        return None;
    }
    let seg = TcpPacket::new_checked(packet.payload()).ok()?;
    let tcp = TcpRepr::parse(&seg, ip.src_addr, ip.dst_addr, true).ok()?;
    let sacked = tcp
        .options
        .sack_blocks()
        .iter()
        .map(|b| b.1 .0)
        .sum::<u32>();
    Some((
        tcp.seq_number.0,
        tcp.options.timestamp.map_or(0, |t| t.tsval),
        tcp.payload.len(),
        sacked,
    ))
}

/// smoltcp 0.14's receive path for the same frame, every checksum verified
/// (`ChecksumCapabilities::default()`).
fn smoltcp_parse(frame: &[u8], caps: &ChecksumCapabilities) -> Option<Parsed> {
    let eth = sm::EthernetFrame::new_checked(frame).ok()?;
    let eth_repr = sm::EthernetRepr::parse(&eth).ok()?;
    if eth_repr.ethertype != sm::EthernetProtocol::Ipv4 {
        return None;
    }
    let packet = sm::Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip = sm::Ipv4Repr::parse(&packet, caps).ok()?;
    if ip.next_header != sm::IpProtocol::Tcp {
        return None;
    }
    let seg = sm::TcpPacket::new_checked(packet.payload()).ok()?;
    let (src, dst) = (
        sm::IpAddress::Ipv4(ip.src_addr),
        sm::IpAddress::Ipv4(ip.dst_addr),
    );
    let tcp = sm::TcpRepr::parse(&seg, &src, &dst, caps).ok()?;
    let sacked = tcp.sack_ranges.iter().flatten().map(|r| r.1).sum::<u32>();
    Some((
        tcp.seq_number.0 as u32,
        tcp.timestamp.map_or(0, |t| t.tsval),
        tcp.payload.len(),
        sacked,
    ))
}

fn bench_parse(c: &mut Criterion) {
    let caps = ChecksumCapabilities::default();
    let frames = [
        ("timestamps", segment(&PAYLOAD, &[])),
        (
            "sack",
            segment(
                &[],
                &[(0x3c20_299f, 0x3c20_2f47), (0x3c20_3a00, 0x3c20_4000)],
            ),
        ),
    ];
    let mut g = c.benchmark_group("wire_tcp_parse");
    g.throughput(Throughput::Elements(1));
    for (name, repr) in frames {
        let mut buf = [0u8; 1514];
        let len = emit_frame(&repr, &mut buf);
        let frame = buf[..len].to_vec();
        // Both stacks read the frame, and read the same values.
        let ours = flowlane_parse(&frame).expect("flowlane parses its own frame");
        assert_eq!(
            ours,
            smoltcp_parse(&frame, &caps).expect("smoltcp parses it")
        );
        assert_eq!(ours.2, repr.payload.len());
        g.bench_with_input(BenchmarkId::new("flowlane", name), &frame, |b, f| {
            b.iter(|| flowlane_parse(black_box(f)))
        });
        g.bench_with_input(BenchmarkId::new("smoltcp", name), &frame, |b, f| {
            b.iter(|| smoltcp_parse(black_box(f), &caps))
        });
    }
    g.finish();
}

/// smoltcp 0.14's send path for the same frame.
fn smoltcp_emit(tcp: &sm::TcpRepr, buf: &mut [u8], caps: &ChecksumCapabilities) -> usize {
    let eth = sm::EthernetRepr {
        src_addr: sm::EthernetAddress(CLIENT_MAC.0),
        dst_addr: sm::EthernetAddress(SERVER_MAC.0),
        ethertype: sm::EthernetProtocol::Ipv4,
    };
    let ip = sm::Ipv4Repr {
        src_addr: CLIENT,
        dst_addr: SERVER,
        next_header: sm::IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let len = eth.buffer_len() + ip.buffer_len() + ip.payload_len;
    let mut frame = sm::EthernetFrame::new_unchecked(&mut buf[..len]);
    eth.emit(&mut frame);
    let mut packet = sm::Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, caps);
    let mut seg = sm::TcpPacket::new_unchecked(packet.payload_mut());
    tcp.emit(
        &mut seg,
        &sm::IpAddress::Ipv4(CLIENT),
        &sm::IpAddress::Ipv4(SERVER),
        caps,
    );
    len
}

fn bench_emit(c: &mut Criterion) {
    let caps = ChecksumCapabilities::default();
    let ours = segment(&PAYLOAD, &[]);
    let theirs = sm::TcpRepr {
        src_port: ours.src_port,
        dst_port: ours.dst_port,
        control: sm::TcpControl::Psh,
        seq_number: sm::TcpSeqNumber(ours.seq_number.0 as i32),
        ack_number: Some(sm::TcpSeqNumber(ours.ack_number.0 as i32)),
        window_len: ours.window_len,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: ours
            .options
            .timestamp
            .map(|t| sm::TcpTimestampRepr::new(t.tsval, t.tsecr)),
        payload: &PAYLOAD,
    };
    // Both write a frame of the same length that both parse to the same
    // values (the option layouts differ: NOP,NOP,TS against TS,EOL,EOL).
    let (mut a, mut b) = ([0u8; 1514], [0u8; 1514]);
    let la = emit_frame(&ours, &mut a);
    let lb = smoltcp_emit(&theirs, &mut b, &caps);
    assert_eq!(la, lb);
    let parsed = flowlane_parse(&a[..la]).expect("flowlane's frame parses");
    assert_eq!(Some(parsed), flowlane_parse(&b[..lb]));
    assert_eq!(Some(parsed), smoltcp_parse(&a[..la], &caps));

    let mut g = c.benchmark_group("wire_tcp_emit");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("flowlane", "timestamps_64B"), |bch| {
        let mut buf = [0u8; 1514];
        bch.iter(|| {
            let len = emit_frame(black_box(&ours), &mut buf);
            black_box(&buf[..len]);
        })
    });
    g.bench_function(BenchmarkId::new("smoltcp", "timestamps_64B"), |bch| {
        let mut buf = [0u8; 1514];
        bch.iter(|| {
            let len = smoltcp_emit(black_box(&theirs), &mut buf, &caps);
            black_box(&buf[..len]);
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_checksum, bench_parse, bench_emit
}
criterion_main!(benches);
