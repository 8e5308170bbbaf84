//! The four workloads of `BENCHMARKS.md` (W1 bulk, W2 echo latency, W3 echo
//! throughput, W4 connection rate), written once over [`Net`] and run on two
//! in-memory pairs polled in one thread: flowlane's `Pair` and two smoltcp
//! 0.14 interfaces joined by a cable of our own ([`Cable`]).
//!
//! Shared (by `#[path]`) between `bench/pair.rs`, which times them with
//! criterion, and `examples/insn_count.rs`, which callgrind counts. It must
//! never give one stack work the other does not do: both pairs run the same
//! step ([`step`]: client app, poll client, poll server, server app, poll
//! server, poll client), see the same clock, and have the same settings
//! (Ethernet, MTU 1500, checksums computed and verified in software, Nagle
//! off, equal socket buffers).
//!
//! Time is real: a clock that both stacks read advances by the elapsed wall
//! time (read every [`CLOCK_EVERY`] steps, so reading it costs little), so
//! delayed ACKs, retransmission and TIME-WAIT timers run as they would on a
//! NIC, and a 60 s TIME-WAIT lasts 60 s. (`insn_count` makes it virtual, see
//! [`VIRTUAL_STEP_MICROS`], so instruction counts do not depend on speed.)

// The bench and the example each use a different part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant as WallClock;

use flowlane::api::pair::{Pair, B_IP};
use flowlane::api::{SocketError, SocketHandle, State};
use flowlane::phy::{Link, LinkConfig};
use flowlane::time::{Duration as FlDuration, Instant as FlInstant};

use smoltcp::iface::{Config as SmConfig, Interface, SocketHandle as SmHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{tcp, AnySocket};
use smoltcp::time::Instant as SmInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

/// The server's port.
pub const SERVER_PORT: u16 = 80;
/// W1–W3 socket buffers (BENCHMARKS.md).
pub const BIG_BUFFER: usize = 256 * 1024;
/// W4 socket buffers.
pub const SMALL_BUFFER: usize = 4 * 1024;
/// W1: the application's write and read size.
pub const BULK_CHUNK: usize = 64 * 1024;
/// W1: one operation is one MiB sent and read.
pub const BULK_OP_BYTES: u64 = 1 << 20;
/// W2–W4 message size.
pub const MESSAGE: usize = 64;
/// W3 connections.
pub const ECHO_CONNECTIONS: usize = 64;
/// W4 connections in flight.
pub const IN_FLIGHT: usize = 32;
/// Steps between two reads of the wall clock.
pub const CLOCK_EVERY: u32 = 16;
/// Ephemeral ports, as Linux's ip_local_port_range (and flowlane's default).
const PORT_LO: u16 = 32768;
const PORT_HI: u16 = 60999;

/// When nonzero, clocks built from now on are virtual: each step advances
/// them by this many microseconds (instruction counts must not depend on
/// how fast the machine, or valgrind, runs).
pub static VIRTUAL_STEP_MICROS: AtomicU64 = AtomicU64::new(0);

/// Microseconds since the pair was built, read from the wall clock every
/// [`CLOCK_EVERY`] calls (or virtual, see [`VIRTUAL_STEP_MICROS`]).
pub struct Clock {
    origin: WallClock,
    cached: u64,
    countdown: u32,
    virtual_step: u64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: WallClock::now(),
            cached: 0,
            countdown: 0,
            virtual_step: VIRTUAL_STEP_MICROS.load(Ordering::Relaxed),
        }
    }

    pub fn micros(&mut self) -> u64 {
        if self.virtual_step > 0 {
            self.cached += self.virtual_step;
        } else if self.countdown == 0 {
            self.cached = self.origin.elapsed().as_micros() as u64;
            self.countdown = CLOCK_EVERY;
        }
        self.countdown = self.countdown.saturating_sub(1);
        self.cached
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Client,
    Server,
}

/// Where an active open stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Open {
    Pending,
    Established,
    Failed,
}

