//! ICMPv4 (RFC 792): echo request/reply and destination unreachable.
//!
//! Owns the ICMP message layout and checksum. [`Icmpv4Repr`] covers what the
//! stack acts on: it answers echo requests (RFC 1122 §3.2.2.6) and passes
//! destination-unreachable errors to TCP, which matches them to a
//! connection by the quoted header (RFC 1122 §4.2.3.9, RFC 5927). Every other
//! type parses as [`Error::Unsupported`] and is counted and dropped, which
//! RFC 1122 §3.2.2 allows for unknown types.

use super::checksum;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{Error, Result};

/// The ICMP Type field (IANA "ICMP Type Numbers").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Icmpv4Message {
    EchoReply,
    DstUnreachable,
    Redirect,
    EchoRequest,
    TimeExceeded,
    ParamProblem,
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(value: u8) -> Icmpv4Message {
        match value {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            5 => Icmpv4Message::Redirect,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            12 => Icmpv4Message::ParamProblem,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(value: Icmpv4Message) -> u8 {
        match value {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::Redirect => 5,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::ParamProblem => 12,
            Icmpv4Message::Unknown(other) => other,
        }
    }
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo request/reply identifier and sequence number.
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    /// The second word of the header ("unused" for most error messages).
    pub const REST_OF_HEADER: Field = 4..8;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header (type, code, checksum, one 32-bit word).
pub const HEADER_LEN: usize = field::DATA;

/// Bytes of the original datagram's payload a destination-unreachable
/// message must quote after its IPv4 header (RFC 792: "64 bits").
pub const QUOTED_PAYLOAD_MIN: usize = 8;

/// A read/write view of an ICMPv4 message (the whole IPv4 payload).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` when the buffer cannot hold the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn u16_at(&self, f: field::Field) -> u16 {
        let d = &self.buffer.as_ref()[f];
        u16::from_be_bytes([d[0], d[1]])
    }

    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Echo identifier; meaningful for echo request/reply only.
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Echo sequence number; meaningful for echo request/reply only.
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    /// The second header word as a whole (e.g. next-hop MTU in its low half
    /// for "fragmentation needed", RFC 1191 §4).
    pub fn rest_of_header(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::REST_OF_HEADER];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// The checksum over the whole message verifies (RFC 792).
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// Everything after the 8-byte header.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, f: field::Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_msg_type(&mut self, value: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = value.into()
    }

    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value)
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        self.set_u16_at(field::ECHO_IDENT, value)
    }

    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.set_u16_at(field::ECHO_SEQNO, value)
    }

    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value.to_be_bytes())
    }

    /// Computes and writes the checksum over the whole buffer, so the buffer
    /// must be exactly the message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum)
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The ICMPv4 messages the stack acts on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// Destination unreachable (type 3). `header` is the quoted IPv4 header
    /// of the datagram that failed (options dropped; `payload_len` is the
    /// original datagram's) and `data` is everything quoted after it: at
    /// least the first 8 bytes of the original payload (RFC 792), possibly
    /// more (RFC 1812 §4.3.2.3).
    DstUnreachable {
        code: u8,
        header: Ipv4Repr,
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads a message: length, checksum (`BadChecksum`), then type; types
    /// other than echo request/reply and destination unreachable are
    /// `Unsupported`. The quoted header of a destination-unreachable is
    /// length-checked like a real one but its checksum is not verified (the
    /// quote may be of a header a router had already altered).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        match packet.msg_type() {
            Icmpv4Message::EchoRequest => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.data(),
            }),
            Icmpv4Message::EchoReply => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.data(),
            }),
            Icmpv4Message::DstUnreachable => {
                let (header, data) = parse_quoted(packet.data())?;
                Ok(Icmpv4Repr::DstUnreachable {
                    code: packet.msg_code(),
                    header,
                    data,
                })
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Message length: header plus data (plus the 20-byte quoted header for
    /// destination unreachable).
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Icmpv4Repr::DstUnreachable { data, .. } => HEADER_LEN + ipv4::HEADER_LEN + data.len(),
        }
    }

    /// Writes the message into a buffer of exactly [`buffer_len`]
    /// bytes (the checksum covers the whole buffer) and fills the checksum.
    ///
    /// [`buffer_len`]: Self::buffer_len
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let msg_type = match self {
                    Icmpv4Repr::EchoRequest { .. } => Icmpv4Message::EchoRequest,
                    _ => Icmpv4Message::EchoReply,
                };
                packet.set_msg_type(msg_type);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                packet.data_mut()[..data.len()].copy_from_slice(data);
            }
            Icmpv4Repr::DstUnreachable { code, header, data } => {
                packet.set_msg_type(Icmpv4Message::DstUnreachable);
                packet.set_msg_code(code);
                packet.set_rest_of_header(0);
                let quoted = packet.data_mut();
                header.emit(&mut Ipv4Packet::new_unchecked(
                    &mut quoted[..ipv4::HEADER_LEN],
                ));
                quoted[ipv4::HEADER_LEN..ipv4::HEADER_LEN + data.len()].copy_from_slice(data);
            }
        }
        packet.fill_checksum();
    }
}

