//! One-connection tests of RFC 9293's state machine, with exact segments.
//!
//! Each test drives a sans-IO `Connection` directly: the test plays the
//! remote TCP (`send!`), dispatches on virtual time and asserts every
//! segment that comes out (`recv!`), field by field: sequence and
//! acknowledgment numbers, flags, window and options. Fixtures such as
//! `established()` or `time_wait()` reach each state through the real
//! transitions, with our ISS `LOCAL_SEQ` and the peer's ISN `REMOTE_SEQ`
//! (chosen so the peer's data wraps past 2^32).
//!
//! The spec: RFC 9293 §3.10 (event processing), RFC 5961 (blind attacks),
//! RFC 7323 (window scale, timestamps, PAWS), RFC 1337 (TIME-WAIT).

#[macro_use]
mod common;

use common::*;

use flowlane::tcp::{
    rst_for_unexpected, Config, Connection, Endpoint, EndpointConfig, RecvError, SendError,
    Shutdown, State, TcpError,
};
use flowlane::time::{Duration, Instant};
use flowlane::wire::{SeqNumber, TcpFlags, TcpOptions, TcpTimestamp};

// ----- constants and templates ----------------------------------------------

/// Our ISS.
const LOCAL_SEQ: SeqNumber = SeqNumber(10_000);
/// The peer's ISN: its data crosses 2^32 after 10 bytes.
const REMOTE_SEQ: SeqNumber = SeqNumber(u32::MAX - 10);
/// Our receive buffer, hence the window we advertise (no scaling).
const LOCAL_WIN: u16 = 4096;
const REMOTE_WIN: u16 = 8192;
const LOCAL_MSS: u16 = 1460;
const TS_OFFSET: u32 = 7_000_000;
/// The peer's TSval in its SYN or SYN-ACK.
const REMOTE_TS: u32 = 500;
const T0: Instant = Instant::from_secs(1);
/// 2·MSL with the default MSL of 30 s.
const TWO_MSL: Duration = Duration::from_secs(60);

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const RST: TcpFlags = TcpFlags::RST;
const PSH: TcpFlags = TcpFlags::PSH;

/// A segment from the peer to us.
const SEND_TEMPL: Segment = Segment {
    src_port: REMOTE.port(),
    dst_port: LOCAL.port(),
    seq_number: SeqNumber(0),
    ack_number: SeqNumber(0),
    flags: TcpFlags::NONE,
    window_len: REMOTE_WIN,
    options: NO_OPTIONS,
    payload: Vec::new(),
};

/// A segment from us to the peer.
const RECV_TEMPL: Segment = Segment {
    src_port: LOCAL.port(),
    dst_port: REMOTE.port(),
    seq_number: SeqNumber(0),
    ack_number: SeqNumber(0),
    flags: TcpFlags::NONE,
    window_len: LOCAL_WIN,
    options: NO_OPTIONS,
    payload: Vec::new(),
};

/// Timestamps off, no window scaling, no SACK, every segment acknowledged
/// at once and no Nagle: segments carry only what the test states. Options,
/// delayed ACK and Nagle get their own tests.
fn config() -> Config {
    Config {
        mss: LOCAL_MSS,
        rx_buffer: LOCAL_WIN as usize,
        tx_buffer: 4096,
        window_scale: false,
        timestamps: false,
        sack: false,
        delayed_ack: Duration::ZERO,
        nodelay: true,
        ..Config::default()
    }
}

fn config_ts() -> Config {
    Config {
        timestamps: true,
        ..config()
    }
}

/// Our TSval at `now` (1 ms clock plus the connection's offset).
fn tsval(now: Instant) -> u32 {
    (now.total_millis() as u32).wrapping_add(TS_OFFSET)
}

fn mss_ts(mss: u16, tsval: u32, tsecr: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(mss),
        timestamp: Some(TcpTimestamp { tsval, tsecr }),
        ..NO_OPTIONS
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

// ----- fixtures: one per state, through the real transitions ----------------

/// `connect` and dispatch: the SYN is out, whatever options `cfg` makes.
fn syn_sent_with(cfg: &Config) -> TestConn {
    let conn = Connection::connect(cfg, LOCAL, REMOTE, LOCAL_SEQ, TS_OFFSET);
    let mut t = TestConn::new(conn, T0);
    assert_eq!(t.conn.state(), State::SynSent);
    let out = t.dispatch();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].flags, out[0].seq_number), (SYN, LOCAL_SEQ));
    t
}

fn syn_sent() -> TestConn {
    let conn = Connection::connect(&config(), LOCAL, REMOTE, LOCAL_SEQ, TS_OFFSET);
    let mut t = TestConn::new(conn, T0);
    recv!(
        t,
        [Segment {
            flags: SYN,
            seq_number: LOCAL_SEQ,
            options: mss(LOCAL_MSS),
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::SynSent);
    t
}

/// The peer's SYN as a minimal stack sends it.
fn peer_syn(options: TcpOptions) -> Segment {
    Segment {
        flags: SYN,
        seq_number: REMOTE_SEQ,
        options,
        ..SEND_TEMPL
    }
}

/// Passive open from `syn`, SYN-ACK dispatched (and returned).
fn accept_with(cfg: &Config, syn: &Segment) -> (TestConn, Segment) {
    let conn = Connection::accept_syn(cfg, LOCAL, REMOTE, &syn.as_repr(), LOCAL_SEQ, TS_OFFSET);
    let mut t = TestConn::new(conn, T0);
    assert_eq!(t.conn.state(), State::SynReceived);
    let mut out = t.dispatch();
    assert_eq!(out.len(), 1, "{out:?}");
    (t, out.remove(0))
}

fn syn_received() -> TestConn {
    let (t, syn_ack) = accept_with(&config(), &peer_syn(mss(1460)));
    assert_eq!(
        syn_ack,
        Segment {
            flags: SYN | ACK,
            seq_number: LOCAL_SEQ,
            ack_number: REMOTE_SEQ + 1,
            options: mss(LOCAL_MSS),
            ..RECV_TEMPL
        }
    );
    t
}

/// Active open against a SYN-ACK carrying `options`; our ACK is drained.
fn established_with(cfg: &Config, options: TcpOptions) -> TestConn {
    let mut t = syn_sent_with(cfg);
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    let out = t.dispatch();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        (out[0].flags, out[0].seq_number, out[0].ack_number),
        (ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1)
    );
    t
}

fn established() -> TestConn {
    let mut t = syn_sent();
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    t
}

/// Active open with timestamps on both sides.
fn established_ts() -> TestConn {
    let conn = Connection::connect(&config_ts(), LOCAL, REMOTE, LOCAL_SEQ, TS_OFFSET);
    let mut t = TestConn::new(conn, T0);
    recv!(
        t,
        [Segment {
            flags: SYN,
            seq_number: LOCAL_SEQ,
            options: mss_ts(LOCAL_MSS, tsval(T0), 0),
            ..RECV_TEMPL
        }]
    );
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options: mss_ts(1460, REMOTE_TS, tsval(T0)),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            options: ts(tsval(T0), REMOTE_TS),
            ..RECV_TEMPL
        }]
    );
    t
}

/// The application closed: our FIN is out, unacknowledged.
fn fin_wait_1() -> TestConn {
    let mut t = established();
    t.conn.close(t.now);
    assert_eq!(t.conn.state(), State::FinWait1);
    recv!(
        t,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    t
}

fn fin_wait_2() -> TestConn {
    let mut t = fin_wait_1();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::FinWait2);
    recv_nothing!(t);
    t
}

