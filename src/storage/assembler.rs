//! Bookkeeping for out-of-order TCP data.
//!
//! Owns: the set of byte ranges received beyond the contiguous point
//! (`RCV.NXT`), as at most `N` sorted, disjoint, non-adjacent ranges held
//! inline, with offsets relative to the contiguous point.
//!
//! Never: stores the bytes themselves (they sit in the receive
//! [`RingBuffer`](super::RingBuffer)'s unallocated space), allocates, or
//! partially records a range it cannot hold: when a new disjoint range does
//! not fit, [`Assembler::add`] fails with [`TooManyHoles`], changes nothing,
//! and the segment is dropped and left for the peer to retransmit
//! (RFC 9293 section 3.10.7.4 lets a receiver keep or discard out-of-order
//! segments).

use core::fmt;

/// How many disjoint ranges [`Assembler::new`] tracks.
pub const DEFAULT_MAX_RANGES: usize = 8;

/// The assembler already holds its maximum number of disjoint ranges and
/// the new range touches none of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyHoles;

impl fmt::Display for TooManyHoles {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("too many out-of-order ranges to track another")
    }
}

impl std::error::Error for TooManyHoles {}

/// Received ranges beyond the contiguous point, at most `N` of them.
///
/// The range array is allocated on the first out-of-order segment, so a
/// connection that never sees one (most of them) pays a pointer for it.
#[derive(Clone)]
pub struct Assembler<const N: usize = DEFAULT_MAX_RANGES> {
    /// `ranges[..count]` are `(start, end)` half-open, sorted, non-empty,
    /// and separated by at least one missing byte (touching ranges merge).
    /// Entries past `count` are stale. None until first needed.
    store: Option<Box<[(usize, usize); N]>>,
    count: usize,
}

impl Assembler<DEFAULT_MAX_RANGES> {
    /// An empty assembler tracking up to [`DEFAULT_MAX_RANGES`] ranges.
    pub const fn new() -> Self {
        Self::empty()
    }
}

impl<const N: usize> Default for Assembler<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> Assembler<N> {
    /// An empty assembler tracking up to `N` ranges (`Assembler::<16>::empty()`).
    pub const fn empty() -> Self {
        Assembler {
            store: None,
            count: 0,
        }
    }

    fn ranges(&self) -> &[(usize, usize)] {
        match &self.store {
            Some(b) => &b[..],
            None => &[],
        }
    }

    fn ranges_mut(&mut self) -> &mut [(usize, usize); N] {
        self.store.get_or_insert_with(|| Box::new([(0, 0); N]))
    }

    pub const fn max_ranges(&self) -> usize {
        N
    }

    /// Number of disjoint ranges held.
    pub fn range_count(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Stored ranges as `(start, end)` half-open offsets, in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges()[..self.count].iter().copied()
    }

    /// Total bytes covered by the stored ranges.
    pub fn total_len(&self) -> usize {
        self.iter().map(|(s, e)| e - s).sum()
    }

    /// Records that `len` bytes at `offset` (relative to the contiguous
    /// point) have arrived, merging with every range it overlaps or touches.
    /// Fails, storing nothing, if the range is disjoint from all stored ones
    /// and `N` ranges are already held. An empty range is a no-op.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyHoles> {
        if len == 0 {
            return Ok(());
        }
        let start = offset;
        let end = offset.saturating_add(len);
        let held = &self.ranges()[..self.count];
        // `first` is the first range ending at or after `start`, `past` the
        // first starting after `end`: `first..past` overlap or touch.
        let first = held.partition_point(|r| r.1 < start);
        let past = held.partition_point(|r| r.0 <= end);
        if first == past {
            if self.count == N {
                return Err(TooManyHoles);
            }
            let count = self.count;
            self.ranges_mut().copy_within(first..count, first + 1);
            self.ranges_mut()[first] = (start, end);
            self.count += 1;
        } else {
            let merged = (
                start.min(self.ranges()[first].0),
                end.max(self.ranges()[past - 1].1),
            );
            self.ranges_mut()[first] = merged;
            let count = self.count;
            self.ranges_mut().copy_within(past..count, first + 1);
            self.count -= past - first - 1;
        }
        Ok(())
    }

    /// If a range starts at offset 0, removes it and returns its length
    /// (the bytes that just became contiguous), moving the contiguous point
    /// past it: all remaining offsets shift down by that length. Otherwise 0.
    pub fn remove_front(&mut self) -> usize {
        if self.count == 0 || self.ranges()[0].0 != 0 {
            return 0;
        }
        let len = self.ranges()[0].1;
        let count = self.count;
        self.ranges_mut().copy_within(1..count, 0);
        self.count -= 1;
        self.shift_down(len);
        len
    }

    fn shift_down(&mut self, by: usize) {
        let count = self.count;
        for r in &mut self.ranges_mut()[..count] {
            r.0 -= by;
            r.1 -= by;
        }
    }

    /// `add(offset, len)` then `remove_front()`: returns how far the
    /// contiguous point advances.
    ///
    /// In-order data (`offset == 0`) that touches no stored range is consumed
    /// without taking a slot, so a full assembler still accepts the segment
    /// that fills the first hole and the connection keeps making progress.
    pub fn add_then_remove_front(
        &mut self,
        offset: usize,
        len: usize,
    ) -> Result<usize, TooManyHoles> {
        if offset == 0 && len > 0 && (self.count == 0 || self.ranges()[0].0 > len) {
            self.shift_down(len);
            return Ok(len);
        }
        self.add(offset, len)?;
        Ok(self.remove_front())
    }
}

