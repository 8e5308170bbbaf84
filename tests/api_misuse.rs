//! Socket calls made in the wrong state return the typed error the C API
//! maps to an errno, and never disturb other sockets or lose data.
//!
//! The expected errnos were checked against Linux 6.x with Python's socket
//! module; where flowlane differs, the test asserts what flowlane returns and
//! says so (see `send_on_a_listener_or_unconnected_socket_reports_not_connected`).

mod framekit;
use framekit as common;

use core::net::{Ipv4Addr, SocketAddrV4};

use common::{connect, listen, random_bytes, sha, start_connect, PORT, SECOND};
use flowlane::api::pair::{Pair, A_IP, B_IP};
use flowlane::api::{Shutdown, SocketError, SocketHandle, State};
use flowlane::time::Duration;

fn tcp_info_acked(p: &Pair, c: SocketHandle) -> u64 {
    p.a.tcp.info(c).unwrap().counters.bytes_acked
}

#[test]
fn send_on_a_listener_or_unconnected_socket_reports_not_connected() {
    // Linux returns EPIPE here (tcp_sendmsg -> sk_stream_wait_connect), POSIX
    // and the BSDs ENOTCONN; flowlane follows POSIX.
    let mut p = Pair::new(1);
    let l = listen(&mut p.b, PORT, 8);
    assert_eq!(p.b.tcp.send(l, b"x"), Err(SocketError::NotConnected));
    let s = p.b.tcp.socket().unwrap();
    assert_eq!(p.b.tcp.send(s, b"x"), Err(SocketError::NotConnected));
}

#[test]
fn recv_on_a_listener_or_unconnected_socket_reports_not_connected() {
    // Linux: ENOTCONN for both.
    let mut p = Pair::new(2);
    let l = listen(&mut p.b, PORT, 8);
    let mut buf = [0u8; 8];
    assert_eq!(p.b.tcp.recv(l, &mut buf), Err(SocketError::NotConnected));
    let s = p.b.tcp.socket().unwrap();
    assert_eq!(p.b.tcp.recv(s, &mut buf), Err(SocketError::NotConnected));
}

#[test]
fn shutdown_and_peer_addr_on_an_unconnected_socket_report_not_connected() {
    let mut p = Pair::new(3);
    let s = p.a.tcp.socket().unwrap();
    assert_eq!(
        p.a.tcp.shutdown(s, Shutdown::Write),
        Err(SocketError::NotConnected)
    );
    assert_eq!(p.a.tcp.peer_addr(s), Err(SocketError::NotConnected));
}

#[test]
fn connect_again_reports_in_progress_while_syn_sent_and_already_connected_once_established() {
    let mut p = Pair::new(4);
    let _l = listen(&mut p.b, PORT, 8);
    let c = start_connect(&mut p, PORT);
    let to = SocketAddrV4::new(B_IP, PORT);
    let now = p.now;
    assert_eq!(p.a.tcp.state(c).unwrap(), State::SynSent);
    assert_eq!(p.a.tcp.connect(c, now, to), Err(SocketError::InProgress));
    assert!(p.run_until(SECOND, |p| p.a.tcp.state(c).unwrap() == State::Established));
    let now = p.now;
    assert_eq!(
        p.a.tcp.connect(c, now, to),
        Err(SocketError::AlreadyConnected)
    );
    // Neither call disturbed the connection.
    assert_eq!(p.a.tcp.state(c).unwrap(), State::Established);
    assert_eq!(p.a.tcp.counters().connections_opened, 1);
}

#[test]
fn connect_on_a_listener_reports_already_connected_as_linux_does() {
    // Linux's __inet_stream_connect: EISCONN unless the socket is CLOSED.
    let mut p = Pair::new(5);
    let l = listen(&mut p.a, 7000, 8);
    let now = p.now;
    assert_eq!(
        p.a.tcp.connect(l, now, SocketAddrV4::new(B_IP, PORT)),
        Err(SocketError::AlreadyConnected)
    );
    assert_eq!(p.a.tcp.state(l).unwrap(), State::Listen);
}

