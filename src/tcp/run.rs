//! Receive coalescing: in-order data segments of one flow that arrived in
//! one receive burst, handed to the endpoint together (Linux's GRO does the
//! same below its TCP). The endpoint looks the connection up once and, when
//! header prediction holds for the lot, runs the state machine once for all
//! of them; otherwise each segment goes through on its own, exactly as it
//! arrived. What coalesces is what Linux's `tcp_gro_receive` merges: the
//! same ports, ACK, window and options (timestamps included), each segment
//! starting where the one before ended, flags ACK, and PSH only on the
//! last.

use core::net::Ipv4Addr;

use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

/// Most segments one run holds: past 8 the saving per segment hardly
/// grows, and a longer run costs every receive burst its setup.
pub const RUN_MAX: usize = 8;

/// Up to [`RUN_MAX`] segments that may be processed as one (see the module
/// documentation). Empty until [`start`](Self::start) starts it.
pub struct SegmentRun<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// The first segment, whole.
    first: TcpRepr<'a>,
    /// The payloads of the segments after the first.
    rest: [&'a [u8]; RUN_MAX - 1],
    /// Segments held (0: empty).
    count: usize,
    /// The sequence number after the last segment.
    end: SeqNumber,
    /// The last segment carries PSH: nothing may follow it.
    pushed: bool,
}

impl Default for SegmentRun<'_> {
    fn default() -> Self {
        SegmentRun {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            first: TcpRepr {
                src_port: 0,
                dst_port: 0,
                seq_number: SeqNumber(0),
                ack_number: SeqNumber(0),
                flags: TcpFlags::default(),
                window_len: 0,
                urgent_pointer: 0,
                options: TcpOptions::default(),
                payload: &[],
            },
            rest: [&[]; RUN_MAX - 1],
            count: 0,
            end: SeqNumber(0),
            pushed: false,
        }
    }
}

/// May `seg` be part of a run: data with ACK (and PSH), no other flag, and
/// no option but timestamps (a SACK block or a handshake option takes the
/// full path).
#[inline]
fn coalescible(seg: &TcpRepr<'_>) -> bool {
    let o = &seg.options;
    seg.flags.0 & !TcpFlags::PSH.0 == TcpFlags::ACK.0
        && !seg.payload.is_empty()
        && o.sack_count == 0
        && o.mss.is_none()
        && o.window_scale.is_none()
        && !o.sack_permitted
}

impl<'a> SegmentRun<'a> {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Segments held.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn src(&self) -> Ipv4Addr {
        self.src
    }

    pub fn dst(&self) -> Ipv4Addr {
        self.dst
    }

