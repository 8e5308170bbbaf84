//! The wire parsers on any bytes, layer by layer: every view getter and
//! parser that applies, and a re-emit of what parses. Shared by
//! `tests/wire_proptest.rs` (proptest), `tests/fuzz_inputs.rs` and the
//! `wire` fuzz target (`fuzz/`). Only a panic can fail it.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use flowlane::wire::{
    checksum, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpOptions, TcpPacket, TcpRepr,
};

/// Runs every view getter and parser that applies to `bytes`, as each layer
/// would see it. Only panics (the property under test) can fail this.
pub fn exercise(bytes: &[u8]) {
    exercise_ethernet(bytes);
    exercise_arp(bytes);
    exercise_ipv4(bytes);
    exercise_icmpv4(bytes);
    let any = Ipv4Addr::new(192, 0, 2, 1);
    exercise_tcp(bytes, any, any);
    let _ = TcpOptions::parse(bytes);
    let _ = checksum::data(bytes);
}

pub fn exercise_ethernet(bytes: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(bytes) else {
        return;
    };
    let _ = (frame.src_addr(), frame.dst_addr(), frame.ethertype());
    let Ok(repr) = EthernetRepr::parse(&frame) else {
        return;
    };
    match repr.ethertype {
        EtherType::Ipv4 => exercise_ipv4(frame.payload()),
        EtherType::Arp => exercise_arp(frame.payload()),
        _ => {}
    }
}

pub fn exercise_arp(bytes: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(bytes) else {
        return;
    };
    let _ = (
        packet.hardware_type(),
        packet.protocol_type(),
        packet.operation(),
    );
    let _ = (packet.source_hardware_addr(), packet.source_protocol_addr());
    let _ = (packet.target_hardware_addr(), packet.target_protocol_addr());
    if let Ok(repr) = ArpRepr::parse(&packet) {
        assert_eq!(emit_arp(&repr).len(), 28);
    }
}

pub fn exercise_ipv4(bytes: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(bytes) else {
        return;
    };
    let _ = (
        packet.dscp(),
        packet.ecn(),
        packet.ident(),
        packet.checksum(),
    );
    let _ = (
        packet.dont_frag(),
        packet.more_frags(),
        packet.frag_offset(),
    );
    let _ = (packet.options(), packet.verify_checksum());
    let payload = packet.payload();
    assert_eq!(
        payload.len(),
        packet.total_len() as usize - packet.header_len() as usize
    );
    let Ok(repr) = Ipv4Packet::new_checked(bytes).and_then(|p| Ipv4Repr::parse(&p)) else {
        return;
    };
    match repr.protocol {
        IpProtocol::Tcp => exercise_tcp(payload, repr.src_addr, repr.dst_addr),
        IpProtocol::Icmp => exercise_icmpv4(payload),
        _ => {}
    }
}

pub fn exercise_icmpv4(bytes: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(bytes) else {
        return;
    };
    let _ = (packet.msg_type(), packet.msg_code(), packet.checksum());
    let _ = (
        packet.echo_ident(),
        packet.echo_seq_no(),
        packet.rest_of_header(),
        packet.data(),
    );
    if let Ok(repr) = Icmpv4Repr::parse(&packet) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
    }
}

pub fn exercise_tcp(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    // Parse must be safe on an unchecked view as well.
    let unchecked = TcpPacket::new_unchecked(bytes);
    let _ = TcpRepr::parse(&unchecked, src, dst, false);
    let Ok(packet) = TcpPacket::new_checked(bytes) else {
        return;
    };
    let _ = (
        packet.src_port(),
        packet.dst_port(),
        packet.seq_number(),
        packet.ack_number(),
    );
    let _ = (
        packet.flags(),
        packet.window_len(),
        packet.urgent_pointer(),
        packet.reserved(),
    );
    let _ = (packet.options(), packet.payload(), packet.segment_len());
    let _ = packet.verify_checksum(src, dst);
    let _ = TcpRepr::parse(&packet, src, dst, true);
    if let Ok(repr) = TcpRepr::parse(&packet, src, dst, false) {
        // Whatever parsed re-emits within a legal header.
        assert!(repr.header_len() <= 60 && repr.header_len() % 4 == 0);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst, true);
        let again = TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).unwrap(), src, dst, true);
        assert!(again.is_ok(), "{again:?}");
    }
}

pub fn emit_arp(repr: &ArpRepr) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
    buf
}
