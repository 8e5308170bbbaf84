//! BENCHMARKS.md's veth targets: W2 (busy-polling), W3 and W4 over a veth
//! pair between two network namespaces, each side pinned to its own core
//! with `core_affinity` (client on core 0, the bench's own thread; server on
//! core 1), in three pairings measured in the same run:
//!
//! - `flowlane`: flowlane on AF_XDP (copy mode, generic XDP) at both ends:
//!   the client a `Stack` polled by the bench thread, the server flowlane's
//!   per-core runtime (busy-polling) running the echo server;
//! - `linux`: the Linux stack at both ends of the same kind of veth, std
//!   sockets busy-polled without blocking (as `bench/kernel.rs`);
//! - `linux_client_flowlane_server`: Linux client against flowlane's server.
//!
//! Criterion groups `veth_w2_echo_latency` and `veth_w3_echo_throughput`
//! (one iteration: one round trip, one request/response pair; functions
//! named as the pairings). W4 is not timed by criterion but run as fixed
//! windows, BENCHMARKS.md's definition: `veth_w4_connection_rate` (5 s) and
//! `veth_w4_30s` (30 s), whose completed and failed connects, seconds and
//! TIME-WAIT count at the end go to
//! `target/criterion/<group>/<pairing>/extra-<baseline>.json`, as do W2's
//! round-trip p50/p99 (`veth_w2_echo_latency/<pairing>/extra-*.json`).
//! `cargo run --release --example bench_report [-- BASELINE...]` prints
//! them in its second table with the ratios to Linux. A summary line per
//! run shows flowlane's retransmissions, drops and AF_XDP ring counters.
//!
//! Run (root; it prints why and skips otherwise, except under `CI=true`,
//! where a skip is a failure): `cargo bench --bench veth` (about 2½
//! minutes; `-- --save-baseline runN` to keep several runs for the report);
//! `cargo bench --bench veth -- --test` runs W2/W3 once and the W4 windows
//! for 0.2 s and 1 s (about 8 s in all). Do not use `taskset`: the bench
//! pins its threads. A criterion filter also selects the W4 windows
//! (`veth_w4_30s/linux` runs only that one).
//!
//! Topology (made fresh for every workload and pairing, so no TIME-WAIT
//! state or XDP program carries over; everything `fl...`, in 10.77.0.0/16,
//! removed by guards, also on a panic):
//!
//! ```text
//!  client namespace                         server namespace
//!  Linux client   10.77.x.1 ─┐          ┌─ flowlane server 10.77.x.2 (AF_XDP)
//!  flowlane client 10.77.x.4 ┴─ veth ═ veth ─┴─ Linux server    10.77.x.3
//! ```
//!
//! What differs from BENCHMARKS.md:
//! - W2/W3 are criterion samples (1 s warm-up, 3 s measured, 10 samples),
//!   not 1 000 + 200 000 round trips or one 5 s window; W2's p50/p99 are
//!   over every round trip of the run, warm-up included (two clock reads
//!   per round trip, on W2 only).
//! - A failed connect is counted per attempt: a slot whose connect is
//!   refused at once (EADDRNOTAVAIL, no free port) tries again on the next
//!   loop.
//! - The client-side veth end has TX checksum offload off for the AF_XDP
//!   pairings (AFXDP.md); for Linux at both ends it is turned back on, so
//!   Linux has its usual offloads. The Linux sides busy-poll non-blocking
//!   sockets (no SO_BUSY_POLL), as `bench/kernel.rs` does.
//! - flowlane's client is a bare `Stack` polled in the bench's thread (the
//!   runtime is not needed for one core); its server is the runtime with
//!   `apps::EchoServer`, which echoes whatever it reads (so W4's server
//!   replies and then closes after the client's FIN).

#[path = "results.rs"]
mod results;

use results::{baseline_name, fixed_window, measuring, selected, W4Window};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as WallClock};

use criterion::{BenchmarkGroup, Criterion, Throughput};
use socket2::{Domain, Socket, Type};

