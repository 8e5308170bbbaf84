//! Two flowlane stacks over the in-memory link on virtual time: handshake,
//! bulk transfer, every way of closing, TIME-WAIT, linger, reuse, refusal,
//! half-close, zero-window flow control, and a pcap of it all.

use core::net::SocketAddrV4;

use flowlane::api::pair::{Pair, B_IP};
use flowlane::api::{Shutdown, SocketError, SocketHandle, State};
use flowlane::phy::{Link, LinkConfig};
use flowlane::time::Duration;

mod pairkit;
use pairkit::*;

#[test]
fn handshake_moves_both_sides_to_established() {
    let mut p = Pair::new(1);
    let (c, s, _) = connect(&mut p);
    assert_eq!(
        p.a.tcp.history(c).unwrap(),
        [State::SynSent, State::Established]
    );
    assert_eq!(
        p.b.tcp.history(s).unwrap(),
        [State::SynReceived, State::Established]
    );
    let info = p.a.tcp.info(c).unwrap();
    assert_eq!(
        info.snd_mss,
        1460 - 12,
        "timestamps take 12 bytes of the MSS"
    );
    assert!(info.timestamps && info.sack);
    assert_eq!(info.rcv_wscale, 3, "262144 >> 2 is still above 65535");
    assert_eq!(info.snd_wscale, 3);
}

#[test]
fn sixteen_mib_both_directions_arrive_intact() {
    let mut p = Pair::new(2);
    let (c, s, _) = connect(&mut p);
    let mut up = Flow::new(random_bytes(10, 16 << 20));
    let mut down = Flow::new(random_bytes(11, 16 << 20));
    assert!(p.run_until(Duration::from_secs(60), |p| {
        pump(p, true, c, s, &mut up);
        pump(p, false, s, c, &mut down);
        up.done() && down.done()
    }));
    assert_eq!(sha(&up.received), sha(&up.data));
    assert_eq!(sha(&down.received), sha(&down.data));
    assert_eq!(p.a.tcp.info(c).unwrap().counters.retransmits, 0);
    // On a clean link nearly every segment after the handshake is in order
    // with the window unchanged: header prediction takes it.
    for (side, h) in [(&p.a, c), (&p.b, s)] {
        let k = side.tcp.info(h).unwrap().counters;
        assert!(
            k.fast_path * 10 >= k.segs_in * 9,
            "fast path took {} of {} segments",
            k.fast_path,
            k.segs_in
        );
    }
}

fn close_and_settle(p: &mut Pair, c: SocketHandle, s: SocketHandle) {
    assert!(p.run_until(Duration::from_secs(200), |p| {
        p.a.tcp.state(c).unwrap() == State::Closed && p.b.tcp.state(s).unwrap() == State::Closed
    }));
}

/// The application reads EOF and then shuts down its side too.
fn finish_on_eof(p: &mut Pair, on_a: bool, h: SocketHandle) -> bool {
    let tcp = if on_a { &mut p.a.tcp } else { &mut p.b.tcp };
    let mut buf = [0u8; 16];
    if tcp.recv(h, &mut buf) == Ok(0) {
        tcp.shutdown(h, Shutdown::Write).unwrap();
        return true;
    }
    false
}

#[test]
fn client_close_first_goes_through_time_wait() {
    let mut p = Pair::new(3);
    let (c, s, _) = connect(&mut p);
    p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
    // The server's application waits: its delayed ACK of the FIN (40 ms)
    // goes out alone and moves the client to FIN-WAIT-2, well before the
    // client's RTO would resend the FIN.
    let t0 = p.now;
    assert!(p.run_until(SECOND, |p| p.a.tcp.state(c).unwrap() == State::FinWait2));
    assert!(p.now - t0 <= Duration::from_millis(45), "{:?}", p.now - t0);
    assert_eq!(p.a.tcp.info(c).unwrap().counters.retransmits, 0);
    assert!(p.run_until(SECOND, |p| finish_on_eof(p, false, s)));
    close_and_settle(&mut p, c, s);
    use State::*;
    assert_eq!(
        p.a.tcp.history(c).unwrap(),
        [SynSent, Established, FinWait1, FinWait2, TimeWait, Closed]
    );
    assert_eq!(
        p.b.tcp.history(s).unwrap(),
        [SynReceived, Established, CloseWait, LastAck, Closed]
    );
}

