//! ARP (RFC 826) for Ethernet hardware addresses and IPv4 protocol addresses.
//!
//! Owns the ARP packet layout. The view reads any hardware/protocol address
//! lengths (its length check follows HLEN and PLEN), but [`ArpRepr`] only
//! represents the one combination this stack speaks: hardware type 1
//! (Ethernet), protocol type 0x0800, HLEN 6, PLEN 4. Anything else is
//! [`Error::Unsupported`] (RFC 826 "Packet Reception": a host that does not
//! speak the hardware/protocol pair discards the packet).

use core::net::Ipv4Addr;

use super::ethernet::EthernetAddress;
use super::{Error, Result};

/// The ARP opcode (RFC 826; IANA "ARP operation codes").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> ArpOperation {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> u16 {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// Hardware type 1: Ethernet (10Mb), the only one supported.
pub const HARDWARE_ETHERNET: u16 = 1;
/// Protocol type for IPv4 (the IPv4 EtherType).
pub const PROTOCOL_IPV4: u16 = 0x0800;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    /// Start of the variable part: SHA, SPA, THA, TPA.
    pub const ADDRESSES: usize = 8;

    #[inline]
    pub const fn sha(hlen: u8, _plen: u8) -> Field {
        ADDRESSES..ADDRESSES + hlen as usize
    }
    #[inline]
    pub const fn spa(hlen: u8, plen: u8) -> Field {
        let start = sha(hlen, plen).end;
        start..start + plen as usize
    }
    #[inline]
    pub const fn tha(hlen: u8, plen: u8) -> Field {
        let start = spa(hlen, plen).end;
        start..start + hlen as usize
    }
    #[inline]
    pub const fn tpa(hlen: u8, plen: u8) -> Field {
        let start = tha(hlen, plen).end;
        start..start + plen as usize
    }
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// A read/write view of an ARP packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` unless the buffer holds the fixed part and the four
    /// addresses HLEN and PLEN announce. Trailing bytes (Ethernet padding)
    /// are allowed.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::ADDRESSES {
            return Err(Error::Truncated);
        }
        let end = field::tpa(data[field::HLEN], data[field::PLEN]).end;
        if data.len() < end {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: field::Field) -> u16 {
        let d = &self.buffer.as_ref()[f];
        u16::from_be_bytes([d[0], d[1]])
    }

    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.u16_at(field::OPER))
    }

    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::sha(self.hardware_len(), self.protocol_len())]
    }

    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::spa(self.hardware_len(), self.protocol_len())]
    }

    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tha(self.hardware_len(), self.protocol_len())]
    }

    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tpa(self.hardware_len(), self.protocol_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn set_u16_at(&mut self, f: field::Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_hardware_type(&mut self, value: u16) {
        self.set_u16_at(field::HTYPE, value)
    }

    pub fn set_protocol_type(&mut self, value: u16) {
        self.set_u16_at(field::PTYPE, value)
    }

    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value
    }

    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value
    }

    pub fn set_operation(&mut self, value: ArpOperation) {
        self.set_u16_at(field::OPER, value.into())
    }

    /// The address setters use the HLEN/PLEN already in the buffer, so set
    /// those first. `value` must have exactly that length.
    pub fn set_source_hardware_addr(&mut self, value: &[u8]) {
        let f = field::sha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(value)
    }

    pub fn set_source_protocol_addr(&mut self, value: &[u8]) {
        let f = field::spa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(value)
    }

    pub fn set_target_hardware_addr(&mut self, value: &[u8]) {
        let f = field::tha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(value)
    }

    pub fn set_target_protocol_addr(&mut self, value: &[u8]) {
        let f = field::tpa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(value)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of an ARP packet this stack understands.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ArpRepr {
    /// Ethernet hardware addresses, IPv4 protocol addresses.
    EthernetIpv4 {
        operation: ArpOperation,
        source_hardware_addr: EthernetAddress,
        source_protocol_addr: Ipv4Addr,
        target_hardware_addr: EthernetAddress,
        target_protocol_addr: Ipv4Addr,
    },
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 ARP packet; other hardware/protocol pairs are
    /// `Unsupported`. Unknown opcodes are kept as [`ArpOperation::Unknown`]
    /// for the interface to ignore.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &ArpPacket<&T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != PROTOCOL_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let ipv4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        Ok(ArpRepr::EthernetIpv4 {
            operation: packet.operation(),
            source_hardware_addr: EthernetAddress::from_bytes(packet.source_hardware_addr()),
            source_protocol_addr: ipv4(packet.source_protocol_addr()),
            target_hardware_addr: EthernetAddress::from_bytes(packet.target_hardware_addr()),
            target_protocol_addr: ipv4(packet.target_protocol_addr()),
        })
    }

    /// Packet length: 28 bytes.
    pub const fn buffer_len(&self) -> usize {
        match self {
            ArpRepr::EthernetIpv4 { .. } => ETHERNET_IPV4_LEN,
        }
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        match *self {
            ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_hardware_addr,
                target_protocol_addr,
            } => {
                packet.set_hardware_type(HARDWARE_ETHERNET);
                packet.set_protocol_type(PROTOCOL_IPV4);
                packet.set_hardware_len(6);
                packet.set_protocol_len(4);
                packet.set_operation(operation);
                packet.set_source_hardware_addr(&source_hardware_addr.0);
                packet.set_source_protocol_addr(&source_protocol_addr.octets());
                packet.set_target_hardware_addr(&target_hardware_addr.0);
                packet.set_target_protocol_addr(&target_protocol_addr.octets());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ARP request from the fixture capture: who has 10.77.90.1? tell 10.77.90.2.
    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // fixed part
        0x02, 0x34, 0x80, 0x7f, 0x9c, 0x2a, 10, 77, 90, 2, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 77, 90, 1, // target
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([0x02, 0x34, 0x80, 0x7f, 0x9c, 0x2a]),
            source_protocol_addr: Ipv4Addr::new(10, 77, 90, 2),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 77, 90, 1),
        }
    }

    #[test]
    fn parse_reads_an_ethernet_ipv4_request() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), 0x0800);
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(ArpRepr::parse(&packet), Ok(request_repr()));
    }

    #[test]
    fn emit_writes_the_same_bytes() {
        let repr = request_repr();
        assert_eq!(repr.buffer_len(), 28);
        let mut bytes = [0xa5u8; 28];
        repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, REQUEST);
    }

    #[test]
    fn ethernet_padding_after_the_packet_is_ignored() {
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REQUEST);
        let packet = ArpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Ok(request_repr()));
    }

    #[test]
    fn reply_and_unknown_opcodes_are_kept() {
        for (code, op) in [(2u16, ArpOperation::Reply), (9, ArpOperation::Unknown(9))] {
            let mut bytes = REQUEST;
            bytes[6..8].copy_from_slice(&code.to_be_bytes());
            let repr = ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
            let ArpRepr::EthernetIpv4 { operation, .. } = repr;
            assert_eq!(operation, op);
            assert_eq!(u16::from(op), code);
        }
    }

    #[test]
    fn truncated_packets_are_rejected() {
        for len in [0, 7, 8, 27] {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]).err(),
                Some(Error::Truncated)
            );
        }
        // HLEN/PLEN announcing addresses past the buffer.
        let mut bytes = REQUEST;
        bytes[4] = 16;
        assert_eq!(
            ArpPacket::new_checked(&bytes[..]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn other_hardware_or_protocol_is_unsupported() {
        for (offset, value) in [(1usize, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bytes = [0u8; 60];
            bytes[..28].copy_from_slice(&REQUEST);
            bytes[offset] = value;
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                ArpRepr::parse(&packet),
                Err(Error::Unsupported),
                "offset {offset}"
            );
        }
    }
}
