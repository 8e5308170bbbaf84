//! An in-memory Ethernet link with a seeded impairment model.
//!
//! Owns: per-direction queues of frames in flight, ordered by delivery time;
//! the impairment model (loss, duplication, reordering, single-bit
//! corruption, delay, jitter, serialization rate, queue limit) and its
//! per-direction statistics; and a free list of frame buffers.
//!
//! Never: reads a clock (delivery times derive from the `now` passed to
//! `transmit`), uses an unseeded random source (each direction draws from its
//! own [`Rng`] derived from the link's seed, so the same seed and the same
//! traffic give the same outcome, and traffic in one direction never shifts
//! another direction's draws), or allocates per frame once warm (frames move
//! between [`FrameBatch`]es and the queues by swapping `Vec`s; only
//! duplicates and hub fan-out copy bytes).
//!
//! Like an Ethernet hub, a frame sent on one port is offered to every other
//! port independently; the interfaces behind the ports filter by MAC.

use std::collections::VecDeque;

use super::{Device, DeviceCapabilities, DeviceCounters, FrameBatch};
use crate::rand::{splitmix64, Rng};
use crate::time::{Duration, Instant};

/// Ethernet II header: destination, source, EtherType (no FCS, no VLAN tag).
const ETHERNET_HEADER_LEN: usize = 14;
/// Burst size the link advertises to interfaces.
const MAX_BURST: usize = 64;
/// Spare buffers kept for reuse; beyond this a burst's leftovers are freed.
const FREE_LIST_MAX: usize = 1024;

/// Impairments applied to one direction of a link. `Default` is a perfect
/// link: no loss, no delay, unlimited rate, 65536 frames of queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// IP MTU; frames longer than `mtu + 14` are dropped and counted as
    /// `oversized`.
    pub mtu: usize,
    /// Probability that a frame is lost in transit.
    pub loss: f64,
    /// Probability that a frame is delivered twice (the copy arrives right
    /// after the original).
    pub duplicate: f64,
    /// Probability that a frame is held back an extra `reorder_delay`, so
    /// frames sent after it overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered frame. Only used when `reorder > 0`.
    pub reorder_delay: Duration,
    /// Probability that one uniformly chosen bit of a frame is flipped.
    pub corrupt: f64,
    /// Propagation delay added to every frame.
    pub delay: Duration,
    /// Uniform extra delay in `0..jitter` per frame (may reorder frames, as
    /// netem's jitter does).
    pub jitter: Duration,
    /// Serialization rate in bits per second: a frame cannot start before the
    /// previous one in that direction finished. Counts frame bytes only (no
    /// preamble, FCS or inter-frame gap). `None` is infinitely fast.
    pub rate_bps: Option<u64>,
    /// Most frames in flight per direction (sent but not yet received);
    /// beyond it frames are tail-dropped and counted as `queue_dropped`.
    pub queue_limit: usize,
}

impl LinkConfig {
    /// No loss, duplication, reordering, corruption, delay or rate limit:
    /// frames arrive as sent, at once (the benchmarks' link).
    pub fn is_perfect(&self) -> bool {
        self.loss <= 0.0
            && self.duplicate <= 0.0
            && self.reorder <= 0.0
            && self.corrupt <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.rate_bps.is_none()
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            mtu: 1500,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(1),
            corrupt: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: None,
            queue_limit: 65536,
        }
    }
}

impl LinkConfig {
    /// No impairments at all (same as `Default`).
    pub fn perfect() -> Self {
        Self::default()
    }
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }
    pub fn with_loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }
    pub fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }
    /// Holds back a fraction `p` of frames by an extra `delay`.
    pub fn with_reorder(mut self, p: f64, delay: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = delay;
        self
    }
    pub fn with_corrupt(mut self, p: f64) -> Self {
        self.corrupt = p;
        self
    }
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }
    pub fn with_rate(mut self, bits_per_second: u64) -> Self {
        self.rate_bps = Some(bits_per_second);
        self
    }
    pub fn with_queue_limit(mut self, frames: usize) -> Self {
        self.queue_limit = frames;
        self
    }
}

/// Counters for one direction of a link. Every frame offered to a direction
/// is counted in `sent` and ends in exactly one of `delivered`, `lost`,
/// `queue_dropped`, `oversized` or still in flight; a duplicate adds one
/// extra frame to that accounting (counted in `duplicated`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    /// Handed to the receiving port.
    pub delivered: u64,
    pub lost: u64,
    /// Tail-dropped because `queue_limit` frames were in flight.
    pub queue_dropped: u64,
    /// Dropped because longer than `mtu + 14`.
    pub oversized: u64,
    pub duplicated: u64,
    /// Held back by `reorder_delay` (whether or not anything overtook them).
    pub reordered: u64,
    pub corrupted: u64,
    pub bytes_delivered: u64,
}