/// The peer closed first; we acknowledged its FIN.
fn close_wait() -> TestConn {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::CloseWait);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    t
}

/// Both FINs crossed; ours is not acknowledged yet.
fn closing() -> TestConn {
    let mut t = fin_wait_1();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closing);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    t
}

fn last_ack() -> TestConn {
    let mut t = close_wait();
    t.conn.close(t.now);
    assert_eq!(t.conn.state(), State::LastAck);
    recv!(
        t,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    t
}

fn time_wait() -> TestConn {
    let mut t = fin_wait_2();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::TimeWait);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    t
}

/// The ACK we send in ESTABLISHED before any data moved.
fn ack_established() -> Segment {
    Segment {
        flags: ACK,
        seq_number: LOCAL_SEQ + 1,
        ack_number: REMOTE_SEQ + 1,
        ..RECV_TEMPL
    }
}

// ----- opening: SYN-SENT ----------------------------------------------------

#[test]
fn active_open_sends_syn_with_configured_options() {
    let cfg = Config {
        window_scale: true,
        sack: true,
        timestamps: true,
        rx_buffer: 1 << 18,
        ..config()
    };
    let conn = Connection::connect(&cfg, LOCAL, REMOTE, LOCAL_SEQ, TS_OFFSET);
    let mut t = TestConn::new(conn, T0);
    assert_eq!(t.conn.state(), State::SynSent);
    assert_eq!(t.conn.poll_at(), Instant::ZERO, "the SYN is owed now");
    recv!(
        t,
        [Segment {
            flags: SYN,
            seq_number: LOCAL_SEQ,
            // RFC 7323 §2.2: the window of a SYN is never scaled.
            window_len: 0xffff,
            options: TcpOptions {
                mss: Some(LOCAL_MSS),
                // 2^18 bytes need a shift of 3 to fit 16 bits.
                window_scale: Some(3),
                sack_permitted: true,
                timestamp: Some(TcpTimestamp {
                    tsval: tsval(T0),
                    tsecr: 0,
                }),
                ..NO_OPTIONS
            },
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::SynSent);
    // RFC 6298 §2.1: the initial RTO is 1 s.
    assert_eq!(t.conn.poll_at(), T0 + Duration::from_secs(1));
}

#[test]
fn syn_sent_syn_ack_establishes_and_acks() {
    let mut t = syn_sent();
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.irs(), REMOTE_SEQ);
    assert_eq!(t.conn.rcv_nxt(), REMOTE_SEQ + 1);
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 1);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.info().snd_wnd, REMOTE_WIN as u32);
    assert_eq!(t.conn.poll_at(), Instant::FAR_FUTURE, "nothing in flight");
}

#[test]
fn syn_ack_carrying_data_delivers_it() {
    let mut t = syn_sent();
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options: mss(1460),
            payload: b"hi".to_vec(),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 3,
            window_len: LOCAL_WIN - 2,
            ..RECV_TEMPL
        }]
    );
    let mut buf = [0u8; 4];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(2));
    assert_eq!(&buf[..2], b"hi");
}

#[test]
fn syn_sent_ack_of_unsent_gets_rst_with_seq_seg_ack() {
    let mut t = syn_sent();
    // RFC 9293 §3.10.7.3: SEG.ACK > SND.NXT, <SEQ=SEG.ACK><CTL=RST>.
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::SynSent);
    recv!(
        t,
        [Segment {
            flags: RST,
            seq_number: LOCAL_SEQ + 2,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    // SEG.ACK =< ISS too.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: RST,
            seq_number: LOCAL_SEQ,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::SynSent);
    assert_eq!(t.conn.error(), None);
}

#[test]
fn syn_sent_rst_with_acceptable_ack_is_refused() {
    let mut t = syn_sent();
    send!(
        t,
        Segment {
            flags: RST | ACK,
            seq_number: SeqNumber(0),
            ack_number: LOCAL_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), Some(TcpError::Refused));
    recv_nothing!(t);
    assert_eq!(
        t.conn.send_slice(b"x"),
        Err(SendError::Failed(TcpError::Refused))
    );
    assert_eq!(
        t.conn.poll_at(),
        Instant::FAR_FUTURE,
        "no SYN retransmission"
    );
}

#[test]
fn syn_sent_rst_with_unacceptable_ack_is_ignored() {
    let mut t = syn_sent();
    // An RST whose ACK does not acknowledge our SYN: dropped, and never
    // answered with an RST.
    send!(
        t,
        Segment {
            flags: RST | ACK,
            seq_number: SeqNumber(0),
            ack_number: LOCAL_SEQ + 5,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    recv_nothing!(t);
    // Without ACK, an RST in SYN-SENT is dropped too.
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    recv_nothing!(t);
    assert_eq!(t.conn.state(), State::SynSent);
    assert_eq!(t.conn.error(), None);
}

#[test]
fn syn_sent_segment_without_syn_or_rst_is_dropped() {
    let mut t = syn_sent();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: b"early".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv_nothing!(t);
    assert_eq!(t.conn.state(), State::SynSent);
}

#[test]
fn syn_sent_close_deletes_tcb_without_segment() {
    let mut t = syn_sent();
    t.conn.close(t.now);
    assert_eq!(t.conn.state(), State::Closed);
    recv_nothing!(t);
    assert_eq!(t.conn.poll_at(), Instant::FAR_FUTURE);
}

#[test]
fn syn_is_retransmitted_with_backoff_then_times_out() {
    let cfg = Config {
        syn_retries: 2,
        ..config()
    };
    let mut t = syn_sent_with(&cfg);
    let syn = Segment {
        flags: SYN,
        seq_number: LOCAL_SEQ,
        options: mss(LOCAL_MSS),
        ..RECV_TEMPL
    };
    // Initial RTO 1 s (RFC 6298 §2.1), doubled on each timeout (§5.5).
    let first = T0 + Duration::from_secs(1);
    assert_eq!(t.conn.poll_at(), first);
    recv_nothing!(t, time first - Duration::from_micros(1));
    recv!(t, time first, [syn.clone()]);
    let second = first + Duration::from_secs(2);
    assert_eq!(t.conn.poll_at(), second);
    recv!(t, time second, [syn]);
    assert_eq!(t.conn.counters().retransmits, 2);
    let give_up = second + Duration::from_secs(4);
    assert_eq!(t.conn.poll_at(), give_up);
    recv_nothing!(t, time give_up);
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), Some(TcpError::TimedOut));
}

// ----- opening: passive and simultaneous ------------------------------------

#[test]
fn passive_open_syn_ack_offers_only_what_syn_offered() {
    // Everything enabled locally, but the SYN carries only an MSS.
    let cfg = Config {
        window_scale: true,
        sack: true,
        timestamps: true,
        rx_buffer: 1 << 18,
        ..config()
    };
    let (t, syn_ack) = accept_with(&cfg, &peer_syn(mss(1200)));
    assert_eq!(
        syn_ack,
        Segment {
            flags: SYN | ACK,
            seq_number: LOCAL_SEQ,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0xffff,
            options: mss(LOCAL_MSS),
            ..RECV_TEMPL
        }
    );
    let info = t.conn.info();
    assert_eq!((info.snd_wscale, info.rcv_wscale), (0, 0));
    assert!(!info.timestamps && !info.sack);
    assert_eq!(info.snd_mss, 1200);
}

#[test]
fn passive_open_syn_ack_mirrors_window_scale_sack_and_timestamps() {
    let cfg = Config {
        window_scale: true,
        sack: true,
        timestamps: true,
        rx_buffer: 1 << 18,
        ..config()
    };
    let syn = peer_syn(TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp {
            tsval: REMOTE_TS,
            tsecr: 0,
        }),
        ..NO_OPTIONS
    });
    let (t, syn_ack) = accept_with(&cfg, &syn);
    assert_eq!(
        syn_ack,
        Segment {
            flags: SYN | ACK,
            seq_number: LOCAL_SEQ,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0xffff,
            options: TcpOptions {
                mss: Some(LOCAL_MSS),
                window_scale: Some(3),
                sack_permitted: true,
                timestamp: Some(TcpTimestamp {
                    tsval: tsval(T0),
                    tsecr: REMOTE_TS,
                }),
                ..NO_OPTIONS
            },
            ..RECV_TEMPL
        }
    );
    let info = t.conn.info();
    assert_eq!((info.snd_wscale, info.rcv_wscale), (7, 3));
    assert!(info.timestamps && info.sack);
}

