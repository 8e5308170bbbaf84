//! Property tests for the wire parsers: arbitrary and mutated input never
//! panics, and every valid Repr survives emit then parse unchanged.

use std::net::Ipv4Addr;

use flowlane::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions,
    TcpPacket, TcpRepr, TcpTimestamp,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

mod wirekit;
use wirekit::{emit_arp, exercise, exercise_arp, exercise_icmpv4, exercise_tcp};

// ---- strategies ------------------------------------------------------------

fn ipv4_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ethernet_addr() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

fn ethernet_repr() -> impl Strategy<Value = EthernetRepr> {
    (ethernet_addr(), ethernet_addr(), any::<u16>()).prop_map(|(src_addr, dst_addr, ethertype)| {
        EthernetRepr {
            src_addr,
            dst_addr,
            ethertype: EtherType::from(ethertype),
        }
    })
}

fn arp_repr() -> impl Strategy<Value = ArpRepr> {
    (
        any::<u16>(),
        ethernet_addr(),
        ipv4_addr(),
        ethernet_addr(),
        ipv4_addr(),
    )
        .prop_map(|(op, sha, spa, tha, tpa)| ArpRepr::EthernetIpv4 {
            operation: ArpOperation::from(op),
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: tha,
            target_protocol_addr: tpa,
        })
}

fn ipv4_repr(max_payload: usize) -> impl Strategy<Value = Ipv4Repr> {
    (
        ipv4_addr(),
        ipv4_addr(),
        any::<u8>(),
        0..=max_payload,
        any::<u8>(),
    )
        .prop_map(
            |(src_addr, dst_addr, protocol, payload_len, hop_limit)| Ipv4Repr {
                src_addr,
                dst_addr,
                protocol: IpProtocol::from(protocol),
                payload_len,
                hop_limit,
            },
        )
}

/// TCP options as this stack would send them: window scale within RFC 7323's
/// limit, unused SACK slots zero, and no more SACK blocks than fit.
fn tcp_options() -> impl Strategy<Value = TcpOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..=14),
        any::<bool>(),
        proptest::option::of(any::<(u32, u32)>()),
        vec(any::<(u32, u32)>(), 0..=4),
    )
        .prop_map(|(mss, window_scale, sack_permitted, ts, blocks)| {
            let mut options = TcpOptions {
                mss,
                window_scale,
                sack_permitted,
                timestamp: ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr }),
                ..TcpOptions::default()
            };
            options.sack_count = blocks.len() as u8;
            // Drop blocks that emit would drop (computed independently of
            // the library), so the Repr is one that round-trips exactly.
            let fits = |o: &TcpOptions| {
                let n = o.sack_count as usize;
                let mut fixed = 0;
                fixed += if o.mss.is_some() { 4 } else { 0 };
                fixed += if o.timestamp.is_some() {
                    12
                } else if o.sack_permitted {
                    4
                } else {
                    0
                };
                fixed += if o.window_scale.is_some() { 4 } else { 0 };
                n == 0 || fixed + 4 + 8 * n <= 40
            };
            while !fits(&options) {
                options.sack_count -= 1;
            }
            for (slot, &(l, r)) in options.sack_blocks.iter_mut().zip(&blocks) {
                *slot = (SeqNumber(l), SeqNumber(r));
            }
            for slot in &mut options.sack_blocks[options.sack_count as usize..] {
                *slot = Default::default();
            }
            options
        })
}

/// The owned parts of a TcpRepr (its payload is borrowed).
#[derive(Debug, Clone)]
struct TcpParts {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    options: TcpOptions,
    payload: Vec<u8>,
}

impl TcpParts {
    fn repr(&self) -> TcpRepr<'_> {
        let flags = TcpFlags(self.flags);
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq_number: SeqNumber(self.seq),
            // Without ACK the field is not part of the segment's meaning.
            ack_number: SeqNumber(if flags.ack() { self.ack } else { 0 }),
            flags,
            window_len: self.window,
            urgent_pointer: self.urgent,
            options: self.options,
            payload: &self.payload,
        }
    }
}

