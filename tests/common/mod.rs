//! Test harness for driving one sans-IO [`Connection`] by hand, in the
//! manner of smoltcp's socket tests: the test plays the remote TCP, feeds
//! segments in with `send!` and asserts the exact segments that come out
//! with `recv!`/`recv_nothing!`, on virtual time.
//!
//! Owns: an owned segment type (the wire `TcpRepr` with a `Vec` payload),
//! a collecting [`Sink`], and the [`TestConn`] wrapper. It never reads a
//! clock: time only moves when a test moves it.

#![allow(dead_code, unused_macros)]

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use flowlane::tcp::{Connection, Sink};
use flowlane::time::{Duration, Instant};
use flowlane::wire::tcp::MAX_SACK_BLOCKS;
use flowlane::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr, TcpTimestamp};

/// Our side of the connection under test.
pub const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 49152);
/// The remote TCP the test plays.
pub const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);

/// An owned TCP segment: what a `TcpRepr` says, with the payload copied out.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
    pub ack_number: SeqNumber,
    pub flags: TcpFlags,
    pub window_len: u16,
    pub options: TcpOptions,
    pub payload: Vec<u8>,
}

impl Segment {
    pub fn from_repr(repr: &TcpRepr<'_>) -> Segment {
        assert_eq!(repr.urgent_pointer, 0, "no urgent data is ever sent");
        Segment {
            src_port: repr.src_port,
            dst_port: repr.dst_port,
            seq_number: repr.seq_number,
            ack_number: repr.ack_number,
            flags: repr.flags,
            window_len: repr.window_len,
            options: repr.options,
            payload: repr.payload.to_vec(),
        }
    }

    pub fn as_repr(&self) -> TcpRepr<'_> {
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq_number: self.seq_number,
            ack_number: self.ack_number,
            flags: self.flags,
            window_len: self.window_len,
            urgent_pointer: 0,
            options: self.options,
            payload: &self.payload,
        }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}->{} {:?} seq={} ack={} win={}",
            self.src_port,
            self.dst_port,
            self.flags,
            self.seq_number,
            self.ack_number,
            self.window_len
        )?;
        let o = &self.options;
        if let Some(m) = o.mss {
            write!(f, " mss={m}")?;
        }
        if let Some(w) = o.window_scale {
            write!(f, " ws={w}")?;
        }
        if o.sack_permitted {
            write!(f, " sackOK")?;
        }
        for (l, r) in o.sack_blocks() {
            write!(f, " sack={l}-{r}")?;
        }
        if let Some(ts) = o.timestamp {
            write!(f, " ts={}/{}", ts.tsval, ts.tsecr)?;
        }
        if !self.payload.is_empty() {
            write!(f, " len={}", self.payload.len())?;
            if self.payload.len() <= 16 {
                write!(f, " {:?}", String::from_utf8_lossy(&self.payload))?;
            }
        }
        Ok(())
    }
}

pub const NO_OPTIONS: TcpOptions = TcpOptions {
    mss: None,
    window_scale: None,
    sack_permitted: false,
    sack_blocks: [(SeqNumber(0), SeqNumber(0)); MAX_SACK_BLOCKS],
    sack_count: 0,
    timestamp: None,
};

/// Only an MSS option (what a SYN from a minimal stack carries).
pub const fn mss(mss: u16) -> TcpOptions {
    TcpOptions {
        mss: Some(mss),
        ..NO_OPTIONS
    }
}

/// Only a timestamps option.
pub const fn ts(tsval: u32, tsecr: u32) -> TcpOptions {
    TcpOptions {
        timestamp: Some(TcpTimestamp { tsval, tsecr }),
        ..NO_OPTIONS
    }
}

/// Collects every segment a connection emits, with its addresses.
#[derive(Default)]
pub struct CollectingSink {
    pub emitted: Vec<(Ipv4Addr, Ipv4Addr, Segment)>,
}

impl Sink for CollectingSink {
    fn emit(&mut self, src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr<'_>) -> bool {
        self.emitted.push((src, dst, Segment::from_repr(repr)));
        true
    }
}

/// One connection under test and the virtual clock it runs on.
pub struct TestConn {
    pub conn: Connection,
    pub now: Instant,
    sink: CollectingSink,
}

impl TestConn {
    pub fn new(conn: Connection, now: Instant) -> TestConn {
        TestConn {
            conn,
            now,
            sink: CollectingSink::default(),
        }
    }

    /// The remote sends `seg`; it is processed at `self.now`. Replies the
    /// connection sends at once (duplicate or challenge ACKs) are collected
    /// and show up first in the next [`dispatch`](Self::dispatch).
    pub fn send(&mut self, seg: &Segment) {
        self.conn.process(self.now, &seg.as_repr(), &mut self.sink);
    }

    /// Dispatches at `self.now` and returns what came out.
    #[track_caller]
    pub fn dispatch(&mut self) -> Vec<Segment> {
        let immediate = self.sink.emitted.len();
        let n = self.conn.dispatch(self.now, &mut self.sink) + immediate;
        let out: Vec<Segment> = self
            .sink
            .emitted
            .drain(..)
            .map(|(src, dst, seg)| {
                assert_eq!((src, dst), (*LOCAL.ip(), *REMOTE.ip()), "addresses");
                seg
            })
            .collect();
        assert_eq!(n, out.len(), "dispatch's count of emitted segments");
        // Everything due was done: otherwise the endpoint would spin.
        let next = self.conn.poll_at();
        assert!(
            next > self.now,
            "after dispatch at {:?}, poll_at() still says {:?}",
            self.now,
            next
        );
        out
    }

    /// Dispatches at `self.now` and asserts exactly `expected` came out.
    /// Anything that comes out must have been asked for: the endpoint only
    /// dispatches a connection whose `poll_at()` is due.
    #[track_caller]
    pub fn recv_exactly(&mut self, expected: Vec<Segment>) {
        let poll_at = self.conn.poll_at();
        let immediate = self.sink.emitted.len();
        let out = self.dispatch();
        assert_eq!(out, expected, "segments emitted at {:?}", self.now);
        assert!(
            out.len() == immediate || poll_at <= self.now,
            "segments emitted at {:?} but poll_at() said {:?}",
            self.now,
            poll_at
        );
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

/// `send!(t, seg)`: the remote's segment reaches the connection.
/// `send!(t, time T, seg)`: the same, at instant `T`.
macro_rules! send {
    ($t:expr, time $time:expr, $seg:expr) => {{
        $t.now = $time;
        $t.send(&$seg)
    }};
    ($t:expr, $seg:expr) => {
        $t.send(&$seg)
    };
}

/// `recv!(t, [seg, ...])`: dispatch now; exactly these segments come out.
/// `recv!(t, time T, [seg, ...])`: the same, at instant `T`.
macro_rules! recv {
    ($t:expr, time $time:expr, [$($seg:expr),* $(,)?]) => {{
        $t.now = $time;
        $t.recv_exactly(vec![$($seg),*])
    }};
    ($t:expr, [$($seg:expr),* $(,)?]) => {
        $t.recv_exactly(vec![$($seg),*])
    };
}

/// `recv_nothing!(t)` / `recv_nothing!(t, time T)`: dispatch emits nothing.
macro_rules! recv_nothing {
    ($t:expr, time $time:expr) => {{
        $t.now = $time;
        $t.recv_exactly(Vec::new())
    }};
    ($t:expr) => {
        $t.recv_exactly(Vec::new())
    };
}