use flowlane::api::{SocketError, SocketHandle, Stack, StackConfig, State};
use flowlane::apps::{self, EchoServer, Published};
use flowlane::phy::sys::{netns, NetNs, VethConfig, VethPair, XdpDevice, XdpOptions};
use flowlane::runtime::{Clock, CoreSetup, IdlePolicy, Runtime, RuntimeConfig};
use flowlane::time::Instant;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const PORT: u16 = 7;
const BIG_BUFFER: usize = 256 * 1024;
const SMALL_BUFFER: usize = 4 * 1024;
const MESSAGE: usize = 64;
const ECHO_CONNECTIONS: usize = 64;
const IN_FLIGHT: usize = 32;
const CLIENT_CORE: usize = 0;
const SERVER_CORE: usize = 1;
/// Nothing moving for this long is a stall: the bench panics (bounded).
const STALL: Duration = Duration::from_secs(10);

fn pin(core: usize) {
    // Not `get_core_ids()`: under `taskset` it lists only the allowed cores.
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

// ----- topology ------------------------------------------------------------

/// Two namespaces and a veth pair; fields drop in order (veth first).
struct Topo {
    veth: VethPair,
    client_ns: NetNs,
    server_ns: NetNs,
}

impl Topo {
    fn new() -> std::io::Result<Topo> {
        let server_ns = NetNs::new()?;
        let client_ns = NetNs::new()?;
        // The kernel's end (TX checksum offload off, address .1) is the
        // client's; the local end is the servers'.
        let veth = VethPair::with_config(VethConfig {
            local_ns: Some(&server_ns),
            peer_ns: &client_ns,
            queues: 1,
        })?;
        veth.add_local_kernel_addr(3)?;
        Ok(Topo {
            veth,
            client_ns,
            server_ns,
        })
    }

    fn flowlane_server(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.veth.flowlane_addr(), PORT)
    }

    fn linux_server(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.veth.host(3), PORT)
    }

    fn flowlane_client_ip(&self) -> Ipv4Addr {
        self.veth.host(4)
    }

    /// TX checksum offload on the client's end (off for AF_XDP peers).
    fn client_tx_checksum(&self, on: bool) -> std::io::Result<()> {
        let name = self.veth.peer_name().to_string();
        self.client_ns
            .run(move || netns::set_tx_checksum(&name, on))?
    }

    /// The kernel's drop counters of both veth ends and the softnet
    /// backlog drops since boot (all namespaces), as one line.
    fn drops(&self) -> String {
        let end = |ns: &NetNs, ifname: &str| -> String {
            let out = ns
                .ip(&["-s", "link", "show", "dev", ifname])
                .unwrap_or_default();
            let mut lines = out.lines();
            let mut got = Vec::new();
            while let Some(l) = lines.next() {
                let l = l.trim_start();
                if l.starts_with("RX:") || l.starts_with("TX:") {
                    let dropped = lines
                        .next()
                        .and_then(|v| v.split_whitespace().nth(3))
                        .unwrap_or("?");
                    got.push(format!("{} dropped {dropped}", &l[..2]));
                }
            }
            got.join(", ")
        };
        let backlog: u64 = std::fs::read_to_string("/proc/net/softnet_stat")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
            .sum();
        format!(
            "veth client end {}; server end {}; softnet backlog drops since boot {backlog}",
            end(&self.client_ns, self.veth.peer_name()),
            end(&self.server_ns, self.veth.local_name()),
        )
    }

    fn open_xdp(ns: &NetNs, ifname: &str, ip: Ipv4Addr) -> std::io::Result<XdpDevice> {
        let ifname = ifname.to_string();
        ns.run(move || XdpDevice::open(&ifname, 0, ip, XdpOptions::default()))?
    }
}

/// Why the bench cannot run here, if it cannot: not root, or AF_XDP (or
/// the namespaces) cannot be set up.
fn probe() -> Result<(), String> {
    netns::require_root("the veth bench").map_err(|e| e.to_string())?;
    let topo = Topo::new().map_err(|e| format!("cannot make the veth topology: {e}"))?;
    let dev = Topo::open_xdp(
        &topo.server_ns,
        topo.veth.local_name(),
        topo.veth.flowlane_addr(),
    )
    .map_err(|e| format!("AF_XDP cannot be set up: {e}"))?;
    eprintln!(
        "veth bench: AF_XDP {} mode, {} XDP",
        dev.mode(),
        dev.attach_mode().name()
    );
    Ok(())
}

// ----- servers -------------------------------------------------------------

enum Server {
    Flowlane {
        rt: Option<Runtime>,
        drain: Arc<AtomicBool>,
        published: Arc<Mutex<Published>>,
    },
    Linux {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    },
}