#[test]
fn passive_open_syn_ack_omits_what_we_disabled() {
    // The SYN offers everything; our configuration allows none of it.
    let syn = peer_syn(TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp {
            tsval: REMOTE_TS,
            tsecr: 0,
        }),
        ..NO_OPTIONS
    });
    let (_, syn_ack) = accept_with(&config(), &syn);
    assert_eq!(
        syn_ack,
        Segment {
            flags: SYN | ACK,
            seq_number: LOCAL_SEQ,
            ack_number: REMOTE_SEQ + 1,
            options: mss(LOCAL_MSS),
            ..RECV_TEMPL
        }
    );
}

#[test]
fn syn_received_ack_of_syn_establishes() {
    let mut t = syn_received();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 1);
    recv_nothing!(t);
    assert_eq!(t.conn.info().snd_wnd, REMOTE_WIN as u32);
}

#[test]
fn syn_received_ack_carrying_data_establishes_and_acks_data() {
    let mut t = syn_received();
    send!(
        t,
        Segment {
            flags: PSH | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: b"GET /".to_vec(),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 6,
            window_len: LOCAL_WIN - 5,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.recv_queue(), 5);
}

#[test]
fn syn_received_retransmitted_syn_gets_syn_ack_again() {
    let mut t = syn_received();
    send!(t, peer_syn(mss(1460)));
    assert_eq!(t.conn.state(), State::SynReceived);
    recv!(
        t,
        [Segment {
            flags: SYN | ACK,
            seq_number: LOCAL_SEQ,
            ack_number: REMOTE_SEQ + 1,
            options: mss(LOCAL_MSS),
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn syn_received_unacceptable_ack_gets_rst() {
    let mut t = syn_received();
    // RFC 9293 §3.10.7.4 fifth step, SYN-RECEIVED: <SEQ=SEG.ACK><CTL=RST>.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 100,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: RST,
            seq_number: LOCAL_SEQ + 100,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::SynReceived);
}

#[test]
fn syn_received_rst_from_passive_open_closes_quietly() {
    let mut t = syn_received();
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    // RFC 9293: back to LISTEN; this TCB just goes, and nobody is told.
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), None);
    recv_nothing!(t);
}

#[test]
fn syn_received_rst_in_window_not_exact_gets_challenge_ack() {
    let mut t = syn_received();
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 10,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    // RFC 5961 §3.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.state(), State::SynReceived);
    assert_eq!(t.conn.counters().challenge_acks, 1);
}

#[test]
fn syn_received_retransmits_syn_ack_after_rto() {
    let mut t = syn_received();
    let at = T0 + Duration::from_secs(1);
    assert_eq!(t.conn.poll_at(), at);
    recv!(
        t,
        time at,
        [Segment {
            flags: SYN | ACK,
            seq_number: LOCAL_SEQ,
            ack_number: REMOTE_SEQ + 1,
            options: mss(LOCAL_MSS),
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn simultaneous_open_syn_in_syn_sent_sends_syn_ack_with_iss() {
    let mut t = syn_sent();
    // RFC 9293 §3.5 figure 7: our SYN and theirs cross.
    send!(t, peer_syn(mss(1460)));
    assert_eq!(t.conn.state(), State::SynReceived);
    recv!(
        t,
        [Segment {
            flags: SYN | ACK,
            seq_number: LOCAL_SEQ,
            ack_number: REMOTE_SEQ + 1,
            options: mss(LOCAL_MSS),
            ..RECV_TEMPL
        }]
    );
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    recv_nothing!(t);
    assert!(!t.conn.is_passive());
}

#[test]
fn simultaneous_open_rst_in_syn_received_is_refused() {
    let mut t = syn_sent();
    send!(t, peer_syn(mss(1460)));
    t.dispatch();
    assert_eq!(t.conn.state(), State::SynReceived);
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    // RFC 9293: came from SYN-SENT, so the connection was refused.
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), Some(TcpError::Refused));
    recv_nothing!(t);
}

#[test]
fn simultaneous_open_crossed_syn_ack_is_acked_then_ack_establishes() {
    let mut t = syn_sent();
    send!(t, peer_syn(mss(1460)));
    t.dispatch();
    // RFC 9293 §3.5 figure 7, line 6: the peer's SYN-ACK. By the event
    // rules of §3.10.7.4 its SYN lies below RCV.NXT, so it is not
    // acceptable: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and drop.
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.state(), State::SynReceived);
    // The peer's own ACK (of our SYN-ACK or of that ACK) completes it.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Established);
    recv_nothing!(t);
}

#[test]
fn close_in_syn_received_sends_fin_once_syn_is_acked() {
    let mut t = syn_sent();
    send!(t, peer_syn(mss(1460)));
    t.dispatch();
    t.conn.close(t.now);
    // The FIN is queued behind the handshake (RFC 9293 §3.10.4, "queue for
    // processing after entering ESTABLISHED").
    assert_eq!(t.conn.state(), State::SynReceived);
    recv_nothing!(t);
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::FinWait1);
    recv!(
        t,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
}

// ----- ESTABLISHED: data ----------------------------------------------------

#[test]
fn established_data_both_ways_with_exact_acks() {
    let mut t = established();
    assert_eq!(t.conn.send_slice(b"abcdef"), Ok(6));
    recv!(
        t,
        [Segment {
            flags: PSH | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            payload: b"abcdef".to_vec(),
            ..RECV_TEMPL
        }]
    );
    // The peer acknowledges all six bytes and sends sixteen of its own,
    // which cross 2^32 in sequence space.
    send!(
        t,
        Segment {
            flags: PSH | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 7,
            payload: b"0123456789ABCDEF".to_vec(),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 7);
    assert_eq!(t.conn.send_queue(), 0);
    assert_eq!(t.conn.rcv_nxt(), SeqNumber(6));
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 7,
            ack_number: REMOTE_SEQ + 17,
            window_len: LOCAL_WIN - 16,
            ..RECV_TEMPL
        }]
    );
    let mut buf = [0u8; 32];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(16));
    assert_eq!(&buf[..16], b"0123456789ABCDEF");
    assert_eq!(t.conn.recv_slice(&mut buf), Err(RecvError::WouldBlock));
    assert_eq!(t.conn.state(), State::Established);
}

#[test]
fn retransmitted_syn_ack_in_established_is_reacked() {
    let mut t = established();
    // Our ACK of the SYN-ACK was lost; the peer sends it again.
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.state(), State::Established);
}

// ----- ESTABLISHED: the four acceptability cases (RFC 9293 §3.10.7.4) -------

