//! `flowlane demo`: flowlane's HTTP server beside the Linux stack's own, on
//! the same veth pair, driven in turn by the same kernel clients.
//!
//! Topology (everything named `fl...`, addresses in 10.77.0.0/16, removed
//! at exit, also after Ctrl-C):
//!
//! ```text
//!  client namespace                      server namespace
//!  kernel clients  ── veth 10.77.x.1 ══ veth ──┬─ AF_XDP: flowlane 10.77.x.2:8080
//!                                              └─ kernel: Linux   10.77.x.3:8080
//! ```
//!
//! The XDP program on the server end sends only flowlane's frames (its
//! address, ARP for it) to the AF_XDP socket; the rest goes to the kernel,
//! which serves 10.77.x.3 with a small std::net server (a pool of threads,
//! the same HTTP responses as flowlane's). When AF_XDP cannot be set up,
//! flowlane runs on a tap device in the client namespace instead (10.77.y.2,
//! the tap's kernel side 10.77.y.1) and the demo says why.
//!
//! Each server gets the same load: `--conns` kernel client threads doing
//! keep-alive requests for half of `--seconds`, then short-lived
//! connections (connect, request with `Connection: close`, read to the end)
//! for the other half.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use clap::{Args, ValueEnum};

use flowlane::api::StackConfig;
use flowlane::apps::http::{Answer, Session};
use flowlane::apps::{self, AppKind, Published};
use flowlane::phy::sys::{
    is_root, netns, NetNs, TapDevice, VethConfig, VethPair, XdpDevice, XdpOptions,
};
use flowlane::phy::Device;
use flowlane::runtime::{self, CoreSetup, IdlePolicy, Runtime, RuntimeConfig};

use super::{device_line, states_line, termination_flag};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DemoDevice {
    /// AF_XDP on the veth (falls back to tap if it cannot be set up).
    Xdp,
    /// A tap device.
    Tap,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seconds of load per server: half keep-alive, half short-lived
    /// connections.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    seconds: u32,
    /// Client connections in flight (one kernel client thread each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    conns: u32,
    /// flowlane's device.
    #[arg(long, value_enum, default_value_t = DemoDevice::Xdp)]
    device: DemoDevice,
    /// Let flowlane's core spin when idle. On a small machine this takes a
    /// CPU from the kernel clients; by default the core backs off to short
    /// sleeps (at most 200 µs) when a spin finds nothing to do.
    #[arg(long)]
    busy_poll: bool,
}

const PORT: u16 = 8080;

pub fn run(args: DemoArgs) -> io::Result<ExitCode> {
    if !is_root() {
        eprintln!(
            "flowlane demo needs root: it creates network namespaces, a veth pair and an AF_XDP socket (try: sudo flowlane demo)"
        );
        return Ok(ExitCode::FAILURE);
    }
    let term = termination_flag()?;
    let result = run_inner(&args, &term);
    // Everything made was owned by guards inside run_inner: gone by now.
    match result {
        Ok(()) if term.load(Ordering::Relaxed) => {
            println!("flowlane demo: interrupted; namespaces, veth and devices removed");
            Ok(ExitCode::from(130))
        }
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if term.load(Ordering::Relaxed) => {
            println!("flowlane demo: interrupted ({e}); namespaces, veth and devices removed");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e),
    }
}

/// The flowlane side: where it runs and how to reach it.
struct Flowlane {
    runtime: Option<Runtime>,
    published: Arc<Mutex<Published>>,
    drain: Arc<AtomicBool>,
    addr: SocketAddrV4,
    what: String,
    /// The table's column title.
    title: String,
}

impl Flowlane {
    fn counters(&self) -> apps::AppCounters {
        self.published
            .lock()
            .map(|p| p.counters)
            .unwrap_or_default()
    }

    fn states(&self) -> String {
        match &self.runtime {
            Some(rt) => states_line(&runtime::total(&rt.stats()).states),
            None => String::new(),
        }
    }

