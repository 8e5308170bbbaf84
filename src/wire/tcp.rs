//! TCP header (RFC 9293 §3.1) and options (RFC 9293 §3.2, RFC 7323, RFC 2018).

pub use super::seq::SeqNumber;

/// The eight TCP control bits, as on the wire (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    pub const NONE: TcpFlags = TcpFlags(0);

    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
    #[inline]
    pub const fn fin(self) -> bool {
        self.0 & 0x01 != 0
    }
    #[inline]
    pub const fn syn(self) -> bool {
        self.0 & 0x02 != 0
    }
    #[inline]
    pub const fn rst(self) -> bool {
        self.0 & 0x04 != 0
    }
    #[inline]
    pub const fn psh(self) -> bool {
        self.0 & 0x08 != 0
    }
    #[inline]
    pub const fn ack(self) -> bool {
        self.0 & 0x10 != 0
    }
    #[inline]
    pub const fn urg(self) -> bool {
        self.0 & 0x20 != 0
    }
    #[inline]
    pub const fn ece(self) -> bool {
        self.0 & 0x40 != 0
    }
    #[inline]
    pub const fn cwr(self) -> bool {
        self.0 & 0x80 != 0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        self.union(rhs)
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// RFC 7323 §3 timestamps option.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpTimestamp {
    pub tsval: u32,
    pub tsecr: u32,
}

/// At most four SACK blocks fit in 40 option bytes (RFC 2018 §3); three when
/// timestamps are also present.
pub const MAX_SACK_BLOCKS: usize = 4;

/// The options this stack understands, parsed. Unknown options are skipped by
/// their length on parse and never emitted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2); only meaningful on SYN segments.
    pub mss: Option<u16>,
    /// Window scale shift (kind 3); RFC 7323 §2.3 caps it at 14, parse
    /// clamps larger values to 14.
    pub window_scale: Option<u8>,
    /// SACK-permitted (kind 4).
    pub sack_permitted: bool,
    /// SACK blocks (kind 5): `sack_blocks[..sack_count]` are valid, each as
    /// (left edge, right edge), most recent first.
    pub sack_blocks: [(SeqNumber, SeqNumber); MAX_SACK_BLOCKS],
    pub sack_count: u8,
    /// Timestamps (kind 8).
    pub timestamp: Option<TcpTimestamp>,
}

impl TcpOptions {
    pub fn sack_blocks(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.sack_blocks[..self.sack_count as usize]
    }
}

/// A parsed, validated TCP segment: what the state machine sees.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
    /// Meaningful only when `flags.ack()`; emitted as 0 otherwise.
    pub ack_number: SeqNumber,
    pub flags: TcpFlags,
    /// The raw 16-bit window field, unscaled.
    pub window_len: u16,
    pub urgent_pointer: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Sequence space the segment occupies: payload plus one each for SYN and
    /// FIN (RFC 9293 §3.4, SEG.LEN).
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload.len() + self.flags.syn() as usize + self.flags.fin() as usize
    }
}