#[test]
fn a_peer_that_closes_at_once_acks_the_fin_on_its_own_fin() {
    // The ACK of a FIN is delayed like one of data (Linux's pingpong mode),
    // so a server that closes as soon as it reads EOF sends one FIN+ACK:
    // three segments close the connection, and the client goes from
    // FIN-WAIT-1 straight to TIME-WAIT.
    let mut p = Pair::new(5);
    let (c, s, _) = connect(&mut p);
    let (a0, b0) = (
        p.a.tcp.counters().segments_out,
        p.b.tcp.counters().segments_out,
    );
    p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
    assert!(p.run_until(SECOND, |p| finish_on_eof(p, false, s)));
    assert!(p.run_until(SECOND, |p| {
        p.a.tcp.state(c).unwrap() == State::TimeWait && p.b.tcp.state(s).unwrap() == State::Closed
    }));
    assert_eq!(
        p.a.tcp.counters().segments_out - a0,
        2,
        "FIN, then the last ACK"
    );
    assert_eq!(p.b.tcp.counters().segments_out - b0, 1, "one FIN+ACK");
    use State::*;
    assert_eq!(
        p.a.tcp.history(c).unwrap(),
        [SynSent, Established, FinWait1, TimeWait]
    );
    assert_eq!(
        p.b.tcp.history(s).unwrap(),
        [SynReceived, Established, CloseWait, LastAck, Closed]
    );
}

#[test]
fn server_close_first_goes_through_time_wait() {
    let mut p = Pair::new(4);
    let (c, s, _) = connect(&mut p);
    p.b.tcp.shutdown(s, Shutdown::Write).unwrap();
    let t0 = p.now;
    assert!(p.run_until(SECOND, |p| p.b.tcp.state(s).unwrap() == State::FinWait2));
    assert!(p.now - t0 <= Duration::from_millis(45), "{:?}", p.now - t0);
    assert_eq!(p.b.tcp.info(s).unwrap().counters.retransmits, 0);
    assert!(p.run_until(SECOND, |p| finish_on_eof(p, true, c)));
    close_and_settle(&mut p, c, s);
    use State::*;
    assert_eq!(
        p.a.tcp.history(c).unwrap(),
        [SynSent, Established, CloseWait, LastAck, Closed]
    );
    assert_eq!(
        p.b.tcp.history(s).unwrap(),
        [
            SynReceived,
            Established,
            FinWait1,
            FinWait2,
            TimeWait,
            Closed
        ]
    );
}

#[test]
fn simultaneous_close_goes_through_closing() {
    // With 1 ms of delay the two FINs cross on the wire.
    let (a, b) = Pair::configs();
    let link = Link::new(
        LinkConfig::default().with_delay(Duration::from_millis(1)),
        5,
    );
    let mut p = Pair::with(link, a, b);
    let (c, s, _) = connect(&mut p);
    p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
    p.b.tcp.shutdown(s, Shutdown::Write).unwrap();
    close_and_settle(&mut p, c, s);
    use State::*;
    let both = [Established, FinWait1, Closing, TimeWait, Closed];
    assert_eq!(p.a.tcp.history(c).unwrap()[1..], both);
    assert_eq!(p.b.tcp.history(s).unwrap()[1..], both);
}

