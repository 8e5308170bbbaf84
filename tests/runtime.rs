//! The per-core runtime on real threads and real time: a server core runs
//! an echo application over a channel device while the test thread drives a
//! client stack on the other end; then a clean shutdown.

use core::net::SocketAddrV4;
use std::sync::atomic::Ordering;

use flowlane::api::pair::{A_IP, A_MAC, B_IP, B_MAC};
use flowlane::api::{SocketError, SocketHandle, Stack, StackConfig, State};
use flowlane::phy::ChannelDevice;
use flowlane::rand::Rng;
use flowlane::runtime::{Clock, CoreContext, CoreSetup, IdlePolicy, Runtime, RuntimeConfig};
use sha2::{Digest, Sha256};

/// A per-core echo application: accepts and echoes, never dropping bytes.
fn echo_app() -> Box<dyn FnMut(&mut CoreContext<'_>) + Send> {
    let mut listener: Option<SocketHandle> = None;
    let mut conns: Vec<(SocketHandle, Vec<u8>)> = Vec::new();
    Box::new(move |ctx| {
        let tcp = &mut ctx.stack.tcp;
        let l = *listener.get_or_insert_with(|| {
            let l = tcp.socket().unwrap();
            tcp.bind(l, SocketAddrV4::new(B_IP, 7)).unwrap();
            tcp.listen(l, 64).unwrap();
            l
        });
        while let Ok((h, _)) = tcp.accept(l) {
            conns.push((h, Vec::new()));
        }
        let now = ctx.now;
        conns.retain_mut(|(h, pending)| {
            if !pending.is_empty() {
                match tcp.send(*h, pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(SocketError::WouldBlock) => {}
                    Err(_) => {
                        let _ = tcp.close(*h, now);
                        return false;
                    }
                }
            }
            if pending.is_empty() {
                let mut buf = [0u8; 16384];
                match tcp.recv(*h, &mut buf) {
                    Ok(0) => {
                        let _ = tcp.close(*h, now);
                        return false;
                    }
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(SocketError::WouldBlock) => {}
                    Err(_) => {
                        let _ = tcp.close(*h, now);
                        return false;
                    }
                }
            }
            true
        });
    })
}

#[test]
fn a_core_serves_echo_on_its_own_thread_and_shuts_down_cleanly() {
    let (server_dev, mut client_dev) = ChannelDevice::pair(4096);
    let rt = Runtime::start(
        RuntimeConfig {
            idle: IdlePolicy::Backoff {
                max_sleep: flowlane::time::Duration::from_millis(1),
            },
            ..RuntimeConfig::default()
        },
        vec![CoreSetup {
            device: Box::new(server_dev),
            stack: StackConfig::new(B_MAC, B_IP, 24),
            app: echo_app(),
        }],
    )
    .unwrap();
    let clock = Clock::new();
    let mut client = Stack::new(StackConfig::new(A_MAC, A_IP, 24));
    let c = client.tcp.socket().unwrap();
    client
        .tcp
        .connect(c, clock.now(), SocketAddrV4::new(B_IP, 7))
        .unwrap();
    let mut data = vec![0u8; 4 << 20];
    Rng::new(7).fill_bytes(&mut data);
    let (mut sent, mut got) = (0usize, Vec::with_capacity(data.len()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut buf = vec![0u8; 65536];
    while got.len() < data.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "echo stalled at {}",
            got.len()
        );
        client.poll(clock.now(), &mut client_dev);
        if client.tcp.state(c).unwrap() != State::Established {
            continue;
        }
        if sent < data.len() {
            if let Ok(n) = client.tcp.send(c, &data[sent..]) {
                sent += n;
            }
        }
        while let Ok(n) = client.tcp.recv(c, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    // The server's published statistics show the connection.
    let t0 = std::time::Instant::now();
    loop {
        let stats = rt.stats();
        if stats[0].states[State::Established as usize] == 1
            && stats[0].tcp.connections_accepted == 1
        {
            assert!(stats[0].loops > 0);
            // The channel's own counters reach the core's: the stack saw
            // every frame the device delivered (stats are published per
            // loop, so the device is read in the same loop as the stack).
            let (dev, iface) = (&stats[0].device, &stats[0].iface);
            assert!(dev.rx_frames > 0 && dev.tx_frames > 0, "{dev:?}");
            assert_eq!(
                (dev.rx_frames, dev.rx_bytes),
                (iface.rx_frames, iface.rx_bytes)
            );
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{stats:?}"
        );
        client.poll(clock.now(), &mut client_dev);
    }
    let stopper = rt.stopper();
    stopper.store(true, Ordering::Release);
    rt.join().unwrap();
}

#[test]
fn every_core_thread_is_joined_when_the_runtime_is_dropped() {
    let mut cores = Vec::new();
    let mut peers = Vec::new();
    for i in 0..3u8 {
        let (dev, peer) = ChannelDevice::pair(16);
        peers.push(peer);
        let mut mac = B_MAC;
        mac.0[5] = 10 + i;
        cores.push(CoreSetup {
            device: Box::new(dev),
            stack: StackConfig::new(mac, B_IP, 24),
            app: Box::new(|ctx: &mut CoreContext<'_>| {
                if ctx.core == 2 && ctx.now > flowlane::time::Instant::from_millis(50) {
                    // Any core may stop them all.
                    ctx.stop();
                }
            }),
        });
    }
    let rt = Runtime::start(RuntimeConfig::default(), cores).unwrap();
    let t0 = std::time::Instant::now();
    while !rt.is_stopped() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    rt.join().unwrap();
    // The devices went with their threads: the peers' queues are unshared.
    drop(peers);
}

#[test]
fn control_operations_run_on_the_owning_core() {
    let (dev, _peer) = ChannelDevice::pair(16);
    let rt = Runtime::start(
        RuntimeConfig::default(),
        vec![CoreSetup {
            device: Box::new(dev),
            stack: StackConfig::new(B_MAC, B_IP, 24),
            app: Box::new(|_: &mut CoreContext<'_>| {}),
        }],
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Open a listener on core 0 from this thread.
    rt.submit(
        0,
        Box::new(move |ctx: &mut CoreContext<'_>| {
            let tcp = &mut ctx.stack.tcp;
            let l = tcp.socket().unwrap();
            tcp.bind(l, SocketAddrV4::new(B_IP, 80)).unwrap();
            tcp.listen(l, 8).unwrap();
            tx.send((ctx.core, std::thread::current().name().map(String::from)))
                .unwrap();
        }),
    )
    .map_err(|_| ())
    .unwrap();
    let (core, thread) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(core, 0);
    assert_eq!(thread.as_deref(), Some("flowlane-core-0"));
    let t0 = std::time::Instant::now();
    while rt.stats()[0].states[State::Listen as usize] != 1 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(rt
        .submit(7, Box::new(|_: &mut CoreContext<'_>| {}))
        .is_err());
    rt.join().unwrap();
}
