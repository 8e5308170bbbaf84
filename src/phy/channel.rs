//! A thread-safe in-memory wire between two devices: each direction is a
//! bounded lock-free queue of frames. The per-core runtime tests run real
//! threads over it (the seeded `Link` is single-threaded by design).
//!
//! Never blocks: a full queue drops the frame and counts it, like a NIC
//! ring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::{Device, DeviceCapabilities, DeviceCounters, FrameBatch};
use crate::time::Instant;

struct Wire {
    queue: ArrayQueue<Vec<u8>>,
    dropped: AtomicU64,
}

/// One end of a channel pair.
pub struct ChannelDevice {
    rx: Arc<Wire>,
    tx: Arc<Wire>,
    mtu: usize,
    /// Spare buffers, so steady state allocates nothing on this side.
    spare: Vec<Vec<u8>>,
    /// This end's frames and bytes received and sent (drops are the
    /// wire's, shared with the other end's thread).
    counted: DeviceCounters,
}

impl ChannelDevice {
    /// Two connected ends, each direction holding up to `capacity` frames.
    pub fn pair(capacity: usize) -> (ChannelDevice, ChannelDevice) {
        let a = Arc::new(Wire {
            queue: ArrayQueue::new(capacity),
            dropped: AtomicU64::new(0),
        });
        let b = Arc::new(Wire {
            queue: ArrayQueue::new(capacity),
            dropped: AtomicU64::new(0),
        });
        (
            ChannelDevice {
                rx: a.clone(),
                tx: b.clone(),
                mtu: 1500,
                spare: Vec::new(),
                counted: DeviceCounters::default(),
            },
            ChannelDevice {
                rx: b,
                tx: a,
                mtu: 1500,
                spare: Vec::new(),
                counted: DeviceCounters::default(),
            },
        )
    }

    /// Frames this end could not send because the queue was full.
    pub fn tx_dropped(&self) -> u64 {
        self.tx.dropped.load(Ordering::Relaxed)
    }
}

impl Device for ChannelDevice {
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            mtu: self.mtu,
            max_burst: 64,
        }
    }

    fn receive(&mut self, _now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut frame) = self.rx.queue.pop() else {
                break;
            };
            self.counted.rx_frames += 1;
            self.counted.rx_bytes += frame.len() as u64;
            batch.push_swap(&mut frame);
            if frame.capacity() > 0 {
                self.spare.push(frame);
            }
            n += 1;
        }
        n
    }

    fn transmit(&mut self, _now: Instant, batch: &mut FrameBatch) -> usize {
        let mut sent = 0;
        for i in 0..batch.len() {
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(batch.get(i));
            let len = buf.len() as u64;
            match self.tx.queue.push(buf) {
                Ok(()) => {
                    sent += 1;
                    self.counted.tx_frames += 1;
                    self.counted.tx_bytes += len;
                }
                Err(buf) => {
                    self.tx.dropped.fetch_add(1, Ordering::Relaxed);
                    self.spare.push(buf);
                }
            }
        }
        batch.clear();
        sent
    }

    fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            tx_dropped: self.tx_dropped(),
            ..self.counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each end counts what it sent and received; frames a full queue
    /// refused are the sender's drops.
    #[test]
    fn each_end_counts_frames_and_bytes_and_the_sender_its_drops() {
        let (mut a, mut b) = ChannelDevice::pair(2);
        let mut batch = FrameBatch::new();
        for len in [60, 70, 80] {
            batch.push_copy(&vec![0x11; len]);
        }
        assert_eq!(a.transmit(Instant::ZERO, &mut batch), 2);
        let sent = a.counters();
        assert_eq!(
            (sent.tx_frames, sent.tx_bytes, sent.tx_dropped),
            (2, 130, 1)
        );
        assert_eq!(b.receive(Instant::ZERO, &mut batch, 8), 2);
        let got = b.counters();
        assert_eq!((got.rx_frames, got.rx_bytes), (2, 130));
        assert_eq!((got.tx_frames, got.tx_dropped), (0, 0));
    }
}
