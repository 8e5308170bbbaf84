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

/// The range array is allocated on the first SACK block, so connections
/// that never see loss pay a pointer for it.
#[derive(Clone, Debug, Default)]
pub struct Scoreboard {
    /// Sorted, disjoint, non-adjacent ranges [start, end); None until used.
    store: Option<Box<[(SeqNumber, SeqNumber); SCOREBOARD_RANGES]>>,
    len: usize,
}

impl Scoreboard {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        match &self.store {
            Some(r) => &r[..self.len],
            None => &[],
        }
    }

    fn ranges_mut(&mut self) -> &mut [(SeqNumber, SeqNumber); SCOREBOARD_RANGES] {
        self.store
            .get_or_insert_with(|| Box::new([(SeqNumber(0), SeqNumber(0)); SCOREBOARD_RANGES]))
    }

    /// Highest SACKed sequence number (RFC 6675 HighACK-ish), if any.
    pub fn highest(&self) -> Option<SeqNumber> {
        self.ranges().last().map(|r| r.1)
    }

    /// Records SACK blocks from an ACK. Blocks at or below `snd_una` (D-SACK)
    /// or reaching past `snd_max` (never sent: bogus) are ignored. Returns
    /// how many blocks were taken.
    pub fn update(
        &mut self,
        blocks: &[(SeqNumber, SeqNumber)],
        snd_una: SeqNumber,
        snd_max: SeqNumber,
    ) -> usize {
        let mut taken = 0;
        for &(left, right) in blocks {
            if right <= left || right <= snd_una || right > snd_max || left < snd_una - (1 << 30) {
                continue;
            }
            self.insert(left.max(snd_una), right);
            taken += 1;
        }
        taken
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
        let Some(ranges) = self.store.as_mut() else {
            return;
        };
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
            2
        );
        assert_eq!(sb.update(&[(s(200), s(300))], s(0), s(1000)), 1);
        assert_eq!(sb.ranges(), &[(s(100), s(400))]);
        // D-SACK below SND.UNA and a block past SND.MAX are ignored.
        assert_eq!(
            sb.update(&[(s(0), s(50)), (s(900), s(1100))], s(50), s(1000)),
            0
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
}
