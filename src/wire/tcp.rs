//! TCP header (RFC 9293 §3.1) and options (RFC 9293 §3.2, RFC 7323, RFC 2018).
//!
//! Owns the TCP header layout, option encoding and the checksum over the
//! IPv4 pseudo header. [`TcpPacket`] is the byte view; [`TcpRepr`] is what
//! the state machine sees. Decisions made here:
//! - Data offset must be 5..=15 words and fit the segment, or the segment is
//!   dropped as [`Error::BadDataOffset`] (RFC 9293 §3.1).
//! - Options: unknown kinds are skipped by their length (RFC 9293 §3.1,
//!   MUST-6: ignore options not implemented). A length that is 0, 1, runs
//!   past the header, or is wrong for a known kind drops the segment as
//!   [`Error::BadOptionLength`]. RFC 9293 §3.1 (MUST-7) only requires that
//!   an illegal option length be handled without crashing, and suggests a
//!   reset; a stateless parser cannot reset, and dropping is the
//!   conservative choice. (Linux instead stops parsing options at a bad
//!   length and ignores a known option of the wrong length.)
//! - Window scale shifts above 14 are clamped to 14 (RFC 7323 §2.3).
//! - Port 0 is reserved and never valid on the wire ([`Error::Malformed`]).
//! - The ACK field is only meaningful with the ACK bit (RFC 9293 §3.1);
//!   parse reports it as 0 without the bit, emit writes 0.
//!
//! Parse and emit are the per-segment hot path: they read and write the
//! fixed header through a `[u8; 20]` so there is one length check, and never
//! allocate.

use core::net::Ipv4Addr;

use super::checksum;
use super::{Error, Result};

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
        &self.sack_blocks[..(self.sack_count as usize).min(MAX_SACK_BLOCKS)]
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

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in the high nibble; the low nibble is reserved.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: usize = 20;

    pub const OPT_EOL: u8 = 0;
    pub const OPT_NOP: u8 = 1;
    pub const OPT_MSS: u8 = 2;
    pub const OPT_WS: u8 = 3;
    pub const OPT_SACK_PERM: u8 = 4;
    pub const OPT_SACK: u8 = 5;
    pub const OPT_TS: u8 = 8;

    pub const OPT_MSS_LEN: u8 = 4;
    pub const OPT_WS_LEN: u8 = 3;
    pub const OPT_SACK_PERM_LEN: u8 = 2;
    pub const OPT_TS_LEN: u8 = 10;
    /// A SACK option is 2 bytes plus 8 per block.
    pub const OPT_SACK_BASE_LEN: usize = 2;
    pub const SACK_BLOCK_LEN: usize = 8;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Most option bytes a header can carry (data offset 15).
pub const MAX_OPTIONS_LEN: usize = 40;
/// The longest TCP header, options included.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + MAX_OPTIONS_LEN;
/// Largest window scale shift (RFC 7323 §2.3).
pub const MAX_WINDOW_SCALE: u8 = 14;

#[inline(always)]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline(always)]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Checksum over the IPv4 pseudo header and `segment` (RFC 9293 §3.1).
/// Returns the ones-complement sum, not inverted.
#[inline]
fn segment_sum(src_addr: Ipv4Addr, dst_addr: Ipv4Addr, segment: &[u8]) -> u16 {
    let pseudo = checksum::pseudo_header_v4(src_addr, dst_addr, 6, segment.len() as u32);
    checksum::combine(&[pseudo, checksum::data(segment)])
}