/// What one receive call returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Received {
    Data(usize),
    Empty,
    End,
    Failed,
}

/// Two stacks, a client and a server listening on [`SERVER_PORT`], and the
/// socket calls the workloads make. Everything is monomorphised: no dynamic
/// dispatch on either side.
pub trait Net {
    type Handle: Copy;
    const NAME: &'static str;

    /// Both stacks with `buffer`-byte socket buffers and no-delay, a
    /// listener on the server for `pending` connections at once (smoltcp,
    /// which has no accept queue, keeps that many listening sockets: each
    /// costs it a look on every poll and every segment, so W1–W3, which
    /// connect one at a time, keep one).
    fn new(buffer: usize, pending: usize) -> Self;
    /// Reads the shared clock for the next polls.
    fn tick(&mut self);
    fn poll(&mut self, side: Side);
    /// A non-blocking active open from the client; None if refused at once.
    fn connect(&mut self) -> Option<Self::Handle>;
    fn open_state(&self, h: Self::Handle) -> Open;
    /// An established connection on the server, if one is waiting.
    fn accept(&mut self) -> Option<Self::Handle>;
    /// Queues what fits; 0 when full (or failed: the next receive says).
    fn send(&mut self, side: Side, h: Self::Handle, data: &[u8]) -> usize;
    fn recv(&mut self, side: Side, h: Self::Handle, buf: &mut [u8]) -> Received;
    /// Closes the application's handle; the stack finishes the connection.
    fn close(&mut self, side: Side, h: Self::Handle);
    /// Connections in TIME-WAIT on the client.
    fn time_wait(&self) -> usize;
}

/// One round of the loop both pairs run: the client application
/// (`app(net, Side::Client)`), a poll of each stack, the server application,
/// a poll of each stack. A request queued by the client crosses to the
/// server, and the server's answer back, within one step.
#[inline]
pub fn step<N: Net>(net: &mut N, mut app: impl FnMut(&mut N, Side)) {
    net.tick();
    app(net, Side::Client);
    net.poll(Side::Client);
    net.poll(Side::Server);
    app(net, Side::Server);
    net.poll(Side::Server);
    net.poll(Side::Client);
}

/// Steps until `done`, with a bound so a stuck setup panics instead of
/// hanging a benchmark.
fn settle<N: Net>(net: &mut N, what: &str, mut done: impl FnMut(&mut N) -> bool) {
    let start = WallClock::now();
    while !done(net) {
        step(net, |_, _| {});
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{}: {what} did not happen within 20 s",
            N::NAME
        );
    }
}

/// Opens `n` connections one after the other (smoltcp's server has fewer
/// listening sockets than W3 has connections) and returns (client, server)
/// handle pairs.
fn establish<N: Net>(net: &mut N, n: usize) -> Vec<(N::Handle, N::Handle)> {
    (0..n)
        .map(|_| {
            let client = net.connect().expect("connect at setup");
            let mut server = None;
            settle(net, "establishing", |net| {
                server = server.or_else(|| net.accept());
                server.is_some() && net.open_state(client) == Open::Established
            });
            (client, server.expect("accepted"))
        })
        .collect()
}

// ----- W1 bulk -------------------------------------------------------------

/// W1: one connection; the client writes 64 KiB at a time, the server reads
/// into a 64 KiB buffer and discards. One operation is one MiB.
pub struct Bulk<N: Net> {
    pub net: N,
    client: N::Handle,
    server: N::Handle,
    chunk: Vec<u8>,
    buf: Vec<u8>,
    sent: u64,
    read: u64,
}

impl<N: Net> Bulk<N> {
    pub fn new() -> Bulk<N> {
        let mut net = N::new(BIG_BUFFER, 1);
        let (client, server) = establish(&mut net, 1)[0];
        Bulk {
            net,
            client,
            server,
            chunk: vec![0x5a; BULK_CHUNK],
            buf: vec![0; BULK_CHUNK],
            sent: 0,
            read: 0,
        }
    }

