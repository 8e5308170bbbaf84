//! flowlane against the Linux kernel's TCP, over both devices: a tap
//! device, and AF_XDP (generic attach, copy mode) on a veth pair, with the
//! kernel in its own network namespace as the independent peer.
//!
//! Each check runs once per device. The `flowlane` binary is exercised on
//! both devices (HTTP with curl, ping and a pcap; echo with 64 MiB; two
//! cores on a two-queue veth); the rest runs the same per-core runtime
//! in-process, where the tests can read flowlane's per-state counts and
//! drive flowlane as a client.
//!
//! These tests need root. Without it they print "skipped: needs root" and
//! pass, unless `CI=true`, where a skip fails the test.

mod netkit;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use flowlane::api::State;
use flowlane::apps::client::{BulkClient, Expect, Outcome, ShortClient};
use flowlane::apps::{self, AppKind, Published};
use flowlane::phy::pcap::PcapReader;
use flowlane::time::Duration;
use flowlane::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpFlags, TcpOptions, TcpPacket,
};

use netkit::*;

const MIB: usize = 1 << 20;

// ----- the binary: HTTP, ping, pcap ------------------------------------------

fn binary_http(dev: Dev) {
    require_tool("curl", "curl");
    require_tool("ping", "iputils-ping");
    let topo = Topo::new(dev);
    let pcap = std::env::temp_dir().join(format!(
        "flowlane-http-{}-{}.pcap",
        std::process::id(),
        topo.ifname
    ));
    let pcap_s = pcap.to_string_lossy().into_owned();
    let p = serve(
        &topo,
        &[
            "--app",
            "http",
            "--port",
            "8080",
            "--pcap",
            &pcap_s,
            "--stats-interval",
            "1",
        ],
    );
    let fl = topo.fl(8080);
    let url = format!("http://{fl}/");

    // ping gets replies.
    let out = topo
        .kernel
        .exec(
            "ping",
            &["-c", "3", "-i", "0.2", "-W", "2", &topo.fl_ip.to_string()],
        )
        .expect("ping flowlane");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 received"), "{text}");

    // curl, two requests on one connection (keep-alive).
    let out = topo
        .kernel
        .exec(
            "curl",
            &[
                "--noproxy",
                "*",
                "-sS",
                "-v",
                "--max-time",
                "10",
                &url,
                &format!("{url}two"),
            ],
        )
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert_eq!(body, "Hello from flowlane!\nHello from flowlane!\n");
    assert!(verbose.contains("HTTP/1.1 200 OK"), "{verbose}");
    assert!(verbose.contains("Connection: keep-alive"), "{verbose}");
    assert!(
        verbose.contains("Re-using existing connection"),
        "curl did not reuse the connection:\n{verbose}"
    );
    // Connection: close is honoured; HTTP/1.0 closes by default.
    for extra in [&["-H", "Connection: close"][..], &["-0"][..]] {
        let mut args = vec!["--noproxy", "*", "-sS", "-i", "--max-time", "10"];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = topo.kernel.exec("curl", &args).expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{extra:?}: {text}");
        assert!(text.contains("Connection: close\r\n"), "{extra:?}: {text}");
    }

    // A std client: keep-alive requests, then garbage gets 400 and a close.
    let mut s = topo.connect(8080).unwrap();
    s.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    for i in 0..20 {
        write!(s, "GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, body) = read_http(&mut s).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert_eq!(body, b"Hello from flowlane!\n");
    }
    s.write_all(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        .unwrap();
    let (head, _) = read_http(&mut s).unwrap();
    assert!(head.starts_with("HTTP/1.1 400 Bad Request"), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "no close after 400");
    // Too large a header: 431, then close.
    let mut s = topo.connect(8080).unwrap();
    s.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let _ = s.write_all(big.as_bytes());
    let (head, _) = read_http(&mut s).unwrap();
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");

    // 1 000 sequential short connections, no failure.
    let failures = topo.in_kernel(|| {
        let mut failures = Vec::new();
        for i in 0..1000 {
            let r = (|| -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(&fl.into(), StdDuration::from_secs(5))?;
                s.set_read_timeout(Some(StdDuration::from_secs(5)))?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                let mut all = Vec::new();
                s.read_to_end(&mut all)?;
                if !all.starts_with(b"HTTP/1.1 200 OK") || !all.ends_with(b"Hello from flowlane!\n")
                {
                    return Err(std::io::Error::other(format!("bad response {all:?}")));
                }
                Ok(())
            })();
            if let Err(e) = r {
                failures.push(format!("connection {i}: {e}"));
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let out = p.stop();
    println!("{out}");
    assert!(out.contains("flowlane: final statistics"), "{out}");
    // The device's own counters are printed beside the interface's: the
    // device received the 1 000 connections' frames and more.
    let device = out
        .lines()
        .rfind(|l| l.starts_with("  device: rx frames "))
        .unwrap_or_else(|| panic!("no device line:\n{out}"));
    let rx: u64 = device["  device: rx frames ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{device}"));
    assert!(rx >= 3000, "{device}");
    let states = last_states_line(&out);
    assert!(
        states.contains("TIME_WAIT"),
        "server closed first: {states}"
    );
    assert!(!states.contains("ESTABLISHED"), "{states}");

    // Options negotiated with the kernel, from the capture.
    let (syn, synack) = handshake_options(&pcap, topo.fl_ip, 8080);
    let _ = std::fs::remove_file(&pcap);
    println!("kernel SYN options: {syn:?}\nflowlane SYN-ACK options: {synack:?}");
    for (who, o) in [("kernel SYN", &syn), ("flowlane SYN-ACK", &synack)] {
        assert!(o.mss.is_some(), "{who}: no MSS");
        assert!(o.window_scale.is_some(), "{who}: no window scale");
        assert!(o.sack_permitted, "{who}: no SACK-permitted");
        assert!(o.timestamp.is_some(), "{who}: no timestamps");
    }
    assert_eq!(synack.mss, Some(1460));
    assert_eq!(syn.mss, Some(1460));
}

/// The options of the first SYN to `ip:port` and of the SYN-ACK answering
/// it, read from a pcap.
fn handshake_options(path: &std::path::Path, ip: Ipv4Addr, port: u16) -> (TcpOptions, TcpOptions) {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let (mut syn, mut synack) = (None, None);
    let mut frames = 0;
    while let Some(rec) = r.next_frame() {
        let (_, f) = rec.unwrap();
        frames += 1;
        let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
            continue;
        };
        if eth.ethertype() != EtherType::Ipv4 {
            continue;
        }
        let Ok(ipp) = Ipv4Packet::new_checked(eth.payload()) else {
            continue;
        };
        if ipp.protocol() != IpProtocol::Tcp {
            continue;
        }
        let Ok(tcp) = TcpPacket::new_checked(ipp.payload()) else {
            continue;
        };
        let flags: TcpFlags = tcp.flags();
        if !flags.syn() {
            continue;
        }
        let opts = TcpOptions::parse(tcp.options()).unwrap();
        if !flags.ack() && ipp.dst_addr() == ip && tcp.dst_port() == port && syn.is_none() {
            syn = Some(opts);
        } else if flags.ack() && ipp.src_addr() == ip && tcp.src_port() == port && synack.is_none()
        {
            synack = Some(opts);
        }
    }
    (
        syn.unwrap_or_else(|| panic!("no SYN in {frames} captured frames")),
        synack.unwrap_or_else(|| panic!("no SYN-ACK in {frames} captured frames")),
    )
}

#[test]
fn binary_http_tap() {
    if root_or_skip("binary_http_tap") {
        binary_http(Dev::Tap);
    }
}

#[test]
fn binary_http_xdp() {
    if root_or_skip("binary_http_xdp") {
        binary_http(Dev::Xdp);
    }
}

// ----- the binary: echo ------------------------------------------------------

fn binary_echo(dev: Dev) {
    let topo = Topo::new(dev);
    let p = serve(&topo, &["--app", "echo", "--port", "7777"]);
    let data = pattern(1, 64 * MIB);
    let (echoed, t) = echo_through(
        topo.connect(7777).unwrap(),
        &data,
        StdDuration::from_secs(60),
    );
    assert_eq!(
        echoed.len(),
        data.len(),
        "echoed {} of {} bytes",
        echoed.len(),
        data.len()
    );
    assert_eq!(
        sha256(&echoed),
        sha256(&data),
        "SHA-256 of the echo differs"
    );
    println!(
        "{dev:?}: 64 MiB echoed in {:.2} s ({:.0} Mbit/s each way)",
        t.as_secs_f64(),
        64.0 * 8.0 * 1.048576 / t.as_secs_f64()
    );
    let fl = topo.fl(7777);
    let failures = topo.in_kernel(|| {
        let mut failures = Vec::new();
        for i in 0..1000u32 {
            let r = (|| -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(&fl.into(), StdDuration::from_secs(5))?;
                s.set_read_timeout(Some(StdDuration::from_secs(5)))?;
                let msg = [i as u8; 64];
                s.write_all(&msg)?;
                let mut back = [0u8; 64];
                s.read_exact(&mut back)?;
                if back != msg {
                    return Err(std::io::Error::other("echo differs"));
                }
                Ok(())
            })();
            if let Err(e) = r {
                failures.push(format!("connection {i}: {e}"));
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let out = p.stop();
    println!("{out}");
}

#[test]
fn binary_echo_tap() {
    if root_or_skip("binary_echo_tap") {
        binary_echo(Dev::Tap);
    }
}

#[test]
fn binary_echo_xdp() {
    if root_or_skip("binary_echo_xdp") {
        binary_echo(Dev::Xdp);
    }
}

// ----- flowlane as the client ------------------------------------------------

fn flowlane_client(dev: Dev) {
    let mut topo = Topo::new(dev);
    let server = SocketAddrV4::new(topo.kernel_ip, 9000);
    // Bound to every address: the tap's address appears only once flowlane
    // opens the device.
    let _echo = KernelEcho::start(&topo.kernel, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9000));
    let received = Arc::new(Mutex::new(Vec::with_capacity(64 * MIB)));
    let result: Arc<Mutex<Option<(Outcome, u64, u64)>>> = Arc::default();
    type ShortResult = Option<(u64, u64, Vec<String>)>;
    let shorts: Arc<Mutex<ShortResult>> = Arc::default();
    let (r, res, sh) = (received.clone(), result.clone(), shorts.clone());
    let inproc = InProc::start(&mut topo, 1, move |_| {
        let r = r.clone();
        let mut bulk = BulkClient::new(
            server,
            64 * MIB as u64,
            2,
            Duration::from_secs(20),
            Box::new(move |d: &[u8]| r.lock().unwrap().extend_from_slice(d)),
        );
        let mut short = ShortClient::new(
            server,
            1000,
            vec![7u8; 64],
            Expect::Bytes(64),
            Duration::from_secs(5),
        );
        let (res, sh) = (res.clone(), sh.clone());
        let mut reported = (false, false);
        Box::new(move |ctx| {
            if !reported.0 {
                bulk.poll(ctx.stack, ctx.now);
                if *bulk.outcome() != Outcome::Running {
                    *res.lock().unwrap() =
                        Some((bulk.outcome().clone(), bulk.sent(), bulk.received()));
                    reported.0 = true;
                }
                return;
            }
            if !reported.1 {
                short.poll(ctx.stack, ctx.now);
                if short.is_done() {
                    *sh.lock().unwrap() =
                        Some((short.ok(), short.failed(), short.failures().to_vec()));
                    reported.1 = true;
                }
            }
        })
    });
    let t0 = StdInstant::now();
    while shorts.lock().unwrap().is_none() && t0.elapsed() < StdDuration::from_secs(120) {
        if matches!(&*result.lock().unwrap(), Some((Outcome::Failed(_), ..))) {
            break;
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let (outcome, sent, got) = result
        .lock()
        .unwrap()
        .clone()
        .expect("bulk transfer did not finish");
    assert_eq!(outcome, Outcome::Done, "sent {sent}, received {got}");
    let data = pattern(2, 64 * MIB);
    let received = received.lock().unwrap();
    assert_eq!(received.len(), data.len());
    assert_eq!(
        sha256(&received),
        sha256(&data),
        "SHA-256 of the echo differs"
    );
    let (ok, failed, why) = shorts
        .lock()
        .unwrap()
        .clone()
        .expect("short connections did not finish");
    assert_eq!((ok, failed), (1000, 0), "{why:?}");
    // flowlane closed first each time: TIME-WAIT is on its side, none on
    // the kernel's.
    let t = inproc.wait_for(StdDuration::from_secs(5), |t| {
        t.states[State::TimeWait as usize] >= 1000
    });
    assert!(t.states[State::TimeWait as usize] >= 1000, "{:?}", t.states);
    let ss = topo.ss();
    let tw = ss.lines().filter(|l| l.starts_with("TIME-WAIT")).count();
    assert_eq!(tw, 0, "kernel TIME-WAIT sockets:\n{ss}");
    println!(
        "{dev:?}: flowlane client: 64 MiB echoed, 1000 short connections; states {:?}",
        t.states
    );
}

#[test]
fn flowlane_client_tap() {
    if root_or_skip("flowlane_client_tap") {
        flowlane_client(Dev::Tap);
    }
}

#[test]
fn flowlane_client_xdp() {
    if root_or_skip("flowlane_client_xdp") {
        flowlane_client(Dev::Xdp);
    }
}

// ----- close from either side ------------------------------------------------

fn close_states(dev: Dev) {
    let mut topo = Topo::new(dev);
    let echo_out = Arc::new(Mutex::new(Published::default()));
    let http_out = Arc::new(Mutex::new(Published::default()));
    let (e, h) = (echo_out.clone(), http_out.clone());
    let inproc = InProc::start(&mut topo, 1, move |_| {
        let mut echo = apps::runtime_app(
            AppKind::Echo.server(7),
            Arc::new(AtomicBool::new(false)),
            e.clone(),
        );
        let mut http = apps::runtime_app(
            AppKind::Http.server(80),
            Arc::new(AtomicBool::new(false)),
            h.clone(),
        );
        Box::new(move |ctx| {
            echo(ctx);
            http(ctx);
        })
    });
    let open = |t: &flowlane::runtime::CoreStats| -> u64 {
        State::ALL
            .iter()
            .filter(|s| !matches!(s, State::Listen | State::TimeWait | State::Closed))
            .map(|&s| t.states[s as usize])
            .sum()
    };

    // 1. The kernel closes first (echo: the kernel half-closes, flowlane
    //    echoes and closes): TIME-WAIT on the kernel's side only.
    let mut s = topo.connect(7).unwrap();
    let local = match s.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    s.write_all(b"bye").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.set_read_timeout(Some(StdDuration::from_secs(5))).unwrap();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"bye");
    drop(s);
    let t = inproc.wait_for(StdDuration::from_secs(5), |t| open(t) == 0);
    assert_eq!(open(&t), 0, "flowlane states {:?}", t.states);
    assert_eq!(t.states[State::TimeWait as usize], 0, "{:?}", t.states);
    let ss = topo.ss();
    let mine = ss_lines(&ss, local);
    assert!(
        mine.len() == 1 && mine[0].starts_with("TIME-WAIT"),
        "kernel closed first, expected TIME-WAIT on {local}:\n{ss}"
    );

    // 2. flowlane closes first (HTTP with Connection: close): TIME-WAIT on
    //    flowlane's side, nothing left on the kernel's.
    let mut s = topo.connect(80).unwrap();
    let local = match s.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(StdDuration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert!(all.starts_with(b"HTTP/1.1 200 OK"));
    // Before the kernel closes: it is in CLOSE-WAIT, flowlane in FIN-WAIT-2.
    let t = inproc.wait_for(StdDuration::from_secs(5), |t| {
        t.states[State::FinWait2 as usize] == 1
    });
    assert_eq!(t.states[State::FinWait2 as usize], 1, "{:?}", t.states);
    let ss = topo.ss();
    assert!(
        ss_lines(&ss, local)
            .iter()
            .any(|l| l.starts_with("CLOSE-WAIT")),
        "expected CLOSE-WAIT on {local}:\n{ss}"
    );
    drop(s);
    let t = inproc.wait_for(StdDuration::from_secs(5), |t| {
        open(t) == 0 && t.states[State::TimeWait as usize] == 1
    });
    assert_eq!(open(&t), 0, "{:?}", t.states);
    assert_eq!(t.states[State::TimeWait as usize], 1, "{:?}", t.states);
    std::thread::sleep(StdDuration::from_millis(100));
    let ss = topo.ss();
    assert!(
        ss_lines(&ss, local).is_empty(),
        "kernel should hold nothing for {local}:\n{ss}"
    );
    println!(
        "{dev:?}: close from either side: flowlane states {:?}",
        t.states
    );
}

#[test]
fn close_states_tap() {
    if root_or_skip("close_states_tap") {
        close_states(Dev::Tap);
    }
}

#[test]
fn close_states_xdp() {
    if root_or_skip("close_states_xdp") {
        close_states(Dev::Xdp);
    }
}

// ----- RST: SO_LINGER 0, closed port; foreign addresses -------------------------

fn resets_and_foreign_frames(dev: Dev) {
    let mut topo = Topo::new(dev);
    // An app that accepts on port 7000 and aborts each connection with
    // SO_LINGER {on, 0}.
    let inproc = InProc::start(&mut topo, 1, |_| {
        let mut listener = None;
        Box::new(move |ctx| {
            let tcp = &mut ctx.stack.tcp;
            let l = *listener.get_or_insert_with(|| {
                let l = tcp.socket().unwrap();
                tcp.bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000))
                    .unwrap();
                tcp.listen(l, 16).unwrap();
                l
            });
            while let Ok((h, _)) = tcp.accept(l) {
                tcp.set_options(h, |o| o.linger = Some(Duration::ZERO))
                    .unwrap();
                tcp.close(h, ctx.now).unwrap();
            }
        })
    });
    // SO_LINGER 0 on flowlane's side: the kernel sees a reset (on the
    // read, or already when the connect completes if the RST came first).
    let r = topo.connect(7000).and_then(|mut s| {
        s.set_read_timeout(Some(StdDuration::from_secs(5)))?;
        let mut buf = [0u8; 16];
        s.read(&mut buf)
    });
    match r {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
    let t = inproc.wait_for(StdDuration::from_secs(2), |t| {
        t.tcp.connections_accepted >= 1
    });
    assert_eq!(t.tcp.connections_accepted, 1);
    assert!(t.tcp.segments_out >= 2, "SYN-ACK and RST: {:?}", t.tcp);
    // A closed port: connection refused.
    let e = topo.connect(7001).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

    // Frames for another address (the kernel is told flowlane's MAC owns
    // 10.77.x.9) never reach flowlane's sockets: no accept, no RST.
    inproc.wait_for(StdDuration::from_secs(2), |t| t.tcp.rst_sent >= 1);
    std::thread::sleep(StdDuration::from_millis(50));
    let before = inproc.total();
    let other = Ipv4Addr::new(10, 77, topo.fl_ip.octets()[2], 9);
    let mac = flowlane_mac(&topo);
    topo.kernel
        .ip(&[
            "neigh",
            "replace",
            &other.to_string(),
            "lladdr",
            &mac,
            "dev",
            &topo.kernel_if,
        ])
        .unwrap();
    let r = topo.in_kernel(|| {
        TcpStream::connect_timeout(
            &SocketAddrV4::new(other, 7000).into(),
            StdDuration::from_millis(1500),
        )
    });
    assert!(r.is_err(), "a connection to {other} succeeded");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    std::thread::sleep(StdDuration::from_millis(50));
    let after = inproc.total();
    assert_eq!(
        after.tcp.connections_accepted,
        before.tcp.connections_accepted
    );
    assert_eq!(after.tcp.rst_sent, before.tcp.rst_sent);
    assert_eq!(
        after.tcp.segments_in, before.tcp.segments_in,
        "a segment for {other} reached TCP"
    );
    if dev == Dev::Tap {
        // On tap flowlane sees the frames and counts them as not its own;
        // with AF_XDP the XDP program keeps them away from the socket.
        assert!(after.iface.not_for_us > before.iface.not_for_us);
    }
    println!(
        "{dev:?}: not for us: {} frames; rst sent {}",
        after.iface.not_for_us, after.tcp.rst_sent
    );
}

/// flowlane's MAC as the kernel learned it (by ARP, during the earlier
/// connections).
fn flowlane_mac(t: &Topo) -> String {
    let out = t
        .kernel
        .ip(&["neigh", "show", &t.fl_ip.to_string(), "dev", &t.kernel_if])
        .unwrap();
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_else(|| panic!("no neighbour entry for flowlane: {out}"))
        .to_string()
}

#[test]
fn resets_and_foreign_frames_tap() {
    if root_or_skip("resets_and_foreign_frames_tap") {
        resets_and_foreign_frames(Dev::Tap);
    }
}

#[test]
fn resets_and_foreign_frames_xdp() {
    if root_or_skip("resets_and_foreign_frames_xdp") {
        resets_and_foreign_frames(Dev::Xdp);
    }
}

// ----- 5 % loss ----------------------------------------------------------------

fn lossy_echo(dev: Dev) {
    let mut topo = Topo::new(dev);
    topo.add_tcp_loss(5);
    let (inproc, published) = InProc::server(&mut topo, AppKind::Echo, 7777);
    // FLOWLANE_LOSSY_PCAP=FILE: the kernel side's view (tcpdump in its
    // namespace, headers only) for analysing the recovery.
    let mut dump = std::env::var("FLOWLANE_LOSSY_PCAP").ok().map(|path| {
        let path = format!("{path}.{dev:?}").to_lowercase();
        let child = topo
            .kernel
            .command("tcpdump")
            .args(["-i", &topo.kernel_if, "-s", "128", "-U", "-w", &path, "tcp"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump");
        std::thread::sleep(StdDuration::from_millis(500));
        child
    });
    let data = pattern(3, 16 * MIB);
    let (echoed, t) = echo_through(
        topo.connect(7777).unwrap(),
        &data,
        StdDuration::from_secs(120),
    );
    assert_eq!(echoed.len(), data.len());
    assert_eq!(
        sha256(&echoed),
        sha256(&data),
        "SHA-256 of the echo differs"
    );
    let _ = inproc.wait_for(StdDuration::from_secs(3), |_| {
        published.lock().unwrap().counters.finished >= 1
    });
    if let Some(child) = dump.as_mut() {
        std::thread::sleep(StdDuration::from_millis(200));
        // SIGTERM, so tcpdump flushes its file.
        let _ = topo
            .kernel
            .exec("kill", &["-TERM", &child.id().to_string()]);
        let _ = child.wait();
    }
    let c = published.lock().unwrap().counters;
    println!(
        "{dev:?}: 16 MiB each way through 5 % loss in {:.2} s; flowlane retransmits {} (RTOs {}, fast {}); nft: {}",
        t.as_secs_f64(),
        c.retransmits,
        c.rtos,
        c.fast_retransmits,
        topo.loss_counters()
    );
    // The kernel's view of the same transfer (diagnostics only).
    if let Ok(out) = topo.kernel.exec(
        "nstat",
        &[
            "-az",
            "TcpRetransSegs",
            "TcpExtTCPTimeouts",
            "TcpExtTCPSackRecovery",
            "TcpExtTCPLossProbes",
            "TcpExtTCPSACKReorder",
            "TcpExtTCPOFOQueue",
        ],
    ) {
        println!("{dev:?}: kernel:\n{}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(c.retransmits > 0, "5 % loss but no retransmission: {c:?}");
}

#[test]
fn lossy_echo_tap() {
    if root_or_skip("lossy_echo_tap") {
        lossy_echo(Dev::Tap);
    }
}

#[test]
fn lossy_echo_xdp() {
    if root_or_skip("lossy_echo_xdp") {
        lossy_echo(Dev::Xdp);
    }
}

// ----- two queues, two cores ---------------------------------------------------

#[test]
fn xdp_two_queues_two_cores() {
    if !root_or_skip("xdp_two_queues_two_cores") {
        return;
    }
    let topo = Topo::with_queues(Dev::Xdp, 2);
    let p = serve(&topo, &["--app", "http", "--cores", "2"]);
    let fl = topo.fl(8080);
    let ok = topo.in_kernel(|| {
        (0..64)
            .filter(|_| {
                (|| -> std::io::Result<bool> {
                    let mut s = TcpStream::connect_timeout(&fl.into(), StdDuration::from_secs(5))?;
                    s.set_read_timeout(Some(StdDuration::from_secs(5)))?;
                    s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")?;
                    let mut all = Vec::new();
                    s.read_to_end(&mut all)?;
                    Ok(all.starts_with(b"HTTP/1.1 200 OK"))
                })()
                .unwrap_or(false)
            })
            .count()
    });
    let out = p.stop();
    println!("{out}");
    assert_eq!(ok, 64, "{ok}/64 requests answered");
    let accepted: Vec<u64> = (0..2)
        .map(|c| {
            let prefix = format!("core {c}: accepted ");
            let line = out
                .lines()
                .rfind(|l| l.trim_start().starts_with(&prefix))
                .unwrap_or_else(|| panic!("no per-core line for core {c}:\n{out}"));
            line.trim_start()[prefix.len()..]
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(accepted.iter().sum::<u64>(), 64, "{accepted:?}");
    assert!(
        accepted.iter().all(|&n| n > 0),
        "both cores carry connections: {accepted:?}"
    );
}
