//! Reliable delivery and congestion control on one connection, driven by
//! hand on virtual time: fast retransmit and recovery (RFC 5681, RFC 6582),
//! SACK recovery (RFC 6675), RTO computation (RFC 6298) and Karn's rule,
//! delayed ACK, Nagle, keepalive.

#[macro_use]
mod common;

use common::*;
use flowlane::tcp::{Algorithm, Config, Connection, Keepalive, RecvError, SendError, State};
use flowlane::time::{Duration, Instant};
use flowlane::wire::{SeqNumber, TcpFlags, TcpOptions};

const ISS: SeqNumber = SeqNumber(1_000_000);
const IRS: SeqNumber = SeqNumber(5_000);
const MSS: usize = 1000;
const T0: Instant = Instant::from_secs(10);
const PEER_WIN: u16 = 65535;

fn config(algorithm: Algorithm) -> Config {
    Config {
        mss: MSS as u16,
        rx_buffer: 65535,
        tx_buffer: 256 * 1024,
        window_scale: false,
        timestamps: false,
        sack: false,
        nodelay: true,
        delayed_ack: Duration::ZERO,
        congestion: algorithm,
        initial_window: Some(10),
        ..Config::default()
    }
}

/// Our data byte `n` (0-based) as a sequence number.
fn seq(n: usize) -> SeqNumber {
    ISS + 1 + n
}

/// An established connection; the SYN-ACK arrives at once, so the
/// handshake's RTT sample is 0 and the RTO starts at the 200 ms minimum.
fn established(cfg: &Config, peer_options: TcpOptions) -> TestConn {
    established_after(cfg, peer_options, Duration::ZERO)
}

/// An established connection whose handshake took `rtt`.
fn established_after(cfg: &Config, peer_options: TcpOptions, rtt: Duration) -> TestConn {
    let conn = Connection::connect(cfg, LOCAL, REMOTE, ISS, 0);
    let mut t = TestConn::new(conn, T0);
    assert_eq!(t.conn.info().rto, Duration::from_secs(1), "RFC 6298 §2.1");
    let syn = t.dispatch();
    assert_eq!(syn.len(), 1);
    t.now += rtt;
    let mut o = peer_options;
    o.mss = Some(MSS as u16);
    send!(t, peer(IRS, ISS + 1, TcpFlags::SYN | TcpFlags::ACK, o));
    let ack = t.dispatch();
    assert_eq!(ack.len(), 1);
    assert_eq!(t.conn.state(), State::Established);
    t
}

fn peer(seq: SeqNumber, ack: SeqNumber, flags: TcpFlags, options: TcpOptions) -> Segment {
    Segment {
        src_port: REMOTE.port(),
        dst_port: LOCAL.port(),
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: PEER_WIN,
        options,
        payload: Vec::new(),
    }
}

/// The peer acknowledges our byte `n` (exclusive), optionally with SACK
/// blocks given in data-byte offsets.
fn ack_of(n: usize, sack: &[(usize, usize)]) -> Segment {
    let mut o = NO_OPTIONS;
    for (i, (l, r)) in sack.iter().enumerate() {
        o.sack_blocks[i] = (seq(*l), seq(*r));
    }
    o.sack_count = sack.len() as u8;
    peer(IRS + 1, seq(n), TcpFlags::ACK, o)
}

/// Data segments (seq offset, len) in what came out.
fn data_of(out: &[Segment]) -> Vec<(usize, usize)> {
    out.iter()
        .filter(|s| !s.payload.is_empty())
        .map(|s| (s.seq_number - seq(0), s.payload.len()))
        .collect()
}

fn write(t: &mut TestConn, n: usize) {
    let data = vec![0xabu8; n];
    assert_eq!(t.conn.send_slice(&data), Ok(n));
}