#[test]
fn listen_on_a_connected_socket_reports_invalid_state() {
    let mut p = Pair::new(6);
    let (c, s, _) = connect(&mut p);
    assert_eq!(p.a.tcp.listen(c, 8), Err(SocketError::InvalidState));
    assert_eq!(p.b.tcp.listen(s, 8), Err(SocketError::InvalidState));
    assert_eq!(p.a.tcp.state(c).unwrap(), State::Established);
}

#[test]
fn bind_twice_reports_invalid_state() {
    let mut p = Pair::new(7);
    let s = p.a.tcp.socket().unwrap();
    p.a.tcp.bind(s, SocketAddrV4::new(A_IP, 5000)).unwrap();
    assert_eq!(
        p.a.tcp.bind(s, SocketAddrV4::new(A_IP, 5001)),
        Err(SocketError::InvalidState)
    );
    assert_eq!(p.a.tcp.local_addr(s).unwrap().port(), 5000);
    // The refused bind did not take port 5001.
    let t = p.a.tcp.socket().unwrap();
    p.a.tcp.bind(t, SocketAddrV4::new(A_IP, 5001)).unwrap();
}

#[test]
fn bind_on_a_connected_socket_reports_invalid_state() {
    let mut p = Pair::new(8);
    let (c, _, _) = connect(&mut p);
    assert_eq!(
        p.a.tcp.bind(c, SocketAddrV4::new(A_IP, 5000)),
        Err(SocketError::InvalidState)
    );
}

#[test]
fn bind_to_an_address_that_is_not_ours_reports_addr_not_available() {
    let mut p = Pair::new(9);
    let s = p.a.tcp.socket().unwrap();
    assert_eq!(
        p.a.tcp.bind(s, SocketAddrV4::new(B_IP, 5000)),
        Err(SocketError::AddrNotAvailable)
    );
    assert_eq!(
        p.a.tcp
            .bind(s, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 0)),
        Err(SocketError::AddrNotAvailable)
    );
    // Still unbound: a good bind works afterwards.
    p.a.tcp.bind(s, SocketAddrV4::new(A_IP, 5000)).unwrap();
}

#[test]
fn second_bind_to_the_same_port_reports_addr_in_use() {
    let mut p = Pair::new(10);
    let a = p.a.tcp.socket().unwrap();
    p.a.tcp.bind(a, SocketAddrV4::new(A_IP, 5000)).unwrap();
    let b = p.a.tcp.socket().unwrap();
    assert_eq!(
        p.a.tcp.bind(b, SocketAddrV4::new(A_IP, 5000)),
        Err(SocketError::AddrInUse)
    );
    assert_eq!(
        p.a.tcp
            .bind(b, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000)),
        Err(SocketError::AddrInUse)
    );
    // A listener holds its port the same way, SO_REUSEADDR or not.
    let l = listen(&mut p.a, 6000, 8);
    let c = p.a.tcp.socket().unwrap();
    p.a.tcp.set_options(c, |o| o.reuse_addr = true).unwrap();
    assert_eq!(
        p.a.tcp.bind(c, SocketAddrV4::new(A_IP, 6000)),
        Err(SocketError::AddrInUse)
    );
    // Closing frees the port.
    let now = p.now;
    p.a.tcp.close(l, now).unwrap();
    p.a.tcp.bind(c, SocketAddrV4::new(A_IP, 6000)).unwrap();
}

/// The server aborts (SO_LINGER {1, 0}); the client sees the RST.
fn reset_by_peer(p: &mut Pair) -> SocketHandle {
    let (c, s, _) = connect(p);
    p.b.tcp
        .set_options(s, |o| o.linger = Some(Duration::ZERO))
        .unwrap();
    let now = p.now;
    p.b.tcp.close(s, now).unwrap();
    assert!(p.run_until(SECOND, |p| p.a.tcp.state(c).unwrap() == State::Closed));
    c
}

