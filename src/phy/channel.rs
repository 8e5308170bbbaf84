//! A thread-safe in-memory wire between two devices: each direction is a
//! bounded lock-free queue of frames. The per-core runtime tests run real
//! threads over it (the seeded `Link` is single-threaded by design).
//!
//! Never blocks: a full queue drops the frame and counts it, like a NIC
//! ring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::{Device, DeviceCapabilities, FrameBatch};
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
            },
            ChannelDevice {
                rx: b,
                tx: a,
                mtu: 1500,
                spare: Vec::new(),
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
            match self.tx.queue.push(buf) {
                Ok(()) => sent += 1,
                Err(buf) => {
                    self.tx.dropped.fetch_add(1, Ordering::Relaxed);
                    self.spare.push(buf);
                }
            }
        }
        batch.clear();
        sent
    }
}