impl Server {
    /// flowlane's echo server on AF_XDP, busy-polling on the server core.
    fn flowlane(topo: &Topo, buffer: usize) -> Server {
        let ip = topo.veth.flowlane_addr();
        let dev = Topo::open_xdp(&topo.server_ns, topo.veth.local_name(), ip)
            .expect("AF_XDP on the server end");
        let mut stack = StackConfig::new(dev.mac(), ip, topo.veth.prefix_len());
        stack.endpoint.tcp.rx_buffer = buffer;
        stack.endpoint.tcp.tx_buffer = buffer;
        stack.endpoint.tcp.nodelay = true;
        let drain = Arc::new(AtomicBool::new(false));
        let published = Arc::new(Mutex::new(Published::default()));
        let rt = Runtime::start(
            RuntimeConfig {
                cpus: vec![SERVER_CORE],
                idle: IdlePolicy::BusyPoll,
                ..RuntimeConfig::default()
            },
            vec![CoreSetup {
                device: Box::new(dev),
                stack,
                app: apps::runtime_app(
                    Box::new(EchoServer::new(PORT)),
                    drain.clone(),
                    published.clone(),
                ),
            }],
        )
        .expect("flowlane runtime");
        Server::Flowlane {
            rt: Some(rt),
            drain,
            published,
        }
    }

