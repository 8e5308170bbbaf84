//! Listen backlog semantics: the accept queue holds at most `backlog`
//! established children, the SYN queue at most `max_syn_backlog` half-open
//! ones, overflows are dropped and counted, a SYN flood cannot disturb an
//! established connection, and closing a listener resets the children
//! nobody accepted.
//!
//! Spoofed SYNs are injected into B's receive path through the tap of
//! `common::Driver`. Their source, 10.77.0.200, is given a static ARP entry
//! on B pointing at a MAC nobody on the link has, so B's SYN-ACKs leave on
//! the wire and are never answered, as in a real flood.

mod framekit;
use framekit as common;

use core::net::{Ipv4Addr, SocketAddrV4};

use common::{listen, random_bytes, sha, start_connect, tcp_frame, Driver, Flow, PORT, SECOND};
use flowlane::api::pair::{Pair, B_IP, B_MAC};
use flowlane::api::{SocketError, SocketHandle, State};
use flowlane::phy::{Link, LinkConfig};
use flowlane::time::{Duration, Instant};
use flowlane::wire::{EthernetAddress, SeqNumber, TcpFlags, TcpOptions, TcpRepr};

const SPOOF_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 200);
const SPOOF_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);

fn spoofed_syn(src_port: u16) -> Vec<u8> {
    let syn = TcpRepr {
        src_port,
        dst_port: PORT,
        seq_number: SeqNumber(u32::from(src_port).wrapping_mul(0x9e37_79b9)),
        ack_number: SeqNumber(0),
        flags: TcpFlags::SYN,
        window_len: 64240,
        urgent_pointer: 0,
        options: TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        },
        payload: &[],
    };
    tcp_frame(SPOOF_MAC, B_MAC, SPOOF_IP, B_IP, &syn)
}

/// A pair whose B has `max_syn_backlog` = `syn_backlog` and knows the
/// spoofed source's (unanswering) MAC.
fn driver(seed: u64, syn_backlog: usize) -> Driver {
    let (a, mut b) = Pair::configs();
    b.endpoint.max_syn_backlog = syn_backlog;
    let mut p = Pair::with(Link::new(LinkConfig::default(), seed), a, b);
    p.b.iface
        .add_neighbor(SPOOF_IP, SPOOF_MAC, Instant::FAR_FUTURE);
    Driver::new(p)
}

fn count(p: &Pair, on_b: bool, state: State) -> u64 {
    let tcp = if on_b { &p.b.tcp } else { &p.a.tcp };
    tcp.state_counts()[state as usize]
}

/// Connects one client after another, each to ESTABLISHED.
fn connect_one_by_one(p: &mut Pair, n: usize) -> Vec<SocketHandle> {
    (0..n)
        .map(|_| {
            let c = start_connect(p, PORT);
            assert!(p.run_until(SECOND, |p| p.a.tcp.state(c).unwrap() == State::Established));
            c
        })
        .collect()
}

#[test]
fn backlog_n_completes_n_handshakes_and_later_syns_are_dropped_and_counted() {
    let mut p = Pair::new(1);
    let l = listen(&mut p.b, PORT, 4);
    connect_one_by_one(&mut p, 4);
    let extra: Vec<SocketHandle> = (0..2).map(|_| start_connect(&mut p, PORT)).collect();
    // Less than the initial RTO: each extra SYN was seen exactly once.
    p.run_for(Duration::from_millis(500));
    for &c in &extra {
        assert_eq!(p.a.tcp.state(c).unwrap(), State::SynSent);
    }
    let counters = p.b.tcp.counters();
    assert_eq!(counters.accept_queue_overflow, 2);
    assert_eq!(counters.syn_queue_overflow, 0);
    assert_eq!(count(&p, true, State::Established), 4);
    assert_eq!(count(&p, true, State::SynReceived), 0);
    assert!(p.b.tcp.readiness(l).unwrap().readable);
    for _ in 0..4 {
        p.b.tcp.accept(l).unwrap();
    }
    assert_eq!(p.b.tcp.accept(l).map(drop), Err(SocketError::WouldBlock));
}