#[test]
fn third_duplicate_ack_fast_retransmits_and_fast_recovery_follows_rfc_5681() {
    let mut t = established(&config(Algorithm::Reno), NO_OPTIONS);
    write(&mut t, 40 * MSS);
    // Initial window of 10 segments.
    let out = t.dispatch();
    assert_eq!(
        data_of(&out),
        (0..10).map(|i| (i * MSS, MSS)).collect::<Vec<_>>()
    );
    // Segment 0 acknowledged: slow start, cwnd 11, two more go out.
    send!(t, ack_of(MSS, &[]));
    assert_eq!(t.conn.info().cwnd, 11 * MSS as u32);
    assert_eq!(data_of(&t.dispatch()), [(10 * MSS, MSS), (11 * MSS, MSS)]);
    // Segment 1 is lost; 2..=11 arrive and each brings a duplicate ACK.
    // The first two do not retransmit; each sends one new segment past
    // cwnd (RFC 3042 Limited Transmit), cwnd unchanged.
    send!(t, ack_of(MSS, &[]));
    assert_eq!(data_of(&t.dispatch()), [(12 * MSS, MSS)]);
    send!(t, ack_of(MSS, &[]));
    assert_eq!(data_of(&t.dispatch()), [(13 * MSS, MSS)]);
    assert_eq!(t.conn.counters().fast_retransmits, 0);
    assert_eq!(t.conn.info().cwnd, 11 * MSS as u32);
    send!(t, ack_of(MSS, &[]));
    // Third duplicate: exactly the missing segment, ssthresh = FlightSize/2,
    // cwnd = ssthresh + 3 segments.
    assert_eq!(data_of(&t.dispatch()), [(MSS, MSS)]);
    let flight = 13 * MSS as u32;
    let info = t.conn.info();
    assert_eq!(info.ssthresh, flight / 2);
    assert_eq!(info.cwnd, flight / 2 + 3 * MSS as u32);
    assert!(info.in_recovery);
    assert_eq!(info.counters.fast_retransmits, 1);
    // Each further duplicate inflates cwnd by one segment; new data flows
    // once cwnd exceeds the flight.
    for i in 1..=7u32 {
        send!(t, ack_of(MSS, &[]));
        assert_eq!(t.conn.info().cwnd, flight / 2 + (3 + i) * MSS as u32);
    }
    // cwnd 16500, flight 13000: three new segments.
    assert_eq!(
        data_of(&t.dispatch()),
        (14..17).map(|i| (i * MSS, MSS)).collect::<Vec<_>>()
    );
    // The retransmission arrives: everything up to 12 is acknowledged. cwnd
    // deflates to ssthresh; no slow start.
    send!(t, ack_of(12 * MSS, &[]));
    let info = t.conn.info();
    assert!(!info.in_recovery);
    assert_eq!(info.cwnd, info.ssthresh);
    assert_eq!(info.cwnd, 6500);
    // Congestion avoidance: one more segment per window of acknowledged
    // bytes.
    t.dispatch();
    send!(t, ack_of(16 * MSS, &[]));
    assert_eq!(t.conn.info().cwnd, 6500, "4000 bytes acked < cwnd");
    t.dispatch();
    send!(t, ack_of(19 * MSS, &[]));
    assert_eq!(t.conn.info().cwnd, 7500, "7000 bytes acked: +1 segment");
}

#[test]
fn newreno_partial_ack_retransmits_the_next_hole_without_leaving_recovery() {
    let mut t = established(&config(Algorithm::NewReno), NO_OPTIONS);
    write(&mut t, 10 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 10);
    // Segments 1 and 4 are lost.
    for _ in 0..4 {
        send!(t, ack_of(MSS, &[]));
    }
    assert_eq!(data_of(&t.dispatch()), [(MSS, MSS)]);
    assert!(t.conn.info().in_recovery);
    // The retransmitted segment 1 fills the first hole: ACK up to 4, a
    // partial ACK (recovery point is 10).
    send!(t, ack_of(4 * MSS, &[]));
    assert_eq!(data_of(&t.dispatch()), [(4 * MSS, MSS)]);
    assert!(
        t.conn.info().in_recovery,
        "a partial ACK does not end recovery"
    );
    send!(t, ack_of(10 * MSS, &[]));
    let info = t.conn.info();
    assert!(!info.in_recovery);
    assert_eq!(info.cwnd, info.ssthresh);
    assert_eq!(info.counters.retransmits, 2);
}

#[test]
fn reno_leaves_recovery_at_the_first_new_ack() {
    let mut t = established(&config(Algorithm::Reno), NO_OPTIONS);
    write(&mut t, 10 * MSS);
    t.dispatch();
    for _ in 0..4 {
        send!(t, ack_of(MSS, &[]));
    }
    t.dispatch();
    send!(t, ack_of(4 * MSS, &[]));
    assert!(!t.conn.info().in_recovery);
    assert!(data_of(&t.dispatch()).iter().all(|(o, _)| *o >= 10 * MSS));
}