    /// The server's device and interface counters, for after the table:
    /// whether frames were lost below TCP.
    fn device(&self) -> Option<String> {
        let rt = self.runtime.as_ref()?;
        let t = runtime::total(&rt.stats());
        Some(format!(
            "flowlane's device: {}; interface drops {} (not for us {})",
            device_line(&t.device),
            t.iface.drops_total(),
            t.iface.not_for_us
        ))
    }

    fn stop(&mut self) {
        self.drain.store(true, Ordering::Relaxed);
        if let Some(rt) = self.runtime.take() {
            std::thread::sleep(StdDuration::from_millis(100));
            let _ = rt.join();
        }
    }
}

impl Drop for Flowlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_inner(args: &DemoArgs, term: &AtomicBool) -> io::Result<()> {
    let half = args.seconds as f64 / 2.0;
    println!(
        "flowlane demo: {} s of load per server ({half} s keep-alive, {half} s short-lived connections), {} client connections",
        args.seconds, args.conns
    );
    let server_ns = NetNs::new()?;
    let client_ns = NetNs::new()?;
    let veth = VethPair::with_config(VethConfig {
        local_ns: Some(&server_ns),
        peer_ns: &client_ns,
        queues: 1,
    })?;
    veth.add_local_kernel_addr(3)?;
    println!(
        "setup: namespaces {} (servers) and {} (clients); veth {} (server side) <-> {} ({}, client side)",
        server_ns.name(),
        client_ns.name(),
        veth.local_name(),
        veth.peer_name(),
        veth.peer_addr()
    );
    let mut tap_name = None;
    let mut fl = start_flowlane(args, &server_ns, &client_ns, &veth, &mut tap_name)?;
    println!(
        "flowlane: HTTP on {} over {}, one core, {}",
        fl.addr,
        fl.what,
        if args.busy_poll {
            "busy-polling"
        } else {
            "polling with back-off when idle"
        }
    );
    let linux_addr = SocketAddrV4::new(veth.host(3), PORT);
    let listener = server_ns.run(|| TcpListener::bind(linux_addr))??;
    let workers = args.conns as usize + 2;
    let mut linux = LinuxServer::start(listener, workers)?;
    println!(
        "Linux: HTTP on {linux_addr} (kernel TCP on the same veth, std::net server, {workers} threads)"
    );
    if term.load(Ordering::Relaxed) {
        return Ok(());
    }

    let mut rows: Vec<(String, Column)> = Vec::new();
    let mut flowlane_col = None;
    let mut linux_col = None;
    for side in ["flowlane", "Linux"] {
        let target = if side == "flowlane" {
            fl.addr
        } else {
            linux_addr
        };
        let retr_srv0 = if side == "flowlane" {
            fl.counters().retransmits
        } else {
            tcp_retransmits(&server_ns)?
        };
        let retr_cli0 = tcp_retransmits(&client_ns)?;
        let ka = run_phase(
            side,
            Mode::KeepAlive,
            target,
            half,
            args.conns,
            &client_ns,
            term,
        );
        if term.load(Ordering::Relaxed) {
            return Ok(());
        }
        let short = run_phase(
            side,
            Mode::Short,
            target,
            half,
            args.conns,
            &client_ns,
            term,
        );
        if term.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Let the last closes finish before reading counters and states.
        std::thread::sleep(StdDuration::from_millis(300));
        let (retr_srv, states) = if side == "flowlane" {
            (fl.counters().retransmits - retr_srv0, fl.states())
        } else {
            (
                tcp_retransmits(&server_ns)? - retr_srv0,
                kernel_states(&server_ns, linux_addr)?,
            )
        };
        let col = Column {
            ka,
            short,
            retr_srv,
            retr_cli: tcp_retransmits(&client_ns)? - retr_cli0,
            states,
        };
        if side == "flowlane" {
            flowlane_col = Some(col);
        } else {
            linux_col = Some(col);
        }
    }
    if let (Some(f), Some(l)) = (flowlane_col, linux_col) {
        rows.push((fl.title.clone(), f));
        rows.push(("Linux, veth".to_string(), l));
        print_table(&rows);
        if let Some(line) = fl.device() {
            println!("{line}");
        }
    }
    fl.stop();
    linux.stop(&server_ns, linux_addr);
    drop(veth);
    drop(client_ns);
    drop(server_ns);
    println!(
        "cleanup: namespaces, veth pair{} and XDP program removed",
        if tap_name.is_some() { ", tap" } else { "" }
    );
    Ok(())
}