#[test]
fn old_duplicate_segment_gets_ack_and_is_dropped() {
    let mut t = established();
    let abc = Segment {
        flags: ACK,
        seq_number: REMOTE_SEQ + 1,
        ack_number: LOCAL_SEQ + 1,
        payload: b"abc".to_vec(),
        ..SEND_TEMPL
    };
    let ack = Segment {
        flags: ACK,
        seq_number: LOCAL_SEQ + 1,
        ack_number: REMOTE_SEQ + 4,
        window_len: LOCAL_WIN - 3,
        ..RECV_TEMPL
    };
    send!(t, abc.clone());
    recv!(t, [ack.clone()]);
    // Entirely below RCV.NXT: not acceptable, <SEQ=SND.NXT><ACK=RCV.NXT>.
    send!(t, abc);
    recv!(t, [ack]);
    assert_eq!(t.conn.recv_queue(), 3);
    assert_eq!(t.conn.counters().out_of_window, 1);
}

#[test]
fn segment_beyond_window_gets_ack_and_is_dropped() {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1 + LOCAL_WIN as usize,
            ack_number: LOCAL_SEQ + 1,
            payload: b"x".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.recv_queue(), 0);
    assert_eq!(t.conn.rcv_nxt(), REMOTE_SEQ + 1);
    assert_eq!(t.conn.counters().out_of_window, 1);
}

#[test]
fn segment_overlapping_rcv_nxt_is_trimmed_and_accepted() {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: b"abc".to_vec(),
            ..SEND_TEMPL
        }
    );
    t.dispatch();
    // Starts before RCV.NXT but ends inside the window: acceptable.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: b"abcdef".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 7,
            window_len: LOCAL_WIN - 6,
            ..RECV_TEMPL
        }]
    );
    let mut buf = [0u8; 16];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(6));
    assert_eq!(&buf[..6], b"abcdef");
}

#[test]
fn empty_segment_in_open_window_is_acceptable_anywhere_in_it() {
    let mut t = established();
    t.conn.send_slice(b"abc").unwrap();
    t.dispatch();
    // Zero length, window open: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND.
    // At the right edge it is not acceptable: ACK, and its ACK is ignored.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1 + LOCAL_WIN as usize,
            ack_number: LOCAL_SEQ + 4,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 1);
    // Just inside the right edge it is acceptable and its ACK is processed.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + LOCAL_WIN as usize,
            ack_number: LOCAL_SEQ + 4,
            ..SEND_TEMPL
        }
    );
    recv_nothing!(t);
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 4);
}

/// ESTABLISHED with our receive window closed: the peer filled it, nothing
/// was read. "abc" of ours is in flight, unacknowledged.
fn established_zero_window() -> TestConn {
    let mut t = established();
    t.conn.send_slice(b"abc").unwrap();
    t.dispatch();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: data(LOCAL_WIN as usize),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: REMOTE_SEQ + 1 + LOCAL_WIN as usize,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    t
}

#[test]
fn zero_window_accepts_empty_segment_only_at_rcv_nxt() {
    let mut t = established_zero_window();
    let rcv_nxt = REMOTE_SEQ + 1 + LOCAL_WIN as usize;
    // SEG.SEQ /= RCV.NXT: not acceptable, ACK in reply, ACK field ignored.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: rcv_nxt + 1,
            ack_number: LOCAL_SEQ + 4,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: rcv_nxt,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 1);
    // SEG.SEQ = RCV.NXT: acceptable; the ACK is processed, nothing is owed.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: rcv_nxt,
            ack_number: LOCAL_SEQ + 4,
            ..SEND_TEMPL
        }
    );
    recv_nothing!(t);
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 4);
}

#[test]
fn zero_window_data_gets_ack_and_is_dropped() {
    let mut t = established_zero_window();
    let rcv_nxt = REMOTE_SEQ + 1 + LOCAL_WIN as usize;
    // SEG.LEN > 0 with RCV.WND = 0 is never acceptable, even at RCV.NXT:
    // the receiver still answers with its next sequence number and window
    // (RFC 9293 §3.8.6.1), which is how a one-byte window probe learns it.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: rcv_nxt,
            ack_number: LOCAL_SEQ + 1,
            payload: b"z".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: rcv_nxt,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.rcv_nxt(), rcv_nxt);
    assert_eq!(t.conn.recv_queue(), LOCAL_WIN as usize);
    // Off RCV.NXT as well.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: rcv_nxt + 10,
            ack_number: LOCAL_SEQ + 1,
            payload: b"z".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: rcv_nxt,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.recv_queue(), LOCAL_WIN as usize);
}

// ----- RST (RFC 9293 §3.10.7.4 second step, RFC 5961 §3) --------------------

#[test]
fn rst_at_rcv_nxt_resets_connection() {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), Some(TcpError::Reset));
    recv_nothing!(t);
    let mut buf = [0u8; 4];
    assert_eq!(
        t.conn.recv_slice(&mut buf),
        Err(RecvError::Failed(TcpError::Reset))
    );
}

#[test]
fn rst_in_window_not_exact_gets_challenge_ack() {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 2,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.counters().challenge_acks, 1);
    assert_eq!(t.conn.error(), None);
}

#[test]
fn rst_outside_window_is_ignored_silently() {
    let mut t = established();
    for seq in [REMOTE_SEQ + 1 + LOCAL_WIN as usize, REMOTE_SEQ] {
        send!(
            t,
            Segment {
                flags: RST,
                seq_number: seq,
                window_len: 0,
                ..SEND_TEMPL
            }
        );
        recv_nothing!(t);
    }
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.counters().challenge_acks, 0);
}

#[test]
fn rst_at_rcv_nxt_resets_in_every_synchronized_state() {
    type Fixture = fn() -> TestConn;
    // (fixture, RCV.NXT - REMOTE_SEQ, error the application sees)
    let cases: [(Fixture, usize, Option<TcpError>); 5] = [
        (fin_wait_1, 1, Some(TcpError::Reset)),
        (fin_wait_2, 1, Some(TcpError::Reset)),
        (close_wait, 2, Some(TcpError::Reset)),
        // CLOSING, LAST-ACK: "enter the CLOSED state, delete the TCB, and
        // return", nobody to tell.
        (closing, 2, None),
        (last_ack, 2, None),
    ];
    for (fixture, rcv_nxt, error) in cases {
        let mut t = fixture();
        let before = t.conn.state();
        send!(
            t,
            Segment {
                flags: RST,
                seq_number: REMOTE_SEQ + rcv_nxt,
                window_len: 0,
                ..SEND_TEMPL
            }
        );
        assert_eq!(t.conn.state(), State::Closed, "RST in {before}");
        assert_eq!(t.conn.error(), error, "RST in {before}");
        recv_nothing!(t);
    }
}

