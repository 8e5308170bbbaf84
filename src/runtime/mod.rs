//! The per-core runtime: one pinned thread per core, each owning its device
//! queue, its [`Stack`] (interface, connection shard, timers, buffers) and
//! its application callback, in a run-to-completion loop:
//! rx burst → interface → TCP → application → timers → tx burst.
//!
//! This is the only layer that reads a clock. Cores share nothing on the
//! per-packet path; the cross-core paths are bounded lock-free mailboxes
//! (frames that arrived on the wrong core, control operations) that drop
//! and count when full. Statistics are published by each core every few
//! milliseconds, never per packet.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;

use crate::api::{EndpointCounters, InterfaceCounters, Stack, StackConfig};
use crate::phy::{Device, DeviceCounters};
use crate::tcp::State;
use crate::time::{Duration, Instant};

/// The runtime's clock: microseconds since the runtime started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: std::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
        }
    }
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as u64)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// What a core does when a loop iteration moved nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin: lowest latency, one CPU per core at 100 % (DPDK style).
    BusyPoll,
    /// Spin a while, then yield, then sleep up to `max_sleep` until the
    /// next timer: for shared machines.
    Backoff { max_sleep: Duration },
}

/// Runtime settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Pin core i's thread to CPU `cpus[i % cpus.len()]` (empty: no pinning).
    pub cpus: Vec<usize>,
    pub idle: IdlePolicy,
    /// Frames a core's mailbox holds before dropping.
    pub mailbox_frames: usize,
    /// How often each core publishes its statistics.
    pub stats_interval: Duration,
    /// With more than one core: the RSS function that assigns flows to
    /// cores (it must mirror the NIC's). Each core's stack gets steering.
    pub rss: Option<crate::shard::rss::Rss>,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            cpus: Vec::new(),
            idle: IdlePolicy::BusyPoll,
            mailbox_frames: 4096,
            stats_interval: Duration::from_millis(10),
            rss: None,
        }
    }
}

/// One core's published statistics.
#[derive(Clone, Debug, Default)]
pub struct CoreStats {
    pub core: usize,
    pub loops: u64,
    pub iface: InterfaceCounters,
    pub tcp: EndpointCounters,
    /// Sockets per TCP state, TIME-WAIT records included.
    pub states: [u64; State::COUNT],
    /// Frames that arrived in this core's mailbox from other cores.
    pub mailbox_in: u64,
    /// Frames dropped because a mailbox was full.
    pub mailbox_dropped: u64,
    /// The device's own counters (below the interface): frames the AF_XDP
    /// rings or tap moved and dropped, kicks retried and failed.
    pub device: DeviceCounters,
}

impl CoreStats {
    /// The seed notes' `netstat -n | awk '/^tcp/ {++S[$NF]} ...'` table:
    /// one line per state with a non-zero count.
    pub fn state_table(states: &[u64; State::COUNT]) -> String {
        let mut out = String::new();
        for st in State::ALL {
            let n = states[st as usize];
            if n > 0 {
                out.push_str(&format!("{} {}\n", st.name(), n));
            }
        }
        out
    }
}

/// Sums the cores' statistics.
pub fn total(stats: &[CoreStats]) -> CoreStats {
    let mut t = CoreStats::default();
    for s in stats {
        t.loops += s.loops;
        for i in 0..State::COUNT {
            t.states[i] += s.states[i];
        }
        t.mailbox_in += s.mailbox_in;
        t.mailbox_dropped += s.mailbox_dropped;
        t.device.add(&s.device);
        t.iface.rx_frames += s.iface.rx_frames;
        t.iface.tx_frames += s.iface.tx_frames;
        t.iface.rx_bytes += s.iface.rx_bytes;
        t.iface.tx_bytes += s.iface.tx_bytes;
        t.iface.not_for_us += s.iface.not_for_us;
        t.iface.icmp_echo_replies += s.iface.icmp_echo_replies;
        t.iface.misdirected += s.iface.misdirected;
        t.iface.coalesced += s.iface.coalesced;
        for (a, b) in t.iface.drops.iter_mut().zip(s.iface.drops.iter()) {
            *a += b;
        }
        t.tcp.segments_in += s.tcp.segments_in;
        t.tcp.segments_out += s.tcp.segments_out;
        t.tcp.rst_sent += s.tcp.rst_sent;
        t.tcp.connections_opened += s.tcp.connections_opened;
        t.tcp.connections_accepted += s.tcp.connections_accepted;
        t.tcp.connections_reset += s.tcp.connections_reset;
        t.tcp.syn_queue_overflow += s.tcp.syn_queue_overflow;
        t.tcp.accept_queue_overflow += s.tcp.accept_queue_overflow;
        t.tcp.time_wait_reused_active += s.tcp.time_wait_reused_active;
        t.tcp.time_wait_reused_passive += s.tcp.time_wait_reused_passive;
    }
    t
}

