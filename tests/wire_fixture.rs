//! The wire parsers against a real Linux capture (`shared/fixtures`): two TCP
//! echo connections over a veth with 3% random loss, written by the Linux
//! stack. It is independent ground truth for parsing, checksums, option
//! decoding and our emit layout; see `shared/fixtures/README.md`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use flowlane::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, IpProtocol,
    Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/linux-echo-loss.pcap"
);

/// One captured frame.
struct Record {
    /// Capture time, microseconds since the epoch.
    micros: u64,
    data: Vec<u8>,
}

/// A minimal libpcap reader: 24-byte global header, 16-byte record headers,
/// either byte order, microsecond (0xa1b2c3d4) or nanosecond (0xa1b23c4d)
/// magic, Ethernet link type only.
fn read_pcap(bytes: &[u8]) -> Vec<Record> {
    assert!(bytes.len() >= 24, "pcap shorter than its global header");
    let magic_le = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let magic_be = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
    let (big_endian, nanos) = match (magic_le, magic_be) {
        (0xa1b2c3d4, _) => (false, false),
        (0xa1b23c4d, _) => (false, true),
        (_, 0xa1b2c3d4) => (true, false),
        (_, 0xa1b23c4d) => (true, true),
        _ => panic!("not a libpcap file (magic {magic_le:#010x})"),
    };
    let u32_at = |b: &[u8], at: usize| {
        let raw: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        }
    };
    let link_type = u32_at(bytes, 20);
    assert_eq!(link_type, 1, "link type is not Ethernet");

    let mut records = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        assert!(at + 16 <= bytes.len(), "record header cut at byte {at}");
        let secs = u32_at(bytes, at) as u64;
        let frac = u32_at(bytes, at + 4) as u64;
        let incl_len = u32_at(bytes, at + 8) as usize;
        let orig_len = u32_at(bytes, at + 12) as usize;
        assert_eq!(
            incl_len,
            orig_len,
            "frame {} was cut by the snap length",
            records.len()
        );
        at += 16;
        assert!(at + incl_len <= bytes.len(), "record data cut at byte {at}");
        let micros = secs * 1_000_000 + if nanos { frac / 1000 } else { frac };
        records.push(Record {
            micros,
            data: bytes[at..at + incl_len].to_vec(),
        });
        at += incl_len;
    }
    records
}

fn capture() -> Vec<Record> {
    let bytes = std::fs::read(FIXTURE)
        .unwrap_or_else(|e| panic!("fixture {FIXTURE} is required (CI has it): {e}"));
    read_pcap(&bytes)
}

/// A TCP segment of the capture, parsed.
struct Segment<'a> {
    frame: usize,
    src_addr: Ipv4Addr,
    dst_addr: Ipv4Addr,
    /// The whole TCP segment as captured.
    bytes: &'a [u8],
    repr: TcpRepr<'a>,
}

#[derive(Default)]
struct Census {
    ipv4: usize,
    arp_requests: usize,
    arp_replies: usize,
    other: usize,
}