#[test]
fn rst_in_time_wait_is_ignored() {
    let mut t = time_wait();
    let deadline = t.conn.poll_at();
    // RFC 1337: TIME-WAIT assassination hazard.
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 2,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    send!(
        t,
        Segment {
            flags: RST | ACK,
            seq_number: REMOTE_SEQ + 2,
            ack_number: LOCAL_SEQ + 2,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    recv_nothing!(t);
    assert_eq!(t.conn.state(), State::TimeWait);
    assert_eq!(t.conn.poll_at(), deadline);
}

// ----- SYN and bad ACKs in synchronized states (RFC 5961 §4, §5) ------------

#[test]
fn syn_in_established_gets_challenge_ack() {
    let mut t = established();
    // In the window: RFC 5961 §4.2 challenge ACK, connection untouched.
    send!(
        t,
        Segment {
            flags: SYN,
            seq_number: REMOTE_SEQ + 100,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.counters().challenge_acks, 1);
    assert_eq!(t.conn.state(), State::Established);
    // "Irrespective of the sequence number": an old one gets the same ACK.
    send!(
        t,
        Segment {
            flags: SYN,
            seq_number: REMOTE_SEQ - 1000,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.error(), None);
}

#[test]
fn ack_of_unsent_data_gets_ack_and_is_dropped() {
    let mut t = established();
    // RFC 5961 §5.2 / RFC 9293: SEG.ACK > SND.NXT, send an ACK, drop the
    // segment (its data included), return.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 100,
            payload: b"xyz".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack_established()]);
    assert_eq!(t.conn.counters().bad_acks, 1);
    assert_eq!(t.conn.rcv_nxt(), REMOTE_SEQ + 1);
    assert_eq!(t.conn.recv_queue(), 0);
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 1);
    assert_eq!(t.conn.state(), State::Established);
}

#[test]
fn ack_older_than_max_window_gets_ack_and_is_dropped() {
    // The peer only ever offers 100 bytes, so MAX.SND.WND = 100.
    let mut t = syn_sent();
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            window_len: 100,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    t.dispatch();
    for round in 0..2usize {
        t.conn.send_slice(&data(100)).unwrap();
        recv!(
            t,
            [Segment {
                flags: PSH | ACK,
                seq_number: LOCAL_SEQ + 1 + round * 100,
                ack_number: REMOTE_SEQ + 1,
                payload: data(100),
                ..RECV_TEMPL
            }]
        );
        send!(
            t,
            Segment {
                flags: ACK,
                seq_number: REMOTE_SEQ + 1,
                ack_number: LOCAL_SEQ + 1 + (round + 1) * 100,
                window_len: 100,
                ..SEND_TEMPL
            }
        );
    }
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 201);
    // RFC 5961 §5.2: SEG.ACK < SND.UNA - MAX.SND.WND, ACK and drop (data
    // included).
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 50,
            window_len: 100,
            payload: b"xyz".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 201,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.counters().bad_acks, 1);
    assert_eq!(t.conn.recv_queue(), 0);
    // An old ACK within MAX.SND.WND is acceptable: its data is taken.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 150,
            window_len: 100,
            payload: b"xyz".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 201,
            ack_number: REMOTE_SEQ + 4,
            window_len: LOCAL_WIN - 3,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.counters().bad_acks, 1);
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 201);
}

// ----- closing: active close ------------------------------------------------

#[test]
fn close_in_established_sends_fin_and_enters_fin_wait_1() {
    let mut t = established();
    t.conn.close(t.now);
    assert_eq!(t.conn.state(), State::FinWait1);
    recv!(
        t,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.snd_nxt(), LOCAL_SEQ + 2);
    assert_eq!(t.conn.send_slice(b"late"), Err(SendError::Closed));
}

#[test]
fn close_after_data_carries_fin_on_last_segment() {
    let mut t = established();
    t.conn.send_slice(b"bye").unwrap();
    t.conn.close(t.now);
    recv!(
        t,
        [Segment {
            flags: FIN | PSH | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            payload: b"bye".to_vec(),
            ..RECV_TEMPL
        }]
    );
    // An ACK of the data alone leaves us in FIN-WAIT-1.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 4,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::FinWait1);
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 5,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::FinWait2);
}

#[test]
fn fin_wait_1_ack_of_fin_enters_fin_wait_2() {
    let mut t = fin_wait_1();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::FinWait2);
    assert_eq!(t.conn.snd_una(), LOCAL_SEQ + 2);
    recv_nothing!(t);
}

#[test]
fn fin_wait_1_fin_retransmitted_after_rto() {
    let mut t = fin_wait_1();
    let rto = t.conn.info().rto;
    assert_eq!(t.conn.poll_at(), T0 + rto);
    recv!(
        t,
        time T0 + rto,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::FinWait1);
}

#[test]
fn fin_wait_2_fin_enters_time_wait_and_acks() {
    let mut t = fin_wait_2();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::TimeWait);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn fin_wait_1_fin_with_ack_of_our_fin_enters_time_wait() {
    let mut t = fin_wait_1();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::TimeWait);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.poll_at(), T0 + TWO_MSL);
}

#[test]
fn simultaneous_close_goes_through_closing_to_time_wait() {
    let mut t = fin_wait_1();
    // Their FIN does not acknowledge ours.
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closing);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 2,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::TimeWait);
    recv_nothing!(t);
    assert_eq!(t.conn.poll_at(), T0 + TWO_MSL);
}

#[test]
fn closing_reacks_retransmitted_fin() {
    let mut t = closing();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::Closing);
}

#[test]
fn orphaned_fin_wait_2_gives_up_with_rst_after_fin_timeout() {
    let mut t = fin_wait_2();
    let deadline = T0 + config().fin_timeout;
    assert_eq!(t.conn.poll_at(), deadline);
    recv_nothing!(t, time deadline - Duration::from_micros(1));
    assert_eq!(t.conn.state(), State::FinWait2);
    recv!(
        t,
        time deadline,
        [Segment {
            flags: RST | ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::Closed);
}

#[test]
fn data_after_close_in_fin_wait_2_gets_rst() {
    let mut t = fin_wait_2();
    // Nobody will read it (Linux's "abort on data").
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            payload: b"hello".to_vec(),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closed);
    recv!(
        t,
        [Segment {
            flags: RST | ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
}

// ----- closing: passive close -----------------------------------------------

#[test]
fn fin_in_established_enters_close_wait_and_acks() {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::CloseWait);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    let mut buf = [0u8; 4];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(0), "end of stream");
}

#[test]
fn passive_close_sends_data_from_close_wait_then_fin_from_last_ack() {
    let mut t = close_wait();
    assert_eq!(t.conn.send_slice(b"bye"), Ok(3));
    recv!(
        t,
        [Segment {
            flags: PSH | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 2,
            payload: b"bye".to_vec(),
            ..RECV_TEMPL
        }]
    );
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 2,
            ack_number: LOCAL_SEQ + 4,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::CloseWait);
    recv_nothing!(t);
    t.conn.close(t.now);
    assert_eq!(t.conn.state(), State::LastAck);
    recv!(
        t,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 2,
            ack_number: LOCAL_SEQ + 5,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), None);
    recv_nothing!(t);
    assert_eq!(t.conn.poll_at(), Instant::FAR_FUTURE, "no TIME-WAIT");
}

#[test]
fn last_ack_ack_of_fin_closes() {
    let mut t = last_ack();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 2,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closed);
    recv_nothing!(t);
}

#[test]
fn last_ack_retransmits_fin_after_rto() {
    let mut t = last_ack();
    let rto = t.conn.info().rto;
    assert_eq!(t.conn.poll_at(), T0 + rto);
    recv!(
        t,
        time T0 + rto,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::LastAck);
}

#[test]
fn close_wait_reacks_retransmitted_fin() {
    let mut t = close_wait();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::CloseWait);
}

// ----- TIME-WAIT ------------------------------------------------------------

#[test]
fn time_wait_lasts_exactly_two_msl() {
    let mut t = time_wait();
    let deadline = T0 + TWO_MSL;
    assert_eq!(t.conn.poll_at(), deadline);
    recv_nothing!(t, time deadline - Duration::from_micros(1));
    assert_eq!(t.conn.state(), State::TimeWait);
    recv_nothing!(t, time deadline);
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), None);
    assert_eq!(t.conn.poll_at(), Instant::FAR_FUTURE);
}

