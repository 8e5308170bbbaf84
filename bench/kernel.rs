//! The Linux peer of `bench/pair.rs`: BENCHMARKS.md's W1–W4 over loopback
//! (127.0.0.1) with the kernel's TCP, the client on core 0 (the bench's own
//! thread) and the server on core 1, each pinned with `core_affinity`.
//! Criterion ids are `<workload>/linux`, beside the pair bench's, so
//! `examples/bench_report.rs` puts the figures in the same table.
//!
//! Settings as BENCHMARKS.md: TCP_NODELAY, SO_SNDBUF/SO_RCVBUF 256 KiB for
//! W1–W3 and 4 KiB for W4 (set before connect and listen, so the window
//! scale follows), one client address, one server address and port, client
//! closes first in W4. W2 and W3 busy-poll non-blocking sockets, as the
//! in-memory pairs do. W4 is a fixed 5 s window from a fresh listener, as
//! in the pair bench (not criterion samples). What is not as BENCHMARKS.md:
//! loopback's MTU is 65536 (and it needs no checksums), which is the
//! machine's and left alone.
//!
//! Run without `taskset` (it pins its own threads): `cargo bench --bench
//! kernel`; `-- --test` runs each workload once.

#[path = "results.rs"]
mod results;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput};
use results::{baseline_name, fixed_window, measuring, selected, W4Window};
use socket2::{Domain, Socket, Type};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const BIG_BUFFER: usize = 256 * 1024;
const SMALL_BUFFER: usize = 4 * 1024;
const BULK_CHUNK: usize = 64 * 1024;
const BULK_OP_BYTES: u64 = 1 << 20;
const MESSAGE: usize = 64;
const ECHO_CONNECTIONS: usize = 64;
const IN_FLIGHT: usize = 32;
const CLIENT_CORE: usize = 0;
const SERVER_CORE: usize = 1;

fn pin(core: usize) {
    // Not `get_core_ids()`: under `taskset` it lists only the allowed cores.
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

fn set_buffers(s: &Socket, size: usize) {
    s.set_send_buffer_size(size).expect("SO_SNDBUF");
    s.set_recv_buffer_size(size).expect("SO_RCVBUF");
}

/// A socket with `buffer`-byte buffers and TCP_NODELAY, set before
/// connect; `Err` if connect fails at once (EADDRNOTAVAIL when every port
/// is taken). Non-blocking connects return while the handshake may still
/// be on its way.
fn connect(to: SocketAddrV4, buffer: usize, nonblocking: bool) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    set_buffers(&s, buffer);
    s.set_tcp_nodelay(true)?;
    if nonblocking {
        s.set_nonblocking(true)?;
    }
    match s.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}

/// A listener on 127.0.0.1 (ephemeral port) whose connections get
/// `buffer`-byte buffers.
fn listen(buffer: usize) -> (TcpListener, SocketAddrV4) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    // Children inherit the listener's buffer sizes, and the SYN-ACK's
    // window scale is computed from them when the SYN arrives.
    set_buffers(&s, buffer);
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.bind(&SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0).into())
        .expect("bind");
    s.listen(1024).expect("listen");
    let l: TcpListener = s.into();
    let addr = match l.local_addr().expect("local addr") {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
    };
    (l, addr)
}

fn server_thread(f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        pin(SERVER_CORE);
        f()
    })
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

// ----- W1 bulk -------------------------------------------------------------

struct Bulk {
    client: TcpStream,
    read: Arc<AtomicU64>,
    sent: u64,
    chunk: Vec<u8>,
    server: Option<JoinHandle<()>>,
}

