//! The device each core of a C runtime polls: the OS device (a tap queue or
//! an AF_XDP socket) plus two things the C API's runtime adds.
//!
//! - ARP replies are shared. Each core keeps its own neighbour table, but a
//!   reply comes back on whatever queue the NIC (or the kernel, for a tap or
//!   generic XDP) picks; on a veth with generic XDP every frame arrives on
//!   queue 0. A core whose ARP request was answered on another queue would
//!   never learn the answer, and its connections would stall. So every ARP
//!   reply a core receives is also handed, through a bounded mailbox, to the
//!   other cores. (Requests are not shared: every core would answer.)
//! - `pcap=FILE` records what the core sends and receives.
//!
//! Never: blocks, or allocates on the data path except to copy an ARP reply.

use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::phy::{Device, DeviceCapabilities, DeviceCounters, FrameBatch, PcapWriter};
use crate::time::Instant;
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame};

/// ARP replies waiting for each core.
pub struct ArpShare {
    boxes: Vec<ArrayQueue<Vec<u8>>>,
}

impl ArpShare {
    pub fn new(cores: usize) -> Arc<ArpShare> {
        Arc::new(ArpShare {
            boxes: (0..cores).map(|_| ArrayQueue::new(64)).collect(),
        })
    }
}

fn is_arp_reply(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EtherType::Arp {
        return false;
    }
    let Ok(packet) = ArpPacket::new_checked(eth.payload()) else {
        return false;
    };
    matches!(
        ArpRepr::parse(&packet),
        Ok(ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            ..
        })
    )
}

/// One core's device.
pub struct CoreDevice {
    inner: Box<dyn Device + Send>,
    core: usize,
    arp: Option<Arc<ArpShare>>,
    pcap: Option<PcapWriter<BufWriter<File>>>,
}

impl CoreDevice {
    pub fn new(
        inner: Box<dyn Device + Send>,
        core: usize,
        arp: Option<Arc<ArpShare>>,
        pcap: Option<PcapWriter<BufWriter<File>>>,
    ) -> CoreDevice {
        CoreDevice {
            inner,
            core,
            arp,
            pcap,
        }
    }
}

impl Device for CoreDevice {
    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }

    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let mut got = 0;
        if let Some(share) = &self.arp {
            while got < max {
                let Some(mut frame) = share.boxes[self.core].pop() else {
                    break;
                };
                batch.push_swap(&mut frame);
                got += 1;
            }
        }
        let first = batch.len();
        got += self.inner.receive(now, batch, max - got);
        if let Some(share) = &self.arp {
            for i in first..batch.len() {
                let frame = batch.get(i);
                if is_arp_reply(frame) {
                    for (core, mailbox) in share.boxes.iter().enumerate() {
                        if core != self.core {
                            // Full: the core will ask again.
                            let _ = mailbox.push(frame.to_vec());
                        }
                    }
                }
            }
        }
        if let Some(w) = &mut self.pcap {
            for i in first..batch.len() {
                let _ = w.write_frame(now, batch.get(i));
            }
        }
        got
    }

    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize {
        if let Some(w) = &mut self.pcap {
            for frame in batch.iter() {
                let _ = w.write_frame(now, frame);
            }
        }
        self.inner.transmit(now, batch)
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }

    fn counters(&self) -> DeviceCounters {
        self.inner.counters()
    }
}