/// Parses every frame through the public wire API, asserting it parses and
/// every checksum verifies; returns the TCP segments and a census.
fn parse_all(records: &[Record]) -> (Vec<Segment<'_>>, Census) {
    let mut segments = Vec::new();
    let mut census = Census::default();
    for (i, record) in records.iter().enumerate() {
        let frame = EthernetFrame::new_checked(&record.data[..])
            .unwrap_or_else(|e| panic!("frame {i}: Ethernet: {e}"));
        let eth = EthernetRepr::parse(&frame).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        match eth.ethertype {
            EtherType::Ipv4 => {
                census.ipv4 += 1;
                let packet = Ipv4Packet::new_checked(frame.payload())
                    .unwrap_or_else(|e| panic!("frame {i}: IPv4: {e}"));
                assert!(packet.verify_checksum(), "frame {i}: IPv4 checksum");
                let ip =
                    Ipv4Repr::parse(&packet).unwrap_or_else(|e| panic!("frame {i}: IPv4: {e}"));
                assert_eq!(
                    ip.protocol,
                    IpProtocol::Tcp,
                    "frame {i}: only TCP over IPv4"
                );
                let bytes = packet.payload();
                assert_eq!(bytes.len(), ip.payload_len);
                let tcp =
                    TcpPacket::new_checked(bytes).unwrap_or_else(|e| panic!("frame {i}: TCP: {e}"));
                assert!(
                    tcp.verify_checksum(ip.src_addr, ip.dst_addr),
                    "frame {i}: TCP checksum"
                );
                let repr = TcpRepr::parse(&tcp, ip.src_addr, ip.dst_addr, true)
                    .unwrap_or_else(|e| panic!("frame {i}: TCP: {e}"));
                segments.push(Segment {
                    frame: i,
                    src_addr: ip.src_addr,
                    dst_addr: ip.dst_addr,
                    bytes,
                    repr,
                });
            }
            EtherType::Arp => {
                let packet = ArpPacket::new_checked(frame.payload())
                    .unwrap_or_else(|e| panic!("frame {i}: ARP: {e}"));
                let ArpRepr::EthernetIpv4 { operation, .. } =
                    ArpRepr::parse(&packet).unwrap_or_else(|e| panic!("frame {i}: ARP: {e}"));
                match operation {
                    ArpOperation::Request => census.arp_requests += 1,
                    ArpOperation::Reply => census.arp_replies += 1,
                    other => panic!("frame {i}: ARP operation {other:?}"),
                }
            }
            _ => census.other += 1,
        }
    }
    (segments, census)
}

#[test]
fn every_frame_parses_and_every_checksum_verifies() {
    let records = capture();
    assert_eq!(records.len(), 527);
    assert!(
        records.windows(2).all(|w| w[0].micros <= w[1].micros),
        "timestamps ordered"
    );
    let (segments, census) = parse_all(&records);
    assert_eq!(census.ipv4, 514);
    assert_eq!(segments.len(), 514, "every IPv4 frame is TCP");
    assert_eq!((census.arp_requests, census.arp_replies), (1, 1));
    // IPv6 neighbour discovery and MLD.
    assert_eq!(census.other, 11);
}

#[test]
fn segment_counts_match_the_fixture_readme() {
    let records = capture();
    let (segments, _) = parse_all(&records);
    let count = |pred: &dyn Fn(&TcpRepr) -> bool| segments.iter().filter(|s| pred(&s.repr)).count();

    assert_eq!(count(&|r| r.flags.syn() && !r.flags.ack()), 3, "SYNs");
    assert_eq!(count(&|r| r.flags.syn() && r.flags.ack()), 4, "SYN-ACKs");
    // The README's "474 pure ACKs" counts segments whose only flag is ACK,
    // data-bearing ones included; 78 of them carry no payload.
    assert_eq!(count(&|r| r.flags == TcpFlags::ACK), 474, "ACK-only flags");
    assert_eq!(
        count(&|r| r.flags == TcpFlags::ACK && r.payload.is_empty()),
        78,
        "bare ACKs"
    );
    assert_eq!(
        count(&|r| r.flags == TcpFlags::ACK | TcpFlags::PSH),
        29,
        "PSH+ACK"
    );
    assert_eq!(count(&|r| r.flags.fin() && r.flags.ack()), 4, "FIN+ACKs");
    assert_eq!(count(&|r| r.flags.rst()), 0, "no resets");
    assert_eq!(
        count(&|r| r.options.sack_count > 0),
        82,
        "frames with SACK blocks"
    );
    assert_eq!(count(&|r| !r.payload.is_empty()), 426, "data segments");

    // Retransmitted data: a data segment starting below the highest sequence
    // number its sender had already sent. The README's "4 retransmitted data
    // segments" is 4 distinct segments; one of them was sent a third time,
    // so 5 frames are retransmissions.
    let mut highest: Vec<((Ipv4Addr, u16), SeqNumber)> = Vec::new();
    let mut retransmitted_frames = 0;
    let mut retransmitted = BTreeSet::new();
    for s in segments.iter().filter(|s| !s.repr.payload.is_empty()) {
        let key = (s.src_addr, s.repr.src_port);
        let end = s.repr.seq_number + s.repr.payload.len();
        match highest.iter_mut().find(|(k, _)| *k == key) {
            Some((_, high)) => {
                if s.repr.seq_number < *high {
                    retransmitted_frames += 1;
                    retransmitted.insert((key, s.repr.seq_number.0));
                }
                *high = (*high).max(end);
            }
            None => highest.push((key, end)),
        }
    }
    assert_eq!(retransmitted.len(), 4, "distinct retransmitted segments");
    assert_eq!(retransmitted_frames, 5, "retransmission frames");
}