#[test]
fn accepting_frees_room_and_a_retransmitted_syn_then_completes() {
    let mut p = Pair::new(2);
    let l = listen(&mut p.b, PORT, 2);
    connect_one_by_one(&mut p, 2);
    let late = start_connect(&mut p, PORT);
    p.run_for(Duration::from_millis(500));
    assert_eq!(p.b.tcp.counters().accept_queue_overflow, 1);
    p.b.tcp.accept(l).unwrap();
    // The SYN retransmitted after the initial RTO (1 s) finds room.
    assert!(
        p.run_until(Duration::from_secs(2), |p| p.a.tcp.state(late).unwrap()
            == State::Established)
    );
    assert_eq!(p.b.tcp.counters().accept_queue_overflow, 1);
    assert_eq!(count(&p, true, State::Established), 3);
    let mut accepted = 1;
    while p.b.tcp.accept(l).is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 3);
}

#[test]
fn concurrent_handshakes_never_fill_the_accept_queue_past_the_backlog() {
    let mut p = Pair::new(3);
    let l = listen(&mut p.b, PORT, 4);
    // All SYNs arrive before any handshake completes.
    let clients: Vec<SocketHandle> = (0..6).map(|_| start_connect(&mut p, PORT)).collect();
    p.run_for(Duration::from_millis(500));
    let queued = count(&p, true, State::Established);
    assert!(queued <= 4, "{queued} children queued with backlog 4");
    assert!(p.b.tcp.counters().accept_queue_overflow >= 2);
    // Once the application accepts, every client gets through (none lost).
    let mut accepted = 0;
    assert!(p.run_until(Duration::from_secs(30), |p| {
        while p.b.tcp.accept(l).is_ok() {
            accepted += 1;
        }
        accepted == 6
    }));
    for c in clients {
        assert_eq!(p.a.tcp.state(c).unwrap(), State::Established);
    }
}

#[test]
fn syn_flood_fills_only_the_bounded_syn_queue_while_an_established_flow_stays_intact() {
    const SYN_BACKLOG: usize = 16;
    const FLOOD: u16 = 500;
    let mut d = driver(4, SYN_BACKLOG);
    let (c, s, l) = d.connect();
    let mut flow = Flow::new(random_bytes(4, 2 << 20));
    let mut next_port = 1024u16;
    assert!(d.run_until(Duration::from_secs(60), |d| {
        // A few spoofed SYNs per step, all through the transfer.
        for _ in 0..3 {
            if next_port < 1024 + FLOOD {
                d.tap.inject.push_back(spoofed_syn(next_port));
                next_port += 1;
            }
        }
        common::pump(&mut d.p.a, c, &mut d.p.b, s, &mut flow);
        flow.done() && next_port == 1024 + FLOOD && d.tap.inject.is_empty()
    }));
    assert_eq!(flow.error, None);
    assert_eq!(sha(&flow.received), sha(&flow.data));
    assert_eq!(d.tap.injected, u64::from(FLOOD));
    // Well before the first half-open child could time out (SYN-ACK retries
    // take two minutes), exactly SYN_BACKLOG children exist.
    assert!(d.p.now < Instant::from_secs(10), "{:?}", d.p.now);
    assert_eq!(count(&d.p, true, State::SynReceived), SYN_BACKLOG as u64);
    let counters = *d.p.b.tcp.counters();
    assert_eq!(
        counters.syn_queue_overflow,
        u64::from(FLOOD) - SYN_BACKLOG as u64
    );
    assert_eq!(counters.accept_queue_overflow, 0);
    assert_eq!(d.p.b.tcp.connection_count(), 1 + SYN_BACKLOG);
    assert!(
        !d.p.b.tcp.readiness(l).unwrap().readable,
        "nothing to accept"
    );
    assert_eq!(d.p.a.tcp.state(c).unwrap(), State::Established);
    assert_eq!(d.p.b.tcp.state(s).unwrap(), State::Established);
}

