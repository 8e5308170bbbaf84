//! IPv4 headers (RFC 791 §3.1).
//!
//! Owns the IPv4 header layout, its length rules and header checksum.
//! Addresses are `core::net::Ipv4Addr`. Decisions:
//! - The total length must not exceed the buffer; bytes past it (Ethernet
//!   padding to the 60-byte minimum frame) are ignored (RFC 1122 §3.3.1 only
//!   requires the total length be honoured).
//! - Options are skipped, not interpreted (RFC 1122 §3.2.1.8 lets a host
//!   ignore options it does not implement; it implements none).
//! - Fragments are dropped as [`Error::Fragmented`]: this stack never
//!   reassembles, and it sets DF on everything it sends and relies on path
//!   MTU discovery (RFC 1191) instead.

use core::fmt;
use core::net::Ipv4Addr;

use super::checksum;
use super::{Error, Result};

/// The IPv4 Protocol field (IANA "Assigned Internet Protocol Numbers").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IpProtocol {
    Icmp,
    Tcp,
    Udp,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> IpProtocol {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> u8 {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Unknown(v) => write!(f, "0x{v:02x}"),
        }
    }
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    pub const OPTIONS: usize = 20;

    /// Flag bits within FLG_OFF.
    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
}

/// Length of an IPv4 header without options; the only length we emit.
pub const HEADER_LEN: usize = field::OPTIONS;

/// A read/write view of an IPv4 packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates everything the getters rely on, in this order:
    /// - buffer shorter than 20 bytes: `Truncated`;
    /// - version not 4: `BadVersion`;
    /// - IHL below 5: `BadIpHeaderLength`;
    /// - total length below 20 or beyond the buffer: `BadIpLength`;
    /// - IHL*4 beyond the total length: `BadIpHeaderLength`.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let header_len = self.header_len() as usize;
        if header_len < HEADER_LEN {
            return Err(Error::BadIpHeaderLength);
        }
        let total_len = self.total_len() as usize;
        if total_len < HEADER_LEN || total_len > data.len() {
            return Err(Error::BadIpLength);
        }
        if header_len > total_len {
            return Err(Error::BadIpHeaderLength);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn u16_at(&self, f: field::Field) -> u16 {
        let d = &self.buffer.as_ref()[f];
        u16::from_be_bytes([d[0], d[1]])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header plus payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & field::FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & field::FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & field::OFFSET_MASK) << 3
    }

    /// True for any fragment of a larger datagram, first one included.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (field::FLAG_MF | field::OFFSET_MASK) != 0
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// The header checksum (RFC 791 §3.1) over IHL × 4 bytes verifies.
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len() as usize];
        checksum::data(header) == 0xffff
    }

    /// Option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len() as usize]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// Exactly `total_len - header_len` bytes; trailing padding excluded.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let range = self.header_len() as usize..self.total_len() as usize;
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, f: field::Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets IHL from a length in bytes (a multiple of 4, at most 60).
    #[inline]
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) & 0x0f);
    }

    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        self.set_u16_at(field::LENGTH, value)
    }

    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        self.set_u16_at(field::IDENT, value)
    }

    /// Clears DF, MF and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_u16_at(field::FLG_OFF, 0)
    }

    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let raw = self.u16_at(field::FLG_OFF) & !field::FLAG_DF;
        self.set_u16_at(field::FLG_OFF, raw | if value { field::FLAG_DF } else { 0 })
    }

    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let raw = self.u16_at(field::FLG_OFF) & !field::FLAG_MF;
        self.set_u16_at(field::FLG_OFF, raw | if value { field::FLAG_MF } else { 0 })
    }

    /// Sets the fragment offset from a byte count (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        let raw = self.u16_at(field::FLG_OFF) & !field::OFFSET_MASK;
        self.set_u16_at(field::FLG_OFF, raw | (value >> 3))
    }

    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value
    }

    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into()
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value)
    }

    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets())
    }

    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets())
    }

    /// Computes and writes the header checksum over IHL × 4 bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len() as usize;
        let sum = checksum::data(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(!sum)
    }

    /// Mutable option bytes.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len() as usize;
        &mut self.buffer.as_mut()[field::OPTIONS..header_len]
    }

    /// Mutable payload: `header_len..total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len() as usize..self.total_len() as usize;
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of an IPv4 header, as the stack uses it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Bytes after the header: total length minus header length.
    pub payload_len: usize,
    /// The TTL field.
    pub hop_limit: u8,
}