#[test]
fn time_wait_reacks_retransmitted_fin_and_restarts_two_msl() {
    let mut t = time_wait();
    let fin = Segment {
        flags: FIN | ACK,
        seq_number: REMOTE_SEQ + 1,
        ack_number: LOCAL_SEQ + 2,
        ..SEND_TEMPL
    };
    let later = T0 + Duration::from_secs(30);
    send!(t, time later, fin);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.poll_at(), later + TWO_MSL);
    recv_nothing!(t, time T0 + TWO_MSL);
    assert_eq!(t.conn.state(), State::TimeWait);
    recv_nothing!(t, time later + TWO_MSL);
    assert_eq!(t.conn.state(), State::Closed);
}

// ----- aborts: SO_LINGER, abort(), unread data ------------------------------

#[test]
fn linger_zero_close_sends_rst_and_skips_time_wait() {
    let mut t = established();
    t.conn.set_linger(Some(Duration::ZERO));
    t.conn.close(t.now);
    assert_eq!(t.conn.state(), State::Closed);
    recv!(
        t,
        [Segment {
            flags: RST | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.poll_at(), Instant::FAR_FUTURE);
}

#[test]
fn linger_timeout_with_unacked_data_sends_rst() {
    let mut t = established();
    let linger = Duration::from_millis(100);
    t.conn.set_linger(Some(linger));
    t.conn.send_slice(b"data").unwrap();
    recv!(
        t,
        [Segment {
            flags: PSH | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            payload: b"data".to_vec(),
            ..RECV_TEMPL
        }]
    );
    t.conn.close(t.now);
    recv!(
        t,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 5,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    let deadline = T0 + linger;
    assert_eq!(t.conn.poll_at(), deadline);
    recv_nothing!(t, time deadline - Duration::from_micros(1));
    assert_eq!(t.conn.state(), State::FinWait1);
    recv!(
        t,
        time deadline,
        [Segment {
            flags: RST | ACK,
            seq_number: LOCAL_SEQ + 6,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.state(), State::Closed);
}

#[test]
fn linger_timeout_does_not_fire_once_everything_is_acked() {
    let mut t = established();
    let linger = Duration::from_millis(100);
    t.conn.set_linger(Some(linger));
    t.conn.send_slice(b"data").unwrap();
    t.conn.close(t.now);
    t.dispatch();
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 6,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::TimeWait);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 6,
            ack_number: REMOTE_SEQ + 2,
            ..RECV_TEMPL
        }]
    );
    recv_nothing!(t, time T0 + linger);
    assert_eq!(t.conn.state(), State::TimeWait);
}

#[test]
fn abort_sends_rst_and_closes() {
    let mut t = established();
    t.conn.abort();
    assert_eq!(t.conn.state(), State::Closed);
    recv!(
        t,
        [Segment {
            flags: RST | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    recv_nothing!(t);
}

#[test]
fn close_with_unread_data_sends_rst() {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: b"abc".to_vec(),
            ..SEND_TEMPL
        }
    );
    t.dispatch();
    // RFC 2525 §2.17, as Linux does: unread data makes close() an abort.
    t.conn.close(t.now);
    assert_eq!(t.conn.state(), State::Closed);
    recv!(
        t,
        [Segment {
            flags: RST | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 4,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
}

// ----- shutdown -------------------------------------------------------------

#[test]
fn shutdown_write_half_close_still_receives_in_fin_wait_2() {
    let mut t = established();
    t.conn.shutdown(Shutdown::Write);
    assert_eq!(t.conn.state(), State::FinWait1);
    recv!(
        t,
        [Segment {
            flags: FIN | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.send_slice(b"x"), Err(SendError::Closed));
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::FinWait2);
    assert_eq!(
        t.conn.poll_at(),
        Instant::FAR_FUTURE,
        "not orphaned: no timer"
    );
    send!(
        t,
        Segment {
            flags: PSH | ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 2,
            payload: b"hello".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 6,
            window_len: LOCAL_WIN - 5,
            ..RECV_TEMPL
        }]
    );
    let mut buf = [0u8; 16];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    send!(
        t,
        Segment {
            flags: FIN | ACK,
            seq_number: REMOTE_SEQ + 6,
            ack_number: LOCAL_SEQ + 2,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::TimeWait);
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 2,
            ack_number: REMOTE_SEQ + 7,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(0));
}

#[test]
fn shutdown_read_discards_data_but_still_acks_it() {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: b"abc".to_vec(),
            ..SEND_TEMPL
        }
    );
    t.dispatch();
    t.conn.shutdown(Shutdown::Read);
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.recv_queue(), 0);
    let mut buf = [0u8; 16];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(0));
    recv_nothing!(t);
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 4,
            ack_number: LOCAL_SEQ + 1,
            payload: b"def".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 7,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.recv_queue(), 0);
    // The write side still works.
    assert_eq!(t.conn.send_slice(b"ok"), Ok(2));
}

// ----- flow control: zero window and persist timer --------------------------

/// ESTABLISHED after the peer closed its window.
fn peer_window_closed() -> TestConn {
    let mut t = established();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.info().snd_wnd, 0);
    recv_nothing!(t);
    t
}

#[test]
fn zero_window_stalls_sender_until_window_update() {
    let mut t = peer_window_closed();
    assert_eq!(t.conn.send_slice(b"hello"), Ok(5));
    recv_nothing!(t);
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            window_len: 3,
            ..SEND_TEMPL
        }
    );
    // Only what the window allows.
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            payload: b"hel".to_vec(),
            ..RECV_TEMPL
        }]
    );
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 4,
            window_len: REMOTE_WIN,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: PSH | ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: REMOTE_SEQ + 1,
            payload: b"lo".to_vec(),
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn persist_timer_probes_zero_window_with_snd_una_minus_one() {
    let mut t = peer_window_closed();
    t.conn.send_slice(b"hello").unwrap();
    recv_nothing!(t);
    let rto = t.conn.info().rto;
    let first = T0 + rto;
    assert_eq!(t.conn.poll_at(), first);
    let probe = Segment {
        flags: ACK,
        seq_number: LOCAL_SEQ,
        ack_number: REMOTE_SEQ + 1,
        ..RECV_TEMPL
    };
    recv_nothing!(t, time first - Duration::from_micros(1));
    recv!(t, time first, [probe.clone()]);
    assert_eq!(t.conn.counters().zero_window_probes, 1);
    // The peer answers the probe, window still closed; the next probe
    // backs off (twice the interval).
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    recv_nothing!(t);
    let second = first + rto.saturating_mul(2);
    assert_eq!(t.conn.poll_at(), second);
    recv!(t, time second, [probe]);
    // The window opens: the data goes, the persist timer stops.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            window_len: REMOTE_WIN,
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: PSH | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            payload: b"hello".to_vec(),
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.counters().zero_window_probes, 2);
}