#[test]
fn fin_ack_in_fin_wait_1_goes_straight_to_time_wait() {
    // On a link without delay, B answers A's FIN with its own FIN carrying
    // the ACK of A's FIN in one segment.
    let mut p = Pair::new(13);
    let (c, s, _) = connect(&mut p);
    p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
    p.b.tcp.shutdown(s, Shutdown::Write).unwrap();
    close_and_settle(&mut p, c, s);
    use State::*;
    assert_eq!(
        p.a.tcp.history(c).unwrap()[1..],
        [Established, FinWait1, TimeWait, Closed]
    );
    assert_eq!(
        p.b.tcp.history(s).unwrap()[1..],
        [Established, FinWait1, Closing, TimeWait, Closed]
    );
}

#[test]
fn time_wait_lasts_exactly_two_msl() {
    let mut p = Pair::new(6);
    let (c, s, _) = connect(&mut p);
    p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
    assert!(p.run_until(SECOND, |p| finish_on_eof(p, false, s)));
    assert!(p.run_until(SECOND, |p| p.a.tcp.state(c).unwrap() == State::TimeWait));
    let entered = p.now;
    assert_eq!(p.a.tcp.state_counts()[State::TimeWait as usize], 1);
    assert!(
        p.run_until(Duration::from_secs(120), |p| p.a.tcp.state(c).unwrap()
            == State::Closed)
    );
    assert_eq!(p.now - entered, Duration::from_secs(60));
    assert_eq!(p.a.tcp.state_counts()[State::TimeWait as usize], 0);
}

#[test]
fn linger_zero_resets_the_peer_and_skips_time_wait() {
    let mut p = Pair::new(7);
    let (c, s, _) = connect(&mut p);
    p.a.tcp.send(c, b"unsent or not, it is discarded").unwrap();
    p.a.tcp
        .set_options(c, |o| o.linger = Some(Duration::ZERO))
        .unwrap();
    let now = p.now;
    p.a.tcp.close(c, now).unwrap();
    assert_eq!(p.a.tcp.state(c), Err(SocketError::BadHandle));
    let mut buf = [0u8; 64];
    assert!(p.run_until(SECOND, |p| p.b.tcp.state(s).unwrap() == State::Closed));
    // What arrived before the RST may be read; then the reset shows.
    let mut err = None;
    for _ in 0..4 {
        match p.b.tcp.recv(s, &mut buf) {
            Ok(_) => continue,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(SocketError::Reset));
    assert_eq!(p.a.tcp.state_counts()[State::TimeWait as usize], 0);
    assert_eq!(p.b.tcp.state_counts()[State::TimeWait as usize], 0);
    assert_eq!(p.a.tcp.connection_count(), 0);
}

#[test]
fn reuseaddr_lets_a_listener_bind_over_time_wait() {
    let mut p = Pair::new(8);
    let (c, s, l) = connect(&mut p);
    // The server closes first, so port 80 on B sits in TIME-WAIT.
    let now = p.now;
    p.b.tcp.close(s, now).unwrap();
    assert!(p.run_until(SECOND, |p| finish_on_eof(p, true, c)));
    assert!(
        p.run_until(SECOND, |p| p.b.tcp.state_counts()[State::TimeWait as usize]
            == 1)
    );
    p.b.tcp.close(l, now).unwrap();
    let addr = SocketAddrV4::new(B_IP, PORT);
    let plain = p.b.tcp.socket().unwrap();
    assert_eq!(p.b.tcp.bind(plain, addr), Err(SocketError::AddrInUse));
    let reuse = p.b.tcp.socket().unwrap();
    p.b.tcp.set_options(reuse, |o| o.reuse_addr = true).unwrap();
    p.b.tcp.bind(reuse, addr).unwrap();
    p.b.tcp.listen(reuse, 8).unwrap();
    assert_eq!(p.b.tcp.state_counts()[State::TimeWait as usize], 1);
    // Once 2MSL passed, a plain bind works again.
    let now2 = p.now;
    p.b.tcp.close(reuse, now2).unwrap();
    p.run_for(Duration::from_secs(61));
    assert_eq!(p.b.tcp.state_counts()[State::TimeWait as usize], 0);
    p.b.tcp.bind(plain, addr).unwrap();
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let mut p = Pair::new(9);
    let c = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c, now, SocketAddrV4::new(B_IP, 81))
        .unwrap();
    assert!(p.run_until(SECOND, |p| p.a.tcp.state(c).unwrap() == State::Closed));
    assert!(p.a.tcp.readiness(c).unwrap().error);
    assert_eq!(p.a.tcp.take_error(c).unwrap(), Some(SocketError::Refused));
    assert_eq!(p.a.tcp.take_error(c).unwrap(), None);
    assert_eq!(p.b.tcp.counters().no_socket, 1);
    assert_eq!(p.b.tcp.counters().rst_sent, 1);
}