#[test]
fn sack_recovery_retransmits_only_the_holes() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.sack = true;
    let mut o = NO_OPTIONS;
    o.sack_permitted = true;
    let mut t = established(&cfg, o);
    write(&mut t, 10 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 10);
    // Segments 1 and 4 are lost; the peer SACKs what it holds.
    send!(t, ack_of(MSS, &[(2 * MSS, 3 * MSS)]));
    send!(t, ack_of(MSS, &[(2 * MSS, 4 * MSS)]));
    send!(t, ack_of(MSS, &[(5 * MSS, 6 * MSS), (2 * MSS, 4 * MSS)]));
    send!(t, ack_of(MSS, &[(5 * MSS, 7 * MSS), (2 * MSS, 4 * MSS)]));
    let mut retransmitted = data_of(&t.dispatch());
    for n in 8..=10 {
        send!(t, ack_of(MSS, &[(5 * MSS, n * MSS), (2 * MSS, 4 * MSS)]));
        retransmitted.extend(data_of(&t.dispatch()));
    }
    // Only the two holes, each once; no new data was written.
    retransmitted.sort();
    assert_eq!(retransmitted, [(MSS, MSS), (4 * MSS, MSS)]);
    assert_eq!(t.conn.counters().retransmits, 2);
    send!(t, ack_of(10 * MSS, &[]));
    assert!(!t.conn.info().in_recovery);
}

#[test]
fn rto_follows_rfc_6298_for_scripted_samples() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.min_rto = Duration::from_millis(10);
    // The handshake is the first sample, R = 100 ms: SRTT = R,
    // RTTVAR = R/2, RTO = SRTT + 4·RTTVAR.
    let mut t = established_after(&cfg, NO_OPTIONS, ms(100));
    let i = t.conn.info();
    assert_eq!((i.srtt, i.rttvar, i.rto), (ms(100), ms(50), ms(300)));
    let mut sent_bytes = 0;
    let mut sample = |t: &mut TestConn, rtt_ms: u64| {
        write(t, 100);
        let out = t.dispatch();
        assert_eq!(data_of(&out), [(sent_bytes, 100)]);
        sent_bytes += 100;
        t.now += Duration::from_millis(rtt_ms);
        send!(t, ack_of(sent_bytes, &[]));
        t.now += Duration::from_secs(1);
        t.conn.info()
    };
    // R = 200 ms: RTTVAR = 3/4·50 + 1/4·100 = 62.5; SRTT = 7/8·100 + 1/8·200.
    let i = sample(&mut t, 200);
    assert_eq!(
        (i.srtt, i.rttvar, i.rto),
        (us(112_500), us(62_500), us(362_500))
    );
    // R = 50 ms.
    let i = sample(&mut t, 50);
    assert_eq!(
        (i.srtt, i.rttvar, i.rto),
        (us(104_687), us(62_500), us(354_687))
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

#[test]
fn rto_backs_off_by_doubling_and_karn_takes_no_sample_from_a_retransmission() {
    // Handshake sample 100 ms: RTO 300 ms.
    let mut t = established_after(&config(Algorithm::NewReno), NO_OPTIONS, ms(100));
    write(&mut t, 100);
    assert_eq!(data_of(&t.dispatch()), [(0, 100)]);
    let start = t.now;
    // Unanswered: retransmissions after 300 ms, then 600 ms, 1200 ms more.
    let mut times = Vec::new();
    for _ in 0..3 {
        let at = t.conn.poll_at();
        t.now = at;
        assert_eq!(data_of(&t.dispatch()), [(0, 100)]);
        times.push(at - start);
    }
    assert_eq!(times, [ms(300), ms(900), ms(2100)]);
    assert_eq!(t.conn.counters().rtos, 3);
    // The ACK of the retransmitted segment gives no RTT sample (no
    // timestamps): SRTT stays, and so does the backed-off RTO.
    t.now += ms(5);
    send!(t, ack_of(100, &[]));
    let i = t.conn.info();
    assert_eq!((i.srtt, i.rttvar), (ms(100), ms(50)));
    assert_eq!(i.rto, ms(2400));
    // A fresh segment gives a sample and the RTO is recomputed from it:
    // RTTVAR = 3/4·50 + 1/4·0, RTO = 100 + 4·37.5.
    write(&mut t, 100);
    t.dispatch();
    t.now += ms(100);
    send!(t, ack_of(200, &[]));
    let i = t.conn.info();
    assert_eq!((i.srtt, i.rttvar, i.rto), (ms(100), us(37_500), ms(250)));
}

#[test]
fn data_retransmissions_exhausted_abort_with_timed_out() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.data_retries = 3;
    let mut t = established(&cfg, NO_OPTIONS);
    write(&mut t, 100);
    t.dispatch();
    for _ in 0..3 {
        t.now = t.conn.poll_at();
        assert_eq!(data_of(&t.dispatch()), [(0, 100)]);
    }
    t.now = t.conn.poll_at();
    assert!(t.dispatch().is_empty());
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(
        t.conn.recv_slice(&mut [0; 4]),
        Err(RecvError::Failed(flowlane::tcp::TcpError::TimedOut))
    );
    assert_eq!(t.conn.send_slice(b"x"), Err(SendError::Closed));
}