impl Bulk {
    fn new() -> Bulk {
        let (l, addr) = listen(BIG_BUFFER);
        let read = Arc::new(AtomicU64::new(0));
        let counter = read.clone();
        let server = server_thread(move || {
            let (mut s, _) = l.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = vec![0u8; BULK_CHUNK];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        counter.fetch_add(n as u64, Ordering::Release);
                    }
                }
            }
        });
        Bulk {
            client: connect(addr, BIG_BUFFER, false).expect("connect"),
            read,
            sent: 0,
            chunk: vec![0x5a; BULK_CHUNK],
            server: Some(server),
        }
    }

    fn run(&mut self, mib: u64) {
        let target = self.sent + mib * BULK_OP_BYTES;
        while self.sent < target {
            let n = (target - self.sent).min(BULK_CHUNK as u64) as usize;
            self.client.write_all(&self.chunk[..n]).expect("write");
            self.sent += n as u64;
        }
        while self.read.load(Ordering::Acquire) < target {
            std::hint::spin_loop();
        }
    }
}

impl Drop for Bulk {
    fn drop(&mut self) {
        let _ = self.client.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

// ----- W2 and W3 echo ------------------------------------------------------

/// Reads what is there without blocking; None at end of stream or error.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    match s.read(buf) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Some(0),
        Err(_) => None,
    }
}

struct EchoConn {
    s: TcpStream,
    waiting: bool,
    got: usize,
}