#[test]
fn recv_after_peer_reset_reports_reset_once_then_end_of_stream() {
    // Linux: the first recv() reports ECONNRESET and consumes sk_err; later
    // calls return 0 and SO_ERROR is 0. SendError::Failed's doc promises the
    // same ("reported once").
    let mut p = Pair::new(11);
    let c = reset_by_peer(&mut p);
    let mut buf = [0u8; 8];
    assert!(p.a.tcp.readiness(c).unwrap().error);
    assert_eq!(p.a.tcp.recv(c, &mut buf), Err(SocketError::Reset));
    assert_eq!(p.a.tcp.recv(c, &mut buf), Ok(0));
    assert_eq!(p.a.tcp.take_error(c).unwrap(), None);
}

#[test]
fn send_after_peer_reset_reports_reset_once_then_pipe() {
    // Linux: ECONNRESET, then EPIPE.
    let mut p = Pair::new(12);
    let c = reset_by_peer(&mut p);
    assert_eq!(p.a.tcp.send(c, b"x"), Err(SocketError::Reset));
    assert_eq!(p.a.tcp.send(c, b"x"), Err(SocketError::Pipe));
}

#[test]
fn take_error_reports_a_reset_once_and_then_recv_sees_end_of_stream() {
    let mut p = Pair::new(13);
    let c = reset_by_peer(&mut p);
    assert_eq!(p.a.tcp.take_error(c).unwrap(), Some(SocketError::Reset));
    assert_eq!(p.a.tcp.take_error(c).unwrap(), None);
    let mut buf = [0u8; 8];
    assert_eq!(p.a.tcp.recv(c, &mut buf), Ok(0));
    assert_eq!(p.a.tcp.send(c, b"x"), Err(SocketError::Pipe));
}

#[test]
fn send_after_shutdown_write_reports_pipe_and_reading_still_works() {
    let mut p = Pair::new(14);
    let (c, s, _) = connect(&mut p);
    p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
    assert_eq!(p.a.tcp.send(c, b"x"), Err(SocketError::Pipe));
    p.b.tcp.send(s, b"still flowing").unwrap();
    let mut buf = [0u8; 32];
    let mut got = 0;
    assert!(p.run_until(SECOND, |p| {
        if let Ok(n) = p.a.tcp.recv(c, &mut buf) {
            got = n;
        }
        got > 0
    }));
    assert_eq!(&buf[..got], b"still flowing");
    assert_eq!(p.a.tcp.send(c, b"x"), Err(SocketError::Pipe));
}

fn all_calls_report_bad_handle(p: &mut Pair, h: SocketHandle) {
    let tcp = &mut p.a.tcp;
    let now = p.now;
    let mut buf = [0u8; 8];
    let bad: Result<(), SocketError> = Err(SocketError::BadHandle);
    assert_eq!(tcp.send(h, b"x").map(drop), bad);
    assert_eq!(tcp.recv(h, &mut buf).map(drop), bad);
    assert_eq!(tcp.peek(h, &mut buf).map(drop), bad);
    assert_eq!(tcp.bind(h, SocketAddrV4::new(A_IP, 0)), bad);
    assert_eq!(tcp.listen(h, 8), bad);
    assert_eq!(tcp.accept(h).map(drop), bad);
    assert_eq!(tcp.connect(h, now, SocketAddrV4::new(B_IP, PORT)), bad);
    assert_eq!(tcp.shutdown(h, Shutdown::Both), bad);
    assert_eq!(tcp.set_options(h, |o| o.nodelay = true), bad);
    assert_eq!(tcp.options(h).map(drop), bad);
    assert_eq!(tcp.readiness(h).map(drop), bad);
    assert_eq!(tcp.take_error(h).map(drop), bad);
    assert_eq!(tcp.state(h).map(drop), bad);
    assert_eq!(tcp.info(h).map(drop), bad);
    assert_eq!(tcp.local_addr(h).map(drop), bad);
    assert_eq!(tcp.peer_addr(h).map(drop), bad);
    assert_eq!(tcp.history(h).map(drop), bad);
    assert_eq!(tcp.abort(h), bad);
    assert_eq!(tcp.close(h, now), bad);
}