#[test]
fn half_close_keeps_the_other_direction_flowing() {
    let mut p = Pair::new(10);
    let (c, s, _) = connect(&mut p);
    p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
    let mut buf = [0u8; 8];
    assert!(p.run_until(SECOND, |p| p.b.tcp.recv(s, &mut buf) == Ok(0)
        && p.a.tcp.state(c).unwrap() == State::FinWait2));
    assert_eq!(p.b.tcp.state(s).unwrap(), State::CloseWait);
    assert_eq!(p.a.tcp.state(c).unwrap(), State::FinWait2);
    // The server still sends 1 MiB to the half-closed client.
    let mut down = Flow::new(random_bytes(12, 1 << 20));
    assert!(p.run_until(Duration::from_secs(10), |p| {
        pump(p, false, s, c, &mut down);
        down.done()
    }));
    assert_eq!(sha(&down.received), sha(&down.data));
    assert_eq!(p.a.tcp.send(c, b"x"), Err(SocketError::Pipe));
    p.b.tcp.shutdown(s, Shutdown::Write).unwrap();
    assert!(p.run_until(SECOND, |p| p.a.tcp.recv(c, &mut buf) == Ok(0)));
    close_and_settle(&mut p, c, s);
}

#[test]
fn zero_window_stalls_the_sender_and_it_resumes() {
    let mut p = Pair::new(11);
    p.a.tcp.set_record_history(true);
    let l = p.b.tcp.socket().unwrap();
    p.b.tcp.set_options(l, |o| o.rx_buffer = 16 * 1024).unwrap();
    p.b.tcp.bind(l, SocketAddrV4::new(B_IP, PORT)).unwrap();
    p.b.tcp.listen(l, 8).unwrap();
    let c = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c, now, SocketAddrV4::new(B_IP, PORT))
        .unwrap();
    let mut s = None;
    assert!(p.run_until(SECOND, |p| {
        s = s.or_else(|| p.b.tcp.accept(l).ok().map(|x| x.0));
        s.is_some()
    }));
    let s = s.unwrap();
    let data = random_bytes(13, 1 << 20);
    let mut sent = 0;
    // The server does not read: the window closes and the sender stalls.
    p.run_until(Duration::from_secs(5), |p| {
        if let Ok(n) = p.a.tcp.send(c, &data[sent..]) {
            sent += n;
        }
        false
    });
    let info = p.a.tcp.info(c).unwrap();
    assert_eq!(info.snd_wnd, 0);
    assert_eq!(p.b.tcp.info(s).unwrap().rcv_wnd, 0);
    assert!(sent < data.len());
    assert!(info.counters.zero_window_probes >= 1, "{info:?}");
    assert_eq!(p.a.tcp.state(c).unwrap(), State::Established);
    // The reader wakes up: everything arrives.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    assert!(p.run_until(Duration::from_secs(30), |p| {
        if sent < data.len() {
            if let Ok(n) = p.a.tcp.send(c, &data[sent..]) {
                sent += n;
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
fn pcap_of_a_connection_opens_with_tcpdump() {
    let dir = std::env::temp_dir().join(format!("flowlane-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pair.pcap");
    {
        let mut p = Pair::new(12);
        let file = std::fs::File::create(&path).unwrap();
        p.capture_to(Box::new(std::io::BufWriter::new(file)))
            .unwrap();
        let (c, s, _) = connect(&mut p);
        p.a.tcp.send(c, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        p.a.tcp.shutdown(c, Shutdown::Write).unwrap();
        assert!(p.run_until(SECOND, |p| finish_on_eof(p, false, s)));
        close_and_settle(&mut p, c, s);
        p.capture.as_mut().unwrap().flush().unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() > 24 + 10 * 16,
        "capture too small: {}",
        bytes.len()
    );
    let tcpdump = std::process::Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&path)
        .output();
    match tcpdump {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("Flags [S]"), "{text}");
            assert!(text.contains("Flags [S.]"), "{text}");
            assert!(text.contains("ARP"), "{text}");
            assert!(text.contains("10.77.0.1"), "{text}");
        }
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tcpdump is required in CI: {e}"
            );
            eprintln!("skipped: tcpdump not installed ({e})");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keepalive_on_a_socket_detects_a_silent_peer() {
    use flowlane::tcp::Keepalive;
    let mut p = Pair::new(14);
    let (c, _s, _) = connect(&mut p);
    let now = p.now;
    let ka = Keepalive {
        idle: Duration::from_secs(5),
        interval: Duration::from_secs(1),
        count: 3,
    };
    p.a.tcp.set_keepalive(c, now, Some(ka)).unwrap();
    // The peer answers probes while it is there.
    p.run_for(Duration::from_secs(20));
    assert_eq!(p.a.tcp.state(c).unwrap(), State::Established);
    assert!(p.a.tcp.info(c).unwrap().counters.keepalive_probes >= 3);
    // Now the peer vanishes: nothing from B reaches A any more.
    p.link
        .set_config(1, 0, LinkConfig::default().with_loss(1.0));
    let gone = p.now;
    let probes_before = p.a.tcp.info(c).unwrap().counters.keepalive_probes;
    assert!(
        p.run_until(Duration::from_secs(60), |p| p.a.tcp.state(c).unwrap()
            == State::Closed)
    );
    // The first unanswered probe goes at most `idle` after the peer went
    // silent; `count` intervals later the connection is declared dead.
    let waited = p.now - gone;
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_secs(5 + 3),
        "{waited:?}"
    );
    let probes = p.a.tcp.info(c).unwrap().counters.keepalive_probes - probes_before;
    assert_eq!(probes, 3, "exactly `count` unanswered probes");
    assert_eq!(p.a.tcp.take_error(c).unwrap(), Some(SocketError::TimedOut));
}

/// Server closes first, so B holds a TIME-WAIT record for the tuple; the
/// client reconnects from the same port.
fn reconnect_over_server_time_wait(timestamps: bool) -> (Pair, Result<(), SocketError>) {
    let (mut a, mut b) = Pair::configs();
    a.endpoint.tcp.timestamps = timestamps;
    b.endpoint.tcp.timestamps = timestamps;
    let mut p = Pair::with(Link::new(LinkConfig::default(), 15), a, b);
    let (c, s, _) = connect(&mut p);
    let local = p.a.tcp.local_addr(c).unwrap();
    let now = p.now;
    p.b.tcp.close(s, now).unwrap();
    assert!(p.run_until(SECOND, |p| finish_on_eof(p, true, c)));
    assert!(p.run_until(SECOND, |p| p.b.tcp.time_wait_count() == 1
        && p.a.tcp.state(c).unwrap() == State::Closed));
    let now = p.now;
    p.a.tcp.close(c, now).unwrap();
    p.run_for(Duration::from_millis(5));
    let c2 = p.a.tcp.socket().unwrap();
    p.a.tcp.set_options(c2, |o| o.reuse_addr = true).unwrap();
    p.a.tcp.bind(c2, local).unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c2, now, SocketAddrV4::new(B_IP, PORT))
        .unwrap();
    let ok = p.run_until(Duration::from_millis(500), |p| {
        p.a.tcp.state(c2).unwrap() == State::Established
    });
    let r = if ok {
        Ok(())
    } else {
        Err(SocketError::TimedOut)
    };
    (p, r)
}

