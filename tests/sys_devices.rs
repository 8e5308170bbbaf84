//! The OS-facing devices against the Linux kernel: a tap device and AF_XDP
//! on veth pairs, each test in its own network namespaces (unique names,
//! removed on drop even when an assertion fails).
//!
//! These tests need root. Without it they print "skipped: needs root" and
//! pass, unless `CI=true`, where a skip fails the test (CI runs as root, so
//! a skip there means something is broken).

use core::net::{Ipv4Addr, SocketAddrV4};
use std::io::{Read, Write};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use flowlane::api::{Stack, StackConfig};
use flowlane::phy::sys::{
    is_root, netns, AttachMode, NetNs, TapDevice, VethConfig, VethPair, XdpDevice, XdpOptions,
};
use flowlane::phy::{Device, DeviceCapabilities, FrameBatch};
use flowlane::time::Instant;
use flowlane::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

/// True if the test may run; prints the skip otherwise (and fails it under
/// CI=true).
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped: needs root");
    false
}

/// Real time since `start` as the stack's `Instant`.
fn now(start: StdInstant) -> Instant {
    Instant::from_micros(start.elapsed().as_micros() as u64)
}

fn arp_frame(
    op: ArpOperation,
    src_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_mac: EthernetAddress,
    dst_ip: Ipv4Addr,
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: if op == ArpOperation::Request {
            EthernetAddress([0xff; 6])
        } else {
            dst_mac
        },
        ethertype: EtherType::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: src_mac,
        source_protocol_addr: src_ip,
        target_hardware_addr: if op == ArpOperation::Request {
            EthernetAddress([0; 6])
        } else {
            dst_mac
        },
        target_protocol_addr: dst_ip,
    };
    let mut f = vec![0u8; 14 + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut f[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    f
}

fn echo_request(
    src_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_mac: EthernetAddress,
    dst_ip: Ipv4Addr,
    ident: u16,
    seq_no: u16,
) -> Vec<u8> {
    let data = b"flowlane tap echo";
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        protocol: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::Ipv4,
    };
    let mut f = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut f[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(
        &mut packet.payload_mut()[..],
    ));
    f
}

/// What a received frame is, for the assertions.
#[derive(Debug, PartialEq)]
enum Seen {
    Arp {
        op: ArpOperation,
        sha: EthernetAddress,
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    },
    EchoReply {
        src: Ipv4Addr,
        ident: u16,
        seq_no: u16,
    },
    Ipv4 {
        dst: Ipv4Addr,
    },
    Other,
}

fn classify(f: &[u8]) -> Seen {
    let Ok(eth) = EthernetFrame::new_checked(f) else {
        return Seen::Other;
    };
    match eth.ethertype() {
        EtherType::Arp => match ArpPacket::new_checked(eth.payload()).and_then(|p| {
            let r = ArpRepr::parse(&p)?;
            Ok(r)
        }) {
            Ok(ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) => Seen::Arp {
                op: operation,
                sha: source_hardware_addr,
                spa: source_protocol_addr,
                tpa: target_protocol_addr,
            },
            Err(_) => Seen::Other,
        },
        EtherType::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return Seen::Other;
            };
            if ip.protocol() == IpProtocol::Icmp {
                if let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) {
                    if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) =
                        Icmpv4Repr::parse(&icmp)
                    {
                        return Seen::EchoReply {
                            src: ip.src_addr(),
                            ident,
                            seq_no,
                        };
                    }
                }
            }
            Seen::Ipv4 { dst: ip.dst_addr() }
        }
        _ => Seen::Other,
    }
}

/// Receives from `dev` until `pred` matches a frame or `limit` passes;
/// answers ARP requests for `my_ip` on the way (the kernel may ask).
fn wait_for(
    dev: &mut TapDevice,
    my_ip: Ipv4Addr,
    limit: StdDuration,
    mut pred: impl FnMut(&Seen) -> bool,
) -> Option<Seen> {
    let start = StdInstant::now();
    let mut batch = FrameBatch::new();
    let mut out = FrameBatch::new();
    while start.elapsed() < limit {
        batch.clear();
        if dev.receive(now(start), &mut batch, 32) == 0 {
            std::thread::sleep(StdDuration::from_millis(2));
            continue;
        }
        for f in batch.iter() {
            let seen = classify(f);
            if let Seen::Arp {
                op: ArpOperation::Request,
                sha,
                spa,
                tpa,
            } = seen
            {
                if tpa == my_ip {
                    out.push_copy(&arp_frame(ArpOperation::Reply, dev.mac(), my_ip, sha, spa));
                }
            }
            if pred(&seen) {
                return Some(seen);
            }
        }
        if !out.is_empty() {
            dev.transmit(now(start), &mut out);
        }
    }
    None
}