impl LinkStats {
    fn accumulate(&mut self, o: &LinkStats) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.queue_dropped += o.queue_dropped;
        self.oversized += o.oversized;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.corrupted += o.corrupted;
        self.bytes_delivered += o.bytes_delivered;
    }
}

#[derive(Debug)]
struct InFlight {
    deliver_at: Instant,
    /// Link-wide send order; breaks delivery-time ties so equal times keep
    /// send order, also across directions into one port.
    seq: u64,
    frame: Vec<u8>,
}

#[derive(Debug)]
struct Direction {
    config: LinkConfig,
    /// `config` draws nothing and delays nothing (see `LinkConfig::is_perfect`).
    perfect: bool,
    stats: LinkStats,
    /// Sorted by `(deliver_at, seq)`.
    queue: VecDeque<InFlight>,
    /// When the previous frame finishes serializing (only with `rate_bps`).
    busy_until: Instant,
    rng: Rng,
}

/// Frame `i` of `batch` in a buffer of its own: moved out of the batch
/// when `take_original` (the last destination), else copied into a spare.
#[inline(always)]
fn take_frame(
    batch: &mut FrameBatch,
    i: usize,
    take_original: bool,
    free: &mut Vec<Vec<u8>>,
) -> Vec<u8> {
    let mut frame = free.pop().unwrap_or_default();
    if take_original {
        batch.swap_frame(i, &mut frame);
    } else {
        frame.clear();
        frame.extend_from_slice(batch.get(i));
    }
    frame
}

impl Direction {
    /// Moves the frame at the front of the queue into `batch` (by swapping
    /// buffers; the one swapped out joins `free`). False if none is queued.
    #[inline(always)]
    fn deliver_front(&mut self, batch: &mut FrameBatch, free: &mut Vec<Vec<u8>>) -> bool {
        let Some(mut item) = self.queue.pop_front() else {
            return false;
        };
        self.stats.delivered += 1;
        self.stats.bytes_delivered += item.frame.len() as u64;
        batch.push_swap(&mut item.frame);
        if item.frame.capacity() > 0 && free.len() < FREE_LIST_MAX {
            free.push(item.frame);
        }
        true
    }

    #[inline(always)]
    fn enqueue(&mut self, item: InFlight) {
        // Without jitter or reordering delivery times never decrease, so the
        // common case is a push to the back.
        match self.queue.back() {
            Some(last) if last.deliver_at > item.deliver_at => {
                let at = self
                    .queue
                    .partition_point(|e| e.deliver_at <= item.deliver_at);
                self.queue.insert(at, item);
            }
            _ => self.queue.push_back(item),
        }
    }

    /// Offers frame `i` of `batch` to this direction. Moves the buffer out of
    /// the batch when `take_original` (the last destination), else copies.
    /// Returns whether the frame was accepted onto the wire (lost in transit
    /// counts as accepted; oversize and tail drop do not).
    #[inline]
    fn offer(
        &mut self,
        now: Instant,
        batch: &mut FrameBatch,
        i: usize,
        take_original: bool,
        free: &mut Vec<Vec<u8>>,
        next_seq: &mut u64,
    ) -> bool {
        let len = batch.get(i).len();
        self.stats.sent += 1;
        if len > self.config.mtu + ETHERNET_HEADER_LEN {
            self.stats.oversized += 1;
            return false;
        }
        if self.queue.len() >= self.config.queue_limit {
            self.stats.queue_dropped += 1;
            return false;
        }
        if self.perfect {
            // A plain cable: straight on, nothing drawn.
            let frame = take_frame(batch, i, take_original, free);
            self.enqueue(InFlight {
                deliver_at: now,
                seq: *next_seq,
                frame,
            });
            *next_seq += 1;
            return true;
        }
        self.offer_impaired(now, batch, i, take_original, free, next_seq)
    }

