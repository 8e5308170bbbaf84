//! The servers and clients of `src/apps` on two stacks joined by the
//! in-memory link (virtual time, no root needed): echo integrity and
//! backpressure, HTTP keep-alive, close and garbage handling, the clients.

use std::sync::{Arc, Mutex};

use flowlane::api::pair::{Pair, B_IP};
use flowlane::api::{SocketError, State};
use flowlane::apps::client::{fill_pattern, BulkClient, Expect, Outcome, ShortClient};
use flowlane::apps::{echo, EchoServer, HttpServer, Server};
use flowlane::time::Duration;

use core::net::SocketAddrV4;

#[test]
fn echo_returns_every_byte_with_bounded_buffering() {
    let mut pair = Pair::new(1);
    let mut server = EchoServer::new(7);
    let now = pair.now;
    server.poll(&mut pair.b, now); // listens
    let h = pair.a.tcp.socket().unwrap();
    let now = pair.now;
    pair.a
        .tcp
        .connect(h, now, SocketAddrV4::new(B_IP, 7))
        .unwrap();
    const LEN: usize = 4 << 20;
    let mut data = vec![0u8; LEN];
    fill_pattern(9, 0, &mut data);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut max_held = 0u64;
    let mut stalled_polls = 0;
    let done = pair.run_until(Duration::from_secs(120), |p| {
        server.poll(&mut p.b, p.now);
        let c = server.counters();
        max_held = max_held.max(c.bytes_in - c.bytes_out);
        if sent < LEN {
            match p.a.tcp.send(h, &data[sent..]) {
                Ok(n) => sent += n,
                Err(SocketError::WouldBlock) => {}
                Err(e) => panic!("send: {e:?}"),
            }
            if sent == LEN {
                p.a.tcp.shutdown(h, flowlane::api::Shutdown::Write).unwrap();
            }
        }
        // The client does not read until it has sent 512 KiB (more than
        // its receive buffer): the echo's output backs up and the server
        // must stop reading, not drop.
        if sent < 512 * 1024 && sent > 0 {
            stalled_polls += 1;
            return false;
        }
        loop {
            match p.a.tcp.recv(h, &mut buf) {
                Ok(0) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                // Not connected yet, or nothing to read.
                Err(SocketError::NotConnected | SocketError::WouldBlock) => return false,
                Err(e) => panic!("recv: {e:?}"),
            }
        }
    });
    assert!(done, "echo did not finish: sent {sent}, got {}", got.len());
    assert_eq!(got.len(), LEN);
    assert!(got == data, "echoed bytes differ");
    assert!(
        max_held <= echo::BUFFER as u64,
        "server held {max_held} bytes unsent"
    );
    assert!(stalled_polls > 0);
    // The server closed after the client's end of stream.
    pair.run_for(Duration::from_secs(1));
    server.poll(&mut pair.b, pair.now);
    let c = server.counters();
    assert_eq!((c.accepted, c.finished, c.failed, c.active), (1, 1, 0, 0));
    assert_eq!(c.bytes_in, LEN as u64);
    assert_eq!(c.bytes_out, LEN as u64);
}

#[test]
fn bulk_client_against_the_echo_server() {
    let mut pair = Pair::new(2);
    let mut server = EchoServer::new(7);
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let mut client = BulkClient::new(
        SocketAddrV4::new(B_IP, 7),
        1 << 20,
        5,
        Duration::from_secs(10),
        Box::new(move |d: &[u8]| g.lock().unwrap().extend_from_slice(d)),
    );
    let done = pair.run_until(Duration::from_secs(60), |p| {
        server.poll(&mut p.b, p.now);
        client.poll(&mut p.a, p.now);
        *client.outcome() != Outcome::Running
    });
    assert!(done);
    assert_eq!(*client.outcome(), Outcome::Done);
    let mut want = vec![0u8; 1 << 20];
    fill_pattern(5, 0, &mut want);
    assert!(*got.lock().unwrap() == want);
    assert_eq!(client.received(), 1 << 20);
}