#[test]
fn tap_kernel_answers_arp_and_ping() {
    if !root_or_skip("tap_kernel_answers_arp_and_ping") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let name = netns::unique_name('t');
    let mut dev = TapDevice::open(&name, 1).unwrap().pop().unwrap();
    assert_eq!(dev.ifname(), name);
    assert_eq!(dev.capabilities().mtu, 1500);
    assert!(dev.fd() >= 0);
    // The kernel side goes into the namespace (the fd stays ours), so the
    // test's addresses never touch the host's routing.
    netns::ip(&["link", "set", &name, "netns", ns.name()]).unwrap();
    let x = netns::unique_subnet();
    let kernel_ip = Ipv4Addr::new(10, 77, x, 1);
    let my_ip = Ipv4Addr::new(10, 77, x, 2);
    ns.ip(&["addr", "add", &format!("{kernel_ip}/24"), "dev", &name])
        .unwrap();
    ns.ip(&["link", "set", &name, "up"]).unwrap();

    // ARP: who has .1? tell .2
    let mut batch = FrameBatch::new();
    let kernel_mac = {
        let mut got = None;
        for _ in 0..5 {
            batch.push_copy(&arp_frame(
                ArpOperation::Request,
                dev.mac(),
                my_ip,
                EthernetAddress([0; 6]),
                kernel_ip,
            ));
            assert_eq!(dev.transmit(Instant::ZERO, &mut batch), 1);
            assert!(batch.is_empty());
            got = wait_for(&mut dev, my_ip, StdDuration::from_secs(1), |s| {
                matches!(s, Seen::Arp { op: ArpOperation::Reply, spa, tpa, .. }
                    if *spa == kernel_ip && *tpa == my_ip)
            });
            if got.is_some() {
                break;
            }
        }
        match got {
            Some(Seen::Arp { sha, .. }) => sha,
            other => panic!("no ARP reply from the kernel: {other:?}"),
        }
    };
    assert_ne!(kernel_mac, dev.mac());

    // ICMP echo to the kernel, three times.
    for seq in 1..=3u16 {
        batch.push_copy(&echo_request(
            dev.mac(),
            my_ip,
            kernel_mac,
            kernel_ip,
            0x4242,
            seq,
        ));
        assert_eq!(dev.transmit(Instant::ZERO, &mut batch), 1);
        let got = wait_for(&mut dev, my_ip, StdDuration::from_secs(3), |s| {
            *s == Seen::EchoReply {
                src: kernel_ip,
                ident: 0x4242,
                seq_no: seq,
            }
        });
        assert!(got.is_some(), "no echo reply {seq} from the kernel");
    }
    let st = dev.stats();
    assert!(st.tx_frames >= 4 && st.rx_frames >= 4, "{st:?}");
    assert_eq!(st.tx_drops + st.tx_errors + st.rx_errors, 0, "{st:?}");
    // The device-neutral counters are the tap's own, seen through the trait.
    let c = Device::counters(&dev);
    assert_eq!(c, st.device_counters(), "{c:?}");
    assert!(c.tx_frames >= 4 && c.rx_frames >= 4, "{c:?}");
    assert_eq!(c.rx_dropped + c.tx_dropped, 0, "{c:?}");
    println!("tap {name}: {st:?}");
}

/// Polls `stack` on the devices until `done` says so or `limit` passes.
fn run_stack<D: Device>(
    stack: &mut Stack,
    devs: &mut [D],
    start: StdInstant,
    limit: StdDuration,
    mut done: impl FnMut(&mut Stack) -> bool,
) -> bool {
    let t0 = StdInstant::now();
    while t0.elapsed() < limit {
        let mut moved = false;
        for d in devs.iter_mut() {
            moved |= stack.poll(now(start), d);
        }
        if done(stack) {
            return true;
        }
        if !moved {
            std::thread::sleep(StdDuration::from_micros(200));
        }
    }
    false
}

