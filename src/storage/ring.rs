//! A fixed-capacity byte ring for TCP send and receive buffers.
//!
//! Owns: the bytes and the split between the allocated part (queued data,
//! starting at the head) and the unallocated part (free space after it).
//!
//! Never: grows, overwrites allocated bytes, or copies byte by byte: every
//! operation is at most two slice copies (one on each side of the wrap).
//!
//! The send buffer uses the allocated part: the application enqueues,
//! retransmissions peek with [`RingBuffer::read_allocated`], and ACKs
//! discard with [`RingBuffer::dequeue_allocated`]. The receive buffer also
//! uses the unallocated part: out-of-order segments are written there with
//! [`RingBuffer::write_unallocated`] and committed with
//! [`RingBuffer::enqueue_unallocated`] once the hole before them fills.

/// A ring of `capacity` bytes. Invariants: `read_at < capacity` (or 0 when
/// the capacity is 0) and `length <= capacity`.
///
/// The bytes are allocated on the first write, not at construction: an idle
/// connection (a million of them, say) holds no buffer memory, and
/// [`RingBuffer::release`] gives the memory back once the ring is empty.
#[derive(Clone, Debug)]
pub struct RingBuffer {
    /// Empty until the first write, then exactly `cap` bytes.
    storage: Box<[u8]>,
    cap: usize,
    /// Index of the first allocated byte.
    read_at: usize,
    /// Number of allocated bytes.
    length: usize,
}