/// Reads the IPv4 header and payload prefix quoted in an ICMP error.
fn parse_quoted(quoted: &[u8]) -> Result<(Ipv4Repr, &[u8])> {
    // Only the header's own fields can be checked: the quote is cut short,
    // so the total length points past it by design.
    let packet = Ipv4Packet::new_unchecked(quoted);
    if quoted.len() < ipv4::HEADER_LEN {
        return Err(Error::Truncated);
    }
    if packet.version() != 4 {
        return Err(Error::BadVersion);
    }
    let header_len = packet.header_len() as usize;
    if header_len < ipv4::HEADER_LEN {
        return Err(Error::BadIpHeaderLength);
    }
    if quoted.len() < header_len + QUOTED_PAYLOAD_MIN {
        return Err(Error::Truncated);
    }
    let total_len = packet.total_len() as usize;
    if total_len < header_len + QUOTED_PAYLOAD_MIN {
        // The original datagram could not have been this short and still
        // have produced an 8-byte quote.
        return Err(Error::BadIpLength);
    }
    let header = Ipv4Repr {
        src_addr: packet.src_addr(),
        dst_addr: packet.dst_addr(),
        protocol: packet.protocol(),
        payload_len: total_len - header_len,
        hop_limit: packet.hop_limit(),
    };
    Ok((header, &quoted[header_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpProtocol;
    use core::net::Ipv4Addr;

    // `ping -c1 -p ab` style echo request: ident 0x1234, seq 1, 4 data bytes.
    static ECHO_REQUEST: [u8; 12] = [
        0x08, 0x00, 0x8e, 0x73, // type 8, code 0, checksum
        0x12, 0x34, 0x00, 0x01, // ident, seq
        0xab, 0xab, 0xab, 0xab,
    ];

    fn echo_request_repr() -> Icmpv4Repr<'static> {
        Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data: &[0xab; 4],
        }
    }

    fn unreachable_bytes() -> Vec<u8> {
        // Port unreachable quoting a TCP SYN 10.77.90.2:47210 -> 10.77.90.1:7.
        let mut b = vec![0x03, 0x03, 0, 0, 0, 0, 0, 0];
        let quoted_ip = [
            0x45, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 77, 90, 2,
            10, 77, 90, 1,
        ];
        b.extend_from_slice(&quoted_ip);
        b.extend_from_slice(&[0xb8, 0x6a, 0x00, 0x07, 0x3c, 0x20, 0xa8, 0x2a]);
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    fn unreachable_repr(data: &[u8]) -> Icmpv4Repr<'_> {
        Icmpv4Repr::DstUnreachable {
            code: 3,
            header: Ipv4Repr {
                src_addr: Ipv4Addr::new(10, 77, 90, 2),
                dst_addr: Ipv4Addr::new(10, 77, 90, 1),
                protocol: IpProtocol::Tcp,
                payload_len: 40,
                hop_limit: 64,
            },
            data,
        }
    }

    #[test]
    fn parse_reads_an_echo_request() {
        let packet = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(packet.msg_code(), 0);
        assert_eq!((packet.echo_ident(), packet.echo_seq_no()), (0x1234, 1));
        assert!(packet.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&packet), Ok(echo_request_repr()));
    }

    #[test]
    fn emit_echo_request_writes_the_same_bytes() {
        let repr = echo_request_repr();
        assert_eq!(repr.buffer_len(), 12);
        let mut bytes = [0u8; 12];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, ECHO_REQUEST);
    }

    #[test]
    fn echo_reply_round_trips() {
        let data = [1u8, 2, 3, 4, 5];
        let repr = Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 0xffff,
            data: &data,
        };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes[0], 0);
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn parse_reads_a_destination_unreachable_with_its_quote() {
        let bytes = unreachable_bytes();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Message::DstUnreachable);
        let repr = Icmpv4Repr::parse(&packet).unwrap();
        assert_eq!(repr, unreachable_repr(&bytes[28..]));
    }

    #[test]
    fn emit_destination_unreachable_round_trips() {
        let quote = [0xb8, 0x6a, 0x00, 0x07, 0x3c, 0x20, 0xa8, 0x2a, 0x99];
        let repr = unreachable_repr(&quote);
        assert_eq!(repr.buffer_len(), 8 + 20 + 9);
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes[..]));
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn short_message_is_truncated() {
        for len in [0, 4, 7] {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO_REQUEST[..len]).err(),
                Some(Error::Truncated)
            );
        }
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let mut bytes = ECHO_REQUEST;
        bytes[11] ^= 0x40;
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(Error::BadChecksum));
    }

    #[test]
    fn other_types_are_unsupported() {
        for t in [5u8, 11, 13, 42] {
            let mut bytes = ECHO_REQUEST;
            bytes[0] = t;
            Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
            let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                Icmpv4Repr::parse(&packet),
                Err(Error::Unsupported),
                "type {t}"
            );
        }
    }

    #[test]
    fn short_or_bad_quotes_are_rejected() {
        let good = unreachable_bytes();
        // Quote cut inside the IPv4 header, and inside the 8 payload bytes.
        for (len, err) in [(8 + 19, Error::Truncated), (8 + 27, Error::Truncated)] {
            let mut b = good[..len].to_vec();
            Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
            let packet = Icmpv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&packet), Err(err), "len {len}");
        }
        // Quoted header with bad version, bad IHL, or a total length that
        // cannot cover its own quote.
        for (offset, value, err) in [
            (8usize, 0x65u8, Error::BadVersion),
            (8, 0x44, Error::BadIpHeaderLength),
            (8, 0x4f, Error::Truncated),
            (11, 0x10, Error::BadIpLength),
        ] {
            let mut b = good.clone();
            b[offset] = value;
            Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
            let packet = Icmpv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&packet), Err(err), "offset {offset}");
        }
    }
}
