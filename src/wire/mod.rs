//! Wire formats: zero-copy `Packet<T: AsRef<[u8]>>` views with a length check
//! on construction, and `Repr` structs holding the parsed, validated meaning.
//!
//! Byte offsets live only here. Everything above sees `Repr` values. Parsing
//! untrusted bytes never panics: it returns an [`Error`] naming the reason,
//! which the interface counts.
//!
//! The pattern, per format (Ethernet, ARP, IPv4, ICMPv4, TCP):
//! - `XxxPacket::new_checked(buffer)` validates every length the getters rely
//!   on, once; after that no getter can index out of bounds.
//!   `new_unchecked` skips the check and is for buffers we are about to fill.
//! - `XxxRepr::parse(&packet)` checks what the lengths do not (checksums,
//!   versions, supported variants) and yields plain values.
//! - `XxxRepr::emit(&mut packet)` writes a header into a buffer of at least
//!   `buffer_len()` bytes. Emit is given our own values, so a too-short
//!   buffer is a caller bug and panics, exactly like slice indexing.
//!
//! This module must never allocate, read a clock, or keep state.

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
mod seq;
pub mod tcp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmpv4::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use seq::SeqNumber;
pub use tcp::{TcpFlags, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp};

/// Why a received frame was dropped. One variant per reason, so the
/// interface can keep an array of counters indexed by [`Error::index`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Error {
    /// The buffer ends before a fixed-size header (or a length the header
    /// itself announces, for ARP and quoted ICMP headers).
    Truncated,
    /// An IPv4, ICMPv4 or TCP checksum does not verify.
    BadChecksum,
    /// TCP data offset below 5 words or past the end of the segment.
    BadDataOffset,
    /// A TCP option's length is 0 or 1, runs past the option area, or is
    /// wrong for a known kind.
    BadOptionLength,
    /// IPv4 total length smaller than a minimal header or larger than the
    /// buffer.
    BadIpLength,
    /// IPv4 header length (IHL) below 5 words or beyond the total length.
    BadIpHeaderLength,
    /// IP version field is not 4.
    BadVersion,
    /// An IPv4 fragment (MF set or non-zero offset); this stack does not
    /// reassemble.
    Fragmented,
    /// A well-formed frame of a kind this stack does not handle: unknown
    /// ethertype, IP protocol, ARP hardware/protocol type, or ICMP type.
    Unsupported,
    /// Anything else that is structurally wrong (e.g. TCP port 0).
    Malformed,
}

impl Error {
    /// Number of variants: the length of a per-reason counter array.
    pub const COUNT: usize = 10;

    /// Every variant, in [`Error::index`] order.
    pub const ALL: [Error; Error::COUNT] = [
        Error::Truncated,
        Error::BadChecksum,
        Error::BadDataOffset,
        Error::BadOptionLength,
        Error::BadIpLength,
        Error::BadIpHeaderLength,
        Error::BadVersion,
        Error::Fragmented,
        Error::Unsupported,
        Error::Malformed,
    ];

    /// Dense index in `0..COUNT`, stable for the life of the process.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case name, suitable as a counter label.
    pub const fn name(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::BadChecksum => "bad_checksum",
            Error::BadDataOffset => "bad_data_offset",
            Error::BadOptionLength => "bad_option_length",
            Error::BadIpLength => "bad_ip_length",
            Error::BadIpHeaderLength => "bad_ip_header_length",
            Error::BadVersion => "bad_version",
            Error::Fragmented => "fragmented",
            Error::Unsupported => "unsupported",
            Error::Malformed => "malformed",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text = match self {
            Error::Truncated => "truncated packet",
            Error::BadChecksum => "checksum mismatch",
            Error::BadDataOffset => "invalid TCP data offset",
            Error::BadOptionLength => "invalid TCP option length",
            Error::BadIpLength => "invalid IPv4 total length",
            Error::BadIpHeaderLength => "invalid IPv4 header length",
            Error::BadVersion => "unexpected IP version",
            Error::Fragmented => "IPv4 fragment",
            Error::Unsupported => "unsupported protocol or type",
            Error::Malformed => "malformed packet",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Error {}

/// Result of parsing untrusted bytes.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_indices_are_dense_and_names_unique() {
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        let mut names: Vec<&str> = Error::ALL.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Error::COUNT);
    }

    #[test]
    fn error_display_is_human_readable() {
        assert_eq!(Error::BadChecksum.to_string(), "checksum mismatch");
        assert_eq!(Error::Fragmented.to_string(), "IPv4 fragment");
    }
}
