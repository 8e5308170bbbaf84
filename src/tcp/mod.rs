//! The sans-IO TCP core: connections (RFC 9293), the listener and its
//! backlog, ISNs (RFC 6528).
//!
//! Input is `(now, parsed segment)`; output goes to a caller-given
//! [`Sink`]; `poll_at()` says when a connection next needs time. Nothing here
//! reads a clock, makes a syscall or allocates per segment in steady state.

pub mod congestion;
mod conn;
mod endpoint;
mod isn;
mod run;
pub mod sack;
pub mod timewait;

use core::net::Ipv4Addr;

pub use congestion::Algorithm;

pub use conn::{Connection, ConnectionCounters, RecvError, SendError, Shutdown, TcpError, TcpInfo};
pub use endpoint::{
    Endpoint, EndpointConfig, EndpointCounters, FourTuple, Readiness, SocketError, SocketHandle,
    SocketOptions,
};
pub use isn::IsnGenerator;
pub use run::{SegmentRun, RUN_MAX};

use crate::time::Duration;
use crate::wire::TcpRepr;

/// The eleven states of RFC 9293 §3.3.2 (the seed notes' socket states).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum State {
    Closed = 0,
    Listen = 1,
    SynSent = 2,
    SynReceived = 3,
    Established = 4,
    FinWait1 = 5,
    FinWait2 = 6,
    CloseWait = 7,
    Closing = 8,
    LastAck = 9,
    TimeWait = 10,
}

impl State {
    pub const COUNT: usize = 11;
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// The name `netstat` prints.
    pub const fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECV",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
        }
    }

    pub fn from_index(i: usize) -> Option<State> {
        State::ALL.get(i).copied()
    }

    /// RFC 9293 §3.3.2: states after the handshake completed.
    pub const fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-connection TCP settings. Listeners pass theirs on to accepted
/// connections.
#[derive(Clone, Debug)]
pub struct Config {
    /// MSS advertised and the ceiling for what we send: the IP MTU less 40.
    pub mss: u16,
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    /// Maximum segment lifetime; TIME-WAIT lasts 2·MSL (RFC 9293 §3.4.2).
    /// Default 30 s, so 2MSL is 60 s as on Linux.
    pub msl: Duration,
    /// How long FIN-WAIT-2 waits for the peer's FIN once the application has
    /// closed (Linux's tcp_fin_timeout, 60 s).
    pub fin_timeout: Duration,
    pub window_scale: bool,
    pub timestamps: bool,
    pub sack: bool,
    /// RFC 6298 §2.1: 1 s before any RTT sample.
    pub initial_rto: Duration,
    /// RFC 6298 §2.4 says 1 s; Linux uses 200 ms, and so do we by default.
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// SYN (and SYN-ACK) retransmissions before giving up (Linux: 6).
    pub syn_retries: u32,
    /// Data retransmissions before aborting (Linux's tcp_retries2: 15).
    pub data_retries: u32,
    /// Disables Nagle's algorithm (RFC 896).
    pub nodelay: bool,
    pub congestion: Algorithm,
    /// Initial window in segments; None is RFC 6928's
    /// min(10·MSS, max(2·MSS, 14600 B)).
    pub initial_window: Option<u32>,
    /// Delayed-ACK timeout (RFC 1122 §4.2.3.2 allows up to 500 ms; Linux
    /// uses 40 ms). Zero acknowledges every segment at once.
    pub delayed_ack: Duration,
    /// Keepalive (SO_KEEPALIVE with TCP_KEEPIDLE/INTVL/CNT); None is off.
    pub keepalive: Option<Keepalive>,
    /// RFC 8985 §7 tail loss probe (with SACK): when a flight of two or
    /// more segments goes unacknowledged for about two round trips, one
    /// segment probes for a lost tail instead of waiting for the RTO
    /// (Linux: `tcp_early_retrans` 3, on by default). On by default: through
    /// 5 % loss against Linux it halves the RTOs (34 against 64) and the
    /// transfer time falls by a third; it costs 1–2 % in the in-memory
    /// echo and connection-rate benchmarks (102 instructions per W2 round
    /// trip, 181 per W4 connection).
    pub tail_loss_probe: bool,
}

/// Keepalive parameters (RFC 1122 §4.2.3.6; Linux defaults 7200 s, 75 s, 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            count: 9,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mss: 1460,
            rx_buffer: 256 * 1024,
            tx_buffer: 256 * 1024,
            msl: Duration::from_secs(30),
            fin_timeout: Duration::from_secs(60),
            window_scale: true,
            timestamps: true,
            sack: true,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            syn_retries: 6,
            data_retries: 15,
            nodelay: false,
            congestion: Algorithm::NewReno,
            initial_window: None,
            delayed_ack: Duration::from_millis(40),
            keepalive: None,
            tail_loss_probe: true,
        }
    }
}

/// Where a connection puts the segments it emits. The interface implements
/// it by building the frame in place; tests collect the segments.
pub trait Sink {
    /// Emits one segment from `src` to `dst`. Returns false when the device
    /// queue is full: the connection then leaves its state as if the segment
    /// had not been built and tries again on the next poll.
    fn emit(&mut self, src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr<'_>) -> bool;

    /// Emits `repr` as the segments [`TcpRepr::split`] cuts it into, `mss`
    /// payload bytes each, in order (segmentation offload done in the sink:
    /// the connection builds a burst once, not once per segment). Returns
    /// how many went out; after a refusal the rest did not, and the
    /// connection sends them later.
    fn emit_split(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &TcpRepr<'_>,
        mss: usize,
    ) -> usize {
        emit_each(repr, mss, |segment| self.emit(src, dst, segment))
    }
}

/// Hands each segment of `repr.split(mss)` to `emit` until it refuses one;
/// returns how many it took.
pub fn emit_each(
    repr: &TcpRepr<'_>,
    mss: usize,
    mut emit: impl FnMut(&TcpRepr<'_>) -> bool,
) -> usize {
    let mut sent = 0;
    for segment in repr.split(mss) {
        if !emit(&segment) {
            break;
        }
        sent += 1;
    }
    sent
}

/// The reply RFC 9293 §3.10.7.1 prescribes for a segment that reaches no
/// connection (CLOSED): `None` for an incoming RST.
pub fn rst_for_unexpected<'a>(seg: &TcpRepr<'_>) -> Option<TcpRepr<'a>> {
    use crate::wire::{SeqNumber, TcpFlags, TcpOptions};
    if seg.flags.rst() {
        return None;
    }
    let (seq, ack, flags) = if seg.flags.ack() {
        // <SEQ=SEG.ACK><CTL=RST>
        (seg.ack_number, SeqNumber(0), TcpFlags::RST)
    } else {
        // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
        (
            SeqNumber(0),
            seg.seq_number + seg.segment_len(),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    Some(TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: 0,
        urgent_pointer: 0,
        options: TcpOptions::default(),
        payload: &[],
    })
}