fn start_flowlane(
    args: &DemoArgs,
    server_ns: &NetNs,
    client_ns: &NetNs,
    veth: &VethPair,
    tap_name: &mut Option<String>,
) -> io::Result<Flowlane> {
    let mut xdp = None;
    if args.device == DemoDevice::Xdp {
        let local = veth.local_name().to_string();
        let ip = veth.flowlane_addr();
        match server_ns.run(|| XdpDevice::open(&local, 0, ip, XdpOptions::default()))? {
            Ok(d) => xdp = Some(d),
            Err(e) => println!("AF_XDP cannot be set up ({e}); falling back to tap"),
        }
    }
    let (device, mac, ip, what, title): (Box<dyn Device + Send>, _, _, String, String) = match xdp {
        Some(d) => {
            let title = format!("flowlane, AF_XDP {}", d.mode());
            let what = format!(
                "AF_XDP on {} ({} mode, {} XDP)",
                d.ifname(),
                d.mode(),
                d.attach_mode().name()
            );
            let mac = d.mac();
            (Box::new(d) as _, mac, veth.flowlane_addr(), what, title)
        }
        None => {
            let name = netns::unique_name('t');
            let sub = netns::unique_subnet();
            let dev = client_ns
                .run(|| TapDevice::open(&name, 1))??
                .pop()
                .ok_or_else(|| io::Error::other("tap: no queue"))?;
            *tap_name = Some(name.clone());
            let host = std::net::Ipv4Addr::new(10, 77, sub, 1);
            client_ns.ip(&["addr", "add", &format!("{host}/24"), "dev", &name])?;
            client_ns.ip(&["link", "set", &name, "up"])?;
            let mac = dev.mac();
            let what = format!("tap {name} (kernel side {host})");
            (
                Box::new(dev) as _,
                mac,
                std::net::Ipv4Addr::new(10, 77, sub, 2),
                what,
                "flowlane, tap".to_string(),
            )
        }
    };
    let drain = Arc::new(AtomicBool::new(false));
    let published = Arc::new(Mutex::new(Published::default()));
    let core = CoreSetup {
        device,
        stack: StackConfig::new(mac, ip, 24),
        app: apps::runtime_app(AppKind::Http.server(PORT), drain.clone(), published.clone()),
    };
    let rt = Runtime::start(
        RuntimeConfig {
            idle: if args.busy_poll {
                IdlePolicy::BusyPoll
            } else {
                IdlePolicy::Backoff {
                    max_sleep: flowlane::time::Duration::from_micros(200),
                }
            },
            ..RuntimeConfig::default()
        },
        vec![core],
    )?;
    Ok(Flowlane {
        runtime: Some(rt),
        published,
        drain,
        addr: SocketAddrV4::new(ip, PORT),
        what,
        title,
    })
}

// ----- the Linux side's server ---------------------------------------------