    /// Sends and reads `mib` MiB more.
    pub fn run(&mut self, mib: u64) {
        let target = self.read + mib * BULK_OP_BYTES;
        let (client, server) = (self.client, self.server);
        let (chunk, buf) = (&self.chunk, &mut self.buf);
        let (sent, read) = (&mut self.sent, &mut self.read);
        while *read < target {
            step(&mut self.net, |net, side| match side {
                Side::Client => {
                    while *sent < target {
                        let n = (target - *sent).min(BULK_CHUNK as u64) as usize;
                        let k = net.send(Side::Client, client, &chunk[..n]);
                        if k == 0 {
                            break;
                        }
                        *sent += k as u64;
                    }
                }
                Side::Server => loop {
                    match net.recv(Side::Server, server, buf) {
                        Received::Data(k) => *read += k as u64,
                        Received::Empty => break,
                        r => panic!("{}: bulk receive {r:?}", N::NAME),
                    }
                },
            });
        }
    }
}

// ----- W2 and W3 echo ------------------------------------------------------

struct EchoConn<H> {
    client: H,
    server: H,
    /// A request is out and its response not yet fully read.
    waiting: bool,
    /// Response bytes read so far.
    got: usize,
    /// Request bytes the server has read and not yet answered.
    pending: usize,
}

/// W2 (one connection) and W3 (64): each connection ping-pongs 64 B
/// messages, one request outstanding at a time. One operation is one
/// request/response pair.
pub struct Echo<N: Net> {
    pub net: N,
    conns: Vec<EchoConn<N::Handle>>,
    buf: [u8; 4096],
}

impl<N: Net> Echo<N> {
    pub fn new(connections: usize) -> Echo<N> {
        let mut net = N::new(BIG_BUFFER, 1);
        let conns = establish(&mut net, connections)
            .into_iter()
            .map(|(client, server)| EchoConn {
                client,
                server,
                waiting: false,
                got: 0,
                pending: 0,
            })
            .collect();
        Echo {
            net,
            conns,
            buf: [0; 4096],
        }
    }

    /// Completes `pairs` more request/response pairs over all connections.
    pub fn run(&mut self, pairs: u64) {
        let (mut issued, mut done) = (0u64, 0u64);
        let message = [0x42u8; MESSAGE];
        let (conns, buf) = (&mut self.conns, &mut self.buf);
        while done < pairs {
            let (issued, done) = (&mut issued, &mut done);
            step(&mut self.net, |net, side| match side {
                Side::Client => {
                    for c in conns.iter_mut() {
                        if c.waiting {
                            match net.recv(Side::Client, c.client, &mut buf[..MESSAGE - c.got]) {
                                Received::Data(k) => c.got += k,
                                Received::Empty => {}
                                r => panic!("{}: echo client receive {r:?}", N::NAME),
                            }
                            if c.got == MESSAGE {
                                c.waiting = false;
                                c.got = 0;
                                *done += 1;
                            }
                        }
                        if !c.waiting && *issued < pairs {
                            let k = net.send(Side::Client, c.client, &message);
                            assert_eq!(k, MESSAGE, "{}: request did not fit", N::NAME);
                            c.waiting = true;
                            *issued += 1;
                        }
                    }
                }
                Side::Server => {
                    for c in conns.iter_mut() {
                        match net.recv(Side::Server, c.server, buf) {
                            Received::Data(k) => c.pending += k,
                            Received::Empty => {}
                            r => panic!("{}: echo server receive {r:?}", N::NAME),
                        }
                        while c.pending >= MESSAGE {
                            let k = net.send(Side::Server, c.server, &message);
                            assert_eq!(k, MESSAGE, "{}: response did not fit", N::NAME);
                            c.pending -= MESSAGE;
                        }
                    }
                }
            });
        }
    }
}

// ----- W4 connection rate --------------------------------------------------

#[derive(Clone, Copy)]
enum Slot<H> {
    Idle,
    Connecting(H),
    /// Request sent; response bytes read so far.
    Waiting(H, usize),
}