fn tcp_parts() -> impl Strategy<Value = TcpParts> {
    (
        (1u16.., 1u16.., any::<u32>(), any::<u32>(), any::<u8>()),
        (
            any::<u16>(),
            any::<u16>(),
            tcp_options(),
            vec(any::<u8>(), 0..200),
        ),
    )
        .prop_map(
            |((src_port, dst_port, seq, ack, flags), (window, urgent, options, payload))| {
                TcpParts {
                    src_port,
                    dst_port,
                    seq,
                    ack,
                    flags,
                    window,
                    urgent,
                    options,
                    payload,
                }
            },
        )
}

/// A complete Ethernet/IPv4/TCP frame as the stack would send it.
fn tcp_frame(parts: &TcpParts, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let tcp = parts.repr();
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: EtherType::Ipv4,
    };
    let mut buf = vec![0u8; 14 + 20 + tcp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet);
    tcp.emit(
        &mut TcpPacket::new_unchecked(packet.payload_mut()),
        src,
        dst,
        true,
    );
    buf
}

/// Applies bit flips, then optionally refills the IPv4 and TCP checksums (so
/// mutations reach the deeper parsers instead of stopping at the checksum),
/// then truncates.
fn mutate(mut frame: Vec<u8>, flips: &[(usize, u8)], refill: bool, keep: usize) -> Vec<u8> {
    for &(at, mask) in flips {
        let len = frame.len();
        frame[at % len] ^= mask;
    }
    if refill && frame.len() >= 14 + 20 {
        let ip = &mut frame[14..];
        let ihl = (ip[0] & 0x0f) as usize * 4;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        if (20..=ip.len()).contains(&ihl) {
            let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
            p.fill_checksum();
        }
        if (20..=ip.len()).contains(&total) && ihl >= 20 && ihl + 20 <= total {
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let tcp = &mut ip[ihl..total];
            let offset = (tcp[12] >> 4) as usize * 4;
            if (20..=tcp.len()).contains(&offset) {
                TcpPacket::new_unchecked(tcp).fill_checksum(src, dst);
            }
        }
    }
    frame.truncate(keep);
    frame
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Integration tests have no lib.rs beside them; keep regressions next
        // to this file.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

// Robustness: many cheap cases, like a short fuzzing run.
proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        exercise(&bytes);
    }

    #[test]
    fn random_option_areas_never_panic(bytes in vec(any::<u8>(), 0..48)) {
        if let Ok(options) = TcpOptions::parse(&bytes) {
            prop_assert!(options.sack_count <= 4);
            prop_assert!(options.window_scale.is_none_or(|s| s <= 14));
            prop_assert!(options.buffer_len() <= 40 && options.buffer_len() % 4 == 0);
        }
    }

    #[test]
    fn mutated_tcp_frames_never_panic(
        parts in tcp_parts(),
        flips in vec((any::<usize>(), 1u8..), 0..6),
        refill in any::<bool>(),
        keep in any::<usize>(),
    ) {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let frame = tcp_frame(&parts, src, dst);
        let keep = keep % (frame.len() + 1);
        let frame = mutate(frame, &flips, refill, keep);
        exercise(&frame);
        exercise_tcp(frame.get(34..).unwrap_or(&[]), src, dst);
    }

    #[test]
    fn mutated_arp_and_icmp_never_panic(
        arp in arp_repr(),
        data in vec(any::<u8>(), 8..40),
        flips in vec((any::<usize>(), 1u8..), 0..6),
        keep in any::<usize>(),
    ) {
        let mut bytes = emit_arp(&arp);
        for &(at, mask) in &flips {
            let len = bytes.len();
            bytes[at % len] ^= mask;
        }
        bytes.truncate(keep % (bytes.len() + 1));
        exercise_arp(&bytes);

        let header = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Tcp,
            payload_len: 40,
            hop_limit: 64,
        };
        let icmp = Icmpv4Repr::DstUnreachable { code: 3, header, data: &data };
        let mut bytes = vec![0u8; icmp.buffer_len()];
        icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes[..]));
        for &(at, mask) in &flips {
            let len = bytes.len();
            bytes[at % len] ^= mask;
        }
        Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes.truncate(keep % (bytes.len() + 1));
        exercise_icmpv4(&bytes);
    }

}

