//! Ring storage handed back by closed connections, for the next ones.
//!
//! A short connection (BENCHMARKS.md's W4) fills four rings of a few KiB
//! each; fresh zeroed memory for each cost more than the whole TCP
//! exchange. Storage a closed connection leaves goes here and the next
//! connection to write takes it: no allocator call and no zeroing. The old
//! bytes are never visible: a ring only reads what it wrote.
//!
//! Bounded in total bytes, so a burst of closes cannot hold memory for good;
//! what does not fit is freed.

/// Buffers by size (connections mostly share one or two sizes).
#[derive(Debug)]
pub struct BufferPool {
    by_size: Vec<(usize, Vec<Box<[u8]>>)>,
    held: usize,
    max_bytes: usize,
}

impl BufferPool {
    /// A pool that holds at most `max_bytes` of storage.
    pub fn new(max_bytes: usize) -> BufferPool {
        BufferPool {
            by_size: Vec::new(),
            held: 0,
            max_bytes,
        }
    }

    /// Bytes held for reuse.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// A buffer of exactly `size` bytes, if one was given back.
    pub fn take(&mut self, size: usize) -> Option<Box<[u8]>> {
        let (_, bufs) = self.by_size.iter_mut().find(|(s, _)| *s == size)?;
        let buf = bufs.pop()?;
        self.held -= size;
        Some(buf)
    }

    /// Keeps `buf` for a later [`take`](Self::take), or frees it if the
    /// pool is full.
    pub fn give(&mut self, buf: Box<[u8]>) {
        let size = buf.len();
        if size == 0 || self.held + size > self.max_bytes {
            return;
        }
        self.held += size;
        match self.by_size.iter_mut().find(|(s, _)| *s == size) {
            Some((_, bufs)) => bufs.push(buf),
            None => self.by_size.push((size, vec![buf])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_the_same_size_and_stays_within_its_bound() {
        let mut p = BufferPool::new(10);
        p.give(vec![1; 4].into_boxed_slice());
        p.give(vec![2; 6].into_boxed_slice());
        // Over the bound: freed, not kept.
        p.give(vec![3; 4].into_boxed_slice());
        assert_eq!(p.held_bytes(), 10);
        assert_eq!(p.take(5), None);
        assert_eq!(p.take(6).as_deref(), Some(&[2u8; 6][..]));
        assert_eq!(p.take(4).as_deref(), Some(&[1u8; 4][..]));
        assert_eq!(p.take(4), None);
        assert_eq!(p.held_bytes(), 0);
        p.give(Box::default());
        assert_eq!(p.held_bytes(), 0);
    }
}
