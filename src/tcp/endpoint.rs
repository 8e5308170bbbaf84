//! The TCP endpoint of one stack: the socket table, the demux from 4-tuple
//! to connection (a keyed hash map, never a scan), listeners with their SYN
//! and accept queues, local port bookkeeping, RST for segments that reach no
//! socket, and the schedule of connections that need time.
//!
//! Handles are generational: a handle outlives neither `close()` nor the
//! slot's reuse, so a stale handle is an error, never another socket.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::conn::{Connection, RecvError, SendError, Shutdown, TcpError, TcpInfo};
use super::timewait::{judge, TimeWaitTable, TimeWaitVerdict};
use super::{rst_for_unexpected, Config, IsnGenerator, SegmentRun, Sink, State};
use crate::storage::BufferPool;
use crate::time::{Duration, Instant};
use crate::timer::{TimerId, TimerWheel};
use crate::wire::TcpRepr;

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// At most this much ring storage waits in the pool for new connections
/// (256 rings of BENCHMARKS.md's 4 KiB, or 16 of 256 KiB).
const POOL_BYTES: usize = 4 << 20;

/// At most this many connection allocations wait for reuse.
const BOXES_KEPT: usize = 256;

/// What a caller of `after_change_owing` knows of the work a connection owes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owed {
    /// It may owe something now: let the next dispatch find out.
    Maybe,
    /// A dispatch just sent everything it could: only timers are left.
    Nothing,
    /// Ask the connection (`Connection::poll_at`).
    Unknown,
}

/// An application's reference to a socket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SocketHandle {
    index: u32,
    gen: u32,
}

impl SocketHandle {
    /// A small integer for front ends that need one (the C API's fd).
    pub fn index(self) -> u32 {
        self.index
    }
    pub fn generation(self) -> u32 {
        self.gen
    }
    pub fn from_parts(index: u32, gen: u32) -> SocketHandle {
        SocketHandle { index, gen }
    }
}

/// The connection identifier (RFC 9293 §3.3.1's socket pair).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FourTuple {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

impl FourTuple {
    /// The 96 bits of the tuple in one integer.
    #[inline]
    pub fn packed(&self) -> u128 {
        (u32::from(*self.local.ip()) as u128) << 64
            | (u32::from(*self.remote.ip()) as u128) << 32
            | (self.local.port() as u128) << 16
            | self.remote.port() as u128
    }
}

/// One write of the packed tuple: the derived `Hash` fed the keyed hasher
/// six pieces (each address as a length-prefixed byte slice, each port),
/// and the demux lookup showed as the costliest line of `Endpoint::process`
/// in a time profile of W2.
impl core::hash::Hash for FourTuple {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.packed());
    }
}

/// Errors of the socket calls; each maps to one errno in the C API.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SocketError {
    /// The handle is stale, closed or never existed (EBADF).
    BadHandle,
    /// The call does not fit the socket's state (EINVAL).
    InvalidState,
    /// EAGAIN.
    WouldBlock,
    /// A connect is already in progress (EALREADY).
    InProgress,
    /// Already connected (EISCONN).
    AlreadyConnected,
    /// Not connected (ENOTCONN).
    NotConnected,
    /// The local address is taken (EADDRINUSE).
    AddrInUse,
    /// The address is not ours, or no local port is free (EADDRNOTAVAIL).
    AddrNotAvailable,
    /// The write side is closed (EPIPE).
    Pipe,
    /// ECONNREFUSED.
    Refused,
    /// ECONNRESET.
    Reset,
    /// ETIMEDOUT.
    TimedOut,
    /// Out of socket slots or buffers (ENOBUFS/EMFILE).
    NoResources,
}

impl From<TcpError> for SocketError {
    fn from(e: TcpError) -> SocketError {
        match e {
            TcpError::Refused => SocketError::Refused,
            TcpError::Reset => SocketError::Reset,
            TcpError::TimedOut => SocketError::TimedOut,
        }
    }
}

/// Readiness of one socket, in epoll's terms.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Readiness {
    /// EPOLLIN: data, end of stream, an error, or (listener) a connection
    /// to accept.
    pub readable: bool,
    /// EPOLLOUT: room in the send buffer, or connect finished (well or not).
    pub writable: bool,
    /// EPOLLRDHUP: the peer closed its sending side.
    pub read_hangup: bool,
    /// EPOLLHUP: both directions are finished.
    pub hangup: bool,
    /// EPOLLERR: a pending error (read with `take_error`).
    pub error: bool,
}

/// Per-socket options, set before connect/listen (buffers) or any time.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    pub reuse_addr: bool,
    /// SO_LINGER: None is off; Some(0) aborts on close.
    pub linger: Option<Duration>,
    pub nodelay: bool,
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    /// SO_KEEPALIVE with TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT.
    pub keepalive: Option<super::Keepalive>,
}

/// Endpoint-wide settings.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub tcp: Config,
    /// Bound on connections in SYN-RECEIVED per listener (Linux's
    /// tcp_max_syn_backlog).
    pub max_syn_backlog: usize,
    /// Upper bound on a listen backlog (Linux's somaxconn).
    pub max_backlog: usize,
    /// Ephemeral ports (Linux's ip_local_port_range).
    pub local_ports: (u16, u16),
    /// RFC 6528 secret.
    pub isn_key: [u8; 16],
    /// Seeds the demux hash (keyed, against hash flooding).
    pub hash_seed: u64,
    /// Largest number of sockets (connections included).
    pub max_sockets: usize,
    /// Tick of the timer wheel: timers fire at most one tick late, never
    /// early. 1 ms as the runtime uses; virtual-time tests use 1 µs.
    pub timer_tick: Duration,
}

impl Default for EndpointConfig {
    fn default() -> EndpointConfig {
        EndpointConfig {
            tcp: Config::default(),
            max_syn_backlog: 1024,
            max_backlog: 4096,
            local_ports: (32768, 60999),
            isn_key: *b"flowlane-isn-key",
            hash_seed: 0x5eed_f10a_1a9e,
            max_sockets: 1 << 22,
            timer_tick: Duration::from_millis(1),
        }
    }
}

/// Endpoint counters: what was dropped or refused, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    pub segments_in: u64,
    pub segments_out: u64,
    /// Segments that reached no socket.
    pub no_socket: u64,
    pub rst_sent: u64,
    /// SYNs dropped because the SYN queue was full.
    pub syn_queue_overflow: u64,
    /// SYNs dropped because the accept queue was full.
    pub accept_queue_overflow: u64,
    pub connections_opened: u64,
    pub connections_accepted: u64,
    pub connections_reset: u64,
    /// Segments not emitted because the device queue was full.
    pub tx_backpressure: u64,
    /// Connections that reached TIME-WAIT after close() and became records.
    pub time_wait_records: u64,
    /// Active opens that took a TIME-WAIT 4-tuple (RFC 6191: timestamps,
    /// newer TSval).
    pub time_wait_reused_active: u64,
    /// SYNs accepted on a TIME-WAIT 4-tuple (RFC 6191 / RFC 1122 §4.2.2.13).
    pub time_wait_reused_passive: u64,
    /// SYNs on a TIME-WAIT 4-tuple that were not safe to accept (re-ACKed).
    pub time_wait_syn_refused: u64,
    /// Connects refused because no local port was free (EADDRNOTAVAIL).
    pub ports_exhausted: u64,
}