struct ServerConn<H> {
    h: H,
    got: usize,
    answered: bool,
}

/// What a connection-rate run has counted since the pair was built.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnStats {
    pub completed: u64,
    /// Active opens refused at once (no port) or that never got their
    /// reply (reset, timed out).
    pub failed: u64,
    pub time_wait: usize,
}

/// W4: 32 connections in flight; each connects, sends 64 B, reads the 64 B
/// reply and closes (client first); its slot at once opens a new one. One
/// operation is one completed connection. Connections in flight carry over
/// from one `run` to the next.
pub struct ConnRate<N: Net> {
    pub net: N,
    slots: Vec<Slot<N::Handle>>,
    servers: Vec<ServerConn<N::Handle>>,
    completed: u64,
    failed: u64,
}

impl<N: Net> ConnRate<N> {
    pub fn new() -> ConnRate<N> {
        ConnRate {
            net: N::new(SMALL_BUFFER, SM_LISTENERS),
            slots: vec![Slot::Idle; IN_FLIGHT],
            servers: Vec::with_capacity(2 * IN_FLIGHT),
            completed: 0,
            failed: 0,
        }
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    pub fn stats(&self) -> ConnStats {
        ConnStats {
            completed: self.completed,
            failed: self.failed,
            time_wait: self.net.time_wait(),
        }
    }

    /// Completes `connections` more connections (`examples/insn_count.rs`
    /// counts instructions per connection; the pair bench runs a fixed
    /// window instead).
    pub fn run(&mut self, connections: u64) {
        let target = self.completed + connections;
        self.run_while(|completed| completed < target);
    }

    /// Runs until `deadline` (a fixed window), reading the clock once per
    /// step.
    pub fn run_until(&mut self, deadline: WallClock) {
        self.run_while(|_| WallClock::now() < deadline);
    }

    fn run_while(&mut self, mut more: impl FnMut(u64) -> bool) {
        let message = [0x42u8; MESSAGE];
        let mut buf = [0u8; MESSAGE];
        let (slots, servers) = (&mut self.slots, &mut self.servers);
        let (completed, failed) = (&mut self.completed, &mut self.failed);
        while more(*completed) {
            step(&mut self.net, |net, side| match side {
                Side::Client => {
                    for slot in slots.iter_mut() {
                        client_slot(net, slot, completed, failed, &message, &mut buf);
                    }
                }
                Side::Server => {
                    while let Some(h) = net.accept() {
                        servers.push(ServerConn {
                            h,
                            got: 0,
                            answered: false,
                        });
                    }
                    servers.retain_mut(|c| server_conn(net, c, &message, &mut buf));
                }
            });
        }
    }
}

fn client_slot<N: Net>(
    net: &mut N,
    slot: &mut Slot<N::Handle>,
    completed: &mut u64,
    failed: &mut u64,
    message: &[u8],
    buf: &mut [u8],
) {
    if let Slot::Connecting(h) = *slot {
        match net.open_state(h) {
            Open::Pending => {}
            Open::Established => {
                let k = net.send(Side::Client, h, message);
                assert_eq!(k, MESSAGE, "{}: request did not fit", N::NAME);
                *slot = Slot::Waiting(h, 0);
            }
            Open::Failed => {
                *failed += 1;
                net.close(Side::Client, h);
                *slot = Slot::Idle;
            }
        }
    }
    if let Slot::Waiting(h, got) = *slot {
        match net.recv(Side::Client, h, &mut buf[..MESSAGE - got]) {
            Received::Data(k) if got + k == MESSAGE => {
                net.close(Side::Client, h);
                *completed += 1;
                *slot = Slot::Idle;
            }
            Received::Data(k) => *slot = Slot::Waiting(h, got + k),
            Received::Empty => {}
            Received::End | Received::Failed => {
                *failed += 1;
                net.close(Side::Client, h);
                *slot = Slot::Idle;
            }
        }
    }
    if let Slot::Idle = *slot {
        match net.connect() {
            Some(h) => *slot = Slot::Connecting(h),
            None => *failed += 1,
        }
    }
}

/// Serves one connection; false once it is closed.
fn server_conn<N: Net>(
    net: &mut N,
    c: &mut ServerConn<N::Handle>,
    message: &[u8],
    buf: &mut [u8],
) -> bool {
    loop {
        match net.recv(Side::Server, c.h, buf) {
            Received::Data(k) => c.got += k,
            Received::Empty => break,
            Received::End | Received::Failed => {
                net.close(Side::Server, c.h);
                return false;
            }
        }
    }
    if c.got >= MESSAGE && !c.answered {
        let k = net.send(Side::Server, c.h, message);
        assert_eq!(k, MESSAGE, "{}: reply did not fit", N::NAME);
        c.answered = true;
    }
    true
}

// ----- flowlane ------------------------------------------------------------

/// Two flowlane stacks on the in-memory `Link` (a perfect cable), stack A
/// the client, B the server.
pub struct Flowlane {
    pub pair: Pair,
    clock: Clock,
    listener: SocketHandle,
}

impl Flowlane {
    fn now(&self) -> FlInstant {
        self.pair.now
    }
}

impl Net for Flowlane {
    type Handle = SocketHandle;
    const NAME: &'static str = "flowlane";