// Round trips of valid Reprs.
proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn ethernet_repr_round_trips(repr in ethernet_repr()) {
        let mut buf = [0u8; 14];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&frame), Ok(repr));
    }

    #[test]
    fn arp_repr_round_trips(repr in arp_repr()) {
        let buf = emit_arp(&repr);
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn ipv4_repr_round_trips(repr in ipv4_repr(1500)) {
        let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn icmpv4_repr_round_trips(
        kind in 0u8..3,
        ident in any::<u16>(),
        seq_no in any::<u16>(),
        code in any::<u8>(),
        header in ipv4_repr(1500),
        data in vec(any::<u8>(), 8..100),
    ) {
        let header = Ipv4Repr { payload_len: header.payload_len.max(data.len()), ..header };
        let repr = match kind {
            0 => Icmpv4Repr::EchoRequest { ident, seq_no, data: &data },
            1 => Icmpv4Repr::EchoReply { ident, seq_no, data: &data },
            _ => Icmpv4Repr::DstUnreachable { code, header, data: &data },
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn tcp_options_round_trip(options in tcp_options()) {
        let mut buf = [0xffu8; 40];
        let len = options.emit(&mut buf);
        prop_assert_eq!(len, options.buffer_len());
        prop_assert!(len <= 40 && len % 4 == 0);
        prop_assert_eq!(TcpOptions::parse(&buf[..len]), Ok(options));
        prop_assert_eq!(TcpOptions::parse(&buf), Ok(options));
    }

    #[test]
    fn tcp_repr_round_trips(parts in tcp_parts(), src in ipv4_addr(), dst in ipv4_addr()) {
        let repr = parts.repr();
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst, true);
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(packet.header_len() as usize, repr.header_len());
        prop_assert_eq!(TcpRepr::parse(&packet, src, dst, true), Ok(repr));
    }

    #[test]
    fn a_tcp_checksum_from_the_fields_equals_the_one_over_the_bytes(
        parts in tcp_parts(),
        ts in proptest::option::of((any::<u32>(), any::<u32>())),
        plain in any::<bool>(),
        src in ipv4_addr(),
        dst in ipv4_addr(),
    ) {
        let mut repr = parts.repr();
        if plain {
            // The headers the transmit path sums from their fields.
            repr.options = TcpOptions {
                timestamp: ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr }),
                ..TcpOptions::default()
            };
        }
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst, true);
        let expected = TcpPacket::new_unchecked(&buf[..]).checksum();
        let mut header = buf[..repr.header_len()].to_vec();
        header[16..18].copy_from_slice(&[0, 0]);
        prop_assert_eq!(repr.checksum_from_fields(src, dst, &header, repr.payload), expected);
        if plain {
            // From the fields alone: the header's bytes are not read.
            let blank = vec![0u8; header.len()];
            prop_assert_eq!(repr.checksum_from_fields(src, dst, &blank, repr.payload), expected);
        }
    }

    #[test]
    fn whole_tcp_frame_round_trips(parts in tcp_parts(), src in ipv4_addr(), dst in ipv4_addr()) {
        let frame = tcp_frame(&parts, src, dst);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&eth).unwrap().ethertype, EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip).unwrap();
        prop_assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (src, dst));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        prop_assert_eq!(TcpRepr::parse(&tcp, src, dst, true), Ok(parts.repr()));
    }

    #[test]
    fn any_single_bit_flip_in_a_tcp_segment_fails_its_checksum(
        parts in tcp_parts(),
        bit in any::<usize>(),
    ) {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let repr = parts.repr();
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst, true);
        let bit = bit % (buf.len() * 8);
        buf[bit / 8] ^= 1 << (bit % 8);
        let packet = TcpPacket::new_unchecked(&buf[..]);
        prop_assert!(!packet.verify_checksum(src, dst));
    }
}