struct Listener {
    /// Shared by every connection the listener accepts.
    config: Arc<Config>,
    backlog: usize,
    /// Children in SYN-RECEIVED.
    syn_queue: usize,
    /// Established children not yet accepted.
    accept_queue: VecDeque<SocketHandle>,
}

enum Kind {
    Unbound,
    Bound(SocketAddrV4),
    Listening(SocketAddrV4, Box<Listener>),
    Connection(Box<Connection>),
}

struct Socket {
    kind: Kind,
    opts: SocketOptions,
    /// For a passive child not yet accepted: its listener.
    parent: Option<SocketHandle>,
    /// The application has closed its handle; the slot frees itself when
    /// the connection reaches CLOSED.
    released: bool,
    /// In the demux table (and counted in its port).
    in_table: bool,
    /// In the dirty list.
    dirty: bool,
    /// The socket's entry on the timer wheel, with its deadline.
    timer: Option<(TimerId, Instant)>,
    /// State counted in the per-state statistics.
    counted: Option<State>,
    /// In the wake log (see [`Endpoint::enable_wake_log`]).
    woken: bool,
}

struct Slot {
    gen: u32,
    socket: Option<Socket>,
}

#[derive(Default, Clone, Copy)]
struct PortUse {
    listeners: u32,
    bound: u32,
    connections: u32,
}

/// The use counts of every local port in one dense table (65 536 entries
/// of 12 B, allocated on the first use): an ephemeral port search walks it
/// in order. A hash map keyed by port put every candidate's entry in a
/// different cache line; in a time profile of W4 the miss on that load was
/// 80 % of `connect`.
#[derive(Default)]
struct PortTable {
    uses: Vec<PortUse>,
}

impl PortTable {
    fn get(&self, port: u16) -> PortUse {
        self.uses.get(port as usize).copied().unwrap_or_default()
    }

    fn in_use(&self, port: u16) -> bool {
        let u = self.get(port);
        u.listeners > 0 || u.bound > 0 || u.connections > 0
    }

    fn get_mut(&mut self, port: u16) -> Option<&mut PortUse> {
        self.uses.get_mut(port as usize)
    }

    fn entry(&mut self, port: u16) -> &mut PortUse {
        if self.uses.is_empty() {
            self.uses = vec![PortUse::default(); 1 << 16];
        }
        &mut self.uses[port as usize]
    }
}

/// After a dispatch the device did not refuse, a connection owes nothing
/// but its timers (checked in debug builds, across the whole test suite).
#[inline]
fn debug_assert_nothing_owed(c: &Connection) {
    debug_assert_eq!(
        c.poll_at(),
        c.next_timer(),
        "a dispatch the device did not refuse left work owed ({:?})",
        c.state()
    );
}

/// Entries of [`Endpoint`]'s demux hint.
const DEMUX_HINTS: usize = 256;

/// The socket table and TCP demux of one stack.
pub struct Endpoint {
    config: EndpointConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    conns: FastMap<FourTuple, u32>,
    /// A direct-mapped cache in front of `conns`, indexed by the ports:
    /// the slot a tuple was last found in. An entry is only a hint, checked
    /// against the slot's connection, so it needs no invalidation, and a
    /// peer that makes its flows collide here only falls back to the keyed
    /// hash lookup (which cost W1 about 5 % of its time).
    demux_hint: Box<[u32; DEMUX_HINTS]>,
    listeners: FastMap<SocketAddrV4, u32>,
    ports: PortTable,
    dirty: Vec<u32>,
    /// One entry per connection with a deadline (RTO, delayed ACK,
    /// persist, keepalive, SYN-RECEIVED, TIME-WAIT, linger): O(1) insert,
    /// reschedule and cancel. The value is the slot and its generation.
    timers: TimerWheel<(u32, u32)>,
    /// Reused buffer for the wheel's expired entries.
    expired: Vec<(u32, u32)>,
    /// Ring storage of closed connections, for new ones.
    pool: BufferPool,
    /// Allocations of closed connections, for new ones (a connection is
    /// over a kilobyte: past the allocator's fast per-thread bins). Boxes
    /// on purpose: the point is to keep the allocations.
    #[allow(clippy::vec_box)]
    boxes: Vec<Box<Connection>>,
    /// The last destination's keyed port offset (RFC 6056).
    port_offset: Option<(Ipv4Addr, SocketAddrV4, u32)>,
    isn: IsnGenerator,
    local_addrs: Vec<Ipv4Addr>,
    port_cursor: u32,
    counters: EndpointCounters,
    states: [u64; State::COUNT],
    record_history: bool,
    /// Sockets whose readiness may have changed since the log was last
    /// taken, each once; kept only while `wake_logging`.
    wake_log: Vec<u32>,
    wake_logging: bool,
    /// Closed connections in TIME-WAIT, as small records.
    tw: TimeWaitTable<ahash::RandomState>,
    /// Bumped whenever a local port use ends (connection gone, record
    /// expired): a failed port search stays failed until it changes.
    release_gen: u64,
    /// The last port search that found nothing: (local ip, remote,
    /// release_gen, ms). Lets a connect fail at once, not rescan every port.
    exhausted: Option<(Ipv4Addr, SocketAddrV4, u64, u64)>,
    /// On a sharded stack: the RSS function and this core. Active opens
    /// only take ports whose reply traffic hashes to this core (Seastar's
    /// rule), so every packet of a flow is handled where the flow lives.
    steering: Option<(crate::shard::rss::Rss, usize)>,
}

/// A sink wrapper that counts what goes out and what the device refused.
struct Counting<'a, S: Sink> {
    inner: &'a mut S,
    out: u64,
    refused: u64,
}