fn peer_data(offset: usize, len: usize) -> Segment {
    Segment {
        payload: vec![7u8; len],
        ..peer(IRS + 1 + offset, seq(0), TcpFlags::ACK, NO_OPTIONS)
    }
}

#[test]
fn delayed_ack_waits_for_the_timeout_or_a_second_full_segment() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.delayed_ack = ms(40);
    let mut t = established(&cfg, NO_OPTIONS);
    send!(t, peer_data(0, 100));
    assert!(t.dispatch().is_empty(), "one small segment: ACK delayed");
    assert_eq!(t.conn.poll_at(), t.now + ms(40));
    t.now += ms(39);
    assert!(t.dispatch().is_empty());
    t.now += ms(1);
    let out = t.dispatch();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack_number, IRS + 1 + 100);
    // Two full-sized segments: ACK at once (RFC 5681 §4.2).
    send!(t, peer_data(100, MSS));
    assert!(t.dispatch().is_empty());
    send!(t, peer_data(100 + MSS, MSS));
    let out = t.dispatch();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack_number, IRS + 1 + 100 + 2 * MSS);
}

#[test]
fn out_of_order_segment_gets_an_immediate_duplicate_ack_with_sack() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.delayed_ack = ms(40);
    cfg.sack = true;
    let mut o = NO_OPTIONS;
    o.sack_permitted = true;
    let mut t = established(&cfg, o);
    send!(t, peer_data(1000, 500));
    send!(t, peer_data(3000, 500));
    // Two duplicate ACKs, at once, each naming the newest block first.
    let out = t.dispatch();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|s| s.ack_number == IRS + 1));
    assert_eq!(out[0].options.sack_blocks(), [(IRS + 1001, IRS + 1501)]);
    assert_eq!(
        out[1].options.sack_blocks(),
        [(IRS + 3001, IRS + 3501), (IRS + 1001, IRS + 1501)]
    );
    // Filling the first hole is acknowledged at once too.
    send!(t, peer_data(0, 1000));
    let out = t.dispatch();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack_number, IRS + 1501);
    assert_eq!(out[0].options.sack_blocks(), [(IRS + 3001, IRS + 3501)]);
    let mut buf = [0u8; 4000];
    assert_eq!(t.conn.recv_slice(&mut buf), Ok(1500));
}

#[test]
fn nagle_coalesces_small_writes_and_nodelay_does_not() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.nodelay = false;
    let mut t = established(&cfg, NO_OPTIONS);
    write(&mut t, 10);
    assert_eq!(data_of(&t.dispatch()), [(0, 10)]);
    write(&mut t, 10);
    write(&mut t, 10);
    assert!(
        t.dispatch().is_empty(),
        "small segment held while data is unacked"
    );
    send!(t, ack_of(10, &[]));
    assert_eq!(data_of(&t.dispatch()), [(10, 20)], "coalesced into one");

    let mut t = established(&config(Algorithm::NewReno), NO_OPTIONS);
    write(&mut t, 10);
    assert_eq!(data_of(&t.dispatch()), [(0, 10)]);
    write(&mut t, 10);
    assert_eq!(data_of(&t.dispatch()), [(10, 10)], "no-delay sends at once");
}