    /// [`offer`](Self::offer) through the impairment model (kept out of
    /// the perfect cable's path).
    #[inline(never)]
    fn offer_impaired(
        &mut self,
        now: Instant,
        batch: &mut FrameBatch,
        i: usize,
        take_original: bool,
        free: &mut Vec<Vec<u8>>,
        next_seq: &mut u64,
    ) -> bool {
        let len = batch.get(i).len();
        let c = self.config;
        let departed = match c.rate_bps {
            Some(bps) if bps > 0 => {
                let start = now.max(self.busy_until);
                self.busy_until = start + serialization_time(len, bps);
                self.busy_until
            }
            _ => now,
        };
        if self.rng.gen_bool(c.loss) {
            self.stats.lost += 1;
            return true;
        }
        let mut deliver_at = departed + c.delay;
        if !c.jitter.is_zero() {
            let extra = self.rng.gen_range(0, c.jitter.total_micros());
            deliver_at += Duration::from_micros(extra);
        }
        if self.rng.gen_bool(c.reorder) {
            deliver_at += c.reorder_delay;
            self.stats.reordered += 1;
        }

        let mut frame = take_frame(batch, i, take_original, free);
        // The duplicate is copied before corruption, so at most one copy is
        // damaged.
        let duplicate = if self.queue.len() + 1 < c.queue_limit && self.rng.gen_bool(c.duplicate) {
            let mut copy = free.pop().unwrap_or_default();
            copy.clear();
            copy.extend_from_slice(&frame);
            Some(copy)
        } else {
            None
        };
        if len > 0 && self.rng.gen_bool(c.corrupt) {
            let bit = self.rng.gen_range(0, len as u64 * 8) as usize;
            frame[bit / 8] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }

        self.enqueue(InFlight {
            deliver_at,
            seq: *next_seq,
            frame,
        });
        *next_seq += 1;
        if let Some(copy) = duplicate {
            self.enqueue(InFlight {
                deliver_at,
                seq: *next_seq,
                frame: copy,
            });
            *next_seq += 1;
            self.stats.duplicated += 1;
        }
        true
    }
}