impl RingBuffer {
    pub fn new(capacity: usize) -> Self {
        RingBuffer {
            storage: Box::default(),
            cap: capacity,
            read_at: 0,
            length: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes of memory the ring holds now (0 until the first write).
    pub fn allocated_bytes(&self) -> usize {
        self.storage.len()
    }

    /// Frees the memory if nothing is queued (idle connections).
    pub fn release(&mut self) {
        if self.length == 0 {
            self.storage = Box::default();
            self.read_at = 0;
        }
    }

    /// Has no storage yet (nothing written since construction or
    /// [`release`](Self::release)).
    pub fn lacks_storage(&self) -> bool {
        self.cap > 0 && self.storage.len() != self.cap
    }

    /// Uses `buf` as storage if the ring has none and `buf` has the ring's
    /// capacity (the old bytes in it are never read: only written bytes
    /// are). Otherwise `buf` is handed back.
    pub fn supply_storage(&mut self, buf: Box<[u8]>) -> Option<Box<[u8]>> {
        if self.lacks_storage() && buf.len() == self.cap {
            self.storage = buf;
            None
        } else {
            Some(buf)
        }
    }

    /// Takes the storage away (for a [`BufferPool`](super::BufferPool)),
    /// discarding what is queued.
    pub fn take_storage(&mut self) -> Option<Box<[u8]>> {
        self.clear();
        if self.storage.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.storage))
        }
    }

    fn ensure_storage(&mut self) {
        if self.storage.len() != self.cap {
            self.storage = vec![0; self.cap].into_boxed_slice();
        }
    }

    /// Allocated (queued) bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Unallocated bytes: `capacity - len`.
    pub fn free(&self) -> usize {
        self.capacity() - self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn is_full(&self) -> bool {
        self.length == self.capacity()
    }

    /// Discards all data, allocated or written ahead.
    pub fn clear(&mut self) {
        self.read_at = 0;
        self.length = 0;
    }

    /// Storage index of logical position `pos` counted from the head
    /// (`pos < 2 * capacity`).
    fn index(&self, pos: usize) -> usize {
        let cap = self.capacity();
        let i = self.read_at + pos;
        if i >= cap {
            i - cap
        } else {
            i
        }
    }

    /// Copies `data` into storage starting at index `start`, wrapping once.
    fn copy_in(&mut self, start: usize, data: &[u8]) {
        self.ensure_storage();
        let first = data.len().min(self.capacity() - start);
        self.storage[start..start + first].copy_from_slice(&data[..first]);
        // Small messages rarely wrap: no second (empty) copy for them.
        if first < data.len() {
            let rest = data.len() - first;
            self.storage[..rest].copy_from_slice(&data[first..]);
        }
    }

    /// Fills `out` from storage starting at index `start`, wrapping once.
    fn copy_out(&self, start: usize, out: &mut [u8]) {
        let first = out.len().min(self.capacity() - start);
        out[..first].copy_from_slice(&self.storage[start..start + first]);
        if first < out.len() {
            let rest = out.len() - first;
            out[first..].copy_from_slice(&self.storage[..rest]);
        }
    }

    /// Appends as much of `data` as fits; returns how many bytes. Never
    /// overwrites queued data.
    pub fn enqueue_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n > 0 {
            let start = self.index(self.length);
            self.copy_in(start, &data[..n]);
            self.length += n;
        }
        n
    }

    /// Removes up to `out.len()` bytes from the head into `out`; returns how
    /// many.
    pub fn dequeue_slice(&mut self, out: &mut [u8]) -> usize {
        let n = self.read_allocated(0, out);
        self.dequeue_allocated(n)
    }

    /// Copies allocated bytes starting `offset` past the head into `out`
    /// without consuming them (retransmissions read here); returns how many.
    pub fn read_allocated(&self, offset: usize, out: &mut [u8]) -> usize {
        if offset >= self.length {
            return 0;
        }
        let n = out.len().min(self.length - offset);
        self.copy_out(self.index(offset), &mut out[..n]);
        n
    }

    /// The longest contiguous run of allocated bytes starting `offset` past
    /// the head, at most `max` long (empty if there are none).
    pub fn get_allocated(&self, offset: usize, max: usize) -> &[u8] {
        if offset >= self.length {
            return &[];
        }
        let start = self.index(offset);
        let n = max.min(self.length - offset).min(self.capacity() - start);
        &self.storage[start..start + n]
    }

    /// Discards up to `n` bytes from the head (acknowledged data); returns
    /// how many.
    ///
    /// The head keeps its position even when the ring empties, because
    /// out-of-order data written ahead of the end must stay where it is.
    pub fn dequeue_allocated(&mut self, n: usize) -> usize {
        let n = n.min(self.length);
        if n > 0 {
            self.read_at = self.index(n);
            self.length -= n;
        }
        n
    }

    /// Moves the head back to the start of storage when nothing is queued.
    /// Only for a ring with nothing written ahead of its end (a send ring,
    /// or a receive ring with no out-of-order data): request/response
    /// traffic then never wraps, and stays in the same cache lines.
    pub fn rewind_if_empty(&mut self) {
        if self.length == 0 {
            self.read_at = 0;
        }
    }

    /// Writes `data` into free space starting `offset` bytes past the end of
    /// the allocated data, without allocating it (out-of-order segments);
    /// returns how many bytes fit. Never writes past the capacity, so never
    /// touches allocated data.
    pub fn write_unallocated(&mut self, offset: usize, data: &[u8]) -> usize {
        let free = self.free();
        if offset >= free {
            return 0;
        }
        let n = data.len().min(free - offset);
        if n > 0 {
            let start = self.index(self.length + offset);
            self.copy_in(start, &data[..n]);
        }
        n
    }

    /// Commits up to `n` bytes written after the end as allocated data;
    /// returns how many.
    pub fn enqueue_unallocated(&mut self, n: usize) -> usize {
        let n = n.min(self.free());
        if n > 0 {
            self.ensure_storage();
        }
        self.length += n;
        n
    }

    /// The longest contiguous run of free space starting `offset` bytes past
    /// the end, at most `max` long, for writing in place (commit with
    /// [`RingBuffer::enqueue_unallocated`]).
    pub fn get_unallocated(&mut self, offset: usize, max: usize) -> &mut [u8] {
        let free = self.free();
        if offset >= free {
            return &mut [];
        }
        self.ensure_storage();
        let start = self.index(self.length + offset);
        let n = max.min(free - offset).min(self.capacity() - start);
        &mut self.storage[start..start + n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// A ring whose head sits at `head`, to exercise wrap-around.
    fn ring_with_head(capacity: usize, head: usize) -> RingBuffer {
        let mut r = RingBuffer::new(capacity);
        r.enqueue_unallocated(head);
        r.dequeue_allocated(head);
        r
    }

    #[test]
    fn enqueue_copies_only_what_fits_and_never_overwrites() {
        let mut r = RingBuffer::new(8);
        assert_eq!(r.enqueue_slice(b"hello"), 5);
        assert_eq!(r.enqueue_slice(b"world"), 3);
        assert!(r.is_full());
        assert_eq!(r.enqueue_slice(b"!"), 0);
        let mut out = [0u8; 16];
        assert_eq!(r.dequeue_slice(&mut out), 8);
        assert_eq!(&out[..8], b"hellowor");
        assert!(r.is_empty());
    }

    #[test]
    fn data_survives_wrapping_around_the_end_of_storage() {
        let mut r = ring_with_head(8, 6);
        assert_eq!(r.enqueue_slice(b"abcdefgh"), 8);
        assert_eq!(r.get_allocated(0, 100), b"ab");
        assert_eq!(r.get_allocated(2, 100), b"cdefgh");
        let mut out = [0u8; 5];
        assert_eq!(r.read_allocated(1, &mut out), 5);
        assert_eq!(&out, b"bcdef");
        let mut all = [0u8; 8];
        assert_eq!(r.dequeue_slice(&mut all), 8);
        assert_eq!(&all, b"abcdefgh");
    }

    #[test]
    fn read_allocated_peeks_without_consuming() {
        let mut r = RingBuffer::new(16);
        r.enqueue_slice(b"0123456789");
        let mut out = [0u8; 4];
        assert_eq!(r.read_allocated(3, &mut out), 4);
        assert_eq!(&out, b"3456");
        assert_eq!(r.read_allocated(8, &mut out), 2);
        assert_eq!(&out[..2], b"89");
        assert_eq!(r.read_allocated(10, &mut out), 0);
        assert_eq!(r.len(), 10);
    }

    #[test]
    fn dequeue_allocated_discards_acknowledged_bytes_from_the_head() {
        let mut r = RingBuffer::new(16);
        r.enqueue_slice(b"0123456789");
        assert_eq!(r.dequeue_allocated(4), 4);
        assert_eq!(r.get_allocated(0, 100), b"456789");
        assert_eq!(r.dequeue_allocated(100), 6);
        assert!(r.is_empty());
        assert_eq!(r.free(), 16);
    }

    #[test]
    fn out_of_order_data_is_committed_after_the_hole_fills() {
        let mut r = RingBuffer::new(16);
        r.enqueue_slice(b"ab");
        assert_eq!(r.write_unallocated(3, b"fgh"), 3);
        assert_eq!(r.len(), 2, "written-ahead bytes are not allocated");
        assert_eq!(r.write_unallocated(0, b"cde"), 3);
        assert_eq!(r.enqueue_unallocated(6), 6);
        assert_eq!(r.get_allocated(0, 100), b"abcdefgh");
    }

    #[test]
    fn out_of_order_data_stays_put_when_reader_empties_the_ring() {
        let mut r = ring_with_head(8, 5);
        r.enqueue_slice(b"xy");
        r.write_unallocated(1, b"ZZ");
        let mut out = [0u8; 2];
        assert_eq!(r.dequeue_slice(&mut out), 2);
        assert!(r.is_empty());
        r.write_unallocated(0, b"Y");
        assert_eq!(r.enqueue_unallocated(3), 3);
        // The head is at index 7: "Y" before the wrap, "ZZ" after it.
        assert_eq!(r.get_allocated(0, 100), b"Y");
        assert_eq!(r.get_allocated(1, 100), b"ZZ");
    }

    #[test]
    fn write_unallocated_never_writes_past_capacity() {
        let mut r = RingBuffer::new(8);
        r.enqueue_slice(b"abc");
        assert_eq!(r.write_unallocated(3, b"123456"), 2);
        assert_eq!(r.write_unallocated(5, b"1"), 0);
        assert_eq!(r.write_unallocated(100, b"1"), 0);
        assert_eq!(r.get_allocated(0, 100), b"abc");
        assert_eq!(r.enqueue_unallocated(100), 5);
        assert!(r.is_full());
    }

    #[test]
    fn get_unallocated_gives_contiguous_free_space_to_fill_in_place() {
        let mut r = ring_with_head(8, 4);
        r.enqueue_slice(b"ab");
        // Free space runs from index 6 to 8, then wraps to 0..4.
        let s = r.get_unallocated(0, 100);
        assert_eq!(s.len(), 2);
        s.copy_from_slice(b"cd");
        assert_eq!(r.get_unallocated(2, 3).len(), 3);
        assert_eq!(r.get_unallocated(6, 100).len(), 0);
        r.enqueue_unallocated(2);
        assert_eq!(r.get_allocated(0, 100), b"abcd");
    }

    #[test]
    fn zero_capacity_ring_accepts_nothing_and_does_not_panic() {
        let mut r = RingBuffer::new(0);
        assert!(r.is_empty() && r.is_full());
        assert_eq!(r.enqueue_slice(b"x"), 0);
        assert_eq!(r.dequeue_slice(&mut [0; 4]), 0);
        assert_eq!(r.read_allocated(0, &mut [0; 4]), 0);
        assert!(r.get_allocated(0, 4).is_empty());
        assert_eq!(r.dequeue_allocated(3), 0);
        assert_eq!(r.write_unallocated(0, b"x"), 0);
        assert_eq!(r.enqueue_unallocated(3), 0);
        assert!(r.get_unallocated(0, 4).is_empty());
    }

    #[test]
    fn clear_discards_everything_and_resets_the_head() {
        let mut r = ring_with_head(8, 7);
        r.enqueue_slice(b"abc");
        r.clear();
        assert!(r.is_empty());
        assert_eq!(r.get_unallocated(0, 100).len(), 8);
    }

    /// Model: the allocated bytes as a `VecDeque`, and what is known about
    /// the free space after them (`None` where its contents are unspecified,
    /// for example bytes that were dequeued).
    struct Model {
        cap: usize,
        allocated: VecDeque<Option<u8>>,
        ahead: VecDeque<Option<u8>>,
    }

    impl Model {
        fn new(cap: usize) -> Self {
            Model {
                cap,
                allocated: VecDeque::new(),
                ahead: (0..cap).map(|_| None).collect(),
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Enqueue(Vec<u8>),
        Dequeue(usize),
        ReadAllocated(usize, usize),
        GetAllocated(usize, usize),
        DequeueAllocated(usize),
        WriteUnallocated(usize, Vec<u8>),
        EnqueueUnallocated(usize),
        FillUnallocated(usize, usize, u8),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        let data = prop::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            4 => data.clone().prop_map(Op::Enqueue),
            3 => (0usize..40).prop_map(Op::Dequeue),
            2 => (0usize..40, 0usize..40).prop_map(|(o, n)| Op::ReadAllocated(o, n)),
            2 => (0usize..40, 0usize..40).prop_map(|(o, n)| Op::GetAllocated(o, n)),
            2 => (0usize..40).prop_map(Op::DequeueAllocated),
            3 => (0usize..40, data).prop_map(|(o, d)| Op::WriteUnallocated(o, d)),
            2 => (0usize..40).prop_map(Op::EnqueueUnallocated),
            2 => (0usize..40, 0usize..40, any::<u8>())
                .prop_map(|(o, n, b)| Op::FillUnallocated(o, n, b)),
            1 => Just(Op::Clear),
        ]
    }

    /// Asserts that `got` matches `expected` wherever the model knows the
    /// contents.
    fn matches(got: &[u8], expected: impl Iterator<Item = Option<u8>>) -> bool {
        got.iter()
            .zip(expected)
            .all(|(g, e)| e.is_none_or(|e| e == *g))
    }

    proptest! {
        #[test]
        fn ring_buffer_behaves_like_a_deque_model(
            cap in 0usize..48,
            ops in prop::collection::vec(op(), 1..80),
        ) {
            let mut r = RingBuffer::new(cap);
            let mut m = Model::new(cap);
            for op in ops {
                match op {
                    Op::Enqueue(d) => {
                        let n = r.enqueue_slice(&d);
                        prop_assert_eq!(n, d.len().min(m.ahead.len()));
                        m.ahead.drain(..n);
                        m.allocated.extend(d[..n].iter().map(|&b| Some(b)));
                    }
                    Op::Dequeue(k) => {
                        let mut out = vec![0u8; k];
                        let n = r.dequeue_slice(&mut out);
                        prop_assert_eq!(n, k.min(m.allocated.len()));
                        let expected: Vec<_> = m.allocated.drain(..n).collect();
                        prop_assert!(matches(&out[..n], expected.into_iter()));
                        m.ahead.extend((0..n).map(|_| None));
                    }
                    Op::ReadAllocated(off, k) => {
                        let mut out = vec![0u8; k];
                        let n = r.read_allocated(off, &mut out);
                        let avail = m.allocated.len().saturating_sub(off);
                        prop_assert_eq!(n, k.min(avail));
                        prop_assert!(matches(&out[..n], m.allocated.iter().skip(off).copied()));
                    }
                    Op::GetAllocated(off, max) => {
                        let s = r.get_allocated(off, max);
                        let avail = m.allocated.len().saturating_sub(off).min(max);
                        prop_assert!(s.len() <= avail);
                        prop_assert_eq!(s.is_empty(), avail == 0);
                        prop_assert!(matches(s, m.allocated.iter().skip(off).copied()));
                    }
                    Op::DequeueAllocated(k) => {
                        let n = r.dequeue_allocated(k);
                        prop_assert_eq!(n, k.min(m.allocated.len()));
                        let gone: Vec<_> = m.allocated.drain(..n).collect();
                        // Freed space physically still holds those bytes, but
                        // callers may not rely on it.
                        m.ahead.extend(gone.iter().map(|_| None));
                    }
                    Op::WriteUnallocated(off, d) => {
                        let n = r.write_unallocated(off, &d);
                        let room = m.ahead.len().saturating_sub(off);
                        prop_assert_eq!(n, d.len().min(room));
                        for (i, &b) in d[..n].iter().enumerate() {
                            m.ahead[off + i] = Some(b);
                        }
                    }
                    Op::EnqueueUnallocated(k) => {
                        let n = r.enqueue_unallocated(k);
                        prop_assert_eq!(n, k.min(m.ahead.len()));
                        let moved: Vec<_> = m.ahead.drain(..n).collect();
                        m.allocated.extend(moved);
                    }
                    Op::FillUnallocated(off, max, b) => {
                        let s = r.get_unallocated(off, max);
                        let room = m.ahead.len().saturating_sub(off).min(max);
                        prop_assert!(s.len() <= room);
                        prop_assert_eq!(s.is_empty(), room == 0);
                        prop_assert!(matches(s, m.ahead.iter().skip(off).copied()));
                        s.fill(b);
                        let n = s.len();
                        for i in 0..n {
                            m.ahead[off + i] = Some(b);
                        }
                    }
                    Op::Clear => {
                        r.clear();
                        m = Model::new(cap);
                    }
                }
                prop_assert_eq!(r.len(), m.allocated.len());
                prop_assert_eq!(r.free(), m.ahead.len());
                prop_assert_eq!(r.capacity(), m.cap);
                prop_assert_eq!(r.is_empty(), m.allocated.is_empty());
                prop_assert_eq!(r.is_full(), m.ahead.is_empty());
                let mut all = vec![0u8; cap];
                let n = r.read_allocated(0, &mut all);
                prop_assert!(matches(&all[..n], m.allocated.iter().copied()));
            }
        }
    }
}