#[test]
fn keepalive_probes_an_idle_peer_and_reports_timed_out() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.keepalive = Some(Keepalive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        count: 3,
    });
    let mut t = established(&cfg, NO_OPTIONS);
    assert_eq!(t.conn.poll_at(), T0 + Duration::from_secs(10));
    let mut probes = Vec::new();
    for _ in 0..3 {
        t.now = t.conn.poll_at();
        let out = t.dispatch();
        assert_eq!(out.len(), 1);
        // The probe carries SND.UNA - 1 and no data.
        assert_eq!(out[0].seq_number, seq(0) - 1);
        assert!(out[0].payload.is_empty());
        probes.push(t.now - T0);
    }
    assert_eq!(
        probes,
        [
            Duration::from_secs(10),
            Duration::from_secs(12),
            Duration::from_secs(14)
        ]
    );
    t.now = t.conn.poll_at();
    t.dispatch();
    assert_eq!(t.now - T0, Duration::from_secs(16));
    assert_eq!(t.conn.state(), State::Closed);
    assert_eq!(t.conn.error(), Some(flowlane::tcp::TcpError::TimedOut));
}

#[test]
fn keepalive_answered_keeps_the_connection() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.keepalive = Some(Keepalive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        count: 3,
    });
    let mut t = established(&cfg, NO_OPTIONS);
    for _ in 0..5 {
        t.now = t.conn.poll_at();
        assert_eq!(t.dispatch().len(), 1);
        // The peer answers each probe with an ACK.
        send!(t, ack_of(0, &[]));
    }
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.counters().keepalive_probes, 5);
}

#[test]
fn cubic_connection_recovers_from_loss_and_reduces_by_beta() {
    let mut t = established(&config(Algorithm::Cubic), NO_OPTIONS);
    write(&mut t, 20 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 10);
    for _ in 0..4 {
        send!(t, ack_of(MSS, &[]));
    }
    assert_eq!(data_of(&t.dispatch())[0], (MSS, MSS));
    // RFC 9438 §4.6: ssthresh = cwnd · 0.7.
    // cwnd was 11 segments (one ACK of slow start before the loss).
    assert!((7699..=7700).contains(&t.conn.info().ssthresh));
    assert_eq!(t.conn.info().congestion, Algorithm::Cubic);
}

#[test]
fn a_window_shrunk_to_zero_under_data_in_flight_is_probed_and_recovers() {
    let mut t = established(&config(Algorithm::NewReno), NO_OPTIONS);
    write(&mut t, 3 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 3);
    // The peer acknowledges nothing and advertises a zero window.
    let mut shrink = ack_of(0, &[]);
    shrink.window_len = 0;
    send!(t, shrink);
    // At the RTO the retransmission cannot go: a probe (SND.UNA - 1) does.
    t.now = t.conn.poll_at();
    let out = t.dispatch();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].seq_number, seq(0) - 1);
    assert!(out[0].payload.is_empty());
    // The probe's ACK reopens the window and the data flows again.
    send!(t, ack_of(0, &[]));
    let resent = data_of(&t.dispatch());
    assert_eq!(resent[0], (0, MSS));
    send!(t, ack_of(3 * MSS, &[]));
    assert_eq!(t.conn.state(), State::Established);
    assert_eq!(t.conn.info().bytes_in_flight, 0);
}

#[test]
fn challenge_acks_are_rate_limited_per_rfc_5961_section_7() {
    let mut t = established(&config(Algorithm::NewReno), NO_OPTIONS);
    // Ten in-window RSTs that are not exact, within one second.
    for i in 0..10u32 {
        let mut rst = peer(
            IRS + 1 + 100 + i as usize,
            seq(0),
            TcpFlags::RST,
            NO_OPTIONS,
        );
        rst.window_len = 0;
        send!(t, rst);
    }
    let out = t.dispatch();
    assert_eq!(out.len(), 5, "five challenge ACKs a second: {out:?}");
    let c = t.conn.counters();
    assert_eq!((c.challenge_acks, c.challenge_acks_suppressed), (5, 5));
    assert_eq!(t.conn.state(), State::Established);
    // A second later the budget is back.
    t.now += Duration::from_secs(1);
    send!(t, peer(IRS + 1 + 50, seq(0), TcpFlags::SYN, NO_OPTIONS));
    assert_eq!(t.dispatch().len(), 1);
}

