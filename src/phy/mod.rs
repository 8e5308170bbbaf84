//! Devices: the boundary where Ethernet frames enter and leave the stack.
//!
//! Owns: the [`Device`] trait (batch receive and transmit, driven by the
//! caller's `now`), [`FrameBatch`] (a recycled burst of frame buffers), the
//! in-memory [`link`] with its seeded impairment model, and the [`pcap`]
//! recorder that wraps any device.
//!
//! Never: parses or builds protocol headers (that is `wire/`), reads a clock
//! (time is the `now` argument), or allocates per frame in steady state
//! (buffers move between batches and queues by swapping `Vec`s). Unsafe code
//! belongs only in `phy/sys` (AF_XDP, tun); nothing in this module uses it.

pub mod channel;
pub mod link;
pub mod pcap;
#[cfg(target_os = "linux")]
pub mod sys;

pub use channel::ChannelDevice;
pub use link::{Link, LinkConfig, LinkPort, LinkStats};
pub use pcap::{PcapDevice, PcapMode, PcapReader, PcapWriter};

use crate::time::Instant;

/// A burst of Ethernet frames. Buffers are recycled: `clear()` keeps their
/// allocations, so steady state allocates nothing.
///
/// `bufs[..len]` are the frames; `bufs[len..]` are spare buffers whose
/// allocations the next pushes reuse.
#[derive(Debug, Default)]
pub struct FrameBatch {
    bufs: Vec<Vec<u8>>,
    len: usize,
}

impl FrameBatch {
    pub fn new() -> Self {
        FrameBatch {
            bufs: Vec::new(),
            len: 0,
        }
    }

    /// A batch with room for `n` frames before its buffer table grows (the
    /// frame buffers themselves are allocated on first use).
    pub fn with_capacity(n: usize) -> Self {
        FrameBatch {
            bufs: Vec::with_capacity(n),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every frame; their buffers become spares for later pushes.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The next spare buffer, emptied, creating one if there is none.
    fn next_slot(&mut self) -> &mut Vec<u8> {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::new());
        }
        let buf = &mut self.bufs[self.len];
        self.len += 1;
        buf.clear();
        buf
    }

    /// Appends a frame of `len` bytes filled by `f` (reusing a spare buffer).
    /// The buffer is zeroed first, so bytes `f` leaves alone never leak an
    /// earlier frame's contents onto the wire.
    pub fn push_with(&mut self, len: usize, f: impl FnOnce(&mut [u8])) {
        self.push_with_tail(len, &[], f)
    }

    /// Appends a frame of `head` bytes filled by `f` followed by a copy of
    /// `tail`: only the head is zeroed first (for a data segment, the
    /// headers), and the tail is copied once, not zeroed and then copied.
    /// `f` sees the whole frame, tail included (to checksum it).
    pub fn push_with_tail(&mut self, head: usize, tail: &[u8], f: impl FnOnce(&mut [u8])) {
        let buf = self.next_slot();
        buf.resize(head, 0);
        buf.extend_from_slice(tail);
        f(buf);
    }

    /// A frame made of `head` then `tail`, each copied once.
    pub fn push_parts(&mut self, head: &[u8], tail: &[u8]) {
        let buf = self.next_slot();
        buf.extend_from_slice(head);
        buf.extend_from_slice(tail);
    }

    pub fn push_copy(&mut self, frame: &[u8]) {
        self.next_slot().extend_from_slice(frame);
    }

    /// Appends `buf` by swapping it with a spare buffer, which is returned
    /// (zero copy). The returned buffer is empty but keeps its allocation; it
    /// has none if the batch had no spare.
    pub fn push_swap(&mut self, buf: &mut Vec<u8>) {
        if self.len == self.bufs.len() {
            self.bufs.push(std::mem::take(buf));
        } else {
            core::mem::swap(&mut self.bufs[self.len], buf);
            buf.clear();
        }
        self.len += 1;
    }

    /// Frame `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> &[u8] {
        assert!(i < self.len, "frame index {i} out of range {}", self.len);
        &self.bufs[i]
    }

    /// Frame `i`, writable in place (its length is fixed).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.len, "frame index {i} out of range {}", self.len);
        &mut self.bufs[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs[..self.len].iter().map(Vec::as_slice)
    }

    /// Swaps frame `i`'s buffer with `other` (for zero-copy moves into a
    /// queue). Frame `i` then holds whatever `other` held; callers moving a
    /// whole batch out follow with `clear()`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn swap_frame(&mut self, i: usize, other: &mut Vec<u8>) {
        assert!(i < self.len, "frame index {i} out of range {}", self.len);
        core::mem::swap(&mut self.bufs[i], other);
    }
}

/// What a device can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCapabilities {
    /// The IP MTU: the largest IP packet (Ethernet payload) the device
    /// carries. Frames may be up to `mtu + 14` bytes (no FCS, no VLAN tag).
    pub mtu: usize,
    /// The most frames worth moving in one receive or transmit call.
    pub max_burst: usize,
}