impl<const N: usize> PartialEq for Assembler<N> {
    fn eq(&self, other: &Self) -> bool {
        self.ranges()[..self.count] == other.ranges()[..other.count]
    }
}

impl<const N: usize> Eq for Assembler<N> {}

impl<const N: usize> fmt::Debug for Assembler<N> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Assembler[")?;
        for (i, (s, e)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{s}..{e}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges<const N: usize>(a: &Assembler<N>) -> Vec<(usize, usize)> {
        a.iter().collect()
    }

    #[test]
    fn new_assembler_is_empty_with_default_capacity() {
        let a = Assembler::new();
        assert!(a.is_empty());
        assert_eq!(a.max_ranges(), DEFAULT_MAX_RANGES);
        assert_eq!(a.total_len(), 0);
        assert_eq!(format!("{a:?}"), "Assembler[]");
    }

    #[test]
    fn disjoint_ranges_are_kept_sorted() {
        let mut a = Assembler::new();
        a.add(20, 5).unwrap();
        a.add(2, 3).unwrap();
        a.add(10, 1).unwrap();
        assert_eq!(ranges(&a), vec![(2, 5), (10, 11), (20, 25)]);
        assert_eq!(a.total_len(), 9);
        assert_eq!(format!("{a:?}"), "Assembler[2..5, 10..11, 20..25]");
    }

    #[test]
    fn adjacent_ranges_merge_into_one() {
        let mut a = Assembler::new();
        a.add(10, 5).unwrap();
        a.add(15, 5).unwrap();
        a.add(5, 5).unwrap();
        assert_eq!(ranges(&a), vec![(5, 20)]);
    }

    #[test]
    fn range_spanning_several_stored_ranges_merges_them_all() {
        let mut a = Assembler::new();
        for off in [0, 10, 20, 30, 40] {
            a.add(off, 2).unwrap();
        }
        a.add(9, 24).unwrap();
        assert_eq!(ranges(&a), vec![(0, 2), (9, 33), (40, 42)]);
    }

    #[test]
    fn range_inside_a_stored_range_changes_nothing() {
        let mut a = Assembler::new();
        a.add(10, 10).unwrap();
        a.add(12, 3).unwrap();
        assert_eq!(ranges(&a), vec![(10, 20)]);
    }

    #[test]
    fn empty_range_is_a_no_op_even_when_full() {
        let mut a = Assembler::<1>::empty();
        a.add(5, 1).unwrap();
        assert_eq!(a.add(100, 0), Ok(()));
        assert_eq!(ranges(&a), vec![(5, 6)]);
    }

    #[test]
    fn new_disjoint_range_when_full_fails_and_stores_nothing() {
        let mut a = Assembler::<2>::empty();
        a.add(10, 2).unwrap();
        a.add(20, 2).unwrap();
        let before = a.clone();
        assert_eq!(a.add(30, 2), Err(TooManyHoles));
        assert_eq!(a.add(0, 2), Err(TooManyHoles));
        assert_eq!(a, before);
        // Merging needs no new slot, so it still works when full.
        a.add(12, 8).unwrap();
        assert_eq!(ranges(&a), vec![(10, 22)]);
    }

    #[test]
    fn remove_front_returns_zero_while_a_hole_remains_at_the_start() {
        let mut a = Assembler::new();
        a.add(3, 4).unwrap();
        assert_eq!(a.remove_front(), 0);
        assert_eq!(ranges(&a), vec![(3, 7)]);
    }

    #[test]
    fn remove_front_consumes_leading_range_and_shifts_the_rest() {
        let mut a = Assembler::new();
        a.add(5, 5).unwrap();
        a.add(20, 5).unwrap();
        a.add(0, 5).unwrap();
        assert_eq!(a.remove_front(), 10);
        assert_eq!(ranges(&a), vec![(10, 15)]);
        assert_eq!(a.remove_front(), 0);
    }

    #[test]
    fn in_order_data_advances_even_when_every_slot_is_taken() {
        let mut a = Assembler::<2>::empty();
        a.add(10, 2).unwrap();
        a.add(20, 2).unwrap();
        assert_eq!(a.add_then_remove_front(0, 4), Ok(4));
        assert_eq!(ranges(&a), vec![(6, 8), (16, 18)]);
        // Filling the hole exactly merges with the first stored range.
        assert_eq!(a.add_then_remove_front(0, 6), Ok(8));
        assert_eq!(ranges(&a), vec![(8, 10)]);
    }

    #[test]
    fn clear_forgets_all_ranges() {
        let mut a = Assembler::new();
        a.add(1, 1).unwrap();
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.remove_front(), 0);
    }

    #[test]
    fn offsets_near_usize_max_saturate_instead_of_overflowing() {
        let mut a = Assembler::new();
        a.add(usize::MAX - 1, 10).unwrap();
        assert_eq!(ranges(&a), vec![(usize::MAX - 1, usize::MAX)]);
    }

    const MODEL_BITS: usize = 512;

    #[derive(Clone, Debug)]
    enum Op {
        Add(usize, usize),
        RemoveFront,
        AddThenRemoveFront(usize, usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..256, 0usize..64).prop_map(|(o, l)| Op::Add(o, l)),
            2 => Just(Op::RemoveFront),
            2 => (0usize..64, 0usize..64).prop_map(|(o, l)| Op::AddThenRemoveFront(o, l)),
            1 => Just(Op::Clear),
        ]
    }

    fn runs(bits: &[bool]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bits.len() {
            if bits[i] {
                let s = i;
                while i < bits.len() && bits[i] {
                    i += 1;
                }
                out.push((s, i));
            } else {
                i += 1;
            }
        }
        out
    }

    fn leading(bits: &[bool]) -> usize {
        bits.iter().take_while(|&&b| b).count()
    }

    fn shift(bits: &mut Vec<bool>, by: usize) {
        bits.drain(..by);
        bits.resize(MODEL_BITS, false);
    }

    /// Applies `add` to the bitmap model; returns whether it fits in `n`
    /// ranges (the model is unchanged if not).
    fn model_add(bits: &mut Vec<bool>, off: usize, len: usize, n: usize) -> bool {
        let mut next = bits.clone();
        next[off..off + len].fill(true);
        if runs(&next).len() > n {
            return false;
        }
        *bits = next;
        true
    }

    fn check_against_model<const N: usize>(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut a = Assembler::<N>::empty();
        let mut bits = vec![false; MODEL_BITS];
        for op in ops {
            match op {
                Op::Add(off, len) => {
                    let fits = model_add(&mut bits, off, len, N);
                    prop_assert_eq!(a.add(off, len).is_ok(), fits);
                }
                Op::RemoveFront => {
                    let k = leading(&bits);
                    shift(&mut bits, k);
                    prop_assert_eq!(a.remove_front(), k);
                }
                Op::AddThenRemoveFront(off, len) => {
                    let untouched = !bits[..=len].iter().any(|&b| b);
                    let expected = if off == 0 && len > 0 && untouched {
                        shift(&mut bits, len);
                        Ok(len)
                    } else if model_add(&mut bits, off, len, N) {
                        let k = leading(&bits);
                        shift(&mut bits, k);
                        Ok(k)
                    } else {
                        Err(TooManyHoles)
                    };
                    prop_assert_eq!(a.add_then_remove_front(off, len), expected);
                }
                Op::Clear => {
                    a.clear();
                    bits.fill(false);
                }
            }
            prop_assert_eq!(a.iter().collect::<Vec<_>>(), runs(&bits));
            prop_assert_eq!(a.total_len(), bits.iter().filter(|&&b| b).count());
            prop_assert_eq!(a.is_empty(), !bits.contains(&true));
            prop_assert!(a.range_count() <= N);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn assembler_with_four_ranges_matches_bitmap_model(
            ops in prop::collection::vec(op(), 1..60),
        ) {
            check_against_model::<4>(ops)?;
        }

        #[test]
        fn assembler_with_default_ranges_matches_bitmap_model(
            ops in prop::collection::vec(op(), 1..60),
        ) {
            check_against_model::<DEFAULT_MAX_RANGES>(ops)?;
        }
    }
}