#[test]
fn nagle_does_not_hold_the_tail_of_a_segment_split_by_the_send_ring_wrap() {
    let mut cfg = config(Algorithm::NewReno);
    cfg.nodelay = false;
    cfg.tx_buffer = 1000;
    let mut t = established(&cfg, NO_OPTIONS);
    write(&mut t, 900);
    assert_eq!(data_of(&t.dispatch()), [(0, 900)]);
    // 800 acknowledged: the ring's head moves to 800, 100 bytes stay queued.
    send!(t, ack_of(800, &[]));
    write(&mut t, 300);
    assert!(
        t.dispatch().is_empty(),
        "Nagle: small data waits for the ACK"
    );
    send!(t, ack_of(900, &[]));
    // 300 bytes, stored across the ring's end: two segments at once, the
    // second not held back as if it were a small write.
    assert_eq!(data_of(&t.dispatch()), [(900, 100), (1000, 200)]);
}

fn sack_config() -> (Config, TcpOptions) {
    let mut cfg = config(Algorithm::NewReno);
    cfg.sack = true;
    cfg.tail_loss_probe = true;
    let mut o = NO_OPTIONS;
    o.sack_permitted = true;
    (cfg, o)
}

/// A Linux peer's duplicate ACKs rarely meet RFC 5681's definition: its
/// receive window grows as it reads, and in a two-way transfer they ride
/// on its data. RFC 6675 §2 counts every ACK that SACKs new data.
#[test]
fn sack_duplicates_that_change_the_window_or_carry_data_start_fast_retransmit() {
    let (cfg, o) = sack_config();
    let mut t = established(&cfg, o);
    write(&mut t, 20 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 10);
    send!(t, ack_of(MSS, &[]));
    assert_eq!(data_of(&t.dispatch()), [(10 * MSS, MSS), (11 * MSS, MSS)]);
    // Segment 1 is lost. The first duplicate opens the window a little,
    // the second carries 100 bytes of the peer's data, the third both.
    let mut d1 = ack_of(MSS, &[(2 * MSS, 3 * MSS)]);
    d1.window_len = PEER_WIN - 300;
    send!(t, d1);
    // Limited transmit: one new segment per the first two duplicates.
    assert_eq!(data_of(&t.dispatch()), [(12 * MSS, MSS)]);
    let mut d2 = ack_of(MSS, &[(2 * MSS, 4 * MSS)]);
    d2.window_len = PEER_WIN - 300;
    d2.payload = vec![1; 100];
    send!(t, d2);
    assert_eq!(data_of(&t.dispatch()), [(13 * MSS, MSS)]);
    assert_eq!(t.conn.counters().fast_retransmits, 0);
    let mut d3 = ack_of(MSS, &[(2 * MSS, 5 * MSS)]);
    d3.seq_number = IRS + 1 + 100;
    d3.window_len = PEER_WIN - 200;
    d3.payload = vec![2; 100];
    send!(t, d3);
    // The third: fast retransmit of exactly the hole, no RTO.
    assert_eq!(data_of(&t.dispatch()), [(MSS, MSS)]);
    let c = t.conn.counters();
    assert_eq!((c.fast_retransmits, c.rtos, c.retransmits), (1, 0, 1));
    assert!(t.conn.info().in_recovery);
    let mut full = ack_of(14 * MSS, &[]);
    full.seq_number = IRS + 1 + 200;
    send!(t, full);
    assert!(!t.conn.info().in_recovery);
}

