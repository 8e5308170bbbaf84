//! One TCP connection (the TCB of RFC 9293 §3.3.1) as a sans-IO state
//! machine.
//!
//! [`Connection::process`] takes one parsed segment and follows the order of
//! checks of RFC 9293 §3.10.7.4 (sequence number, RST, SYN, ACK, text, FIN),
//! with RFC 5961's blind-attack defences and RFC 7323's PAWS.
//! [`Connection::dispatch`] emits whatever is due (SYN, data, FIN, ACKs,
//! retransmissions), and [`Connection::poll_at`] says when the connection next
//! needs time. This module never reads a clock and never touches a device.

use core::net::SocketAddrV4;
use std::sync::Arc;

use super::congestion::{initial_window, Algorithm, CongestionControl, Controller};
use super::endpoint::FourTuple;
use super::sack::Scoreboard;
use super::timewait::TimeWaitRecord;
use super::{Config, SegmentRun, Sink, State};
use crate::storage::{Assembler, BufferPool, RingBuffer};
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr, TcpTimestamp};

/// Why a connection ended abnormally: what the application's next call
/// reports (the errno equivalent in parentheses).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcpError {
    /// RST in answer to our SYN (ECONNREFUSED).
    Refused,
    /// RST on a synchronized connection (ECONNRESET).
    Reset,
    /// Retransmissions or keepalive probes exhausted (ETIMEDOUT).
    TimedOut,
}

/// Errors of [`Connection::send_slice`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SendError {
    /// Not yet established, or the send buffer is full (EAGAIN).
    WouldBlock,
    /// The write side was shut down or the connection is over (EPIPE).
    Closed,
    /// The connection failed; reported once, then `Closed`.
    Failed(TcpError),
}

/// Errors of [`Connection::recv_slice`]. End of stream is `Ok(0)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecvError {
    /// No data yet (EAGAIN).
    WouldBlock,
    /// Not connected yet (ENOTCONN).
    NotConnected,
    /// The connection failed.
    Failed(TcpError),
}

/// Which half of the connection to shut down.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shutdown {
    Read,
    Write,
    Both,
}

/// Per-connection counters (the interesting parts of Linux's `TCP_INFO`).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ConnectionCounters {
    pub segs_in: u64,
    pub segs_out: u64,
    pub bytes_received: u64,
    pub bytes_acked: u64,
    /// Segments retransmitted (any cause).
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rtos: u64,
    pub dup_acks_in: u64,
    /// Segments dropped as outside the receive window (RFC 9293 §3.10.7.4).
    pub out_of_window: u64,
    /// Segments dropped by PAWS (RFC 7323 §5).
    pub paws_drops: u64,
    /// ACKs of data never sent, or too old (RFC 5961 §5), dropped.
    pub bad_acks: u64,
    /// Challenge ACKs sent (RFC 5961 §3.2, §4).
    pub challenge_acks: u64,
    /// Challenge ACKs not sent because of the rate limit (RFC 5961 §7).
    pub challenge_acks_suppressed: u64,
    /// Out-of-order segments stored for reassembly.
    pub ooo_segments: u64,
    /// Out-of-order segments dropped because the assembler was full.
    pub ooo_dropped: u64,
    pub zero_window_probes: u64,
    /// Fast retransmits (third duplicate ACK or SACK loss detection).
    pub fast_retransmits: u64,
    /// Retransmissions found lost in turn (SACKs for data sent after them)
    /// and sent again without waiting for the RTO.
    pub lost_retransmits: u64,
    /// SACK blocks received and taken into the scoreboard.
    pub sack_blocks_in: u64,
    /// Keepalive probes sent.
    pub keepalive_probes: u64,
    /// Tail loss probes sent (RFC 8985 §7).
    pub tail_loss_probes: u64,
    /// Segments taken by header prediction (the fast path).
    pub fast_path: u64,
}

/// A snapshot of a connection's send state, like Linux's `TCP_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: State,
    pub snd_mss: u32,
    pub rcv_mss: u32,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub timestamps: bool,
    pub sack: bool,
    pub srtt: Duration,
    pub rttvar: Duration,
    pub rto: Duration,
    pub snd_wnd: u32,
    pub rcv_wnd: u32,
    pub bytes_in_flight: u32,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub congestion: Algorithm,
    /// Loss recovery (fast recovery or SACK recovery) in progress.
    pub in_recovery: bool,
    pub counters: ConnectionCounters,
}

/// Timers, indexed; a deadline of `Instant::FAR_FUTURE` is off.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Timer {
    /// Retransmission (RFC 6298), also for SYN and SYN-ACK.
    Rto = 0,
    /// Zero-window probe (RFC 9293 §3.8.6.1).
    Persist = 1,
    /// TIME-WAIT's 2MSL, FIN-WAIT-2's orphan timeout and the linger limit.
    Close = 2,
    /// Delayed ACK (RFC 1122 §4.2.3.2).
    DelayedAck = 3,
    /// Keepalive idle and probe interval (RFC 1122 §4.2.3.6).
    Keepalive = 4,
    /// Tail loss probe (RFC 8985 §7.2, the PTO).
    Probe = 5,
}
const TIMERS: usize = 6;

/// Loss recovery in progress.
#[derive(Clone, Copy, Debug)]
struct Recovery {
    /// RFC 6582 `recover` / RFC 6675 RecoveryPoint: recovery ends when
    /// everything up to here is acknowledged.
    point: SeqNumber,
    /// SACK-based (RFC 6675) rather than NewReno/Reno.
    sack: bool,
}

/// RFC 6298 round-trip estimator, in microseconds.
#[derive(Clone, Copy, Debug)]
struct Rtt {
    srtt: u64,
    rttvar: u64,
    rto: u64,
    has_sample: bool,
    min_rto: u64,
    max_rto: u64,
}

impl Rtt {
    fn new(cfg: &Config) -> Rtt {
        Rtt {
            srtt: 0,
            rttvar: 0,
            rto: cfg.initial_rto.total_micros(),
            has_sample: false,
            min_rto: cfg.min_rto.total_micros(),
            max_rto: cfg.max_rto.total_micros(),
        }
    }

    /// RFC 6298 §2.2, §2.3 (G taken as 1 ms), clamped by §2.4/§2.5.
    fn sample(&mut self, r: u64) {
        const G: u64 = 1000;
        if !self.has_sample {
            self.srtt = r;
            self.rttvar = r / 2;
            self.has_sample = true;
        } else {
            let delta = self.srtt.abs_diff(r);
            self.rttvar = (3 * self.rttvar + delta) / 4;
            self.srtt = (7 * self.srtt + r) / 8;
        }
        self.rto = (self.srtt + G.max(4 * self.rttvar)).clamp(self.min_rto, self.max_rto);
    }

    /// RFC 6298 §5.5: back off the timer.
    fn backoff(&mut self) {
        self.rto = (self.rto * 2).min(self.max_rto);
    }

    fn rto(&self) -> Duration {
        Duration::from_micros(self.rto)
    }
}

/// A TCP connection in any state but LISTEN (listening is the endpoint's
/// job). Owns its send and receive buffers.
pub struct Connection {
    state: State,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Opened from LISTEN (an RST in SYN-RECEIVED then just deletes it).
    passive: bool,
    /// Shared by every connection of a listener (copied on write when a
    /// socket option changes it), so it costs a pointer per connection.
    cfg: Arc<Config>,

    // Send sequence space (RFC 9293 §3.3.1).
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Highest sequence number sent (snd_nxt moves back on retransmission).
    snd_max: SeqNumber,
    /// Peer's window, in bytes (already scaled).
    snd_wnd: u32,
    /// Largest window the peer ever offered (RFC 5961 §5 MAX.SND.WND).
    max_snd_wnd: u32,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Shift applied to the peer's window field (its WS option).
    snd_wscale: u8,
    /// Payload bytes per segment we send (options excluded).
    snd_mss: usize,
    /// The congestion controller: owns cwnd and ssthresh.
    cc: Controller,
    recovery: Option<Recovery>,
    /// RFC 6582 `recover`: SND.MAX when the last recovery or RTO began;
    /// duplicate ACKs for data below it start no new recovery.
    recover: SeqNumber,
    /// Consecutive duplicate ACKs (RFC 5681 §2).
    dup_acks: u32,
    /// Retransmit one segment at SND.UNA on the next dispatch (fast
    /// retransmit, NewReno partial ACK), whatever cwnd says.
    rtx_one: bool,
    /// What the peer SACKed above SND.UNA (RFC 6675 scoreboard).
    scoreboard: Scoreboard,
    /// RFC 6675 HighRxt: highest sequence retransmitted in this recovery.
    high_rxt: SeqNumber,
    /// A retransmission was lost in turn (SACKs for data sent after it):
    /// resend it on the next dispatch.
    rtx_lost: bool,
    /// The probe timeout fired: send one probe on the next dispatch.
    tlp_now: bool,
    /// A probe is out (RFC 8985's TLP.end_seq) and whether it was a
    /// retransmission; the episode ends when an ACK covers it.
    tlp_end: Option<(SeqNumber, bool)>,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// Our window scale shift (what we put in our WS option).
    rcv_wscale: u8,
    /// Right edge of the window we last advertised: it never moves left
    /// (RFC 9293 §3.8.6.2.2 "the right window edge never shrinks").
    rcv_adv: SeqNumber,
    /// MSS the peer announced, for receive-side SWS decisions.
    rcv_mss: usize,

    tx: RingBuffer,
    rx: RingBuffer,
    /// Out-of-order bytes held past `rcv_nxt` in `rx`'s free space.
    assembler: Assembler,

    ts_enabled: bool,
    /// RFC 7323 TS.Recent.
    ts_recent: u32,
    /// Added to our clock in TSval (RFC 7323 §5.4: per-connection offset).
    ts_offset: u32,
    /// RFC 7323 Last.ACK.sent.
    last_ack_sent: SeqNumber,
    /// The last TSval we sent (a TIME-WAIT record keeps it for RFC 6191).
    last_tsval: u32,
    sack_ok: bool,
    /// Starts of recently received out-of-order segments, most recent
    /// first: RFC 2018 §4 orders SACK blocks by recency.
    sack_recent: [SeqNumber; 4],
    sack_recent_len: usize,

    rtt: Rtt,
    /// With timestamps, one RTT sample per flight: the next ACK at or past
    /// this point gives one.
    rtt_mark: SeqNumber,
    /// Karn's rule: the one segment being timed, (its end, when sent).
    rtt_timing: Option<(SeqNumber, Instant)>,
    /// Consecutive timeouts without progress.
    retries: u32,
    persist_backoff: u32,
    timers: [Instant; TIMERS],