/// Time to clock `len` bytes onto a wire of `bps` bits per second, rounded
/// up to whole microseconds.
fn serialization_time(len: usize, bps: u64) -> Duration {
    let bits = len as u128 * 8 * 1_000_000;
    let micros = bits.div_ceil(u128::from(bps));
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// An in-memory hub joining `N >= 2` ports. Use [`Link::port`] to get a
/// [`Device`] for one port.
#[derive(Debug)]
pub struct Link {
    ports: usize,
    /// Direction `from -> to` lives at `from * ports + to`; the diagonal is
    /// unused.
    dirs: Vec<Direction>,
    /// Emptied buffers with their allocations, reused for frames.
    free: Vec<Vec<u8>>,
    next_seq: u64,
    /// Per port, its device counters' transmit side: frames its `transmit`
    /// accepted onto the wire (lost in transit included), their bytes, and
    /// frames refused (oversized or tail-dropped on every direction). The
    /// receive side comes from the directions' `LinkStats`.
    sent: Vec<DeviceCounters>,
}

impl Link {
    /// A two-port link (a cable) with `config` in both directions.
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link::with_ports(2, config, seed)
    }

    /// A hub of `n` ports with `config` on every direction.
    ///
    /// # Panics
    /// If `n < 2`.
    pub fn with_ports(n: usize, config: LinkConfig, seed: u64) -> Link {
        assert!(n >= 2, "a link needs at least two ports, got {n}");
        let mut seeder = seed;
        let dirs = (0..n * n)
            .map(|_| Direction {
                config,
                perfect: config.is_perfect(),
                stats: LinkStats::default(),
                queue: VecDeque::new(),
                busy_until: Instant::ZERO,
                rng: Rng::new(splitmix64(&mut seeder)),
            })
            .collect();
        Link {
            ports: n,
            dirs,
            free: Vec::new(),
            next_seq: 0,
            sent: vec![DeviceCounters::default(); n],
        }
    }

    pub fn ports(&self) -> usize {
        self.ports
    }

    fn dir_index(&self, from: usize, to: usize) -> usize {
        assert!(
            from < self.ports && to < self.ports && from != to,
            "no direction {from} -> {to} on a {}-port link",
            self.ports
        );
        from * self.ports + to
    }

    /// Sets the impairments for frames sent on `from_port` towards
    /// `to_port` only. Frames already in flight keep their delivery times.
    ///
    /// # Panics
    /// If either port does not exist or they are equal.
    pub fn set_config(&mut self, from_port: usize, to_port: usize, config: LinkConfig) {
        let i = self.dir_index(from_port, to_port);
        self.dirs[i].config = config;
        self.dirs[i].perfect = config.is_perfect();
    }

    /// Sets the impairments for every direction.
    pub fn set_config_all(&mut self, config: LinkConfig) {
        for d in &mut self.dirs {
            d.config = config;
            d.perfect = config.is_perfect();
        }
    }

    pub fn config(&self, from_port: usize, to_port: usize) -> LinkConfig {
        self.dirs[self.dir_index(from_port, to_port)].config
    }

    /// The device for port `i`; it borrows the link until dropped.
    ///
    /// # Panics
    /// If the port does not exist.
    #[inline]
    pub fn port(&mut self, i: usize) -> LinkPort<'_> {
        assert!(i < self.ports, "no port {i} on a {}-port link", self.ports);
        LinkPort {
            link: self,
            index: i,
        }
    }

    /// The earliest pending delivery over all ports; `None` if nothing is in
    /// flight.
    pub fn poll_at(&self) -> Option<Instant> {
        self.dirs
            .iter()
            .filter_map(|d| d.queue.front().map(|f| f.deliver_at))
            .min()
    }

    fn poll_at_port(&self, to: usize) -> Option<Instant> {
        (0..self.ports)
            .filter(|&from| from != to)
            .filter_map(|from| {
                self.dirs[from * self.ports + to]
                    .queue
                    .front()
                    .map(|f| f.deliver_at)
            })
            .min()
    }

    pub fn stats(&self, from: usize, to: usize) -> LinkStats {
        self.dirs[self.dir_index(from, to)].stats
    }

    /// Sum of the statistics of every direction.
    pub fn total_stats(&self) -> LinkStats {
        let mut total = LinkStats::default();
        for (i, d) in self.dirs.iter().enumerate() {
            if i / self.ports != i % self.ports {
                total.accumulate(&d.stats);
            }
        }
        total
    }

    /// Frames sent `from -> to` not yet received (including those already
    /// due but not yet picked up by the receiver).
    pub fn in_flight(&self, from: usize, to: usize) -> usize {
        self.dirs[self.dir_index(from, to)].queue.len()
    }

    fn transmit_from(&mut self, from: usize, now: Instant, batch: &mut FrameBatch) -> usize {
        if self.ports == 2 {
            return self.transmit_cable(from, now, batch);
        }
        let last_to = if from == self.ports - 1 {
            self.ports - 2
        } else {
            self.ports - 1
        };
        let mut accepted = 0;
        let mut bytes = 0;
        for i in 0..batch.len() {
            let len = batch.get(i).len();
            let mut any = false;
            for to in (0..self.ports).filter(|&to| to != from) {
                let dir = &mut self.dirs[from * self.ports + to];
                any |= dir.offer(
                    now,
                    batch,
                    i,
                    to == last_to,
                    &mut self.free,
                    &mut self.next_seq,
                );
            }
            accepted += usize::from(any);
            bytes += if any { len } else { 0 };
        }
        self.sent_batch(from, batch, accepted, bytes)
    }

    /// Counts a transmitted batch on port `from` (`accepted` of its frames,
    /// `bytes` long, went onto the wire) and empties it.
    #[inline(always)]
    fn sent_batch(
        &mut self,
        from: usize,
        batch: &mut FrameBatch,
        accepted: usize,
        bytes: usize,
    ) -> usize {
        let sent = &mut self.sent[from];
        sent.tx_frames += accepted as u64;
        sent.tx_bytes += bytes as u64;
        sent.tx_dropped += (batch.len() - accepted) as u64;
        batch.clear();
        accepted
    }

    /// [`transmit_from`](Self::transmit_from) on a cable: one direction
    /// out, and each frame's buffer moves onto it (a hub copies a frame for
    /// every port but the last).
    #[inline(always)]
    fn transmit_cable(&mut self, from: usize, now: Instant, batch: &mut FrameBatch) -> usize {
        let dir = &mut self.dirs[from * 2 + (1 - from)];
        let mut accepted = 0;
        let mut bytes = 0;
        for i in 0..batch.len() {
            let len = batch.get(i).len();
            if dir.offer(now, batch, i, true, &mut self.free, &mut self.next_seq) {
                accepted += 1;
                bytes += len;
            }
        }
        self.sent_batch(from, batch, accepted, bytes)
    }

    /// Port `port`'s device counters: what its `transmit` accepted and
    /// refused, and what the directions into it delivered.
    fn port_counters(&self, port: usize) -> DeviceCounters {
        let mut c = self.sent[port];
        for from in (0..self.ports).filter(|&from| from != port) {
            let stats = &self.dirs[from * self.ports + port].stats;
            c.rx_frames += stats.delivered;
            c.rx_bytes += stats.bytes_delivered;
        }
        c
    }

    #[inline(always)]
    fn receive_at(&mut self, to: usize, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        if self.ports == 2 {
            return self.receive_cable(to, now, batch, max);
        }
        let mut received = 0;
        while received < max {
            // The earliest deliverable frame over the directions into `to`.
            let mut best: Option<(usize, Instant, u64)> = None;
            for from in (0..self.ports).filter(|&from| from != to) {
                let idx = from * self.ports + to;
                if let Some(f) = self.dirs[idx].queue.front() {
                    let earlier = best.is_none_or(|(_, t, s)| (f.deliver_at, f.seq) < (t, s));
                    if f.deliver_at <= now && earlier {
                        best = Some((idx, f.deliver_at, f.seq));
                    }
                }
            }
            let Some((idx, _, _)) = best else { break };
            if !self.dirs[idx].deliver_front(batch, &mut self.free) {
                break;
            }
            received += 1;
        }
        received
    }

    /// [`receive_at`](Self::receive_at) on a cable: one direction in, no
    /// merge by delivery time.
    #[inline(always)]
    fn receive_cable(
        &mut self,
        to: usize,
        now: Instant,
        batch: &mut FrameBatch,
        max: usize,
    ) -> usize {
        let dir = &mut self.dirs[(1 - to) * 2 + to];
        let mut received = 0;
        while received < max {
            match dir.queue.front() {
                Some(f) if f.deliver_at <= now => {}
                _ => break,
            }
            if !dir.deliver_front(batch, &mut self.free) {
                break;
            }
            received += 1;
        }
        received
    }
}