    /// The first segment as it arrived.
    pub fn first(&self) -> &TcpRepr<'a> {
        &self.first
    }

    /// The payloads of the segments after the first, in order.
    pub fn rest(&self) -> &[&'a [u8]] {
        &self.rest[..self.count.saturating_sub(1)]
    }

    /// Payload bytes of all the segments.
    pub fn payload_len(&self) -> usize {
        self.end - self.first.seq_number
    }

    /// Starts the run (which must be empty) with `seg`, if it may be
    /// coalesced.
    #[inline]
    pub fn start(&mut self, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr<'a>) -> bool {
        debug_assert!(self.is_empty());
        if !coalescible(seg) {
            return false;
        }
        self.src = src;
        self.dst = dst;
        self.first = *seg;
        self.count = 1;
        self.end = seg.seq_number + seg.payload.len();
        self.pushed = seg.flags.psh();
        true
    }

    /// Appends `seg` if the run is not empty and `seg` continues it.
    #[inline]
    pub fn append(&mut self, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr<'a>) -> bool {
        if self.count == 0 || !coalescible(seg) {
            return false;
        }
        {
            let f = &self.first;
            // Both coalescible: the timestamps are the only options either
            // can carry.
            if self.pushed
                || self.count == RUN_MAX
                || seg.seq_number != self.end
                || (seg.src_port, seg.dst_port) != (f.src_port, f.dst_port)
                || (src, dst) != (self.src, self.dst)
                || seg.ack_number != f.ack_number
                || seg.window_len != f.window_len
                || seg.options.timestamp != f.options.timestamp
            {
                return false;
            }
        }
        self.rest[self.count - 1] = seg.payload;
        self.count += 1;
        self.end = seg.seq_number + seg.payload.len();
        self.pushed = seg.flags.psh();
        true
    }

    /// Empties the run.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// The segments, each as it arrived.
    pub fn segments(&self) -> impl Iterator<Item = TcpRepr<'a>> + '_ {
        let first = self.first;
        let last = self.count.saturating_sub(1);
        let mut seq = first.seq_number + first.payload.len();
        let rest = self.rest().iter().enumerate().map(move |(i, payload)| {
            let flags = if i + 1 == last && self.pushed {
                TcpFlags::ACK | TcpFlags::PSH
            } else {
                TcpFlags::ACK
            };
            let seg = TcpRepr {
                seq_number: seq,
                flags,
                payload,
                ..first
            };
            seq += payload.len();
            seg
        });
        core::iter::once(first).take(self.count.min(1)).chain(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TcpTimestamp;

    impl<'a> SegmentRun<'a> {
        /// Starts the run if empty, else appends `seg` if it continues it
        /// (what the interface does, without its same-flow hint).
        fn push(&mut self, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr<'a>) -> bool {
            if self.is_empty() {
                self.start(src, dst, seg)
            } else {
                self.append(src, dst, seg)
            }
        }
    }

    const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    fn data(seq: u32, payload: &[u8], flags: TcpFlags) -> TcpRepr<'_> {
        TcpRepr {
            src_port: 4000,
            dst_port: 80,
            seq_number: SeqNumber(seq),
            ack_number: SeqNumber(77),
            flags,
            window_len: 1000,
            urgent_pointer: 0,
            options: TcpOptions {
                timestamp: Some(TcpTimestamp { tsval: 5, tsecr: 6 }),
                ..TcpOptions::default()
            },
            payload,
        }
    }

    #[test]
    fn contiguous_segments_coalesce_and_come_back_out_as_they_arrived() {
        let (p1, p2, p3) = ([1u8; 10], [2u8; 20], [3u8; 5]);
        let segs = [
            data(100, &p1, TcpFlags::ACK),
            data(110, &p2, TcpFlags::ACK),
            data(130, &p3, TcpFlags::ACK | TcpFlags::PSH),
        ];
        let mut run = SegmentRun::default();
        for s in &segs {
            assert!(run.push(A, B, s));
        }
        assert_eq!(run.count(), 3);
        assert_eq!(run.payload_len(), 35);
        assert_eq!(run.rest(), &[&p2[..], &p3[..]]);
        assert_eq!(run.segments().collect::<Vec<_>>(), segs.to_vec());
        // PSH ended the run.
        assert!(!run.push(A, B, &data(135, &p1, TcpFlags::ACK)));
        run.clear();
        assert!(run.is_empty());
        assert_eq!(run.segments().count(), 0);
    }

    #[test]
    fn a_segment_that_does_not_continue_the_run_is_given_back() {
        let p = [7u8; 10];
        let mut run = SegmentRun::default();
        assert!(run.push(A, B, &data(100, &p, TcpFlags::ACK)));
        let mut other_ts = data(110, &p, TcpFlags::ACK);
        other_ts.options.timestamp = Some(TcpTimestamp { tsval: 6, tsecr: 6 });
        let mut other_ack = data(110, &p, TcpFlags::ACK);
        other_ack.ack_number = SeqNumber(78);
        let mut other_window = data(110, &p, TcpFlags::ACK);
        other_window.window_len = 999;
        let mut other_port = data(110, &p, TcpFlags::ACK);
        other_port.src_port = 4001;
        for s in [
            data(111, &p, TcpFlags::ACK), // a gap
            data(100, &p, TcpFlags::ACK), // a repeat
            data(110, &p, TcpFlags::ACK | TcpFlags::FIN),
            data(110, &[], TcpFlags::ACK),
            other_ts,
            other_ack,
            other_window,
            other_port,
        ] {
            assert!(!run.push(A, B, &s), "{s:?}");
        }
        let next = data(110, &p, TcpFlags::ACK);
        assert!(!run.push(B, A, &next), "another address");
        assert_eq!(run.count(), 1);
        assert!(run.push(A, B, &next));
    }

    #[test]
    fn handshake_options_sack_blocks_and_control_flags_never_start_a_run() {
        let p = [7u8; 10];
        let mut sack = data(100, &p, TcpFlags::ACK);
        sack.options.sack_count = 1;
        let mut mss = data(100, &p, TcpFlags::ACK);
        mss.options.mss = Some(1460);
        let mut run = SegmentRun::default();
        for s in [
            sack,
            mss,
            data(100, &p, TcpFlags::ACK | TcpFlags::SYN),
            data(100, &p, TcpFlags::ACK | TcpFlags::RST),
            data(100, &p, TcpFlags::ACK | TcpFlags::URG),
            data(100, &p, TcpFlags::PSH),
        ] {
            assert!(!run.push(A, B, &s), "{s:?}");
            assert!(run.is_empty());
        }
    }

    #[test]
    fn a_run_holds_at_most_run_max_segments() {
        let p = [7u8; 10];
        let mut run = SegmentRun::default();
        for i in 0..RUN_MAX as u32 {
            assert!(run.push(A, B, &data(100 + 10 * i, &p, TcpFlags::ACK)));
        }
        let next = data(100 + 10 * RUN_MAX as u32, &p, TcpFlags::ACK);
        assert!(!run.push(A, B, &next));
        assert_eq!(run.segments().count(), RUN_MAX);
    }
}