/// A pool of threads, each accepting one connection at a time on the
/// shared listener and serving it to the end with the same HTTP session
/// logic as flowlane's server.
struct LinuxServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LinuxServer {
    fn start(listener: TcpListener, workers: usize) -> io::Result<LinuxServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..workers {
            let l = listener.try_clone()?;
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("linux-http-{i}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            match l.accept() {
                                Ok((s, _)) if !stop.load(Ordering::Relaxed) => {
                                    serve_kernel_conn(s, &stop)
                                }
                                Ok(_) => break,
                                Err(_) => std::thread::sleep(StdDuration::from_millis(1)),
                            }
                        }
                    })?,
            );
        }
        Ok(LinuxServer { stop, threads })
    }

    /// Stops the workers: each blocked `accept` is woken by a connection.
    fn stop(&mut self, ns: &NetNs, addr: SocketAddrV4) {
        self.stop.store(true, Ordering::Relaxed);
        for _ in 0..self.threads.len() {
            let _ = ns.run(|| TcpStream::connect_timeout(&addr.into(), StdDuration::from_secs(1)));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_kernel_conn(mut s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(StdDuration::from_millis(200)));
    let mut session = Session::new();
    let mut input = Vec::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let (used, answer) = session.process(&input, &mut out);
        input.drain(..used);
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        match answer {
            Answer::Close => return,
            Answer::Continue => continue,
            Answer::NeedMore => {}
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

// ----- the kernel clients ----------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    KeepAlive,
    Short,
}

#[derive(Default)]
struct Shared {
    requests: AtomicU64,
    connections: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// What one load phase measured.
struct PhaseResult {
    requests: u64,
    connections: u64,
    errors: u64,
    secs: f64,
    /// Request latencies in µs, sorted.
    latencies: Vec<u32>,
}

impl PhaseResult {
    fn rate(&self, n: u64) -> f64 {
        if self.secs > 0.0 {
            n as f64 / self.secs
        } else {
            0.0
        }
    }

    fn percentile(&self, p: f64) -> Option<u32> {
        if self.latencies.is_empty() {
            return None;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        Some(self.latencies[i])
    }
}

const REQUEST_KEEP_ALIVE: &[u8] = b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n";
const REQUEST_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n";
/// Latency samples kept per client thread (memory bound).
const MAX_SAMPLES: usize = 2_000_000;

fn run_phase(
    side: &str,
    mode: Mode,
    target: SocketAddrV4,
    secs: f64,
    conns: u32,
    client_ns: &NetNs,
    term: &AtomicBool,
) -> PhaseResult {
    let label = match mode {
        Mode::KeepAlive => "keep-alive",
        Mode::Short => "short connections",
    };
    let shared = Arc::new(Shared::default());
    let start = StdInstant::now();
    let deadline = start + StdDuration::from_secs_f64(secs);
    let mut latencies = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let shared = shared.clone();
                s.spawn(move || {
                    client_ns
                        .run(|| client_loop(mode, target, deadline, &shared))
                        .unwrap_or_default()
                })
            })
            .collect();
        let mut next = start + StdDuration::from_secs(1);
        let (mut last_req, mut last_conn, mut last_t) = (0u64, 0u64, start);
        while handles.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(StdDuration::from_millis(20));
            if term.load(Ordering::Relaxed) {
                shared.stop.store(true, Ordering::Relaxed);
            }
            let now = StdInstant::now();
            if now >= next && now < deadline {
                let req = shared.requests.load(Ordering::Relaxed);
                let conn = shared.connections.load(Ordering::Relaxed);
                let dt = (now - last_t).as_secs_f64();
                let extra = match mode {
                    Mode::KeepAlive => String::new(),
                    Mode::Short => format!(", {:.0} connections/s", (conn - last_conn) as f64 / dt),
                };
                println!(
                    "  {side:<8} {label:<17} {:>3.0} s: {:>9.0} requests/s{extra}, errors {}",
                    (now - start).as_secs_f64(),
                    (req - last_req) as f64 / dt,
                    shared.errors.load(Ordering::Relaxed)
                );
                let _ = io::stdout().flush();
                (last_req, last_conn, last_t) = (req, conn, now);
                next += StdDuration::from_secs(1);
            }
        }
        let mut all = Vec::new();
        for h in handles {
            if let Ok(v) = h.join() {
                all.extend(v);
            }
        }
        all
    });
    let secs = start.elapsed().as_secs_f64().min(secs.max(1e-3));
    latencies.sort_unstable();
    PhaseResult {
        requests: shared.requests.load(Ordering::Relaxed),
        connections: shared.connections.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        secs,
        latencies,
    }
}

