//! The sender's SACK scoreboard (RFC 6675 §3): which bytes above SND.UNA the
//! receiver reported holding (RFC 2018), and the questions loss recovery
//! asks of it — IsLost, the holes, and the pipe estimate.
//!
//! Fixed capacity, no allocation. When full, the highest range is dropped:
//! forgetting a SACKed range only makes the sender retransmit more, never
//! lose data (RFC 2018 §8: SACK information is advisory).

use crate::wire::SeqNumber;

/// Most disjoint SACKed ranges remembered.
pub const SCOREBOARD_RANGES: usize = 16;

/// Most retransmissions watched for loss at once.
pub const RETRANSMISSION_MARKS: usize = 8;

/// A retransmission whose own loss the scoreboard watches for: it is lost
/// once more than (DupThresh - 1)·SMSS bytes above `after` — data sent
/// after it — were SACKed since it went out.
#[derive(Clone, Copy, Debug, Default)]
struct RtxMark {
    start: SeqNumber,
    end: SeqNumber,
    after: SeqNumber,
    /// SACKed bytes above `after` when the retransmission went out.
    baseline: usize,
}

/// The range array (and the retransmission marks) is allocated on the
/// first SACK block, so connections that never see loss pay a pointer for
/// it.
#[derive(Clone, Debug, Default)]
pub struct Scoreboard {
    /// Sorted, disjoint, non-adjacent ranges [start, end); None until used.
    store: Option<Box<Store>>,
    len: usize,
}

#[derive(Clone, Debug)]
struct Store {
    ranges: [(SeqNumber, SeqNumber); SCOREBOARD_RANGES],
    marks: [RtxMark; RETRANSMISSION_MARKS],
    marks_len: usize,
}