/// A read/write view of a TCP segment. The buffer is the whole segment
/// (the IPv4 payload): the checksum covers all of it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` below 20 bytes; `BadDataOffset` when the data offset is
    /// below 5 words or past the end of the buffer. After this, every getter
    /// (options and payload included) is in bounds.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len() as usize;
        if header_len < HEADER_LEN || header_len > data.len() {
            return Err(Error::BadDataOffset);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    #[inline]
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(be32(&self.buffer.as_ref()[field::SEQ_NUM]))
    }

    /// The raw acknowledgment field, whether or not ACK is set.
    #[inline]
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(be32(&self.buffer.as_ref()[field::ACK_NUM]))
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The four reserved bits after the data offset (RFC 9293 §3.1).
    #[inline]
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFF] & 0x0f
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The raw (unscaled) window field.
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    #[inline]
    pub fn urgent_pointer(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::URGENT])
    }

    /// Option bytes: `20..header_len`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len() as usize]
    }

    /// Sequence space occupied: payload plus SYN and FIN (RFC 9293 §3.4).
    #[inline]
    pub fn segment_len(&self) -> usize {
        let flags = self.flags();
        self.buffer.as_ref().len() - self.header_len() as usize
            + flags.syn() as usize
            + flags.fin() as usize
    }

    /// The checksum over pseudo header and the whole buffer verifies.
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        segment_sum(src_addr, dst_addr, self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len() as usize..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes())
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes())
    }

    #[inline]
    pub fn set_seq_number(&mut self, value: SeqNumber) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&value.0.to_be_bytes())
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: SeqNumber) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&value.0.to_be_bytes())
    }

    /// Sets the data offset from a length in bytes (a multiple of 4, 20..=60);
    /// clears the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::DATA_OFF] = (value / 4) << 4
    }

    #[inline]
    pub fn set_flags(&mut self, value: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = value.0
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::WIN_SIZE].copy_from_slice(&value.to_be_bytes())
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes())
    }

    #[inline]
    pub fn set_urgent_pointer(&mut self, value: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&value.to_be_bytes())
    }

    /// Mutable option bytes: `20..header_len`.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len() as usize;
        &mut self.buffer.as_mut()[field::OPTIONS..header_len]
    }

    /// Mutable payload: everything after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len() as usize;
        &mut self.buffer.as_mut()[header_len..]
    }

    /// Computes and writes the checksum over pseudo header and the whole
    /// buffer.
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let sum = segment_sum(src_addr, dst_addr, self.buffer.as_ref());
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl TcpOptions {
    /// Parses an option area (the bytes between the fixed header and the
    /// payload). EOL ends the list; NOPs are skipped anywhere; unknown kinds
    /// are skipped by their length. Errors with `BadOptionLength` on a length
    /// of 0 or 1, an option running past `data`, or a known kind of the wrong
    /// length. A SACK option with more than four blocks keeps the first four;
    /// a repeated option replaces the earlier one.
    #[inline]
    pub fn parse(data: &[u8]) -> Result<TcpOptions> {
        use field::*;
        // Fast path, inlined into the caller: what Linux puts on every
        // established-state segment.
        if let [OPT_NOP, OPT_NOP, OPT_TS, OPT_TS_LEN, a, b, c, d, e, f, g, h] = *data {
            return Ok(TcpOptions {
                timestamp: Some(TcpTimestamp {
                    tsval: u32::from_be_bytes([a, b, c, d]),
                    tsecr: u32::from_be_bytes([e, f, g, h]),
                }),
                ..TcpOptions::default()
            });
        }
        Self::parse_general(data)
    }

    #[inline(never)]
    fn parse_general(data: &[u8]) -> Result<TcpOptions> {
        use field::*;
        let mut options = TcpOptions::default();

        let mut rest = data;
        loop {
            match *rest {
                [] | [OPT_EOL, ..] => break,
                [OPT_NOP, ref tail @ ..] => rest = tail,
                [_] => return Err(Error::BadOptionLength),
                [kind, len, ref tail @ ..] => {
                    let len = len as usize;
                    if len < 2 || len - 2 > tail.len() {
                        return Err(Error::BadOptionLength);
                    }
                    let (body, next) = tail.split_at(len - 2);
                    match (kind, body) {
                        (OPT_MSS, &[a, b]) => options.mss = Some(u16::from_be_bytes([a, b])),
                        (OPT_WS, &[shift]) => {
                            // RFC 7323 §2.3: use 14 when a larger shift is received.
                            options.window_scale = Some(shift.min(MAX_WINDOW_SCALE))
                        }
                        (OPT_SACK_PERM, &[]) => options.sack_permitted = true,
                        (OPT_TS, &[a, b, c, d, e, f, g, h]) => {
                            options.timestamp = Some(TcpTimestamp {
                                tsval: u32::from_be_bytes([a, b, c, d]),
                                tsecr: u32::from_be_bytes([e, f, g, h]),
                            })
                        }
                        (OPT_SACK, _) if !body.is_empty() && body.len() % SACK_BLOCK_LEN == 0 => {
                            options.sack_blocks = Default::default();
                            let mut count = 0;
                            for (slot, block) in options
                                .sack_blocks
                                .iter_mut()
                                .zip(body.chunks_exact(SACK_BLOCK_LEN))
                            {
                                *slot =
                                    (SeqNumber(be32(&block[0..4])), SeqNumber(be32(&block[4..8])));
                                count += 1;
                            }
                            options.sack_count = count;
                        }
                        (OPT_MSS | OPT_WS | OPT_SACK_PERM | OPT_SACK | OPT_TS, _) => {
                            return Err(Error::BadOptionLength)
                        }
                        _ => {}
                    }
                    rest = next;
                }
            }
        }
        Ok(options)
    }

    /// How many SACK blocks [`emit`](Self::emit) writes: as many of
    /// `sack_count` as fit in 40 bytes beside the other options.
    #[inline]
    fn emitted_sack_blocks(&self, fixed_len: usize) -> usize {
        let wanted = (self.sack_count as usize).min(MAX_SACK_BLOCKS);
        if wanted == 0 {
            return 0;
        }
        let room = MAX_OPTIONS_LEN.saturating_sub(fixed_len + 2 + field::OPT_SACK_BASE_LEN);
        wanted.min(room / field::SACK_BLOCK_LEN)
    }

    /// Bytes of every option except SACK blocks, in the emitted layout.
    #[inline]
    fn fixed_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        if self.timestamp.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// The timestamp, if it is the only option: the layout of nearly every
    /// segment of an established connection, which `emit` writes without
    /// its general layout rules (as parse reads it).
    #[inline]
    fn timestamp_only(&self) -> Option<TcpTimestamp> {
        match (
            self.timestamp,
            self.mss,
            self.window_scale,
            self.sack_permitted,
            self.sack_count,
        ) {
            (Some(ts), None, None, false, 0) => Some(ts),
            _ => None,
        }
    }

    /// Bytes [`emit`](Self::emit) writes: a multiple of 4, at most 40.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        let fixed = self.fixed_len();
        match self.emitted_sack_blocks(fixed) {
            0 => fixed,
            n => fixed + 2 + field::OPT_SACK_BASE_LEN + n * field::SACK_BLOCK_LEN,
        }
    }

    /// Writes the options in Linux's layout, every option 4-byte aligned:
    /// `MSS`; then `SACK-permitted, TS` packed as `4,2,8,10,tsval,tsecr`, or
    /// `NOP,NOP,TS`, or `NOP,NOP,SACK-permitted`; then `NOP,WS`; then
    /// `NOP,NOP,SACK(blocks)`. SACK blocks that do not fit in 40 bytes are
    /// dropped from the end (the most recent block is first, RFC 2018 §4).
    /// Bytes of `buf` after [`buffer_len`](Self::buffer_len) are set to
    /// EOL (0). Returns `buffer_len()`.
    ///
    /// # Panics
    /// If `buf` is shorter than `buffer_len()`.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        use field::*;
        if let Some(ts) = self.timestamp_only() {
            let (out, rest) = buf
                .split_first_chunk_mut::<12>()
                .expect("TCP option buffer shorter than options");
            out[0..4].copy_from_slice(&[OPT_NOP, OPT_NOP, OPT_TS, OPT_TS_LEN]);
            out[4..8].copy_from_slice(&ts.tsval.to_be_bytes());
            out[8..12].copy_from_slice(&ts.tsecr.to_be_bytes());
            rest.fill(OPT_EOL);
            return 12;
        }
        self.emit_general(buf)
    }

    #[inline(never)]
    fn emit_general(&self, buf: &mut [u8]) -> usize {
        use field::*;
        let fixed = self.fixed_len();
        let sack_blocks = self.emitted_sack_blocks(fixed);
        let len = self.buffer_len();
        let (out, rest) = buf.split_at_mut(len);
        rest.fill(OPT_EOL);
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [a, b] = mss.to_be_bytes();
            put(&[OPT_MSS, OPT_MSS_LEN, a, b]);
        }
        match (self.sack_permitted, self.timestamp) {
            (sack_permitted, Some(ts)) => {
                if sack_permitted {
                    put(&[OPT_SACK_PERM, OPT_SACK_PERM_LEN, OPT_TS, OPT_TS_LEN]);
                } else {
                    put(&[OPT_NOP, OPT_NOP, OPT_TS, OPT_TS_LEN]);
                }
                put(&ts.tsval.to_be_bytes());
                put(&ts.tsecr.to_be_bytes());
            }
            (true, None) => put(&[OPT_NOP, OPT_NOP, OPT_SACK_PERM, OPT_SACK_PERM_LEN]),
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[OPT_NOP, OPT_WS, OPT_WS_LEN, shift]);
        }
        if sack_blocks > 0 {
            let option_len = (OPT_SACK_BASE_LEN + sack_blocks * SACK_BLOCK_LEN) as u8;
            put(&[OPT_NOP, OPT_NOP, OPT_SACK, option_len]);
            for &(left, right) in &self.sack_blocks[..sack_blocks] {
                put(&left.0.to_be_bytes());
                put(&right.0.to_be_bytes());
            }
        }
        debug_assert_eq!(at, len);
        len
    }
}