/// One client thread (inside the client namespace): requests until the
/// deadline; returns its latencies in µs.
fn client_loop(
    mode: Mode,
    target: SocketAddrV4,
    deadline: StdInstant,
    shared: &Shared,
) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut stream: Option<TcpStream> = None;
    let connect = || -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&target.into(), StdDuration::from_secs(1))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(StdDuration::from_secs(1)))?;
        s.set_write_timeout(Some(StdDuration::from_secs(1)))?;
        Ok(s)
    };
    while StdInstant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
        let t = StdInstant::now();
        let r = match mode {
            Mode::KeepAlive => {
                if stream.is_none() {
                    match connect() {
                        Ok(s) => stream = Some(s),
                        Err(_) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(StdDuration::from_millis(10));
                            continue;
                        }
                    }
                }
                let t = StdInstant::now();
                let s = stream.as_mut().expect("connected above");
                let r = s
                    .write_all(REQUEST_KEEP_ALIVE)
                    .and_then(|_| read_response(s, &mut buf));
                match r {
                    Ok(keep) => {
                        if !keep {
                            stream = None;
                        }
                        Ok(t.elapsed())
                    }
                    Err(e) => {
                        stream = None;
                        Err(e)
                    }
                }
            }
            Mode::Short => connect().and_then(|mut s| {
                s.write_all(REQUEST_CLOSE)?;
                read_response(&mut s, &mut buf)?;
                // Read to the server's FIN (it closes first), then close.
                let mut rest = [0u8; 64];
                while s.read(&mut rest)? > 0 {}
                shared.connections.fetch_add(1, Ordering::Relaxed);
                Ok(t.elapsed())
            }),
        };
        match r {
            Ok(d) => {
                shared.requests.fetch_add(1, Ordering::Relaxed);
                if lat.len() < MAX_SAMPLES {
                    lat.push(d.as_micros().min(u32::MAX as u128) as u32);
                }
            }
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    lat
}

/// Reads one response (head and `Content-Length` body); returns whether the
/// server keeps the connection open. Fails on anything but `200`.
fn read_response(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut have = 0;
    loop {
        if have == buf.len() {
            return Err(io::Error::other("response head too large"));
        }
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ));
        }
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end])
            .map_err(|_| io::Error::other("response head is not UTF-8"))?;
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(io::Error::other(format!(
                "unexpected status: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        let mut len = 0usize;
        let mut keep = true;
        for line in head.lines().skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("content-length") {
                len = v
                    .trim()
                    .parse()
                    .map_err(|_| io::Error::other("bad length"))?;
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            {
                keep = false;
            }
        }
        let total = end + 4 + len;
        while have < total {
            if total > buf.len() {
                return Err(io::Error::other("response too large"));
            }
            let n = s.read(&mut buf[have..total])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the body",
                ));
            }
            have += n;
        }
        return Ok(keep);
    }
}

// ----- kernel statistics -----------------------------------------------------

/// `Tcp: RetransSegs` of the namespace's kernel (`/proc/net/snmp`).
fn tcp_retransmits(ns: &NetNs) -> io::Result<u64> {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return Err(io::Error::other("no Tcp lines in /proc/net/snmp"));
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| io::Error::other("no RetransSegs in /proc/net/snmp"))
}