impl Default for DeviceCapabilities {
    fn default() -> Self {
        DeviceCapabilities {
            mtu: 1500,
            max_burst: 32,
        }
    }
}

/// The device's own counters, below the interface's: what the NIC queue,
/// AF_XDP socket or tap moved and lost. Device-neutral; a device fills what
/// it knows and leaves the rest zero. All are totals since the device
/// opened (monotonic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Frames the device delivered to the stack.
    pub rx_frames: u64,
    /// Bytes of those frames (Ethernet header included, no FCS).
    pub rx_bytes: u64,
    /// Frames the device accepted for sending.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames that reached the device but never the stack: for AF_XDP the
    /// kernel's `rx_dropped`, `rx_ring_full` and `rx_invalid_descs` plus
    /// rx descriptors flowlane rejected; for tap, frames over the MTU.
    pub rx_dropped: u64,
    /// Times a frame arrived while the fill ring was empty (AF_XDP's
    /// `rx_fill_ring_empty_descs`): the stack was not returning buffers
    /// fast enough, and the frame was dropped or delayed.
    pub rx_fill_ring_empty: u64,
    /// Frames handed to `transmit` that were not sent: no free buffer or
    /// descriptor, queue full, too large, or (AF_XDP) invalid descriptors
    /// the kernel rejected (`tx_invalid_descs`); for tap, write errors too.
    pub tx_dropped: u64,
    /// Transmit kicks (AF_XDP `sendto`) that found the kernel busy and were
    /// retried.
    pub tx_kick_retries: u64,
    /// Transmit kicks that failed, or gave up with frames still queued.
    pub tx_kick_errors: u64,
}

impl DeviceCounters {
    /// Adds `other` field by field (summing cores).
    pub fn add(&mut self, other: &DeviceCounters) {
        self.rx_frames += other.rx_frames;
        self.rx_bytes += other.rx_bytes;
        self.tx_frames += other.tx_frames;
        self.tx_bytes += other.tx_bytes;
        self.rx_dropped += other.rx_dropped;
        self.rx_fill_ring_empty += other.rx_fill_ring_empty;
        self.tx_dropped += other.tx_dropped;
        self.tx_kick_retries += other.tx_kick_retries;
        self.tx_kick_errors += other.tx_kick_errors;
    }
}

/// A network device that moves Ethernet frames in bursts.
///
/// Implementations are sans-IO with respect to time: `now` is the caller's
/// clock (real for hardware, virtual for the in-memory link).
pub trait Device {
    fn capabilities(&self) -> DeviceCapabilities;

    /// Appends up to `max` frames that have arrived by `now` to `batch`;
    /// returns how many.
    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize;

    /// Sends every frame in `batch` and clears it; returns how many were
    /// accepted (the rest were dropped and counted by the device because its
    /// queue was full).
    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize;

    /// When the next frame becomes receivable (virtual-time harnesses jump to
    /// it); `None` if none is queued.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// The device's own counters. Not for the per-packet path: the runtime
    /// reads them when it publishes statistics (every `stats_interval`),
    /// and a device may make a system call here (AF_XDP reads the kernel's
    /// `XDP_STATISTICS`). Devices that keep none return zeros.
    fn counters(&self) -> DeviceCounters {
        DeviceCounters::default()
    }
}

impl<D: Device + ?Sized> Device for &mut D {
    fn capabilities(&self) -> DeviceCapabilities {
        (**self).capabilities()
    }
    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        (**self).receive(now, batch, max)
    }
    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize {
        (**self).transmit(now, batch)
    }
    fn poll_at(&self) -> Option<Instant> {
        (**self).poll_at()
    }
    fn counters(&self) -> DeviceCounters {
        (**self).counters()
    }
}