/// What the application callback sees on each loop iteration.
pub struct CoreContext<'a> {
    pub core: usize,
    pub now: Instant,
    pub stack: &'a mut Stack,
    stop: &'a AtomicBool,
}

impl CoreContext<'_> {
    /// Asks every core to stop after this iteration.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Everything one core starts with.
pub struct CoreSetup {
    pub device: Box<dyn Device + Send>,
    pub stack: StackConfig,
    /// Called once per loop iteration on the core's thread.
    pub app: Box<dyn FnMut(&mut CoreContext<'_>) + Send>,
}

/// A core's mailbox: frames for it that arrived on another core. Bounded
/// and lock-free; a full mailbox drops the frame and counts it (TCP
/// retransmits; nothing blocks).
pub struct Mailbox {
    frames: ArrayQueue<Vec<u8>>,
    dropped: AtomicU64,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox {
            frames: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a frame; false (and counted) if the mailbox is full.
    pub fn push(&self, frame: Vec<u8>) -> bool {
        if self.frames.push(frame).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn pop(&self) -> Option<Vec<u8>> {
        self.frames.pop()
    }

    /// Frames dropped because the mailbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A control operation run on a core's own thread, between two loop
/// iterations (open a listener, close a connection, read something).
pub type ControlOp = Box<dyn FnOnce(&mut CoreContext<'_>) + Send>;

/// Operations queued for one core: bounded, lock-free, dropped and counted
/// when full.
struct ControlQueue {
    ops: ArrayQueue<ControlOp>,
    dropped: AtomicU64,
}

/// A running set of per-core loops.
pub struct Runtime {
    threads: Vec<JoinHandle<io::Result<()>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Vec<Mutex<CoreStats>>>,
    control: Arc<Vec<ControlQueue>>,
}

impl Runtime {
    /// Starts one thread per `CoreSetup`.
    pub fn start(config: RuntimeConfig, cores: Vec<CoreSetup>) -> io::Result<Runtime> {
        let n = cores.len();
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Vec<Mutex<CoreStats>>> = Arc::new(
            (0..n)
                .map(|core| {
                    Mutex::new(CoreStats {
                        core,
                        ..CoreStats::default()
                    })
                })
                .collect(),
        );
        let mailboxes: Arc<Vec<Mailbox>> = Arc::new(
            (0..n)
                .map(|_| Mailbox::new(config.mailbox_frames))
                .collect(),
        );
        let control: Arc<Vec<ControlQueue>> = Arc::new(
            (0..n)
                .map(|_| ControlQueue {
                    ops: ArrayQueue::new(256),
                    dropped: AtomicU64::new(0),
                })
                .collect(),
        );
        let clock = Clock::new();
        let mut threads = Vec::with_capacity(n);
        for (core, setup) in cores.into_iter().enumerate() {
            let stop = stop.clone();
            let stats = stats.clone();
            let mailboxes = mailboxes.clone();
            let control = control.clone();
            let config = config.clone();
            let handle = std::thread::Builder::new()
                .name(format!("flowlane-core-{core}"))
                .spawn(move || {
                    run_core(
                        core, setup, config, clock, &stop, &stats, &mailboxes, &control,
                    )
                })?;
            threads.push(handle);
        }
        Ok(Runtime {
            threads,
            stop,
            stats,
            control,
        })
    }

    /// A handle that stops the runtime from any thread (or a signal
    /// handler: it only stores a flag).
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Runs `op` on core `core`'s thread between two loop iterations. Fails
    /// (and counts) if that core's queue is full or the core does not exist.
    pub fn submit(&self, core: usize, op: ControlOp) -> Result<(), ControlOp> {
        match self.control.get(core) {
            Some(q) => q.ops.push(op).inspect_err(|_| {
                q.dropped.fetch_add(1, Ordering::Relaxed);
            }),
            None => Err(op),
        }
    }

    /// Control operations refused because a core's queue was full.
    pub fn control_dropped(&self) -> u64 {
        self.control
            .iter()
            .map(|q| q.dropped.load(Ordering::Relaxed))
            .sum()
    }

    /// The latest statistics each core published.
    pub fn stats(&self) -> Vec<CoreStats> {
        self.stats
            .iter()
            .map(|m| m.lock().map(|s| s.clone()).unwrap_or_default())
            .collect()
    }

    /// Stops every core and joins its thread; devices are dropped (and so
    /// released) on their threads. Returns the first error a core hit.
    pub fn join(mut self) -> io::Result<()> {
        self.stop();
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                Err(_) => {
                    if result.is_ok() {
                        result = Err(io::Error::other("a core's thread panicked"));
                    }
                }
            }
        }
        result
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_core(
    core: usize,
    setup: CoreSetup,
    config: RuntimeConfig,
    clock: Clock,
    stop: &AtomicBool,
    stats: &[Mutex<CoreStats>],
    mailboxes: &[Mailbox],
    control: &[ControlQueue],
) -> io::Result<()> {
    if !config.cpus.is_empty() {
        let cpu = config.cpus[core % config.cpus.len()];
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    let CoreSetup {
        mut device,
        stack,
        mut app,
    } = setup;
    let mut stack = Stack::new(stack);
    if let Some(rss) = &config.rss {
        stack.set_steering(Some((rss.clone(), core)));
    }
    let mut loops = 0u64;
    let mut idle_rounds = 0u32;
    let mut next_publish = Instant::ZERO;
    let mut mailbox_in = 0u64;
    let mut mailbox_frame = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let now = clock.now();
        // Frames other cores forwarded to us.
        let mut moved = false;
        while let Some(frame) = mailboxes[core].pop() {
            mailbox_frame = frame;
            stack.inject(now, &mailbox_frame);
            mailbox_in += 1;
            moved = true;
        }
        moved |= stack.poll(now, device.as_mut());
        // Frames for other cores go to their mailboxes.
        for (dest, frame) in stack.iface.take_misdirected() {
            if let Some(mb) = mailboxes.get(dest) {
                mb.push(frame);
            }
        }
        {
            let mut ctx = CoreContext {
                core,
                now,
                stack: &mut stack,
                stop,
            };
            while let Some(op) = control[core].ops.pop() {
                op(&mut ctx);
                moved = true;
            }
            app(&mut ctx);
        }
        loops += 1;
        if now >= next_publish || stopping {
            // Read before taking the lock: AF_XDP's counters cost a syscall.
            let device_counters = device.counters();
            if let Ok(mut s) = stats[core].lock() {
                s.loops = loops;
                s.iface = stack.iface.counters().clone();
                s.tcp = *stack.tcp.counters();
                s.states = stack.tcp.state_counts();
                s.mailbox_in = mailbox_in;
                s.mailbox_dropped = mailboxes[core].dropped();
                s.device = device_counters;
            }
            next_publish = now + config.stats_interval;
        }
        if stopping {
            break;
        }
        if moved {
            idle_rounds = 0;
            continue;
        }
        if let IdlePolicy::Backoff { max_sleep } = config.idle {
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds > 1000 {
                let until = stack.poll_at().unwrap_or(now + max_sleep);
                let nap = (until - clock.now()).min(max_sleep);
                if !nap.is_zero() {
                    std::thread::sleep(std::time::Duration::from_micros(nap.total_micros()));
                }
            } else if idle_rounds > 100 {
                std::thread::yield_now();
            }
        }
    }
    drop(mailbox_frame);
    drop(device);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_sums_device_counters() {
        let core = |i: u64| CoreStats {
            core: i as usize,
            device: DeviceCounters {
                rx_frames: 10 * i,
                rx_bytes: 1000 * i,
                tx_frames: 20 * i,
                tx_bytes: 2000 * i,
                rx_dropped: i,
                rx_fill_ring_empty: 2 * i,
                tx_dropped: 3 * i,
                tx_kick_retries: 4 * i,
                tx_kick_errors: 5 * i,
            },
            ..CoreStats::default()
        };
        let t = total(&[core(1), core(2)]);
        assert_eq!(
            t.device,
            DeviceCounters {
                rx_frames: 30,
                rx_bytes: 3000,
                tx_frames: 60,
                tx_bytes: 6000,
                rx_dropped: 3,
                rx_fill_ring_empty: 6,
                tx_dropped: 9,
                tx_kick_retries: 12,
                tx_kick_errors: 15,
            }
        );
        assert_eq!(total(&[]).device, DeviceCounters::default());
    }
}