#[test]
fn persist_timer_starts_when_window_closes_with_data_queued() {
    let mut t = established();
    t.conn.send_slice(b"hello").unwrap();
    t.dispatch();
    // The peer acknowledges everything and closes its window; more data
    // waits. Nothing is in flight, so no RTO runs: only the persist timer
    // keeps the connection from hanging on a lost window update, and the
    // connection must ask for time (through `poll_at`) to start it.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 6,
            window_len: 0,
            ..SEND_TEMPL
        }
    );
    t.conn.send_slice(b"world").unwrap();
    let rto = t.conn.info().rto;
    assert!(t.conn.poll_at() <= t.now + rto, "{:?}", t.conn.poll_at());
    // Driven only as often as `poll_at` asks, the probe goes out.
    let mut probes = Vec::new();
    while probes.is_empty() {
        let at = t.conn.poll_at();
        assert!(at <= T0 + rto, "no probe by {:?}", T0 + rto);
        t.now = t.now.max(at);
        probes = t.dispatch();
    }
    assert_eq!(t.now, T0 + rto);
    assert_eq!(
        probes,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 5,
            ack_number: REMOTE_SEQ + 1,
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn right_window_edge_never_moves_left() {
    let mut t = established();
    // RCV.NXT + RCV.WND of every ACK we send, starting with the handshake's.
    let mut edges = vec![REMOTE_SEQ + 1 + LOCAL_WIN as usize];
    for i in 0..2usize {
        send!(
            t,
            Segment {
                flags: ACK,
                seq_number: REMOTE_SEQ + 1 + i * 1000,
                ack_number: LOCAL_SEQ + 1,
                payload: data(1000),
                ..SEND_TEMPL
            }
        );
        let ack = Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1 + (i + 1) * 1000,
            window_len: LOCAL_WIN - (i as u16 + 1) * 1000,
            ..RECV_TEMPL
        };
        edges.push(ack.ack_number + ack.window_len as usize);
        recv!(t, [ack]);
    }
    // Reading reopens the window: a window update moves the edge right.
    let mut buf = [0u8; 4096];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(2000));
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 2001,
            ..RECV_TEMPL
        }]
    );
    edges.push(REMOTE_SEQ + 2001 + LOCAL_WIN as usize);
    assert!(edges.windows(2).all(|w| w[0] <= w[1]), "{edges:?}");
}

// ----- window scale (RFC 7323 §2) -------------------------------------------

fn config_ws() -> Config {
    Config {
        window_scale: true,
        rx_buffer: 1 << 18,
        ..config()
    }
}

/// Active open with window scaling: we shift by 3, the peer by 2.
fn established_ws() -> TestConn {
    let conn = Connection::connect(&config_ws(), LOCAL, REMOTE, LOCAL_SEQ, TS_OFFSET);
    let mut t = TestConn::new(conn, T0);
    recv!(
        t,
        [Segment {
            flags: SYN,
            seq_number: LOCAL_SEQ,
            window_len: 0xffff,
            options: TcpOptions {
                mss: Some(LOCAL_MSS),
                window_scale: Some(3),
                ..NO_OPTIONS
            },
            ..RECV_TEMPL
        }]
    );
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            window_len: 0xffff,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(2),
                ..NO_OPTIONS
            },
            ..SEND_TEMPL
        }
    );
    // 2^18 bytes free, advertised as 2^18 >> 3.
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            window_len: 32768,
            ..RECV_TEMPL
        }]
    );
    t
}

#[test]
fn window_fields_are_scaled_when_window_scale_is_negotiated() {
    let mut t = established_ws();
    let info = t.conn.info();
    assert_eq!((info.snd_wscale, info.rcv_wscale), (2, 3));
    // The SYN-ACK's window is not scaled (RFC 7323 §2.2).
    assert_eq!(info.snd_wnd, 0xffff);
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            window_len: 100,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.info().snd_wnd, 400);
    t.conn.send_slice(&data(1000)).unwrap();
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            window_len: 32768,
            payload: data(400),
            ..RECV_TEMPL
        }]
    );
    // Our window after 800 bytes arrive: (2^18 - 800) >> 3 = 32668.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 401,
            window_len: 100,
            payload: data(800),
            ..SEND_TEMPL
        }
    );
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 401,
            ack_number: REMOTE_SEQ + 801,
            window_len: 32668,
            // The window of 100 << 2 lets the next 400 bytes ride along.
            payload: data(1000)[400..800].to_vec(),
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn window_scale_is_off_when_peer_does_not_offer_it() {
    let mut t = syn_sent_with(&config_ws());
    send!(
        t,
        Segment {
            flags: SYN | ACK,
            seq_number: REMOTE_SEQ,
            ack_number: LOCAL_SEQ + 1,
            options: mss(1460),
            ..SEND_TEMPL
        }
    );
    // Unscaled, our 2^18 bytes can only be announced as 65535.
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            window_len: 0xffff,
            ..RECV_TEMPL
        }]
    );
    let info = t.conn.info();
    assert_eq!((info.snd_wscale, info.rcv_wscale), (0, 0));
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            window_len: 100,
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.info().snd_wnd, 100);
}

#[test]
fn scaled_window_rounding_still_honours_previously_advertised_edge() {
    let mut t = established_ws();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            payload: b"abc".to_vec(),
            ..SEND_TEMPL
        }
    );
    // 2^18 - 3 free bytes announce as 32767 units of 8: the announced edge
    // sits 5 bytes left of the one advertised before.
    let ack = Segment {
        flags: ACK,
        seq_number: LOCAL_SEQ + 1,
        ack_number: REMOTE_SEQ + 4,
        window_len: 32767,
        ..RECV_TEMPL
    };
    recv!(t, [ack.clone()]);
    // RFC 7323 §2.4: the receiver must honour any segment that was in the
    // window of any ACK it sent, so the last 5 bytes of the old window are
    // still acceptable.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1 + (1 << 18) - 5,
            ack_number: LOCAL_SEQ + 1,
            payload: b"vwxyz".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack]);
    assert_eq!(t.conn.counters().ooo_segments, 1);
    assert_eq!(t.conn.counters().out_of_window, 0);
}

// ----- timestamps and PAWS (RFC 7323 §3-§5) ---------------------------------

#[test]
fn timestamps_ride_on_every_segment_once_negotiated() {
    let mut t = established_ts();
    assert!(t.conn.info().timestamps);
    t.advance(Duration::from_millis(5));
    t.conn.send_slice(b"abc").unwrap();
    recv!(
        t,
        [Segment {
            flags: PSH | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            options: ts(tsval(t.now), REMOTE_TS),
            payload: b"abc".to_vec(),
            ..RECV_TEMPL
        }]
    );
    // TS.Recent follows the peer's in-order segments (RFC 7323 §4.3).
    t.advance(Duration::from_millis(5));
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 4,
            options: ts(REMOTE_TS + 7, tsval(T0 + Duration::from_millis(5))),
            payload: b"xy".to_vec(),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.ts_recent(), Some(REMOTE_TS + 7));
    recv!(
        t,
        [Segment {
            flags: ACK,
            seq_number: LOCAL_SEQ + 4,
            ack_number: REMOTE_SEQ + 3,
            window_len: LOCAL_WIN - 2,
            options: ts(tsval(t.now), REMOTE_TS + 7),
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn paws_drops_segment_with_older_tsval_and_acks() {
    let mut t = established_ts();
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            options: ts(REMOTE_TS + 10, tsval(T0)),
            payload: b"abc".to_vec(),
            ..SEND_TEMPL
        }
    );
    let ack = Segment {
        flags: ACK,
        seq_number: LOCAL_SEQ + 1,
        ack_number: REMOTE_SEQ + 4,
        window_len: LOCAL_WIN - 3,
        options: ts(tsval(T0), REMOTE_TS + 10),
        ..RECV_TEMPL
    };
    recv!(t, [ack.clone()]);
    // In sequence, but TSval older than TS.Recent: RFC 7323 §5.3 R1, an
    // old duplicate. ACK and drop.
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 4,
            ack_number: LOCAL_SEQ + 1,
            options: ts(REMOTE_TS + 5, tsval(T0)),
            payload: b"def".to_vec(),
            ..SEND_TEMPL
        }
    );
    recv!(t, [ack]);
    assert_eq!(t.conn.counters().paws_drops, 1);
    assert_eq!(t.conn.rcv_nxt(), REMOTE_SEQ + 4);
    assert_eq!(t.conn.recv_queue(), 3);
    assert_eq!(t.conn.ts_recent(), Some(REMOTE_TS + 10));
}