#[cfg(test)]
impl DeviceCounters {
    /// Every field a different value, 1 to 9 in declaration order: for
    /// tests that check each field is carried where it belongs.
    pub(crate) fn numbered() -> DeviceCounters {
        DeviceCounters {
            rx_frames: 1,
            rx_bytes: 2,
            tx_frames: 3,
            tx_bytes: 4,
            rx_dropped: 5,
            rx_fill_ring_empty: 6,
            tx_dropped: 7,
            tx_kick_retries: 8,
            tx_kick_errors: 9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_with_fills_exact_length_and_zeroes_reused_buffer() {
        let mut b = FrameBatch::new();
        b.push_copy(&[0xff; 64]);
        b.clear();
        b.push_with(10, |f| f[0] = 1);
        assert_eq!(b.len(), 1);
        let mut expected = [0u8; 10];
        expected[0] = 1;
        assert_eq!(b.get(0), &expected);
    }

    #[test]
    fn clear_keeps_buffer_allocations_for_reuse() {
        let mut b = FrameBatch::with_capacity(4);
        b.push_copy(&[1; 1500]);
        b.push_copy(&[2; 1500]);
        let ptrs: Vec<*const u8> = b.iter().map(|f| f.as_ptr()).collect();
        b.clear();
        assert!(b.is_empty());
        b.push_copy(&[3; 1000]);
        b.push_with(1400, |_| {});
        let again: Vec<*const u8> = b.iter().map(|f| f.as_ptr()).collect();
        assert_eq!(ptrs, again);
        assert_eq!(b.get(0), &[3; 1000][..]);
    }

    #[test]
    fn push_swap_moves_buffer_in_and_returns_empty_spare_with_capacity() {
        let mut b = FrameBatch::new();
        b.push_copy(&[9; 100]);
        b.clear();
        let mut frame = vec![7u8; 60];
        let frame_ptr = frame.as_ptr();
        b.push_swap(&mut frame);
        assert_eq!(b.get(0).as_ptr(), frame_ptr);
        assert_eq!(b.get(0), &[7; 60][..]);
        assert!(frame.is_empty());
        assert!(frame.capacity() >= 100);
    }

    #[test]
    fn push_swap_without_spare_takes_buffer_and_leaves_empty_vec() {
        let mut b = FrameBatch::new();
        let mut frame = vec![5u8; 20];
        b.push_swap(&mut frame);
        assert_eq!(b.get(0), &[5; 20][..]);
        assert!(frame.is_empty());
        assert_eq!(frame.capacity(), 0);
    }

    #[test]
    fn swap_frame_exchanges_buffer_without_copying() {
        let mut b = FrameBatch::new();
        b.push_copy(b"hello");
        b.push_copy(b"world");
        let mut other = b"xyz".to_vec();
        b.swap_frame(1, &mut other);
        assert_eq!(other, b"world");
        assert_eq!(b.get(1), b"xyz");
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![&b"hello"[..], &b"xyz"[..]]
        );
    }

    #[test]
    #[should_panic]
    fn get_past_len_panics_even_when_spare_buffers_exist() {
        let mut b = FrameBatch::new();
        b.push_copy(b"a");
        b.clear();
        b.get(0);
    }

    #[test]
    fn mutable_reference_to_device_forwards_every_method() {
        struct Fixed(Vec<Vec<u8>>, usize);
        impl Device for Fixed {
            fn capabilities(&self) -> DeviceCapabilities {
                DeviceCapabilities {
                    mtu: 9000,
                    max_burst: 4,
                }
            }
            fn receive(&mut self, _: Instant, batch: &mut FrameBatch, max: usize) -> usize {
                let n = self.0.len().min(max);
                for f in self.0.drain(..n) {
                    batch.push_copy(&f);
                }
                n
            }
            fn transmit(&mut self, _: Instant, batch: &mut FrameBatch) -> usize {
                let n = batch.len();
                self.1 += n;
                batch.clear();
                n
            }
            fn poll_at(&self) -> Option<Instant> {
                Some(Instant::from_micros(77))
            }
            fn counters(&self) -> DeviceCounters {
                DeviceCounters {
                    tx_frames: self.1 as u64,
                    ..DeviceCounters::default()
                }
            }
        }
        fn drive<D: Device>(mut d: D) -> (usize, usize, Option<Instant>, usize, u64) {
            let mut batch = FrameBatch::new();
            let rx = d.receive(Instant::ZERO, &mut batch, 8);
            let tx = d.transmit(Instant::ZERO, &mut batch);
            (
                rx,
                tx,
                d.poll_at(),
                d.capabilities().mtu,
                d.counters().tx_frames,
            )
        }
        let mut dev = Fixed(vec![vec![1], vec![2]], 0);
        assert_eq!(
            drive(&mut dev),
            (2, 2, Some(Instant::from_micros(77)), 9000, 2)
        );
        assert_eq!(dev.1, 2);
    }

    #[test]
    fn devices_without_counters_report_zeros() {
        struct Silent;
        impl Device for Silent {
            fn capabilities(&self) -> DeviceCapabilities {
                DeviceCapabilities::default()
            }
            fn receive(&mut self, _: Instant, _: &mut FrameBatch, _: usize) -> usize {
                0
            }
            fn transmit(&mut self, _: Instant, batch: &mut FrameBatch) -> usize {
                batch.clear();
                0
            }
        }
        assert_eq!(Silent.counters(), DeviceCounters::default());
    }

    #[test]
    fn device_counters_add_every_field() {
        let one = DeviceCounters::numbered();
        let mut t = one;
        t.add(&one);
        assert_eq!(
            t,
            DeviceCounters {
                rx_frames: 2,
                rx_bytes: 4,
                tx_frames: 6,
                tx_bytes: 8,
                rx_dropped: 10,
                rx_fill_ring_empty: 12,
                tx_dropped: 14,
                tx_kick_retries: 16,
                tx_kick_errors: 18,
            }
        );
    }
}