    /// An ACK (or window update) is owed to the peer; it goes out with the
    /// next dispatch, so a burst of segments gets one ACK.
    ack_now: bool,
    /// An ACK is owed at once, before the next segment is processed: a
    /// duplicate ACK for out-of-order data (RFC 5681 §4.2) or a challenge
    /// ACK (RFC 5961).
    ack_immediate: bool,
    /// In-order data received since our last ACK, in bytes (delayed ACK:
    /// at least every second full-sized segment).
    unacked_rx: usize,
    keepalive_probes: u32,
    /// Start of the current one-second challenge-ACK window, and how many
    /// were sent in it (RFC 5961 §7).
    challenge_window: Instant,
    challenge_sent: u8,
    /// An RST is owed to the peer (abort, linger timeout).
    rst_now: bool,
    /// SYN-RECEIVED saw a retransmitted SYN: resend the SYN-ACK.
    resend_syn: bool,
    /// A zero-window probe is due.
    probe_now: bool,
    /// `<SEQ=SEG.ACK><CTL=RST>` owed for an unacceptable ACK in SYN-SENT or
    /// SYN-RECEIVED (RFC 9293 §3.10.7.3, §3.10.7.4 fifth step).
    pending_rst_reply: Option<SeqNumber>,
    /// Both sides sent the WS option (RFC 7323 §2.2).
    ws_ok: bool,
    /// Sequence number of our FIN once it has been sent.
    fin_seq: Option<SeqNumber>,
    /// The last data segment was cut short by the send ring's wrap: its
    /// tail is not a small write, so Nagle must not hold it.
    split_tail: bool,
    /// The application asked for a FIN (close or shutdown(write)).
    fin_queued: bool,
    /// The application shut down its read side: data is discarded.
    rd_shutdown: bool,
    /// The application released the socket (close): nobody reads.
    orphan: bool,
    linger: Option<Duration>,
    /// A pending error the application has not seen yet.
    error: Option<TcpError>,
    /// Set once an error has been reported through a call.
    error_reported: bool,
    counters: ConnectionCounters,
    history: Option<Vec<State>>,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_nxt", &self.rcv_nxt)
            .finish()
    }
}

/// A configuration a connection can share: `&Config` is copied once,
/// `&Arc<Config>` (a listener's) is shared.
pub trait SharedConfig {
    fn shared(self) -> Arc<Config>;
}
impl SharedConfig for &Config {
    fn shared(self) -> Arc<Config> {
        Arc::new(self.clone())
    }
}
impl SharedConfig for &Arc<Config> {
    fn shared(self) -> Arc<Config> {
        Arc::clone(self)
    }
}

/// Smallest shift that lets `buffer` bytes be advertised (RFC 7323 §2.3:
/// at most 14).
fn wscale_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < 14 && (buffer >> shift) > 0xffff {
        shift += 1;
    }
    shift
}

impl Connection {
    fn new(
        cfg: Arc<Config>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        ts_offset: u32,
    ) -> Connection {
        let rcv_wscale = if cfg.window_scale {
            wscale_for(cfg.rx_buffer)
        } else {
            0
        };
        Connection {
            state: State::Closed,
            local,
            remote,
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            snd_wscale: 0,
            snd_mss: 536,
            cc: Controller::new(cfg.congestion, initial_window(536, cfg.initial_window)),
            recovery: None,
            recover: iss,
            dup_acks: 0,
            rtx_one: false,
            scoreboard: Scoreboard::default(),
            high_rxt: iss,
            rtx_lost: false,
            tlp_now: false,
            tlp_end: None,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_wscale,
            rcv_adv: SeqNumber(0),
            rcv_mss: 536,
            tx: RingBuffer::new(cfg.tx_buffer),
            rx: RingBuffer::new(cfg.rx_buffer),
            assembler: Assembler::new(),
            ts_enabled: false,
            ts_recent: 0,
            ts_offset,
            last_ack_sent: SeqNumber(0),
            last_tsval: 0,
            sack_ok: false,
            sack_recent: [SeqNumber(0); 4],
            sack_recent_len: 0,
            rtt: Rtt::new(&cfg),
            rtt_mark: iss,
            rtt_timing: None,
            retries: 0,
            persist_backoff: 0,
            timers: [Instant::FAR_FUTURE; TIMERS],
            ack_now: false,
            ack_immediate: false,
            unacked_rx: 0,
            keepalive_probes: 0,
            challenge_window: Instant::ZERO,
            challenge_sent: 0,
            rst_now: false,
            resend_syn: false,
            probe_now: false,
            pending_rst_reply: None,
            ws_ok: false,
            fin_seq: None,
            split_tail: false,
            fin_queued: false,
            rd_shutdown: false,
            orphan: false,
            linger: None,
            error: None,
            error_reported: false,
            counters: ConnectionCounters::default(),
            history: None,
            cfg,
        }
    }

    /// Active open (RFC 9293 §3.10.1): the SYN goes out on the next
    /// [`dispatch`](Self::dispatch).
    pub fn connect(
        cfg: impl SharedConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        ts_offset: u32,
    ) -> Connection {
        let mut c = Connection::new(cfg.shared(), local, remote, iss, ts_offset);
        c.set_state(State::SynSent);
        c
    }

    /// Passive open: a listener got an acceptable SYN (RFC 9293 §3.10.7.2,
    /// LISTEN, "third check for a SYN"). The SYN-ACK goes out on the next
    /// dispatch.
    pub fn accept_syn(
        cfg: impl SharedConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpRepr<'_>,
        iss: SeqNumber,
        ts_offset: u32,
    ) -> Connection {
        let mut c = Connection::new(cfg.shared(), local, remote, iss, ts_offset);
        c.passive = true;
        c.irs = syn.seq_number;
        c.rcv_nxt = syn.seq_number + 1;
        c.last_ack_sent = c.rcv_nxt;
        c.rcv_adv = c.rcv_nxt;
        c.negotiate(syn);
        // RFC 7323 §2.2: the window field of a SYN is never scaled.
        c.snd_wnd = syn.window_len as u32;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq_number;
        c.set_state(State::SynReceived);
        c
    }