    fn new(buffer: usize, pending: usize) -> Flowlane {
        let (mut a, mut b) = Pair::configs();
        for c in [&mut a, &mut b] {
            c.endpoint.tcp.nodelay = true;
            c.endpoint.tcp.rx_buffer = buffer;
            c.endpoint.tcp.tx_buffer = buffer;
            // Real time: the runtime's 1 ms tick, not the virtual-time
            // pair's 1 µs.
            c.endpoint.timer_tick = FlDuration::from_millis(1);
            c.iface.verify_checksums = true;
        }
        let mut pair = Pair::with(Link::new(LinkConfig::default(), 1), a, b);
        let listener = pair.b.tcp.socket().expect("socket");
        pair.b
            .tcp
            .bind(listener, SocketAddrV4::new(B_IP, SERVER_PORT))
            .expect("bind");
        pair.b
            .tcp
            .listen(listener, pending.max(128))
            .expect("listen");
        Flowlane {
            pair,
            clock: Clock::new(),
            listener,
        }
    }

    #[inline]
    fn tick(&mut self) {
        self.pair.now = FlInstant::from_micros(self.clock.micros());
    }

    #[inline]
    fn poll(&mut self, side: Side) {
        let p = &mut self.pair;
        match side {
            Side::Client => p.a.poll(p.now, &mut p.link.port(0)),
            Side::Server => p.b.poll(p.now, &mut p.link.port(1)),
        };
    }

    fn connect(&mut self) -> Option<SocketHandle> {
        let now = self.now();
        let tcp = &mut self.pair.a.tcp;
        let h = tcp.socket().ok()?;
        match tcp.connect(h, now, SocketAddrV4::new(B_IP, SERVER_PORT)) {
            Ok(()) => Some(h),
            Err(_) => {
                let _ = tcp.close(h, now);
                None
            }
        }
    }

    fn open_state(&self, h: SocketHandle) -> Open {
        match self.pair.a.tcp.state(h) {
            Ok(State::SynSent | State::SynReceived) => Open::Pending,
            Ok(State::Closed) | Err(_) => Open::Failed,
            Ok(_) => Open::Established,
        }
    }

    fn accept(&mut self) -> Option<SocketHandle> {
        self.pair.b.tcp.accept(self.listener).ok().map(|(h, _)| h)
    }

    #[inline]
    fn send(&mut self, side: Side, h: SocketHandle, data: &[u8]) -> usize {
        let stack = match side {
            Side::Client => &mut self.pair.a,
            Side::Server => &mut self.pair.b,
        };
        stack.tcp.send(h, data).unwrap_or(0)
    }