/// RFC 6675 has no rule for a retransmission that is lost again: it waits
/// for the RTO (and then may not enter recovery again until everything
/// sent before is acknowledged). Data sent after the retransmission being
/// SACKed (three segments' worth, DupThresh) shows it was lost; it goes
/// again at once, as RACK (RFC 8985) would find.
#[test]
fn a_lost_fast_retransmission_is_sent_again_without_an_rto() {
    let (cfg, o) = sack_config();
    let mut t = established(&cfg, o);
    write(&mut t, 40 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 10);
    send!(t, ack_of(MSS, &[]));
    assert_eq!(data_of(&t.dispatch()), [(10 * MSS, MSS), (11 * MSS, MSS)]);
    // Segment 1 is lost; two duplicates bring 12 and 13 (limited
    // transmit), the third the fast retransmission.
    let mut out = Vec::new();
    for n in 3..=5 {
        send!(t, ack_of(MSS, &[(2 * MSS, n * MSS)]));
        out.extend(data_of(&t.dispatch()));
    }
    assert_eq!(out, [(12 * MSS, MSS), (13 * MSS, MSS), (MSS, MSS)]);
    // The retransmission is lost too. Everything else arrives; as the pipe
    // drains, new data goes out (RFC 6675 NextSeg rule 2).
    let mut new = Vec::new();
    for n in 6..=14 {
        send!(t, ack_of(MSS, &[(2 * MSS, n * MSS)]));
        new.extend(data_of(&t.dispatch()));
    }
    assert_eq!(
        new,
        (14..19).map(|i| (i * MSS, MSS)).collect::<Vec<_>>(),
        "new data while the retransmission is outstanding"
    );
    assert_eq!(t.conn.counters().retransmits, 1);
    // Two of the segments sent after the retransmission SACKed: not yet.
    send!(t, ack_of(MSS, &[(2 * MSS, 16 * MSS)]));
    assert!(!data_of(&t.dispatch()).contains(&(MSS, MSS)));
    // The third: segment 1 goes again, long before the RTO (no time passed).
    send!(t, ack_of(MSS, &[(2 * MSS, 17 * MSS)]));
    let out = data_of(&t.dispatch());
    assert_eq!(out.first(), Some(&(MSS, MSS)), "{out:?}");
    let c = t.conn.counters();
    assert_eq!((c.rtos, c.lost_retransmits), (0, 1));
    // It arrives: recovery ends without a timeout.
    let high = t.conn.snd_nxt() - seq(0);
    send!(t, ack_of(high, &[]));
    let info = t.conn.info();
    assert!(!info.in_recovery);
    assert_eq!(info.counters.rtos, 0);
}

/// RFC 8985 §7: the last two segments of a flight are lost and nothing
/// follows them, so no duplicate ACK can come. About two round trips later
/// a probe resends the last one, long before the RTO; its SACK shows the
/// segment before it lost (RACK's inference), which fast recovery resends.
#[test]
fn a_lost_tail_is_probed_two_round_trips_later_not_after_the_rto() {
    let (cfg, o) = sack_config();
    let mut t = established_after(&cfg, o, Duration::from_millis(10));
    write(&mut t, 4 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 4);
    t.advance(Duration::from_millis(10));
    send!(t, ack_of(2 * MSS, &[]));
    assert!(data_of(&t.dispatch()).is_empty());
    // PTO = 2·SRTT (SRTT 10 ms) with two segments out; the RTO is 200 ms.
    t.advance(Duration::from_millis(19));
    assert!(data_of(&t.dispatch()).is_empty(), "not before the PTO");
    t.advance(Duration::from_millis(2));
    assert_eq!(data_of(&t.dispatch()), [(3 * MSS, MSS)], "the probe");
    let c = t.conn.counters();
    assert_eq!((c.tail_loss_probes, c.rtos, c.retransmits), (1, 0, 1));
    t.advance(Duration::from_millis(10));
    send!(t, ack_of(2 * MSS, &[(3 * MSS, 4 * MSS)]));
    assert_eq!(data_of(&t.dispatch()), [(2 * MSS, MSS)], "the hole");
    assert!(t.conn.info().in_recovery);
    t.advance(Duration::from_millis(10));
    send!(t, ack_of(4 * MSS, &[]));
    t.dispatch();
    let info = t.conn.info();
    assert_eq!(info.counters.rtos, 0);
    assert_eq!(info.counters.fast_retransmits, 1);
    assert!(!info.in_recovery);
}

/// One segment in flight: the PTO adds the worst-case delayed ACK
/// (200 ms), so the probe would come no sooner than the RTO and the RTO
/// recovers it, as RFC 8985 §7.2 intends.
#[test]
fn a_single_segment_flight_is_left_to_the_rto() {
    let (cfg, o) = sack_config();
    let mut t = established_after(&cfg, o, Duration::from_millis(10));
    write(&mut t, MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 1);
    t.advance(Duration::from_millis(199));
    assert!(data_of(&t.dispatch()).is_empty());
    t.advance(Duration::from_millis(2));
    assert_eq!(data_of(&t.dispatch()), [(0, MSS)]);
    let c = t.conn.counters();
    assert_eq!((c.tail_loss_probes, c.rtos), (0, 1));
}