impl Scoreboard {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.clear_retransmissions();
    }

    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        match &self.store {
            Some(r) => &r.ranges[..self.len],
            None => &[],
        }
    }

    fn store_mut(&mut self) -> &mut Store {
        self.store.get_or_insert_with(|| {
            Box::new(Store {
                ranges: [(SeqNumber(0), SeqNumber(0)); SCOREBOARD_RANGES],
                marks: [RtxMark::default(); RETRANSMISSION_MARKS],
                marks_len: 0,
            })
        })
    }

    fn ranges_mut(&mut self) -> &mut [(SeqNumber, SeqNumber); SCOREBOARD_RANGES] {
        &mut self.store_mut().ranges
    }

    /// Highest SACKed sequence number (RFC 6675 HighACK-ish), if any.
    pub fn highest(&self) -> Option<SeqNumber> {
        self.ranges().last().map(|r| r.1)
    }

    /// Records SACK blocks from an ACK. Blocks at or below `snd_una` (D-SACK)
    /// or reaching past `snd_max` (never sent: bogus) are ignored. Returns
    /// how many blocks were taken and how many bytes above `snd_una` were
    /// SACKed for the first time (RFC 6675 §2: an ACK that SACKs new data
    /// is a duplicate ACK).
    pub fn update(
        &mut self,
        blocks: &[(SeqNumber, SeqNumber)],
        snd_una: SeqNumber,
        snd_max: SeqNumber,
    ) -> (usize, usize) {
        let before = self.sacked_above(snd_una);
        let mut taken = 0;
        for &(left, right) in blocks {
            if right <= left || right <= snd_una || right > snd_max || left < snd_una - (1 << 30) {
                continue;
            }
            self.insert(left.max(snd_una), right);
            taken += 1;
        }
        let newly = if taken > 0 {
            self.sacked_above(snd_una).saturating_sub(before)
        } else {
            0
        };
        (taken, newly)
    }

    /// Watches the retransmission of [start, end) for loss: data sent after
    /// it lies above `after`. Replaces an earlier mark holding `start`;
    /// when all marks are taken the retransmission goes unwatched (the RTO
    /// still covers it).
    pub fn note_retransmission(&mut self, start: SeqNumber, end: SeqNumber, after: SeqNumber) {
        let baseline = self.sacked_above(after);
        let mark = RtxMark {
            start,
            end,
            after,
            baseline,
        };
        let st = self.store_mut();
        // The new copy replaces every mark it overlaps (a tail loss probe
        // resends the last segment, which need not line up with earlier
        // retransmissions): overlapping marks could otherwise keep a range
        // "lost" after it was sent again.
        let mut keep = 0;
        for i in 0..st.marks_len {
            let m = st.marks[i];
            if m.end <= start || end <= m.start {
                st.marks[keep] = m;
                keep += 1;
            }
        }
        st.marks_len = keep;
        if keep < RETRANSMISSION_MARKS {
            st.marks[keep] = mark;
            st.marks_len = keep + 1;
        }
    }

    pub fn clear_retransmissions(&mut self) {
        if let Some(st) = self.store.as_mut() {
            st.marks_len = 0;
        }
    }

    /// A watched retransmission that was lost in turn (the idea of RFC 8985
    /// RACK, with RFC 6675's DupThresh in place of a time window: more than
    /// (DupThresh - 1)·SMSS bytes sent after it arrived, it did not): the
    /// first un-SACKed range of it, lowest first. Marks whose data has been
    /// acknowledged or SACKed are dropped on the way.
    pub fn lost_retransmission(
        &mut self,
        snd_una: SeqNumber,
        smss: usize,
    ) -> Option<(SeqNumber, SeqNumber)> {
        let n = self.store.as_ref().map_or(0, |st| st.marks_len);
        if n == 0 {
            return None;
        }
        let mut marks = [RtxMark::default(); RETRANSMISSION_MARKS];
        marks[..n].copy_from_slice(&self.store.as_ref().unwrap().marks[..n]);
        let mut keep = 0;
        let mut lost: Option<(SeqNumber, SeqNumber)> = None;
        for i in 0..n {
            let m = marks[i];
            let from = m.start.max(snd_una);
            if m.end <= snd_una || self.unsacked_between(from, m.end) == 0 {
                continue;
            }
            marks[keep] = m;
            keep += 1;
            if self.sacked_above(m.after).saturating_sub(m.baseline) > 2 * smss {
                // The first hole inside the retransmitted range.
                let mut s = from;
                while let Some(e) = self.sacked_end(s) {
                    s = e;
                }
                let e = self.next_sacked(s).map_or(m.end, |n| n.min(m.end));
                if s < e && lost.is_none_or(|(ls, _)| s < ls) {
                    lost = Some((s, e));
                }
            }
        }
        let st = self.store.as_mut().unwrap();
        st.marks[..keep].copy_from_slice(&marks[..keep]);
        st.marks_len = keep;
        lost
    }

    fn insert(&mut self, mut start: SeqNumber, mut end: SeqNumber) {
        // Merge with every overlapping or adjacent range, then insert sorted.
        let mut out = [(SeqNumber(0), SeqNumber(0)); SCOREBOARD_RANGES + 1];
        let mut n = 0;
        let mut placed = false;
        for &(s, e) in self.ranges() {
            if e < start {
                out[n] = (s, e);
                n += 1;
            } else if s > end {
                if !placed {
                    out[n] = (start, end);
                    n += 1;
                    placed = true;
                }
                out[n] = (s, e);
                n += 1;
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        if !placed {
            out[n] = (start, end);
            n += 1;
        }
        let n = n.min(SCOREBOARD_RANGES);
        self.ranges_mut()[..n].copy_from_slice(&out[..n]);
        self.len = n;
    }

    /// Drops what SND.UNA has passed.
    pub fn advance(&mut self, snd_una: SeqNumber) {
        let len = self.len;
        let Some(st) = self.store.as_mut() else {
            return;
        };
        let ranges = &mut st.ranges;
        let mut keep = 0;
        for i in 0..len {
            let (s, e) = ranges[i];
            if e <= snd_una {
                continue;
            }
            ranges[keep] = (s.max(snd_una), e);
            keep += 1;
        }
        self.len = keep;
    }

    /// Is `seq` inside a SACKed range? Returns the range's end if so.
    pub fn sacked_end(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.ranges()
            .iter()
            .find(|(s, e)| seq >= *s && seq < *e)
            .map(|r| r.1)
    }

    /// The first SACKed byte at or after `seq`, if any.
    pub fn next_sacked(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.ranges()
            .iter()
            .find(|(_, e)| *e > seq)
            .map(|(s, _)| (*s).max(seq))
    }

    /// SACKed bytes above `seq`.
    pub fn sacked_above(&self, seq: SeqNumber) -> usize {
        self.ranges()
            .iter()
            .filter(|(_, e)| *e > seq)
            .map(|(s, e)| *e - (*s).max(seq))
            .sum()
    }

    /// RFC 6675 IsLost(SeqNum): more than (DupThresh - 1)·SMSS bytes above
    /// it were SACKed (DupThresh = 3).
    pub fn is_lost(&self, seq: SeqNumber, smss: usize) -> bool {
        self.sacked_above(seq) > 2 * smss
    }

    /// The point below which every un-SACKed byte counts as lost.
    fn lost_edge(&self, smss: usize) -> Option<SeqNumber> {
        let mut above = 0usize;
        for &(s, e) in self.ranges().iter().rev() {
            above += e - s;
            if above > 2 * smss {
                return Some(s);
            }
        }
        None
    }

    /// RFC 6675 §4 SetPipe: un-SACKed bytes in [snd_una, snd_max) that are
    /// not lost, plus those retransmitted below `high_rxt`.
    pub fn pipe(
        &self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        high_rxt: SeqNumber,
        smss: usize,
    ) -> usize {
        let edge = self.lost_edge(smss).unwrap_or(snd_una).max(snd_una);
        let not_lost = self.unsacked_between(edge, snd_max);
        let rtx_end = high_rxt.min(edge).max(snd_una);
        let retransmitted = self.unsacked_between(snd_una, rtx_end);
        not_lost + retransmitted
    }

    /// Un-SACKed bytes in [from, to).
    pub fn unsacked_between(&self, from: SeqNumber, to: SeqNumber) -> usize {
        if to <= from {
            return 0;
        }
        let sacked: usize = self
            .ranges()
            .iter()
            .map(|&(s, e)| {
                let s = s.max(from);
                let e = e.min(to);
                if e > s {
                    e - s
                } else {
                    0
                }
            })
            .sum();
        (to - from) - sacked
    }

    /// The first un-SACKed byte at or after `from` that lies below the
    /// highest SACKed byte (a hole), with the hole's end.
    pub fn next_hole(&self, from: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let high = self.highest()?;
        let mut seq = from;
        for &(s, e) in self.ranges() {
            if seq >= high {
                return None;
            }
            if seq < s {
                return Some((seq, s));
            }
            if seq < e {
                seq = e;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn blocks_merge_sorted_and_ignore_dsack_and_unsent() {
        let mut sb = Scoreboard::default();
        assert_eq!(
            sb.update(&[(s(300), s(400)), (s(100), s(200))], s(0), s(1000)),
            (2, 200)
        );
        assert_eq!(sb.update(&[(s(200), s(300))], s(0), s(1000)), (1, 100));
        // Nothing new: taken, but no new bytes (not a duplicate ACK).
        assert_eq!(sb.update(&[(s(100), s(400))], s(0), s(1000)), (1, 0));
        assert_eq!(sb.ranges(), &[(s(100), s(400))]);
        // D-SACK below SND.UNA and a block past SND.MAX are ignored.
        assert_eq!(
            sb.update(&[(s(0), s(50)), (s(900), s(1100))], s(50), s(1000)),
            (0, 0)
        );
        sb.advance(s(150));
        assert_eq!(sb.ranges(), &[(s(150), s(400))]);
    }

    #[test]
    fn holes_loss_and_pipe_follow_rfc_6675() {
        let smss = 100;
        let mut sb = Scoreboard::default();
        // Segments: 0..100 lost, 100..400 SACKed, 400..500 lost, 500..600 SACKed.
        sb.update(&[(s(100), s(400)), (s(500), s(600))], s(0), s(700));
        assert_eq!(sb.next_hole(s(0)), Some((s(0), s(100))));
        assert_eq!(sb.next_hole(s(100)), Some((s(400), s(500))));
        assert_eq!(sb.next_hole(s(500)), None);
        assert!(sb.is_lost(s(0), smss));
        assert!(!sb.is_lost(s(400), smss));
        // Not lost: 400..500 and 600..700 (200 bytes); nothing retransmitted.
        assert_eq!(sb.pipe(s(0), s(700), s(0), smss), 200);
        // After retransmitting 0..100 it counts too.
        assert_eq!(sb.pipe(s(0), s(700), s(100), smss), 300);
    }

    #[test]
    fn a_retransmission_is_lost_when_three_segments_sent_after_it_are_sacked() {
        let smss = 100;
        let mut sb = Scoreboard::default();
        // 0..100 lost, 100..400 SACKed; 0..100 retransmitted while 700 was
        // the next new byte.
        sb.update(&[(s(100), s(400))], s(0), s(700));
        sb.note_retransmission(s(0), s(100), s(700));
        // Originals sent before the retransmission arriving say nothing.
        sb.update(&[(s(100), s(700))], s(0), s(700));
        assert_eq!(sb.lost_retransmission(s(0), smss), None);
        // Two segments of new data: not yet.
        sb.update(&[(s(100), s(900))], s(0), s(1000));
        assert_eq!(sb.lost_retransmission(s(0), smss), None);
        // The third: the retransmission is lost.
        sb.update(&[(s(100), s(1000))], s(0), s(1000));
        assert_eq!(sb.lost_retransmission(s(0), smss), Some((s(0), s(100))));
        // Sent again, watched afresh.
        sb.note_retransmission(s(0), s(100), s(1000));
        assert_eq!(sb.lost_retransmission(s(0), smss), None);
        // Once acknowledged, the mark is gone.
        sb.advance(s(1000));
        assert_eq!(sb.lost_retransmission(s(1000), smss), None);
        assert_eq!(sb.store.as_ref().unwrap().marks_len, 0);
    }
}