    #[inline]
    fn recv(&mut self, side: Side, h: SocketHandle, buf: &mut [u8]) -> Received {
        let stack = match side {
            Side::Client => &mut self.pair.a,
            Side::Server => &mut self.pair.b,
        };
        match stack.tcp.recv(h, buf) {
            Ok(0) => Received::End,
            Ok(n) => Received::Data(n),
            Err(SocketError::WouldBlock) => Received::Empty,
            Err(_) => Received::Failed,
        }
    }

    fn close(&mut self, side: Side, h: SocketHandle) {
        let now = self.now();
        let stack = match side {
            Side::Client => &mut self.pair.a,
            Side::Server => &mut self.pair.b,
        };
        stack.tcp.close(h, now).expect("close");
    }

    fn time_wait(&self) -> usize {
        self.pair.a.tcp.state_counts()[State::TimeWait as usize] as usize
    }
}

// ----- smoltcp -------------------------------------------------------------

/// A two-ended in-memory Ethernet cable for smoltcp: a queue per direction
/// and a pool of frame buffers per direction, so steady state allocates
/// nothing (as flowlane's `Link`).
#[derive(Default)]
pub struct Cable {
    a_to_b: VecDeque<Vec<u8>>,
    b_to_a: VecDeque<Vec<u8>>,
    pool_a_to_b: Vec<Vec<u8>>,
    pool_b_to_a: Vec<Vec<u8>>,
}

impl Cable {
    fn end(&mut self, side: Side) -> CableEnd<'_> {
        match side {
            Side::Client => CableEnd {
                rx: &mut self.b_to_a,
                rx_pool: &mut self.pool_b_to_a,
                tx: &mut self.a_to_b,
                tx_pool: &mut self.pool_a_to_b,
            },
            Side::Server => CableEnd {
                rx: &mut self.a_to_b,
                rx_pool: &mut self.pool_a_to_b,
                tx: &mut self.b_to_a,
                tx_pool: &mut self.pool_b_to_a,
            },
        }
    }
}

/// One end of the [`Cable`], a smoltcp device while it borrows the cable.
pub struct CableEnd<'a> {
    rx: &'a mut VecDeque<Vec<u8>>,
    rx_pool: &'a mut Vec<Vec<u8>>,
    tx: &'a mut VecDeque<Vec<u8>>,
    tx_pool: &'a mut Vec<Vec<u8>>,
}

pub struct CableRx<'a> {
    frame: Vec<u8>,
    pool: &'a mut Vec<Vec<u8>>,
}

pub struct CableTx<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
    pool: &'a mut Vec<Vec<u8>>,
}

impl RxToken for CableRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        self.pool.push(self.frame);
        r
    }
}

impl TxToken for CableTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.pool.pop().unwrap_or_default();
        // A recycled buffer is not zeroed first (smoltcp writes every byte
        // of the frame), as flowlane's frames are not: only new bytes are.
        if frame.len() < len {
            frame.resize(len, 0);
        } else {
            frame.truncate(len);
        }
        let r = f(&mut frame);
        self.queue.push_back(frame);
        r
    }
}

impl Device for CableEnd<'_> {
    type RxToken<'b>
        = CableRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = CableTx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _: SmInstant) -> Option<(CableRx<'_>, CableTx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((
            CableRx {
                frame,
                pool: self.rx_pool,
            },
            CableTx {
                queue: self.tx,
                pool: self.tx_pool,
            },
        ))
    }

    fn transmit(&mut self, _: SmInstant) -> Option<CableTx<'_>> {
        Some(CableTx {
            queue: self.tx,
            pool: self.tx_pool,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // IP MTU 1500 plus the Ethernet header.
        caps.max_transmission_unit = 1514;
        // `caps.checksum` stays at its default: computed and verified in
        // software for IPv4 and TCP.
        caps
    }
}