#[test]
fn tap_stack_answers_kernel_ping_and_tap_disappears_on_close() {
    if !root_or_skip("tap_stack_answers_kernel_ping_and_tap_disappears_on_close") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let name = netns::unique_name('t');
    let devs = TapDevice::open(&name, 2).unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0].ifname(), devs[1].ifname());
    assert_ne!(devs[0].fd(), devs[1].fd());
    assert_eq!(devs[0].mac(), devs[1].mac());
    netns::ip(&["link", "set", &name, "netns", ns.name()]).unwrap();
    let x = netns::unique_subnet();
    let kernel_ip = Ipv4Addr::new(10, 77, x, 1);
    let my_ip = Ipv4Addr::new(10, 77, x, 2);
    ns.ip(&["addr", "add", &format!("{kernel_ip}/24"), "dev", &name])
        .unwrap();
    ns.ip(&["link", "set", &name, "up"]).unwrap();

    let mut stack = Stack::new(StackConfig::new(devs[0].mac(), my_ip, 24));
    let mut devs = devs;
    let start = StdInstant::now();
    let replies = std::thread::scope(|s| {
        let pinger = s.spawn(|| ns.ping(my_ip, 3, StdDuration::from_secs(2)));
        run_stack(
            &mut stack,
            &mut devs,
            start,
            StdDuration::from_secs(20),
            |_| pinger.is_finished(),
        );
        pinger.join().unwrap()
    })
    .unwrap();
    assert_eq!(replies, 3, "flowlane on the tap answered {replies}/3 pings");
    assert!(stack.iface.counters().icmp_echo_replies >= 3);
    println!(
        "tap queues rx: {} + {}",
        devs[0].stats().rx_frames,
        devs[1].stats().rx_frames
    );

    assert!(ns.ip(&["link", "show", "dev", &name]).is_ok());
    drop(devs);
    // Non-persistent: the interface goes with its last descriptor.
    let gone = (0..50).any(|_| {
        std::thread::sleep(StdDuration::from_millis(20));
        ns.ip(&["link", "show", "dev", &name]).is_err()
    });
    assert!(gone, "tap {name} still exists after its fds closed");
}

/// Wraps a device and checks every frame it receives is flowlane's: ARP
/// whose target is `ip`, or IPv4 to `ip`.
struct OnlyOurs<'a> {
    dev: &'a mut XdpDevice,
    ip: Ipv4Addr,
    ours: u64,
    foreign: Vec<Seen>,
}

impl Device for OnlyOurs<'_> {
    fn capabilities(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }
    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let before = batch.len();
        let n = self.dev.receive(now, batch, max);
        for i in before..batch.len() {
            match classify(batch.get(i)) {
                Seen::Arp { tpa, .. } if tpa == self.ip => self.ours += 1,
                Seen::Ipv4 { dst } if dst == self.ip => self.ours += 1,
                other => self.foreign.push(other),
            }
        }
        n
    }
    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize {
        self.dev.transmit(now, batch)
    }
}

/// Two namespaces joined by a veth pair: the local end (flowlane's, with an
/// extra kernel address .3) in `a`, the kernel peer (.1) in `b`.
fn xdp_topology(queues: u32) -> (NetNs, NetNs, VethPair) {
    let a = NetNs::new().unwrap();
    let b = NetNs::new().unwrap();
    let veth = VethPair::with_config(VethConfig {
        local_ns: Some(&a),
        peer_ns: &b,
        queues,
    })
    .unwrap();
    veth.add_local_kernel_addr(3).unwrap();
    (a, b, veth)
}