#[test]
fn every_call_on_a_closed_handle_reports_bad_handle() {
    let mut p = Pair::new(15);
    let unbound = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp.close(unbound, now).unwrap();
    all_calls_report_bad_handle(&mut p, unbound);
    let (c, _, _) = connect(&mut p);
    let now = p.now;
    p.a.tcp.close(c, now).unwrap();
    // The connection is still closing (FIN-WAIT), but the handle is gone.
    all_calls_report_bad_handle(&mut p, c);
    let listener = listen(&mut p.a, 7000, 8);
    let now = p.now;
    p.a.tcp.close(listener, now).unwrap();
    all_calls_report_bad_handle(&mut p, listener);
}

#[test]
fn handle_that_never_existed_reports_bad_handle() {
    let mut p = Pair::new(16);
    all_calls_report_bad_handle(&mut p, SocketHandle::from_parts(12345, 0));
}

#[test]
fn stale_handle_never_reaches_the_socket_that_reuses_its_slot() {
    let mut p = Pair::new(17);
    let old = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp.close(old, now).unwrap();
    let new = p.a.tcp.socket().unwrap();
    assert_eq!(new.index(), old.index(), "the slot is reused");
    assert_ne!(new, old);
    p.a.tcp.bind(new, SocketAddrV4::new(A_IP, 5000)).unwrap();
    assert_eq!(
        p.a.tcp.local_addr(old),
        Err(SocketError::BadHandle),
        "the stale handle must not see the new socket"
    );
    assert_eq!(p.a.tcp.close(old, now), Err(SocketError::BadHandle));
    assert_eq!(p.a.tcp.local_addr(new).unwrap().port(), 5000);
}

#[test]
fn stale_connection_handle_never_reaches_a_connection_that_reuses_its_slot() {
    let mut p = Pair::new(18);
    let (c, s, _) = connect(&mut p);
    // Abortive close frees the slot at once (no TIME-WAIT).
    p.a.tcp
        .set_options(c, |o| o.linger = Some(Duration::ZERO))
        .unwrap();
    let now = p.now;
    p.a.tcp.close(c, now).unwrap();
    assert!(p.run_until(SECOND, |p| p.b.tcp.state(s).unwrap() == State::Closed));
    let c2 = start_connect(&mut p, PORT);
    assert_eq!(c2.index(), c.index(), "the slot is reused");
    assert!(p.run_until(SECOND, |p| p.a.tcp.state(c2).unwrap() == State::Established));
    assert_eq!(
        p.a.tcp.send(c, b"to the wrong socket"),
        Err(SocketError::BadHandle)
    );
    let mut buf = [0u8; 8];
    assert_eq!(p.a.tcp.recv(c, &mut buf), Err(SocketError::BadHandle));
    assert_eq!(p.a.tcp.abort(c), Err(SocketError::BadHandle));
    assert_eq!(p.a.tcp.state(c2).unwrap(), State::Established);
}

#[test]
fn accept_with_an_empty_queue_reports_would_block() {
    let mut p = Pair::new(19);
    let l = listen(&mut p.b, PORT, 8);
    assert_eq!(p.b.tcp.accept(l).map(|_| ()), Err(SocketError::WouldBlock));
    assert!(!p.b.tcp.readiness(l).unwrap().readable);
}

#[test]
fn accept_on_a_socket_that_is_not_listening_reports_invalid_state() {
    // Linux: EINVAL.
    let mut p = Pair::new(20);
    let (c, _, _) = connect(&mut p);
    assert_eq!(
        p.a.tcp.accept(c).map(|_| ()),
        Err(SocketError::InvalidState)
    );
    let s = p.a.tcp.socket().unwrap();
    assert_eq!(
        p.a.tcp.accept(s).map(|_| ()),
        Err(SocketError::InvalidState)
    );
}

