//! Two stacks joined by the in-memory link, on virtual time: the harness of
//! the pair tests and the in-memory benchmarks (quinn-proto's `Pair`).
//!
//! Time only moves when both stacks are idle, and then jumps straight to the
//! next deadline (a timer or a frame in flight), so a 60 s TIME-WAIT costs
//! microseconds and every run replays exactly from its seed.

use core::net::Ipv4Addr;
use std::io::Write;

use super::{Stack, StackConfig};
use crate::phy::{Link, LinkConfig, PcapDevice, PcapWriter};
use crate::time::{Duration, Instant};
use crate::wire::EthernetAddress;

pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const A_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
pub const B_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);

/// Polls at one instant, at most, before time is forced forward: a guard
/// against a connection that claims work it cannot do.
const MAX_POLLS_PER_INSTANT: u32 = 100_000;

/// Stack A on port 0 and stack B on port 1 of one link.
pub struct Pair {
    pub link: Link,
    pub a: Stack,
    pub b: Stack,
    pub now: Instant,
    /// Records every frame stack A sends and receives.
    pub capture: Option<Box<dyn Write>>,
    /// A deadline of the application's own (a retry timer, say): time does
    /// not jump past it. The application sets and clears it.
    pub wake_at: Option<Instant>,
    polls_here: u32,
}

impl Pair {
    /// Default stack configurations for A and B, on 10.77.0.0/24.
    pub fn configs() -> (StackConfig, StackConfig) {
        let mut a = StackConfig::new(A_MAC, A_IP, 24);
        let mut b = StackConfig::new(B_MAC, B_IP, 24);
        a.endpoint.isn_key = *b"pair-isn-key-A..";
        b.endpoint.isn_key = *b"pair-isn-key-B..";
        a.endpoint.hash_seed = 1;
        b.endpoint.hash_seed = 2;
        // Exact virtual time: timers fire on the microsecond.
        a.endpoint.timer_tick = Duration::from_micros(1);
        b.endpoint.timer_tick = Duration::from_micros(1);
        (a, b)
    }

    /// A perfect link and default stacks.
    pub fn new(seed: u64) -> Pair {
        let (a, b) = Pair::configs();
        Pair::with(Link::new(LinkConfig::default(), seed), a, b)
    }

    pub fn with(link: Link, a: StackConfig, b: StackConfig) -> Pair {
        Pair {
            link,
            a: Stack::new(a),
            b: Stack::new(b),
            now: Instant::ZERO,
            capture: None,
            wake_at: None,
            polls_here: 0,
        }
    }

    /// Records A's traffic to `w` in libpcap format.
    pub fn capture_to(&mut self, w: Box<dyn Write>) -> std::io::Result<()> {
        self.capture = Some(PcapWriter::new(w)?.into_inner());
        Ok(())
    }

    /// Polls both stacks once at the current time. True if a frame moved.
    pub fn poll(&mut self) -> bool {
        let now = self.now;
        let a = match &mut self.capture {
            Some(w) => {
                let mut dev =
                    PcapDevice::from_writer(self.link.port(0), PcapWriter::append(&mut **w));
                self.a.poll(now, &mut dev)
            }
            None => self.a.poll(now, &mut self.link.port(0)),
        };
        let b = self.b.poll(now, &mut self.link.port(1));
        a || b
    }

    /// The next moment anything happens: a stack's deadline or a frame's
    /// arrival.
    pub fn next_event(&self) -> Option<Instant> {
        [
            self.a.poll_at(),
            self.b.poll_at(),
            self.link.poll_at(),
            self.wake_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One step: poll; when idle, jump to the next event. Returns false when
    /// nothing will ever happen again.
    pub fn step(&mut self) -> bool {
        let moved = self.poll();
        self.polls_here += 1;
        match self.next_event() {
            Some(t) if t <= self.now => {
                if self.polls_here >= MAX_POLLS_PER_INSTANT {
                    self.now += Duration::from_micros(1);
                    self.polls_here = 0;
                }
                true
            }
            Some(t) => {
                if !moved {
                    self.now = t;
                    self.polls_here = 0;
                }
                true
            }
            None => moved,
        }
    }

    /// Steps until `done` holds or `limit` of virtual time has passed.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now > deadline {
                return false;
            }
            if !self.step() {
                return done(self);
            }
        }
    }

    /// Steps until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let next = self.next_event();
            if !self.poll() {
                match next {
                    Some(t) if t > self.now => self.now = t.min(end),
                    Some(_) => {}
                    None => self.now = end,
                }
            }
        }
    }
}