/// Two smoltcp 0.14 interfaces on a [`Cable`], client A and server B, with
/// the addresses of flowlane's pair.
///
/// smoltcp has no accept queue: a listening socket becomes the connection.
/// The server keeps a number of sockets listening ([`SM_LISTENERS`] in
/// W4: more than the connections in flight) and replaces each one that has
/// become a connection. smoltcp's connect needs an explicit local port: the client
/// takes ephemeral ports in turn, skipping those whose socket still exists
/// (TIME-WAIT lasts smoltcp's fixed 10 s; then the socket is removed).
pub struct Smoltcp {
    cable: Cable,
    a: Interface,
    b: Interface,
    sockets_a: SocketSet<'static>,
    sockets_b: SocketSet<'static>,
    clock: Clock,
    now: SmInstant,
    buffer: usize,
    listeners: Vec<SmHandle>,
    port_in_use: Vec<bool>,
    /// Ports in use, so a connect with every port taken fails at once
    /// instead of scanning the range.
    ports_used: usize,
    port_cursor: u16,
    /// Closed client sockets (FIN-WAIT, TIME-WAIT) in closing order, with
    /// their port; removed once CLOSED.
    closing_a: VecDeque<(SmHandle, u16)>,
    /// Closed server sockets, removed once CLOSED.
    closing_b: VecDeque<SmHandle>,
}

/// A smoltcp socket and, for a client socket, its local port (0 on the
/// server), so closing frees the port without a lookup.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SmSocket {
    h: SmHandle,
    port: u16,
}

/// Listening sockets the smoltcp server keeps in W4 (above its 32 in
/// flight).
pub const SM_LISTENERS: usize = IN_FLIGHT + 8;
const SM_A: IpAddress = IpAddress::v4(10, 77, 0, 1);
const SM_B: IpAddress = IpAddress::v4(10, 77, 0, 2);

impl Smoltcp {
    fn tcp_socket(&self) -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; self.buffer]),
            tcp::SocketBuffer::new(vec![0u8; self.buffer]),
        );
        s.set_nagle_enabled(false);
        s
    }

    fn add_listener(&mut self) -> SmHandle {
        let mut s = self.tcp_socket();
        s.listen(SERVER_PORT).expect("listen");
        self.sockets_b.add(s)
    }

    fn iface(mac: u8, ip: IpAddress, seed: u64, dev: &mut CableEnd<'_>) -> Interface {
        let mut config = SmConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, mac]).into());
        config.random_seed = seed;
        let mut iface = Interface::new(config, dev, SmInstant::ZERO);
        iface.update_ip_addrs(|a| a.push(IpCidr::new(ip, 24)).expect("one address"));
        iface
    }

    /// Removes closing sockets that have reached CLOSED, oldest first.
    fn reap(&mut self) {
        while let Some(&(h, port)) = self.closing_a.front() {
            if self.sockets_a.get::<tcp::Socket>(h).state() != tcp::State::Closed {
                break;
            }
            self.closing_a.pop_front();
            self.sockets_a.remove(h);
            self.port_in_use[port as usize] = false;
            self.ports_used -= 1;
        }
        while let Some(&h) = self.closing_b.front() {
            if self.sockets_b.get::<tcp::Socket>(h).state() != tcp::State::Closed {
                break;
            }
            self.closing_b.pop_front();
            self.sockets_b.remove(h);
        }
    }

    fn free_port(&mut self) -> Option<u16> {
        if self.ports_used > usize::from(PORT_HI - PORT_LO) {
            return None;
        }
        for _ in PORT_LO..=PORT_HI {
            self.port_cursor = if self.port_cursor >= PORT_HI {
                PORT_LO
            } else {
                self.port_cursor + 1
            };
            if !self.port_in_use[self.port_cursor as usize] {
                return Some(self.port_cursor);
            }
        }
        None
    }

    fn set(&mut self, side: Side) -> &mut SocketSet<'static> {
        match side {
            Side::Client => &mut self.sockets_a,
            Side::Server => &mut self.sockets_b,
        }
    }
}

impl Net for Smoltcp {
    type Handle = SmSocket;
    const NAME: &'static str = "smoltcp";