struct Echo {
    conns: Vec<EchoConn>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl Echo {
    fn new(connections: usize) -> Echo {
        let (l, addr) = listen(BIG_BUFFER);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let server = server_thread(move || {
            let mut conns: Vec<(TcpStream, usize)> = (0..connections)
                .map(|_| {
                    let (s, _) = l.accept().expect("accept");
                    s.set_nodelay(true).expect("nodelay");
                    s.set_nonblocking(true).expect("nonblocking");
                    (s, 0)
                })
                .collect();
            let mut buf = [0u8; 4096];
            let reply = [0x42u8; MESSAGE];
            while !stopped.load(Ordering::Relaxed) {
                for (s, pending) in conns.iter_mut() {
                    match read_some(s, &mut buf) {
                        Some(n) => *pending += n,
                        None => return,
                    }
                    while *pending >= MESSAGE {
                        s.write_all(&reply).expect("reply");
                        *pending -= MESSAGE;
                    }
                }
            }
        });
        let conns = (0..connections)
            .map(|_| {
                let s = connect(addr, BIG_BUFFER, false).expect("connect");
                s.set_nonblocking(true).expect("nonblocking");
                EchoConn {
                    s,
                    waiting: false,
                    got: 0,
                }
            })
            .collect();
        Echo {
            conns,
            stop,
            server: Some(server),
        }
    }

    fn run(&mut self, pairs: u64) {
        let (mut issued, mut done) = (0u64, 0u64);
        let request = [0x42u8; MESSAGE];
        let mut buf = [0u8; MESSAGE];
        while done < pairs {
            for c in self.conns.iter_mut() {
                if c.waiting {
                    let n = read_some(&mut c.s, &mut buf[..MESSAGE - c.got]).expect("echo reply");
                    c.got += n;
                    if c.got == MESSAGE {
                        c.waiting = false;
                        c.got = 0;
                        done += 1;
                    }
                }
                if !c.waiting && issued < pairs {
                    c.s.write_all(&request).expect("request");
                    c.waiting = true;
                    issued += 1;
                }
            }
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

// ----- W4 connection rate --------------------------------------------------

enum Slot {
    Idle,
    /// Connecting or waiting for the reply: request sent?, reply bytes.
    Busy(TcpStream, bool, usize),
}

struct ConnRate {
    addr: SocketAddrV4,
    slots: Vec<Slot>,
    completed: u64,
    failed: u64,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl ConnRate {
    fn new() -> ConnRate {
        let (l, addr) = listen(SMALL_BUFFER);
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let server = server_thread(move || {
            let mut conns: Vec<(TcpStream, usize, bool)> = Vec::new();
            let mut buf = [0u8; 4096];
            let reply = [0x42u8; MESSAGE];
            while !stopped.load(Ordering::Relaxed) {
                while let Ok((s, _)) = l.accept() {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_nonblocking(true);
                    conns.push((s, 0, false));
                }
                conns.retain_mut(|(s, got, answered)| {
                    loop {
                        match read_some(s, &mut buf) {
                            Some(0) => break,
                            Some(n) => *got += n,
                            // End of stream (the client closed) or reset.
                            None => return false,
                        }
                    }
                    if *got >= MESSAGE && !*answered {
                        *answered = s.write_all(&reply).is_ok();
                    }
                    true
                });
            }
        });
        ConnRate {
            addr,
            slots: (0..IN_FLIGHT).map(|_| Slot::Idle).collect(),
            completed: 0,
            failed: 0,
            stop,
            server: Some(server),
        }
    }

    /// Until `deadline` (BENCHMARKS.md's fixed window), reading the clock
    /// once per pass over the slots.
    fn run_until(&mut self, deadline: Instant) {
        let request = [0x42u8; MESSAGE];
        let mut buf = [0u8; MESSAGE];
        while Instant::now() < deadline {
            for slot in self.slots.iter_mut() {
                if let Slot::Busy(s, sent, got) = slot {
                    if !*sent {
                        // A write on a socket still in SYN-SENT would block.
                        match s.write(&request) {
                            Ok(MESSAGE) => *sent = true,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            _ => {
                                self.failed += 1;
                                *slot = Slot::Idle;
                            }
                        }
                    } else {
                        match read_some(s, &mut buf[..MESSAGE - *got]) {
                            Some(n) => {
                                *got += n;
                                if *got == MESSAGE {
                                    // Dropping closes: the client closes
                                    // first.
                                    *slot = Slot::Idle;
                                    self.completed += 1;
                                }
                            }
                            None => {
                                self.failed += 1;
                                *slot = Slot::Idle;
                            }
                        }
                    }
                }
                if let Slot::Idle = slot {
                    match connect(self.addr, SMALL_BUFFER, true) {
                        Ok(s) => *slot = Slot::Busy(s, false, 0),
                        Err(_) => self.failed += 1,
                    }
                }
            }
        }
    }

    /// Client sockets in TIME-WAIT towards the server's port
    /// (/proc/net/tcp, state 06).
    fn time_wait(&self) -> usize {
        let port = format!(":{:04X}", self.addr.port());
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[3] == "06" && f[2].ends_with(&port)
            })
            .count()
    }
}

impl Drop for ConnRate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

// ----- criterion -----------------------------------------------------------

fn group<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(10);
    g
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let baseline = baseline_name();
    pin(CLIENT_CORE);

    let mut g = group(&mut c, "w1_bulk");
    g.throughput(Throughput::Bytes(BULK_OP_BYTES));
    let mut w: Option<Bulk> = None;
    g.bench_function("linux", |b| {
        let w = w.get_or_insert_with(Bulk::new);
        b.iter_custom(|mib| timed(|| w.run(mib)))
    });
    drop(w);
    g.finish();

    for (name, connections) in [
        ("w2_echo_latency", 1),
        ("w3_echo_throughput", ECHO_CONNECTIONS),
    ] {
        let mut g = group(&mut c, name);
        g.throughput(Throughput::Elements(1));
        let mut w: Option<Echo> = None;
        g.bench_function("linux", |b| {
            let w = w.get_or_insert_with(|| Echo::new(connections));
            b.iter_custom(|pairs| timed(|| w.run(pairs)))
        });
        drop(w);
        g.finish();
    }

    // W4: a fixed window, outside criterion (see `results::fixed_window`).
    if selected("w4_connection_rate/linux") {
        let seconds = if measuring() { 5.0 } else { 0.2 };
        let mut w = ConnRate::new();
        let (seconds, rates) = fixed_window(&mut w, seconds, |w| w.completed, ConnRate::run_until);
        W4Window {
            completed: w.completed,
            seconds,
            failed: w.failed,
            time_wait: w.time_wait(),
            rates,
        }
        .report("w4_connection_rate", "linux", &baseline, "");
    }

    c.final_summary();
}