#[test]
fn first_syn_carries_linux_options_in_linux_order() {
    let records = capture();
    let (segments, _) = parse_all(&records);
    let syn = segments
        .iter()
        .find(|s| s.repr.flags == TcpFlags::SYN)
        .expect("a SYN");
    assert_eq!(syn.src_addr, Ipv4Addr::new(10, 77, 90, 2));
    assert_eq!(syn.dst_addr, Ipv4Addr::new(10, 77, 90, 1));
    assert_eq!(syn.repr.dst_port, 7);
    let o = syn.repr.options;
    assert_eq!(o.mss, Some(1460));
    assert!(o.sack_permitted);
    assert!(o.timestamp.is_some_and(|ts| ts.tsval != 0 && ts.tsecr == 0));
    assert_eq!(o.window_scale, Some(10));
    assert_eq!(o.sack_count, 0);
    // MSS, SACK-permitted, Timestamps, NOP, WScale.
    let kinds = TcpPacket::new_checked(syn.bytes)
        .unwrap()
        .options()
        .to_vec();
    assert_eq!(
        [kinds[0], kinds[4], kinds[6], kinds[16], kinds[17]],
        [2, 4, 8, 1, 3]
    );
}

/// One direction of a connection, reassembled by sequence number.
#[derive(Default)]
struct Stream {
    /// Initial sequence number, from the SYN.
    isn: Option<SeqNumber>,
    /// Sequence number of the FIN, if one was sent.
    fin: Option<SeqNumber>,
    data: Vec<u8>,
    filled: Vec<bool>,
}

impl Stream {
    fn add(&mut self, frame: usize, repr: &TcpRepr) {
        if repr.flags.syn() {
            match self.isn {
                // A retransmitted SYN must carry the same ISN.
                Some(isn) => assert_eq!(isn, repr.seq_number, "frame {frame}: SYN ISN changed"),
                None => self.isn = Some(repr.seq_number),
            }
        }
        let isn = self
            .isn
            .unwrap_or_else(|| panic!("frame {frame}: data before SYN"));
        let first = repr.seq_number + repr.flags.syn() as usize;
        let offset = first.0.wrapping_sub(isn.0 + 1) as usize;
        assert!(offset < 1 << 30, "frame {frame}: data before the ISN");
        let end = offset + repr.payload.len();
        // Bare ACKs after the FIN sit one past the data; only bytes count.
        if !repr.payload.is_empty() && self.data.len() < end {
            self.data.resize(end, 0);
            self.filled.resize(end, false);
        }
        for (k, &byte) in repr.payload.iter().enumerate() {
            let at = offset + k;
            if self.filled[at] {
                // Retransmissions and overlaps must repeat the same bytes.
                assert_eq!(
                    self.data[at], byte,
                    "frame {frame}: retransmission differs at {at}"
                );
            }
            self.data[at] = byte;
            self.filled[at] = true;
        }
        if repr.flags.fin() {
            let fin = first + repr.payload.len();
            if let Some(previous) = self.fin {
                assert_eq!(previous, fin, "frame {frame}: FIN moved");
            }
            self.fin = Some(fin);
        }
    }