#[test]
fn http_short_connections_and_keep_alive() {
    let mut pair = Pair::new(3);
    let mut server = HttpServer::new(80);
    let mut client = ShortClient::new(
        SocketAddrV4::new(B_IP, 80),
        50,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        Expect::Eof,
        Duration::from_secs(5),
    );
    let done = pair.run_until(Duration::from_secs(60), |p| {
        server.poll(&mut p.b, p.now);
        client.poll(&mut p.a, p.now);
        client.is_done()
    });
    assert!(done);
    assert_eq!(
        (client.ok(), client.failed()),
        (50, 0),
        "{:?}",
        client.failures()
    );
    let answer = String::from_utf8_lossy(client.first_answer()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("Hello from flowlane!\n"), "{answer}");
    // The server closed first each time: TIME-WAIT is on its side.
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.b.tcp.state_counts()[State::TimeWait as usize], 50);
    assert_eq!(pair.a.tcp.state_counts()[State::TimeWait as usize], 0);
    assert_eq!(server.counters().requests, 50);

    // Keep-alive: three requests on one connection, pipelined.
    let h = pair.a.tcp.socket().unwrap();
    let now = pair.now;
    pair.a
        .tcp
        .connect(h, now, SocketAddrV4::new(B_IP, 80))
        .unwrap();
    let req = b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
    let mut sent = false;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    pair.run_until(Duration::from_secs(10), |p| {
        server.poll(&mut p.b, p.now);
        if !sent && p.a.tcp.send(h, req).is_ok() {
            sent = true;
        }
        while let Ok(n) = p.a.tcp.recv(h, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got)
            .matches("HTTP/1.1 200")
            .count()
            == 3
    });
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert_eq!(
        text.matches("Hello from flowlane!").count(),
        2,
        "HEAD has no body: {text}"
    );
    assert_eq!(pair.a.tcp.state(h).unwrap(), State::Established);

    // Garbage: 400, then the server closes.
    pair.a.tcp.send(h, b"\x01\x02 nonsense\r\n\r\n").unwrap();
    let mut eof = false;
    got.clear();
    pair.run_until(Duration::from_secs(10), |p| {
        server.poll(&mut p.b, p.now);
        loop {
            match p.a.tcp.recv(h, &mut buf) {
                Ok(0) => {
                    eof = true;
                    return true;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
    });
    assert!(eof, "no close after garbage");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 400 Bad Request"));
    assert_eq!(server.counters().bad_requests, 1);
}

#[test]
fn servers_shut_down_and_idle_connections_time_out() {
    let mut pair = Pair::new(4);
    let mut server = HttpServer::new(80).with_idle_timeout(Duration::from_secs(5));
    let now = pair.now;
    server.poll(&mut pair.b, now); // listens
                                   // A silent connection is closed after the idle timeout.
    let h = pair.a.tcp.socket().unwrap();
    pair.a
        .tcp
        .connect(h, now, SocketAddrV4::new(B_IP, 80))
        .unwrap();
    let mut eof = false;
    let mut buf = [0u8; 64];
    pair.run_until(Duration::from_secs(30), |p| {
        server.poll(&mut p.b, p.now);
        p.wake_at = Some(p.now + Duration::from_millis(100));
        eof = matches!(p.a.tcp.recv(h, &mut buf), Ok(0));
        eof
    });
    assert!(eof, "idle connection not closed");
    assert_eq!(server.counters().idle_closed, 1);
    // Shutdown closes the listener: new connections are refused.
    let now = pair.now;
    server.shutdown(&mut pair.b, now);
    let h = pair.a.tcp.socket().unwrap();
    pair.a
        .tcp
        .connect(h, now, SocketAddrV4::new(B_IP, 80))
        .unwrap();
    let mut err = None;
    pair.run_until(Duration::from_secs(5), |p| {
        server.poll(&mut p.b, p.now);
        err = p.a.tcp.take_error(h).unwrap();
        err.is_some()
    });
    assert_eq!(err, Some(SocketError::Refused));
    assert_eq!(server.error(), None);
}