impl<S: Sink> Sink for Counting<'_, S> {
    fn emit(&mut self, src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr<'_>) -> bool {
        let ok = self.inner.emit(src, dst, repr);
        if ok {
            self.out += 1;
        } else {
            self.refused += 1;
        }
        ok
    }

    fn emit_split(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &TcpRepr<'_>,
        mss: usize,
    ) -> usize {
        let sent = self.inner.emit_split(src, dst, repr, mss);
        self.out += sent as u64;
        if sent < repr.split_count(mss) {
            self.refused += 1;
        }
        sent
    }
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        let hasher = ahash::RandomState::with_seeds(
            config.hash_seed,
            config.hash_seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
            config.hash_seed.rotate_left(31) ^ 0xc2b2_ae3d_27d4_eb4f,
            config.hash_seed.rotate_left(47) ^ 0x1656_67b1_9e37_79f9,
        );
        let two_msl = config.tcp.msl.saturating_mul(2);
        let timer_tick = config.timer_tick;
        Endpoint {
            tw: TimeWaitTable::new(hasher.clone(), two_msl),
            release_gen: 0,
            exhausted: None,
            steering: None,
            isn: IsnGenerator::new(config.isn_key),
            port_cursor: (config.hash_seed as u32) & 0xffff,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            conns: HashMap::with_hasher(hasher.clone()),
            demux_hint: Box::new([u32::MAX; DEMUX_HINTS]),
            listeners: HashMap::with_hasher(hasher.clone()),
            ports: PortTable::default(),
            dirty: Vec::new(),
            timers: TimerWheel::new(Instant::ZERO, timer_tick),
            expired: Vec::new(),
            pool: BufferPool::new(POOL_BYTES),
            boxes: Vec::new(),
            port_offset: None,
            local_addrs: Vec::new(),
            counters: EndpointCounters::default(),
            states: [0; State::COUNT],
            record_history: false,
            wake_log: Vec::new(),
            wake_logging: false,
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Makes this endpoint core `core` of a sharded set (see
    /// [`Endpoint::connect`] for what changes).
    pub fn set_steering(&mut self, steering: Option<(crate::shard::rss::Rss, usize)>) {
        self.steering = steering;
    }

    /// The addresses sockets may bind to (the interface's).
    pub fn set_local_addrs(&mut self, addrs: &[Ipv4Addr]) {
        self.local_addrs = addrs.to_vec();
    }

    /// Every new connection records its state history (tests).
    pub fn set_record_history(&mut self, on: bool) {
        self.record_history = on;
    }

    /// Keeps a log of the sockets whose readiness may have changed: every
    /// socket a segment, a timer, a dispatch or an API call touched, and a
    /// listener whose accept queue grew. An epoll layer takes it with
    /// [`take_woken`](Self::take_woken) and looks at those sockets only,
    /// as Linux's ready list does, instead of at every registered one.
    /// A socket is in the log at most once, so the log is bounded by the
    /// sockets open. Off until this is called (the Rust API has no epoll);
    /// once on, it stays on.
    pub fn enable_wake_log(&mut self) {
        self.wake_logging = true;
    }

    /// Hands each socket of the wake log to `f` once and empties it. A
    /// handle may be stale (its socket since closed): the caller checks.
    pub fn take_woken(&mut self, mut f: impl FnMut(SocketHandle)) {
        let log = std::mem::take(&mut self.wake_log);
        for &index in &log {
            let slot = &mut self.slots[index as usize];
            if let Some(s) = slot.socket.as_mut() {
                s.woken = false;
                f(SocketHandle {
                    index,
                    gen: slot.gen,
                });
            }
        }
        self.wake_log = log;
        self.wake_log.clear();
    }

    #[inline(always)]
    fn wake(&mut self, index: u32) {
        if self.wake_logging {
            self.wake_slow(index);
        }
    }

    #[inline(never)]
    fn wake_slow(&mut self, index: u32) {
        if let Some(s) = self.slots[index as usize].socket.as_mut() {
            if !s.woken {
                s.woken = true;
                self.wake_log.push(index);
            }
        }
    }

    pub fn counters(&self) -> &EndpointCounters {
        &self.counters
    }

    /// Sockets per TCP state (LISTEN counts listeners), like
    /// `netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'`.
    pub fn state_counts(&self) -> [u64; State::COUNT] {
        self.states
    }

    /// Number of live connections in the demux table.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of TIME-WAIT records.
    pub fn time_wait_count(&self) -> usize {
        self.tw.len()
    }

    /// Bytes held by the TIME-WAIT records and their index.
    pub fn time_wait_memory(&self) -> usize {
        self.tw.memory_bytes()
    }

    // ----- slots -----------------------------------------------------------

    fn sock(&self, h: SocketHandle) -> Result<&Socket, SocketError> {
        match self.slots.get(h.index as usize) {
            Some(Slot {
                gen,
                socket: Some(s),
            }) if *gen == h.gen && !s.released => Ok(s),
            _ => Err(SocketError::BadHandle),
        }
    }

    fn sock_mut(&mut self, h: SocketHandle) -> Result<&mut Socket, SocketError> {
        match self.slots.get_mut(h.index as usize) {
            Some(Slot {
                gen,
                socket: Some(s),
            }) if *gen == h.gen && !s.released => Ok(s),
            _ => Err(SocketError::BadHandle),
        }
    }

    /// [`conn_mut`](Self::conn_mut) borrowing only the slots.
    fn conn_in(slots: &mut [Slot], h: SocketHandle) -> Result<&mut Connection, SocketError> {
        match slots.get_mut(h.index as usize) {
            Some(Slot {
                gen,
                socket: Some(s),
            }) if *gen == h.gen && !s.released => match &mut s.kind {
                Kind::Connection(c) => Ok(c),
                _ => Err(SocketError::NotConnected),
            },
            _ => Err(SocketError::BadHandle),
        }
    }

    fn handle_of(&self, index: u32) -> SocketHandle {
        SocketHandle {
            index,
            gen: self.slots[index as usize].gen,
        }
    }

    fn alloc(&mut self, socket: Socket) -> Result<SocketHandle, SocketError> {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.socket = Some(socket);
            return Ok(SocketHandle {
                index,
                gen: slot.gen,
            });
        }
        if self.slots.len() >= self.config.max_sockets {
            return Err(SocketError::NoResources);
        }
        self.slots.push(Slot {
            gen: 0,
            socket: Some(socket),
        });
        Ok(SocketHandle {
            index: (self.slots.len() - 1) as u32,
            gen: 0,
        })
    }

    fn release_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if let Some(mut s) = slot.socket.take() {
            if let Kind::Connection(c) = &mut s.kind {
                c.recycle_storage(&mut self.pool);
            }
            if let Kind::Connection(c) = std::mem::replace(&mut s.kind, Kind::Unbound) {
                if self.boxes.len() < BOXES_KEPT {
                    self.boxes.push(c);
                }
            }
            if let Some(st) = s.counted {
                self.states[st as usize] -= 1;
            }
            if let Some((id, _)) = s.timer {
                self.timers.cancel(id);
            }
        }
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(index);
    }

    /// `conn` in the allocation a closed connection left, if any.
    fn boxed(&mut self, conn: Connection) -> Box<Connection> {
        match self.boxes.pop() {
            Some(mut b) => {
                *b = conn;
                b
            }
            None => Box::new(conn),
        }
    }

    fn new_socket(&self, kind: Kind, opts: SocketOptions) -> Socket {
        Socket {
            kind,
            opts,
            parent: None,
            released: false,
            in_table: false,
            dirty: false,
            timer: None,
            counted: None,
            woken: false,
        }
    }

    fn default_options(&self) -> SocketOptions {
        let tcp = &self.config.tcp;
        SocketOptions {
            reuse_addr: false,
            linger: None,
            nodelay: tcp.nodelay,
            rx_buffer: tcp.rx_buffer,
            tx_buffer: tcp.tx_buffer,
            keepalive: tcp.keepalive,
        }
    }

    fn conn_config(&self, opts: &SocketOptions) -> Config {
        let mut c = self.config.tcp.clone();
        c.nodelay = opts.nodelay;
        c.rx_buffer = opts.rx_buffer;
        c.tx_buffer = opts.tx_buffer;
        c.keepalive = opts.keepalive;
        c
    }

    // ----- socket calls ----------------------------------------------------

    /// `socket(AF_INET, SOCK_STREAM, 0)`.
    pub fn socket(&mut self) -> Result<SocketHandle, SocketError> {
        let s = self.new_socket(Kind::Unbound, self.default_options());
        self.alloc(s)
    }

    fn port_use(&mut self, port: u16) -> &mut PortUse {
        self.ports.entry(port)
    }

    fn port_release(&mut self, port: u16, f: impl FnOnce(&mut PortUse)) {
        self.release_gen += 1;
        if let Some(u) = self.ports.get_mut(port) {
            f(u);
        }
    }

    fn is_local(&self, ip: Ipv4Addr) -> bool {
        ip.is_unspecified() || self.local_addrs.contains(&ip)
    }

    /// `bind(2)`. Port 0 picks an ephemeral port. Without SO_REUSEADDR the
    /// port must be unused; with it, connections on the port (TIME-WAIT ones
    /// included) do not block a new bind, but a listener or a bound socket
    /// does.
    pub fn bind(&mut self, h: SocketHandle, addr: SocketAddrV4) -> Result<(), SocketError> {
        let reuse = {
            let s = self.sock(h)?;
            if !matches!(s.kind, Kind::Unbound) {
                return Err(SocketError::InvalidState);
            }
            s.opts.reuse_addr
        };
        if !self.is_local(*addr.ip()) {
            return Err(SocketError::AddrNotAvailable);
        }
        let port = if addr.port() == 0 {
            self.free_bind_port().ok_or(SocketError::AddrNotAvailable)?
        } else {
            let u = self.ports.get(addr.port());
            if u.listeners > 0 || u.bound > 0 || (u.connections > 0 && !reuse) {
                return Err(SocketError::AddrInUse);
            }
            addr.port()
        };
        self.port_use(port).bound += 1;
        self.sock_mut(h)?.kind = Kind::Bound(SocketAddrV4::new(*addr.ip(), port));
        Ok(())
    }

    fn free_bind_port(&mut self) -> Option<u16> {
        let (lo, hi) = self.config.local_ports;
        let n = (hi as u32).saturating_sub(lo as u32) + 1;
        for _ in 0..n {
            self.port_cursor = self.port_cursor.wrapping_add(1);
            let port = lo + (self.port_cursor % n) as u16;
            if !self.ports.in_use(port) {
                return Some(port);
            }
        }
        None
    }

    /// `listen(2)`. An unbound socket gets an ephemeral port, as on Linux.
    pub fn listen(&mut self, h: SocketHandle, backlog: usize) -> Result<(), SocketError> {
        let backlog = backlog.clamp(1, self.config.max_backlog);
        let addr = match self.sock_mut(h)?.kind {
            Kind::Bound(a) => a,
            Kind::Unbound => {
                self.bind(h, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
                match self.sock(h)?.kind {
                    Kind::Bound(a) => a,
                    _ => return Err(SocketError::InvalidState),
                }
            }
            Kind::Listening(_, ref mut l) => {
                // Linux's inet_listen: listen() again resizes the backlog.
                l.backlog = backlog;
                return Ok(());
            }
            Kind::Connection(_) => return Err(SocketError::InvalidState),
        };
        let config = Arc::new(self.conn_config(&self.sock(h)?.opts));
        let u = self.port_use(addr.port());
        u.bound -= 1;
        u.listeners += 1;
        self.listeners.insert(addr, h.index);
        let s = self.sock_mut(h)?;
        s.kind = Kind::Listening(
            addr,
            Box::new(Listener {
                config,
                backlog,
                syn_queue: 0,
                accept_queue: VecDeque::new(),
            }),
        );
        s.counted = Some(State::Listen);
        self.states[State::Listen as usize] += 1;
        Ok(())
    }

    /// `accept(2)`: the oldest established child, with its peer address.
    pub fn accept(&mut self, h: SocketHandle) -> Result<(SocketHandle, SocketAddrV4), SocketError> {
        let child = match &mut self.sock_mut(h)?.kind {
            Kind::Listening(_, l) => l.accept_queue.pop_front(),
            _ => return Err(SocketError::InvalidState),
        };
        let child = child.ok_or(SocketError::WouldBlock)?;
        let s = self.sock_mut(child)?;
        s.parent = None;
        let Kind::Connection(c) = &s.kind else {
            return Err(SocketError::InvalidState);
        };
        let remote = c.remote();
        self.counters.connections_accepted += 1;
        Ok((child, remote))
    }

    /// `connect(2)`, non-blocking: the SYN leaves on the next poll; the
    /// socket turns writable when the handshake completes (or readable and
    /// in error when it fails).
    pub fn connect(
        &mut self,
        h: SocketHandle,
        now: Instant,
        remote: SocketAddrV4,
    ) -> Result<(), SocketError> {
        let bound = match &self.sock(h)?.kind {
            Kind::Unbound => None,
            Kind::Bound(a) => Some(*a),
            // Linux: EISCONN unless the socket is CLOSED.
            Kind::Listening(..) => return Err(SocketError::AlreadyConnected),
            Kind::Connection(c) => {
                return Err(match c.state() {
                    State::SynSent | State::SynReceived => SocketError::InProgress,
                    _ => SocketError::AlreadyConnected,
                })
            }
        };
        if remote.port() == 0 || remote.ip().is_unspecified() || remote.ip().is_broadcast() {
            return Err(SocketError::InvalidState);
        }
        let local_ip = match bound {
            Some(a) if !a.ip().is_unspecified() => *a.ip(),
            _ => *self
                .local_addrs
                .first()
                .ok_or(SocketError::AddrNotAvailable)?,
        };
        let local = match bound {
            Some(a) => {
                let local = SocketAddrV4::new(local_ip, a.port());
                let tuple = FourTuple { local, remote };
                if self.conns.contains_key(&tuple) || !self.take_time_wait(now, tuple) {
                    return Err(SocketError::AddrInUse);
                }
                local
            }
            None => match self.ephemeral_port(now, local_ip, remote) {
                Some(local) => local,
                None => {
                    self.counters.ports_exhausted += 1;
                    return Err(SocketError::AddrNotAvailable);
                }
            },
        };
        let cfg = self.conn_config(&self.sock(h)?.opts);
        let (iss, ts_offset) = self.isn.isn_and_ts_offset(now, local, remote);
        let mut conn = Connection::connect(&cfg, local, remote, iss, ts_offset);
        if self.record_history {
            conn.record_history();
        }
        let linger = self.sock(h)?.opts.linger;
        conn.set_linger(linger);
        if bound.is_some() {
            self.port_use(local.port()).bound -= 1;
        }
        self.port_use(local.port()).connections += 1;
        self.conns.insert(FourTuple { local, remote }, h.index);
        let conn = self.boxed(conn);
        let s = self.sock_mut(h)?;
        s.kind = Kind::Connection(conn);
        s.in_table = true;
        self.counters.connections_opened += 1;
        self.after_change(h.index);
        Ok(())
    }

    /// RFC 6056-style choice: a keyed offset per destination, then the
    /// first port whose 4-tuple is free and that no listener or bound
    /// socket holds.
    fn ephemeral_port(
        &mut self,
        now: Instant,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Option<SocketAddrV4> {
        let search = (local_ip, remote, self.release_gen, now.total_millis());
        if self.exhausted == Some(search) {
            return None;
        }
        let (lo, hi) = self.config.local_ports;
        let n = (hi as u32).saturating_sub(lo as u32) + 1;
        // The keyed offset depends only on the addresses: one SipHash per
        // destination, not per connect (a client opens many to one server).
        let offset = match self.port_offset {
            Some((ip, r, offset)) if ip == local_ip && r == remote => offset,
            _ => {
                let offset = self.isn.hash(SocketAddrV4::new(local_ip, 0), remote, 2);
                self.port_offset = Some((local_ip, remote, offset));
                offset
            }
        };
        self.port_cursor = self.port_cursor.wrapping_add(1);
        for i in 0..n {
            let port = lo + (offset.wrapping_add(self.port_cursor).wrapping_add(i) % n) as u16;
            let local = SocketAddrV4::new(local_ip, port);
            let u = self.ports.get(port);
            if u.listeners > 0 || u.bound > 0 {
                continue;
            }
            if let Some((rss, core)) = &self.steering {
                // The NIC hashes the peer's packets: src = remote, dst = us.
                if rss.queue_v4(*remote.ip(), local_ip, remote.port(), port) != *core {
                    continue;
                }
            }
            let tuple = FourTuple { local, remote };
            if !self.conns.contains_key(&tuple) && self.take_time_wait(now, tuple) {
                self.port_cursor = self.port_cursor.wrapping_add(i);
                return Some(local);
            }
        }
        self.exhausted = Some(search);
        None
    }

    /// Is `tuple` free of TIME-WAIT, or may its record be reused by an
    /// active open (RFC 6191: timestamps on, and the new SYN's TSval above
    /// every TSval the old connection sent)? A reusable record is removed.
    fn take_time_wait(&mut self, now: Instant, tuple: FourTuple) -> bool {
        let (isn, timestamps) = (&self.isn, self.config.tcp.timestamps);
        let verdict = self.tw.take_if(&tuple, |rec| {
            let tsval =
                (now.total_millis() as u32).wrapping_add(isn.ts_offset(tuple.local, tuple.remote));
            timestamps && rec.allows_active_reuse(tsval)
        });
        match verdict {
            None => true,
            Some(Err(())) => false,
            Some(Ok(_)) => {
                self.time_wait_released(&tuple);
                self.counters.time_wait_reused_active += 1;
                true
            }
        }
    }

    /// Removes a TIME-WAIT record with its bookkeeping.
    fn drop_time_wait(&mut self, tuple: &FourTuple) -> Option<super::timewait::TimeWaitRecord> {
        let rec = self.tw.remove(tuple)?;
        self.time_wait_released(tuple);
        Some(rec)
    }

    /// The bookkeeping of a TIME-WAIT record taken out of the table.
    fn time_wait_released(&mut self, tuple: &FourTuple) {
        self.states[State::TimeWait as usize] -= 1;
        self.port_release(tuple.local.port(), |u| u.connections -= 1);
    }

    fn conn_mut(&mut self, h: SocketHandle) -> Result<&mut Connection, SocketError> {
        Self::conn_in(&mut self.slots, h)
    }

    fn conn(&self, h: SocketHandle) -> Result<&Connection, SocketError> {
        match &self.sock(h)?.kind {
            Kind::Connection(c) => Ok(c),
            _ => Err(SocketError::NotConnected),
        }
    }

    /// `send(2)`: how many bytes were queued (maybe fewer than offered).
    pub fn send(&mut self, h: SocketHandle, data: &[u8]) -> Result<usize, SocketError> {
        let pool = &mut self.pool;
        let r = match Self::conn_in(&mut self.slots, h) {
            Ok(c) => {
                c.supply_tx_storage(pool);
                c.send_slice(data)
            }
            Err(SocketError::NotConnected) => {
                // A listener, or not connected yet.
                return Err(SocketError::NotConnected);
            }
            Err(e) => return Err(e),
        };
        let n = r.map_err(|e| match e {
            SendError::WouldBlock => SocketError::WouldBlock,
            SendError::Closed => SocketError::Pipe,
            SendError::Failed(e) => e.into(),
        })?;
        if n > 0 {
            self.touched(h.index);
        }
        Ok(n)
    }

    /// `recv(2)`: `Ok(0)` is the end of the stream.
    pub fn recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> Result<usize, SocketError> {
        let r = self.conn_mut(h)?.recv_slice(buf);
        let n = r.map_err(|e| match e {
            RecvError::WouldBlock => SocketError::WouldBlock,
            RecvError::NotConnected => SocketError::NotConnected,
            RecvError::Failed(e) => e.into(),
        })?;
        self.touched(h.index);
        Ok(n)
    }

    /// `recv(MSG_PEEK)`.
    pub fn peek(&self, h: SocketHandle, buf: &mut [u8]) -> Result<usize, SocketError> {
        Ok(self.conn(h)?.peek_slice(buf))
    }

    pub fn shutdown(&mut self, h: SocketHandle, how: Shutdown) -> Result<(), SocketError> {
        let c = self.conn_mut(h)?;
        if !c.state().is_synchronized() && c.state() != State::SynReceived {
            return Err(SocketError::NotConnected);
        }
        c.shutdown(how);
        self.after_change(h.index);
        Ok(())
    }

    /// `close(2)`: the handle is gone at once; the connection finishes on
    /// its own (FIN, TIME-WAIT) unless SO_LINGER says otherwise.
    pub fn close(&mut self, h: SocketHandle, now: Instant) -> Result<(), SocketError> {
        self.sock(h)?;
        let index = h.index;
        let kind = std::mem::replace(&mut self.sock_mut(h)?.kind, Kind::Unbound);
        match kind {
            Kind::Unbound => self.release_slot(index),
            Kind::Bound(a) => {
                self.port_release(a.port(), |u| u.bound -= 1);
                self.release_slot(index);
            }
            Kind::Listening(a, l) => {
                self.listeners.remove(&a);
                self.port_release(a.port(), |u| u.listeners -= 1);
                self.release_slot(index);
                // Children nobody will accept are reset (Linux does the same
                // on close of a listener with a non-empty queue).
                for child in l.accept_queue {
                    if let Ok(s) = self.sock_mut(child) {
                        s.parent = None;
                        s.released = true;
                        if let Kind::Connection(c) = &mut s.kind {
                            c.abort();
                        }
                        self.after_change(child.index);
                    }
                }
                let orphans: Vec<u32> = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| match &s.socket {
                        Some(sock) if sock.parent == Some(h) => Some(i as u32),
                        _ => None,
                    })
                    .collect();
                for i in orphans {
                    let s = self.slots[i as usize]
                        .socket
                        .as_mut()
                        .expect("listed above");
                    s.parent = None;
                    s.released = true;
                    if let Kind::Connection(c) = &mut s.kind {
                        c.abort();
                    }
                    self.after_change(i);
                }
            }
            Kind::Connection(mut c) => {
                c.close(now);
                let s = self.sock_mut(h)?;
                s.kind = Kind::Connection(c);
                s.released = true;
                self.after_change(index);
            }
        }
        Ok(())
    }

    /// RST now, no TIME-WAIT (RFC 9293 ABORT); the handle stays valid.
    pub fn abort(&mut self, h: SocketHandle) -> Result<(), SocketError> {
        self.conn_mut(h)?.abort();
        self.after_change(h.index);
        Ok(())
    }

    /// SO_KEEPALIVE (and its parameters) on a socket; a connected socket
    /// starts its idle timer from `now`.
    pub fn set_keepalive(
        &mut self,
        h: SocketHandle,
        now: Instant,
        keepalive: Option<super::Keepalive>,
    ) -> Result<(), SocketError> {
        let s = self.sock_mut(h)?;
        s.opts.keepalive = keepalive;
        if let Kind::Connection(c) = &mut s.kind {
            c.set_keepalive(now, keepalive);
        }
        self.after_change(h.index);
        Ok(())
    }

    pub fn options(&self, h: SocketHandle) -> Result<&SocketOptions, SocketError> {
        Ok(&self.sock(h)?.opts)
    }

    /// Changes options. Buffer sizes only apply before connect/listen.
    pub fn set_options(
        &mut self,
        h: SocketHandle,
        f: impl FnOnce(&mut SocketOptions),
    ) -> Result<(), SocketError> {
        let s = self.sock_mut(h)?;
        f(&mut s.opts);
        s.opts.rx_buffer = s.opts.rx_buffer.clamp(1024, 1 << 30);
        s.opts.tx_buffer = s.opts.tx_buffer.clamp(1024, 1 << 30);
        let (linger, nodelay) = (s.opts.linger, s.opts.nodelay);
        if let Kind::Connection(c) = &mut s.kind {
            c.set_linger(linger);
            c.set_nodelay(nodelay);
        }
        Ok(())
    }

    pub fn state(&self, h: SocketHandle) -> Result<State, SocketError> {
        Ok(match &self.sock(h)?.kind {
            Kind::Unbound | Kind::Bound(_) => State::Closed,
            Kind::Listening(..) => State::Listen,
            Kind::Connection(c) => c.state(),
        })
    }

    pub fn info(&self, h: SocketHandle) -> Result<TcpInfo, SocketError> {
        Ok(self.conn(h)?.info())
    }

    /// The connection's state history, when recording was on (tests).
    pub fn history(&self, h: SocketHandle) -> Result<Vec<State>, SocketError> {
        Ok(self.conn(h)?.history().to_vec())
    }

    /// SO_ERROR: the pending error, cleared by reading it.
    pub fn take_error(&mut self, h: SocketHandle) -> Result<Option<SocketError>, SocketError> {
        match &mut self.sock_mut(h)?.kind {
            Kind::Connection(c) => Ok(c.take_error().map(Into::into)),
            _ => Ok(None),
        }
    }

    pub fn local_addr(&self, h: SocketHandle) -> Result<SocketAddrV4, SocketError> {
        Ok(match &self.sock(h)?.kind {
            Kind::Unbound => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            Kind::Bound(a) | Kind::Listening(a, _) => *a,
            Kind::Connection(c) => c.local(),
        })
    }

    pub fn peer_addr(&self, h: SocketHandle) -> Result<SocketAddrV4, SocketError> {
        match &self.sock(h)?.kind {
            Kind::Connection(c) if c.state() != State::SynSent => Ok(c.remote()),
            _ => Err(SocketError::NotConnected),
        }
    }

    pub fn readiness(&self, h: SocketHandle) -> Result<Readiness, SocketError> {
        Ok(match &self.sock(h)?.kind {
            Kind::Listening(_, l) => Readiness {
                readable: !l.accept_queue.is_empty(),
                ..Readiness::default()
            },
            Kind::Connection(c) => Readiness {
                readable: c.readable(),
                writable: c.writable(),
                read_hangup: c.recv_finished() || c.failed(),
                hangup: c.hung_up(),
                error: c.failed(),
            },
            // Linux reports EPOLLOUT|EPOLLHUP for a fresh socket.
            Kind::Unbound | Kind::Bound(_) => Readiness {
                writable: true,
                hangup: true,
                ..Readiness::default()
            },
        })
    }

    // ----- input and output ----------------------------------------------

    /// One segment from `src` to `dst` (one of our addresses).
    pub fn process(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        seg: &TcpRepr<'_>,
        sink: &mut impl Sink,
    ) {
        self.counters.segments_in += 1;
        let key = FourTuple {
            local: SocketAddrV4::new(dst, seg.dst_port),
            remote: SocketAddrV4::new(src, seg.src_port),
        };
        if let Some(index) = self.demux(&key) {
            if self.accept_queue_full_for(index, seg) {
                // Linux's default (tcp_abort_on_overflow = 0): drop the
                // handshake's final ACK; the child stays in SYN-RECEIVED and
                // its SYN-ACK retransmission brings the ACK back later.
                self.counters.accept_queue_overflow += 1;
                return;
            }
            if let Some(Socket {
                kind: Kind::Connection(c),
                ..
            }) = &mut self.slots[index as usize].socket
            {
                if !seg.payload.is_empty() {
                    c.supply_rx_storage(&mut self.pool);
                }
                c.process(now, seg, sink);
            }
            self.segment_processed(index);
            return;
        }
        self.process_unconnected(now, key, seg, sink);
    }

    /// The segments of `run` (in-order data of one flow that arrived
    /// together), as [`process`](Self::process) on each in turn would: one
    /// lookup, and one pass of the connection's fast path for them all when
    /// header prediction holds for the lot; otherwise each on its own.
    pub fn process_run(&mut self, now: Instant, run: &SegmentRun<'_>, sink: &mut impl Sink) {
        let (src, dst) = (run.src(), run.dst());
        if run.count() == 1 {
            return self.process(now, src, dst, run.first(), sink);
        }
        if run.count() > 1 {
            let seg = run.first();
            let key = FourTuple {
                local: SocketAddrV4::new(dst, seg.dst_port),
                remote: SocketAddrV4::new(src, seg.src_port),
            };
            if let Some(index) = self.demux(&key) {
                if let Some(Socket {
                    kind: Kind::Connection(c),
                    ..
                }) = &mut self.slots[index as usize].socket
                {
                    c.supply_rx_storage(&mut self.pool);
                    if c.process_run(now, run, sink) {
                        self.counters.segments_in += run.count() as u64;
                        self.segment_processed(index);
                        return;
                    }
                }
            }
        }
        for seg in run.segments() {
            self.process(now, src, dst, &seg, sink);
        }
    }

    /// A segment for no connection: TIME-WAIT, a listener, or a RST. Kept
    /// out of [`process`](Self::process), so that its hot path stays small.
    #[inline(never)]
    fn process_unconnected(
        &mut self,
        now: Instant,
        key: FourTuple,
        seg: &TcpRepr<'_>,
        sink: &mut impl Sink,
    ) {
        let (src, dst) = (*key.remote.ip(), *key.local.ip());
        let mut iss_floor = None;
        if let Some(rec) = self.tw.get_mut(&key) {
            match judge(rec, seg) {
                TimeWaitVerdict::Drop => return,
                TimeWaitVerdict::Ack => {
                    if seg.flags.syn() {
                        self.counters.time_wait_syn_refused += 1;
                    }
                    let ack = rec.ack(now);
                    self.emit_counted(dst, src, &ack, sink);
                    return;
                }
                TimeWaitVerdict::AckAndRestart => {
                    let ack = rec.ack(now);
                    self.emit_counted(dst, src, &ack, sink);
                    self.tw.restart(&key, now);
                    return;
                }
                TimeWaitVerdict::NewConnection => {
                    let rec = self.drop_time_wait(&key).expect("found above");
                    self.counters.time_wait_reused_passive += 1;
                    // RFC 1122 §4.2.2.13: the new ISS lies beyond the old
                    // connection's sequence space (Linux adds 65535 + 2).
                    iss_floor = Some(rec.snd_nxt + 65537);
                }
            }
        }
        let listener = self
            .listeners
            .get(&key.local)
            .or_else(|| {
                self.listeners
                    .get(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, seg.dst_port))
            })
            .copied();
        if let Some(index) = listener {
            self.listen_process(now, index, key, seg, iss_floor, sink);
            return;
        }
        self.counters.no_socket += 1;
        self.reply_rst(src, dst, seg, sink);
    }

    /// The slot of the connection with tuple `key`: the hint if its slot
    /// still holds that connection in the table, else the hash lookup
    /// (which refreshes the hint).
    #[inline(always)]
    fn demux(&mut self, key: &FourTuple) -> Option<u32> {
        let hint = (key.local.port() ^ key.remote.port().rotate_left(7)) as usize % DEMUX_HINTS;
        let index = self.demux_hint[hint];
        if let Some(Some(s)) = self
            .slots
            .get(index as usize)
            .map(|slot| slot.socket.as_ref())
        {
            if let Kind::Connection(c) = &s.kind {
                if s.in_table && c.local() == key.local && c.remote() == key.remote {
                    return Some(index);
                }
            }
        }
        let index = *self.conns.get(key)?;
        self.demux_hint[hint] = index;
        Some(index)
    }

    /// Would `seg` complete the handshake of a child whose listener's
    /// accept queue is full?
    fn accept_queue_full_for(&self, index: u32, seg: &TcpRepr<'_>) -> bool {
        let Some(s) = self.slots[index as usize].socket.as_ref() else {
            return false;
        };
        let (Some(parent), Kind::Connection(c)) = (s.parent, &s.kind) else {
            return false;
        };
        if c.state() != State::SynReceived || !seg.flags.ack() || seg.flags.rst() || seg.flags.syn()
        {
            return false;
        }
        match self.sock(parent) {
            Ok(Socket {
                kind: Kind::Listening(_, l),
                ..
            }) => l.accept_queue.len() >= l.backlog,
            _ => false,
        }
    }

    fn reply_rst(&mut self, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr<'_>, sink: &mut impl Sink) {
        if let Some(rst) = rst_for_unexpected(seg) {
            if self.emit_counted(dst, src, &rst, sink) {
                self.counters.rst_sent += 1;
            }
        }
    }

    fn emit_counted(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &TcpRepr<'_>,
        sink: &mut impl Sink,
    ) -> bool {
        let ok = sink.emit(src, dst, repr);
        if ok {
            self.counters.segments_out += 1;
        } else {
            self.counters.tx_backpressure += 1;
        }
        ok
    }

    /// RFC 9293 §3.10.7.2, LISTEN.
    fn listen_process(
        &mut self,
        now: Instant,
        index: u32,
        key: FourTuple,
        seg: &TcpRepr<'_>,
        iss_floor: Option<crate::wire::SeqNumber>,
        sink: &mut impl Sink,
    ) {
        let f = seg.flags;
        if f.rst() {
            return;
        }
        if f.ack() {
            // <SEQ=SEG.ACK><CTL=RST>
            self.reply_rst(*key.remote.ip(), *key.local.ip(), seg, sink);
            return;
        }
        if !f.syn() {
            return;
        }
        let listener_handle = self.handle_of(index);
        let Some(Socket {
            kind: Kind::Listening(_, l),
            opts,
            ..
        }) = &mut self.slots[index as usize].socket
        else {
            return;
        };
        if l.syn_queue >= self.config.max_syn_backlog {
            self.counters.syn_queue_overflow += 1;
            return;
        }
        if l.accept_queue.len() >= l.backlog {
            self.counters.accept_queue_overflow += 1;
            return;
        }
        l.syn_queue += 1;
        let cfg = l.config.clone();
        let linger = opts.linger;
        let opts = opts.clone();
        let (mut iss, ts_offset) = self.isn.isn_and_ts_offset(now, key.local, key.remote);
        if let Some(floor) = iss_floor {
            iss = iss.max(floor);
        }
        let mut conn = Connection::accept_syn(&cfg, key.local, key.remote, seg, iss, ts_offset);
        if self.record_history {
            conn.record_history();
        }
        conn.set_linger(linger);
        let conn = self.boxed(conn);
        let mut s = self.new_socket(Kind::Connection(conn), opts);
        s.parent = Some(listener_handle);
        s.in_table = true;
        let Ok(h) = self.alloc(s) else {
            if let Some(Socket {
                kind: Kind::Listening(_, l),
                ..
            }) = &mut self.slots[index as usize].socket
            {
                l.syn_queue -= 1;
            }
            return;
        };
        self.port_use(key.local.port()).connections += 1;
        self.conns.insert(key, h.index);
        self.after_change(h.index);
    }

    /// Bookkeeping after anything touched a socket: state counts, the
    /// listener's queues, the demux table, freeing, and scheduling.
    fn after_change(&mut self, index: u32) {
        self.after_change_owing(index, Owed::Unknown)
    }

    /// After an API call: the connection may owe something, which the next
    /// dispatch finds out. Small enough to inline; the rare case (its state
    /// changed) takes the full bookkeeping.
    #[inline]
    fn touched(&mut self, index: u32) {
        self.touched_by(index, false)
    }

    /// After a segment: a connection that owes nothing now (the common
    /// case: data to be ACKed later, or a bare ACK) only needs its timer,
    /// not a dispatch. `Connection::poll_at` is cheap when nothing waits in
    /// the send buffer, as after a request or a response.
    #[inline]
    fn segment_processed(&mut self, index: u32) {
        self.touched_by(index, true)
    }

    // Always inlined: the hot path of every segment and every send and
    // receive call; outlined it cost W2 about 110 instructions per round
    // trip (callgrind).
    #[inline(always)]
    fn touched_by(&mut self, index: u32, segment: bool) {
        self.wake(index);
        if let Some(s) = self.slots[index as usize].socket.as_mut() {
            if let Kind::Connection(c) = &s.kind {
                let state = c.state();
                if s.counted == Some(state) && state != State::Closed {
                    if s.dirty {
                        return;
                    }
                    if segment {
                        let at = c.poll_at();
                        self.schedule(index, at);
                    } else {
                        s.dirty = true;
                        self.dirty.push(index);
                    }
                    return;
                }
            }
        }
        self.after_change_owing(index, Owed::Maybe)
    }

    /// [`after_change`](Self::after_change) with what the caller knows of
    /// the work the connection owes: `Maybe` (the hot path: an API call or
    /// a segment) only queues it for the next dispatch, which finds out;
    /// `Nothing` (after a dispatch the device did not refuse) arms its
    /// earliest timer without the dry run of the send path that
    /// `Connection::poll_at` is.
    fn after_change_owing(&mut self, index: u32, owed: Owed) {
        self.wake(index);
        let Some(s) = self.slots[index as usize].socket.as_mut() else {
            return;
        };
        let Kind::Connection(c) = &s.kind else {
            return;
        };
        let state = c.state();
        // The common case after a dispatch: the state is as counted and
        // leaves no table to update, so only the timer is armed.
        if owed == Owed::Nothing
            && s.counted == Some(state)
            && !matches!(state, State::Closed | State::TimeWait)
        {
            debug_assert_nothing_owed(c);
            let at = c.next_timer();
            self.schedule(index, at);
            return;
        }
        let tuple = FourTuple {
            local: c.local(),
            remote: c.remote(),
        };
        let failed = c.failed();
        if s.counted != Some(state) {
            if let Some(old) = s.counted {
                self.states[old as usize] -= 1;
            }
            self.states[state as usize] += 1;
            let old = s.counted.replace(state);
            // A passive child leaving SYN-RECEIVED.
            if old == Some(State::SynReceived) {
                if let Some(parent) = s.parent {
                    let established = state != State::Closed;
                    let child = SocketHandle {
                        index,
                        gen: self.slots[index as usize].gen,
                    };
                    let mut orphaned = true;
                    if let Ok(Socket {
                        kind: Kind::Listening(_, l),
                        ..
                    }) = self.sock_mut(parent)
                    {
                        l.syn_queue -= 1;
                        orphaned = false;
                        if established {
                            l.accept_queue.push_back(child);
                        }
                    }
                    if !orphaned && established {
                        self.wake(parent.index);
                    }
                    let s = self.slots[index as usize].socket.as_mut().expect("present");
                    if orphaned || !established {
                        s.parent = None;
                        // Never accepted: nobody holds a handle.
                        s.released = true;
                        if orphaned && established {
                            if let Kind::Connection(c) = &mut s.kind {
                                c.abort();
                            }
                        }
                    }
                }
            }
            if state == State::Closed && failed {
                self.counters.connections_reset += 1;
            }
        }
        let s = self.slots[index as usize].socket.as_mut().expect("present");
        let Kind::Connection(c) = &s.kind else {
            return;
        };
        let state = c.state();
        if owed == Owed::Maybe && state != State::Closed {
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(index);
            }
            return;
        }
        // Convert once nothing is owed any more (the ACK of the peer's FIN
        // goes out first, from the connection).
        let owes_now = match owed {
            Owed::Nothing => {
                debug_assert_nothing_owed(c);
                false
            }
            Owed::Maybe | Owed::Unknown => c.poll_at() == Instant::ZERO,
        };
        if state == State::TimeWait && s.released && s.in_table && !owes_now {
            // The application let go: keep only the TIME-WAIT record. The
            // port stays in use until the record expires.
            let rec = c.time_wait_record().expect("in TIME-WAIT");
            s.in_table = false;
            self.conns.remove(&tuple);
            self.tw.insert_new(rec);
            self.counters.time_wait_records += 1;
            self.release_slot(index);
            self.states[State::TimeWait as usize] += 1;
            return;
        }
        if state == State::Closed && s.in_table {
            s.in_table = false;
            self.conns.remove(&tuple);
            self.port_release(tuple.local.port(), |u| u.connections -= 1);
        }
        let s = self.slots[index as usize].socket.as_mut().expect("present");
        let Kind::Connection(c) = &s.kind else {
            return;
        };
        // Work owed now, or a timer.
        let at = if owes_now {
            Instant::ZERO
        } else {
            c.next_timer()
        };
        self.schedule(index, at);
        let s = self.slots[index as usize].socket.as_mut().expect("present");
        if state == State::Closed && s.released && !s.dirty {
            self.release_slot(index);
        }
    }

    /// Puts connection `index` on the dirty list (`at` is now) or its one
    /// wheel entry at `at` (none for `FAR_FUTURE`).
    fn schedule(&mut self, index: u32, at: Instant) {
        let gen = self.slots[index as usize].gen;
        let Some(s) = self.slots[index as usize].socket.as_mut() else {
            return;
        };
        if at == Instant::ZERO {
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(index);
            }
        } else if at == Instant::FAR_FUTURE {
            if let Some((id, _)) = s.timer.take() {
                self.timers.cancel(id);
            }
        } else {
            match s.timer {
                // A later deadline keeps the earlier entry: it fires early,
                // finds nothing due and is re-armed then. RTO and delayed
                // ACK move later on almost every segment; this saves the
                // wheel a reschedule per segment.
                Some((_, t)) if t <= at => {}
                Some((id, _)) => {
                    self.timers.reschedule(id, at);
                    s.timer = Some((id, at));
                }
                None => {
                    let id = self.timers.insert(at, (index, gen));
                    s.timer = Some((id, at));
                }
            }
        }
    }

    /// When [`dispatch`](Self::dispatch) is next needed.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.dirty.is_empty() {
            return Some(Instant::ZERO);
        }
        let timer = self.timers.next_deadline();
        match (timer, self.tw.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires due timers and lets every connection with work emit. Returns
    /// the number of segments emitted.
    pub fn dispatch(&mut self, now: Instant, sink: &mut impl Sink) -> usize {
        // Nothing owed and nothing due: half the polls of a ping-pong.
        if self.dirty.is_empty()
            && self.timers.next_deadline().is_none_or(|t| t > now)
            && !self.tw.due(now)
        {
            return 0;
        }
        if self.tw.due(now) {
            let (ports, states) = (&mut self.ports, &mut self.states);
            let expired = self.tw.expire(now, |rec| {
                states[State::TimeWait as usize] -= 1;
                let port = rec.tuple.local.port();
                if let Some(u) = ports.get_mut(port) {
                    u.connections -= 1;
                }
            });
            self.release_gen += expired as u64;
        }
        let mut expired = std::mem::take(&mut self.expired);
        if self.timers.next_deadline().is_some_and(|t| t <= now) {
            self.timers.expire(now, &mut expired);
        }
        for (index, gen) in expired.drain(..) {
            let slot = &mut self.slots[index as usize];
            if slot.gen != gen {
                continue;
            }
            if let Some(s) = slot.socket.as_mut() {
                s.timer = None;
                if !s.dirty {
                    s.dirty = true;
                    self.dirty.push(index);
                }
            }
        }
        self.expired = expired;
        let mut sink = Counting {
            inner: sink,
            out: 0,
            refused: 0,
        };
        let mut dirty = std::mem::take(&mut self.dirty);
        // Once the device refuses a segment, the transmit burst is full:
        // the connections not yet served keep their place and go first
        // next time, instead of each being asked (and refused) in turn.
        let mut served = 0;
        for &index in &dirty {
            if sink.refused > 0 {
                break;
            }
            served += 1;
            if let Some(s) = self.slots[index as usize].socket.as_mut() {
                s.dirty = false;
                if let Kind::Connection(c) = &mut s.kind {
                    c.dispatch(now, &mut sink);
                }
            }
        }
        let waiting = if served < dirty.len() {
            dirty.split_off(served)
        } else {
            Vec::new()
        };
        // Only the last connection served can have been refused; it still
        // owes something and goes back on the dirty list (retried on the
        // next poll). The others sent all they could.
        let refused_last = sink.refused > 0;
        for (i, &index) in dirty.iter().enumerate() {
            let owed = if refused_last && i + 1 == dirty.len() {
                Owed::Unknown
            } else {
                Owed::Nothing
            };
            self.after_change_owing(index, owed);
        }
        dirty.clear();
        if !waiting.is_empty() {
            // Not served this time: first in line next time.
            let mut line = waiting;
            line.append(&mut self.dirty);
            self.dirty = line;
        } else if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        self.counters.segments_out += sink.out;
        self.counters.tx_backpressure += sink.refused;
        sink.out as usize
    }
}