#[test]
fn syn_during_a_flood_is_dropped_and_the_queue_drains_once_syn_ack_retries_are_exhausted() {
    const SYN_BACKLOG: usize = 8;
    let mut d = driver(5, SYN_BACKLOG);
    let l = listen(&mut d.p.b, PORT, 16);
    for port in 2000..2100 {
        d.tap.inject.push_back(spoofed_syn(port));
    }
    d.run_until(SECOND, |d| d.tap.inject.is_empty());
    assert_eq!(count(&d.p, true, State::SynReceived), SYN_BACKLOG as u64);
    let overflow = d.p.b.tcp.counters().syn_queue_overflow;
    assert_eq!(overflow, 100 - SYN_BACKLOG as u64);
    // A real client now: its SYN is dropped like the spoofed ones.
    let c = start_connect(&mut d.p, PORT);
    d.run_until(Duration::from_millis(500), |_| false);
    assert_eq!(d.p.a.tcp.state(c).unwrap(), State::SynSent);
    assert_eq!(d.p.b.tcp.counters().syn_queue_overflow, overflow + 1);
    let now = d.p.now;
    d.p.a.tcp.close(c, now).unwrap();
    // The half-open children give up after their SYN-ACK retries and the
    // queue empties by itself.
    assert!(d.run_until(Duration::from_secs(600), |d| count(
        &d.p,
        true,
        State::SynReceived
    ) == 0));
    assert_eq!(d.p.b.tcp.connection_count(), 0);
    assert!(!d.p.b.tcp.readiness(l).unwrap().readable);
    // And a client gets in at once.
    let c = start_connect(&mut d.p, PORT);
    assert!(d.run_until(SECOND, |d| d.p.a.tcp.state(c).unwrap()
        == State::Established));
    assert!(d.p.b.tcp.accept(l).is_ok());
}

#[test]
fn closing_a_listener_resets_its_unaccepted_children() {
    let mut d = driver(6, 64);
    let l = listen(&mut d.p.b, PORT, 16);
    // Three established children nobody accepted...
    let clients: Vec<SocketHandle> = (0..3).map(|_| start_connect(&mut d.p, PORT)).collect();
    assert!(d.run_until(SECOND, |d| clients.iter().all(|&c| d
        .p
        .a
        .tcp
        .state(c)
        .unwrap()
        == State::Established)));
    // ...and two half-open ones.
    d.tap.inject.push_back(spoofed_syn(3000));
    d.tap.inject.push_back(spoofed_syn(3001));
    d.run_until(Duration::from_millis(10), |d| d.tap.inject.is_empty());
    assert_eq!(count(&d.p, true, State::Established), 3);
    assert_eq!(count(&d.p, true, State::SynReceived), 2);
    let now = d.p.now;
    d.p.b.tcp.close(l, now).unwrap();
    assert!(d.run_until(SECOND, |d| clients.iter().all(|&c| d
        .p
        .a
        .tcp
        .state(c)
        .unwrap()
        == State::Closed)));
    for &c in &clients {
        assert_eq!(d.p.a.tcp.take_error(c).unwrap(), Some(SocketError::Reset));
    }
    d.run_until(SECOND, |_| false);
    assert_eq!(d.p.b.tcp.connection_count(), 0);
    assert_eq!(d.p.b.tcp.state_counts(), [0; State::COUNT]);
    // The port is free again.
    let again = d.p.b.tcp.socket().unwrap();
    d.p.b
        .tcp
        .bind(again, SocketAddrV4::new(B_IP, PORT))
        .unwrap();
}

#[test]
fn closing_a_listener_leaves_accepted_connections_working() {
    let mut p = Pair::new(7);
    let l = listen(&mut p.b, PORT, 16);
    let c = start_connect(&mut p, PORT);
    let mut s = None;
    assert!(p.run_until(SECOND, |p| {
        s = s.or_else(|| p.b.tcp.accept(l).ok().map(|x| x.0));
        s.is_some()
    }));
    let s = s.unwrap();
    let now = p.now;
    p.b.tcp.close(l, now).unwrap();
    let mut flow = Flow::new(random_bytes(7, 256 * 1024));
    assert!(p.run_until(Duration::from_secs(10), |p| {
        common::pump(&mut p.a, c, &mut p.b, s, &mut flow);
        flow.done()
    }));
    assert_eq!(flow.error, None);
    assert_eq!(sha(&flow.received), sha(&flow.data));
    assert_eq!(p.b.tcp.state(s).unwrap(), State::Established);
}

#[test]
fn listen_backlog_zero_still_admits_one_connection() {
    // Linux treats backlog 0 as 1 (after clamping); flowlane clamps to 1.
    let mut p = Pair::new(8);
    let l = listen(&mut p.b, PORT, 0);
    let first = start_connect(&mut p, PORT);
    assert!(p.run_until(SECOND, |p| p.a.tcp.state(first).unwrap()
        == State::Established));
    let second = start_connect(&mut p, PORT);
    p.run_for(Duration::from_millis(500));
    assert_eq!(p.a.tcp.state(second).unwrap(), State::SynSent);
    assert!(p.b.tcp.accept(l).is_ok());
}