impl<'a> TcpRepr<'a> {
    /// Reads a segment. `src_addr`/`dst_addr` are the IPv4 header's, for the
    /// pseudo header; with `verify_checksum` false (checksum offloaded to a
    /// NIC that has already verified it) the checksum is not read.
    ///
    /// Checks, in order: length (`Truncated`, `BadDataOffset`), checksum
    /// (`BadChecksum`), ports (`Malformed` for port 0), options (errors of
    /// [`TcpOptions::parse`]). Works on an unchecked view too.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        verify_checksum: bool,
    ) -> Result<TcpRepr<'a>> {
        let buffer: &'a T = packet.buffer;
        let data: &'a [u8] = buffer.as_ref();
        let (fixed, rest) = data
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(Error::Truncated)?;
        let header_len = (fixed[field::DATA_OFF] >> 4) as usize * 4;
        if header_len < HEADER_LEN || header_len > data.len() {
            return Err(Error::BadDataOffset);
        }
        if verify_checksum && segment_sum(src_addr, dst_addr, data) != 0xffff {
            return Err(Error::BadChecksum);
        }
        let src_port = be16(&fixed[field::SRC_PORT]);
        let dst_port = be16(&fixed[field::DST_PORT]);
        if src_port == 0 || dst_port == 0 {
            return Err(Error::Malformed);
        }
        let (options, payload) = rest.split_at(header_len - HEADER_LEN);
        let flags = TcpFlags(fixed[field::FLAGS]);
        let ack_number = if flags.ack() {
            SeqNumber(be32(&fixed[field::ACK_NUM]))
        } else {
            SeqNumber(0)
        };
        let mut repr = TcpRepr {
            src_port,
            dst_port,
            seq_number: SeqNumber(be32(&fixed[field::SEQ_NUM])),
            ack_number,
            flags,
            window_len: be16(&fixed[field::WIN_SIZE]),
            urgent_pointer: be16(&fixed[field::URGENT]),
            options: TcpOptions::default(),
            payload,
        };
        // Options are decoded straight into the Repr: building them apart
        // and moving them in costs a store-forwarding stall per segment.
        use field::{OPT_NOP, OPT_TS, OPT_TS_LEN};
        match *options {
            [] => {}
            [OPT_NOP, OPT_NOP, OPT_TS, OPT_TS_LEN, a, b, c, d, e, f, g, h] => {
                repr.options.timestamp = Some(TcpTimestamp {
                    tsval: u32::from_be_bytes([a, b, c, d]),
                    tsecr: u32::from_be_bytes([e, f, g, h]),
                })
            }
            _ => repr.options = TcpOptions::parse_general(options)?,
        }
        Ok(repr)
    }

    /// Header length emit writes: 20 plus the options, at most 60.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    /// Segment length emit writes: header plus payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment into the first [`buffer_len`](Self::buffer_len)
    /// bytes of `packet`: header, options (see [`TcpOptions::emit`]) and
    /// payload. The acknowledgment field is written as 0 without the ACK
    /// flag. With `fill_checksum` the checksum over the pseudo header and
    /// those bytes is filled in; without it the field is left 0 (for
    /// offload or a caller that fills it later).
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        fill_checksum: bool,
    ) {
        self.emit_inner(packet, src_addr, dst_addr, fill_checksum, true)
    }

    /// [`emit`](Self::emit) for a buffer that already holds the payload
    /// after the header and options (`FrameBatch::push_with_tail` put it
    /// there): writes the header and options and the checksum over it all.
    pub fn emit_around_payload<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        fill_checksum: bool,
    ) {
        self.emit_inner(packet, src_addr, dst_addr, fill_checksum, false)
    }

    fn emit_inner<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        fill_checksum: bool,
        copy_payload: bool,
    ) {
        let header_len = self.header_len();
        let total_len = header_len + self.payload.len();
        let segment = &mut packet.buffer.as_mut()[..total_len];
        let (header, payload) = segment.split_at_mut(header_len);
        self.emit_header(header);
        if copy_payload {
            payload.copy_from_slice(self.payload);
        } else {
            debug_assert_eq!(&payload[..], self.payload, "payload not in place");
        }

        if fill_checksum {
            let sum = !segment_sum(src_addr, dst_addr, segment);
            segment[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
    }

    /// This segment cut into segments of `mss` payload bytes (the last may
    /// be shorter), as segmentation offload cuts it: each has the same
    /// header but its own sequence number, and PSH and FIN stay on the
    /// last. A segment without payload comes out whole.
    pub fn split(&self, mss: usize) -> impl Iterator<Item = TcpRepr<'a>> {
        let whole = *self;
        let count = whole.split_count(mss);
        let mss = mss.max(1);
        let inner = TcpFlags(whole.flags.0 & !(TcpFlags::PSH.0 | TcpFlags::FIN.0));
        (0..count).map(move |i| {
            let at = (i * mss).min(whole.payload.len());
            let end = (at + mss).min(whole.payload.len());
            TcpRepr {
                seq_number: whole.seq_number + at,
                flags: if i + 1 == count { whole.flags } else { inner },
                payload: &whole.payload[at..end],
                ..whole
            }
        })
    }

    /// How many segments [`split`](Self::split) cuts this one into.
    pub fn split_count(&self, mss: usize) -> usize {
        self.payload.len().div_ceil(mss.max(1)).max(1)
    }

    /// Writes the header and options, with the checksum field 0, into the
    /// first [`header_len`](Self::header_len) bytes of `header`; returns
    /// that length. For a sender that places the payload itself and fills
    /// the checksum with [`checksum_split`](Self::checksum_split).
    ///
    /// # Panics
    /// If `header` is shorter than `header_len()`.
    pub fn emit_header(&self, header: &mut [u8]) -> usize {
        // Timestamps only, the header of nearly every segment: a constant
        // length, so the slices below need no computed bounds.
        if self.options.timestamp_only().is_some() {
            const LEN: usize = HEADER_LEN + 12;
            let (whole, _) = header
                .split_first_chunk_mut::<LEN>()
                .expect("TCP header buffer shorter than the header");
            let (fixed, options) = whole
                .split_first_chunk_mut::<HEADER_LEN>()
                .expect("length checked above");
            self.emit_fixed(fixed, LEN);
            self.options.emit(options);
            return LEN;
        }
        let options_len = self.options.buffer_len();
        let header_len = HEADER_LEN + options_len;
        let (fixed, rest) = header[..header_len]
            .split_first_chunk_mut::<HEADER_LEN>()
            .expect("TCP header buffer shorter than the header");
        self.emit_fixed(fixed, header_len);
        if options_len > 0 {
            self.options.emit(rest);
        }
        header_len
    }

    /// The 20 bytes before the options, checksum 0.
    #[inline(always)]
    fn emit_fixed(&self, fixed: &mut [u8; HEADER_LEN], header_len: usize) {
        let ack_number = if self.flags.ack() {
            self.ack_number.0
        } else {
            0
        };
        fixed[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        fixed[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        fixed[field::SEQ_NUM].copy_from_slice(&self.seq_number.0.to_be_bytes());
        fixed[field::ACK_NUM].copy_from_slice(&ack_number.to_be_bytes());
        fixed[field::DATA_OFF] = ((header_len / 4) as u8) << 4;
        fixed[field::FLAGS] = self.flags.0;
        fixed[field::WIN_SIZE].copy_from_slice(&self.window_len.to_be_bytes());
        fixed[field::CHECKSUM].copy_from_slice(&[0, 0]);
        fixed[field::URGENT].copy_from_slice(&self.urgent_pointer.to_be_bytes());
    }

    /// The header [`emit_header`](Self::emit_header) writes, as 32-bit
    /// big-endian words from the field values (checksum 0; the no-option
    /// header padded with zero words), for a header with no options or
    /// timestamps only (nearly every segment of a connection); `None` for
    /// any other.
    #[inline]
    fn header_words(&self) -> Option<[u32; 8]> {
        let (ts, len) = match self.options.timestamp_only() {
            Some(ts) => (ts, HEADER_LEN + 12),
            None if self.options.buffer_len() == 0 => (TcpTimestamp::default(), HEADER_LEN),
            None => return None,
        };
        let ack = if self.flags.ack() {
            self.ack_number.0
        } else {
            0
        };
        let options = if len > HEADER_LEN {
            u32::from_be_bytes([
                field::OPT_NOP,
                field::OPT_NOP,
                field::OPT_TS,
                field::OPT_TS_LEN,
            ])
        } else {
            0
        };
        Some([
            (self.src_port as u32) << 16 | self.dst_port as u32,
            self.seq_number.0,
            ack,
            ((len / 4) as u32) << 28 | (self.flags.0 as u32) << 16 | self.window_len as u32,
            self.urgent_pointer as u32,
            options,
            ts.tsval,
            ts.tsecr,
        ])
    }

    /// The checksum field's value for a segment with this header followed
    /// by `payload`: the header summed from its fields when it has no
    /// options or timestamps only, else from `header` (as
    /// [`emit_header`](Self::emit_header) wrote it, checksum 0).
    /// Summing the bytes just written would read them back at once, which
    /// the CPU serves late: its wide loads cannot be forwarded from the
    /// narrow stores that wrote them.
    #[inline]
    pub fn checksum_from_fields(
        &self,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        header: &[u8],
        payload: &[u8],
    ) -> u16 {
        let Some(h) = self.header_words() else {
            return Self::checksum_split(src_addr, dst_addr, header, payload);
        };
        // The pseudo header (RFC 9293 §3.1: source, destination, zero,
        // protocol 6, TCP length), the header, then the payload.
        let len = (header.len() + payload.len()) as u32;
        let words = [
            u32::from(src_addr),
            u32::from(dst_addr),
            6 << 16 | len,
            h[0],
            h[1],
            h[2],
            h[3],
            h[4],
            h[5],
            h[6],
            h[7],
        ];
        !checksum::words_then_data(&words, payload)
    }

    /// The checksum field's value for a segment whose `header` (as
    /// [`emit_header`](Self::emit_header) wrote it, checksum 0) is followed
    /// by `payload`: the two are summed apart, so neither is copied first.
    #[inline]
    pub fn checksum_split(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        header: &[u8],
        payload: &[u8],
    ) -> u16 {
        // The header is a multiple of 4 bytes long, so the sums combine.
        let len = (header.len() + payload.len()) as u32;
        let pseudo = checksum::pseudo_header_v4(src_addr, dst_addr, 6, len);
        !checksum::combine(&[pseudo, checksum::concat(&[header, payload])])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 90, 2);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 90, 1);

    /// The first SYN of the fixture capture (Linux 6.x client):
    /// MSS 1460, SACK-permitted, TS, NOP, WS 10.
    static SYN: [u8; 40] = [
        0xb8, 0x6a, 0x00, 0x07, 0x6d, 0xd0, 0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x3a, 0x49, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x5b, 0xd7,
        0x46, 0x8d, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    /// A pure ACK from the server with NOP, NOP, TS.
    static ACK: [u8; 32] = [
        0x00, 0x07, 0xb8, 0x6a, 0x3c, 0x1f, 0xf6, 0xb7, 0x6d, 0xd0, 0x87, 0x28, 0x80, 0x10, 0x00,
        0x43, 0x53, 0xbe, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x69, 0x85, 0x69, 0xea, 0x5b, 0xd7,
        0x4a, 0x96,
    ];

    /// A client ACK with TS and one SACK block.
    static SACK: [u8; 44] = [
        0xb8, 0x6a, 0x00, 0x07, 0x6d, 0xd0, 0xba, 0x10, 0x3c, 0x20, 0x23, 0xf7, 0xb0, 0x10, 0x00,
        0x47, 0xec, 0x2e, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x5b, 0xd7, 0x4a, 0xba, 0x69, 0x85,
        0x69, 0xeb, 0x01, 0x01, 0x05, 0x0a, 0x3c, 0x20, 0x29, 0x9f, 0x3c, 0x20, 0x2f, 0x47,
    ];

    fn syn_repr() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 47210,
            dst_port: 7,
            seq_number: SeqNumber(0x6dd0817f),
            ack_number: SeqNumber(0),
            flags: TcpFlags::SYN,
            window_len: 64240,
            urgent_pointer: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(10),
                sack_permitted: true,
                timestamp: Some(TcpTimestamp {
                    tsval: 0x5bd7468d,
                    tsecr: 0,
                }),
                ..TcpOptions::default()
            },
            payload: &[],
        }
    }

    fn sack_options() -> TcpOptions {
        let mut options = TcpOptions {
            timestamp: Some(TcpTimestamp {
                tsval: 0x5bd74aba,
                tsecr: 0x698569eb,
            }),
            sack_count: 1,
            ..TcpOptions::default()
        };
        options.sack_blocks[0] = (SeqNumber(0x3c20299f), SeqNumber(0x3c202f47));
        options
    }

    fn emit_to_vec(repr: &TcpRepr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut bytes[..]),
            src,
            dst,
            true,
        );
        bytes
    }

    fn blocks(n: u32) -> TcpOptions {
        let mut options = TcpOptions {
            sack_count: n as u8,
            ..TcpOptions::default()
        };
        for i in 0..n.min(4) {
            options.sack_blocks[i as usize] = (SeqNumber(1000 * i), SeqNumber(1000 * i + 500));
        }
        options
    }

    #[test]
    fn linux_syn_parses_with_all_options() {
        let packet = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((packet.src_port(), packet.dst_port()), (47210, 7));
        assert_eq!(packet.header_len(), 40);
        assert_eq!(packet.flags(), TcpFlags::SYN);
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0x3a49);
        assert_eq!(packet.options().len(), 20);
        assert!(packet.payload().is_empty());
        assert_eq!(packet.segment_len(), 1);
        assert!(packet.verify_checksum(CLIENT, SERVER));
        assert_eq!(
            TcpRepr::parse(&packet, CLIENT, SERVER, true),
            Ok(syn_repr())
        );
    }

    #[test]
    fn emit_reproduces_linux_syn_byte_for_byte() {
        let repr = syn_repr();
        assert_eq!(repr.header_len(), 40);
        assert_eq!(emit_to_vec(&repr, CLIENT, SERVER), SYN);
    }

    #[test]
    fn pure_ack_with_timestamps_round_trips_byte_for_byte() {
        let packet = TcpPacket::new_checked(&ACK[..]).unwrap();
        let repr = TcpRepr::parse(&packet, SERVER, CLIENT, true).unwrap();
        assert_eq!(repr.flags, TcpFlags::ACK);
        assert_eq!(repr.ack_number, SeqNumber(0x6dd08728));
        assert_eq!(
            repr.options.timestamp,
            Some(TcpTimestamp {
                tsval: 0x698569ea,
                tsecr: 0x5bd74a96
            })
        );
        assert_eq!(emit_to_vec(&repr, SERVER, CLIENT), ACK);
    }

    #[test]
    fn sack_segment_round_trips_byte_for_byte() {
        let packet = TcpPacket::new_checked(&SACK[..]).unwrap();
        let repr = TcpRepr::parse(&packet, CLIENT, SERVER, true).unwrap();
        assert_eq!(repr.options, sack_options());
        assert_eq!(
            repr.options.sack_blocks(),
            &[(SeqNumber(0x3c20299f), SeqNumber(0x3c202f47))]
        );
        assert_eq!(emit_to_vec(&repr, CLIENT, SERVER), SACK);
    }

    #[test]
    fn segment_with_payload_round_trips() {
        let payload = b"hello, echo";
        let repr = TcpRepr {
            src_port: 7,
            dst_port: 47212,
            seq_number: SeqNumber(0xffff_fff0),
            ack_number: SeqNumber(17),
            flags: TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN,
            window_len: 502,
            urgent_pointer: 0,
            options: TcpOptions::default(),
            payload,
        };
        let bytes = emit_to_vec(&repr, SERVER, CLIENT);
        assert_eq!(bytes.len(), 20 + payload.len());
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), payload);
        assert_eq!(packet.segment_len(), payload.len() + 1);
        assert_eq!(TcpRepr::parse(&packet, SERVER, CLIENT, true), Ok(repr));
    }

    #[test]
    fn ack_number_is_zero_without_the_ack_flag() {
        let mut repr = syn_repr();
        repr.ack_number = SeqNumber(12345);
        let bytes = emit_to_vec(&repr, CLIENT, SERVER);
        assert_eq!(&bytes[8..12], &[0, 0, 0, 0]);
        // A peer that leaves garbage there: parse reports 0.
        let mut bytes = SYN;
        bytes[8..12].copy_from_slice(&[1, 2, 3, 4]);
        TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(CLIENT, SERVER);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.ack_number(), SeqNumber(0x01020304));
        let parsed = TcpRepr::parse(&packet, CLIENT, SERVER, true).unwrap();
        assert_eq!(parsed.ack_number, SeqNumber(0));
    }

    #[test]
    fn emit_without_checksum_leaves_field_zero() {
        let repr = syn_repr();
        let mut bytes = vec![0xff; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut bytes[..]),
            CLIENT,
            SERVER,
            false,
        );
        assert_eq!(&bytes[16..18], &[0, 0]);
    }

    #[test]
    fn setters_round_trip_through_getters() {
        let mut bytes = [0u8; 30];
        let mut p = TcpPacket::new_unchecked(&mut bytes[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_seq_number(SeqNumber(3));
        p.set_ack_number(SeqNumber(4));
        p.set_header_len(24);
        p.set_flags(TcpFlags::SYN | TcpFlags::ACK);
        p.set_window_len(5);
        p.set_urgent_pointer(6);
        p.options_mut().copy_from_slice(&[2, 4, 0x05, 0xb4]);
        p.payload_mut().copy_from_slice(&[9; 6]);
        p.fill_checksum(CLIENT, SERVER);
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (1, 2));
        assert_eq!(
            (p.seq_number(), p.ack_number()),
            (SeqNumber(3), SeqNumber(4))
        );
        assert_eq!((p.header_len(), p.reserved()), (24, 0));
        assert_eq!(p.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!((p.window_len(), p.urgent_pointer()), (5, 6));
        assert_eq!(p.options(), &[2, 4, 0x05, 0xb4]);
        assert_eq!(p.payload(), &[9; 6]);
        assert!(p.verify_checksum(CLIENT, SERVER));
        let repr = TcpRepr::parse(&p, CLIENT, SERVER, true).unwrap();
        assert_eq!(repr.options.mss, Some(1460));
    }

    #[test]
    fn short_segment_is_truncated() {
        for len in [0, 1, 19] {
            assert_eq!(
                TcpPacket::new_checked(&SYN[..len]).err(),
                Some(Error::Truncated)
            );
            let p = TcpPacket::new_unchecked(&SYN[..len]);
            assert_eq!(
                TcpRepr::parse(&p, CLIENT, SERVER, false),
                Err(Error::Truncated)
            );
        }
    }

    #[test]
    fn data_offset_below_five_or_past_end_is_rejected() {
        for offset in [0u8, 1, 4] {
            let mut b = SYN;
            b[12] = offset << 4;
            assert_eq!(
                TcpPacket::new_checked(&b[..]).err(),
                Some(Error::BadDataOffset)
            );
            let p = TcpPacket::new_unchecked(&b[..]);
            assert_eq!(
                TcpRepr::parse(&p, CLIENT, SERVER, false),
                Err(Error::BadDataOffset)
            );
        }
        // Data offset 10 (40 bytes) but only 39 bytes, and offset 15.
        assert_eq!(
            TcpPacket::new_checked(&SYN[..39]).err(),
            Some(Error::BadDataOffset)
        );
        let mut b = SYN;
        b[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(Error::BadDataOffset)
        );
    }

    #[test]
    fn corrupted_segment_fails_checksum_unless_unverified() {
        let mut b = SACK;
        b[40] ^= 0x01;
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum(CLIENT, SERVER));
        assert_eq!(
            TcpRepr::parse(&p, CLIENT, SERVER, true),
            Err(Error::BadChecksum)
        );
        assert!(TcpRepr::parse(&p, CLIENT, SERVER, false).is_ok());
        // Wrong pseudo-header addresses fail too.
        let p = TcpPacket::new_checked(&SACK[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, SERVER, CLIENT, true).map(|_| ()), Ok(()));
        let other = Ipv4Addr::new(10, 77, 90, 3);
        assert_eq!(
            TcpRepr::parse(&p, other, SERVER, true),
            Err(Error::BadChecksum)
        );
    }

    #[test]
    fn port_zero_is_malformed() {
        for range in [0..2, 2..4] {
            let mut b = ACK;
            b[range].copy_from_slice(&[0, 0]);
            TcpPacket::new_unchecked(&mut b[..]).fill_checksum(SERVER, CLIENT);
            let p = TcpPacket::new_checked(&b[..]).unwrap();
            assert_eq!(
                TcpRepr::parse(&p, SERVER, CLIENT, true),
                Err(Error::Malformed)
            );
        }
    }

    #[test]
    fn bad_option_in_segment_is_reported() {
        let mut b = SYN;
        b[21] = 5; // MSS option claiming 5 bytes
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum(CLIENT, SERVER);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&p, CLIENT, SERVER, true),
            Err(Error::BadOptionLength)
        );
    }

    #[test]
    fn options_eol_ends_the_list() {
        let o = TcpOptions::parse(&[2, 4, 0x05, 0xb4, 0, 3, 0xff, 0xff]).unwrap();
        assert_eq!(
            o,
            TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            }
        );
        assert_eq!(TcpOptions::parse(&[0]).unwrap(), TcpOptions::default());
        assert_eq!(TcpOptions::parse(&[]).unwrap(), TcpOptions::default());
    }

    #[test]
    fn options_nops_anywhere_and_unknown_kinds_are_skipped() {
        let o = TcpOptions::parse(&[1, 1, 1, 3, 3, 7, 30, 4, 0xaa, 0xbb, 1, 4, 2, 1]).unwrap();
        assert_eq!(o.window_scale, Some(7));
        assert!(o.sack_permitted);
        // Unknown kind with an empty body.
        assert_eq!(TcpOptions::parse(&[99, 2]).unwrap(), TcpOptions::default());
    }

    #[test]
    fn options_length_zero_one_or_past_end_is_bad() {
        for bad in [
            &[2u8, 0][..],
            &[2, 1],
            &[99, 0],
            &[99, 1, 1, 1],
            &[3],
            &[1, 1, 8],
            &[8, 10, 0, 0],
            &[99, 5, 0, 0],
        ] {
            assert_eq!(
                TcpOptions::parse(bad),
                Err(Error::BadOptionLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn options_known_kind_with_wrong_length_is_bad() {
        for bad in [
            &[2u8, 3, 5][..],
            &[2, 6, 5, 0xb4, 0, 0],
            &[3, 2],
            &[3, 4, 7, 0],
            &[4, 3, 0],
            &[8, 8, 0, 0, 0, 0, 0, 0],
            &[5, 2],
            &[5, 9, 0, 0, 0, 0, 0, 0, 0],
            &[5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(
                TcpOptions::parse(bad),
                Err(Error::BadOptionLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn window_scale_above_14_is_clamped() {
        for (shift, expect) in [(0u8, 0u8), (14, 14), (15, 14), (255, 14)] {
            let o = TcpOptions::parse(&[3, 3, shift]).unwrap();
            assert_eq!(o.window_scale, Some(expect));
        }
    }

    #[test]
    fn sack_with_more_than_four_blocks_keeps_the_first_four() {
        let mut bytes = vec![5u8, 2 + 5 * 8];
        for i in 0..5u32 {
            bytes.extend_from_slice(&(i * 10).to_be_bytes());
            bytes.extend_from_slice(&(i * 10 + 5).to_be_bytes());
        }
        let o = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(o.sack_count, 4);
        assert_eq!(o.sack_blocks()[3], (SeqNumber(30), SeqNumber(35)));
    }

    #[test]
    fn repeated_sack_option_replaces_the_earlier_one() {
        let mut bytes = vec![5u8, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        bytes.extend_from_slice(&[5, 10, 0, 0, 0, 9, 0, 0, 0, 10]);
        let o = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(o, {
            let mut e = TcpOptions {
                sack_count: 1,
                ..TcpOptions::default()
            };
            e.sack_blocks[0] = (SeqNumber(9), SeqNumber(10));
            e
        });
    }

    #[test]
    fn syn_layout_without_sack_permitted_uses_nop_nop_ts() {
        let o = TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            timestamp: Some(TcpTimestamp { tsval: 1, tsecr: 0 }),
            ..TcpOptions::default()
        };
        let mut buf = [0xffu8; 40];
        assert_eq!(o.emit(&mut buf), 20);
        assert_eq!(
            &buf[..20],
            &[2, 4, 5, 0xb4, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]
        );
        assert!(buf[20..].iter().all(|&b| b == 0), "rest is EOL");
        assert_eq!(TcpOptions::parse(&buf).unwrap(), o);
    }

    #[test]
    fn syn_layout_without_timestamps_uses_nop_nop_sack_permitted() {
        let o = TcpOptions {
            mss: Some(536),
            window_scale: Some(0),
            sack_permitted: true,
            ..TcpOptions::default()
        };
        let mut buf = [0u8; 12];
        assert_eq!(o.buffer_len(), 12);
        o.emit(&mut buf);
        assert_eq!(buf, [2, 4, 2, 0x18, 1, 1, 4, 2, 1, 3, 3, 0]);
        assert_eq!(TcpOptions::parse(&buf).unwrap(), o);
    }

    #[test]
    fn sack_blocks_follow_timestamps_and_fit_in_40_bytes() {
        let ts = Some(TcpTimestamp { tsval: 7, tsecr: 8 });
        // (timestamps, mss+ws+sackperm, blocks wanted) -> (blocks emitted, len)
        for (with_ts, syn_opts, wanted, emitted, len) in [
            (true, false, 1, 1, 24),
            (true, false, 3, 3, 40),
            (true, false, 4, 3, 40),
            (false, false, 4, 4, 36),
            (true, true, 4, 2, 40),
            (false, false, 0, 0, 0),
        ] {
            let mut o = blocks(wanted);
            if with_ts {
                o.timestamp = ts;
            }
            if syn_opts {
                o.mss = Some(1460);
                o.window_scale = Some(10);
                o.sack_permitted = true;
            }
            assert_eq!(o.buffer_len(), len, "{with_ts} {syn_opts} {wanted}");
            let mut buf = [0u8; 40];
            assert_eq!(o.emit(&mut buf), len);
            let parsed = TcpOptions::parse(&buf).unwrap();
            assert_eq!(parsed.sack_count as u32, emitted);
            assert_eq!(parsed.sack_blocks(), &o.sack_blocks[..emitted as usize]);
            if with_ts && !syn_opts && emitted > 0 {
                assert_eq!(&buf[..4], &[1, 1, 8, 10]);
                assert_eq!(&buf[12..16], &[1, 1, 5, 2 + 8 * emitted as u8]);
            }
        }
    }

    #[test]
    fn repr_with_too_many_options_still_fits_the_header() {
        let mut repr = syn_repr();
        repr.flags = TcpFlags::ACK;
        repr.options.sack_count = 4;
        assert_eq!(repr.header_len(), 60);
        let bytes = emit_to_vec(&repr, CLIENT, SERVER);
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.header_len(), 60);
        let parsed = TcpRepr::parse(&p, CLIENT, SERVER, true).unwrap();
        assert_eq!(parsed.options.sack_count, 2);
    }

    #[test]
    fn split_cuts_the_payload_each_with_its_sequence_number_and_psh_fin_on_the_last() {
        let payload: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let options = TcpOptions {
            timestamp: Some(TcpTimestamp { tsval: 5, tsecr: 6 }),
            ..TcpOptions::default()
        };
        let whole = TcpRepr {
            src_port: 7,
            dst_port: 47212,
            seq_number: SeqNumber(0xffff_fc00),
            ack_number: SeqNumber(17),
            flags: TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN,
            window_len: 502,
            urgent_pointer: 0,
            options,
            payload: &payload,
        };
        let parts: Vec<TcpRepr<'_>> = whole.split(1000).collect();
        assert_eq!(parts.len(), 3);
        let seqs: Vec<u32> = parts.iter().map(|p| p.seq_number.0).collect();
        // The sequence numbers wrap past 2^32 within the burst.
        assert_eq!(seqs, [0xffff_fc00, 0xffff_ffe8, 0x0000_03d0]);
        let lens: Vec<usize> = parts.iter().map(|p| p.payload.len()).collect();
        assert_eq!(lens, [1000, 1000, 500]);
        assert_eq!(parts[0].flags, TcpFlags::ACK);
        assert_eq!(parts[1].flags, TcpFlags::ACK);
        assert_eq!(parts[2].flags, whole.flags);
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|p| p.payload.iter().copied())
            .collect();
        assert_eq!(joined, payload);
        for p in &parts {
            assert_eq!(
                (p.ack_number, p.window_len, p.options),
                (whole.ack_number, 502, options)
            );
        }
        // Without payload, or within one segment, it comes out whole.
        let empty = TcpRepr {
            payload: &[],
            ..whole
        };
        assert_eq!(empty.split(1000).collect::<Vec<_>>(), [empty]);
        let short = TcpRepr {
            payload: &payload[..1000],
            ..whole
        };
        assert_eq!(short.split(1000).collect::<Vec<_>>(), [short]);
    }
}