#[test]
fn xdp_stack_answers_ping_and_other_traffic_stays_with_the_kernel() {
    if !root_or_skip("xdp_stack_answers_ping_and_other_traffic_stays_with_the_kernel") {
        return;
    }
    let (a, b, veth) = xdp_topology(1);
    let ip = veth.flowlane_addr();
    let local = veth.local_name().to_string();
    let mut dev = a
        .run(|| XdpDevice::open(&local, 0, ip, XdpOptions::default()))
        .unwrap()
        .unwrap();
    println!(
        "AF_XDP on {} queue 0: bind mode {}, XDP attach {}",
        dev.ifname(),
        dev.mode(),
        dev.attach_mode().name()
    );
    assert_eq!(dev.mode(), "copy", "veth has no zero-copy");
    assert_eq!(dev.attach_mode(), AttachMode::Generic);
    assert_eq!(dev.queue(), 0);
    assert_eq!(dev.ip(), ip);
    assert_eq!(dev.capabilities().mtu, 1500);

    let mut stack = Stack::new(StackConfig::new(dev.mac(), ip, 24));
    let start = StdInstant::now();
    let mut only = OnlyOurs {
        dev: &mut dev,
        ip,
        ours: 0,
        foreign: Vec::new(),
    };
    // 1. The kernel in `b` pings flowlane.
    let replies = std::thread::scope(|s| {
        let pinger = s.spawn(|| b.ping(ip, 3, StdDuration::from_secs(1)));
        run_stack(
            &mut stack,
            std::slice::from_mut(&mut only),
            start,
            StdDuration::from_secs(20),
            |_| pinger.is_finished(),
        );
        pinger.join().unwrap()
    })
    .unwrap();
    assert_eq!(
        replies, 3,
        "flowlane over AF_XDP answered {replies}/3 pings"
    );
    assert!(only.ours >= 4, "ARP + 3 echo requests, saw {}", only.ours);

    // 2. The kernel in `b` pings the kernel in `a` (.3) over the same veth
    //    end while flowlane polls: the program must pass these to the kernel.
    let ours_before = only.ours;
    let kernel_replies = std::thread::scope(|s| {
        let pinger = s.spawn(|| b.ping(veth.host(3), 3, StdDuration::from_secs(1)));
        run_stack(
            &mut stack,
            std::slice::from_mut(&mut only),
            start,
            StdDuration::from_secs(20),
            |_| pinger.is_finished(),
        );
        pinger.join().unwrap()
    })
    .unwrap();
    assert_eq!(
        kernel_replies, 3,
        "the kernel behind the XDP program answered {kernel_replies}/3"
    );
    assert!(
        only.foreign.is_empty(),
        "frames not for flowlane reached the socket: {:?}",
        only.foreign
    );
    let ours = only.ours;
    let (rx_bytes, rx_packets) = veth.local_rx_counters().unwrap();
    println!(
        "flowlane frames: {} (+{} during the kernel ping); kernel {local} rx: {rx_packets} packets, {rx_bytes} bytes",
        only.ours,
        only.ours - ours_before
    );
    let st = dev.stats();
    println!("{st:?}\n{:?}", dev.kernel_stats().unwrap());
    assert!(st.rx_frames >= 4 && st.tx_frames >= 4, "{st:?}");
    assert_eq!(
        st.tx_drops + st.tx_kick_errors + st.rx_bad_descs,
        0,
        "{st:?}"
    );
    // counters(): our counters plus XDP_STATISTICS, through the trait.
    // Every frame the interface sent or received went through the socket;
    // on an idle link with 3 pings the rings dropped nothing.
    let c = Device::counters(&dev);
    println!("{c:?}");
    let iface = stack.iface.counters();
    assert!(
        iface.tx_frames >= 4,
        "ARP reply + 3 echo replies: {iface:?}"
    );
    assert_eq!((c.tx_frames, c.tx_bytes), (st.tx_frames, st.tx_bytes));
    assert_eq!((c.rx_frames, c.rx_bytes), (st.rx_frames, st.rx_bytes));
    assert!(c.tx_frames >= iface.tx_frames, "{c:?} {iface:?}");
    assert!(c.rx_frames >= ours, "{c:?}: saw {ours} of ours");
    assert_eq!(c.rx_dropped + c.tx_dropped + c.tx_kick_errors, 0, "{c:?}");
    assert!(stack.iface.counters().icmp_echo_replies >= 3);
}

#[test]
fn xdp_two_queues_open_and_share_one_program() {
    if !root_or_skip("xdp_two_queues_open_and_share_one_program") {
        return;
    }
    for attach in [AttachMode::Generic, AttachMode::Native] {
        two_queues(attach);
    }
}

/// Makes the kernel in `ns` open `n` TCP connections to a closed port of
/// `ip` (each refused by flowlane's RST): `n` flows, so the peer's transmit
/// queue choice (a flow hash) spreads them over the receive queues.
fn refused_connects(ns: &NetNs, ip: Ipv4Addr, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let r = ns
                .run(|| {
                    std::net::TcpStream::connect_timeout(
                        &SocketAddrV4::new(ip, 9).into(),
                        StdDuration::from_secs(2),
                    )
                })
                .unwrap();
            matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
        .count()
}