/// The kernel's TCP sockets on `addr` in the namespace, per state, in
/// flowlane's format (`/proc/net/tcp`).
fn kernel_states(ns: &NetNs, addr: SocketAddrV4) -> io::Result<String> {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/tcp"))??;
    // /proc/net/tcp prints the address as the hex of its in-memory
    // (network order) u32, read as a little-endian number.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(addr.ip().octets()),
        addr.port()
    );
    let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[1] != local {
            continue;
        }
        // Kernel state numbers (include/net/tcp_states.h) in flowlane's order.
        let order = match f[3] {
            "0A" => 1,  // LISTEN
            "02" => 2,  // SYN_SENT
            "03" => 3,  // SYN_RECV
            "01" => 4,  // ESTABLISHED
            "04" => 5,  // FIN_WAIT1
            "05" => 6,  // FIN_WAIT2
            "08" => 7,  // CLOSE_WAIT
            "0B" => 8,  // CLOSING
            "09" => 9,  // LAST_ACK
            "06" => 10, // TIME_WAIT
            _ => 0,     // CLOSE
        };
        *counts.entry(order).or_default() += 1;
    }
    let mut states = [0u64; flowlane::tcp::State::COUNT];
    for (i, n) in counts {
        states[i] = n;
    }
    Ok(states_line(&states))
}

// ----- the table -------------------------------------------------------------

struct Column {
    ka: PhaseResult,
    short: PhaseResult,
    retr_srv: u64,
    retr_cli: u64,
    states: String,
}

fn us(v: Option<u32>) -> String {
    match v {
        Some(v) => format!("{v} µs"),
        None => "-".to_string(),
    }
}

fn print_table(cols: &[(String, Column)]) {
    let rows: Vec<(&str, Vec<String>)> = vec![
        (
            "keep-alive requests/s",
            cols.iter()
                .map(|(_, c)| format!("{:.0}", c.ka.rate(c.ka.requests)))
                .collect(),
        ),
        (
            "  latency p50",
            cols.iter().map(|(_, c)| us(c.ka.percentile(0.5))).collect(),
        ),
        (
            "  latency p99",
            cols.iter()
                .map(|(_, c)| us(c.ka.percentile(0.99)))
                .collect(),
        ),
        (
            "short connections/s",
            cols.iter()
                .map(|(_, c)| format!("{:.0}", c.short.rate(c.short.connections)))
                .collect(),
        ),
        (
            "  connect-to-close p50",
            cols.iter()
                .map(|(_, c)| us(c.short.percentile(0.5)))
                .collect(),
        ),
        (
            "  connect-to-close p99",
            cols.iter()
                .map(|(_, c)| us(c.short.percentile(0.99)))
                .collect(),
        ),
        (
            "requests (errors)",
            cols.iter()
                .map(|(_, c)| {
                    format!(
                        "{} ({})",
                        c.ka.requests + c.short.requests,
                        c.ka.errors + c.short.errors
                    )
                })
                .collect(),
        ),
        (
            "retransmits, server",
            cols.iter().map(|(_, c)| c.retr_srv.to_string()).collect(),
        ),
        (
            "retransmits, clients",
            cols.iter().map(|(_, c)| c.retr_cli.to_string()).collect(),
        ),
        (
            "server sockets at end",
            cols.iter().map(|(_, c)| c.states.clone()).collect(),
        ),
    ];
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.1[i].chars().count())
                .chain(std::iter::once(cols[i].0.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!();
    let mut line = format!("{:w0$}", "");
    for (i, (name, _)) in cols.iter().enumerate() {
        line.push_str(&format!("   {:>w$}", name, w = widths[i]));
    }
    println!("{line}");
    for (label, vals) in &rows {
        let mut line = format!("{label:w0$}");
        for (i, v) in vals.iter().enumerate() {
            line.push_str(&format!("   {:>w$}", v, w = widths[i]));
        }
        println!("{line}");
    }
    if let [(_, f), (_, l)] = cols {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        println!(
            "\nflowlane / Linux: {:.2}x keep-alive requests/s, {:.2}x connections/s",
            ratio(f.ka.rate(f.ka.requests), l.ka.rate(l.ka.requests)),
            ratio(
                f.short.rate(f.short.connections),
                l.short.rate(l.short.connections)
            )
        );
    }
    println!();
}