#[test]
fn full_send_buffer_accepts_exactly_the_free_space_then_would_block_and_loses_nothing() {
    const TX: usize = 16 * 1024;
    const RX: usize = 4 * 1024;
    let mut p = Pair::new(21);
    let l = p.b.tcp.socket().unwrap();
    p.b.tcp.set_options(l, |o| o.rx_buffer = RX).unwrap();
    p.b.tcp.bind(l, SocketAddrV4::new(B_IP, PORT)).unwrap();
    p.b.tcp.listen(l, 8).unwrap();
    let c = p.a.tcp.socket().unwrap();
    p.a.tcp.set_options(c, |o| o.tx_buffer = TX).unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c, now, SocketAddrV4::new(B_IP, PORT))
        .unwrap();
    let mut s = None;
    assert!(p.run_until(SECOND, |p| {
        s = s.or_else(|| p.b.tcp.accept(l).ok().map(|x| x.0));
        s.is_some() && p.a.tcp.state(c).unwrap() == State::Established
    }));
    let s = s.unwrap();
    let data = random_bytes(21, 256 * 1024);
    let mut sent = 0;
    // Empty buffer: exactly its size is accepted, then nothing.
    sent += p.a.tcp.send(c, &data).unwrap();
    assert_eq!(sent, TX);
    assert_eq!(p.a.tcp.send(c, &data[sent..]), Err(SocketError::WouldBlock));
    assert!(!p.a.tcp.readiness(c).unwrap().writable);
    // The reader sleeps: the peer acknowledges exactly its receive buffer,
    // which frees exactly that much send buffer.
    p.run_for(Duration::from_secs(2));
    let acked = tcp_info_acked(&p, c);
    assert_eq!(acked, RX as u64);
    assert!(p.a.tcp.readiness(c).unwrap().writable);
    let n = p.a.tcp.send(c, &data[sent..]).unwrap();
    assert_eq!(n, RX, "exactly the free space");
    sent += n;
    assert_eq!(p.a.tcp.send(c, &data[sent..]), Err(SocketError::WouldBlock));
    // Now everything moves; no accepted byte may be lost.
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    assert!(p.run_until(Duration::from_secs(60), |p| {
        while sent < data.len() {
            match p.a.tcp.send(c, &data[sent..]) {
                Ok(n) => sent += n,
                Err(SocketError::WouldBlock) => break,
                Err(e) => panic!("send: {e:?}"),
            }
        }
        while let Ok(n) = p.b.tcp.recv(s, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == data.len()
    }));
    assert_eq!(sha(&got), sha(&data));
}

#[test]
fn send_during_the_handshake_reports_would_block_and_recv_not_connected() {
    let mut p = Pair::new(22);
    let _l = listen(&mut p.b, PORT, 8);
    let c = start_connect(&mut p, PORT);
    assert_eq!(p.a.tcp.send(c, b"early"), Err(SocketError::WouldBlock));
    let mut buf = [0u8; 8];
    assert_eq!(p.a.tcp.recv(c, &mut buf), Err(SocketError::NotConnected));
    assert!(!p.a.tcp.readiness(c).unwrap().writable);
}

#[test]
fn recv_after_shutdown_read_reports_end_of_stream() {
    let mut p = Pair::new(23);
    let (c, s, _) = connect(&mut p);
    p.b.tcp.send(s, b"discarded").unwrap();
    p.run_for(Duration::from_millis(10));
    p.a.tcp.shutdown(c, Shutdown::Read).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(p.a.tcp.recv(c, &mut buf), Ok(0));
    // The write side is untouched.
    assert_eq!(p.a.tcp.send(c, b"still open"), Ok(10));
}

#[test]
fn send_of_an_empty_slice_returns_zero() {
    let mut p = Pair::new(24);
    let (c, _, _) = connect(&mut p);
    assert_eq!(p.a.tcp.send(c, b""), Ok(0));
}