fn two_queues(attach: AttachMode) {
    let (a, b, veth) = xdp_topology(2);
    let ip = veth.flowlane_addr();
    let local = veth.local_name().to_string();
    let opts = XdpOptions {
        attach,
        ..XdpOptions::default()
    };
    let (q0, q1, again, other_ip) = a
        .run(|| {
            let q0 = XdpDevice::open(&local, 0, ip, opts);
            let q1 = XdpDevice::open(&local, 1, ip, opts);
            let again = XdpDevice::open(&local, 0, ip, opts);
            let other_ip = XdpDevice::open(&local, 1, Ipv4Addr::new(10, 77, 0, 9), opts);
            (q0, q1, again, other_ip)
        })
        .unwrap();
    let (q0, q1) = (q0.unwrap(), q1.unwrap());
    assert_eq!((q0.queue(), q1.queue()), (0, 1));
    // veth refuses zero-copy; native attach tries it and falls back.
    assert_eq!((q0.mode(), q1.mode()), ("copy", "copy"));
    assert_eq!(q0.attach_mode(), attach);
    let e = again.unwrap_err();
    println!("{attach:?}: second socket on queue 0: {e}");
    assert!(e.to_string().contains("queue 0"), "{e}");
    let e = other_ip.unwrap_err();
    println!("{attach:?}: other address on the same interface: {e}");
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    let shown = a.ip(&["link", "show", "dev", &local]).unwrap();
    assert!(
        shown.contains("prog/xdp"),
        "no XDP program on {local}: {shown}"
    );

    let mut devs = [q0, q1];
    let mut stack = Stack::new(StackConfig::new(devs[0].mac(), ip, 24));
    let start = StdInstant::now();
    let (replies, refused) = std::thread::scope(|s| {
        let kernel = s.spawn(|| {
            let replies = b.ping(ip, 3, StdDuration::from_secs(1)).unwrap();
            (replies, refused_connects(&b, ip, 16))
        });
        run_stack(
            &mut stack,
            &mut devs,
            start,
            StdDuration::from_secs(30),
            |_| kernel.is_finished(),
        );
        kernel.join().unwrap()
    });
    let (rx0, rx1) = (devs[0].stats().rx_frames, devs[1].stats().rx_frames);
    println!("{attach:?}: {replies}/3 pings, {refused}/16 connects refused; rx per queue: q0 {rx0} q1 {rx1}");
    assert_eq!(
        replies, 3,
        "flowlane on two queues answered {replies}/3 pings"
    );
    assert_eq!(refused, 16, "flowlane refused {refused}/16 connects");
    if attach == AttachMode::Native {
        // With native XDP, veth runs the program per receive queue (NAPI),
        // so flows land on both; generic XDP on veth sees queue 0 only.
        assert!(rx0 > 0 && rx1 > 0, "q0 {rx0} q1 {rx1}");
    }

    // Closing queue 0 leaves the program attached for queue 1.
    let [q0, mut q1] = devs;
    drop(q0);
    let shown = a.ip(&["link", "show", "dev", &local]).unwrap();
    assert!(shown.contains("prog/xdp"), "{shown}");
    if attach == AttachMode::Native {
        let before = q1.stats().rx_frames;
        std::thread::scope(|s| {
            let kernel = s.spawn(|| refused_connects(&b, ip, 16));
            run_stack(
                &mut stack,
                std::slice::from_mut(&mut q1),
                start,
                StdDuration::from_secs(30),
                |_| kernel.is_finished(),
            );
            kernel.join().unwrap()
        });
        assert!(q1.stats().rx_frames > before, "queue 1 stopped receiving");
    }
    // The last queue closing detaches the program. Seen once in a full
    // suite run: the program still listed right after the close, so allow
    // the kernel a moment (bounded) before calling it left behind.
    drop(q1);
    let mut shown = String::new();
    for _ in 0..100 {
        shown = a.ip(&["link", "show", "dev", &local]).unwrap();
        if !shown.contains("prog/xdp") {
            break;
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    assert!(
        !shown.contains("prog/xdp"),
        "XDP program left on {local}: {shown}"
    );
}
#[test]
fn xdp_kernel_tcp_client_talks_to_flowlane_echo() {
    if !root_or_skip("xdp_kernel_tcp_client_talks_to_flowlane_echo") {
        return;
    }
    let (a, b, veth) = xdp_topology(1);
    let ip = veth.flowlane_addr();
    let local = veth.local_name().to_string();
    let mut dev = a
        .run(|| XdpDevice::open(&local, 0, ip, XdpOptions::default()))
        .unwrap()
        .unwrap();
    let mut stack = Stack::new(StackConfig::new(dev.mac(), ip, 24));
    let listener = stack.tcp.socket().unwrap();
    stack
        .tcp
        .bind(listener, SocketAddrV4::new(ip, 7777))
        .unwrap();
    stack.tcp.listen(listener, 8).unwrap();

    const LEN: usize = 4 << 20;
    let data: Vec<u8> = (0..LEN as u32)
        .map(|i| i.wrapping_mul(2654435761) as u8)
        .collect();
    let start = StdInstant::now();
    let (echoed, elapsed) = std::thread::scope(|s| {
        let data = &data;
        let client = s.spawn(move || {
            let stream = b
                .run(|| {
                    std::net::TcpStream::connect_timeout(
                        &SocketAddrV4::new(ip, 7777).into(),
                        StdDuration::from_secs(5),
                    )
                })
                .unwrap()
                .unwrap();
            stream
                .set_read_timeout(Some(StdDuration::from_secs(10)))
                .unwrap();
            let t = StdInstant::now();
            let mut w = stream.try_clone().unwrap();
            let writer = std::thread::spawn({
                let data = data.clone();
                move || {
                    w.write_all(&data).unwrap();
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                }
            });
            let mut got = Vec::with_capacity(LEN);
            let mut r = stream;
            let _ = r.read_to_end(&mut got);
            writer.join().unwrap();
            (got, t.elapsed())
        });
        // flowlane: accept one connection and echo until EOF, then close.
        let mut conn = None;
        let mut pending: Vec<u8> = Vec::new();
        let mut eof = false;
        let mut closed = false;
        let mut buf = vec![0u8; 64 << 10];
        run_stack(
            &mut stack,
            std::slice::from_mut(&mut dev),
            start,
            StdDuration::from_secs(60),
            |st| {
                if conn.is_none() {
                    if let Ok((h, _)) = st.tcp.accept(listener) {
                        conn = Some(h);
                    }
                }
                let Some(h) = conn else {
                    return client.is_finished();
                };
                loop {
                    if !pending.is_empty() {
                        match st.tcp.send(h, &pending) {
                            Ok(n) => {
                                pending.drain(..n);
                            }
                            Err(_) => break,
                        }
                        if !pending.is_empty() {
                            break;
                        }
                    }
                    match st.tcp.recv(h, &mut buf) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
                if eof && pending.is_empty() && !closed {
                    st.tcp.close(h, now(start)).unwrap();
                    closed = true;
                }
                client.is_finished()
            },
        );
        client.join().unwrap()
    });
    assert_eq!(echoed.len(), LEN, "echoed {} of {LEN} bytes", echoed.len());
    assert!(echoed == data, "echoed bytes differ");
    let st = dev.stats();
    println!(
        "TCP echo of {} MiB over AF_XDP ({} mode): {:.1} ms, {:.0} Mbit/s each way; {st:?}",
        LEN >> 20,
        dev.mode(),
        elapsed.as_secs_f64() * 1e3,
        LEN as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
    );
    println!("{:?}", dev.kernel_stats().unwrap());
    // The 4 MiB each way crossed the socket in frames of at most 1514
    // bytes, and the interface and the device agree on what moved.
    let c = Device::counters(&dev);
    println!("{c:?}");
    let min = (LEN / 1514) as u64;
    assert!(c.rx_frames >= min && c.tx_frames >= min, "{c:?}");
    assert!(
        c.rx_bytes >= LEN as u64 && c.tx_bytes >= LEN as u64,
        "{c:?}"
    );
    let iface = stack.iface.counters();
    assert_eq!(
        (c.rx_frames, c.tx_frames),
        (iface.rx_frames, iface.tx_frames),
        "{c:?} {iface:?}"
    );
}

#[test]
fn verifier_log_is_in_the_error() {
    if !root_or_skip("verifier_log_is_in_the_error") {
        return;
    }
    use flowlane::phy::sys::bpf::{Insn, XdpProgram};
    // r2 = ctx->data; r0 = *(u8 *)(r2 + 0) with no bounds check; exit.
    let bad = [
        Insn {
            code: 0x61,
            regs: 0x12,
            off: 0,
            imm: 0,
        },
        Insn {
            code: 0x71,
            regs: 0x20,
            off: 0,
            imm: 0,
        },
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let e = XdpProgram::load(&bad).unwrap_err();
    println!("{e}");
    let msg = e.to_string();
    assert!(msg.contains("rejected by the verifier"), "{msg}");
    assert!(msg.contains("invalid access to packet"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn errors_name_their_cause() {
    if !root_or_skip("errors_name_their_cause") {
        return;
    }
    let e = XdpDevice::open(
        "flnosuchif0",
        0,
        Ipv4Addr::new(10, 77, 0, 2),
        XdpOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().contains("flnosuchif0"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    // A queue the interface does not have.
    let ns = NetNs::new().unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let local = veth.local_name().to_string();
    let e = XdpDevice::open(&local, 5, veth.flowlane_addr(), XdpOptions::default()).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("queue 5"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
}

/// Frame rates through one AF_XDP queue (copy mode, generic XDP on veth):
/// the kernel peer floods UDP at flowlane (receive; the kernel's sendto rate
/// bounds it), then flowlane floods 64-byte frames at the peer (transmit). Not a pass/fail test; run it with
/// `cargo test --release --test sys_devices xdp_rates -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn xdp_rates() {
    if !root_or_skip("xdp_rates") {
        return;
    }
    let (a, b, veth) = xdp_topology(1);
    let ip = veth.flowlane_addr();
    let local = veth.local_name().to_string();
    let mut dev = a
        .run(|| XdpDevice::open(&local, 0, ip, XdpOptions::default()))
        .unwrap()
        .unwrap();
    let mac = dev.mac().to_string();
    b.ip(&[
        "neigh",
        "add",
        &ip.to_string(),
        "lladdr",
        &mac,
        "dev",
        veth.peer_name(),
    ])
    .unwrap();
    let secs = 2.0;

    // Receive: the kernel sends 18-byte UDP datagrams (64-byte frames).
    let sock = b
        .run(|| std::net::UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let mut batch = FrameBatch::with_capacity(64);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sent, got) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if sock.send_to(&[0u8; 18], SocketAddrV4::new(ip, 9)).is_ok() {
                    n += 1;
                }
            }
            n
        });
        let t = StdInstant::now();
        let mut got = 0u64;
        while t.elapsed().as_secs_f64() < secs {
            batch.clear();
            got += dev.receive(Instant::ZERO, &mut batch, 64) as u64;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sender.join().unwrap(), got)
    });
    println!(
        "rx: kernel sent {:.0}/s, flowlane received {:.0} frames/s; {} UMEM frames free; {:?}",
        sent as f64 / secs,
        got as f64 / secs,
        dev.free_frames(),
        dev.kernel_stats().unwrap()
    );

    // Transmit: 64-byte UDP frames to the peer, 64 per burst.
    let peer_mac = b
        .ip(&["link", "show", "dev", veth.peer_name()])
        .unwrap()
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_string();
    let peer_mac = EthernetAddress(
        peer_mac
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap(),
    );
    // A 64-byte frame with the local experimental ethertype 0x88b5: the peer
    // counts it at the device and drops it at the protocol demux, so the
    // measurement is the transmit path, not the peer's ICMP.
    let frame = {
        let mut f = echo_request(dev.mac(), ip, peer_mac, veth.peer_addr(), 1, 1);
        f.resize(64, 0);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    };
    batch.clear();
    let (_, rx_before) = peer_rx(&b, veth.peer_name());
    let t = StdInstant::now();
    let mut accepted = 0u64;
    let mut offered = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            batch.push_copy(&frame);
        }
        offered += 64;
        accepted += dev.transmit(Instant::ZERO, &mut batch) as u64;
    }
    std::thread::sleep(StdDuration::from_millis(100));
    let (_, rx_after) = peer_rx(&b, veth.peer_name());
    println!(
        "tx: offered {:.0}/s, accepted {:.0}/s, peer received {:.0} frames/s; {:?}",
        offered as f64 / secs,
        accepted as f64 / secs,
        (rx_after - rx_before) as f64 / secs,
        dev.stats()
    );
}

/// RX (bytes, packets) of `ifname` in `ns`, from `ip -s link`.
fn peer_rx(ns: &NetNs, ifname: &str) -> (u64, u64) {
    let out = ns.ip(&["-s", "link", "show", "dev", ifname]).unwrap();
    let mut lines = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("RX:"));
    lines.next();
    let nums: Vec<u64> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}