impl Ipv4Repr {
    /// Reads a header: lengths (again, so an unchecked view is safe), then the
    /// checksum (`BadChecksum`), then fragmentation (`Fragmented`). Options
    /// are skipped; unknown protocols are kept as [`IpProtocol::Unknown`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Ipv4Packet<&T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(Error::Fragmented);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() as usize - packet.header_len() as usize,
            hop_limit: packet.hop_limit(),
        })
    }

    /// Header length we emit: always [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header (no options, DSCP/ECN 0, ident 0, DF set per
    /// RFC 1191 path MTU discovery) and fills its checksum. The payload is the
    /// caller's; `payload_len` must be at most 65515.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        debug_assert!(self.payload_len <= u16::MAX as usize - HEADER_LEN);
        let hdr: &mut [u8; HEADER_LEN] = packet
            .buffer
            .as_mut()
            .first_chunk_mut()
            .expect("IPv4 emit buffer shorter than the header");
        hdr[field::VER_IHL] = 0x45;
        hdr[field::DSCP_ECN] = 0;
        hdr[field::LENGTH].copy_from_slice(&((HEADER_LEN + self.payload_len) as u16).to_be_bytes());
        hdr[field::IDENT].copy_from_slice(&[0, 0]);
        hdr[field::FLG_OFF].copy_from_slice(&field::FLAG_DF.to_be_bytes());
        hdr[field::TTL] = self.hop_limit;
        hdr[field::PROTOCOL] = self.protocol.into();
        hdr[field::CHECKSUM].copy_from_slice(&[0, 0]);
        hdr[field::SRC_ADDR].copy_from_slice(&self.src_addr.octets());
        hdr[field::DST_ADDR].copy_from_slice(&self.dst_addr.octets());
        // The sum of the header's words, from the values just written (no
        // pass over the bytes): version/IHL/DSCP, length, ident 0, flags,
        // TTL/protocol, the addresses.
        let sum = !checksum::combine(&[
            0x4500,
            (HEADER_LEN + self.payload_len) as u16,
            field::FLAG_DF,
            u16::from_be_bytes([self.hop_limit, self.protocol.into()]),
            checksum::pseudo_header_v4(self.src_addr, self.dst_addr, 0, 0),
        ]);
        hdr[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The header of the first SYN in the fixture capture (10.77.90.2 -> .1),
    // followed by 4 payload bytes standing in for TCP.
    static PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, // version/IHL, DSCP, total length 24
        0x00, 0x00, 0x40, 0x00, // ident, DF
        0x40, 0x06, 0x00, 0x00, // TTL 64, TCP, checksum (filled below)
        10, 77, 90, 2, 10, 77, 90, 1, //
        0xde, 0xad, 0xbe, 0xef,
    ];

    fn packet_bytes() -> [u8; 24] {
        let mut bytes = PACKET;
        let sum = !checksum::data(&bytes[..20]);
        bytes[10..12].copy_from_slice(&sum.to_be_bytes());
        bytes
    }

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 77, 90, 2),
            dst_addr: Ipv4Addr::new(10, 77, 90, 1),
            protocol: IpProtocol::Tcp,
            payload_len: 4,
            hop_limit: 64,
        }
    }

    /// Recomputes the checksum after a test edits header bytes.
    fn refill(bytes: &mut [u8]) {
        Ipv4Packet::new_unchecked(bytes).fill_checksum();
    }

    #[test]
    fn parse_reads_every_field() {
        let bytes = packet_bytes();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 24);
        assert!(packet.dont_frag() && !packet.more_frags() && packet.frag_offset() == 0);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.protocol(), IpProtocol::Tcp);
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(packet.options().is_empty());
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn emit_writes_the_same_bytes() {
        let mut bytes = [0xffu8; 24];
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        repr().emit(&mut packet);
        packet
            .payload_mut()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes, packet_bytes());
    }

    #[test]
    fn setters_round_trip_through_getters() {
        let mut bytes = [0u8; 28];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_dscp(46);
        p.set_ecn(2);
        p.set_total_len(28);
        p.set_ident(0x1234);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.set_dont_frag(false);
        p.set_hop_limit(3);
        p.set_protocol(IpProtocol::Unknown(99));
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (p.version(), p.header_len(), p.dscp(), p.ecn()),
            (4, 24, 46, 2)
        );
        assert_eq!((p.total_len(), p.ident()), (28, 0x1234));
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(p.protocol(), IpProtocol::Unknown(99));
        assert_eq!(p.src_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn options_are_skipped_and_covered_by_the_checksum() {
        let mut bytes = [0u8; 28];
        bytes[..20].copy_from_slice(&packet_bytes()[..20]);
        bytes[0] = 0x46;
        bytes[2..4].copy_from_slice(&28u16.to_be_bytes());
        bytes[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]); // router alert
        bytes[24..28].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        refill(&mut bytes);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr()));
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        bytes[21] ^= 1;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::BadChecksum));
    }

    #[test]
    fn trailing_ethernet_padding_is_ignored() {
        let mut bytes = [0u8; 46];
        bytes[..24].copy_from_slice(&packet_bytes());
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn short_buffer_is_truncated() {
        let bytes = packet_bytes();
        for len in [0, 1, 19] {
            assert_eq!(
                Ipv4Packet::new_checked(&bytes[..len]).err(),
                Some(Error::Truncated)
            );
        }
    }

    #[test]
    fn total_length_past_buffer_or_below_header_is_bad_ip_length() {
        let bytes = packet_bytes();
        // Buffer cut below the announced total length.
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..23]).err(),
            Some(Error::BadIpLength)
        );
        for total in [0u16, 19, 25, 0xffff] {
            let mut b = bytes;
            b[2..4].copy_from_slice(&total.to_be_bytes());
            refill(&mut b);
            assert_eq!(
                Ipv4Packet::new_checked(&b[..]).err(),
                Some(Error::BadIpLength),
                "{total}"
            );
        }
    }

    #[test]
    fn header_length_below_20_or_past_total_is_bad_header_length() {
        for ihl in [0u8, 4, 7, 15] {
            let mut b = packet_bytes();
            b[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&b[..]).err(),
                Some(Error::BadIpHeaderLength),
                "ihl {ihl}"
            );
        }
    }

    #[test]
    fn version_other_than_4_is_bad_version() {
        let mut b = packet_bytes();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(Error::BadVersion)
        );
    }

    #[test]
    fn corrupted_header_fails_checksum() {
        let mut b = packet_bytes();
        b[8] = 63; // TTL changed without fixing the checksum
        let packet = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::BadChecksum));
    }

    #[test]
    fn any_fragment_is_dropped() {
        // MF alone (first fragment), offset alone (last), both (middle).
        for flg_off in [0x2000u16, 0x00b9, 0x20b9, 0x6001] {
            let mut b = packet_bytes();
            b[6..8].copy_from_slice(&flg_off.to_be_bytes());
            refill(&mut b);
            let packet = Ipv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(
                Ipv4Repr::parse(&packet),
                Err(Error::Fragmented),
                "{flg_off:#x}"
            );
        }
        // DF alone is not a fragment.
        let b = packet_bytes();
        assert!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).is_ok());
    }

    #[test]
    fn unknown_protocol_is_kept_for_the_interface() {
        let mut b = packet_bytes();
        b[9] = 132;
        refill(&mut b);
        let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.protocol, IpProtocol::Unknown(132));
        assert_eq!(u8::from(r.protocol), 132);
    }
}