    /// The kernel's echo server: one thread on the server core, busy-polling
    /// non-blocking sockets (accepting, echoing, dropping at end of stream).
    fn linux(topo: &Topo, buffer: usize) -> Server {
        let addr = topo.linux_server();
        let listener = topo
            .server_ns
            .run(|| -> std::io::Result<TcpListener> {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
                // Children inherit the buffer sizes; the SYN-ACK's window
                // scale follows them.
                s.set_send_buffer_size(buffer)?;
                s.set_recv_buffer_size(buffer)?;
                s.set_reuse_address(true)?;
                s.bind(&addr.into())?;
                s.listen(1024)?;
                s.set_nonblocking(true)?;
                Ok(s.into())
            })
            .and_then(|r| r)
            .expect("Linux listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            pin(SERVER_CORE);
            let mut conns: Vec<TcpStream> = Vec::new();
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                while let Ok((s, _)) = listener.accept() {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_nonblocking(true);
                    conns.push(s);
                }
                conns.retain_mut(|s| loop {
                    match s.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return false;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                });
            }
        });
        Server::Linux {
            stop,
            thread: Some(thread),
        }
    }

    /// One line on what the server saw (flowlane: its retransmissions).
    /// Closes flowlane's connections: call it at the end.
    fn summary(&self) -> String {
        match self {
            Server::Flowlane {
                rt,
                published,
                drain,
            } => {
                // Closing every connection counts their retransmissions;
                // the core publishes within 10 ms.
                drain.store(true, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
                let c = published.lock().map(|p| p.counters).unwrap_or_default();
                let total = rt
                    .as_ref()
                    .map(|rt| flowlane::runtime::total(&rt.stats()))
                    .unwrap_or_default();
                let dropped: u64 = total.iface.drops.iter().sum();
                let d = total.device;
                format!(
                    "server: accepted {}, failed {}, retransmits {} (RTOs {}), frames dropped {dropped}, \
                     device rx dropped {}, fill ring empty {}, tx dropped {}, kick retries {}, kick errors {}",
                    c.accepted,
                    c.failed,
                    c.retransmits,
                    c.rtos,
                    d.rx_dropped,
                    d.rx_fill_ring_empty,
                    d.tx_dropped,
                    d.tx_kick_retries,
                    d.tx_kick_errors
                )
            }
            Server::Linux { .. } => String::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self {
            Server::Flowlane { rt, drain, .. } => {
                drain.store(true, Ordering::Relaxed);
                if let Some(rt) = rt.take() {
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = rt.join();
                }
            }
            Server::Linux { stop, thread } => {
                stop.store(true, Ordering::Relaxed);
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

// ----- clients -------------------------------------------------------------

/// flowlane as the client: a stack on AF_XDP on the client's veth end,
/// polled by the bench's thread.
struct FlClient {
    stack: Stack,
    dev: XdpDevice,
    clock: Clock,
    now: Instant,
}

impl FlClient {
    fn new(topo: &Topo, buffer: usize) -> FlClient {
        let ip = topo.flowlane_client_ip();
        let dev = Topo::open_xdp(&topo.client_ns, topo.veth.peer_name(), ip)
            .expect("AF_XDP on the client end");
        let mut cfg = StackConfig::new(dev.mac(), ip, topo.veth.prefix_len());
        cfg.endpoint.tcp.rx_buffer = buffer;
        cfg.endpoint.tcp.tx_buffer = buffer;
        cfg.endpoint.tcp.nodelay = true;
        let clock = Clock::new();
        FlClient {
            stack: Stack::new(cfg),
            dev,
            now: clock.now(),
            clock,
        }
    }

    #[inline]
    fn poll(&mut self) {
        self.now = self.clock.now();
        self.stack.poll(self.now, &mut self.dev);
    }

    fn connect(&mut self, to: SocketAddrV4) -> Option<SocketHandle> {
        let tcp = &mut self.stack.tcp;
        let h = tcp.socket().ok()?;
        match tcp.connect(h, self.now, to) {
            Ok(()) => Some(h),
            Err(_) => {
                let _ = tcp.close(h, self.now);
                None
            }
        }
    }

    fn open(&self, h: SocketHandle) -> Open {
        match self.stack.tcp.state(h) {
            Ok(State::SynSent | State::SynReceived) => Open::Pending,
            Ok(State::Closed) | Err(_) => Open::Failed,
            Ok(_) => Open::Established,
        }
    }

    fn recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> Received {
        match self.stack.tcp.recv(h, buf) {
            Ok(0) => Received::End,
            Ok(n) => Received::Data(n),
            Err(SocketError::WouldBlock) => Received::Empty,
            Err(_) => Received::Failed,
        }
    }

    fn time_wait(&self) -> usize {
        self.stack.tcp.state_counts()[State::TimeWait as usize] as usize
    }

    fn summary(&self, conns: &[SocketHandle]) -> String {
        let retransmits: u64 = conns
            .iter()
            .filter_map(|h| self.stack.tcp.info(*h).ok())
            .map(|i| i.counters.retransmits)
            .sum();
        let x = self.dev.stats();
        let k = self.dev.kernel_stats().unwrap_or_default();
        let c = self.stack.tcp.counters();
        format!(
            "client: retransmits {retransmits} (open connections), TIME-WAIT reuses {}, \
             frames dropped {}; xdp: tx drops {}, tx kicks {} (retries {}, errors {}), \
             rx kicks {}, kernel rx dropped {}, rx ring full {}, fill ring empty {}",
            c.time_wait_reused_active,
            self.stack.iface.counters().drops.iter().sum::<u64>(),
            x.tx_drops,
            x.tx_kicks,
            x.tx_kick_retries,
            x.tx_kick_errors,
            x.rx_kicks,
            k.rx_dropped,
            k.rx_ring_full,
            k.rx_fill_ring_empty_descs
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Open {
    Pending,
    Established,
    Failed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Received {
    Data(usize),
    Empty,
    End,
    Failed,
}

/// A kernel socket with `buffer`-byte buffers and TCP_NODELAY, set before
/// connect (so the window scale follows); made in the calling thread's
/// namespace. `Err` if connect fails at once (EADDRNOTAVAIL when every port
/// is taken).
fn kernel_connect(
    to: SocketAddrV4,
    buffer: usize,
    nonblocking: bool,
) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_send_buffer_size(buffer)?;
    s.set_recv_buffer_size(buffer)?;
    s.set_tcp_nodelay(true)?;
    if !nonblocking {
        // Bounded: a setup connect that gets no answer fails in 10 s.
        s.connect_timeout(&to.into(), STALL)?;
        return Ok(s.into());
    }
    s.set_nonblocking(true)?;
    match s.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}

fn kernel_recv(s: &mut TcpStream, buf: &mut [u8]) -> Received {
    match s.read(buf) {
        Ok(0) => Received::End,
        Ok(n) => Received::Data(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Received::Empty,
        Err(_) => Received::Failed,
    }
}

/// Kernel sockets in TIME-WAIT towards `port` in `ns` (/proc/net/tcp).
fn kernel_time_wait(ns: &NetNs, port: u16) -> usize {
    let text = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/tcp"))
        .and_then(|r| r)
        .unwrap_or_default();
    let port = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "06" && f[2].ends_with(&port)
        })
        .count()
}

// ----- W2 and W3 -----------------------------------------------------------

enum EchoClient {
    Flowlane(Box<FlClient>, Vec<SocketHandle>),
    Linux(Vec<TcpStream>),
}

/// One pairing's W2 (one connection) or W3 (64): the topology, the server
/// and the client's established connections.
struct Echo {
    client: EchoClient,
    /// Per connection: a request is out; response bytes read so far.
    waiting: Vec<(bool, usize)>,
    /// W2 only: when the request out was sent, and every round trip's
    /// time in ns (bounded).
    sent_at: Option<WallClock>,
    latencies: Option<Vec<u32>>,
    server: Server,
    topo: Topo,
}

/// Round-trip times kept for W2's percentiles, at most.
const MAX_LATENCIES: usize = 1 << 23;

impl Echo {
    fn new(pairing: Pairing, connections: usize) -> Echo {
        let topo = Topo::new().expect("veth topology");
        let (server, to) = match pairing {
            Pairing::Linux => {
                topo.client_tx_checksum(true).expect("tx checksum on");
                (Server::linux(&topo, BIG_BUFFER), topo.linux_server())
            }
            _ => (Server::flowlane(&topo, BIG_BUFFER), topo.flowlane_server()),
        };
        let client = match pairing {
            Pairing::Flowlane => {
                let mut c = Box::new(FlClient::new(&topo, BIG_BUFFER));
                c.poll();
                let hs: Vec<SocketHandle> = (0..connections)
                    .map(|_| c.connect(to).expect("connect"))
                    .collect();
                let start = WallClock::now();
                loop {
                    c.poll();
                    let states: Vec<Open> = hs.iter().map(|h| c.open(*h)).collect();
                    assert!(
                        !states.contains(&Open::Failed),
                        "flowlane: a connect failed at setup"
                    );
                    if states.iter().all(|s| *s == Open::Established) {
                        break;
                    }
                    assert!(start.elapsed() < STALL, "flowlane: setup stalled");
                }
                EchoClient::Flowlane(c, hs)
            }
            _ => {
                let conns = topo
                    .client_ns
                    .run(|| {
                        (0..connections)
                            .map(|_| {
                                let s = kernel_connect(to, BIG_BUFFER, false)?;
                                s.set_nonblocking(true)?;
                                Ok(s)
                            })
                            .collect::<std::io::Result<Vec<TcpStream>>>()
                    })
                    .and_then(|r| r)
                    .expect("Linux connects");
                EchoClient::Linux(conns)
            }
        };
        Echo {
            client,
            waiting: vec![(false, 0); connections],
            sent_at: None,
            latencies: (connections == 1).then(Vec::new),
            server,
            topo,
        }
    }

    /// Completes `pairs` more request/response pairs over all connections.
    fn run(&mut self, pairs: u64) {
        let (mut issued, mut done) = (0u64, 0u64);
        let request = [0x42u8; MESSAGE];
        let mut buf = [0u8; MESSAGE];
        let mut last = (0u64, WallClock::now());
        let mut spins = 0u32;
        while done < pairs {
            match &mut self.client {
                EchoClient::Flowlane(c, hs) => {
                    c.poll();
                    for (h, (waiting, got)) in hs.iter().zip(self.waiting.iter_mut()) {
                        if *waiting {
                            match c.recv(*h, &mut buf[..MESSAGE - *got]) {
                                Received::Data(k) => *got += k,
                                Received::Empty => {}
                                r => panic!("flowlane: echo receive {r:?}"),
                            }
                            if *got == MESSAGE {
                                (*waiting, *got) = (false, 0);
                                done += 1;
                                record(&mut self.latencies, self.sent_at);
                            }
                        }
                        if !*waiting && issued < pairs {
                            if self.latencies.is_some() {
                                self.sent_at = Some(WallClock::now());
                            }
                            let k = c.stack.tcp.send(*h, &request).unwrap_or(0);
                            assert_eq!(k, MESSAGE, "flowlane: request did not fit");
                            *waiting = true;
                            issued += 1;
                        }
                    }
                }
                EchoClient::Linux(conns) => {
                    for (s, (waiting, got)) in conns.iter_mut().zip(self.waiting.iter_mut()) {
                        if *waiting {
                            match kernel_recv(s, &mut buf[..MESSAGE - *got]) {
                                Received::Data(k) => *got += k,
                                Received::Empty => {}
                                r => panic!("linux: echo receive {r:?}"),
                            }
                            if *got == MESSAGE {
                                (*waiting, *got) = (false, 0);
                                done += 1;
                                record(&mut self.latencies, self.sent_at);
                            }
                        }
                        if !*waiting && issued < pairs {
                            if self.latencies.is_some() {
                                self.sent_at = Some(WallClock::now());
                            }
                            s.write_all(&request).expect("request");
                            *waiting = true;
                            issued += 1;
                        }
                    }
                }
            }
            spins = spins.wrapping_add(1);
            if spins % 4096 == 0 {
                if done != last.0 {
                    last = (done, WallClock::now());
                } else {
                    assert!(
                        last.1.elapsed() < STALL,
                        "echo stalled: {done} of {pairs} pairs"
                    );
                }
            }
        }
    }

    fn summary(&self) -> String {
        let client = match &self.client {
            EchoClient::Flowlane(c, hs) => c.summary(hs),
            EchoClient::Linux(_) => String::new(),
        };
        format!("{client}; {}; {}", self.server.summary(), self.topo.drops())
    }

    /// W2's round-trip time percentiles in µs (p50, p99) over every round
    /// trip of the run (warm-up included).
    fn percentiles(&mut self) -> Option<(f64, f64, usize)> {
        let v = self.latencies.as_mut()?;
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1e3;
        Some((at(0.5), at(0.99), v.len()))
    }

    /// W2's tail: mean, p99.9 and max round trip in µs, and how many took
    /// over 1 ms (a thread descheduled, a retransmission).
    fn tail(&self) -> Option<String> {
        let v = self.latencies.as_ref().filter(|v| !v.is_empty())?;
        let sum: u64 = v.iter().map(|x| *x as u64).sum();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1e3;
        Some(format!(
            "mean {:.1} µs, p99.9 {:.1} µs, max {:.0} µs, {} over 1 ms",
            sum as f64 / v.len() as f64 / 1e3,
            at(0.999),
            at(1.0),
            v.iter().filter(|x| **x > 1_000_000).count()
        ))
    }
}

#[inline]
fn record(latencies: &mut Option<Vec<u32>>, sent_at: Option<WallClock>) {
    if let (Some(v), Some(t)) = (latencies, sent_at) {
        if v.len() < MAX_LATENCIES {
            v.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        }
    }
}

// ----- W4 ------------------------------------------------------------------

enum Slot<S> {
    Idle,
    Connecting(S),
    /// Request sent; reply bytes read so far.
    Waiting(S, usize),
}

enum RateClient {
    Flowlane(Box<FlClient>, Vec<Slot<SocketHandle>>),
    Linux(Vec<Slot<TcpStream>>),
}

/// W4: 32 connections in flight; each connects, sends 64 B, reads the 64 B
/// reply and closes first; its slot at once opens a new one.
struct ConnRate {
    client: RateClient,
    to: SocketAddrV4,
    completed: u64,
    failed: u64,
    server: Server,
    topo: Topo,
}

impl ConnRate {
    fn new(pairing: Pairing) -> ConnRate {
        let topo = Topo::new().expect("veth topology");
        let (server, to) = match pairing {
            Pairing::Linux => {
                topo.client_tx_checksum(true).expect("tx checksum on");
                (Server::linux(&topo, SMALL_BUFFER), topo.linux_server())
            }
            _ => (
                Server::flowlane(&topo, SMALL_BUFFER),
                topo.flowlane_server(),
            ),
        };
        let client = match pairing {
            Pairing::Flowlane => RateClient::Flowlane(
                Box::new(FlClient::new(&topo, SMALL_BUFFER)),
                (0..IN_FLIGHT).map(|_| Slot::Idle).collect(),
            ),
            _ => RateClient::Linux((0..IN_FLIGHT).map(|_| Slot::Idle).collect()),
        };
        ConnRate {
            client,
            to,
            completed: 0,
            failed: 0,
            server,
            topo,
        }
    }

    /// Completes `connections` more connections or stops at `deadline`;
    /// returns how many completed.
    fn run(&mut self, connections: u64, deadline: WallClock) -> u64 {
        let ConnRate {
            client,
            to,
            completed,
            failed,
            topo,
            ..
        } = self;
        let start = *completed;
        let target = start + connections;
        match client {
            RateClient::Flowlane(c, slots) => {
                fl_rate(c, slots, *to, target, deadline, completed, failed)
            }
            RateClient::Linux(slots) => {
                // Connects must be made inside the client's namespace: the
                // loop runs on a thread there, pinned to the client core.
                let to = *to;
                topo.client_ns
                    .run(|| {
                        pin(CLIENT_CORE);
                        linux_rate(slots, to, target, deadline, completed, failed)
                    })
                    .expect("client namespace")
            }
        }
        *completed - start
    }

    /// Connections for `seconds`, with the rate of each tenth of the run
    /// (flat or decaying) and the TIME-WAIT count at its end.
    fn run_window(&mut self, seconds: f64) -> W4Window {
        let (seconds, rates) = fixed_window(
            self,
            seconds,
            |w| w.completed,
            |w, deadline| {
                w.run(u64::MAX / 2, deadline);
            },
        );
        W4Window {
            completed: self.completed,
            seconds,
            failed: self.failed,
            time_wait: self.time_wait(),
            rates,
        }
    }

    fn time_wait(&self) -> usize {
        match &self.client {
            RateClient::Flowlane(c, _) => c.time_wait(),
            RateClient::Linux(_) => kernel_time_wait(&self.topo.client_ns, self.to.port()),
        }
    }

    fn summary(&self) -> String {
        let client = match &self.client {
            RateClient::Flowlane(c, _) => c.summary(&[]),
            RateClient::Linux(_) => String::new(),
        };
        format!("{client}; {}; {}", self.server.summary(), self.topo.drops())
    }
}

fn fl_rate(
    c: &mut FlClient,
    slots: &mut [Slot<SocketHandle>],
    to: SocketAddrV4,
    target: u64,
    deadline: WallClock,
    completed: &mut u64,
    failed: &mut u64,
) {
    let request = [0x42u8; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    let mut spins = 0u32;
    while *completed < target {
        c.poll();
        for slot in slots.iter_mut() {
            if let Slot::Connecting(h) = *slot {
                match c.open(h) {
                    Open::Pending => {}
                    Open::Established => {
                        let k = c.stack.tcp.send(h, &request).unwrap_or(0);
                        assert_eq!(k, MESSAGE, "flowlane: request did not fit");
                        *slot = Slot::Waiting(h, 0);
                    }
                    Open::Failed => {
                        *failed += 1;
                        let _ = c.stack.tcp.close(h, c.now);
                        *slot = Slot::Idle;
                    }
                }
            }
            if let Slot::Waiting(h, got) = *slot {
                match c.recv(h, &mut buf[..MESSAGE - got]) {
                    Received::Data(k) if got + k == MESSAGE => {
                        // The client closes first.
                        let _ = c.stack.tcp.close(h, c.now);
                        *completed += 1;
                        *slot = Slot::Idle;
                    }
                    Received::Data(k) => *slot = Slot::Waiting(h, got + k),
                    Received::Empty => {}
                    Received::End | Received::Failed => {
                        *failed += 1;
                        let _ = c.stack.tcp.close(h, c.now);
                        *slot = Slot::Idle;
                    }
                }
            }
            if let Slot::Idle = *slot {
                match c.connect(to) {
                    Some(h) => *slot = Slot::Connecting(h),
                    None => *failed += 1,
                }
            }
        }
        spins = spins.wrapping_add(1);
        if spins % 16 == 0 && WallClock::now() >= deadline {
            return;
        }
    }
}

fn linux_rate(
    slots: &mut [Slot<TcpStream>],
    to: SocketAddrV4,
    target: u64,
    deadline: WallClock,
    completed: &mut u64,
    failed: &mut u64,
) {
    let request = [0x42u8; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    while *completed < target {
        for slot in slots.iter_mut() {
            if let Slot::Connecting(s) = slot {
                // A write on a socket still in SYN-SENT would block.
                match s.write(&request) {
                    Ok(MESSAGE) => {
                        let Slot::Connecting(s) = std::mem::replace(slot, Slot::Idle) else {
                            unreachable!()
                        };
                        *slot = Slot::Waiting(s, 0);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    _ => {
                        *failed += 1;
                        *slot = Slot::Idle;
                    }
                }
            }
            if let Slot::Waiting(s, got) = slot {
                match kernel_recv(s, &mut buf[..MESSAGE - *got]) {
                    Received::Data(k) if *got + k == MESSAGE => {
                        // Dropping closes: the client closes first.
                        *slot = Slot::Idle;
                        *completed += 1;
                    }
                    Received::Data(k) => *got += k,
                    Received::Empty => {}
                    Received::End | Received::Failed => {
                        *failed += 1;
                        *slot = Slot::Idle;
                    }
                }
            }
            if let Slot::Idle = slot {
                match kernel_connect(to, SMALL_BUFFER, true) {
                    Ok(s) => *slot = Slot::Connecting(s),
                    Err(_) => *failed += 1,
                }
            }
        }
        // Every round: a connect gets slow (a port search) once many ports
        // are in TIME-WAIT.
        if WallClock::now() >= deadline {
            return;
        }
    }
}

// ----- criterion -----------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pairing {
    Flowlane,
    Linux,
    LinuxClientFlowlaneServer,
}

const PAIRINGS: [Pairing; 3] = [
    Pairing::Flowlane,
    Pairing::Linux,
    Pairing::LinuxClientFlowlaneServer,
];

impl Pairing {
    fn id(self) -> &'static str {
        match self {
            Pairing::Flowlane => "flowlane",
            Pairing::Linux => "linux",
            Pairing::LinuxClientFlowlaneServer => "linux_client_flowlane_server",
        }
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = WallClock::now();
    f();
    start.elapsed()
}

/// Writes `json` to `<group>/<pairing>/extra-<baseline>.json` beside
/// criterion's results, when measuring.
fn write_extra(group: &str, pairing: Pairing, baseline: &str, json: &str) {
    results::write_extra(group, pairing.id(), baseline, json);
}

/// Quick mode: `cargo bench -- --test`, and also `cargo test --benches`
/// (`--all-targets`), which runs a bench without `--bench` (criterion's
/// own test mode then): the W4 windows shrink too.
fn test_mode() -> bool {
    !measuring()
}

fn main() {
    if let Err(why) = probe() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("veth bench cannot run under CI=true: {why}");
        }
        println!("veth bench skipped: {why}");
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let baseline = baseline_name();
    pin(CLIENT_CORE);

    for (name, connections) in [
        ("veth_w2_echo_latency", 1),
        ("veth_w3_echo_throughput", ECHO_CONNECTIONS),
    ] {
        let mut g = group(&mut c, name);
        for pairing in PAIRINGS {
            let mut w: Option<Echo> = None;
            g.bench_function(pairing.id(), |b| {
                let w = w.get_or_insert_with(|| Echo::new(pairing, connections));
                b.iter_custom(|pairs| timed(|| w.run(pairs)))
            });
            if let Some(mut w) = w {
                let mut line = w.summary();
                if let Some((p50, p99, n)) = w.percentiles() {
                    line = format!(
                        "round trip p50 {p50:.1} µs, p99 {p99:.1} µs, {} ({n} round trips); {line}",
                        w.tail().unwrap_or_default()
                    );
                    let json = format!(
                        "{{\"p50_us\": {p50:.2}, \"p99_us\": {p99:.2}, \"round_trips\": {n}}}\n"
                    );
                    write_extra(name, pairing, &baseline, &json);
                }
                println!("{name}/{}: {line}", pairing.id());
            }
        }
        g.finish();
    }

    // W4 is a fixed window (BENCHMARKS.md: connections completed per
    // second over 5 s, and the 30 s variant), not criterion samples: Linux's
    // rate falls by an order of magnitude within the window, and a sample
    // plan made in the warm-up would then run for minutes.
    let quick = test_mode();
    for (name, secs) in [
        ("veth_w4_connection_rate", if quick { 0.2 } else { 5.0 }),
        ("veth_w4_30s", if quick { 1.0 } else { 30.0 }),
    ] {
        for pairing in PAIRINGS {
            if !selected(&format!("{name}/{}", pairing.id())) {
                continue;
            }
            // Printed, and written beside criterion's results
            // (`<group>/<pairing>/extra-<baseline>.json`) when measuring.
            let mut w = ConnRate::new(pairing);
            let window = w.run_window(secs);
            window.report(name, pairing.id(), &baseline, &format!("; {}", w.summary()));
        }
    }

    c.final_summary();
}