/// With data waiting that cwnd held back, the probe is new data (the
/// receive window allows it; cwnd does not count for the probe), and a
/// probe whose ACK carries a D-SACK (the original arrived) costs no cwnd.
#[test]
fn a_probe_sends_new_data_when_there_is_some() {
    let (cfg, o) = sack_config();
    let mut t = established_after(&cfg, o, Duration::from_millis(10));
    write(&mut t, 14 * MSS);
    assert_eq!(data_of(&t.dispatch()).len(), 10, "initial window");
    t.advance(Duration::from_millis(21));
    assert_eq!(data_of(&t.dispatch()), [(10 * MSS, MSS)], "new data");
    assert_eq!(t.conn.counters().tail_loss_probes, 1);
    assert_eq!(t.conn.counters().retransmits, 0);
    // Everything arrived after all (a slow path): the ACK covers the probe.
    let cwnd = t.conn.info().cwnd;
    send!(t, ack_of(11 * MSS, &[]));
    t.dispatch();
    assert!(t.conn.info().cwnd >= cwnd, "no loss: no response");
    assert_eq!(t.conn.counters().rtos, 0);
}

/// Without SACK, or switched off, there is no probe: the RTO recovers.
#[test]
fn without_sack_or_when_off_the_tail_waits_for_the_rto() {
    for (sack, tlp) in [(false, true), (true, false)] {
        let (mut cfg, mut o) = sack_config();
        cfg.sack = sack;
        o.sack_permitted = sack;
        cfg.tail_loss_probe = tlp;
        let mut t = established_after(&cfg, o, Duration::from_millis(10));
        write(&mut t, 4 * MSS);
        assert_eq!(data_of(&t.dispatch()).len(), 4);
        t.advance(Duration::from_millis(10));
        send!(t, ack_of(3 * MSS, &[]));
        t.advance(Duration::from_millis(100));
        assert!(data_of(&t.dispatch()).is_empty(), "sack {sack} tlp {tlp}");
        t.advance(Duration::from_millis(150));
        assert_eq!(data_of(&t.dispatch()), [(3 * MSS, MSS)]);
        let c = t.conn.counters();
        assert_eq!(
            (c.tail_loss_probes, c.rtos),
            (0, 1),
            "sack {sack} tlp {tlp}"
        );
    }
}

/// A device queue with room for `room` more segments, then full.
struct Room {
    room: usize,
    got: Vec<Segment>,
}

impl flowlane::tcp::Sink for Room {
    fn emit(
        &mut self,
        _src: std::net::Ipv4Addr,
        _dst: std::net::Ipv4Addr,
        repr: &flowlane::wire::TcpRepr<'_>,
    ) -> bool {
        if self.got.len() == self.room {
            return false;
        }
        self.got.push(Segment::from_repr(repr));
        true
    }
}

/// New data goes out as one burst of full segments that the sink cuts
/// (`Sink::emit_split`). When the device takes only part of a burst, the
/// rest goes out on the next dispatch from where it stopped: no segment
/// lost or sent twice, PSH only on the segment that empties the buffer.
#[test]
fn a_burst_the_device_takes_only_part_of_resumes_where_it_stopped() {
    let mut t = established(&config(Algorithm::Reno), NO_OPTIONS);
    write(&mut t, 10 * MSS + 300);
    let mut sink = Room {
        room: 3,
        got: Vec::new(),
    };
    assert_eq!(t.conn.dispatch(t.now, &mut sink), 3);
    assert_eq!(data_of(&sink.got), [(0, MSS), (MSS, MSS), (2 * MSS, MSS)]);
    assert!(sink.got.iter().all(|s| s.flags == TcpFlags::ACK));
    // The rest of the initial window of 10 segments.
    let out = t.dispatch();
    assert_eq!(
        data_of(&out),
        (3..10).map(|i| (i * MSS, MSS)).collect::<Vec<_>>()
    );
    assert!(out.iter().all(|s| s.flags == TcpFlags::ACK));
    assert_eq!(t.conn.counters().segs_out, 2 + 10, "SYN, ACK, 10 data");
    // All acknowledged: the last 300 bytes go out, pushed.
    send!(t, ack_of(10 * MSS, &[]));
    let out = t.dispatch();
    assert_eq!(data_of(&out), [(10 * MSS, 300)]);
    assert_eq!(out[0].flags, TcpFlags::ACK | TcpFlags::PSH);
    assert_eq!(t.conn.counters().segs_out, 13);
}