#[test]
fn rst_for_a_half_open_child_frees_its_syn_queue_slot() {
    let mut d = driver(9, 1);
    let l = listen(&mut d.p.b, PORT, 16);
    d.tap.inject.push_back(spoofed_syn(4000));
    d.run_until(Duration::from_millis(10), |d| d.tap.inject.is_empty());
    assert_eq!(count(&d.p, true, State::SynReceived), 1);
    // The spoofed peer answers our SYN-ACK with RST (SEQ = its ISN + 1).
    let isn = u32::from(4000u16).wrapping_mul(0x9e37_79b9);
    let rst = TcpRepr {
        src_port: 4000,
        dst_port: PORT,
        seq_number: SeqNumber(isn.wrapping_add(1)),
        ack_number: SeqNumber(0),
        flags: TcpFlags::RST,
        window_len: 0,
        urgent_pointer: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    d.tap
        .inject
        .push_back(tcp_frame(SPOOF_MAC, B_MAC, SPOOF_IP, B_IP, &rst));
    d.run_until(Duration::from_millis(10), |d| d.tap.inject.is_empty());
    assert_eq!(count(&d.p, true, State::SynReceived), 0);
    assert_eq!(d.p.b.tcp.connection_count(), 0);
    // RFC 9293 §3.10.7.4: the TCB goes back to LISTEN quietly; the slot in
    // the SYN queue (size 1) is free for a real client.
    let c = start_connect(&mut d.p, PORT);
    assert!(d.run_until(SECOND, |d| d.p.a.tcp.state(c).unwrap()
        == State::Established));
    assert_eq!(d.p.b.tcp.counters().syn_queue_overflow, 0);
    assert!(d.p.b.tcp.accept(l).is_ok());
}

#[test]
fn child_reset_before_accept_is_still_accepted_and_reports_reset() {
    // Linux keeps a reset child in the accept queue; accept() returns it and
    // the first read reports ECONNRESET.
    let mut p = Pair::new(10);
    let l = listen(&mut p.b, PORT, 16);
    let c = start_connect(&mut p, PORT);
    assert!(p.run_until(SECOND, |p| count(p, true, State::Established) == 1));
    p.a.tcp.abort(c).unwrap();
    assert!(p.run_until(SECOND, |p| count(p, true, State::Established) == 0));
    let (s, _) = p.b.tcp.accept(l).expect("the reset child is still queued");
    let mut buf = [0u8; 8];
    assert_eq!(p.b.tcp.recv(s, &mut buf), Err(SocketError::Reset));
}

#[test]
fn listen_again_on_a_listener_updates_its_backlog() {
    let mut p = Pair::new(11);
    let l = listen(&mut p.b, PORT, 1);
    p.b.tcp.listen(l, 3).unwrap();
    for _ in 0..3 {
        start_connect(&mut p, PORT);
        p.run_for(Duration::from_millis(100));
    }
    assert_eq!(p.b.tcp.counters().accept_queue_overflow, 0);
    assert_eq!(count(&p, true, State::Established), 3);
}

#[test]
fn retransmitted_syn_arriving_with_the_final_ack_leaves_no_work_owed() {
    let mut d = Driver::new(Pair::new(12));
    let _l = listen(&mut d.p.b, PORT, 16);
    let c = start_connect(&mut d.p, PORT);
    assert!(d.run_until(SECOND, |d| count(&d.p, true, State::SynReceived) == 1));
    // A copy of the client's SYN, as if retransmitted or duplicated by the
    // network, lands right before the client's ACK.
    let syn = (0..16)
        .filter_map(|i| d.tap.sample(i))
        .find(|f| common::parse_tcp(f).is_some_and(|(_, _, t)| t.flags == TcpFlags::SYN))
        .expect("the client's SYN was seen")
        .to_vec();
    d.tap.inject.push_back(syn);
    assert!(d.run_until(SECOND, |d| count(&d.p, true, State::Established) == 1));
    assert_eq!(d.p.a.tcp.state(c).unwrap(), State::Established);
    for _ in 0..10 {
        d.step();
    }
    let owed_now = d.p.b.tcp.poll_at() == Some(Instant::ZERO);
    assert!(!owed_now, "B claims work it never does");
}