    fn new(buffer: usize, pending: usize) -> Smoltcp {
        let mut cable = Cable::default();
        let a = Smoltcp::iface(1, SM_A, 0x5eeda, &mut cable.end(Side::Client));
        let b = Smoltcp::iface(2, SM_B, 0x5eedb, &mut cable.end(Side::Server));
        let mut net = Smoltcp {
            cable,
            a,
            b,
            sockets_a: SocketSet::new(vec![]),
            sockets_b: SocketSet::new(vec![]),
            clock: Clock::new(),
            now: SmInstant::ZERO,
            buffer,
            listeners: Vec::new(),
            port_in_use: vec![false; 65536],
            ports_used: 0,
            port_cursor: PORT_HI,
            closing_a: VecDeque::new(),
            closing_b: VecDeque::new(),
        };
        for _ in 0..pending {
            let h = net.add_listener();
            net.listeners.push(h);
        }
        net
    }

    #[inline]
    fn tick(&mut self) {
        self.now = SmInstant::from_micros(self.clock.micros() as i64);
        self.reap();
    }

    #[inline]
    fn poll(&mut self, side: Side) {
        let now = self.now;
        let mut dev = self.cable.end(side);
        match side {
            Side::Client => self.a.poll(now, &mut dev, &mut self.sockets_a),
            Side::Server => self.b.poll(now, &mut dev, &mut self.sockets_b),
        };
    }

    fn connect(&mut self) -> Option<SmSocket> {
        let port = self.free_port()?;
        let mut s = self.tcp_socket();
        s.connect(self.a.context(), IpEndpoint::new(SM_B, SERVER_PORT), port)
            .ok()?;
        let h = self.sockets_a.add(s);
        self.port_in_use[port as usize] = true;
        self.ports_used += 1;
        Some(SmSocket { h, port })
    }

    fn open_state(&self, s: SmSocket) -> Open {
        match self.sockets_a.get::<tcp::Socket>(s.h).state() {
            tcp::State::SynSent | tcp::State::SynReceived => Open::Pending,
            tcp::State::Established | tcp::State::CloseWait => Open::Established,
            _ => Open::Failed,
        }
    }

    fn accept(&mut self) -> Option<SmSocket> {
        for i in 0..self.listeners.len() {
            let h = self.listeners[i];
            match self.sockets_b.get::<tcp::Socket>(h).state() {
                tcp::State::Listen | tcp::State::SynReceived => continue,
                _ => {
                    self.listeners[i] = self.add_listener();
                    return Some(SmSocket { h, port: 0 });
                }
            }
        }
        None
    }

    #[inline]
    fn send(&mut self, side: Side, s: SmSocket, data: &[u8]) -> usize {
        self.set(side)
            .get_mut::<tcp::Socket>(s.h)
            .send_slice(data)
            .unwrap_or(0)
    }

    #[inline]
    fn recv(&mut self, side: Side, s: SmSocket, buf: &mut [u8]) -> Received {
        let s = self.set(side).get_mut::<tcp::Socket>(s.h);
        match s.recv_slice(buf) {
            Ok(0) if s.state() == tcp::State::Closed => Received::Failed,
            Ok(0) => Received::Empty,
            Ok(n) => Received::Data(n),
            Err(tcp::RecvError::Finished) => Received::End,
            Err(tcp::RecvError::InvalidState) => Received::Failed,
        }
    }

    fn close(&mut self, side: Side, s: SmSocket) {
        self.set(side).get_mut::<tcp::Socket>(s.h).close();
        match side {
            Side::Client => self.closing_a.push_back((s.h, s.port)),
            Side::Server => self.closing_b.push_back(s.h),
        }
    }

    fn time_wait(&self) -> usize {
        self.sockets_a
            .iter()
            .filter(|(_, s)| {
                tcp::Socket::downcast(s).is_some_and(|t| t.state() == tcp::State::TimeWait)
            })
            .count()
    }
}