/// One port of a [`Link`], usable as a [`Device`] while it borrows the link.
#[derive(Debug)]
pub struct LinkPort<'a> {
    link: &'a mut Link,
    index: usize,
}

impl LinkPort<'_> {
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Device for LinkPort<'_> {
    /// The smallest MTU over this port's outgoing directions.
    fn capabilities(&self) -> DeviceCapabilities {
        let link = &*self.link;
        let mtu = (0..link.ports)
            .filter(|&to| to != self.index)
            .map(|to| link.dirs[self.index * link.ports + to].config.mtu)
            .min()
            .unwrap_or(1500);
        DeviceCapabilities {
            mtu,
            max_burst: MAX_BURST,
        }
    }

    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        self.link.receive_at(self.index, now, batch, max)
    }

    /// Offers each frame to every other port. A frame counts as accepted if
    /// at least one direction took it onto the wire (a frame lost in transit
    /// was accepted); oversized and tail-dropped frames were not.
    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize {
        self.link.transmit_from(self.index, now, batch)
    }

    fn poll_at(&self) -> Option<Instant> {
        self.link.poll_at_port(self.index)
    }

    fn counters(&self) -> DeviceCounters {
        self.link.port_counters(self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// A frame of `len` bytes whose first 8 bytes carry `id`.
    fn frame(id: u64, len: usize) -> Vec<u8> {
        let mut f = vec![0xa5; len.max(8)];
        f[..8].copy_from_slice(&id.to_be_bytes());
        f
    }

    fn id_of(f: &[u8]) -> u64 {
        u64::from_be_bytes(f[..8].try_into().unwrap())
    }

    fn send(
        link: &mut Link,
        port: usize,
        now: Instant,
        ids: impl IntoIterator<Item = u64>,
    ) -> usize {
        let mut b = FrameBatch::new();
        for id in ids {
            b.push_copy(&frame(id, 100));
        }
        link.port(port).transmit(now, &mut b)
    }

    fn recv_ids(link: &mut Link, port: usize, now: Instant) -> Vec<u64> {
        let mut b = FrameBatch::new();
        link.port(port).receive(now, &mut b, usize::MAX);
        b.iter().map(id_of).collect()
    }

    #[test]
    fn perfect_link_delivers_every_frame_in_order_to_the_other_port() {
        let mut link = Link::new(LinkConfig::default(), 1);
        assert_eq!(send(&mut link, 0, T0, 0..100), 100);
        assert_eq!(recv_ids(&mut link, 0, T0), Vec::<u64>::new());
        assert_eq!(recv_ids(&mut link, 1, T0), (0..100).collect::<Vec<_>>());
        let s = link.stats(0, 1);
        assert_eq!((s.sent, s.delivered, s.bytes_delivered), (100, 100, 10_000));
        assert_eq!(link.poll_at(), None);
    }

    /// Each port's device counters: what its transmit accepted (lost in
    /// transit included) and refused, and what reached it; a hub counts a
    /// frame sent to several ports once.
    #[test]
    fn port_counters_count_what_each_port_sent_refused_and_received() {
        let mut link = Link::new(LinkConfig::default().with_queue_limit(3).with_mtu(200), 1);
        let mut b = FrameBatch::new();
        for (id, len) in [(1, 100), (2, 300), (3, 100), (4, 100), (5, 100)] {
            b.push_copy(&frame(id, len));
        }
        // Frame 2 is over the MTU, frame 5 finds the queue full.
        assert_eq!(link.port(0).transmit(T0, &mut b), 3);
        let tx = link.port(0).counters();
        assert_eq!((tx.tx_frames, tx.tx_bytes, tx.tx_dropped), (3, 300, 2));
        assert_eq!((tx.rx_frames, tx.rx_bytes), (0, 0));
        assert_eq!(recv_ids(&mut link, 1, T0), vec![1, 3, 4]);
        let rx = link.port(1).counters();
        assert_eq!((rx.rx_frames, rx.rx_bytes, rx.tx_frames), (3, 300, 0));

        let mut hub = Link::with_ports(3, LinkConfig::default(), 1);
        send(&mut hub, 0, T0, [9]);
        assert_eq!(hub.port(0).counters().tx_frames, 1);
        for port in [1, 2] {
            assert_eq!(recv_ids(&mut hub, port, T0), vec![9]);
            assert_eq!(hub.port(port).counters().rx_frames, 1);
        }
    }

    #[test]
    fn frame_is_not_receivable_before_its_delay_and_poll_at_reports_when() {
        let mut link = Link::new(
            LinkConfig::default().with_delay(Duration::from_millis(5)),
            1,
        );
        send(&mut link, 0, ms(1), [7]);
        assert_eq!(link.poll_at(), Some(ms(6)));
        assert_eq!(link.port(1).poll_at(), Some(ms(6)));
        assert_eq!(link.port(0).poll_at(), None);
        assert!(recv_ids(&mut link, 1, Instant::from_micros(5_999)).is_empty());
        assert_eq!(recv_ids(&mut link, 1, ms(6)), vec![7]);
    }

    #[test]
    fn receive_stops_at_max_and_keeps_the_rest_queued() {
        let mut link = Link::new(LinkConfig::default(), 1);
        send(&mut link, 0, T0, 0..10);
        let mut b = FrameBatch::new();
        assert_eq!(link.port(1).receive(T0, &mut b, 4), 4);
        assert_eq!(link.in_flight(0, 1), 6);
        assert_eq!(link.port(1).receive(T0, &mut b, 100), 6);
        assert_eq!(
            b.iter().map(id_of).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn hub_delivers_a_frame_to_every_other_port_but_not_back_to_sender() {
        let mut link = Link::with_ports(4, LinkConfig::default(), 1);
        send(&mut link, 2, T0, [1, 2]);
        for p in [0, 1, 3] {
            assert_eq!(recv_ids(&mut link, p, T0), vec![1, 2], "port {p}");
            assert_eq!(link.stats(2, p).delivered, 2);
        }
        assert!(recv_ids(&mut link, 2, T0).is_empty());
    }

    #[test]
    fn hub_port_receives_from_several_senders_in_delivery_time_order() {
        let mut link = Link::with_ports(3, LinkConfig::default(), 1);
        link.set_config(
            0,
            2,
            LinkConfig::default().with_delay(Duration::from_millis(5)),
        );
        link.set_config(
            1,
            2,
            LinkConfig::default().with_delay(Duration::from_millis(1)),
        );
        send(&mut link, 0, T0, [100]);
        send(&mut link, 1, ms(1), [200]);
        send(&mut link, 1, ms(1), [201]);
        assert_eq!(link.port(2).poll_at(), Some(ms(2)));
        assert_eq!(recv_ids(&mut link, 2, ms(10)), vec![200, 201, 100]);
    }

    #[test]
    fn equal_delivery_times_from_different_senders_keep_send_order() {
        let mut link = Link::with_ports(3, LinkConfig::default(), 1);
        send(&mut link, 1, T0, [1]);
        send(&mut link, 0, T0, [2]);
        send(&mut link, 1, T0, [3]);
        assert_eq!(recv_ids(&mut link, 2, T0), vec![1, 2, 3]);
    }

    #[test]
    fn loss_drops_about_that_fraction_and_counts_every_loss() {
        let mut link = Link::new(LinkConfig::default().with_loss(0.3), 42);
        let accepted = send(&mut link, 0, T0, 0..10_000);
        assert_eq!(accepted, 10_000, "loss in transit still counts as accepted");
        let got = recv_ids(&mut link, 1, T0);
        let s = link.stats(0, 1);
        assert_eq!(s.lost + s.delivered, 10_000);
        assert_eq!(got.len() as u64, s.delivered);
        assert!((2_800..3_200).contains(&s.lost), "lost {}", s.lost);
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "survivors stay in order"
        );
    }

    fn impaired() -> LinkConfig {
        LinkConfig::default()
            .with_loss(0.1)
            .with_duplicate(0.05)
            .with_reorder(0.1, Duration::from_millis(3))
            .with_corrupt(0.05)
            .with_delay(Duration::from_millis(2))
            .with_jitter(Duration::from_millis(1))
            .with_rate(10_000_000)
            .with_queue_limit(500)
    }

    fn run_impaired(seed: u64) -> (Vec<Vec<u8>>, LinkStats) {
        let mut link = Link::new(impaired(), seed);
        let mut out = Vec::new();
        let mut b = FrameBatch::new();
        for step in 0..200u64 {
            let now = Instant::from_micros(step * 100);
            send(&mut link, 0, now, step * 10..step * 10 + 10);
            link.port(1).receive(now, &mut b, usize::MAX);
            out.extend(b.iter().map(<[u8]>::to_vec));
            b.clear();
        }
        link.port(1)
            .receive(Instant::FAR_FUTURE, &mut b, usize::MAX);
        out.extend(b.iter().map(<[u8]>::to_vec));
        (out, link.stats(0, 1))
    }

    #[test]
    fn same_seed_replays_identical_frames_and_stats() {
        let (a, sa) = run_impaired(99);
        let (b, sb) = run_impaired(99);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert!(sa.lost > 0 && sa.duplicated > 0 && sa.reordered > 0 && sa.corrupted > 0);
        assert!(
            sa.queue_dropped > 0,
            "10 Mb/s cannot carry the 80 Mb/s offered"
        );
    }

    #[test]
    fn different_seeds_give_different_outcomes() {
        let (a, _) = run_impaired(1);
        let (b, _) = run_impaired(2);
        assert_ne!(a, b);
    }

    #[test]
    fn every_sent_frame_is_accounted_for_exactly_once() {
        let (_, s) = run_impaired(5);
        assert_eq!(
            s.sent + s.duplicated,
            s.delivered + s.lost + s.queue_dropped + s.oversized
        );
    }

    #[test]
    fn duplicate_delivers_two_identical_adjacent_copies_and_counts_them() {
        let mut link = Link::new(LinkConfig::default().with_duplicate(1.0), 3);
        send(&mut link, 0, T0, [1, 2]);
        assert_eq!(recv_ids(&mut link, 1, T0), vec![1, 1, 2, 2]);
        let s = link.stats(0, 1);
        assert_eq!((s.sent, s.duplicated, s.delivered), (2, 2, 4));
    }

    #[test]
    fn reorder_delays_some_frames_so_later_frames_overtake_them() {
        let cfg = LinkConfig::default().with_reorder(0.2, Duration::from_millis(10));
        let mut link = Link::new(cfg, 8);
        for i in 0..100 {
            send(&mut link, 0, Instant::from_micros(i * 100), [i]);
        }
        let got = recv_ids(&mut link, 1, ms(100));
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "nothing lost");
        assert_ne!(got, sorted, "some frames overtaken");
        let s = link.stats(0, 1);
        assert!(
            s.reordered > 5 && s.reordered < 40,
            "reordered {}",
            s.reordered
        );
    }

    #[test]
    fn corrupt_flips_exactly_one_bit_per_corrupted_frame() {
        let mut link = Link::new(LinkConfig::default().with_corrupt(1.0), 4);
        let original = frame(1, 200);
        let mut b = FrameBatch::new();
        for _ in 0..50 {
            b.push_copy(&original);
        }
        link.port(0).transmit(T0, &mut b);
        link.port(1).receive(T0, &mut b, usize::MAX);
        assert_eq!(b.len(), 50);
        for got in b.iter() {
            let flipped: u32 = got
                .iter()
                .zip(&original)
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
            assert_eq!(flipped, 1);
        }
        assert_eq!(link.stats(0, 1).corrupted, 50);
    }

    #[test]
    fn rate_limit_spaces_deliveries_by_serialization_time() {
        // 1500 bytes at 12 Mb/s take exactly 1 ms on the wire.
        let cfg = LinkConfig::default()
            .with_rate(12_000_000)
            .with_delay(Duration::from_millis(10));
        let mut link = Link::new(cfg, 1);
        let mut b = FrameBatch::new();
        for _ in 0..3 {
            b.push_copy(&[0; 1500]);
        }
        link.port(0).transmit(T0, &mut b);
        let mut times = Vec::new();
        while let Some(t) = link.poll_at() {
            times.push(t);
            link.port(1).receive(t, &mut b, 1);
        }
        assert_eq!(times, vec![ms(11), ms(12), ms(13)]);
    }

    #[test]
    fn serialization_restarts_from_now_after_the_wire_goes_idle() {
        let mut link = Link::new(LinkConfig::default().with_rate(12_000_000), 1);
        let mut b = FrameBatch::new();
        b.push_copy(&[0; 1500]);
        link.port(0).transmit(T0, &mut b);
        b.push_copy(&[0; 1500]);
        link.port(0).transmit(ms(50), &mut b);
        assert_eq!(link.port(1).receive(ms(1), &mut b, 10), 1);
        assert_eq!(link.poll_at(), Some(ms(51)));
    }

    #[test]
    fn queue_limit_tail_drops_and_transmit_reports_accepted_count() {
        let mut link = Link::new(LinkConfig::default().with_queue_limit(3), 1);
        assert_eq!(send(&mut link, 0, T0, 0..5), 3);
        assert_eq!(link.stats(0, 1).queue_dropped, 2);
        assert_eq!(recv_ids(&mut link, 1, T0), vec![0, 1, 2]);
        assert_eq!(send(&mut link, 0, T0, 5..6), 1, "room again once received");
    }

    #[test]
    fn oversized_frames_are_dropped_and_counted() {
        let mut link = Link::new(LinkConfig::default().with_mtu(1000), 1);
        let mut b = FrameBatch::new();
        b.push_copy(&frame(1, 1014));
        b.push_copy(&frame(2, 1015));
        assert_eq!(link.port(0).transmit(T0, &mut b), 1);
        assert_eq!(recv_ids(&mut link, 1, T0), vec![1]);
        assert_eq!(link.stats(0, 1).oversized, 1);
        assert_eq!(link.port(0).capabilities().mtu, 1000);
    }

    #[test]
    fn per_direction_config_impairs_only_that_direction() {
        let mut link = Link::new(LinkConfig::default(), 1);
        link.set_config(0, 1, LinkConfig::default().with_loss(1.0));
        send(&mut link, 0, T0, 0..10);
        send(&mut link, 1, T0, 0..10);
        assert!(recv_ids(&mut link, 1, T0).is_empty());
        assert_eq!(recv_ids(&mut link, 0, T0).len(), 10);
        assert_eq!(link.stats(0, 1).lost, 10);
        assert_eq!(link.stats(1, 0).lost, 0);
        assert_eq!(link.total_stats().sent, 20);
    }

    #[test]
    fn jitter_adds_delay_below_its_bound() {
        let cfg = LinkConfig::default()
            .with_delay(Duration::from_millis(1))
            .with_jitter(Duration::from_millis(2));
        let mut link = Link::new(cfg, 6);
        send(&mut link, 0, T0, 0..1000);
        let mut b = FrameBatch::new();
        assert_eq!(
            link.port(1)
                .receive(Instant::from_micros(999), &mut b, 2000),
            0
        );
        let early = link.port(1).receive(ms(2), &mut b, 2000);
        assert!(
            (400..600).contains(&early),
            "half the jitter window: {early}"
        );
        assert_eq!(
            early
                + link
                    .port(1)
                    .receive(Instant::from_micros(2_999), &mut b, 2000),
            1000
        );
    }

    #[test]
    fn traffic_in_one_direction_does_not_change_the_other_directions_draws() {
        let run = |extra_reverse: bool| {
            let mut link = Link::new(LinkConfig::default().with_loss(0.5), 77);
            if extra_reverse {
                send(&mut link, 1, T0, 0..50);
            }
            send(&mut link, 0, T0, 0..100);
            recv_ids(&mut link, 1, T0)
        };
        assert_eq!(run(false), run(true));
    }

    #[test]
    fn perfect_link_recycles_buffers_without_allocating_in_steady_state() {
        let mut link = Link::new(LinkConfig::default(), 1);
        let mut tx = FrameBatch::with_capacity(16);
        let mut rx = FrameBatch::with_capacity(16);
        let mut seen = std::collections::HashSet::new();
        let mut round =
            |link: &mut Link, seen: &mut std::collections::HashSet<usize>, warm: bool| {
                for id in 0..16 {
                    tx.push_with(1514, |f| f[..8].copy_from_slice(&u64::to_be_bytes(id)));
                }
                link.port(0).transmit(T0, &mut tx);
                rx.clear();
                link.port(1).receive(T0, &mut rx, 16);
                for f in rx.iter() {
                    let p = f.as_ptr() as usize;
                    if warm {
                        assert!(seen.contains(&p), "fresh allocation after warm-up");
                    } else {
                        seen.insert(p);
                    }
                }
            };
        for _ in 0..4 {
            round(&mut link, &mut seen, false);
        }
        for _ in 0..100 {
            round(&mut link, &mut seen, true);
        }
    }

    #[test]
    #[should_panic]
    fn link_with_one_port_is_rejected() {
        Link::with_ports(1, LinkConfig::default(), 0);
    }
}