#[test]
fn paws_does_not_apply_to_rst() {
    let mut t = established_ts();
    // RFC 7323 §5.3 R1 applies "if the RST bit is not set".
    send!(
        t,
        Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 1,
            window_len: 0,
            options: ts(REMOTE_TS - 100, 0),
            ..SEND_TEMPL
        }
    );
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), Some(TcpError::Reset));
    assert_eq!(t.conn.counters().paws_drops, 0);
}

#[test]
fn timestamps_stay_off_when_syn_lacks_them() {
    let (mut t, syn_ack) = accept_with(&config_ts(), &peer_syn(mss(1460)));
    assert_eq!(syn_ack.options, mss(LOCAL_MSS));
    send!(
        t,
        Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        }
    );
    t.conn.send_slice(b"abc").unwrap();
    recv!(
        t,
        [Segment {
            flags: PSH | ACK,
            seq_number: LOCAL_SEQ + 1,
            ack_number: REMOTE_SEQ + 1,
            payload: b"abc".to_vec(),
            ..RECV_TEMPL
        }]
    );
    assert_eq!(t.conn.info().snd_mss, 1460);
}

// ----- MSS (RFC 9293 §3.7.1, RFC 6691) --------------------------------------

/// Sends `n` bytes and returns the payload length of each segment.
fn segment_sizes(t: &mut TestConn, n: usize) -> Vec<usize> {
    t.conn.send_slice(&data(n)).unwrap();
    let out = t.dispatch();
    let mut seq = LOCAL_SEQ + 1;
    for seg in &out {
        assert_eq!(seg.seq_number, seq, "{out:?}");
        seq += seg.payload.len();
    }
    out.iter().map(|s| s.payload.len()).collect()
}

#[test]
fn sent_segments_never_exceed_peer_mss() {
    let mut t = established_with(&config(), mss(500));
    assert_eq!(segment_sizes(&mut t, 1200), [500, 500, 200]);
}

#[test]
fn sent_segments_never_exceed_our_mss() {
    let cfg = Config {
        mss: 1000,
        ..config()
    };
    let mut t = established_with(&cfg, mss(1460));
    assert_eq!(segment_sizes(&mut t, 2500), [1000, 1000, 500]);
}

#[test]
fn timestamps_take_twelve_bytes_off_the_mss() {
    let mut t = established_with(&config_ts(), mss_ts(1000, REMOTE_TS, tsval(T0)));
    assert_eq!(t.conn.info().snd_mss, 988);
    assert_eq!(segment_sizes(&mut t, 2000), [988, 988, 24]);
}

#[test]
fn missing_mss_option_means_536() {
    let mut t = established_with(&config(), NO_OPTIONS);
    assert_eq!(segment_sizes(&mut t, 1200), [536, 536, 128]);
}

// ----- no connection: RFC 9293 §3.10.7.1 ------------------------------------

fn endpoint() -> Endpoint {
    let mut ep = Endpoint::new(EndpointConfig::default());
    ep.set_local_addrs(&[*LOCAL.ip()]);
    ep
}

/// Feeds `seg` from REMOTE to LOCAL into `ep`; returns what it emitted.
fn endpoint_process(ep: &mut Endpoint, seg: &Segment) -> Vec<Segment> {
    let mut sink = CollectingSink::default();
    ep.process(T0, *REMOTE.ip(), *LOCAL.ip(), &seg.as_repr(), &mut sink);
    ep.dispatch(T0, &mut sink);
    sink.emitted
        .into_iter()
        .map(|(src, dst, s)| {
            assert_eq!((src, dst), (*LOCAL.ip(), *REMOTE.ip()));
            s
        })
        .collect()
}

#[test]
fn segment_with_ack_to_no_socket_gets_rst_seq_seg_ack() {
    let mut ep = endpoint();
    let out = endpoint_process(
        &mut ep,
        &Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 7,
            payload: b"data".to_vec(),
            ..SEND_TEMPL
        },
    );
    assert_eq!(
        out,
        [Segment {
            flags: RST,
            seq_number: LOCAL_SEQ + 7,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    assert_eq!(ep.counters().no_socket, 1);
    assert_eq!(ep.counters().rst_sent, 1);
}

#[test]
fn segment_without_ack_to_no_socket_gets_rst_ack() {
    let mut ep = endpoint();
    // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN and FIN count in SEG.LEN.
    let out = endpoint_process(
        &mut ep,
        &Segment {
            flags: SYN,
            seq_number: REMOTE_SEQ,
            options: mss(1460),
            ..SEND_TEMPL
        },
    );
    assert_eq!(
        out,
        [Segment {
            flags: RST | ACK,
            seq_number: SeqNumber(0),
            ack_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    let out = endpoint_process(
        &mut ep,
        &Segment {
            flags: FIN,
            seq_number: REMOTE_SEQ + 1,
            payload: b"tail".to_vec(),
            ..SEND_TEMPL
        },
    );
    assert_eq!(
        out,
        [Segment {
            flags: RST | ACK,
            seq_number: SeqNumber(0),
            ack_number: REMOTE_SEQ + 6,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
}

#[test]
fn rst_to_no_socket_gets_no_reply() {
    let mut ep = endpoint();
    for flags in [RST, RST | ACK] {
        let seg = Segment {
            flags,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        };
        assert_eq!(rst_for_unexpected(&seg.as_repr()), None);
        assert_eq!(endpoint_process(&mut ep, &seg), []);
    }
    assert_eq!(ep.counters().rst_sent, 0);
}

#[test]
fn ack_to_listener_gets_rst_seq_seg_ack() {
    let mut ep = endpoint();
    let l = ep.socket().unwrap();
    ep.bind(l, LOCAL).unwrap();
    ep.listen(l, 8).unwrap();
    // RFC 9293 §3.10.7.2: an ACK in LISTEN is bad, <SEQ=SEG.ACK><CTL=RST>.
    let out = endpoint_process(
        &mut ep,
        &Segment {
            flags: ACK,
            seq_number: REMOTE_SEQ + 1,
            ack_number: LOCAL_SEQ + 1,
            ..SEND_TEMPL
        },
    );
    assert_eq!(
        out,
        [Segment {
            flags: RST,
            seq_number: LOCAL_SEQ + 1,
            window_len: 0,
            ..RECV_TEMPL
        }]
    );
    // An RST in LISTEN is ignored.
    let out = endpoint_process(
        &mut ep,
        &Segment {
            flags: RST,
            seq_number: REMOTE_SEQ + 1,
            window_len: 0,
            ..SEND_TEMPL
        },
    );
    assert_eq!(out, []);
    assert_eq!(ep.state(l), Ok(State::Listen));
}

#[test]
fn syn_to_listener_gets_syn_ack_mirroring_its_options() {
    let mut ep = endpoint();
    let l = ep.socket().unwrap();
    ep.bind(l, LOCAL).unwrap();
    ep.listen(l, 8).unwrap();
    let out = endpoint_process(&mut ep, &peer_syn(mss(1400)));
    assert_eq!(out.len(), 1, "{out:?}");
    let syn_ack = &out[0];
    assert_eq!(syn_ack.flags, SYN | ACK);
    assert_eq!(syn_ack.ack_number, REMOTE_SEQ + 1);
    // The default configuration enables everything, but this SYN offered
    // only an MSS.
    assert_eq!(syn_ack.options, mss(1460));
    assert_eq!(
        (syn_ack.src_port, syn_ack.dst_port),
        (LOCAL.port(), REMOTE.port())
    );
    assert_eq!(ep.counters().no_socket, 0);
}