#[test]
fn a_newer_syn_reuses_a_server_time_wait_tuple_per_rfc_6191() {
    let (p, r) = reconnect_over_server_time_wait(true);
    assert_eq!(r, Ok(()));
    let counters = p.b.tcp.counters();
    assert_eq!(counters.time_wait_reused_passive, 1);
    assert_eq!(counters.time_wait_syn_refused, 0);
    assert_eq!(p.b.tcp.time_wait_count(), 0);
}

#[test]
fn without_timestamps_a_syn_with_a_higher_sequence_number_reuses_the_tuple() {
    // RFC 1122 §4.2.2.13: the new ISN (a 4 µs clock) is above the old
    // connection's final sequence number.
    let (p, r) = reconnect_over_server_time_wait(false);
    assert_eq!(r, Ok(()));
    assert_eq!(p.b.tcp.counters().time_wait_reused_passive, 1);
}

/// Three flows from client ports that differ only in bits the server's
/// demux hint does not index (it hashes the ports to one of 256 slots:
/// 40000, 40002 and 40004 share one), with data both ways interleaved:
/// each hint is wrong two times in three, and every byte still reaches its
/// own connection (the hint is checked against the slot's connection and
/// falls back to the keyed lookup).
#[test]
fn flows_sharing_a_demux_hint_slot_each_get_their_own_bytes() {
    use flowlane::api::pair::A_IP;
    let mut p = Pair::new(7);
    let l = listen(&mut p, PORT);
    let ports = [40000u16, 40002, 40004];
    let clients: Vec<SocketHandle> = ports
        .iter()
        .map(|&port| {
            let c = p.a.tcp.socket().unwrap();
            p.a.tcp.bind(c, SocketAddrV4::new(A_IP, port)).unwrap();
            let now = p.now;
            p.a.tcp
                .connect(c, now, SocketAddrV4::new(B_IP, PORT))
                .unwrap();
            c
        })
        .collect();
    let mut servers: Vec<Option<SocketHandle>> = vec![None; 3];
    assert!(p.run_until(Duration::from_secs(5), |p| {
        while let Ok((s, peer)) = p.b.tcp.accept(l) {
            let i = ports.iter().position(|&x| x == peer.port()).unwrap();
            servers[i] = Some(s);
        }
        servers.iter().all(Option::is_some)
            && clients
                .iter()
                .all(|&c| p.a.tcp.state(c).unwrap() == State::Established)
    }));
    let servers: Vec<SocketHandle> = servers.into_iter().map(Option::unwrap).collect();
    let mut up: Vec<Flow> = (0..3)
        .map(|i| Flow::new(random_bytes(100 + i, 300_000)))
        .collect();
    let mut down: Vec<Flow> = (0..3)
        .map(|i| Flow::new(random_bytes(200 + i, 300_000)))
        .collect();
    assert!(p.run_until(Duration::from_secs(60), |p| {
        for i in 0..3 {
            pump(p, true, clients[i], servers[i], &mut up[i]);
            pump(p, false, servers[i], clients[i], &mut down[i]);
        }
        up.iter().chain(down.iter()).all(Flow::done)
    }));
    for i in 0..3 {
        assert_eq!(sha(&up[i].received), sha(&up[i].data), "flow {i} up");
        assert_eq!(sha(&down[i].received), sha(&down[i].data), "flow {i} down");
        let k = p.b.tcp.info(servers[i]).unwrap().counters;
        assert_eq!(k.retransmits, 0, "flow {i}");
    }
    assert_eq!(p.b.tcp.counters().no_socket, 0);
}