    /// The complete byte stream up to the FIN, asserting it has no holes.
    fn bytes(&self) -> &[u8] {
        let fin = self.fin.expect("stream closed with FIN");
        let len = fin - (self.isn.unwrap() + 1);
        assert_eq!(self.data.len(), len, "data past the FIN or missing tail");
        assert!(self.filled.iter().all(|&f| f), "hole in the stream");
        &self.data
    }
}

struct Connection {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    to_server: Stream,
    to_client: Stream,
}

#[test]
fn echo_streams_reassemble_and_match_in_both_directions() {
    let records = capture();
    let (segments, _) = parse_all(&records);
    let mut connections: Vec<Connection> = Vec::new();
    for s in &segments {
        let from = (s.src_addr, s.repr.src_port);
        let to = (s.dst_addr, s.repr.dst_port);
        let known = connections
            .iter()
            .position(|c| (c.client, c.server) == (from, to) || (c.client, c.server) == (to, from));
        let index = match known {
            Some(index) => index,
            None => {
                assert!(
                    s.repr.flags == TcpFlags::SYN,
                    "frame {}: connection starts without a SYN",
                    s.frame
                );
                connections.push(Connection {
                    client: from,
                    server: to,
                    to_server: Stream::default(),
                    to_client: Stream::default(),
                });
                connections.len() - 1
            }
        };
        let c = &mut connections[index];
        if from == c.client {
            c.to_server.add(s.frame, &s.repr);
        } else {
            c.to_client.add(s.frame, &s.repr);
        }
    }

    assert_eq!(connections.len(), 2);
    for (c, expected_len) in connections.iter().zip([300_000, 64]) {
        assert_eq!(c.server, (Ipv4Addr::new(10, 77, 90, 1), 7));
        let sent = c.to_server.bytes();
        let echoed = c.to_client.bytes();
        assert_eq!(sent.len(), expected_len, "client -> server bytes");
        assert_eq!(echoed.len(), expected_len, "server -> client bytes");
        assert!(sent == echoed, "echo differs from what was sent");
    }
}

#[test]
fn every_segment_repr_survives_emit_and_parse() {
    let records = capture();
    let (segments, _) = parse_all(&records);
    let mut byte_identical = 0;
    for s in &segments {
        let mut buf = vec![0u8; s.repr.buffer_len()];
        s.repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[..]),
            s.src_addr,
            s.dst_addr,
            true,
        );
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        let parsed = TcpRepr::parse(&packet, s.src_addr, s.dst_addr, true)
            .unwrap_or_else(|e| panic!("frame {}: re-parse: {e}", s.frame));
        assert_eq!(parsed, s.repr, "frame {}", s.frame);
        if buf == s.bytes {
            byte_identical += 1;
        }
    }
    // Our option layout is Linux's, so every segment comes back bit for bit,
    // checksum included.
    assert_eq!(byte_identical, segments.len());
}

#[test]
fn timestamps_echo_the_peer_after_the_handshake() {
    // A sanity check that TS values decode in the right byte order: every
    // non-SYN segment's TSecr is a TSval the peer sent earlier.
    let records = capture();
    let (segments, _) = parse_all(&records);
    let mut seen: Vec<(Ipv4Addr, u32)> = Vec::new();
    for s in &segments {
        let TcpOptions {
            timestamp: Some(TcpTimestamp { tsval, tsecr }),
            ..
        } = s.repr.options
        else {
            panic!(
                "frame {}: Linux sends timestamps on every segment here",
                s.frame
            );
        };
        if !s.repr.flags.syn() || s.repr.flags.ack() {
            assert!(
                seen.contains(&(s.dst_addr, tsecr)),
                "frame {}: TSecr {tsecr} never sent by the peer",
                s.frame
            );
        }
        seen.push((s.src_addr, tsval));
    }
}