    /// Options from the peer's SYN or SYN-ACK: MSS (RFC 9293 §3.7.1, 536
    /// when absent), window scale (RFC 7323 §2.2: only when both sent it),
    /// timestamps (RFC 7323 §3.2) and SACK-permitted (RFC 2018 §2).
    fn negotiate(&mut self, syn: &TcpRepr<'_>) {
        let o = &syn.options;
        match o.window_scale {
            Some(shift) if self.cfg.window_scale => {
                self.snd_wscale = shift.min(14);
                self.ws_ok = true;
            }
            _ => {
                self.ws_ok = false;
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.ts_enabled = self.cfg.timestamps && o.timestamp.is_some();
        if let Some(ts) = o.timestamp {
            self.ts_recent = ts.tsval;
        }
        self.sack_ok = self.cfg.sack && o.sack_permitted;
        let peer_mss = o.mss.map(|m| m as usize).unwrap_or(536).max(64);
        self.rcv_mss = peer_mss;
        let ts_len = if self.ts_enabled { 12 } else { 0 };
        // RFC 6691: the MSS excludes options, so room for TSopt comes off it.
        self.snd_mss = peer_mss.min(self.cfg.mss as usize) - ts_len;
        let smss = self.snd_mss as u32;
        self.cc = Controller::new(
            self.cfg.congestion,
            initial_window(smss, self.cfg.initial_window),
        );
    }

    // ----- accessors -------------------------------------------------------

    pub fn state(&self) -> State {
        self.state
    }
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }
    pub fn is_passive(&self) -> bool {
        self.passive
    }
    pub fn is_orphan(&self) -> bool {
        self.orphan
    }
    pub fn counters(&self) -> &ConnectionCounters {
        &self.counters
    }
    pub fn snd_nxt(&self) -> SeqNumber {
        self.snd_nxt
    }
    pub fn snd_una(&self) -> SeqNumber {
        self.snd_una
    }
    pub fn rcv_nxt(&self) -> SeqNumber {
        self.rcv_nxt
    }
    pub fn iss(&self) -> SeqNumber {
        self.iss
    }
    pub fn irs(&self) -> SeqNumber {
        self.irs
    }
    /// The newest peer TSval we hold (RFC 7323 TS.Recent), when timestamps
    /// were negotiated.
    pub fn ts_recent(&self) -> Option<u32> {
        self.ts_enabled.then_some(self.ts_recent)
    }

    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            state: self.state,
            snd_mss: self.snd_mss as u32,
            rcv_mss: self.rcv_mss as u32,
            snd_wscale: self.snd_wscale,
            rcv_wscale: self.rcv_wscale,
            timestamps: self.ts_enabled,
            sack: self.sack_ok,
            srtt: Duration::from_micros(self.rtt.srtt),
            rttvar: Duration::from_micros(self.rtt.rttvar),
            rto: self.rtt.rto(),
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_window(),
            bytes_in_flight: (self.snd_max - self.snd_una) as u32,
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            congestion: self.cfg.congestion,
            in_recovery: self.recovery.is_some(),
            counters: self.counters,
        }
    }

    /// The small record that replaces this connection in TIME-WAIT once
    /// the application has let go of it (RFC 9293 §3.10.7.4: all TIME-WAIT
    /// still needs is to re-ACK a retransmitted FIN until 2MSL passes).
    pub fn time_wait_record(&self) -> Option<TimeWaitRecord> {
        if self.state != State::TimeWait {
            return None;
        }
        let window = (self.rcv_window() >> self.rcv_wscale).min(0xffff) as u16;
        Some(TimeWaitRecord::new(
            FourTuple {
                local: self.local,
                remote: self.remote,
            },
            self.snd_max,
            self.rcv_nxt,
            self.ts_enabled
                .then_some((self.ts_recent, self.ts_offset, self.last_tsval)),
            window,
            self.timers[Timer::Close as usize],
        ))
    }

    /// Starts recording every state this connection enters (for tests).
    /// Gives the send ring storage from `pool` if it has none yet (before
    /// the application's first write).
    pub fn supply_tx_storage(&mut self, pool: &mut BufferPool) {
        supply(&mut self.tx, pool);
    }

    /// Gives the receive ring storage from `pool` if it has none yet
    /// (before the first segment with data).
    pub fn supply_rx_storage(&mut self, pool: &mut BufferPool) {
        supply(&mut self.rx, pool);
    }

    /// Hands both rings' storage to `pool` (the connection is going away).
    pub fn recycle_storage(&mut self, pool: &mut BufferPool) {
        for ring in [&mut self.tx, &mut self.rx] {
            if let Some(buf) = ring.take_storage() {
                pool.give(buf);
            }
        }
    }

    pub fn record_history(&mut self) {
        self.history = Some(vec![self.state]);
    }
    /// States entered since [`record_history`](Self::record_history).
    pub fn history(&self) -> &[State] {
        self.history.as_deref().unwrap_or(&[])
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            if let Some(h) = &mut self.history {
                h.push(state);
            }
        }
    }

    // ----- the application's side -------------------------------------------

    /// Bytes the application may read now.
    pub fn recv_queue(&self) -> usize {
        self.rx.len()
    }
    /// Bytes queued for sending (unsent plus unacknowledged).
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }
    pub fn send_capacity(&self) -> usize {
        self.tx.capacity()
    }
    pub fn recv_capacity(&self) -> usize {
        self.rx.capacity()
    }

    /// The peer has sent its FIN and every byte before it was read.
    pub fn recv_finished(&self) -> bool {
        self.rx.is_empty() && self.peer_fin_received()
    }

    fn peer_fin_received(&self) -> bool {
        matches!(
            self.state,
            State::CloseWait | State::Closing | State::LastAck | State::TimeWait
        )
    }

    /// Readable in the epoll sense: data, end of stream, or an error.
    pub fn readable(&self) -> bool {
        !self.rx.is_empty() || self.peer_fin_received() || self.rd_shutdown || self.failed()
    }

    /// Writable in the epoll sense: established and with room in the send
    /// buffer, or failed (so the caller sees the error).
    pub fn writable(&self) -> bool {
        (self.may_send() && self.tx.free() > 0) || self.failed()
    }

    /// Both directions are finished (EPOLLHUP).
    pub fn hung_up(&self) -> bool {
        self.failed()
            || matches!(self.state, State::Closed | State::TimeWait)
            || (self.fin_queued && self.peer_fin_received())
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The pending error, cleared once read (SO_ERROR semantics).
    pub fn take_error(&mut self) -> Option<TcpError> {
        let e = self.error.take();
        if e.is_some() {
            self.error_reported = true;
        }
        e
    }

    /// The error, left in place.
    pub fn error(&self) -> Option<TcpError> {
        self.error
    }

    fn may_send(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait) && !self.fin_queued
    }

    /// Queues as much of `data` as fits; never drops accepted bytes.
    pub fn send_slice(&mut self, data: &[u8]) -> Result<usize, SendError> {
        // The error is reported once (and cleared, like SO_ERROR); later
        // calls see a closed connection (EPIPE), as on Linux.
        if let Some(e) = self.take_error() {
            return Err(SendError::Failed(e));
        }
        if self.fin_queued || self.error_reported {
            return Err(SendError::Closed);
        }
        match self.state {
            State::SynSent | State::SynReceived => return Err(SendError::WouldBlock),
            State::Established | State::CloseWait => {}
            _ => return Err(SendError::Closed),
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.tx.enqueue_slice(data);
        if n == 0 {
            return Err(SendError::WouldBlock);
        }
        Ok(n)
    }

    /// Reads into `buf`. `Ok(0)` is the end of the stream.
    pub fn recv_slice(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if self.rx.is_empty() {
            if let Some(e) = self.take_error() {
                return Err(RecvError::Failed(e));
            }
            if self.rd_shutdown || self.peer_fin_received() || self.state == State::Closed {
                return Ok(0);
            }
            if matches!(self.state, State::SynSent | State::SynReceived) {
                return Err(RecvError::NotConnected);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            return Err(RecvError::WouldBlock);
        }
        let n = self.rx.dequeue_slice(buf);
        if self.assembler.is_empty() {
            self.rx.rewind_if_empty();
        }
        self.window_update_due();
        Ok(n)
    }

    /// Reads without consuming: up to `buf.len()` bytes from the front.
    pub fn peek_slice(&self, buf: &mut [u8]) -> usize {
        self.rx.read_allocated(0, buf)
    }

    /// RFC 1122 §4.2.3.3 receiver SWS avoidance: announce a reopened window
    /// only when it grew by min(buffer/2, MSS) beyond what the peer knows.
    fn window_update_due(&mut self) {
        if !self.state.is_synchronized() || self.peer_fin_received() {
            return;
        }
        let known = self.rcv_adv - self.rcv_nxt;
        let now = self.rcv_window() as usize;
        let step = (self.rx.capacity() / 2).min(self.rcv_mss).max(1);
        if now >= known + step {
            self.ack_now = true;
        }
    }

    pub fn set_linger(&mut self, linger: Option<Duration>) {
        self.linger = linger;
    }
    pub fn set_nodelay(&mut self, nodelay: bool) {
        Arc::make_mut(&mut self.cfg).nodelay = nodelay;
    }
    /// SO_KEEPALIVE and its parameters; takes effect from the next segment.
    pub fn set_keepalive(&mut self, now: Instant, keepalive: Option<super::Keepalive>) {
        Arc::make_mut(&mut self.cfg).keepalive = keepalive;
        self.keepalive_probes = 0;
        self.arm_keepalive(now);
    }

    fn arm_keepalive(&mut self, now: Instant) {
        self.timers[Timer::Keepalive as usize] = match self.cfg.keepalive {
            Some(k) if self.state.is_synchronized() && self.state != State::TimeWait => {
                now + if self.keepalive_probes == 0 {
                    k.idle
                } else {
                    k.interval
                }
            }
            _ => Instant::FAR_FUTURE,
        };
    }

    /// `shutdown(2)`. Write: send FIN after queued data (RFC 9293 §3.10.4).
    /// Read: discard what is buffered and what arrives later (the BSD
    /// behaviour; Linux keeps queuing but reports end of stream).
    pub fn shutdown(&mut self, how: Shutdown) {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.rd_shutdown = true;
            let n = self.rx.len();
            self.rx.dequeue_allocated(n);
            self.window_update_due();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.queue_fin();
        }
    }

    fn queue_fin(&mut self) {
        match self.state {
            State::SynSent => {
                // RFC 9293 §3.10.4: CLOSE in SYN-SENT deletes the TCB.
                self.enter_closed();
            }
            State::SynReceived => self.fin_queued = true,
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
            }
            _ => self.fin_queued = true,
        }
    }

    /// `close(2)`: the application gives the socket up. Graceful by default;
    /// SO_LINGER {on, 0} aborts with RST; SO_LINGER {on, t} aborts with RST
    /// if the data and FIN are not acknowledged within t. Unread data makes it
    /// an abort, as on Linux (RFC 2525 §2.17).
    pub fn close(&mut self, now: Instant) {
        self.orphan = true;
        if self.linger == Some(Duration::ZERO) || (!self.rx.is_empty() && !self.rd_shutdown) {
            self.abort();
            return;
        }
        self.rd_shutdown = true;
        self.queue_fin();
        if let Some(t) = self.linger {
            if self.state != State::Closed {
                self.timers[Timer::Close as usize] = now + t;
            }
        }
    }

    /// Sends RST (in a synchronized state or SYN-RECEIVED) and goes to
    /// CLOSED at once, discarding both buffers (RFC 9293 §3.10.5 ABORT).
    pub fn abort(&mut self) {
        if !matches!(self.state, State::Closed | State::SynSent | State::TimeWait) {
            self.rst_now = true;
        }
        self.enter_closed();
    }

    fn enter_closed(&mut self) {
        self.set_state(State::Closed);
        self.tx.clear();
        self.rx.clear();
        self.assembler.clear();
        self.timers = [Instant::FAR_FUTURE; TIMERS];
        self.ack_now = false;
    }

    fn fail(&mut self, err: TcpError) {
        self.error = Some(err);
        self.rst_now = false;
        self.enter_closed();
    }

    // ----- time -------------------------------------------------------------

    /// The earliest of the connection's timers (`FAR_FUTURE` if none runs):
    /// what [`poll_at`](Self::poll_at) says once a dispatch has sent all it
    /// could.
    #[inline]
    pub fn next_timer(&self) -> Instant {
        let mut t = Instant::FAR_FUTURE;
        for &d in &self.timers {
            t = t.min(d);
        }
        t
    }

    /// When this connection next needs [`dispatch`](Self::dispatch): now if
    /// something is owed, else the earliest timer, else never.
    pub fn poll_at(&self) -> Instant {
        if self.ack_now
            || self.ack_immediate
            || self.rst_now
            || self.resend_syn
            || self.rtx_one
            || self.rtx_lost
            || self.tlp_now
            || self.probe_now
            || self.pending_rst_reply.is_some()
        {
            return Instant::ZERO;
        }
        let mut t = self.next_timer();
        // A zero window closed on queued data with nothing in flight (so no
        // RTO either) needs the persist timer, which dispatch arms: without
        // it a lost window update would hang the connection (RFC 9293
        // §3.8.6.1).
        if self.has_sendable() || self.persist_unarmed() {
            t = Instant::ZERO;
        }
        t
    }

    /// Is there something window and buffer allow us to send right now?
    /// Must agree with what [`send_data`](Self::send_data) would do, or the
    /// endpoint would poll a connection that has nothing to send.
    fn has_sendable(&self) -> bool {
        match self.state {
            State::SynSent | State::SynReceived => self.snd_nxt == self.iss,
            State::Established
            | State::CloseWait
            | State::FinWait1
            | State::Closing
            | State::LastAck => {
                // Nothing queued past SND.NXT and no FIN to send: nothing to
                // send (the common case after a burst went out).
                let off = self.snd_nxt - self.snd_una;
                if !self.fin_queued && self.tx.len() <= off && self.recovery.is_none() {
                    return false;
                }
                if let Some(Recovery { sack: true, .. }) = self.recovery {
                    let smss = self.snd_mss;
                    let pipe =
                        self.scoreboard
                            .pipe(self.snd_una, self.snd_max, self.high_rxt, smss);
                    let from = self.high_rxt.max(self.snd_una);
                    (self.cc.cwnd() as usize) >= pipe + smss
                        && (self.scoreboard.next_hole(from).is_some()
                            || self.next_segment(self.effective_nxt(), true).is_some())
                } else {
                    self.next_segment(self.effective_nxt(), false).is_some()
                }
            }
            _ => false,
        }
    }

    /// SND.NXT moved past any SACKed range it points into (when resending
    /// after an RTO).
    fn effective_nxt(&self) -> SeqNumber {
        let mut nxt = self.snd_nxt;
        while nxt < self.snd_max {
            match self.scoreboard.sacked_end(nxt) {
                Some(end) => nxt = end.min(self.snd_max),
                None => break,
            }
        }
        nxt
    }

    /// The segment [`send_new`](Self::send_new) would send at `nxt`:
    /// (payload length, FIN), or None if window, Nagle (RFC 896) or sender
    /// SWS avoidance (RFC 9293 §3.8.6.2.1) hold it back. In SACK recovery
    /// (`rwnd_only`) cwnd was checked against the pipe by the caller.
    #[inline]
    fn next_segment(&self, nxt: SeqNumber, rwnd_only: bool) -> Option<(usize, bool)> {
        let off = nxt - self.snd_una;
        let unsent = self.tx.len().saturating_sub(off);
        let window = if rwnd_only {
            (self.snd_wnd as usize).saturating_sub(off)
        } else {
            // RFC 3042 Limited Transmit (RFC 5681 §3.2 step 2): the first
            // and second duplicate ACKs each let one segment of new data
            // go past cwnd, so that a small window still draws the third
            // duplicate; cwnd itself does not change.
            let mut cwnd = self.cc.cwnd() as usize;
            if self.recovery.is_none() && nxt >= self.snd_max {
                cwnd += self.dup_acks.min(2) as usize * self.snd_mss;
            }
            (self.snd_wnd as usize).min(cwnd).saturating_sub(off)
        };
        let mss = self.payload_limit();
        let mut len = unsent.min(window).min(mss);
        let resend = nxt < self.snd_max;
        if resend {
            if let Some(next) = self.scoreboard.next_sacked(nxt) {
                len = len.min(next - nxt);
            }
        }
        // The FIN rides on the last data segment, or goes alone.
        let fin = self.fin_queued && off + len == self.tx.len() && !rwnd_only;
        if len == 0 && !fin {
            return None;
        }
        if !resend && len < mss && !fin && self.snd_max > self.snd_una {
            let window_limited = len < unsent;
            let sws = window_limited && len < (self.max_snd_wnd as usize) / 2;
            let nagle = !window_limited && !self.cfg.nodelay && !self.split_tail;
            if sws || nagle {
                return None;
            }
        }
        Some((len, fin))
    }

    /// Payload bytes that fit in a segment now: the MSS less the SACK
    /// blocks our ACKs currently carry (4 + 8·n bytes), as Linux's
    /// tcp_current_mss does, so no frame exceeds the MTU.
    fn payload_limit(&self) -> usize {
        if !self.sack_ok || self.assembler.is_empty() {
            return self.snd_mss;
        }
        let max = if self.ts_enabled { 3 } else { 4 };
        let blocks = self.assembler.range_count().min(max);
        self.snd_mss - (4 + 8 * blocks)
    }

    /// Sequence number for segments without data, SYN or FIN (ACKs, RST):
    /// SND.MAX, not SND.NXT, which moves back while retransmitting after an
    /// RTO and would make the peer find the ACK below RCV.NXT, drop it as
    /// unacceptable and answer with an ACK of its own — an ACK loop (BSD's
    /// tcp_output uses snd_max for the same reason).
    fn ack_seq(&self) -> SeqNumber {
        self.snd_max
    }

    /// Our FIN has been sent and acknowledged.
    fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|s| self.snd_una > s)
    }

    fn our_tsval(&self, now: Instant) -> u32 {
        // RFC 7323 §5.4: a 1 ms clock plus a per-connection offset.
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Our receive window: free buffer space past `rcv_nxt`, in multiples of
    /// the scale unit, never less than what was already advertised.
    fn rcv_window(&self) -> u32 {
        let max = (0xffffusize) << self.rcv_wscale;
        let free = self.rx.free().min(max);
        let free = (free >> self.rcv_wscale) << self.rcv_wscale;
        let advertised = self.rcv_adv - self.rcv_nxt;
        free.max(advertised) as u32
    }

    // ----- input ------------------------------------------------------------

    /// Processes one incoming segment addressed to this connection
    /// (RFC 9293 §3.10.7.3 for SYN-SENT, §3.10.7.4 otherwise). Replies are
    /// recorded and go out on the next [`dispatch`](Self::dispatch), so a
    /// burst of segments yields one ACK.
    /// Immediate replies (duplicate ACKs for out-of-order data, challenge
    /// ACKs) go to `sink` at once; the rest waits for the next dispatch.
    pub fn process(&mut self, now: Instant, seg: &TcpRepr<'_>, sink: &mut impl Sink) {
        self.counters.segs_in += 1;
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.process_syn_sent(now, seg),
            State::Established => {
                if !self.predicted(now, seg, &[]) {
                    self.process_synchronized(now, seg)
                }
            }
            _ => self.process_synchronized(now, seg),
        }
        self.segment_done(now, sink);
    }

    /// The segments of `run` (in-order data of this connection that arrived
    /// together) at once, if header prediction holds for all of them: the
    /// same steps as [`process`](Self::process) on each in turn, run once.
    /// Returns false, having changed nothing, if it does not: the caller
    /// then processes each segment on its own.
    pub fn process_run(
        &mut self,
        now: Instant,
        run: &SegmentRun<'_>,
        sink: &mut impl Sink,
    ) -> bool {
        if self.state != State::Established || !self.predicted(now, run.first(), run.rest()) {
            return false;
        }
        self.counters.segs_in += run.count() as u64;
        self.segment_done(now, sink);
        true
    }

    /// What follows every segment, whatever its path.
    #[inline(always)]
    fn segment_done(&mut self, now: Instant, sink: &mut impl Sink) {
        if self.cfg.keepalive.is_some() {
            self.keepalive_probes = 0;
            self.arm_keepalive(now);
        }
        if self.ack_immediate {
            self.ack_immediate = false;
            if self.state.is_synchronized() || self.state == State::SynReceived {
                let seq = self.ack_seq();
                if !self.emit(now, sink, TcpFlags::ACK, seq, 0, 0) {
                    self.ack_now = true;
                }
            }
        }
        self.arm_probe(now);
    }

    /// Header prediction (Van Jacobson's fast path, as in BSD's
    /// `tcp_input`): in ESTABLISHED, a segment with only ACK (and PSH), the
    /// next sequence number expected, an ACK that moves SND.UNA or data that
    /// fits the window, the window unchanged, timestamps in order, no SACK
    /// blocks, no loss recovery and nothing out of order runs the few steps
    /// of RFC 9293 §3.10.7.4 that apply to it, in the same order. Anything
    /// else returns false untouched and takes the full path.
    ///
    /// `rest` are the payloads of in-order segments that followed `seg`
    /// with its ACK, window and options (a [`SegmentRun`]): the checks hold
    /// for all of them when they hold for their total, and the steps run
    /// once leave what running them on each in turn would.
    #[inline(always)]
    fn predicted(&mut self, now: Instant, seg: &TcpRepr<'_>, rest: &[&[u8]]) -> bool {
        let seq = seg.seq_number;
        let ack = seg.ack_number;
        let last_len = rest.last().map_or(seg.payload.len(), |p| p.len());
        let len = seg.payload.len() + rest.iter().map(|p| p.len()).sum::<usize>();
        if seg.flags.0 & !TcpFlags::PSH.0 != TcpFlags::ACK.0
            || seq != self.rcv_nxt
            || seg.options.sack_count != 0
            || self.recovery.is_some()
            || self.rtx_one
            || !self.assembler.is_empty()
            || self.rd_shutdown
            || (seg.window_len as u32) << self.snd_wscale != self.snd_wnd
            || ack < self.snd_una
            || ack > self.snd_max
            // A bare ACK that moves nothing is a duplicate or a window
            // probe's answer: the full path counts it.
            || (ack == self.snd_una && len == 0)
            || (len > 0 && len > self.rcv_window() as usize)
        {
            return false;
        }
        // PAWS (RFC 7323 §5.3): an old TSval takes the full path (dropped
        // there); TS.Recent follows a segment covering Last.ACK.sent.
        if self.ts_enabled {
            match seg.options.timestamp {
                Some(ts) if (ts.tsval.wrapping_sub(self.ts_recent) as i32) >= 0 => {}
                _ => return false,
            }
        }
        if ack > self.snd_una {
            self.new_ack(now, seg, ack);
        }
        // SND.WL1/SND.WL2 (the window itself is unchanged), as the last
        // segment leaves them.
        let last_seq = seq + (len - last_len);
        if self.snd_wl1 < last_seq || (self.snd_wl1 == last_seq && self.snd_wl2 <= ack) {
            self.snd_wl1 = last_seq;
            self.snd_wl2 = ack;
        }
        // The first segment covers Last.ACK.sent if any does; all carry
        // the same TSval.
        if let (true, Some(ts)) = (self.ts_enabled, seg.options.timestamp) {
            if seq <= self.last_ack_sent {
                self.ts_recent = ts.tsval;
            }
        }
        if len > 0 {
            self.accept_in_order(seg.payload);
            for payload in rest {
                self.accept_in_order(payload);
            }
            self.delay_ack(now, len);
        }
        self.counters.fast_path += 1 + rest.len() as u64;
        true
    }

    /// RFC 9293 §3.10.7.3.
    fn process_syn_sent(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let f = seg.flags;
        // First, check the ACK bit.
        let mut ack_ok = false;
        if f.ack() {
            if seg.ack_number <= self.iss || seg.ack_number > self.snd_max {
                // <SEQ=SEG.ACK><CTL=RST> unless this is itself an RST; the
                // endpoint builds it from the segment.
                if !f.rst() {
                    self.pending_rst_reply = Some(seg.ack_number);
                }
                return;
            }
            ack_ok = seg.ack_number > self.snd_una;
        }
        // Second, the RST bit (RFC 5961 §3: only with an acceptable ACK).
        if f.rst() {
            if ack_ok {
                self.fail(TcpError::Refused);
            }
            return;
        }
        // Fourth, the SYN bit.
        if !f.syn() {
            return;
        }
        self.irs = seg.seq_number;
        self.rcv_nxt = seg.seq_number + 1;
        self.last_ack_sent = self.rcv_nxt;
        self.rcv_adv = self.rcv_nxt;
        self.negotiate(seg);
        // RFC 7323 §2.2: never scale the window of a SYN.
        self.snd_wnd = seg.window_len as u32;
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq_number;
        if ack_ok {
            self.snd_wl2 = seg.ack_number;
            self.ack_received(now, seg.ack_number);
            self.rtt_mark = self.snd_max;
            self.set_state(State::Established);
            self.ack_now = true;
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 7): SYN-ACK next.
            self.set_state(State::SynReceived);
            self.snd_nxt = self.iss;
            self.resend_syn = true;
        }
        // Data or FIN carried by the SYN is processed as in the synchronized
        // states, after the SYN itself.
        if !seg.payload.is_empty() || f.fin() {
            let rest = TcpRepr {
                seq_number: seg.seq_number + 1,
                flags: TcpFlags(f.0 & !TcpFlags::SYN.0 & !TcpFlags::ACK.0),
                ..*seg
            };
            if self.state == State::Established {
                self.process_text_and_fin(now, &rest);
            }
        }
    }

    /// RFC 9293 §3.10.7.4 "Otherwise": every state from SYN-RECEIVED on.
    fn process_synchronized(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let f = seg.flags;

        // RFC 7323 §5.3 PAWS, before the sequence check: an old TSval means
        // an old duplicate. RSTs are exempt.
        if self.ts_enabled && !f.rst() {
            if let Some(ts) = seg.options.timestamp {
                if (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    self.counters.paws_drops += 1;
                    self.ack_now = true;
                    return;
                }
            }
        }

        // TIME-WAIT: the only thing expected is a retransmission of the
        // peer's FIN. Acknowledge it and restart 2MSL (RFC 9293 §3.10.7.4,
        // eighth step).
        if self.state == State::TimeWait {
            if f.rst() {
                // RFC 1337: ignore RSTs in TIME-WAIT (TIME-WAIT assassination).
                return;
            }
            if f.syn() {
                // A new SYN for this 4-tuple: RFC 5961 §4 challenge ACK. Safe
                // reuse of the tuple is the endpoint's decision.
                self.challenge_ack(now);
                return;
            }
            if f.fin() && seg.seq_number + seg.segment_len() == self.rcv_nxt {
                self.ack_now = true;
                self.timers[Timer::Close as usize] = now + self.cfg.msl.saturating_mul(2);
                return;
            }
            if !f.ack() || seg.segment_len() > 0 {
                self.ack_now = true;
            }
            return;
        }

        // First, check the sequence number (the four cases).
        let seg_len = seg.segment_len();
        let wnd = self.rcv_window() as usize;
        let seq = seg.seq_number;
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_range(self.rcv_nxt, self.rcv_nxt + wnd),
            (_, 0) => false,
            (_, _) => {
                seq.in_range(self.rcv_nxt, self.rcv_nxt + wnd)
                    || (seq + seg_len - 1).in_range(self.rcv_nxt, self.rcv_nxt + wnd)
            }
        };
        if !acceptable {
            // A retransmitted SYN in SYN-RECEIVED gets the SYN-ACK again.
            if self.state == State::SynReceived && f.syn() && !f.ack() && seq == self.irs {
                self.resend_syn = true;
                return;
            }
            // RFC 9293: "special allowance should be made to accept valid
            // ACKs, URGs, and RSTs" with a zero window: fall through for a
            // bare in-sequence ACK.
            let zero_window_ack = wnd == 0 && seq == self.rcv_nxt && !f.syn();
            if !zero_window_ack {
                if !f.rst() {
                    self.counters.out_of_window += 1;
                    self.ack_now = true;
                }
                return;
            }
            // Its text is still unacceptable and is trimmed away below, but
            // "when the receiving TCP peer has a zero window and a segment
            // arrives, it must still send an acknowledgment" (RFC 9293
            // §3.8.6.1): that ACK answers a one-byte window probe.
            if !seg.payload.is_empty() && !f.rst() {
                self.counters.out_of_window += 1;
                self.ack_now = true;
            }
        }

        // Second, the RST bit (RFC 5961 §3.2: exact match resets; otherwise
        // in-window gets a challenge ACK).
        if f.rst() {
            if seq != self.rcv_nxt {
                self.challenge_ack(now);
                return;
            }
            match self.state {
                State::SynReceived if self.passive => {
                    // RFC 9293: back to LISTEN, i.e. this TCB goes away
                    // quietly; the listener was never told about it.
                    self.enter_closed();
                }
                State::SynReceived => self.fail(TcpError::Refused),
                State::Closing | State::LastAck => self.enter_closed(),
                _ => self.fail(TcpError::Reset),
            }
            return;
        }

        // Fourth, the SYN bit: RFC 5961 §4 challenge ACK in any synchronized
        // state (and SYN-RECEIVED), whatever its sequence number.
        if f.syn() {
            if self.state == State::SynReceived && seq == self.irs {
                self.resend_syn = true;
            } else {
                self.challenge_ack(now);
            }
            return;
        }

        // Fifth, the ACK field.
        if !f.ack() {
            return;
        }
        let ack = seg.ack_number;
        if self.state == State::SynReceived {
            if ack > self.snd_una && ack <= self.snd_max {
                self.snd_wnd = (seg.window_len as u32) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                // A SYN retransmission seen in this burst needs no SYN-ACK
                // any more.
                self.resend_syn = false;
                // A close() during the handshake queued a FIN (RFC 9293
                // §3.10.4): it goes out now, from FIN-WAIT-1.
                self.set_state(if self.fin_queued {
                    State::FinWait1
                } else {
                    State::Established
                });
            } else {
                // <SEQ=SEG.ACK><CTL=RST>
                self.pending_rst_reply = Some(ack);
                return;
            }
        }
        // RFC 5961 §5: acceptable iff SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT
        // (SND.NXT being the highest sent here).
        let lowest = self.snd_una - (self.max_snd_wnd as usize);
        if ack > self.snd_max || ack < lowest {
            self.counters.bad_acks += 1;
            self.ack_immediate = true;
            return;
        }
        let mut sacked_new = false;
        if self.sack_ok && seg.options.sack_count > 0 {
            let (taken, newly) = self.scoreboard.update(
                seg.options.sack_blocks(),
                self.snd_una.max(ack),
                self.snd_max,
            );
            self.counters.sack_blocks_in += taken as u64;
            sacked_new = newly > 0;
        }
        let window = (seg.window_len as u32) << self.snd_wscale;
        // RFC 5681 §2: a duplicate ACK carries no data and no SYN/FIN,
        // acknowledges SND.UNA and leaves the window as it was. RFC 6675 §2
        // widens it for SACK: any ACK that SACKs new data is one, "even if
        // it carries new data, changes the advertised window, or moves the
        // cumulative acknowledgment point". A Linux peer's duplicates
        // usually do one of these (its window grows as it reads; in a
        // two-way transfer they ride on its data).
        if ack > self.snd_una {
            self.new_ack(now, seg, ack);
            if sacked_new && self.snd_max > self.snd_una {
                self.dup_ack(now);
            }
        } else if ack == self.snd_una
            && self.snd_max > self.snd_una
            && (sacked_new || (seg.payload.is_empty() && !f.fin() && window == self.snd_wnd))
        {
            self.dup_ack(now);
        }
        if sacked_new && !self.rtx_lost {
            let smss = self.snd_mss;
            self.rtx_lost = self
                .scoreboard
                .lost_retransmission(self.snd_una, smss)
                .is_some();
        }
        // Window update (RFC 9293 §3.10.7.4, SND.WL1/SND.WL2 rule).
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if was_zero && self.snd_wnd > 0 {
                self.timers[Timer::Persist as usize] = Instant::FAR_FUTURE;
                self.persist_backoff = 0;
            }
        }
        // RFC 7323 §4.3: TS.Recent follows the segment that covers
        // Last.ACK.sent.
        if self.ts_enabled {
            if let Some(ts) = seg.options.timestamp {
                if seq <= self.last_ack_sent {
                    self.ts_recent = ts.tsval;
                }
            }
        }

        let our_fin_acked = self.fin_acked();
        match self.state {
            // With a FIN in the same segment the eighth step goes straight
            // to TIME-WAIT; FIN-WAIT-2 is entered below only if it does not.
            State::FinWait1 if our_fin_acked && !f.fin() => self.enter_fin_wait_2(now),
            State::Closing if our_fin_acked => {
                self.enter_time_wait(now);
                return;
            }
            State::LastAck if our_fin_acked => {
                self.enter_closed();
                return;
            }
            _ => {}
        }

        self.process_text_and_fin(now, seg);
        if self.state == State::FinWait1 && self.fin_acked() {
            self.enter_fin_wait_2(now);
        }
    }

    fn enter_fin_wait_2(&mut self, now: Instant) {
        self.set_state(State::FinWait2);
        if self.orphan {
            self.timers[Timer::Close as usize] = now + self.cfg.fin_timeout;
        }
    }

    /// Seventh and eighth steps: segment text and FIN.
    fn process_text_and_fin(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let receiving = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if !receiving {
            // CLOSE-WAIT, CLOSING, LAST-ACK: the peer already sent FIN; ignore
            // text (RFC 9293 seventh step).
            return;
        }
        let mut payload = seg.payload;
        let mut seq = seg.seq_number;
        let mut fin = seg.flags.fin();
        // Trim what we already have.
        if seq < self.rcv_nxt {
            let dup = self.rcv_nxt - seq;
            if dup > payload.len() {
                // Only the FIN (or nothing) is new.
                if !(fin && dup == payload.len()) {
                    fin = fin && dup <= payload.len();
                }
                payload = &payload[payload.len().min(dup)..];
            } else {
                payload = &payload[dup..];
            }
            seq = self.rcv_nxt;
        }
        // Trim what lies past the window; a FIN past it is dropped too.
        let wnd = self.rcv_window() as usize;
        let offset = seq - self.rcv_nxt;
        if offset + payload.len() > wnd {
            let keep = wnd.saturating_sub(offset);
            payload = &payload[..keep.min(payload.len())];
            fin = false;
        }

        if !payload.is_empty() {
            if self.orphan
                && self.rd_shutdown
                && self.fin_queued
                && self.state != State::Established
            {
                // Data after close(): nobody will read it. Linux answers
                // with RST (tcp_rcv_state_process, "abort on data").
                self.abort();
                return;
            }
            if offset == 0 {
                let filled_hole = !self.assembler.is_empty();
                self.accept_in_order(payload);
                if filled_hole {
                    // RFC 5681 §4.2: ACK at once when a segment fills a gap.
                    self.ack_immediate = true;
                } else {
                    self.delay_ack(now, payload.len());
                }
            } else {
                // RFC 5681 §4.2: an immediate duplicate ACK for every
                // out-of-order segment (with SACK blocks, RFC 2018).
                self.accept_out_of_order(seq, offset, payload);
                self.ack_immediate = true;
                fin = false;
            }
        } else if seg.segment_len() > 0 && !fin {
            // Nothing new: a duplicate. ACK it so the sender learns.
            self.ack_now = true;
        }

        // FIN is acceptable only when everything before it has arrived.
        if fin && seq + payload.len() == self.rcv_nxt {
            self.rcv_nxt += 1;
            match self.state {
                State::Established => {
                    // The ACK of the peer's FIN is delayed like one of data
                    // (Linux: tcp_fin enters "pingpong" mode): a server that
                    // closes at once sends it on its own FIN, and a short
                    // connection costs one segment less.
                    if !(self.ack_immediate || self.ack_now) {
                        // The FIN is one sequence number owed an ACK: the
                        // timer must find it owed when it fires.
                        self.delay_ack(now, 1);
                    }
                    self.set_state(State::CloseWait);
                }
                State::FinWait1 => {
                    self.ack_now = true;
                    if self.fin_acked() {
                        // FIN+ACK of our FIN: straight to TIME-WAIT.
                        self.enter_time_wait(now);
                    } else {
                        self.set_state(State::Closing);
                    }
                }
                State::FinWait2 => {
                    self.ack_now = true;
                    self.enter_time_wait(now);
                }
                _ => self.ack_now = true,
            }
        }
    }

    #[inline]
    fn accept_in_order(&mut self, payload: &[u8]) {
        let n = if self.rd_shutdown {
            // Read side shut: acknowledge and discard.
            payload.len()
        } else {
            self.rx.enqueue_slice(payload)
        };
        self.rcv_nxt += n;
        self.counters.bytes_received += n as u64;
        if n > 0 && !self.assembler.is_empty() {
            // Out-of-order data that has now become contiguous.
            let front = self.assembler.add_then_remove_front(0, n).unwrap_or(n);
            let extra = front.saturating_sub(n);
            let extra = self.rx.enqueue_unallocated(extra);
            self.rcv_nxt += extra;
            self.counters.bytes_received += extra as u64;
        }
    }

    /// RFC 1122 §4.2.3.2 / RFC 5681 §4.2: ACK at least every second
    /// full-sized segment, and within the delayed-ACK timeout.
    fn delay_ack(&mut self, now: Instant, len: usize) {
        self.unacked_rx += len;
        if self.cfg.delayed_ack.is_zero() || self.unacked_rx >= 2 * self.rcv_mss {
            self.ack_now = true;
        } else if self.timers[Timer::DelayedAck as usize] == Instant::FAR_FUTURE {
            self.timers[Timer::DelayedAck as usize] = now + self.cfg.delayed_ack;
        }
    }

    fn accept_out_of_order(&mut self, seq: SeqNumber, offset: usize, payload: &[u8]) {
        if self.rd_shutdown {
            return;
        }
        // The assembler's offsets count from the start of the free space,
        // i.e. from rcv_nxt. It never holds more than the window: the
        // segment was trimmed to it.
        if self.assembler.add(offset, payload.len()).is_ok() {
            self.rx.write_unallocated(offset, payload);
            self.counters.ooo_segments += 1;
            // Most recent first, no duplicates, at most four.
            let n = self.sack_recent_len;
            let pos = self.sack_recent[..n]
                .iter()
                .position(|s| *s == seq)
                .unwrap_or(n.min(3));
            self.sack_recent.copy_within(0..pos, 1);
            self.sack_recent[0] = seq;
            self.sack_recent_len = (n + (pos == n) as usize).min(4);
        } else {
            self.counters.ooo_dropped += 1;
        }
    }

    /// SACK blocks for an outgoing ACK (RFC 2018 §4): the block holding the
    /// most recent out-of-order segment first, then other recent ones, then
    /// the rest; three fit beside timestamps, four without.
    fn fill_sack_blocks(&self, options: &mut TcpOptions) {
        let max = if options.timestamp.is_some() { 3 } else { 4 };
        let mut n = 0usize;
        let base = self.rcv_nxt;
        let mut push = |options: &mut TcpOptions, start: usize, end: usize| {
            let block = (base + start, base + end);
            if n < max && !options.sack_blocks[..n].contains(&block) {
                options.sack_blocks[n] = block;
                n += 1;
            }
        };
        for recent in &self.sack_recent[..self.sack_recent_len] {
            let off = *recent - base;
            if *recent < base {
                continue;
            }
            if let Some((s, e)) = self.assembler.iter().find(|(s, e)| off >= *s && off < *e) {
                push(options, s, e);
            }
        }
        for (s, e) in self.assembler.iter() {
            push(options, s, e);
        }
        options.sack_count = n as u8;
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(State::TimeWait);
        self.tx.clear();
        self.timers = [Instant::FAR_FUTURE; TIMERS];
        self.timers[Timer::Close as usize] = now + self.cfg.msl.saturating_mul(2);
    }

    /// RFC 5961 §3.2/§4: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
    /// RFC 5961 §7: challenge ACKs are rate-limited, so a blind attacker
    /// cannot use them to probe for sequence numbers or to make us flood
    /// the peer. At most five per second per connection (FreeBSD's
    /// tcp_ack_war defaults); the rest are counted and not sent.
    fn challenge_ack(&mut self, now: Instant) {
        const PER_SECOND: u8 = 5;
        if now >= self.challenge_window + Duration::from_secs(1) {
            self.challenge_window = now;
            self.challenge_sent = 0;
        }
        if self.challenge_sent >= PER_SECOND {
            self.counters.challenge_acks_suppressed += 1;
            return;
        }
        self.challenge_sent += 1;
        self.counters.challenge_acks += 1;
        self.ack_immediate = true;
    }

    /// New data acknowledged: SND.UNA advances, acked bytes leave the send
    /// buffer, RTT is sampled, the RTO restarts (RFC 6298 §5.3), and the
    /// congestion controller or the recovery in progress reacts.
    fn new_ack(&mut self, now: Instant, seg: &TcpRepr<'_>, ack: SeqNumber) {
        let acked = self.ack_received(now, ack);
        // RFC 8985 §7.2: an ACK that moves SND.UNA restarts the PTO (armed
        // again after this segment); §7.4: the probe's episode ends when
        // it is acknowledged.
        self.timers[Timer::Probe as usize] = Instant::FAR_FUTURE;
        if let Some((end, retransmitted)) = self.tlp_end {
            if ack >= end {
                self.tlp_end = None;
                // A retransmitted probe that no D-SACK (RFC 2883: a block
                // below the cumulative ACK) calls a duplicate repaired a
                // loss: respond as to one (§7.4.2), without entering
                // recovery, since the loss is already repaired.
                let dsack = seg.options.sack_blocks().iter().any(|&(_, e)| e <= ack);
                if retransmitted && !dsack {
                    let smss = self.snd_mss as u32;
                    let flight = ((self.snd_max - self.snd_una) as u32).max(smss);
                    self.cc.on_loss(now, flight, smss);
                    let ssthresh = self.cc.ssthresh();
                    self.cc.set_cwnd(ssthresh);
                }
            }
        }
        // RTT: with timestamps, one sample per flight from the echoed TSval
        // (RFC 7323 §4.1, retransmissions included); otherwise Karn's timed
        // segment, never a retransmitted one.
        if self.ts_enabled && ack >= self.rtt_mark {
            if let Some(ts) = seg.options.timestamp {
                let sent = ts.tsecr.wrapping_sub(self.ts_offset);
                let elapsed = (now.total_millis() as u32).wrapping_sub(sent);
                if ts.tsecr != 0 && (elapsed as i32) >= 0 {
                    self.rtt.sample(elapsed as u64 * 1000);
                    self.rtt_timing = None;
                }
            }
            self.rtt_mark = self.snd_max;
        }
        let smss = self.snd_mss as u32;
        self.dup_acks = 0;
        match self.recovery {
            Some(r) if ack >= r.point => {
                // Full acknowledgement: RFC 6582 §3.2 step 3 / RFC 6675:
                // deflate to ssthresh and leave recovery.
                let ssthresh = self.cc.ssthresh();
                self.cc.set_cwnd(ssthresh);
                self.recovery = None;
            }
            Some(_) if self.cfg.congestion == Algorithm::Reno => {
                // Plain Reno (RFC 5681 §3.2 step 6): any new ACK ends fast
                // recovery.
                let ssthresh = self.cc.ssthresh();
                self.cc.set_cwnd(ssthresh);
                self.recovery = None;
            }
            Some(r) if !r.sack => {
                // RFC 6582 §3.2 step 5, partial ACK: retransmit the next
                // hole, deflate by the amount acknowledged, add back one
                // SMSS, stay in recovery.
                self.rtx_one = true;
                let cwnd = self.cc.cwnd().saturating_sub(acked as u32);
                let cwnd = if acked as u32 >= smss {
                    cwnd + smss
                } else {
                    cwnd
                };
                self.cc.set_cwnd(cwnd.max(smss));
            }
            Some(_) => {
                // SACK recovery: NextSeg picks what to send from the pipe.
            }
            None => {
                let srtt = Duration::from_micros(self.rtt.srtt);
                self.cc.on_ack(now, acked as u32, smss, srtt);
            }
        }
    }

    /// RFC 5681 §3.2 duplicate ACK handling, RFC 6675 §5 with SACK.
    fn dup_ack(&mut self, now: Instant) {
        self.counters.dup_acks_in += 1;
        self.dup_acks += 1;
        let smss = self.snd_mss as u32;
        if let Some(r) = self.recovery {
            if !r.sack {
                // Step 4: inflate by one SMSS per further duplicate.
                let cwnd = self.cc.cwnd().saturating_add(smss);
                self.cc.set_cwnd(cwnd);
            }
            return;
        }
        let sack_says_lost = self.sack_ok && self.scoreboard.is_lost(self.snd_una, self.snd_mss);
        // A duplicate during a tail loss probe episode: the probe, sent
        // last, arrived while the data before it did not, which RACK
        // (RFC 8985 §7.4.1) takes as lost; without it, one probe could not
        // draw the three duplicates RFC 6675 waits for.
        let probe_says_lost = self.tlp_end.is_some();
        // RFC 6582 §3.2 step 2: not while SND.UNA is still below the last
        // recovery point (these duplicates belong to the old loss).
        if (self.dup_acks >= 3 || sack_says_lost || probe_says_lost) && self.snd_una >= self.recover
        {
            // Recovery's cwnd response covers the probe's episode too.
            self.tlp_end = None;
            let flight = (self.snd_max - self.snd_una) as u32;
            self.cc.on_loss(now, flight, smss);
            let sack = self.sack_ok && !self.scoreboard.is_empty();
            self.recovery = Some(Recovery {
                point: self.snd_max,
                sack,
            });
            self.recover = self.snd_max;
            if !sack {
                // Step 3: cwnd = ssthresh + 3·SMSS.
                let cwnd = self.cc.ssthresh().saturating_add(3 * smss);
                self.cc.set_cwnd(cwnd);
            }
            self.high_rxt = self.snd_una;
            self.rtx_one = true;
            self.counters.fast_retransmits += 1;
        }
    }

    /// SND.UNA moves to `ack`: acked bytes leave the buffer, the RTO
    /// restarts (RFC 6298 §5.2, §5.3). Returns the data bytes acknowledged.
    #[inline]
    fn ack_received(&mut self, now: Instant, ack: SeqNumber) -> usize {
        let mut acked = ack - self.snd_una;
        if self.snd_una == self.iss {
            // Our SYN is acknowledged: it took one sequence number.
            acked -= 1;
        }
        let data = acked.min(self.tx.len());
        self.tx.dequeue_allocated(data);
        self.tx.rewind_if_empty();
        self.counters.bytes_acked += data as u64;
        self.snd_una = ack;
        if self.snd_nxt < self.snd_una {
            self.snd_nxt = self.snd_una;
        }
        if self.high_rxt < self.snd_una {
            self.high_rxt = self.snd_una;
        }
        self.scoreboard.advance(ack);
        if let Some((end, sent)) = self.rtt_timing {
            if ack >= end {
                self.rtt.sample((now - sent).total_micros());
                self.rtt_timing = None;
            }
        }
        self.retries = 0;
        self.timers[Timer::Rto as usize] = if self.snd_una == self.snd_max {
            Instant::FAR_FUTURE
        } else {
            now + self.rtt.rto()
        };
        data
    }

    // ----- timers -----------------------------------------------------------

    #[inline]
    fn on_timers(&mut self, now: Instant) {
        if self.timers[Timer::Close as usize] <= now {
            self.timers[Timer::Close as usize] = Instant::FAR_FUTURE;
            match self.state {
                // 2MSL is over (RFC 9293 §3.10.8).
                State::TimeWait => self.enter_closed(),
                // Orphaned FIN-WAIT-2 gave up on the peer's FIN (Linux
                // tcp_fin_timeout), or the linger limit passed with data or
                // FIN unacknowledged: RST.
                State::Closed => {}
                _ => self.abort(),
            }
        }
        if self.timers[Timer::Rto as usize] <= now {
            self.timers[Timer::Rto as usize] = Instant::FAR_FUTURE;
            self.on_rto(now);
        }
        if self.timers[Timer::DelayedAck as usize] <= now {
            self.timers[Timer::DelayedAck as usize] = Instant::FAR_FUTURE;
            if self.unacked_rx > 0 {
                self.ack_now = true;
            }
        }
        if self.timers[Timer::Keepalive as usize] <= now {
            self.timers[Timer::Keepalive as usize] = Instant::FAR_FUTURE;
            self.on_keepalive(now);
        }
        if self.timers[Timer::Probe as usize] <= now {
            self.timers[Timer::Probe as usize] = Instant::FAR_FUTURE;
            self.tlp_now = self.tlp_eligible();
        }
        if self.timers[Timer::Persist as usize] <= now {
            self.timers[Timer::Persist as usize] = Instant::FAR_FUTURE;
            if self.snd_wnd == 0 && self.snd_una == self.snd_max {
                // Probe with an old sequence number: the receiver must answer
                // with an ACK that carries its window (RFC 9293 §3.8.6.1).
                self.counters.zero_window_probes += 1;
                self.probe_now = true;
                self.persist_backoff = (self.persist_backoff + 1).min(16);
            }
        }
    }

    /// RFC 1122 §4.2.3.6: after `idle` without a segment from the peer,
    /// probe every `interval`; `count` unanswered probes end the connection.
    fn on_keepalive(&mut self, now: Instant) {
        let Some(k) = self.cfg.keepalive else {
            return;
        };
        if !matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
        ) {
            return;
        }
        if self.keepalive_probes >= k.count {
            self.fail(TcpError::TimedOut);
            return;
        }
        // Data in flight has its own timer; probe only an idle connection.
        if self.snd_una == self.snd_max {
            self.keepalive_probes += 1;
            self.counters.keepalive_probes += 1;
            self.probe_now = true;
        }
        self.arm_keepalive(now);
    }

    /// RFC 6298 §5.4-5.7: retransmit from SND.UNA, back off, restart.
    fn on_rto(&mut self, now: Instant) {
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.cfg.syn_retries,
            _ => self.cfg.data_retries,
        };
        if self.snd_una == self.snd_max {
            return;
        }
        if self.retries >= limit {
            if self.state == State::SynReceived && self.passive {
                self.enter_closed();
            } else {
                self.fail(TcpError::TimedOut);
            }
            return;
        }
        self.retries += 1;
        self.counters.rtos += 1;
        self.rtt.backoff();
        // Karn's rule: no sample from a retransmitted segment.
        self.rtt_timing = None;
        if self.state.is_synchronized() {
            // RFC 5681 §3.1 eq. (4) and the loss window; RFC 6582 §3.2:
            // recover = highest sent; RFC 6675 §5.1: recovery ends.
            let flight = (self.snd_max - self.snd_una) as u32;
            self.cc.on_rto(now, flight, self.snd_mss as u32);
            self.recovery = None;
            self.recover = self.snd_max;
            self.dup_acks = 0;
            self.rtx_one = false;
            self.rtx_lost = false;
            self.scoreboard.clear_retransmissions();
            self.high_rxt = self.snd_una;
        }
        self.tlp_now = false;
        self.tlp_end = None;
        self.timers[Timer::Probe as usize] = Instant::FAR_FUTURE;
        // Go back to SND.UNA (SACKed ranges are skipped when resending).
        self.snd_nxt = self.snd_una;
        if self.snd_wnd == 0 && self.state.is_synchronized() {
            // The peer shrank its window to zero under data in flight: the
            // retransmission cannot go, so it becomes a window probe (as
            // Linux's tcp_retransmit_timer does); its ACK reopens the window.
            self.probe_now = true;
            self.counters.zero_window_probes += 1;
        }
        if matches!(self.state, State::SynSent | State::SynReceived) {
            self.resend_syn = true;
        }
        self.timers[Timer::Rto as usize] = now + self.rtt.rto();
    }

    // ----- output -----------------------------------------------------------

    /// Fires due timers and emits everything owed: RST, SYN or SYN-ACK, data
    /// within the peer's window, FIN, a pending ACK. Returns the number of
    /// segments emitted.
    pub fn dispatch(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        self.on_timers(now);
        let mut sent = 0;
        if self.rst_now {
            let seq = self.ack_seq();
            if self.emit(now, sink, TcpFlags::RST | TcpFlags::ACK, seq, 0, 0) {
                self.rst_now = false;
                sent += 1;
            }
            return sent;
        }
        if let Some(ack) = self.pending_rst_reply {
            let seq = ack;
            if self.emit(now, sink, TcpFlags::RST, seq, 0, 0) {
                self.pending_rst_reply = None;
                sent += 1;
            } else {
                return sent;
            }
        }
        match self.state {
            State::Closed | State::Listen => return sent,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss || self.resend_syn {
                    let flags = if self.state == State::SynSent {
                        TcpFlags::SYN
                    } else {
                        TcpFlags::SYN | TcpFlags::ACK
                    };
                    if self.emit(now, sink, flags, self.iss, 0, 0) {
                        sent += 1;
                        if self.snd_max == self.iss {
                            self.snd_max = self.iss + 1;
                        } else {
                            self.counters.retransmits += 1;
                        }
                        self.snd_nxt = self.iss + 1;
                        self.resend_syn = false;
                        self.ack_now = false;
                        if self.timers[Timer::Rto as usize] == Instant::FAR_FUTURE {
                            self.timers[Timer::Rto as usize] = now + self.rtt.rto();
                        }
                        if self.rtt_timing.is_none() && self.retries == 0 {
                            self.rtt_timing = Some((self.iss + 1, now));
                        }
                    }
                }
                // An ACK owed in SYN-RECEIVED, for an unacceptable segment
                // (RFC 9293 §3.10.7.4) or as a challenge (RFC 5961 §3.2),
                // goes as <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> once our
                // SYN-ACK is out (a SYN-ACK sent above already carried it).
                if self.ack_now && self.state == State::SynReceived && self.snd_nxt == self.iss + 1
                {
                    let seq = self.snd_nxt;
                    if self.emit(now, sink, TcpFlags::ACK, seq, 0, 0) {
                        sent += 1;
                    }
                }
                return sent;
            }
            State::TimeWait
            | State::FinWait2
            | State::CloseWait
            | State::Established
            | State::FinWait1
            | State::Closing
            | State::LastAck => {}
        }
        sent += self.send_data(now, sink);
        if self.probe_now {
            let seq = self.snd_una - 1;
            if self.emit(now, sink, TcpFlags::ACK, seq, 0, 0) {
                self.probe_now = false;
                sent += 1;
            }
        }
        if self.ack_now {
            let seq = self.ack_seq();
            if self.emit(now, sink, TcpFlags::ACK, seq, 0, 0) {
                sent += 1;
            }
        }
        self.arm_persist(now);
        self.arm_probe(now);
        sent
    }

    /// Segments data (and the FIN): first a pending single retransmission
    /// (fast retransmit, partial ACK), then RFC 6675 NextSeg while in SACK
    /// recovery, else from SND.NXT within min(cwnd, rwnd) (RFC 5681 §3;
    /// the seed notes' "sender window = min(rwnd, cwnd)").
    fn send_data(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        if !matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        ) {
            return 0;
        }
        let mut sent = 0;
        let smss = self.snd_mss;
        if self.rtx_one {
            let seq = self.snd_una;
            let limit = self
                .scoreboard
                .next_sacked(seq)
                .map_or(smss, |next| (next - seq).min(smss));
            match self.retransmit(now, sink, seq, limit) {
                Some(len) => {
                    sent += 1;
                    self.rtx_one = false;
                    self.high_rxt = self.high_rxt.max(seq + len);
                }
                None => return sent,
            }
        }
        if self.rtx_lost {
            // Retransmissions lost in turn go again at once, whatever the
            // pipe says (the pipe still counts them as in flight), once
            // each: the new copy is watched like the first.
            // Bounded: each watched range at most once per dispatch.
            for _ in 0..crate::tcp::sack::RETRANSMISSION_MARKS {
                let Some((seq, end)) = self.scoreboard.lost_retransmission(self.snd_una, smss)
                else {
                    break;
                };
                match self.retransmit(now, sink, seq, end - seq) {
                    None => return sent,
                    Some(0) => break,
                    Some(_) => sent += 1,
                }
                self.counters.lost_retransmits += 1;
            }
            self.rtx_lost = false;
        }
        if self.tlp_now {
            match self.send_probe(now, sink) {
                Some(n) => sent += n,
                None => return sent,
            }
        }
        if let Some(Recovery { sack: true, .. }) = self.recovery {
            // RFC 6675 §5 (C): while cwnd - pipe >= 1 SMSS, send NextSeg().
            loop {
                let pipe = self
                    .scoreboard
                    .pipe(self.snd_una, self.snd_max, self.high_rxt, smss);
                if (self.cc.cwnd() as usize) < pipe + smss {
                    break;
                }
                let from = self.high_rxt.max(self.snd_una);
                let hole = self.scoreboard.next_hole(from);
                // Rule 1: the first lost hole not yet retransmitted.
                if let Some((h, end)) = hole.filter(|(h, _)| self.scoreboard.is_lost(*h, smss)) {
                    let Some(len) = self.retransmit(now, sink, h, end - h) else {
                        break;
                    };
                    self.high_rxt = h + len.max(1);
                    sent += 1;
                    continue;
                }
                // Rule 2: new data, if the receiver's window allows.
                let new_sent = self.send_new(now, sink, 1, true);
                if new_sent > 0 {
                    sent += new_sent;
                    continue;
                }
                // Rule 3: a hole that is not yet deemed lost.
                if let Some((h, end)) = hole {
                    let Some(len) = self.retransmit(now, sink, h, end - h) else {
                        break;
                    };
                    self.high_rxt = h + len.max(1);
                    sent += 1;
                    continue;
                }
                break;
            }
            return sent;
        }
        sent + self.send_new(now, sink, usize::MAX, false)
    }

    /// Sends from SND.NXT: new data, or everything after an RTO went back to
    /// SND.UNA (skipping SACKed ranges), as [`next_segment`](Self::next_segment)
    /// allows.
    fn send_new(
        &mut self,
        now: Instant,
        sink: &mut impl Sink,
        max_segments: usize,
        rwnd_only: bool,
    ) -> usize {
        let mut sent = 0;
        while sent < max_segments {
            self.snd_nxt = self.effective_nxt();
            let Some((len, fin)) = self.next_segment(self.snd_nxt, rwnd_only) else {
                break;
            };
            let off = self.snd_nxt - self.snd_una;
            let resend = self.snd_nxt < self.snd_max;
            let mut flags = TcpFlags::ACK;
            if fin {
                flags = flags | TcpFlags::FIN;
            }
            if len > 0 && off + len == self.tx.len() {
                flags = flags | TcpFlags::PSH;
            }
            let seq = self.snd_nxt;
            // More than this segment waits (never so for a small message).
            let burst = if resend || fin || rwnd_only || off + len >= self.tx.len() {
                len
            } else {
                self.burst_len(off, len, max_segments - sent)
            };
            if burst > len {
                // Full segments, many: built once and cut by the sink.
                let mut flags = TcpFlags::ACK;
                if off + burst == self.tx.len() {
                    flags = flags | TcpFlags::PSH;
                }
                let segments = self.emit_segments::<true>(now, sink, flags, seq, off, burst, len);
                if segments == 0 {
                    break;
                }
                sent += segments;
                self.split_tail = false;
                self.snd_nxt = seq + (segments * len).min(burst);
                // Timed as the per-segment path times it: the first segment.
                if self.rtt_timing.is_none() {
                    self.rtt_timing = Some((seq + len, now));
                }
                self.snd_max = self.snd_nxt;
                if self.timers[Timer::Rto as usize] == Instant::FAR_FUTURE {
                    self.timers[Timer::Rto as usize] = now + self.rtt.rto();
                }
                if segments * len < burst || self.snd_nxt - self.snd_una >= self.tx.len() {
                    break;
                }
                continue;
            }
            let Some((len, fin)) = self.emit_data(now, sink, flags, seq, off, len) else {
                break;
            };
            sent += 1;
            if resend {
                self.counters.retransmits += 1;
                self.watch_retransmission(seq, len);
            }
            self.snd_nxt = seq + len + fin as usize;
            if fin {
                self.fin_seq = Some(seq + len);
            }
            if self.snd_nxt > self.snd_max {
                if self.rtt_timing.is_none() && !resend {
                    self.rtt_timing = Some((self.snd_nxt, now));
                }
                self.snd_max = self.snd_nxt;
            }
            // RFC 6298 §5.1: start the timer if it is not running.
            if self.timers[Timer::Rto as usize] == Instant::FAR_FUTURE {
                self.timers[Timer::Rto as usize] = now + self.rtt.rto();
            }
            // All queued data is out and no FIN waits: the next round
            // would find nothing (the common end of a burst, and every
            // small message's), so skip asking.
            if fin || (!self.fin_queued && self.snd_nxt - self.snd_una >= self.tx.len()) {
                break;
            }
        }
        sent
    }

    /// Payload bytes of new data to send at `off` (SND.NXT, past SND.MAX) in
    /// one burst of full segments, up to `room` of them, when next_segment
    /// found a full first segment of `len` bytes: as many as window, cwnd
    /// and the send buffer's contiguous bytes allow. `len` when a burst
    /// would be one segment or the connection is recovering from loss
    /// (limited transmit and recovery count segment by segment). A queued
    /// FIN is left to the per-segment path with the last data.
    fn burst_len(&self, off: usize, len: usize, room: usize) -> usize {
        let mss = self.payload_limit();
        if len != mss || room < 2 || self.dup_acks > 0 || self.recovery.is_some() {
            return len;
        }
        let unsent = self.tx.len().saturating_sub(off);
        let window = (self.snd_wnd as usize)
            .min(self.cc.cwnd() as usize)
            .saturating_sub(off);
        let mut ready = unsent.min(window);
        if self.fin_queued && ready == unsent {
            ready -= 1;
        }
        let contiguous = self.tx.get_allocated(off, ready).len();
        let segments = (contiguous / mss).min(room);
        if segments >= 2 {
            segments * mss
        } else {
            len
        }
    }

    /// Retransmits up to `limit` bytes at `seq` (below SND.MAX), with the FIN
    /// if the segment reaches it. Returns the payload bytes, or None if the
    /// sink refused.
    fn retransmit(
        &mut self,
        now: Instant,
        sink: &mut impl Sink,
        seq: SeqNumber,
        limit: usize,
    ) -> Option<usize> {
        let off = seq - self.snd_una;
        let len = self
            .tx
            .len()
            .saturating_sub(off)
            .min(limit)
            .min(self.payload_limit());
        let fin = self.fin_seq == Some(seq + len);
        if len == 0 && !fin {
            return Some(0);
        }
        let mut flags = TcpFlags::ACK;
        if fin {
            flags = flags | TcpFlags::FIN;
        }
        let (len, _) = self.emit_data(now, sink, flags, seq, off, len)?;
        self.counters.retransmits += 1;
        self.watch_retransmission(seq, len);
        // Karn: the timed segment was retransmitted, its sample is void.
        if matches!(self.rtt_timing, Some((end, _)) if seq < end) {
            self.rtt_timing = None;
        }
        if self.timers[Timer::Rto as usize] == Instant::FAR_FUTURE {
            self.timers[Timer::Rto as usize] = now + self.rtt.rto();
        }
        Some(len)
    }

    /// With SACK, a retransmission of [seq, seq+len) is watched for loss:
    /// whatever is sent after it lies at or above SND.NXT (new data in
    /// recovery, the rest of the go-back-N after an RTO).
    fn watch_retransmission(&mut self, seq: SeqNumber, len: usize) {
        if self.sack_ok && len > 0 {
            let end = seq + len;
            self.scoreboard
                .note_retransmission(seq, end, self.snd_nxt.max(end));
        }
    }

    /// RFC 8985 §7.2: may a tail loss probe be scheduled or sent? Data in
    /// flight with SACK, not in loss recovery or RTO backoff, no probe out,
    /// and no FIN sent (its loss is left to the RTO).
    #[inline]
    fn tlp_eligible(&self) -> bool {
        self.snd_una < self.snd_max
            && self.sack_ok
            && self.cfg.tail_loss_probe
            && matches!(self.state, State::Established | State::CloseWait)
            && self.recovery.is_none()
            && self.retries == 0
            && !self.rtx_one
            && self.tlp_end.is_none()
            && self.fin_seq.is_none()
    }

    /// RFC 8985 §7.2: PTO = 2·SRTT (1 s before any sample), plus the
    /// worst-case delayed ACK (200 ms) when one segment is in flight, at
    /// least 2 ms (Linux's floor, two ticks), and never after the RTO.
    #[inline]
    fn arm_probe(&mut self, now: Instant) {
        if !self.cfg.tail_loss_probe
            || self.timers[Timer::Probe as usize] != Instant::FAR_FUTURE
            || !self.tlp_eligible()
        {
            return;
        }
        self.arm_probe_slow(now);
    }

    fn arm_probe_slow(&mut self, now: Instant) {
        let mut pto = if self.rtt.has_sample {
            2 * self.rtt.srtt
        } else {
            1_000_000
        };
        if self.snd_max - self.snd_una <= self.snd_mss {
            pto += 200_000;
        }
        let at =
            (now + Duration::from_micros(pto.max(2_000))).min(self.timers[Timer::Rto as usize]);
        self.timers[Timer::Probe as usize] = at;
    }

    /// RFC 8985 §7.3: one segment of new data if the receive window allows
    /// (cwnd aside), else the last segment sent again. Then the RTO
    /// restarts. None if the sink refused (the probe stays due).
    fn send_probe(&mut self, now: Instant, sink: &mut impl Sink) -> Option<usize> {
        self.tlp_now = false;
        if !self.tlp_eligible() {
            return Some(0);
        }
        let mut retransmitted = false;
        let mut sent = if self.snd_nxt == self.snd_max {
            self.send_new(now, sink, 1, true)
        } else {
            0
        };
        if sent == 0 {
            let len = (self.snd_max - self.snd_una).min(self.snd_mss);
            let seq = self.snd_max - len;
            match self.retransmit(now, sink, seq, len) {
                Some(_) => {
                    sent = 1;
                    retransmitted = true;
                }
                None => {
                    self.tlp_now = true;
                    return None;
                }
            }
        }
        self.tlp_end = Some((self.snd_max, retransmitted));
        self.counters.tail_loss_probes += 1;
        self.timers[Timer::Rto as usize] = now + self.rtt.rto();
        Some(sent)
    }

    /// Zero window and data waiting with nothing in flight: arm the persist
    /// timer so the connection cannot deadlock on a lost window update.
    fn arm_persist(&mut self, now: Instant) {
        if self.persist_unarmed() {
            let backoff = 1u32 << self.persist_backoff.min(16);
            let t = self.rtt.rto().saturating_mul(backoff).min(self.cfg.max_rto);
            self.timers[Timer::Persist as usize] = now + t;
        }
    }

    /// The persist timer should run but does not yet.
    fn persist_unarmed(&self) -> bool {
        let waiting = self.tx.len() > self.snd_nxt - self.snd_una;
        self.snd_wnd == 0
            && waiting
            && self.snd_una == self.snd_max
            && self.state.is_synchronized()
            && self.timers[Timer::Persist as usize] == Instant::FAR_FUTURE
    }

    /// Emits a segment carrying `len` bytes of the send buffer from `off`;
    /// returns the bytes actually carried (the ring may wrap, and then the
    /// FIN waits for the next segment) and whether the FIN went, or None if
    /// the sink refused.
    fn emit_data(
        &mut self,
        now: Instant,
        sink: &mut impl Sink,
        flags: TcpFlags,
        seq: SeqNumber,
        off: usize,
        len: usize,
    ) -> Option<(usize, bool)> {
        let carried = self.tx.get_allocated(off, len).len();
        self.split_tail = carried < len;
        let flags = if carried < len {
            TcpFlags(flags.0 & !TcpFlags::FIN.0)
        } else {
            flags
        };
        self.emit(now, sink, flags, seq, off, carried)
            .then_some((carried, flags.fin()))
    }

    /// Builds one segment and hands it to the sink. `off`/`len` select
    /// payload from the send buffer.
    fn emit(
        &mut self,
        now: Instant,
        sink: &mut impl Sink,
        flags: TcpFlags,
        seq: SeqNumber,
        off: usize,
        len: usize,
    ) -> bool {
        self.emit_segments::<false>(now, sink, flags, seq, off, len, 0) > 0
    }

    /// Builds one segment and hands it to the sink; with `SPLIT`, for the
    /// sink to cut into segments of `mss` payload bytes
    /// ([`Sink::emit_split`]). `off`/`len` select payload from the send
    /// buffer. Returns how many segments went out. (`SPLIT` is a constant
    /// so that [`emit`](Self::emit), every ACK's path, compiles without
    /// the split.)
    #[allow(clippy::too_many_arguments)]
    fn emit_segments<const SPLIT: bool>(
        &mut self,
        now: Instant,
        sink: &mut impl Sink,
        flags: TcpFlags,
        seq: SeqNumber,
        off: usize,
        len: usize,
        mss: usize,
    ) -> usize {
        let syn = flags.syn();
        let mut options = TcpOptions::default();
        let window = self.rcv_window();
        let window_len = if syn {
            // RFC 7323 §2.2: the window in a SYN is not scaled.
            window.min(0xffff) as u16
        } else {
            (window >> self.rcv_wscale).min(0xffff) as u16
        };
        // Our SYN offers what the configuration allows; a SYN-ACK only
        // what the peer's SYN offered (RFC 7323 §2.2, §3.2; RFC 2018 §2).
        let active_syn = syn && self.state == State::SynSent;
        if syn {
            options.mss = Some(self.cfg.mss);
            let ws = if active_syn {
                self.cfg.window_scale
            } else {
                self.ws_ok
            };
            if ws {
                options.window_scale = Some(self.rcv_wscale);
            }
            options.sack_permitted = if active_syn {
                self.cfg.sack
            } else {
                self.sack_ok
            };
        }
        let ts_on = if active_syn {
            self.cfg.timestamps
        } else {
            self.ts_enabled
        };
        if ts_on && !flags.rst() {
            self.last_tsval = self.our_tsval(now);
            options.timestamp = Some(TcpTimestamp {
                tsval: self.last_tsval,
                tsecr: if flags.ack() { self.ts_recent } else { 0 },
            });
        }
        if self.sack_ok && !syn && flags.ack() && !self.assembler.is_empty() {
            self.fill_sack_blocks(&mut options);
        }
        let ack_number = if flags.ack() {
            self.rcv_nxt
        } else {
            SeqNumber(0)
        };
        let payload = if len > 0 {
            self.tx.get_allocated(off, len)
        } else {
            &[][..]
        };
        let repr = TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: seq,
            ack_number,
            flags,
            window_len: if flags.rst() { 0 } else { window_len },
            urgent_pointer: 0,
            options,
            payload,
        };
        let (src, dst) = (*self.local.ip(), *self.remote.ip());
        let sent = if SPLIT {
            sink.emit_split(src, dst, &repr, mss)
        } else {
            usize::from(sink.emit(src, dst, &repr))
        };
        if sent == 0 {
            return 0;
        }
        self.counters.segs_out += sent as u64;
        if flags.ack() {
            self.ack_now = false;
            self.unacked_rx = 0;
            self.timers[Timer::DelayedAck as usize] = Instant::FAR_FUTURE;
            self.last_ack_sent = self.rcv_nxt;
            let adv = if syn {
                window_len as usize
            } else {
                (window_len as usize) << self.rcv_wscale
            };
            let edge = self.rcv_nxt + adv;
            if edge > self.rcv_adv {
                self.rcv_adv = edge;
            }
        }
        sent
    }
}

/// Gives `ring` storage from `pool` if it has none yet.
fn supply(ring: &mut RingBuffer, pool: &mut BufferPool) {
    if ring.lacks_storage() {
        if let Some(buf) = pool.take(ring.capacity()) {
            if let Some(buf) = ring.supply_storage(buf) {
                pool.give(buf);
            }
        }
    }
}
